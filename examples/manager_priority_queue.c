/*
 * A type of your own served by a manager: a priority queue written in C,
 * used by a C child process and by a Python program (BaseManager.register).
 *
 * The server serves "PriorityQueue" (put(priority, item), get(), len());
 * get on an empty queue returns MP_EMPTY, which Python raises as queue.Empty.
 */
#include <mpipc.h>

#include "check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PQ_SCRIPT
#define PQ_SCRIPT "manager_priority_queue.py"
#endif

/* ---- the type, run by the server process ---- */

struct pq {
    int64_t *prio;
    mp_obj **items;
    size_t len, cap;
};

static int pq_create(const mp_obj *args, void **self)
{
    (void)args;
    struct pq *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    *self = q;
    return 0;
}

static void pq_free(void *self)
{
    struct pq *q = self;
    for (size_t i = 0; i < q->len; i++)
        mp_obj_free(q->items[i]);
    free(q->prio);
    free(q->items);
    free(q);
}

/* put(priority, item): kept in order, lowest priority first (ties: FIFO). */
static int pq_put(void *self, const mp_obj *args, mp_obj **result)
{
    struct pq *q = self;
    int64_t p;
    (void)result;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &p) < 0)
        return MP_ETYPE;
    if (q->len == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 8;
        int64_t *np = realloc(q->prio, cap * sizeof *np);
        if (np)
            q->prio = np;
        mp_obj **ni = np ? realloc(q->items, cap * sizeof *ni) : NULL;
        if (!ni)
            return -ENOMEM;
        q->items = ni;
        q->cap = cap;
    }
    mp_obj *item = mp_obj_copy(mp_obj_list_get(args, 1));
    if (!item)
        return -ENOMEM;
    size_t at = q->len;
    while (at > 0 && q->prio[at - 1] > p)
        at--;
    memmove(q->prio + at + 1, q->prio + at, (q->len - at) * sizeof *q->prio);
    memmove(q->items + at + 1, q->items + at, (q->len - at) * sizeof *q->items);
    q->prio[at] = p;
    q->items[at] = item;
    q->len++;
    return 0;
}

/* get(): the item of lowest priority; MP_EMPTY (queue.Empty) when none. */
static int pq_get(void *self, const mp_obj *args, mp_obj **result)
{
    struct pq *q = self;
    (void)args;
    if (q->len == 0)
        return MP_EMPTY;
    *result = q->items[0];
    q->len--;
    memmove(q->prio, q->prio + 1, q->len * sizeof *q->prio);
    memmove(q->items, q->items + 1, q->len * sizeof *q->items);
    return 0;
}

static int pq_len(void *self, const mp_obj *args, mp_obj **result)
{
    (void)args;
    *result = mp_obj_int((int64_t)((struct pq *)self)->len);
    return *result ? 0 : -ENOMEM;
}

static const mp_manager_method pq_methods[] = {
    {"put", 2, 2, pq_put},
    {"get", 0, 0, pq_get},
    {"len", 0, 0, pq_len},
};
static const mp_manager_type pq_type = {"PriorityQueue", pq_create, pq_free, pq_methods, 3};

/* ---- the clients ---- */

static int producer(void *arg)
{
    mp_proxy *q = arg;
    const char *jobs[] = {"backup", "urgent fix", "newsletter"};
    const int prio[] = {5, 1, 9};
    for (int i = 0; i < 3; i++) {
        mp_obj *args = mp_obj_build("(is)", prio[i], jobs[i]);
        CHECK(mp_proxy_call(q, "put", args, NULL));
        mp_obj_free(args);
    }
    return 0;
}

int main(void)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    o.authkey = "pq-key";
    o.authkey_len = 6;
    o.types = &pq_type;
    o.ntypes = 1;
    mp_manager *m;
    CHECK(mp_manager_start(&m, &o));

    mp_proxy *q;
    CHECK(mp_manager_create(m, "PriorityQueue", NULL, &q));
    mp_process *child;
    CHECK(mp_process_new(&child, producer, q));
    CHECK(mp_process_start(child));
    CHECK(mp_process_join(child, 30.0));
    mp_process_free(child);

    mp_obj *item;
    while (mp_proxy_call(q, "get", NULL, &item) == 0) {
        char *s;
        CHECK(mp_obj_repr(item, &s));
        printf("C got %s\n", s);
        free(s);
        mp_obj_free(item);
    }
    printf("C: the queue is empty (%s)\n", mp_errname(MP_EMPTY));
    fflush(stdout);

    /* A Python program uses the same server's type. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "python3 %s '%s' pq-key", PQ_SCRIPT, mp_manager_address(m));
    int rc = system(cmd);
    printf("C: python exited with %d\n", rc);

    mp_proxy_free(q);
    mp_manager_free(m);
    return rc == 0 ? 0 : 1;
}
