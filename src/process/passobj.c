/*
 * passobj - locks, semaphores, events, Values and Arrays handed to a child started through
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
#include "sync/sync_impl.h"

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
    struct mp__start_obj *o = &sp->objs[sp->nobjs];
    /* A Value's or Array's size is in its header: find the header first. */
    bool sized = kind == MP__PASS_VALUE || kind == MP__PASS_ARRAY;
    size_t size = sized ? MP__SYNC_ARRAY_HEADER : pass_size(kind, NULL), arena_size;
    rc = mp__shm_locate(obj, size, &o->fd, &o->off, &arena_size);
    if (rc == 0 && sized) {
        size = pass_size(kind, obj);
        rc = size ? mp__shm_locate(obj, size, &o->fd, &o->off, &arena_size) : MP_EVALUE;
    }
    if (rc < 0)
        return mp__err(MP_EVALUE,
                       "this %s cannot be passed: it was not made by this process or an "
                       "ancestor it was forked from",
                       pass_names[kind]);
    o->kind = kind;
    o->ptr = (void *)obj;
    o->size = size;
    o->fdidx = 0;
    return (ssize_t)sp->nobjs++;
}

int mp__start_prepare(struct mp__start_proc *sp)
{
    sp->nfds = sp->nuserfds;
    for (size_t i = 0; i < sp->nobjs; i++) {
        struct mp__start_obj *o = &sp->objs[i];
        size_t k = sp->nuserfds;
        while (k < sp->nfds && sp->fds[k] != o->fd)
            k++;
        if (k == sp->nfds) {
            if (sp->nfds == MP__START_MAX_FDS) {
                sp->nfds = sp->nuserfds;
                return mp__err(MP_EVALUE, "too many descriptors and objects passed (at most %d)",
                               MP__START_MAX_FDS);
            }
            sp->fds[sp->nfds++] = o->fd;
        }
        o->fdidx = k;
    }
    return 0;
}

mp_obj *mp__start_objs_message(const struct mp__start_proc *sp)
{
    mp_obj *list = mp_obj_list_new();
    for (size_t i = 0; list && i < sp->nobjs; i++) {
        const struct mp__start_obj *o = &sp->objs[i];
        mp_obj *t = mp_obj_build("(i,n,n,n)", (int)o->kind, (ssize_t)o->fdidx, (ssize_t)o->off,
                                 (ssize_t)o->size);
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

/* One (kind, fdidx, off, size) entry checked against the maps (maps[i] is
 * descriptor i's mapping, made on first use). */
static int pass_entry_from(const mp_obj *e, const int *fds, size_t n, unsigned char **maps,
                           size_t *sizes, struct pass_entry *out)
{
    int kind;
    ssize_t fdidx, off, size;
    if (mp_obj_parse(e, "(innn)", &kind, &fdidx, &off, &size) < 0)
        return MP_EVALUE;
    bool sized = kind == MP__PASS_VALUE || kind == MP__PASS_ARRAY;
    size_t want = sized ? MP__SYNC_ARRAY_HEADER : pass_size(kind, NULL);
    if (want == 0 || size < 0 || (size_t)size < want || fdidx < 0 || (size_t)fdidx >= n ||
        off < 0 || (size_t)off % MP__SHM_ALIGN != 0)
        return MP_EVALUE;
    if (!maps[fdidx]) {
        int rc = pass_map(fds[fdidx], &maps[fdidx], &sizes[fdidx]);
        if (rc < 0)
            return rc;
    }
    if ((size_t)off > sizes[fdidx] || want > sizes[fdidx] - (size_t)off)
        return MP_EVALUE;
    /* A Value's or Array's length is in its header, now mapped: it must
     * agree with the message and lie inside the file. */
    if (sized) {
        want = pass_size(kind, maps[fdidx] + off);
        if (want == 0 || want != (size_t)size || want > sizes[fdidx] - (size_t)off)
            return MP_EVALUE;
    } else if ((size_t)size != want) {
        return MP_EVALUE;
    }
    out->kind = (enum mp__pass_kind)kind;
    out->ptr = maps[fdidx] + off;
    return 0;
}

int mp__start_objs_from_message(const mp_obj *objs, const int *fds, size_t n)
{
    ssize_t len = objs ? mp_obj_len(objs) : 0;
    if (len < 0 || len > MP__START_MAX_FDS || n > MP__START_MAX_FDS)
        return MP_EVALUE;
    unsigned char *maps[MP__START_MAX_FDS] = {0};
    size_t sizes[MP__START_MAX_FDS] = {0};
    struct pass_entry *t = len ? calloc((size_t)len, sizeof *t) : NULL;
    int rc = len && !t ? -ENOMEM : 0;
    for (ssize_t i = 0; rc == 0 && i < len; i++)
        rc = pass_entry_from(mp_obj_list_get(objs, i), fds, n, maps, sizes, &t[i]);
    if (rc < 0) {
        for (size_t k = 0; k < n; k++)
            mp__shm_unmap(maps[k], sizes[k]);
        free(t);
        return rc;
    }
    /* The mappings stay for the child's life; the arena descriptors are
     * not needed any more. */
    for (size_t k = 0; k < n; k++)
        if (maps[k])
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
