/*
 * passobj - locks, semaphores, events, Values, Arrays and Queues handed to a child started through
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
#include "process/start.h"
#include "queue/qpipe.h"
#include "sync/sync_impl.h"

#include <mpipc/queue.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* In a child started through a context: the objects passed, by index.
 * Process-wide like context.c's descriptors; set once before the target. */
static struct pass_entry {
    enum mp__pass_kind kind;
    void *ptr;
} * pass_table;
static size_t pass_n;
static pthread_mutex_t pass_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *const pass_names[] = {
    [MP__PASS_LOCK] = "Lock",   [MP__PASS_RLOCK] = "RLock", [MP__PASS_SEM] = "Semaphore",
    [MP__PASS_EVENT] = "Event", [MP__PASS_VALUE] = "Value", [MP__PASS_ARRAY] = "Array",
};

/* The size of an object of kind k at obj (0 for an unknown kind or a bad
 * header). */
static size_t pass_size(int64_t k, const void *obj)
{
    switch (k) {
    case MP__PASS_VALUE:
    case MP__PASS_ARRAY:
        return mp__sync_array_size(obj);
    case MP__PASS_LOCK:
        return sizeof(mp_lock);
    case MP__PASS_RLOCK:
        return sizeof(mp_rlock);
    case MP__PASS_SEM:
        return mp__sync_sem_size();
    case MP__PASS_EVENT:
        return mp__sync_event_size();
    default:
        return 0;
    }
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

/* Add block [p, p + size) of an arena to o. size 0: a Value's or Array's
 * size, read from its header once that is known to be in an arena. */
static int pass_add_blk(struct mp__start_obj *o, const void *p, size_t size)
{
    struct mp__start_blk *b = &o->blk[o->nblk];
    size_t arena_size;
    bool sized = size == 0;
    int rc = mp__shm_locate(p, sized ? MP__SYNC_ARRAY_HEADER : size, &b->fd, &b->off, &arena_size);
    if (rc == 0 && sized) {
        size = mp__sync_array_size(p);
        rc = size ? mp__shm_locate(p, size, &b->fd, &b->off, &arena_size) : MP_EVALUE;
    }
    if (rc < 0)
        return rc;
    b->size = size;
    b->fdidx = 0;
    o->nblk++;
    return 0;
}

/* Fill o with the blocks and descriptors of obj, of kind kind. */
static int pass_fill(struct mp__start_obj *o, enum mp__pass_kind kind, const void *obj)
{
    if (kind == MP__PASS_VALUE || kind == MP__PASS_ARRAY)
        return pass_add_blk(o, obj, 0);
    if (kind != MP__PASS_QUEUE)
        return pass_add_blk(o, obj, pass_size(kind, NULL));
    struct mp__queue_parts qp;
    int rc = mp__queue_parts((struct mp_queue *)obj, &qp);
    if (rc < 0)
        return rc;
    if ((rc = pass_add_blk(o, qp.sh, qp.sh_size)) < 0 ||
        (rc = pass_add_blk(o, qp.sem, mp__sync_sem_size())) < 0)
        return rc;
    if (qp.cond) {
        if (!mp__sync_cond_self_contained(qp.cond))
            return MP_EVALUE;
        if ((rc = pass_add_blk(o, qp.unfinished, mp__sync_sem_size())) < 0 ||
            (rc = pass_add_blk(o, qp.cond, mp__sync_cond_size())) < 0)
            return rc;
    }
    for (size_t k = 0; k < 4; k++)
        o->raw[o->nraw++] = qp.fds[k];
    o->extra = qp.maxsize;
    return 0;
}

static ssize_t pass_add(mp_process *p, enum mp__pass_kind kind, const void *obj)
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
        if (sp->objs[i].ptr == obj && kind == MP__PASS_QUEUE) /* its descriptors: once */
            return mp__err(MP_EVALUE, "this Queue is already passed to the process (index %zu)", i);
    struct mp__start_obj *o = &sp->objs[sp->nobjs];
    memset(o, 0, sizeof *o);
    rc = pass_fill(o, kind, obj);
    if (rc == MP_ECLOSED)
        return mp__err(MP_ECLOSED, "Queue is closed");
    if (rc < 0)
        return mp__err(MP_EVALUE,
                       "this %s cannot be passed: it was not made by this process or an "
                       "ancestor it was forked from",
                       pass_names[kind]);
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

/* Block (fdidx, off, size) of an entry: its address once mapped, checked
 * to lie in the file. want: the size the kind needs, 0 to take the
 * message's (a queue's stream: checked by the queue). */
static int pass_blk(struct pass_build *pb, const mp_obj *e, size_t want, void **out)
{
    ssize_t fdidx, off, size;
    if (!e || mp_obj_parse(e, "(nnn)", &fdidx, &off, &size) < 0 || fdidx < 0 ||
        (size_t)fdidx >= pb->n || pb->raw[fdidx] || off < 0 || size <= 0 ||
        (size_t)off % MP__SHM_ALIGN != 0 || (want && (size_t)size != want))
        return MP_EVALUE;
    if (!pb->maps[fdidx]) {
        int rc = pass_map(pb->fds[fdidx], &pb->maps[fdidx], &pb->sizes[fdidx]);
        if (rc < 0)
            return rc;
    }
    if ((size_t)off > pb->sizes[fdidx] || (size_t)size > pb->sizes[fdidx] - (size_t)off)
        return MP_EVALUE;
    *out = pb->maps[fdidx] + off;
    return 0;
}

/* A queue's entry: blocks (stream, sem[, unfinished, cond]), four fds. */
static int pass_queue_from(struct pass_build *pb, const mp_obj *blks, const mp_obj *raw,
                           int64_t extra, void **out)
{
    ssize_t nb = mp_obj_len(blks);
    struct mp__queue_parts qp = {0};
    if ((nb != 2 && nb != 4) || mp_obj_len(raw) != 4 || extra <= 0 || extra > UINT_MAX)
        return MP_EVALUE;
    const mp_obj *e = mp_obj_list_get(blks, 0);
    ssize_t sh_size = 0;
    int rc = pass_blk(pb, e, 0, &qp.sh);
    if (rc == 0 && mp_obj_parse(e, "(nnn)", &(ssize_t){0}, &(ssize_t){0}, &sh_size) < 0)
        rc = MP_EVALUE;
    qp.sh_size = (size_t)sh_size;
    if (rc == 0)
        rc = pass_blk(pb, mp_obj_list_get(blks, 1), mp__sync_sem_size(), &qp.sem);
    if (rc == 0 && nb == 4)
        rc = pass_blk(pb, mp_obj_list_get(blks, 2), mp__sync_sem_size(), &qp.unfinished);
    if (rc == 0 && nb == 4)
        rc = pass_blk(pb, mp_obj_list_get(blks, 3), mp__sync_cond_size(), &qp.cond);
    for (ssize_t k = 0; rc == 0 && k < 4; k++) {
        int64_t idx;
        if (mp_obj_get_int(mp_obj_list_get(raw, k), &idx) < 0 || idx < 0 ||
            (uint64_t)idx >= pb->n || pb->raw[idx] || pb->maps[idx])
            rc = MP_EVALUE;
        else
            qp.fds[k] = pb->fds[idx];
    }
    qp.maxsize = (unsigned)extra;
    if (rc == 0)
        rc = mp__queue_from_parts((struct mp_queue **)out, &qp);
    for (ssize_t k = 0; rc == 0 && k < 4; k++) {
        int64_t idx = 0;
        (void)mp_obj_get_int(mp_obj_list_get(raw, k), &idx);
        pb->raw[idx] = true;
    }
    return rc;
}

/* One (kind, blocks, fds, extra) entry. */
static int pass_entry_from(struct pass_build *pb, const mp_obj *e, struct pass_entry *out)
{
    int kind;
    const mp_obj *blks, *raw;
    int64_t extra;
    if (mp_obj_parse(e, "(iOOL)", &kind, &blks, &raw, &extra) < 0 || kind < MP__PASS_LOCK ||
        kind > MP__PASS_QUEUE || mp_obj_len(blks) < 1)
        return MP_EVALUE;
    int rc;
    if (kind == MP__PASS_QUEUE) {
        rc = pass_queue_from(pb, blks, raw, extra, &out->ptr);
    } else {
        bool sized = kind == MP__PASS_VALUE || kind == MP__PASS_ARRAY;
        if (mp_obj_len(blks) != 1 || mp_obj_len(raw) != 0)
            return MP_EVALUE;
        /* A Value's or Array's length is in its header, once mapped: it
         * must agree with the message's size. */
        const mp_obj *b = mp_obj_list_get(blks, 0);
        rc = pass_blk(pb, b, sized ? 0 : pass_size(kind, NULL), &out->ptr);
        ssize_t size = 0;
        if (rc == 0 && sized &&
            (mp_obj_parse(b, "(nnn)", &(ssize_t){0}, &(ssize_t){0}, &size) < 0 ||
             (size_t)size < MP__SYNC_ARRAY_HEADER || pass_size(kind, out->ptr) != (size_t)size))
            rc = MP_EVALUE;
    }
    out->kind = (enum mp__pass_kind)kind;
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
            if (t[i].kind == MP__PASS_QUEUE && t[i].ptr)
                mp_queue_free(t[i].ptr);
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
static int pass_get(void **out, ssize_t i, enum mp__pass_kind kind)
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
    return pass_add(p, MP__PASS_LOCK, lock);
}

MP_API ssize_t mp_process_pass_rlock(mp_process *p, const mp_rlock *lock)
{
    return pass_add(p, MP__PASS_RLOCK, lock);
}

MP_API ssize_t mp_process_pass_sem(mp_process *p, const mp_sem *sem)
{
    return pass_add(p, MP__PASS_SEM, sem);
}

MP_API ssize_t mp_process_pass_event(mp_process *p, const mp_event *ev)
{
    return pass_add(p, MP__PASS_EVENT, ev);
}

MP_API ssize_t mp_process_pass_value(mp_process *p, const mp_value *v)
{
    return pass_add(p, MP__PASS_VALUE, v);
}

MP_API ssize_t mp_process_pass_array(mp_process *p, const mp_array *a)
{
    return pass_add(p, MP__PASS_ARRAY, a);
}

MP_API int mp_process_inherited_value(mp_value **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PASS_VALUE);
}

MP_API int mp_process_inherited_array(mp_array **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PASS_ARRAY);
}

MP_API ssize_t mp_process_pass_queue(mp_process *p, mp_queue *q)
{
    return pass_add(p, MP__PASS_QUEUE, q);
}

MP_API int mp_process_inherited_queue(mp_queue **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PASS_QUEUE);
}

MP_API int mp_process_inherited_lock(mp_lock **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PASS_LOCK);
}

MP_API int mp_process_inherited_rlock(mp_rlock **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PASS_RLOCK);
}

MP_API int mp_process_inherited_sem(mp_sem **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PASS_SEM);
}

MP_API int mp_process_inherited_event(mp_event **out, ssize_t i)
{
    return pass_get((void **)out, i, MP__PASS_EVENT);
}
