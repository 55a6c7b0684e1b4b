/*
 * io - raw descriptor system calls, solved once (see io.h).
 *
 * _GNU_SOURCE is needed for pipe2(); everything else here is POSIX.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
    int rc = mp__set_cloexec(fds[0]);
    if (rc == 0)
        rc = mp__set_cloexec(fds[1]);
    if (rc < 0) {
        mp__close(fds[0]);
        mp__close(fds[1]);
    }
    return rc;
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
    int rc = mp__set_cloexec(sv[0]);
    if (rc == 0)
        rc = mp__set_cloexec(sv[1]);
    if (rc < 0) {
        mp__close(sv[0]);
        mp__close(sv[1]);
    }
    return rc;
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
static int wait_fd(int fd, short events, int64_t deadline)
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
            int rc = wait_fd(fd, POLLIN, deadline);
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
                int rc = wait_fd(fd, POLLIN, deadline);
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
struct sigpipe_guard {
    sigset_t old;
    bool was_blocked;
    bool was_pending;
};

static void sigpipe_guard_enter(struct sigpipe_guard *g)
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

static void sigpipe_guard_leave(struct sigpipe_guard *g, bool raised)
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
    struct sigpipe_guard guard;
    bool guarded = !is_socket && !sigpipe_blocked;
    if (guarded)
        sigpipe_guard_enter(&guard);

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
                int wr = wait_fd(fd, POLLOUT, MP__NO_DEADLINE);
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
        sigpipe_guard_leave(&guard, rc == -EPIPE);
    return rc;
}
