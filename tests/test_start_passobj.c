/*
 * Locks, semaphores, events, Values and Arrays handed to children under fork, forkserver
 * and spawn (Python pickles a SemLock for a spawn child by its handle): the
 * lock tests' core (mutual exclusion across processes, a dead holder gives
 * the next acquirer MP_EOWNERDEAD), waking across processes, and Values and
 * Arrays updated under their locks, under each method, and the refusals,
 * and the checks a child makes on the parts it receives. Spawn re-executes
 * this binary. More scenarios per method: test_start_sync.c, test_start_queue.c.
 */
#include "core/parts.h"
#include "start_testutil.h"
#include "testutil.h"

#include <mpipc/conn.h>
#include <mpipc/context.h>
#include <mpipc/obj.h>
#include <mpipc/process.h>
#include <mpipc/queue.h>
#include <mpipc/sync.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define T_LONG ST_LONG
#define NCHILD 4
#define ROUNDS 20

/* ---- targets ---------------------------------------------------------------------- */

/* args (rounds): take inherited lock 0 ROUNDS times; inside, write 'I',
 * pause, write 'O' on inherited conn 0. Under mutual exclusion the pipe
 * reads IOIO... */
static int t_exclusive(const mp_obj *args)
{
    int rounds;
    mp_lock *lock;
    mp_conn *c;
    if (mp_obj_parse(args, "(i)", &rounds) < 0 || mp_process_inherited_lock(&lock, 0) < 0 ||
        mp_process_inherited_conn(&c, 0) < 0)
        return 10;
    int rc = 0;
    struct timespec pause = {0, 200000};
    for (int i = 0; i < rounds && rc == 0; i++) {
        if (mp_lock_acquire(lock, T_LONG) < 0)
            rc = 11;
        else {
            if (mp_conn_send_bytes(c, "I", 1) < 0)
                rc = 12;
            nanosleep(&pause, NULL);
            if (mp_conn_send_bytes(c, "O", 1) < 0)
                rc = 12;
            if (mp_lock_release(lock) < 0)
                rc = 13;
        }
    }
    mp_lock_free(lock); /* not this process's: does nothing */
    mp_conn_free(c);
    return rc;
}
MP_TARGET(t_exclusive);

/* Take inherited lock 0 and rlock 1, say so on conn 0, and end holding
 * both. */
static int t_die_holding(const mp_obj *args)
{
    (void)args;
    mp_lock *lock;
    mp_rlock *rlock;
    mp_conn *c;
    if (mp_process_inherited_lock(&lock, 0) < 0 || mp_process_inherited_rlock(&rlock, 1) < 0 ||
        mp_process_inherited_conn(&c, 0) < 0)
        return 20;
    if (mp_lock_acquire(lock, T_LONG) < 0 || mp_rlock_acquire(rlock, T_LONG) < 0)
        return 21;
    int rc = mp_conn_send_bytes(c, "held", 4) < 0 ? 22 : 0;
    mp_conn_free(c);
    return rc; /* the process ends with both held */
}
MP_TARGET(t_die_holding);

/* Wait for inherited event 1, then release inherited semaphore 0 twice;
 * the rlock 2 the parent holds must time out here. Also checks the kinds
 * and indexes are refused as they should be (codes 3x). */
static int t_event_sem(const mp_obj *args)
{
    (void)args;
    mp_sem *sem;
    mp_event *ev;
    mp_rlock *rlock;
    mp_lock *wrong;
    if (mp_process_inherited_sem(&sem, 0) < 0 || mp_process_inherited_event(&ev, -2) < 0 ||
        mp_process_inherited_rlock(&rlock, 2) < 0)
        return 30;
    if (mp_process_inherited_lock(&wrong, 0) != MP_ETYPE || wrong != NULL)
        return 31;
    if (mp_process_inherited_lock(&wrong, 3) != MP_EKEY)
        return 32;
    if (mp_rlock_acquire(rlock, 0.1) != MP_ETIMEDOUT)
        return 33;
    if (mp_event_wait(ev, T_LONG) != 0)
        return 34;
    if (mp_sem_release(sem) < 0 || mp_sem_release(sem) < 0)
        return 35;
    return 0;
}
MP_TARGET(t_event_sem);

/* args (n): add 1 to inherited Value 0 and to each item of inherited
 * Array 1, n times each, under their own locks (get_lock(), as Python's
 * `with v.get_lock(): v.value += 1`). */
static int t_add(const mp_obj *args)
{
    int n;
    mp_value *v;
    mp_array *a;
    if (mp_obj_parse(args, "(i)", &n) < 0 || mp_process_inherited_value(&v, 0) < 0 ||
        mp_process_inherited_array(&a, 1) < 0)
        return 40;
    mp_rlock *vl = mp_value_get_lock(v), *al = mp_array_get_lock(a);
    if (!vl || !al || mp_array_len(a) != 3)
        return 41;
    for (int k = 0; k < n; k++) {
        if (mp_rlock_acquire(vl, T_LONG) < 0)
            return 42;
        ++*(int64_t *)mp_value_ptr(v);
        (void)mp_rlock_release(vl);
        if (mp_rlock_acquire(al, T_LONG) < 0)
            return 43;
        for (ssize_t i = 0; i < 3; i++)
            ++((int32_t *)mp_array_ptr(a))[i];
        (void)mp_rlock_release(al);
    }
    mp_value_free(v); /* not this process's: does nothing */
    return 0;
}
MP_TARGET(t_add);

/* Take inherited lock 0 and give it back. */
static int t_take_lock(const mp_obj *args)
{
    (void)args;
    mp_lock *lock;
    if (mp_process_inherited_lock(&lock, 0) < 0 || mp_lock_acquire(lock, T_LONG) < 0)
        return 50;
    return mp_lock_release(lock) < 0 ? 51 : 0;
}
MP_TARGET(t_take_lock);

/* args (method): pass inherited lock 0 on to a spawn grandchild. A fork
 * child still has the arena's descriptor and can (the grandchild's exit
 * code is returned); a forkserver or spawn child only mapped the memory
 * and gets MP_EVALUE (returns 0 then). */
static int t_pass_on(const mp_obj *args)
{
    const char *method;
    mp_lock *lock;
    const mp_context *spawn;
    mp_process *p;
    if (mp_obj_parse(args, "(s)", &method) < 0 || mp_process_inherited_lock(&lock, 0) < 0 ||
        mp_context_get(&spawn, "spawn") < 0 ||
        mp_process_new_ctx(&p, spawn, "t_take_lock", NULL) < 0)
        return 60;
    ssize_t rc = mp_process_pass_lock(p, lock);
    int code = 61;
    if (strcmp(method, "fork") != 0)
        code = rc == MP_EVALUE ? 0 : 62;
    else if (rc == 0 && mp_process_start(p) == 0 && mp_process_join(p, T_LONG) == 0 &&
             mp_process_exitcode(p, &code) < 0)
        code = 63;
    mp_process_free(p);
    return code;
}
MP_TARGET(t_pass_on);

/* Get ints from inherited queue 0 until None; put each doubled on queue 1;
 * then put None. The child's get and its own feeder's put. */
static int t_qdouble(const mp_obj *args)
{
    (void)args;
    mp_queue *in, *out;
    if (mp_process_inherited_queue(&in, 0) < 0 || mp_process_inherited_queue(&out, 1) < 0)
        return 70;
    for (;;) {
        mp_obj *o = NULL;
        int64_t x;
        if (mp_queue_get_obj(in, &o, T_LONG) < 0)
            return 71;
        if (mp_obj_is_none(o)) {
            mp_obj_free(o);
            break;
        }
        int rc = mp_obj_get_int(o, &x);
        mp_obj_free(o);
        mp_obj *d = rc < 0 ? NULL : mp_obj_int(2 * x);
        rc = d ? mp_queue_put_obj(out, d, T_LONG) : -1;
        mp_obj_free(d);
        if (rc < 0)
            return 72;
    }
    mp_obj *none = mp_obj_none();
    int rc = mp_queue_put_obj(out, none, T_LONG);
    mp_obj_free(none);
    mp_queue_free(in);
    mp_queue_free(out); /* flushes this process's feeder */
    return rc < 0 ? 73 : 0;
}
MP_TARGET(t_qdouble);

/* args (id, n): put id * 1000 + k for k < n on inherited queue 0, and
 * leave it to the exit to flush. */
static int t_qproduce(const mp_obj *args)
{
    int id, n;
    mp_queue *q;
    if (mp_obj_parse(args, "(ii)", &id, &n) < 0 || mp_process_inherited_queue(&q, 0) < 0)
        return 80;
    for (int k = 0; k < n; k++) {
        mp_obj *o = mp_obj_int(id * 1000 + k);
        int rc = o ? mp_queue_put_obj(q, o, T_LONG) : -1;
        mp_obj_free(o);
        if (rc < 0)
            return 81;
    }
    return 0;
}
MP_TARGET(t_qproduce);

/* args (n): take n tasks from inherited JoinableQueue 0, task_done each. */
static int t_qworker(const mp_obj *args)
{
    int n;
    mp_queue *q;
    if (mp_obj_parse(args, "(i)", &n) < 0 || mp_process_inherited_queue(&q, 0) < 0)
        return 90;
    for (int k = 0; k < n; k++) {
        mp_obj *o = NULL;
        if (mp_queue_get_obj(q, &o, T_LONG) < 0)
            return 91;
        mp_obj_free(o);
        if (mp_queue_task_done(q) < 0)
            return 92;
    }
    mp_queue_free(q);
    return 0;
}
MP_TARGET(t_qworker);

/* Take inherited Condition 0 (the parent waits on it), notify, release. */
static int t_notify(const mp_obj *args)
{
    (void)args;
    mp_cond *c;
    if (mp_process_inherited_cond(&c, 0) < 0 || mp_cond_acquire(c, T_LONG) < 0)
        return 100;
    ssize_t woken = mp_cond_notify(c, 1);
    return mp_cond_release(c) < 0 ? 101 : woken == 1 ? 0 : 102;
}
MP_TARGET(t_notify);

/* ---- under each method ------------------------------------------------------------ */

/* Python's test_lock across processes: with the lock passed, NCHILD
 * children never overlap inside it; every round is seen. */
static void lock_excludes(const char *method)
{
    mp_lock *lock;
    mp_conn *r, *w;
    assert_int_equal(mp_lock_new(&lock), 0);
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    mp_process *p[NCHILD];
    mp_obj *args = mp_obj_build("(i)", ROUNDS);
    for (int i = 0; i < NCHILD; i++) {
        assert_int_equal(mp_process_new_ctx(&p[i], st_ctx(method), "t_exclusive", args), 0);
        assert_int_equal(mp_process_pass_lock(p[i], lock), 0);
        assert_int_equal(mp_process_pass_conn(p[i], w), 0);
        assert_int_equal(mp_process_start(p[i]), 0);
    }
    mp_obj_free(args);
    mp_conn_free(w);
    for (int k = 0; k < NCHILD * ROUNDS * 2; k++) {
        char b = 0;
        assert_int_equal(mp_conn_poll(r, T_LONG), 1);
        assert_int_equal(mp_conn_recv_bytes_into(r, &b, 1, 0, NULL, T_LONG), 1);
        assert_int_equal(b, k % 2 ? 'O' : 'I');
    }
    for (int i = 0; i < NCHILD; i++) {
        st_join_ok(p[i]);
        mp_process_free(p[i]);
    }
    mp_conn_free(r);
    mp_lock_free(lock);
}

/* A child that ends holding a passed Lock and RLock: the next acquirer in
 * the parent gets MP_EOWNERDEAD and holds them (robust mutexes work across
 * the child's own mapping of the memory). */
static void dead_holder(const char *method)
{
    mp_lock *lock;
    mp_rlock *rlock;
    mp_conn *r, *w;
    assert_int_equal(mp_lock_new(&lock), 0);
    assert_int_equal(mp_rlock_new(&rlock), 0);
    assert_int_equal(mp_pipe(&r, &w, false), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_die_holding", NULL), 0);
    assert_int_equal(mp_process_pass_lock(p, lock), 0);
    assert_int_equal(mp_process_pass_rlock(p, rlock), 1);
    assert_int_equal(mp_process_pass_conn(p, w), 0);
    assert_int_equal(mp_process_start(p), 0);
    char buf[8];
    assert_int_equal(mp_conn_poll(r, T_LONG), 1);
    assert_int_equal(mp_conn_recv_bytes_into(r, buf, sizeof buf, 0, NULL, T_LONG), 4);
    st_join_ok(p);
    TU_ASSERT_STATUS(mp_lock_acquire(lock, T_LONG), MP_EOWNERDEAD);
    assert_int_equal(mp_lock_release(lock), 0);
    TU_ASSERT_STATUS(mp_rlock_acquire(rlock, T_LONG), MP_EOWNERDEAD);
    assert_int_equal(mp_rlock_release(rlock), 0);
    mp_process_free(p);
    mp_conn_free(r);
    mp_conn_free(w);
    mp_lock_free(lock);
    mp_rlock_free(rlock);
}

/* An Event set here wakes the child; its Semaphore releases wake us; an
 * RLock held here is held for the child too. */
static void event_and_semaphore(const char *method)
{
    mp_sem *sem;
    mp_event *ev;
    mp_rlock *rlock;
    assert_int_equal(mp_sem_new(&sem, 0), 0);
    assert_int_equal(mp_event_new(&ev), 0);
    assert_int_equal(mp_rlock_new(&rlock), 0);
    assert_int_equal(mp_rlock_acquire(rlock, T_LONG), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_event_sem", NULL), 0);
    assert_int_equal(mp_process_pass_sem(p, sem), 0);
    assert_int_equal(mp_process_pass_event(p, ev), 1);
    assert_int_equal(mp_process_pass_rlock(p, rlock), 2);
    assert_int_equal(mp_process_start(p), 0);
    TU_ASSERT_STATUS(mp_sem_acquire(sem, 0.2), MP_ETIMEDOUT); /* not before the event */
    assert_int_equal(mp_event_set(ev), 0);
    assert_int_equal(mp_sem_acquire(sem, T_LONG), 0);
    assert_int_equal(mp_sem_acquire(sem, T_LONG), 0);
    st_join_ok(p);
    assert_int_equal(mp_rlock_release(rlock), 0);
    mp_process_free(p);
    mp_sem_free(sem);
    mp_event_free(ev);
    mp_rlock_free(rlock);
}

/* Python's test_value / test_array with lock=True across processes:
 * NCHILD children add under the object's lock, no update is lost. */
static void value_and_array(const char *method)
{
    mp_value *v;
    mp_array *a;
    int64_t zero = 0;
    int32_t init[3] = {1, 2, 3};
    assert_int_equal(mp_value_new(&v, 'q', &zero, true), 0);
    assert_int_equal(mp_array_new(&a, 'i', 3, init, true), 0);
    mp_process *p[NCHILD];
    mp_obj *args = mp_obj_build("(i)", 200);
    for (int i = 0; i < NCHILD; i++) {
        assert_int_equal(mp_process_new_ctx(&p[i], st_ctx(method), "t_add", args), 0);
        assert_int_equal(mp_process_pass_value(p[i], v), 0);
        assert_int_equal(mp_process_pass_array(p[i], a), 1);
        assert_int_equal(mp_process_start(p[i]), 0);
    }
    mp_obj_free(args);
    for (int i = 0; i < NCHILD; i++) {
        st_join_ok(p[i]);
        mp_process_free(p[i]);
    }
    int64_t x = 0;
    assert_int_equal(mp_value_get_int(v, &x), 0);
    assert_int_equal(x, NCHILD * 200);
    for (ssize_t i = 0; i < 3; i++) {
        assert_int_equal(mp_array_get_int(a, i, &x), 0);
        assert_int_equal(x, init[i] + NCHILD * 200);
    }
    mp_value_free(v);
    mp_array_free(a);
}

/* A fork child passes on what it inherited (its arenas' descriptors came
 * with the fork); a forkserver or spawn child cannot and is told so. The
 * lock is held here meanwhile for a moment, to show it is the same one. */
static void pass_on(const char *method)
{
    mp_lock *lock;
    assert_int_equal(mp_lock_new(&lock), 0);
    mp_obj *args = mp_obj_build("(s)", method);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_pass_on", args), 0);
    mp_obj_free(args);
    assert_int_equal(mp_process_pass_lock(p, lock), 0);
    assert_int_equal(mp_lock_acquire(lock, T_LONG), 0);
    assert_int_equal(mp_process_start(p), 0);
    struct timespec pause = {0, 50000000};
    nanosleep(&pause, NULL);
    assert_int_equal(mp_lock_release(lock), 0);
    st_join_ok(p);
    mp_process_free(p);
    mp_lock_free(lock);
}

static mp_obj *get_obj_ok(mp_queue *q)
{
    mp_obj *o = NULL;
    assert_int_equal(mp_queue_get_obj(q, &o, T_LONG), 0);
    return o;
}

/* Python's queue tests across processes: a child gets what we put and
 * puts back what we get, in order, to the last item. */
static void queue_both_ways(const char *method)
{
    mp_queue *in, *out;
    assert_int_equal(mp_queue_new(&in, 0), 0);
    assert_int_equal(mp_queue_new(&out, 5), 0); /* bounded: the child waits on us */
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_qdouble", NULL), 0);
    assert_int_equal(mp_process_pass_queue(p, in), 0);
    assert_int_equal(mp_process_pass_queue(p, out), 1);
    TU_ASSERT_STATUS(mp_process_pass_queue(p, in), MP_EVALUE); /* once */
    assert_int_equal(mp_process_start(p), 0);
    for (int k = 1; k <= 200; k++) {
        mp_obj *o = mp_obj_int(k);
        assert_int_equal(mp_queue_put_obj(in, o, T_LONG), 0);
        mp_obj_free(o);
    }
    mp_obj *none = mp_obj_none();
    assert_int_equal(mp_queue_put_obj(in, none, T_LONG), 0);
    mp_obj_free(none);
    for (int k = 1; k <= 200; k++) {
        mp_obj *o = get_obj_ok(out);
        int64_t x = 0;
        assert_int_equal(mp_obj_get_int(o, &x), 0);
        assert_int_equal(x, 2 * k);
        mp_obj_free(o);
    }
    mp_obj *end = get_obj_ok(out);
    assert_true(mp_obj_is_none(end));
    mp_obj_free(end);
    st_join_ok(p);
    mp_process_free(p);
    mp_queue_free(in);
    mp_queue_free(out);
}

/* Several producers, exact counts: every item arrives once, nothing more
 * (the children's feeders are flushed at their exit). */
static void queue_producers(const char *method)
{
    enum { PRODUCERS = 3, ITEMS = 300 };
    mp_queue *q;
    assert_int_equal(mp_queue_new(&q, 0), 0);
    mp_process *p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        mp_obj *args = mp_obj_build("(ii)", i, ITEMS);
        assert_int_equal(mp_process_new_ctx(&p[i], st_ctx(method), "t_qproduce", args), 0);
        mp_obj_free(args);
        assert_int_equal(mp_process_pass_queue(p[i], q), 0);
        assert_int_equal(mp_process_start(p[i]), 0);
    }
    static bool seen[PRODUCERS][ITEMS];
    memset(seen, 0, sizeof seen);
    int next[PRODUCERS] = {0};
    for (int k = 0; k < PRODUCERS * ITEMS; k++) {
        mp_obj *o = get_obj_ok(q);
        int64_t x = -1;
        assert_int_equal(mp_obj_get_int(o, &x), 0);
        mp_obj_free(o);
        int id = (int)(x / 1000), n = (int)(x % 1000);
        assert_true(id >= 0 && id < PRODUCERS && n >= 0 && n < ITEMS);
        assert_false(seen[id][n]);
        assert_int_equal(n, next[id]); /* one producer's items keep their order */
        next[id]++;
        seen[id][n] = true;
    }
    for (int i = 0; i < PRODUCERS; i++) {
        st_join_ok(p[i]);
        mp_process_free(p[i]);
    }
    mp_obj *extra = NULL;
    TU_ASSERT_STATUS(mp_queue_get_obj(q, &extra, 0.1), MP_EMPTY);
    mp_queue_free(q);
}

/* JoinableQueue: join() returns once the child has task_done every item
 * we put (Python's test_task_done across a process). */
static void joinable_task_done(const char *method)
{
    enum { TASKS = 50 };
    mp_queue *q;
    mp_queue_opts opts = MP_QUEUE_OPTS_INIT;
    opts.joinable = true;
    assert_int_equal(mp_queue_new_opts(&q, &opts), 0);
    for (int k = 0; k < TASKS; k++) {
        mp_obj *o = mp_obj_int(k);
        assert_int_equal(mp_queue_put_obj(q, o, T_LONG), 0);
        mp_obj_free(o);
    }
    TU_ASSERT_STATUS(mp_queue_join(q, 0.05), MP_ETIMEDOUT); /* nobody works yet */
    mp_obj *args = mp_obj_build("(i)", TASKS);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_qworker", args), 0);
    mp_obj_free(args);
    assert_int_equal(mp_process_pass_queue(p, q), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_queue_join(q, T_LONG), 0);
    st_join_ok(p);
    mp_process_free(p);
    mp_queue_free(q);
}

/* Python's Condition across processes: the child can take the lock only
 * once we wait, and its notify wakes us. (One over a lock of ours:
 * test_start_sync.c.) */
static void cond_notify(const char *method)
{
    mp_cond *c;
    assert_int_equal(mp_cond_new(&c, NULL), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx(method), "t_notify", NULL), 0);
    assert_int_equal(mp_process_pass_cond(p, c), 0);
    assert_int_equal(mp_cond_acquire(c, T_LONG), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_cond_wait(c, T_LONG), 0);
    assert_int_equal(mp_cond_release(c), 0);
    st_join_ok(p);
    mp_process_free(p);
    mp_cond_free(c);
}

ST_EACH_METHOD(lock_excludes, passed_lock_excludes_children)
ST_EACH_METHOD(dead_holder, passed_lock_dead_holder_gives_eownerdead)
ST_EACH_METHOD(event_and_semaphore, passed_event_and_semaphore_wake_across)
ST_EACH_METHOD(value_and_array, passed_value_and_array_count_every_update)
ST_EACH_METHOD(pass_on, child_passes_on_only_what_fork_gave_it)
ST_EACH_METHOD(queue_both_ways, passed_queue_carries_items_both_ways)
ST_EACH_METHOD(queue_producers, passed_queue_producers_exact_counts)
ST_EACH_METHOD(joinable_task_done, passed_joinable_queue_join_waits_for_task_done)
ST_EACH_METHOD(cond_notify, passed_condition_notify_wakes_parent)

/* Refusals: NULL, a handle mp_process_new made, after start; the index
 * and kind checks in a process not started through a context. */
static int plain_main(void *arg)
{
    (void)arg;
    return 0;
}

static void test_pass_refuses_bad_input(void **state)
{
    (void)state;
    mp_lock *lock;
    assert_int_equal(mp_lock_new(&lock), 0);
    mp_process *p;
    assert_int_equal(mp_process_new_ctx(&p, st_ctx("spawn"), "t_exclusive", NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_lock(p, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_process_pass_lock(NULL, lock), -EINVAL);
    int local = 0;
    TU_ASSERT_STATUS(mp_process_pass_lock(p, (const mp_lock *)&local), MP_EVALUE);
    /* The objects' descriptors come after the caller's 60 at start: too
     * many, a named error, and nothing starts. */
    for (int i = 0; i < 60; i++)
        assert_int_equal(mp_process_pass_fd(p, 0), i);
    assert_int_equal(mp_process_pass_lock(p, lock), 0);
    TU_ASSERT_STATUS(mp_process_start(p), MP_EVALUE);
    assert_int_equal(mp_process_pid(p), 0);
    mp_process_free(p);

    /* A queue closed here is refused as Python refuses a closed one. */
    mp_queue *cq;
    assert_int_equal(mp_queue_new(&cq, 0), 0);
    assert_int_equal(mp_queue_close(cq), 0);
    assert_int_equal(mp_process_new_ctx(&p, st_ctx("spawn"), "t_qworker", NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_queue(p, cq), MP_ECLOSED);
    mp_process_free(p);
    mp_queue_free(cq);

    mp_process *q;
    assert_int_equal(mp_process_new(&q, plain_main, NULL), 0);
    TU_ASSERT_STATUS(mp_process_pass_lock(q, lock), MP_ESTATE);
    mp_process_free(q);

    mp_lock *got = (mp_lock *)1;
    TU_ASSERT_STATUS(mp_process_inherited_lock(&got, 0), MP_EKEY);
    assert_null(got);
    TU_ASSERT_STATUS(mp_process_inherited_lock(NULL, 0), -EINVAL);
    mp_lock_free(lock);
}

static int noop_action(void *arg)
{
    (void)arg;
    return 0;
}

/* What a child checks in the parts it received, before it believes them:
 * a Barrier's size against its header and no action; a Condition's second
 * block against the lock it names; a SimpleQueue's stream and descriptors.
 * Refused parts are MP_EVALUE and nothing is made. (Valid parts are the
 * scenarios above and in test_start_sync.c, test_start_queue.c.) */
static void test_child_refuses_malformed_parts(void **state)
{
    (void)state;
    mp_barrier *b, *ba;
    assert_int_equal(mp_barrier_new(&b, 2, NULL, NULL, 1.0), 0);
    assert_int_equal(mp_barrier_new(&ba, 2, noop_action, NULL, 1.0), 0);
    struct mp__parts parts;
    void *out = (void *)1;
    assert_int_equal(mp__sync_parts(MP__PART_BARRIER, b, &parts), 0);
    assert_int_equal(parts.nblk, 1);
    assert_int_equal(parts.extra, 0);
    assert_int_equal(mp__sync_from_parts(MP__PART_BARRIER, &parts, &out), 0);
    assert_ptr_equal(out, b);
    parts.size[0] -= 8;
    TU_ASSERT_STATUS(mp__sync_from_parts(MP__PART_BARRIER, &parts, &out), MP_EVALUE);
    assert_null(out);
    parts.size[0] = 8; /* not even the header */
    TU_ASSERT_STATUS(mp__sync_from_parts(MP__PART_BARRIER, &parts, &out), MP_EVALUE);
    assert_int_equal(mp__sync_parts(MP__PART_BARRIER, ba, &parts), 0);
    assert_int_equal(parts.extra, 1);
    TU_ASSERT_STATUS(mp__sync_from_parts(MP__PART_BARRIER, &parts, &out), MP_EVALUE);
    parts.extra = 0; /* the action is in the block itself too */
    TU_ASSERT_STATUS(mp__sync_from_parts(MP__PART_BARRIER, &parts, &out), MP_EVALUE);

    mp_lock *lock;
    mp_rlock *rlock;
    mp_cond *c, *cr, *own;
    assert_int_equal(mp_lock_new(&lock), 0);
    assert_int_equal(mp_rlock_new(&rlock), 0);
    assert_int_equal(mp_cond_new(&c, lock), 0);
    assert_int_equal(mp_cond_new_rlock(&cr, rlock), 0);
    assert_int_equal(mp_cond_new(&own, NULL), 0);
    assert_int_equal(mp__sync_parts(MP__PART_COND, c, &parts), 0);
    assert_int_equal(parts.nblk, 2);
    assert_ptr_equal(parts.blk[1], lock);
    parts.nblk = 1; /* the lock left out */
    TU_ASSERT_STATUS(mp__sync_from_parts(MP__PART_COND, &parts, &out), MP_EVALUE);
    assert_int_equal(mp__sync_parts(MP__PART_COND, cr, &parts), 0);
    assert_ptr_equal(parts.blk[1], rlock);
    parts.size[1] = sizeof(void *); /* not an RLock's size */
    TU_ASSERT_STATUS(mp__sync_from_parts(MP__PART_COND, &parts, &out), MP_EVALUE);
    assert_int_equal(mp__sync_parts(MP__PART_COND, own, &parts), 0);
    assert_int_equal(parts.nblk, 1);
    parts.blk[1] = lock; /* a lock it does not use */
    parts.size[1] = parts.size[0];
    parts.nblk = 2;
    TU_ASSERT_STATUS(mp__sync_from_parts(MP__PART_COND, &parts, &out), MP_EVALUE);

    mp_simplequeue *sq;
    assert_int_equal(mp_simplequeue_new(&sq), 0);
    assert_int_equal(mp__simplequeue_parts(sq, &parts), 0);
    assert_int_equal(parts.nfds, 4);
    mp_simplequeue *got = (mp_simplequeue *)1;
    parts.nfds = 3;
    TU_ASSERT_STATUS(mp__simplequeue_from_parts(&parts, &got), MP_EVALUE);
    assert_null(got);
    parts.nfds = 4;
    parts.size[0] -= 1; /* the ring's size disagrees */
    TU_ASSERT_STATUS(mp__simplequeue_from_parts(&parts, &got), MP_EVALUE);

    mp_simplequeue_free(sq);
    mp_cond_free(own);
    mp_cond_free(cr);
    mp_cond_free(c);
    mp_rlock_free(rlock);
    mp_lock_free(lock);
    mp_barrier_free(ba);
    mp_barrier_free(b);
}

int main(int argc, char **argv)
{
    mp_spawn_main(argc, argv); /* a spawned child runs its target here */
    tu_filter(argc, argv);
    if (mp_forkserver_start() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        ST_TESTS(passed_lock_excludes_children),
        ST_TESTS(passed_lock_dead_holder_gives_eownerdead),
        ST_TESTS(passed_event_and_semaphore_wake_across),
        ST_TESTS(passed_value_and_array_count_every_update),
        ST_TESTS(child_passes_on_only_what_fork_gave_it),
        ST_TESTS(passed_queue_carries_items_both_ways),
        ST_TESTS(passed_queue_producers_exact_counts),
        ST_TESTS(passed_joinable_queue_join_waits_for_task_done),
        ST_TESTS(passed_condition_notify_wakes_parent),
        TU_TEST(test_pass_refuses_bad_input),
        TU_TEST(test_child_refuses_malformed_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
