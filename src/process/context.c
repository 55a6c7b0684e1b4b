/*
 * context - contexts (Python's get_context), handles made by
 * mp_process_new_ctx, the fork method through a context, the message a
 * forkserver or spawn child receives, and the child's inherited
 * descriptors. Statics start with ctx_.
 */
#include "conn/shmpipe.h"
#include "core/internal.h"
#include "core/io.h"
#include "process/start.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct mp_context ctx_all[] = {
    {MP__START_FORK, "fork"},
    {MP__START_FORKSERVER, "forkserver"},
    {MP__START_SPAWN, "spawn"},
};

/*
 * In a child started through a context: the descriptors its parent passed,
 * by index, and which of them a connection has taken. Process-wide, as
 * Python's forkserver._inherited_fds; set once before the target runs.
 */
static int *ctx_inherited;
static bool *ctx_taken;
static size_t ctx_ninherited;
static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- contexts --------------------------------------------------------------- */

MP_API int mp_context_get(const mp_context **out, const char *method)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!method)
        method = "fork";
    for (size_t i = 0; i < sizeof ctx_all / sizeof ctx_all[0]; i++) {
        if (strcmp(ctx_all[i].name, method) == 0) {
            *out = &ctx_all[i];
            return 0;
        }
    }
    return mp__err(MP_EVALUE, "cannot find context for '%.200s'", method); /* Python's words */
}

MP_API const char *mp_context_start_method(const mp_context *ctx)
{
    return ctx ? ctx->name : NULL;
}

/* ---- handles ---------------------------------------------------------------- */

void mp__start_proc_free(void *data)
{
    struct mp__start_proc *sp = data;
    if (!sp)
        return;
    free(sp->target);
    mp_obj_free(sp->args);
    free(sp);
}

int mp__start_check_target(struct mp__start_proc *sp)
{
    mp_named_target_fn fn;
    int rc = mp__start_prepare(sp);
    if (rc < 0)
        return rc;
    rc = mp_target_lookup(sp->target, &fn);
    return rc == MP_EKEY
               ? mp__err(MP_EKEY, "cannot start: no target registered as '%.200s'", sp->target)
               : rc;
}

/* Make the inherited table: the child's numbers of the passed descriptors. */
static int ctx_set_inherited(const int *fds, size_t n)
{
    int *copy = n ? malloc(n * sizeof *copy) : NULL;
    bool *taken = n ? calloc(n, sizeof *taken) : NULL;
    if (n && (!copy || !taken)) {
        free(copy);
        free(taken);
        return -ENOMEM;
    }
    if (n)
        memcpy(copy, fds, n * sizeof *copy);
    pthread_mutex_lock(&ctx_mu);
    free(ctx_inherited);
    free(ctx_taken);
    ctx_inherited = copy;
    ctx_taken = taken;
    ctx_ninherited = n;
    pthread_mutex_unlock(&ctx_mu);
    return 0;
}

/* The fork method: the child is process.c's own fork; it runs here. */
static int ctx_fork_main(void *arg)
{
    struct mp__start_proc *sp = arg;
    mp_named_target_fn fn;
    if (ctx_set_inherited(sp->fds, sp->nuserfds) < 0 || mp__start_objs_from_fork(sp) < 0 ||
        mp_target_lookup(sp->target, &fn) < 0)
        return 1;
    return fn(sp->args);
}

/* Checked in the parent, then forked by process.c (returns 1). */
static int ctx_fork_start(void *data, const struct mp__popen_child *child, pid_t *pid,
                          int *sentinel)
{
    (void)child;
    (void)pid;
    (void)sentinel;
    int rc = mp__start_check_target(data);
    return rc < 0 ? rc : 1;
}

static const struct mp__popen_ops ctx_fork_ops = {
    .start = ctx_fork_start,
    .poll = NULL,
    .free = mp__start_proc_free,
};

MP_API int mp_process_new_ctx(mp_process **out, const mp_context *ctx, const char *target,
                              const mp_obj *args)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!target)
        return -EINVAL;
    if (!ctx)
        ctx = &ctx_all[0];
    struct mp__start_proc *sp = calloc(1, sizeof *sp);
    if (!sp)
        return -ENOMEM;
    sp->method = ctx->method;
    sp->target = strdup(target);
    sp->args = args ? mp_obj_copy(args) : mp_obj_tuple_new();
    mp_process *p = NULL;
    int rc = sp->target && sp->args ? 0 : -ENOMEM;
    if (rc == 0)
        rc = mp_process_new(&p, sp->method == MP__START_FORK ? ctx_fork_main : NULL, sp);
    if (rc < 0) {
        mp__start_proc_free(sp);
        return rc;
    }
    const struct mp__popen_ops *ops = sp->method == MP__START_FORK         ? &ctx_fork_ops
                                      : sp->method == MP__START_FORKSERVER ? &mp__forkserver_ops
                                                                           : &mp__spawn_ops;
    mp__process_set_popen(p, ops, sp);
    *out = p;
    return 0;
}

struct mp__start_proc *mp__start_of(mp_process *p)
{
    void *data;
    const struct mp__popen_ops *ops = mp__process_popen(p, &data);
    return ops == &ctx_fork_ops || ops == &mp__forkserver_ops || ops == &mp__spawn_ops ? data
                                                                                       : NULL;
}

MP_API ssize_t mp_process_pass_fd(mp_process *p, int fd)
{
    if (!p || fd < 0)
        return -EINVAL;
    struct mp__start_proc *sp = mp__start_of(p);
    if (!sp)
        return mp__err(MP_ESTATE, "descriptors are passed to processes made by mp_process_new_ctx");
    if (mp_process_pid(p) != 0)
        return mp__err(MP_ESTATE, "process has already started");
    if (!mp__fd_is_open(fd))
        return -EBADF;
    if (sp->nuserfds == MP__START_MAX_FDS)
        return mp__err(MP_EVALUE, "too many descriptors passed (at most %d)", MP__START_MAX_FDS);
    sp->fds[sp->nuserfds] = fd;
    sp->nfds = sp->nuserfds + 1; /* the objects' descriptors follow at start */
    return (ssize_t)sp->nuserfds++;
}

MP_API ssize_t mp_process_pass_conn(mp_process *p, const mp_conn *c)
{
    if (!p || !c)
        return -EINVAL;
    if (mp_conn_closed(c))
        return MP_ECLOSED;
    if (!mp__conn_is_shm(c))
        return mp_process_pass_fd(p, mp_conn_fileno(c));
    /* A shared-memory end: its ring's memory, then its doorbell, in two
     * slots side by side (mp_process_inherited_conn takes both). */
    int memfd = -1;
    int rc = mp__shmc_export(c, &memfd);
    if (rc < 0)
        return rc;
    struct mp__start_proc *sp = mp__start_of(p);
    if (sp && mp_process_pid(p) == 0 && sp->nuserfds + 2 > MP__START_MAX_FDS)
        return mp__err(MP_EVALUE,
                       "too many descriptors passed (at most %d; a shared-memory end "
                       "takes two)",
                       MP__START_MAX_FDS);
    ssize_t first = mp_process_pass_fd(p, memfd);
    if (first < 0)
        return first;
    ssize_t second = mp_process_pass_fd(p, mp_conn_fileno(c));
    MP__ASSERT(second == first + 1);
    return second < 0 ? second : first;
}

/* Index k holds a shared-memory end's memory: rebuild the end on it and
 * the doorbell at k + 1 (ctx_taken[k] already set by the caller). */
static int ctx_inherited_shm(mp_conn **out, ssize_t k, int memfd)
{
    pthread_mutex_lock(&ctx_mu);
    bool ok = (size_t)k + 1 < ctx_ninherited && !ctx_taken[k + 1];
    int bell = ok ? ctx_inherited[k + 1] : -1;
    if (ok)
        ctx_taken[k + 1] = true;
    pthread_mutex_unlock(&ctx_mu);
    int rc = ok ? mp__shmc_adopt(out, memfd, bell)
                : mp__err(MP_EPROTO,
                          "inherited descriptor %zd is a shared-memory ring without "
                          "its doorbell after it",
                          k);
    pthread_mutex_lock(&ctx_mu);
    if (rc < 0)
        ctx_taken[k] = false;
    if (rc < 0 && ok)
        ctx_taken[k + 1] = false;
    pthread_mutex_unlock(&ctx_mu);
    return rc;
}

/* ---- the child's side --------------------------------------------------------- */

/* The slot of index i (negative: from the end), or -1; ctx_mu held. */
static ssize_t ctx_slot(ssize_t i)
{
    ssize_t n = (ssize_t)ctx_ninherited;
    if (i < 0)
        i += n;
    return i >= 0 && i < n ? i : -1;
}

MP_API int mp_process_inherited_fd(ssize_t i)
{
    pthread_mutex_lock(&ctx_mu);
    ssize_t k = ctx_slot(i);
    int fd = k >= 0 ? ctx_inherited[k] : -1;
    size_t n = ctx_ninherited;
    pthread_mutex_unlock(&ctx_mu);
    return fd >= 0 ? fd : mp__err(MP_EKEY, "no inherited descriptor %zd (%zu were passed)", i, n);
}

MP_API int mp_process_inherited_conn(mp_conn **out, ssize_t i)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    int fd = mp_process_inherited_fd(i);
    if (fd < 0)
        return fd;
    pthread_mutex_lock(&ctx_mu);
    ssize_t k = ctx_slot(i);
    bool taken = k < 0 || ctx_taken[k];
    if (k >= 0)
        ctx_taken[k] = true;
    pthread_mutex_unlock(&ctx_mu);
    if (taken)
        return mp__err(MP_ESTATE, "inherited descriptor %zd is already a connection", i);
    if (mp__shmc_is_ring_fd(fd))
        return ctx_inherited_shm(out, k, fd);
    bool readable = true, writable = true;
    if (mp__fd_is_socket(fd) != 1) {
        int fl = fcntl(fd, F_GETFL);
        readable = fl >= 0 && (fl & O_ACCMODE) != O_WRONLY;
        writable = fl >= 0 && (fl & O_ACCMODE) != O_RDONLY;
    }
    int rc = mp_conn_from_fd(out, fd, readable, writable);
    if (rc < 0) {
        pthread_mutex_lock(&ctx_mu);
        ctx_taken[k] = false;
        pthread_mutex_unlock(&ctx_mu);
    }
    return rc;
}

/* ---- the message ---------------------------------------------------------------- */

static mp_obj *ctx_message(const struct mp__start_proc *sp, const struct mp__popen_child *child)
{
    mp_obj *fds = mp_obj_list_new();
    for (size_t i = 0; fds && i < sp->nfds; i++) {
        mp_obj *v = mp_obj_int(sp->fds[i]);
        if (!v || mp_obj_list_append(fds, v) < 0) {
            mp_obj_free(v);
            mp_obj_free(fds);
            fds = NULL;
        }
    }
    mp_obj *objs = fds ? mp__start_objs_message(sp) : NULL;
    if (!objs) {
        mp_obj_free(fds);
        return NULL;
    }
    return mp_obj_build("{s:s,s:O,s:s,s:s,s:p,s:N,s:N,s:n}", "target", sp->target, "args", sp->args,
                        "name", child->name, "identity", child->identity, "daemon",
                        (int)child->daemon, "fds", fds, "objs", objs, "nuserfds",
                        (ssize_t)sp->nuserfds);
}

int mp__start_dumps(const struct mp__start_proc *sp, const struct mp__popen_child *child,
                    void **msg, size_t *len)
{
    mp_obj *m = ctx_message(sp, child);
    int rc = m ? mp_obj_dumps(m, msg, len) : -ENOMEM;
    mp_obj_free(m);
    return rc;
}

/* A str field of the message, NUL-terminated and borrowed, or NULL. */
static const char *ctx_field_str(const mp_obj *msg, const char *key)
{
    const char *s = NULL;
    size_t len;
    const mp_obj *v = mp_obj_dict_get_cstr(msg, key);
    if (!v || mp_obj_get_str(v, &s, &len) < 0 || strlen(s) != len)
        return NULL;
    return s;
}

int mp__start_run(const mp_obj *msg, const int *fds, size_t n, int sentinel)
{
    const char *target = ctx_field_str(msg, "target");
    const char *name = ctx_field_str(msg, "name");
    const char *identity = ctx_field_str(msg, "identity");
    const mp_obj *args = mp_obj_dict_get_cstr(msg, "args");
    const mp_obj *daemon = mp_obj_dict_get_cstr(msg, "daemon");
    const mp_obj *nuser_obj = mp_obj_dict_get_cstr(msg, "nuserfds");
    int64_t nuser = (int64_t)n; /* a message without objects: every one is the caller's */
    if (nuser_obj && (mp_obj_get_int(nuser_obj, &nuser) < 0 || nuser < 0 || (uint64_t)nuser > n))
        return 1;
    bool is_daemon = false;
    mp_named_target_fn fn;
    if (!target || !name || !identity || !args || !daemon ||
        mp_obj_get_bool(daemon, &is_daemon) < 0 || ctx_set_inherited(fds, (size_t)nuser) < 0 ||
        mp__start_objs_from_message(mp_obj_dict_get_cstr(msg, "objs"), fds, n) < 0 ||
        mp_target_lookup(target, &fn) < 0)
        return 1;
    mp__process_become_child(name, identity, is_daemon, sentinel);
    return fn(args);
}
