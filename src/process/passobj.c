/*
 * passobj - locks, semaphores, events, Values, Arrays, Conditions,
 * Barriers, Queues and SimpleQueues handed to a child started through
 * a context (Python pickles a SemLock for spawn by its handle): the parent's
 * side (mp_process_pass_*), the descriptors and message entries that carry
 * them, and the child's table of inherited objects (mp_process_inherited_*).
 *
 * An object is a block of an shm arena, and an arena is a memfd: the child
 * gets the arena's descriptor (one per arena, after the caller's own) and
 * the object's offset, maps the whole arena at its own address and closes
 * the descriptor. The objects hold no pointers (process-shared robust
 * mutexes and sem_t are keyed by file and offset), so the same memory works
 * at any address. Under fork the child simply keeps the parent's pointers.
 * Statics start with pass_.
 */
#include "core/internal.h"
#include "core/io.h"
#include "core/shm.h"
#include "core/parts.h"
#include "process/start.h"

#include <mpipc/queue.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* In a child started through a context: the objects passed, by index.
 * Process-wide like context.c's descriptors; set once before the target. */
static struct pass_entry {
    enum mp__part_kind kind;
    void *ptr;
} * pass_table;
static size_t pass_n;
static pthread_mutex_t pass_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const pass_names[] = {
    [MP__PART_LOCK] = "Lock",       [MP__PART_RLOCK] = "RLock",
    [MP__PART_SEM] = "Semaphore",   [MP__PART_EVENT] = "Event",
    [MP__PART_VALUE] = "Value",     [MP__PART_ARRAY] = "Array",
    [MP__PART_QUEUE] = "Queue",     [MP__PART_COND] = "Condition",
    [MP__PART_BARRIER] = "Barrier", [MP__PART_SIMPLEQUEUE] = "SimpleQueue",
};
_Static_assert(sizeof pass_names / sizeof pass_names[0] == MP__PART_LAST + 1, "every kind named");

/* The kinds that carry descriptors of their own (a handle in the child). */
static bool pass_is_queue(int kind)
{
    return kind == MP__PART_QUEUE || kind == MP__PART_SIMPLEQUEUE;
}

/* ---- the parent's side ------------------------------------------------------------ */

/* The start data of p if it is a context handle not started yet (context.c
 * checks the same for descriptors). */
static int pass_proc(mp_process *p, struct mp__start_proc **out)
{
    struct mp__start_proc *data = mp__start_of(p);
    if (!data)
        return mp__err(MP_ESTATE, "objects are passed to processes made by mp_process_new_ctx");
    if (mp_process_pid(p) != 0)
        return mp__err(MP_ESTATE, "process has already started");
    *out = data;
    return 0;
}

/* Fill o with the parts of obj (its owner takes it apart), each block
 * located in its arena. */
static int pass_fill(struct mp__start_obj *o, enum mp__part_kind kind, const void *obj)
{
    struct mp__parts parts;
    int rc = kind == MP__PART_QUEUE         ? mp__queue_parts((mp_queue *)obj, &parts)
             : kind == MP__PART_SIMPLEQUEUE ? mp__simplequeue_parts((mp_simplequeue *)obj, &parts)
                                            : mp__sync_parts(kind, obj, &parts);
    if (rc < 0)
        return rc;
    for (size_t b = 0; b < parts.nblk; b++) {
        struct mp__start_blk *blk = &o->blk[b];
        size_t arena_size;
        rc = mp__shm_locate(parts.blk[b], parts.size[b], &blk->fd, &blk->off, &arena_size);
        if (rc < 0)
            return rc;
        blk->size = parts.size[b];
    }
    o->nblk = parts.nblk;
    memcpy(o->raw, parts.fds, parts.nfds * sizeof *o->raw);
    o->nraw = parts.nfds;
    o->extra = parts.extra;
    return 0;
}

static ssize_t pass_add(mp_process *p, enum mp__part_kind kind, const void *obj)
{
    if (!p || !obj)
        return -EINVAL;
    struct mp__start_proc *sp = NULL;
    int rc = pass_proc(p, &sp);
    if (rc < 0)
        return rc;
    if (sp->nobjs == MP__START_MAX_FDS)
        return mp__err(MP_EVALUE, "too many objects passed (at most %d)", MP__START_MAX_FDS);
    for (size_t i = 0; i < sp->nobjs; i++)
        if (sp->objs[i].ptr == obj && pass_is_queue(kind)) /* its descriptors: once */
            return mp__err(MP_EVALUE, "this %s is already passed to the process (index %zu)",
                           pass_names[kind], i);
    struct mp__start_obj *o = &sp->objs[sp->nobjs];
    memset(o, 0, sizeof *o);
    rc = pass_fill(o, kind, obj);
    if (rc == MP_ECLOSED)
        return mp__err(MP_ECLOSED, "%s is closed", pass_names[kind]);
    if (rc < 0)
        return mp__err(MP_EVALUE,
                       "this %s cannot be passed: it was not made by this process or an "
                       "ancestor it was forked from",
                       pass_names[kind]);
    /* Python cannot pickle a Barrier's action for another process either;
     * ours is a function pointer with a pointer argument, valid only in
     * this process's image and heap: a fork child only. */
    if (kind == MP__PART_BARRIER && o->extra && sp->method != MP__START_FORK)
        return mp__err(MP_EVALUE,
                       "a Barrier with an action cannot be passed to a %s child: the action is "
                       "a function pointer and its arg a pointer (fork only)",
                       sp->method == MP__START_SPAWN ? "spawn" : "forkserver");
    o->kind = kind;
    o->ptr = (void *)obj;
    return (ssize_t)sp->nobjs++;
}

/* The index of descriptor fd among sp's passed ones from `from` on,
 * appending it when absent (dedupe: arenas are shared by objects) or when
 * dedupe is false. SIZE_MAX when there is no room. */
static size_t pass_fd_index(struct mp__start_proc *sp, int fd, bool dedupe)
{
    size_t k = sp->nuserfds;
    while (dedupe && k < sp->nfds && sp->fds[k] != fd)
        k++;
    if (dedupe && k < sp->nfds)
        return k;
    if (sp->nfds == MP__START_MAX_FDS)
        return SIZE_MAX;
    sp->fds[sp->nfds] = fd;
    return sp->nfds++;
}

int mp__start_prepare(struct mp__start_proc *sp)
{
    sp->nfds = sp->nuserfds;
    for (size_t i = 0; i < sp->nobjs; i++) {
        struct mp__start_obj *o = &sp->objs[i];
        size_t k = 0;
        for (size_t b = 0; k != SIZE_MAX && b < o->nblk; b++)
            k = o->blk[b].fdidx = pass_fd_index(sp, o->blk[b].fd, true);
        for (size_t r = 0; k != SIZE_MAX && r < o->nraw; r++)
            k = o->rawidx[r] = pass_fd_index(sp, o->raw[r], false);
        if (k == SIZE_MAX) {
            sp->nfds = sp->nuserfds;
            return mp__err(MP_EVALUE, "too many descriptors and objects passed (at most %d)",
                           MP__START_MAX_FDS);
        }
    }
    return 0;
}

/* One object's message entry, owned, or NULL. */
static mp_obj *pass_entry_message(const struct mp__start_obj *o)
{
    mp_obj *blks = mp_obj_list_new(), *raw = mp_obj_list_new();
    bool ok = blks && raw;
    for (size_t b = 0; ok && b < o->nblk; b++) {
        mp_obj *t = mp_obj_build("(n,n,n)", (ssize_t)o->blk[b].fdidx, (ssize_t)o->blk[b].off,
                                 (ssize_t)o->blk[b].size);
        ok = t && mp_obj_list_append(blks, t) == 0;
        if (!ok)
            mp_obj_free(t);
    }
    for (size_t r = 0; ok && r < o->nraw; r++) {
        mp_obj *v = mp_obj_int((int64_t)o->rawidx[r]);
        ok = v && mp_obj_list_append(raw, v) == 0;
        if (!ok)
            mp_obj_free(v);
    }
    if (!ok) {
        mp_obj_free(blks);
        mp_obj_free(raw);
        return NULL;
    }
    return mp_obj_build("(i,N,N,L)", (int)o->kind, blks, raw, o->extra);
}

mp_obj *mp__start_objs_message(const struct mp__start_proc *sp)
{
    mp_obj *list = mp_obj_list_new();
    for (size_t i = 0; list && i < sp->nobjs; i++) {
        mp_obj *t = pass_entry_message(&sp->objs[i]);
        if (!t || mp_obj_list_append(list, t) < 0) {
            mp_obj_free(t);
            mp_obj_free(list);
            list = NULL;
        }
    }
    return list;
}

/* ---- the child's side ------------------------------------------------------------- */

static void pass_set_table(struct pass_entry *t, size_t n)
{
    pthread_mutex_lock(&pass_mu);
    free(pass_table);
    pass_table = t;
    pass_n = n;
    pthread_mutex_unlock(&pass_mu);
}

int mp__start_objs_from_fork(const struct mp__start_proc *sp)
{
    struct pass_entry *t = sp->nobjs ? calloc(sp->nobjs, sizeof *t) : NULL;
    if (sp->nobjs && !t)
        return -ENOMEM;
    for (size_t i = 0; i < sp->nobjs; i++) {
        t[i].kind = sp->objs[i].kind;
        t[i].ptr = sp->objs[i].ptr;
    }
    pass_set_table(t, sp->nobjs);
    return 0;
}

/* Map the arena behind descriptor fd whole (its size from fstat: nothing
 * in the message sizes a mapping). Returns 0 with *base and *size set. */
static int pass_map(int fd, unsigned char **base, size_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size <= 0)
        return MP_EVALUE;
    void *p;
    int rc = mp__shm_map_fd(&p, fd, (size_t)st.st_size);
    if (rc < 0)
        return rc;
    *base = p;
    *size = (size_t)st.st_size;
    return 0;
}

/* What the child is building: the descriptors it received and the arenas
 * it mapped (maps[i]: descriptor i's, made on first use). */
struct pass_build {
    const int *fds;
    size_t n;
    unsigned char *maps[MP__START_MAX_FDS];
    size_t sizes[MP__START_MAX_FDS];
    bool raw[MP__START_MAX_FDS]; /* handed to a handle: not closed */
};

/* Block (fdidx, off, size) of an entry: its address once its arena is
 * mapped, checked to lie in the file; the owner checks the size. */
static int pass_blk(struct pass_build *pb, const mp_obj *e, void **out, size_t *size_out)
{
    ssize_t fdidx, off, size;
    if (!e || mp_obj_parse(e, "(nnn)", &fdidx, &off, &size) < 0 || fdidx < 0 ||
        (size_t)fdidx >= pb->n || pb->raw[fdidx] || off < 0 || size <= 0 ||
        (size_t)off % MP__SHM_ALIGN != 0)
        return MP_EVALUE;
    if (!pb->maps[fdidx]) {
        int rc = pass_map(pb->fds[fdidx], &pb->maps[fdidx], &pb->sizes[fdidx]);
        if (rc < 0)
            return rc;
    }
    if ((size_t)off > pb->sizes[fdidx] || (size_t)size > pb->sizes[fdidx] - (size_t)off)
        return MP_EVALUE;
    *out = pb->maps[fdidx] + off;
    *size_out = (size_t)size;
    return 0;
}

/* One (kind, blocks, fds, extra) entry: its parts, then its owner's
 * check. A queue's descriptors become its handle's. */
static int pass_entry_from(struct pass_build *pb, const mp_obj *e, struct pass_entry *out)
{
    int kind;
    const mp_obj *blks, *raw;
    struct mp__parts parts = {0};
    if (mp_obj_parse(e, "(iOOL)", &kind, &blks, &raw, &parts.extra) < 0 || kind < MP__PART_LOCK ||
        kind > MP__PART_LAST)
        return MP_EVALUE;
    ssize_t nb = mp_obj_len(blks), nr = mp_obj_len(raw);
    if (nb < 1 || nb > MP__PARTS_MAX || nr < 0 || nr > MP__PARTS_MAX)
        return MP_EVALUE;
    int rc = 0;
    for (ssize_t b = 0; rc == 0 && b < nb; b++)
        rc = pass_blk(pb, mp_obj_list_get(blks, b), &parts.blk[b], &parts.size[b]);
    parts.nblk = (size_t)nb;
    int64_t idx[MP__PARTS_MAX];
    for (ssize_t r = 0; rc == 0 && r < nr; r++) {
        if (mp_obj_get_int(mp_obj_list_get(raw, r), &idx[r]) < 0 || idx[r] < 0 ||
            (uint64_t)idx[r] >= pb->n || pb->raw[idx[r]] || pb->maps[idx[r]])
            rc = MP_EVALUE;
        else
            parts.fds[r] = pb->fds[idx[r]];
    }
    parts.nfds = (size_t)nr;
    if (rc < 0)
        return rc;
    if (kind == MP__PART_QUEUE)
        rc = mp__queue_from_parts(&parts, (mp_queue **)&out->ptr);
    else if (kind == MP__PART_SIMPLEQUEUE)
        rc = mp__simplequeue_from_parts(&parts, (mp_simplequeue **)&out->ptr);
    else if (nr == 0)
        rc = mp__sync_from_parts((enum mp__part_kind)kind, &parts, &out->ptr);
    else
        rc = MP_EVALUE;
    for (ssize_t r = 0; rc == 0 && r < nr; r++)
        pb->raw[idx[r]] = true;
    out->kind = (enum mp__part_kind)kind;
    return rc;
}

int mp__start_objs_from_message(const mp_obj *objs, const int *fds, size_t n)
{
    ssize_t len = objs ? mp_obj_len(objs) : 0;
    if (len < 0 || len > MP__START_MAX_FDS || n > MP__START_MAX_FDS)
        return MP_EVALUE;
    struct pass_build pb = {.fds = fds, .n = n};
    struct pass_entry *t = len ? calloc((size_t)len, sizeof *t) : NULL;
    int rc = len && !t ? -ENOMEM : 0;
    ssize_t made = 0;
    for (; rc == 0 && made < len; made++)
        rc = pass_entry_from(&pb, mp_obj_list_get(objs, made), &t[made]);
    if (rc < 0) {
        /* Queues already made own their descriptors: free them (their
         * blocks are the mappings, unmapped below). */
        for (ssize_t i = 0; i < made; i++)
            if (t[i].kind == MP__PART_QUEUE && t[i].ptr)
                mp_queue_free(t[i].ptr);
            else if (t[i].kind == MP__PART_SIMPLEQUEUE && t[i].ptr)
                mp_simplequeue_free(t[i].ptr);
        for (size_t k = 0; k < n; k++)
            mp__shm_unmap(pb.maps[k], pb.sizes[k]);
        free(t);
        return rc;
    }
    /* The mappings stay for the child's life; the arena descriptors are
     * not needed any more. */
    for (size_t k = 0; k < n; k++)
        if (pb.maps[k])
            (void)mp__close(fds[k]);
    pass_set_table(t, (size_t)len);
    return 0;
}

/* The object at index i of kind kind, or an error. */
static int pass_get(void **out, ssize_t i, enum mp__part_kind kind)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    pthread_mutex_lock(&pass_mu);
    ssize_t n = (ssize_t)pass_n;
    ssize_t k = i < 0 ? i + n : i;
    struct pass_entry e = {0};
    if (k >= 0 && k < n)
        e = pass_table[k];
    pthread_mutex_unlock(&pass_mu);
    if (!e.ptr)
        return mp__err(MP_EKEY, "no inherited object %zd (%zd were passed)", i, n);
    if (e.kind != kind)
        return mp__err(MP_ETYPE, "inherited object %zd is a %s, not a %s", i, pass_names[e.kind],
                       pass_names[kind]);
    *out = e.ptr;
    return 0;
}

/* ---- the public calls ------------------------------------------------------------- */

MP_API ssize_t mp_process_pass_lock(mp_process *p, const mp_lock *lock)
{
    return pass_add(p, MP__PART_LOCK, lock);
}

MP_API ssize_t mp_process_pass_rlock(mp_process *p, const mp_rlock *lock)
{
    return pass_add(p, MP__PART_RLOCK, lock);
}

MP_API ssize_t mp_process_pass_sem(mp_process *p, const mp_sem *sem)
{
    return pass_add(p, MP__PART_SEM, sem);
}

MP_API ssize_t mp_process_pass_event(mp_process *p, const mp_event *ev)
{
    return pass_add(p, MP__PART_EVENT, ev);
}

MP_API ssize_t mp_process_pass_value(mp_process *p, const mp_value *v)
{
    return pass_add(p, MP__PART_VALUE, v);
}

MP_API ssize_t mp_process_pass_array(mp_process *p, const mp_array *a)
{
    return pass_add(p, MP__PART_ARRAY, a);
}

MP_API int mp_process_inherited_value(mp_value **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_VALUE);
}

MP_API int mp_process_inherited_array(mp_array **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_ARRAY);
}

MP_API ssize_t mp_process_pass_queue(mp_process *p, mp_queue *q)
{
    return pass_add(p, MP__PART_QUEUE, q);
}

MP_API int mp_process_inherited_queue(mp_queue **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_QUEUE);
}

MP_API ssize_t mp_process_pass_cond(mp_process *p, const mp_cond *cond)
{
    return pass_add(p, MP__PART_COND, cond);
}

MP_API int mp_process_inherited_cond(mp_cond **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_COND);
}

MP_API int mp_process_inherited_lock(mp_lock **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_LOCK);
}

MP_API int mp_process_inherited_rlock(mp_rlock **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_RLOCK);
}

MP_API int mp_process_inherited_sem(mp_sem **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_SEM);
}

MP_API int mp_process_inherited_event(mp_event **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_EVENT);
}

MP_API ssize_t mp_process_pass_barrier(mp_process *p, const mp_barrier *b)
{
    return pass_add(p, MP__PART_BARRIER, b);
}

MP_API int mp_process_inherited_barrier(mp_barrier **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_BARRIER);
}

MP_API ssize_t mp_process_pass_simplequeue(mp_process *p, mp_simplequeue *q)
{
    return pass_add(p, MP__PART_SIMPLEQUEUE, q);
}

MP_API int mp_process_inherited_simplequeue(mp_simplequeue **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PART_SIMPLEQUEUE);
}
