/*
 * forkserver - the forkserver start method: a single-threaded server process
 * forked from the parent early, which forks each child on request and
 * reports its pid and exit code; and the parent's side (Python's
 * forkserver.py and popen_forkserver.py). Statics start with fs_.
 *
 * The conversation, on private AF_UNIX socketpairs (no name on disk, no
 * authkey needed: only the two processes hold the ends):
 *   control  the parent's end fs_ctl, the server's end: one request per
 *            child, a struct fs_req with SCM_RIGHTS [sock, passed fds...];
 *   sock     a fresh pair per child: the parent writes the child's message
 *            (a framed pickle, start.h) on its end, which the child reads
 *            from the server's end after fork; the server writes on it the
 *            child's pid (int32, or a negative status when it could not
 *            fork) and later its exit code (int32, -N for signal N), then
 *            closes it. The parent's end is the handle's sentinel.
 * The server never reads the message (the child does), so nothing a client
 * sends sizes anything the server allocates.
 *
 * The server ends once the control socket reaches end of file (the parent
 * closes it in its exit procedure) and its children have ended, so the
 * parent's exit procedure still learns their exit codes; or at once, leaving
 * its children running, when the parent died without that procedure.
 */
#include "core/internal.h"
#include "core/io.h"
#include "process/start.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FS_MAGIC 0x6d70667au /* "mpfz" */
/* How long start waits for the server to answer with a pid. */
#define FS_START_TIMEOUT 30.0
/* How long a child waits for its message. */
#define FS_MESSAGE_TIMEOUT 60.0

struct fs_req {
    uint32_t magic;
    uint32_t nfds; /* passed descriptors, after the child's sock */
};

/* The parent's side: this process's server (Python's module-level
 * _forkserver), under fs_mu. */
static pthread_mutex_t fs_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t fs_owner; /* the process fs_ctl and fs_server belong to; 0: none */
static int fs_ctl = -1;
static mp_process *fs_server;
static pid_t fs_hooked; /* the process whose exit procedure has fs_exit_hook */

/* ---- the server ------------------------------------------------------------------ */

struct fs_kid {
    mp_process *proc;
    int sock;   /* the server's end of the child's pair */
    bool quiet; /* its sentinel fired but it still runs (it closed the
                 * descriptor itself): watched by polling instead */
};

struct fs_srv {
    int ctl;
    pid_t parent; /* the process the server serves */
    struct fs_kid *kids;
    size_t n, cap;
};

/* What a child forked by the server starts from (on the server's stack,
 * copied into the child by fork). */
struct fs_child_arg {
    struct fs_srv *srv;
    int sock;
    int fds[MP__START_MAX_FDS];
    size_t nfds;
};

static void fs_send_int(int sock, int32_t v)
{
    (void)mp__send_nowait(sock, &v, sizeof v);
}

/* In the child: drop the server's descriptors, read the message, run. */
static int fs_child_main(void *arg)
{
    struct fs_child_arg *a = arg;
    mp__close(a->srv->ctl);
    for (size_t i = 0; i < a->srv->n; i++)
        mp__close(a->srv->kids[i].sock);
    mp_conn *c = NULL;
    mp_obj *msg = NULL;
    if (mp_conn_from_fd(&c, a->sock, true, false) < 0)
        return 1;
    int rc = mp_conn_recv(c, &msg, FS_MESSAGE_TIMEOUT);
    mp_conn_free(c);
    if (rc < 0)
        return 1;
    int code = mp__start_run(msg, a->fds, a->nfds, mp__process_sentinel_fd());
    mp_obj_free(msg);
    return code;
}

/* One request: fork the child, hand it its descriptors, answer its pid. */
static void fs_fork_child(struct fs_srv *srv, struct fs_child_arg *a)
{
    mp_process *proc = NULL;
    int rc = 0;
    if (srv->n == srv->cap) {
        struct fs_kid *k = mp__array_grow(srv->kids, &srv->cap, sizeof *k, 8);
        rc = k ? 0 : -ENOMEM;
        if (k)
            srv->kids = k;
    }
    if (rc == 0)
        rc = mp_process_new(&proc, fs_child_main, a);
    if (rc == 0)
        rc = mp_process_start(proc);
    for (size_t i = 0; i < a->nfds; i++)
        mp__close(a->fds[i]); /* the child has its copies */
    if (rc < 0) {
        mp_process_free(proc);
        fs_send_int(a->sock, rc);
        mp__close(a->sock);
        return;
    }
    fs_send_int(a->sock, (int32_t)mp_process_pid(proc));
    srv->kids[srv->n++] = (struct fs_kid){.proc = proc, .sock = a->sock};
}

/* Read one request. Returns false at end of file (or a broken socket). */
static bool fs_request(struct fs_srv *srv)
{
    struct fs_req req;
    int fds[MP__START_MAX_FDS + 1];
    size_t n = 0;
    bool ctrunc = false;
    ssize_t r = mp__recv_fds(srv->ctl, &req, sizeof req, fds, MP__START_MAX_FDS + 1, &n, &ctrunc,
                             false, MP__NO_DEADLINE);
    if (r <= 0) {
        for (size_t i = 0; i < n; i++)
            mp__close(fds[i]);
        return false;
    }
    if (r != (ssize_t)sizeof req || ctrunc || req.magic != FS_MAGIC || n == 0 ||
        req.nfds != n - 1) {
        /* Not ours: close whatever came, so nothing leaks; a sock among
         * them tells its sender (end of file). */
        for (size_t i = 0; i < n; i++)
            mp__close(fds[i]);
        return true;
    }
    struct fs_child_arg a = {.srv = srv, .sock = fds[0], .nfds = n - 1};
    memcpy(a.fds, fds + 1, (n - 1) * sizeof(int));
    fs_fork_child(srv, &a);
    return true;
}

/* Kid i's sentinel fired or it is watched by polling: if it has ended,
 * reap it and tell the parent its exit code. */
static void fs_reap(struct fs_srv *srv, size_t i)
{
    struct fs_kid *k = &srv->kids[i];
    int code = 255;
    /* The sentinel fires a moment before the kernel lets us reap; a quiet
     * kid is only looked at. */
    int alive = mp_process_is_alive(k->proc);
    if (alive == 1 && !k->quiet)
        alive = mp_process_join(k->proc, 0.05) == MP_ETIMEDOUT;
    if (alive == 1) {
        k->quiet = true;
        return;
    }
    (void)mp_process_exitcode(k->proc, &code);
    fs_send_int(k->sock, code);
    mp__close(k->sock);
    mp_process_free(k->proc);
    srv->kids[i] = srv->kids[--srv->n];
}

/* The server's loop: ends of children first, then requests. */
static int fs_serve(struct fs_srv *srv)
{
    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    while (srv->ctl >= 0 || srv->n > 0) {
        /* The parent gone without its exit procedure (killed, or _exit):
         * nobody will ask for the exit codes. Leave the children running,
         * as Python's fork server does once its parent is gone. */
        if (srv->ctl < 0 && getppid() != srv->parent)
            break;
        size_t need = srv->n + 1;
        if (need > pcap) {
            struct pollfd *more = realloc(pfds, need * 2 * sizeof *more);
            if (!more) {
                mp__sleep(0.01);
                continue;
            }
            pfds = more;
            pcap = need * 2;
        }
        size_t k = 0;
        bool quiet = false;
        for (size_t i = 0; i < srv->n; i++) {
            quiet |= srv->kids[i].quiet;
            pfds[k++] = (struct pollfd){
                .fd = srv->kids[i].quiet ? -1 : mp_process_sentinel(srv->kids[i].proc),
                .events = POLLIN};
        }
        if (srv->ctl >= 0)
            pfds[k++] = (struct pollfd){.fd = srv->ctl, .events = POLLIN};
        int rc = mp__poll(pfds, (nfds_t)k, mp__deadline(quiet ? 0.05 : 1.0));
        if (rc < 0) { /* no memory for poll's table, say: try again shortly */
            mp__sleep(0.01);
            continue;
        }
        bool ctl_ready = srv->ctl >= 0 && pfds[k - 1].revents;
        /* Backwards: fs_reap moves the last kid into the freed place. */
        for (size_t i = srv->n; i-- > 0;)
            if (pfds[i].revents || srv->kids[i].quiet)
                fs_reap(srv, i);
        if (ctl_ready && !fs_request(srv)) {
            mp__close(srv->ctl);
            srv->ctl = -1;
        }
    }
    for (size_t i = 0; i < srv->n; i++) {
        mp__close(srv->kids[i].sock);
        mp_process_free(srv->kids[i].proc); /* detached: not joined at our exit */
    }
    free(pfds);
    free(srv->kids);
    return 0;
}

static int fs_server_main(void *arg)
{
    struct fs_srv srv = {.ctl = (int)(intptr_t)arg, .parent = getppid()};
    /* The parent's client state is not the server's (nor its children's):
     * forget it before its descriptor is closed and its number reused. */
    fs_ctl = -1;
    fs_server = NULL;
    fs_owner = 0;
    fs_hooked = 0;
    /* Hold nothing of the parent's: a pipe whose reader waits for end of
     * file must not stay open here (the parent's control end included). */
    int keep[2] = {srv.ctl, mp__process_sentinel_fd()};
    mp__close_fds_except(keep, keep[1] >= 0 ? 2 : 1);
    return fs_serve(&srv);
}

/* ---- the parent's side ------------------------------------------------------------ */

/* The exit procedure: let the server go once its children have ended
 * (process.c joins it with the other children). */
static void fs_exit_hook(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fs_mu);
    if (fs_owner == getpid() && fs_ctl >= 0) {
        mp__close(fs_ctl);
        fs_ctl = -1; /* fs_server stays: the exit procedure joins it */
    }
    pthread_mutex_unlock(&fs_mu);
}

/* A fork from any thread must not copy fs_mu held (a child that starts a
 * server of its own would wait on it forever): fs_mu is never held across
 * a call into process.c, so taking it here cannot deadlock. */
static void fs_atfork_prepare(void)
{
    pthread_mutex_lock(&fs_mu);
}

static void fs_atfork_parent(void)
{
    pthread_mutex_unlock(&fs_mu);
}

static void fs_atfork_child(void)
{
    /* This thread took fs_mu in prepare: released as the lock it is, so
     * that ThreadSanitizer's lock-order graph does not count it held. */
    (void)pthread_mutex_unlock(&fs_mu);
}

static pthread_once_t fs_once = PTHREAD_ONCE_INIT;

static void fs_setup(void)
{
    (void)mp__atfork_register(fs_atfork_prepare, fs_atfork_parent, fs_atfork_child);
}

/* Fork a server; install it unless another thread did meanwhile. */
static int fs_launch(void)
{
    int sv[2];
    int rc = mp__socketpair(sv);
    if (rc < 0)
        return rc;
    mp_process *srv = NULL;
    rc = mp_process_new(&srv, fs_server_main, (void *)(intptr_t)sv[1]);
    if (rc == 0) {
        mp__process_uncount(srv);
        rc = mp_process_set_name(srv, "ForkServer");
    }
    if (rc == 0)
        rc = mp_process_start(srv);
    mp__close(sv[1]);
    pthread_mutex_lock(&fs_mu);
    bool hooked = fs_hooked == getpid();
    pthread_mutex_unlock(&fs_mu);
    if (rc == 0 && !hooked) { /* without the hook the server would outlive our exit */
        int hook = mp__exit_hook_add(fs_exit_hook, NULL, 1);
        rc = hook < 0 ? hook : 0;
    }
    mp_process *old = NULL;
    if (rc == 0) {
        pthread_mutex_lock(&fs_mu);
        fs_hooked = getpid();
        if (fs_owner == getpid() && fs_ctl >= 0) {
            old = srv; /* lost the race: ours goes */
        } else {
            old = fs_server; /* a server of ours that has been let go */
            fs_server = srv;
            fs_ctl = sv[0];
            fs_owner = getpid();
            sv[0] = -1;
        }
        pthread_mutex_unlock(&fs_mu);
    } else {
        old = srv;
    }
    if (sv[0] >= 0)
        mp__close(sv[0]); /* a server not installed sees end of file and ends */
    if (old && mp_process_pid(old) > 0)
        (void)mp_process_join(old, 10.0);
    mp_process_free(old);
    return rc;
}

MP_API int mp_forkserver_start(void)
{
    (void)pthread_once(&fs_once, fs_setup);
    pthread_mutex_lock(&fs_mu);
    bool ours = fs_owner == getpid() && fs_ctl >= 0;
    int old_ctl = -1;
    mp_process *old_srv = NULL;
    if (!ours && fs_owner != getpid()) {
        /* Inherited from the process that forked us: its server, not ours. */
        old_ctl = fs_ctl;
        old_srv = fs_server;
        fs_ctl = -1;
        fs_server = NULL;
        fs_owner = 0;
    }
    pthread_mutex_unlock(&fs_mu);
    if (old_ctl >= 0)
        mp__close(old_ctl);
    mp_process_free(old_srv); /* our copy of the parent's handle */
    return ours ? 0 : fs_launch();
}

/* Read a whole int32 from the child's sock before the deadline. Returns 0,
 * -EPIPE at end of file, MP_ETIMEDOUT, or -errno. */
static int fs_read_int(int sock, int32_t *v, int64_t deadline)
{
    unsigned char b[4];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = mp__read_some(sock, b + got, sizeof b - got, deadline, true);
        if (r == 0)
            return -EPIPE;
        if (r < 0)
            return (int)r;
        got += (size_t)r;
    }
    memcpy(v, b, sizeof b);
    return 0;
}

/* Send the request; then the message, on the child's sock. */
static int fs_request_child(const struct mp__start_proc *sp, int sock_parent, int sock_child,
                            const void *msg, size_t len)
{
    struct fs_req req = {.magic = FS_MAGIC, .nfds = (uint32_t)sp->nfds};
    int fds[MP__START_MAX_FDS + 1];
    fds[0] = sock_child;
    memcpy(fds + 1, sp->fds, sp->nfds * sizeof(int));
    int rc;
    /* A server that died (killed, say) is noticed here and replaced once,
     * as Python's ensure_running starts a new one. */
    for (int attempt = 0;; attempt++) {
        if ((rc = mp_forkserver_start()) < 0)
            return rc;
        pthread_mutex_lock(&fs_mu);
        int ctl = fs_ctl;
        rc = ctl >= 0 ? mp__send_fds(ctl, &req, sizeof req, fds, sp->nfds + 1) : -EPIPE;
        bool gone = rc == -EPIPE || rc == -ECONNRESET;
        if (gone && fs_ctl == ctl && ctl >= 0) {
            mp__close(ctl); /* mp_forkserver_start launches another */
            fs_ctl = -1;
        }
        pthread_mutex_unlock(&fs_mu);
        if (rc == 0)
            break;
        if (!gone)
            return rc;
        if (attempt == 1)
            return mp__err(-EPIPE, "the fork server is gone");
    }
    /* The connection owns a duplicate, so the sentinel stays the handle's. */
    int copy = mp__dup_cloexec(sock_parent);
    if (copy < 0)
        return copy;
    mp_conn *c = NULL;
    rc = mp_conn_from_fd(&c, copy, false, true);
    if (rc < 0) {
        mp__close(copy);
        return rc;
    }
    rc = mp_conn_send_bytes(c, msg, len);
    mp_conn_free(c);
    /* A failed send means the child went before reading: its pid and exit
     * code still come, so it is tracked like any other. */
    (void)rc;
    return 0;
}

static int fs_start(void *data, const struct mp__popen_child *child, pid_t *pid, int *sentinel)
{
    struct mp__start_proc *sp = data;
    int rc = mp__start_check_target(sp);
    if (rc < 0)
        return rc;
    void *msg = NULL;
    size_t len = 0;
    rc = mp__start_dumps(sp, child, &msg, &len);
    if (rc < 0)
        return rc;
    int pair[2] = {-1, -1};
    rc = mp__socketpair(pair);
    if (rc == 0) {
        rc = fs_request_child(sp, pair[0], pair[1], msg, len);
        mp__close(pair[1]);
    }
    free(msg);
    int32_t v = 0;
    if (rc == 0) {
        rc = fs_read_int(pair[0], &v, mp__deadline(FS_START_TIMEOUT));
        if (rc == -EPIPE)
            rc = mp__err(-EPIPE, "the fork server is gone");
        else if (rc == 0 && v <= 0)
            rc = v < 0 ? mp__err(v, "the fork server could not fork: %s", mp_strerror(v)) : -EPROTO;
    }
    if (rc < 0) {
        if (pair[0] >= 0)
            mp__close(pair[0]);
        return rc;
    }
    *pid = (pid_t)v;
    *sentinel = pair[0];
    return 0;
}

/* The exit code arrives on the sentinel once the server has reaped the
 * child; end of file without it means the server died (Python: 255). */
static int fs_poll(void *data, int sentinel, int *code)
{
    struct mp__start_proc *sp = data;
    while (sp->ncode < sizeof sp->code) {
        ssize_t r = mp__recv_nowait(sentinel, sp->code + sp->ncode, sizeof sp->code - sp->ncode);
        if (r == -EAGAIN)
            return 0;
        if (r <= 0) {
            *code = 255;
            return 1;
        }
        sp->ncode += (size_t)r;
    }
    int32_t v;
    memcpy(&v, sp->code, sizeof v);
    *code = v;
    return 1;
}

const struct mp__popen_ops mp__forkserver_ops = {
    .start = fs_start,
    .poll = fs_poll,
    .free = mp__start_proc_free,
};
