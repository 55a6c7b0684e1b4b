/*
 * io - raw descriptor system calls, solved once (see io.h): time and
 * deadlines, descriptors, waiting, whole reads and writes, sockets, random
 * bytes. Statics start with io_.
 *
 * _GNU_SOURCE is needed for pipe2(); getrandom() is Linux (glibc 2.25+) and
 * the BSDs; everything else here is POSIX.
 */
#define _GNU_SOURCE
#include "core/io.h"

#include <mpipc/common.h>

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* ---- time ---------------------------------------------------------------- */

int64_t mp__now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t mp__deadline(double timeout)
{
    if (timeout < 0 || isnan(timeout) || timeout > 1e9)
        return MP__NO_DEADLINE; /* 1e9 s is 31 years: treat as forever */
    return mp__now_ns() + (int64_t)(timeout * 1e9);
}

bool mp__deadline_passed(int64_t deadline)
{
    return deadline != MP__NO_DEADLINE && mp__now_ns() >= deadline;
}

double mp__deadline_left(int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE)
        return MP_FOREVER;
    int64_t left = deadline - mp__now_ns();
    return left > 0 ? (double)left / 1e9 : 0.0;
}

int mp__deadline_ms(int64_t deadline)
{
    if (deadline == MP__NO_DEADLINE)
        return -1;
    int64_t left = deadline - mp__now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000; /* round up: never wake early */
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

struct timespec mp__deadline_timespec(int64_t deadline)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline / 1000000000);
    ts.tv_nsec = (long)(deadline % 1000000000);
    return ts;
}

void mp__sleep(double seconds)
{
    int64_t deadline = mp__deadline(seconds);
    for (;;) {
        int64_t left = deadline - mp__now_ns();
        if (left <= 0)
            return;
        struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
        if (nanosleep(&ts, NULL) == 0)
            return;
    }
}

/* ---- descriptors ---------------------------------------------------------- */

int mp__set_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0)
        return MP__NEG_ERRNO();
    if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
        return MP__NEG_ERRNO();
    return 0;
}

int mp__close(int fd)
{
    int saved = errno;
    int rc = close(fd);
    /* Linux always releases the descriptor, even when close reports EINTR;
     * retrying could close one that another thread has just been given. */
    if (rc < 0 && errno != EINTR)
        rc = MP__NEG_ERRNO();
    else
        rc = 0;
    errno = saved;
    return rc;
}

/* Mark both ends of a new pair close-on-exec; on failure close both. The
 * fallback of the calls below, where the atomic flag is missing. */
static int io_cloexec_pair(int fds[2])
{
    int rc = mp__set_cloexec(fds[0]);
    if (rc == 0)
        rc = mp__set_cloexec(fds[1]);
    if (rc < 0) {
        mp__close(fds[0]);
        mp__close(fds[1]);
    }
    return rc;
}

int mp__pipe(int fds[2])
{
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    if (pipe2(fds, O_CLOEXEC) == 0)
        return 0;
    if (errno != ENOSYS)
        return MP__NEG_ERRNO();
#endif
    /* Fallback: a fork in another thread between pipe() and fcntl() could leak
     * the descriptors into an exec'd program; only reached on old systems. */
    if (pipe(fds) < 0)
        return MP__NEG_ERRNO();
    return io_cloexec_pair(fds);
}

int mp__socketpair(int sv[2])
{
#ifdef SOCK_CLOEXEC
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0)
        return 0;
    if (errno != EINVAL && errno != EPROTONOSUPPORT)
        return MP__NEG_ERRNO();
#endif
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return MP__NEG_ERRNO();
    return io_cloexec_pair(sv);
}

int mp__fd_is_socket(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return MP__NEG_ERRNO();
    return S_ISSOCK(st.st_mode) ? 1 : 0;
}

bool mp__fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* ---- waiting -------------------------------------------------------------- */

int mp__poll(struct pollfd *fds, nfds_t n, int64_t deadline)
{
    for (;;) {
        int rc = poll(fds, n, mp__deadline_ms(deadline));
        if (rc >= 0)
            return rc;
        if (errno != EINTR)
            return MP__NEG_ERRNO();
        if (mp__deadline_passed(deadline))
            return 0;
    }
}

/* Wait for one event on one descriptor: 1 ready, MP_ETIMEDOUT, or -errno. */
int mp__wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd p = {.fd = fd, .events = events, .revents = 0};
    int rc = mp__poll(&p, 1, deadline);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return MP_ETIMEDOUT;
    if (p.revents & POLLNVAL)
        return -EBADF;
    return 1; /* readable, writable, hang-up or error: the next call tells which */
}

/* ---- reading -------------------------------------------------------------- */

ssize_t mp__read_some(int fd, void *buf, size_t n, int64_t deadline, bool is_socket)
{
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    /* With a deadline, a pipe is polled before it is read: a pipe has no
     * per-call non-blocking flag, and setting O_NONBLOCK would change the
     * open file description that other processes (perhaps Python ones) share. */
    bool poll_first = deadline != MP__NO_DEADLINE && !is_socket;
    for (;;) {
        if (poll_first) {
            int rc = mp__wait_fd(fd, POLLIN, deadline);
            if (rc < 0)
                return rc;
        }
        ssize_t r;
        if (is_socket)
            r = recv(fd, buf, n, deadline == MP__NO_DEADLINE ? 0 : MSG_DONTWAIT);
        else
            r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* No data yet (or a descriptor someone made non-blocking). */
            if (!poll_first) {
                int rc = mp__wait_fd(fd, POLLIN, deadline);
                if (rc < 0)
                    return rc;
            }
            continue;
        }
        return MP__NEG_ERRNO();
    }
}

/* ---- writing -------------------------------------------------------------- */

/*
 * Writing to a pipe whose readers are gone raises SIGPIPE, whose default
 * action kills the process. The library may not change the disposition, so
 * it blocks SIGPIPE in this thread for the write and, if the write failed with
 * EPIPE, takes the signal it raised off the pending set before unblocking.
 * A SIGPIPE that was already pending before (the thread had it blocked) is
 * left alone.
 */
struct io_sigpipe_guard {
    sigset_t old;
    bool was_blocked;
    bool was_pending;
};

static void io_sigpipe_enter(struct io_sigpipe_guard *g)
{
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    (void)pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
    g->was_blocked = sigismember(&g->old, SIGPIPE) == 1;
    g->was_pending = false;
    if (g->was_blocked) {
        sigset_t pending;
        if (sigpending(&pending) == 0)
            g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    }
}

static void io_sigpipe_leave(struct io_sigpipe_guard *g, bool raised)
{
    int saved = errno;
    if (raised && !g->was_pending) {
        sigset_t pipe_set;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    if (!g->was_blocked)
        (void)pthread_sigmask(SIG_SETMASK, &g->old, NULL);
    errno = saved;
}

int mp__write_all(int fd, struct iovec *iov, int iovcnt, bool is_socket, bool sigpipe_blocked)
{
    struct io_sigpipe_guard guard;
    bool guarded = !is_socket && !sigpipe_blocked;
    if (guarded)
        io_sigpipe_enter(&guard);

    int rc = 0;
    while (iovcnt > 0) {
        if (iov->iov_len == 0) {
            iov++;
            iovcnt--;
            continue;
        }
        int cnt = iovcnt > IOV_MAX ? IOV_MAX : iovcnt;
        ssize_t w;
        if (is_socket) {
            struct msghdr msg = {0};
            msg.msg_iov = iov;
            msg.msg_iovlen = (size_t)cnt;
            w = sendmsg(fd, &msg, MSG_NOSIGNAL);
        } else {
            w = writev(fd, iov, cnt);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* A descriptor someone made non-blocking: wait for room. */
                int wr = mp__wait_fd(fd, POLLOUT, MP__NO_DEADLINE);
                if (wr < 0) {
                    rc = wr;
                    break;
                }
                continue;
            }
            rc = MP__NEG_ERRNO();
            break;
        }
        size_t done = (size_t)w;
        while (done > 0 && iovcnt > 0) {
            if (done >= iov->iov_len) {
                done -= iov->iov_len;
                iov++;
                iovcnt--;
            } else {
                iov->iov_base = (char *)iov->iov_base + done;
                iov->iov_len -= done;
                done = 0;
            }
        }
    }

    if (guarded)
        io_sigpipe_leave(&guard, rc == -EPIPE);
    return rc;
}

/* ---- non-blocking pipes ------------------------------------------------------ */

static int io_set_nonblocking(int fd, bool on);

int mp__set_nonblock(int fd)
{
    return io_set_nonblocking(fd, true);
}

size_t mp__pipe_capacity(int fd)
{
#ifdef F_GETPIPE_SZ
    int n = fcntl(fd, F_GETPIPE_SZ);
    if (n > 0)
        return (size_t)n;
#else
    (void)fd;
#endif
    return 65536;
}

ssize_t mp__writev_once(int fd, const struct iovec *iov, int iovcnt, bool sigpipe_blocked)
{
    struct io_sigpipe_guard guard;
    if (!sigpipe_blocked)
        io_sigpipe_enter(&guard);
    ssize_t w;
    do
        w = writev(fd, iov, iovcnt);
    while (w < 0 && errno == EINTR);
    ssize_t rc = w >= 0 ? w : (errno == EWOULDBLOCK ? -EAGAIN : MP__NEG_ERRNO());
    if (!sigpipe_blocked)
        io_sigpipe_leave(&guard, rc == -EPIPE);
    return rc;
}

ssize_t mp__bytes_ready(int fd)
{
    int n = 0;
    if (ioctl(fd, FIONREAD, &n) < 0)
        return MP__NEG_ERRNO();
    return n;
}

ssize_t mp__readv_once(int fd, const struct iovec *iov, int iovcnt)
{
    ssize_t r;
    do
        r = readv(fd, iov, iovcnt);
    while (r < 0 && errno == EINTR);
    if (r >= 0)
        return r;
    return errno == EWOULDBLOCK ? -EAGAIN : MP__NEG_ERRNO();
}

/* ---- anonymous files ---------------------------------------------------------- */

int mp__anon_file(const char *name)
{
#if defined(__linux__) && defined(MFD_CLOEXEC)
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0)
        return fd;
    if (errno != ENOSYS && errno != EINVAL)
        return MP__NEG_ERRNO();
#endif
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%s-XXXXXX", dir, name);
    if (len < 0 || (size_t)len >= sizeof path)
        return -ENAMETOOLONG;
    int fd2 = mkostemp(path, O_CLOEXEC);
    if (fd2 < 0)
        return MP__NEG_ERRNO();
    (void)unlink(path);
    return fd2;
}

int mp__pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return MP__NEG_ERRNO();
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int mp__pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return MP__NEG_ERRNO();
        }
        if (r == 0)
            return -EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int mp__truncate(int fd, uint64_t len)
{
    int rc;
    do
        rc = ftruncate(fd, (off_t)len);
    while (rc < 0 && errno == EINTR);
    return rc == 0 ? 0 : MP__NEG_ERRNO();
}

/* ---- sockets -------------------------------------------------------------- */

static int io_set_nonblocking(int fd, bool on)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return MP__NEG_ERRNO();
    int want = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    if (want != flags && fcntl(fd, F_SETFL, want) < 0)
        return MP__NEG_ERRNO();
    return 0;
}

/* socket() with close-on-exec from birth where the system allows it. */
static int io_new_socket(int family)
{
#ifdef SOCK_CLOEXEC
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 || (errno != EINVAL && errno != EPROTONOSUPPORT))
        return fd >= 0 ? fd : MP__NEG_ERRNO();
#endif
    fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return MP__NEG_ERRNO();
    int rc = mp__set_cloexec(fd);
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    return fd;
}

static void io_set_nodelay(int fd, int family)
{
    if (family == AF_INET || family == AF_INET6) {
        int one = 1;
        /* Best effort: a message is one write, this only trims latency. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

static int io_unix_sockaddr(const struct mp__sockaddr *a, struct sockaddr_un *sun, socklen_t *len)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    size_t n = strlen(a->path);
    size_t room = sizeof sun->sun_path - (a->abstract ? 1 : 0) - 1;
    if (n == 0 || n > room)
        return -ENAMETOOLONG;
    if (a->abstract) {
        memcpy(sun->sun_path + 1, a->path, n); /* sun_path[0] == '\0' */
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        memcpy(sun->sun_path, a->path, n);
        *len = (socklen_t)sizeof *sun;
    }
    return 0;
}

static int io_resolve(const struct mp__sockaddr *a, bool passive, struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    char port[16];
    snprintf(port, sizeof port, "%u", a->port);
    int rc = getaddrinfo(a->host[0] ? a->host : NULL, port, &hints, res);
    if (rc == 0)
        return 0;
    if (rc == EAI_SYSTEM)
        return MP__NEG_ERRNO();
    return rc == EAI_MEMORY ? -ENOMEM : -ENOENT;
}

/* The numeric text form of a socket address, as "tcp:host:port" /
 * "unix:path"; also fills an mp__sockaddr when out is not NULL. */
static void io_describe(const struct sockaddr *sa, socklen_t len, char *text, size_t cap,
                        struct mp__sockaddr *out)
{
    char host[256] = "", port[16] = "";
    if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t n = len > offsetof(struct sockaddr_un, sun_path)
                       ? (size_t)len - offsetof(struct sockaddr_un, sun_path)
                       : 0;
        bool abstract = n > 0 && sun->sun_path[0] == '\0';
        const char *p = sun->sun_path + (abstract ? 1 : 0);
        size_t plen = abstract ? n - 1 : strnlen(sun->sun_path, n);
        if (text)
            snprintf(text, cap, "unix:%s%.*s", abstract ? "@" : "", (int)plen, p);
        if (out) {
            memset(out, 0, sizeof *out);
            out->family = AF_UNIX;
            out->abstract = abstract;
            snprintf(out->path, sizeof out->path, "%.*s", (int)plen, p);
        }
        return;
    }
    (void)getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                      NI_NUMERICHOST | NI_NUMERICSERV);
    bool v6 = sa->sa_family == AF_INET6;
    if (text)
        snprintf(text, cap, "tcp:%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (out) {
        memset(out, 0, sizeof *out);
        out->family = sa->sa_family;
        snprintf(out->host, sizeof out->host, "%s", host);
        out->port = (unsigned)strtoul(port, NULL, 10);
    }
}

/* A socket of the family listening on one address: the descriptor, or
 * -errno. */
static int io_listen_one(int family, const struct sockaddr *sa, socklen_t len, int backlog)
{
    int fd = io_new_socket(family);
    if (fd < 0)
        return fd;
    if (family != AF_UNIX) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    int rc = 0;
    if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0 ||
        (rc = io_set_nonblocking(fd, true)) < 0) {
        rc = rc < 0 ? rc : MP__NEG_ERRNO();
        mp__close(fd);
        return rc;
    }
    return fd;
}

int mp__accept(int listen_fd, int64_t deadline, char *peer, size_t peer_cap)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd;
#if defined(__linux__) || defined(__FreeBSD__)
        fd = accept4(listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
#else
        fd = accept(listen_fd, (struct sockaddr *)&ss, &sl);
        if (fd >= 0 && mp__set_cloexec(fd) < 0) {
            mp__close(fd);
            fd = -1;
        }
#endif
        if (fd >= 0) {
            /* On some systems an accepted socket inherits O_NONBLOCK. */
            int rc = io_set_nonblocking(fd, false);
            if (rc < 0) {
                mp__close(fd);
                return rc;
            }
            io_set_nodelay(fd, ss.ss_family);
            if (peer)
                io_describe((struct sockaddr *)&ss, sl, peer, peer_cap, NULL);
            return fd;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return MP__NEG_ERRNO();
        /* The listening socket is non-blocking, so a connection another
         * process accepted first cannot leave this call blocked. */
        int rc = mp__wait_fd(listen_fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

/* Connect fd to one address before the deadline; fd is non-blocking. */
static int io_connect_wait(int fd, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    for (;;) {
        if (connect(fd, sa, len) == 0 || errno == EISCONN)
            return 0;
        if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
            /* The listener's backlog is full: retry until the deadline. */
            if (mp__deadline_passed(deadline))
                return MP_ETIMEDOUT;
            mp__sleep(0.001);
            continue;
        }
        /* EINTR: the connection goes on in the background, as EINPROGRESS
         * says; a second connect() would fail with EALREADY. */
        if (errno != EINPROGRESS && errno != EINTR)
            return MP__NEG_ERRNO();
        int rc = mp__wait_fd(fd, POLLOUT, deadline);
        if (rc < 0)
            return rc;
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            return MP__NEG_ERRNO();
        return err ? -err : 0;
    }
}

/* A socket of the family connected to one address before the deadline,
 * blocking again once connected: the descriptor, or -errno / MP_ETIMEDOUT. */
static int io_connect_one(int family, const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    int fd = io_new_socket(family);
    if (fd < 0)
        return fd;
    int rc;
    if ((rc = io_set_nonblocking(fd, true)) < 0 ||
        (rc = io_connect_wait(fd, sa, len, deadline)) < 0 ||
        (rc = io_set_nonblocking(fd, false)) < 0) {
        mp__close(fd);
        return rc;
    }
    io_set_nodelay(fd, family);
    return fd;
}

/* What to do with each address io_open tries: listen on it, or connect
 * to it before a deadline. */
struct io_try {
    bool listen;
    int backlog;
    int64_t deadline;
};

static int io_try_one(const struct io_try *t, int family, const struct sockaddr *sa, socklen_t len)
{
    return t->listen ? io_listen_one(family, sa, len, t->backlog)
                     : io_connect_one(family, sa, len, t->deadline);
}

/*
 * A socket listening on, or connected to, a: its AF_UNIX path, or each
 * address its TCP host resolves to, in order, until one works. Returns the
 * descriptor, or the last failure (`none` when the name resolved to no
 * address); a timeout ends the search at once.
 */
static int io_open(const struct mp__sockaddr *a, const struct io_try *t, int none)
{
    if (a->family == AF_UNIX) {
        struct sockaddr_un sun;
        socklen_t len;
        int rc = io_unix_sockaddr(a, &sun, &len);
        if (rc < 0)
            return rc;
        return io_try_one(t, AF_UNIX, (struct sockaddr *)&sun, len);
    }
    struct addrinfo *res;
    int rc = io_resolve(a, t->listen, &res);
    if (rc < 0)
        return rc;
    rc = none;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = io_try_one(t, ai->ai_family, ai->ai_addr, ai->ai_addrlen);
        if (rc >= 0 || rc == MP_ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

int mp__listen(const struct mp__sockaddr *a, int backlog, struct mp__sockaddr *bound)
{
    struct io_try t = {.listen = true, .backlog = backlog, .deadline = MP__NO_DEADLINE};
    int fd = io_open(a, &t, -EADDRNOTAVAIL);
    if (fd >= 0 && bound) {
        /* TCP: the address the socket got (port 0 picks one). */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (a->family != AF_UNIX && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            io_describe((struct sockaddr *)&ss, sl, NULL, 0, bound);
        else
            *bound = *a;
    }
    return fd;
}

int mp__connect(const struct mp__sockaddr *a, int64_t deadline)
{
    struct io_try t = {.listen = false, .backlog = 0, .deadline = deadline};
    return io_open(a, &t, -ECONNREFUSED);
}

/* getrandom(2) first: no descriptor, works in a chroot without /dev, and
 * never returns predictable bytes. GRND_NONBLOCK, as CPython seeds its hash:
 * before the kernel's pool is initialised (early boot) it fails with EAGAIN
 * instead of blocking, and /dev/urandom serves. ENOSYS (kernel < 3.17) and
 * EPERM (a seccomp filter) also fall back to /dev/urandom. */
int mp__random_bytes(void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom((char *)buf + got, n - got, GRND_NONBLOCK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got == n)
        return 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return MP__NEG_ERRNO();
    got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int rc = r < 0 ? MP__NEG_ERRNO() : -EIO;
            mp__close(fd);
            return rc;
        }
        got += (size_t)r;
    }
    mp__close(fd);
    return 0;
}

/* ---- helpers for the manager ---------------------------------------------- */

int mp__dup_cloexec(int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return d >= 0 ? d : MP__NEG_ERRNO();
}

static ssize_t recv_nowait_flags(int fd, void *buf, size_t n, int flags)
{
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    for (;;) {
        ssize_t r = recv(fd, buf, n, MSG_DONTWAIT | flags);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return MP__NEG_ERRNO();
    }
}

ssize_t mp__recv_nowait(int fd, void *buf, size_t n)
{
    return recv_nowait_flags(fd, buf, n, 0);
}

ssize_t mp__recv_peek_nowait(int fd, void *buf, size_t n)
{
    return recv_nowait_flags(fd, buf, n, MSG_PEEK);
}

int mp__discard_nowait(int fd, size_t n)
{
    unsigned char junk[512];
    while (n > 0) {
        ssize_t r = recv_nowait_flags(fd, junk, n < sizeof junk ? n : sizeof junk, 0);
        if (r < 0)
            return (int)r;
        if (r == 0)
            return -EAGAIN; /* end of file before n: they were not there */
        n -= (size_t)r;
    }
    return 0;
}

short mp__poll_rdhup(void)
{
#ifdef POLLRDHUP
    return POLLRDHUP;
#else
    return 0;
#endif
}

bool mp__peer_gone(int fd)
{
    short rdhup = mp__poll_rdhup();
    struct pollfd p = {.fd = fd, .events = (short)(POLLIN | rdhup), .revents = 0};
    int r;
    while ((r = poll(&p, 1, 0)) < 0 && errno == EINTR)
        ;
    if (r <= 0)
        return false; /* nothing to read: the peer is (still) there */
    if (p.revents & (POLLHUP | POLLERR | POLLNVAL | rdhup))
        return true;
    /* Readable: a request, or the end of file a TCP peer's FIN leaves. */
    unsigned char b;
    ssize_t n;
    while ((n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

ssize_t mp__send_nowait(int fd, const void *buf, size_t n)
{
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    for (;;) {
        ssize_t w = send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK)
            return -EAGAIN;
        return MP__NEG_ERRNO();
    }
}

void mp__tcp_keepalive(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef TCP_KEEPIDLE
    int idle = 10;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
#endif
#ifdef TCP_KEEPINTVL
    int intvl = 5;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
#endif
#ifdef TCP_KEEPCNT
    int cnt = 3;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
}

void mp__tcp_ack_now(int fd)
{
#ifdef TCP_QUICKACK
    int one = 1;
    /* On a non-TCP socket this fails with EOPNOTSUPP/ENOPROTOOPT: ignored. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
#else
    (void)fd;
#endif
}

void mp__socket_shutdown(int fd)
{
    (void)shutdown(fd, SHUT_RDWR);
}

static bool io_kept(int fd, const int *keep, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (keep[i] == fd)
            return true;
    return false;
}

void mp__close_fds_except(const int *keep, size_t n)
{
    struct rlimit rl;
    long limit = sysconf(_SC_OPEN_MAX);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (limit < 0 || (rlim_t)limit > rl.rlim_cur))
        limit = (long)rl.rlim_cur;
    if (limit < 0 || limit > 65536)
        limit = 65536;
#ifdef __linux__
    /* Collect first, close after: closing while reading the directory
     * would change what it lists. */
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        int self = dirfd(dir);
        size_t cap = 64, len = 0;
        int *fds = malloc(cap * sizeof *fds);
        struct dirent *e;
        bool ok = fds != NULL;
        while (ok && (e = readdir(dir)) != NULL) {
            char *end;
            long fd = strtol(e->d_name, &end, 10);
            if (*end || end == e->d_name || fd <= 2 || fd == self || fd >= limit ||
                io_kept((int)fd, keep, n))
                continue;
            if (len == cap) {
                int *more = realloc(fds, 2 * cap * sizeof *fds);
                if (!more) {
                    ok = false;
                    break;
                }
                fds = more;
                cap *= 2;
            }
            fds[len++] = (int)fd;
        }
        closedir(dir);
        for (size_t i = 0; ok && i < len; i++)
            mp__close(fds[i]);
        free(fds);
        if (ok)
            return;
    }
#endif
    for (int fd = 3; fd < (int)limit; fd++)
        if (!io_kept(fd, keep, n))
            (void)close(fd);
}

int mp__set_recv_timeout(int fd, int64_t ns)
{
    struct timeval tv = {0, 0};
    if (ns > 0) {
        tv.tv_sec = (time_t)(ns / 1000000000);
        tv.tv_usec = (suseconds_t)((ns % 1000000000 + 999) / 1000);
        if (tv.tv_usec >= 1000000) {
            tv.tv_sec++;
            tv.tv_usec -= 1000000;
        }
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        return MP__NEG_ERRNO();
    return 0;
}

ssize_t mp__recv_once(int fd, void *buf, size_t n)
{
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    ssize_t r = recv(fd, buf, n, 0);
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return MP_ETIMEDOUT;
    return MP__NEG_ERRNO();
}

/* ---- small files ---------------------------------------------------------- */

ssize_t mp__read_small_file(const char *path, void *buf, size_t n)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return MP__NEG_ERRNO();
    ssize_t r;
    do
        r = read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    int saved = errno;
    mp__close(fd);
    return r < 0 ? -saved : r;
}
