/*
 * io - the one home of raw descriptor system calls.
 *
 * Everything else in the library reads, writes, polls, creates and closes
 * descriptors through these helpers, so EINTR, short transfers, deadlines,
 * close-on-exec and SIGPIPE are handled once:
 *
 *   - EINTR is retried; a wait with a deadline waits only for what is left.
 *   - Deadlines are absolute CLOCK_MONOTONIC nanoseconds (mp__deadline()).
 *   - Every descriptor created here is close-on-exec from birth.
 *   - Writes never let SIGPIPE kill the process: sockets use MSG_NOSIGNAL,
 *     other descriptors block SIGPIPE in the calling thread for the duration
 *     of the write and discard the signal the write raised. No process-wide
 *     signal disposition is changed.
 */
#ifndef MPIPC_IO_H
#define MPIPC_IO_H

#include "core/internal.h"

#include <math.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

/* A deadline that never passes. */
#define MP__NO_DEADLINE INT64_C(-1)

/* CLOCK_MONOTONIC now, in nanoseconds. */
int64_t mp__now_ns(void);

/*
 * True for a public timeout argument that is no number of seconds: NaN
 * (Python raises ValueError for it). Every public function that takes a
 * timeout returns MP_EVALUE for it before it acts, so a NaN never takes,
 * sends, queues or consumes anything (common.h says so once for all).
 */
static inline bool mp__bad_timeout(double timeout)
{
    return isnan(timeout);
}

/* The deadline for a public timeout: negative -> MP__NO_DEADLINE, otherwise
 * now + timeout (saturating). A NaN, which public entry points refuse with
 * mp__bad_timeout() first, is treated as "forever". */
int64_t mp__deadline(double timeout);

/* Milliseconds left before the deadline, rounded up, for poll(): -1 for no
 * deadline, 0 once it has passed. */
int mp__deadline_ms(int64_t deadline);

/* Seconds left before the deadline, as a public timeout argument for a
 * call that takes one: MP_FOREVER for no deadline, 0 once it has passed. */
double mp__deadline_left(int64_t deadline);

/* True once a real deadline has passed. */
bool mp__deadline_passed(int64_t deadline);

/* The deadline as an absolute CLOCK_MONOTONIC timespec, for
 * pthread_cond_timedwait on a condvar set to CLOCK_MONOTONIC. The deadline
 * must not be MP__NO_DEADLINE. */
struct timespec mp__deadline_timespec(int64_t deadline);

/* Sleep for the given number of seconds (EINTR-safe). */
void mp__sleep(double seconds);

/* Create a pipe or an AF_UNIX stream socketpair, both ends close-on-exec.
 * Returns 0 or -errno. */
int mp__pipe(int fds[2]);
int mp__socketpair(int sv[2]);

/* Make fd close-on-exec (for descriptors the library did not create). */
int mp__set_cloexec(int fd);

/* Close without retrying (a retried close can close a descriptor another
 * thread just opened). EINTR counts as closed. Keeps errno. Returns 0 or -errno. */
int mp__close(int fd);

/* 1 if fd is a socket, 0 if not, -errno if fd is not open. */
int mp__fd_is_socket(int fd);

/* 1 if fd is open, 0 if not. */
bool mp__fd_is_open(int fd);

/*
 * Read at most n bytes (n > 0) with one successful read, waiting until the
 * deadline for data. Returns the byte count (> 0), 0 at end of file,
 * MP_ETIMEDOUT, or -errno. With no deadline this is one blocking read.
 * is_socket selects recv(MSG_DONTWAIT) so that a racing reader in another
 * process cannot leave this call blocked past its deadline.
 */
ssize_t mp__read_some(int fd, void *buf, size_t n, int64_t deadline, bool is_socket);

/*
 * Write every byte of iov[0..iovcnt) (one writev/sendmsg when the kernel
 * takes it all), resuming after short writes and EINTR. Returns 0 or -errno;
 * a vanished reader is -EPIPE (or -ECONNRESET), never a SIGPIPE death.
 * The iov array is modified in place when a write is short.
 * sigpipe_blocked: the caller guarantees SIGPIPE is blocked in this thread
 * for good (library-owned threads), so the per-write mask change is skipped.
 */
int mp__write_all(int fd, struct iovec *iov, int iovcnt, bool is_socket, bool sigpipe_blocked);

/*
 * poll() until the deadline, resuming after EINTR with the time that is left.
 * Returns the number of ready entries, 0 when the deadline passed first, or
 * -errno.
 */
int mp__poll(struct pollfd *fds, nfds_t n, int64_t deadline);

/*
 * Wait until fd has one of `events` (POLLIN, POLLOUT), hang-up or an error,
 * or the deadline. Returns 1, MP_ETIMEDOUT, -EBADF for a closed descriptor,
 * or -errno.
 */
int mp__wait_fd(int fd, short events, int64_t deadline);

/* ---- non-blocking pipes (the queues' streams) -------------------------------- */

/* Make fd non-blocking (an open file description the library owns alone). */
int mp__set_nonblock(int fd);

/* The pipe's capacity in bytes (F_GETPIPE_SZ), or 65536 where unknown. */
size_t mp__pipe_capacity(int fd);

/*
 * One non-blocking writev() attempt, EINTR retried. On a non-blocking pipe a
 * write of at most PIPE_BUF bytes is all or nothing (POSIX), so this returns
 * the whole size or -EAGAIN. -EPIPE when every reader is gone, never a
 * SIGPIPE death (sigpipe_blocked as for mp__write_all).
 */
ssize_t mp__writev_once(int fd, const struct iovec *iov, int iovcnt, bool sigpipe_blocked);

/* Bytes ready to be read from a pipe or socket without blocking (FIONREAD):
 * >= 0, or -errno. */
ssize_t mp__bytes_ready(int fd);

/* One readv() (EINTR retried): bytes read, 0 at end of file, -EAGAIN when
 * nothing is ready on a non-blocking descriptor, or -errno. */
ssize_t mp__readv_once(int fd, const struct iovec *iov, int iovcnt);

/* ---- anonymous files (the queues' spill files) ------------------------------ */

/* A close-on-exec read-write file with no name: memfd_create() where it
 * exists, else a mkstemp() file in $TMPDIR (or /tmp) unlinked at once.
 * Returns the descriptor or -errno. */
int mp__anon_file(const char *name);

/* Write or read exactly n bytes at offset off (EINTR and short transfers
 * resumed). Returns 0, -EIO at an early end of file, or -errno. */
int mp__pwrite_all(int fd, const void *buf, size_t n, uint64_t off);
int mp__pread_all(int fd, void *buf, size_t n, uint64_t off);

/* Cut the file to len bytes. Returns 0 or -errno. */
int mp__truncate(int fd, uint64_t len);

/* ---- sockets for Listener/Client ----------------------------------------- */

/*
 * A parsed socket address. family is AF_UNIX (path, or an abstract name when
 * abstract is set: Linux only), or AF_INET/AF_INET6 (host and port).
 */
struct mp__sockaddr {
    int family;
    bool abstract;
    char path[108]; /* sun_path's size on Linux */
    char host[256];
    unsigned port;
};

/*
 * Create a listening socket bound to a, close-on-exec. For TCP,
 * SO_REUSEADDR is set (as Python's SocketListener does) and port 0 binds an
 * ephemeral port; *bound receives the address actually bound.
 * Returns the descriptor or -errno (-EADDRINUSE, -EACCES, -ENOENT for an
 * unresolvable host...).
 */
int mp__listen(const struct mp__sockaddr *a, int backlog, struct mp__sockaddr *bound);

/*
 * Accept one connection, waiting until the deadline. The new descriptor is
 * close-on-exec and blocking; TCP connections get TCP_NODELAY. peer (may be
 * NULL) receives the peer's address as text ("tcp:1.2.3.4:5678", or "unix:"
 * for an unnamed AF_UNIX peer). Returns the descriptor, MP_ETIMEDOUT or
 * -errno.
 */
int mp__accept(int listen_fd, int64_t deadline, char *peer, size_t peer_cap);

/*
 * Connect to a, waiting until the deadline (each address getaddrinfo gives
 * is tried in turn). Returns a close-on-exec blocking descriptor,
 * MP_ETIMEDOUT or -errno (-ECONNREFUSED, -ENOENT...).
 */
int mp__connect(const struct mp__sockaddr *a, int64_t deadline);

/* Fill buf with n unpredictable bytes from the kernel (getrandom, or
 * /dev/urandom where getrandom is missing, refused or not yet seeded).
 * Returns 0 or -errno. */
int mp__random_bytes(void *buf, size_t n);

/* ---- helpers for the manager's event loop and its clients ---------------- */

/* A close-on-exec duplicate of fd (F_DUPFD_CLOEXEC). Returns it or -errno. */
int mp__dup_cloexec(int fd);

/*
 * One non-blocking receive / send on a stream socket (MSG_DONTWAIT; sends
 * also MSG_NOSIGNAL), EINTR retried. Receive returns the byte count (> 0),
 * 0 at end of file, -EAGAIN when nothing is there, or -errno. Send returns
 * the byte count (>= 0), -EAGAIN when the socket buffer is full, or -errno
 * (-EPIPE / -ECONNRESET for a vanished peer, never a SIGPIPE).
 */
ssize_t mp__recv_nowait(int fd, void *buf, size_t n);
ssize_t mp__send_nowait(int fd, const void *buf, size_t n);

/*
 * As mp__recv_nowait, but the bytes stay in the socket (MSG_PEEK) until
 * mp__discard_nowait takes n of them. Why a reader would: a stream
 * socket's reader that takes bytes out makes room in the writer's send
 * buffer, and the kernel then wakes whoever sleeps on the writer's socket -
 * a writer asleep in a read of its own, waiting for the reply, is woken
 * for nothing (AF_UNIX wakes every sleeper on that socket for write space).
 * Taking the request out only after the reply went spares it that wake-up.
 * mp__discard_nowait returns 0 once n bytes are taken, or -errno (-EAGAIN
 * when fewer than n were there).
 */
ssize_t mp__recv_peek_nowait(int fd, void *buf, size_t n);
int mp__discard_nowait(int fd, size_t n);

/*
 * Whether fd's peer has hung up, without waiting and without taking a byte:
 * poll() reports a hang-up, an error or (Linux, mp__poll_rdhup) that the
 * peer shut its writing side, even with bytes it sent unread; or the next
 * read is the end of file (a TCP peer's FIN, where there is no POLLRDHUP)
 * or fails.
 */
bool mp__peer_gone(int fd);

/* poll()'s event for "the peer shut its writing side, or closed", which
 * shows even while bytes it sent are unread: Linux's POLLRDHUP, or 0 on a
 * system without it. */
short mp__poll_rdhup(void);

/*
 * Turn on TCP keepalive with short timers (idle 10 s, then 3 probes 5 s
 * apart, where the system lets us set them), so a peer whose host vanished
 * without a reset is noticed in about 25 s even by a call that waits without
 * limit. Best effort; does nothing on a non-TCP socket.
 */
void mp__tcp_keepalive(int fd);

/*
 * Acknowledge what fd has received now rather than after the kernel's
 * delayed-ACK timer (Linux's TCP_QUICKACK). A peer whose stack holds a small
 * write until its last one is acknowledged (Nagle: CPython's Client, which
 * sends its WELCOME and first request back to back) then goes on at once
 * instead of ~40 ms later. Best effort; does nothing on a non-TCP socket or
 * where the option does not exist.
 */
void mp__tcp_ack_now(int fd);

/* shutdown(fd, SHUT_RDWR): wakes a thread blocked reading the socket with
 * end of file. Best effort. */
void mp__socket_shutdown(int fd);

/*
 * Close every descriptor of this process above 2 except the n in keep, for
 * a server child that must not hold its parent's pipes and sockets open
 * (a pipe's reader would never see end of file). Uses /proc/self/fd where it
 * exists, otherwise walks up to the descriptor limit (at most 65536).
 * Descriptors at or above the soft RLIMIT_NOFILE are left alone (tools such
 * as valgrind keep theirs there).
 */
void mp__close_fds_except(const int *keep, size_t n);

/*
 * For a client that waits for one reply per request: set the socket's
 * receive timeout (SO_RCVTIMEO; ns <= 0 for none), then receive with one
 * blocking recv() instead of a poll() and a recv(). mp__recv_once returns
 * the byte count, 0 at end of file, MP_ETIMEDOUT when the receive timeout
 * passed, -EINTR when a signal interrupted it (the caller decides what time
 * is left), or -errno.
 */
int mp__set_recv_timeout(int fd, int64_t ns);
ssize_t mp__recv_once(int fd, void *buf, size_t n);

/* ---- passing descriptors (SCM_RIGHTS: conn/reduction.c, the fork server) --- */

/* The most descriptors one message carries (one control message's room;
 * the fork server passes up to MP__START_MAX_FDS + 1). */
#define MP__FDS_MAX 64

/* The socket's family (AF_UNIX, AF_INET...) and whether it is a stream:
 * 0, -ENOTSOCK for a descriptor that is no socket (a pipe), or -errno. */
int mp__socket_kind(int fd, int *family, bool *stream);

/* The directions the descriptor allows: a socket both; otherwise its
 * access mode (O_RDONLY, O_WRONLY, O_RDWR). Returns 0 or -errno. */
int mp__fd_directions(int fd, bool *readable, bool *writable);

/*
 * Send buf[0..n) (n > 0) with fds[0..nfds) (nfds <= MP__FDS_MAX) attached
 * as one SCM_RIGHTS control message: one sendmsg(MSG_NOSIGNAL), the
 * descriptors riding with the first byte; a short send is resumed without
 * them. EINTR retried; a non-blocking socket waits for room without limit
 * (sends take no timeout). Returns 0 or -errno: -EBADF for a descriptor
 * that is not open (nothing is sent), -EPIPE/-ECONNRESET for a vanished
 * peer (never a SIGPIPE death), -EINVAL for nfds out of range.
 */
int mp__send_fds(int fd, const void *buf, size_t n, const int *fds, size_t nfds);

/*
 * One recvmsg() of at most n bytes (n > 0) from a stream socket, waiting
 * until the deadline, with room for fd_cap descriptors (<= MP__FDS_MAX).
 * Every descriptor received is close-on-exec (MSG_CMSG_CLOEXEC where it
 * exists) and stored in fds, *nfds their count: the caller owns and must
 * close them whatever the call returns. *ctrunc: the kernel had more control
 * data than room (MSG_CTRUNC; it closed what did not fit).
 * peek: look without consuming and without room for descriptors: none is
 * installed, and *ctrunc says whether the bytes carry any.
 * Returns the byte count (> 0), 0 at end of file, MP_ETIMEDOUT or -errno.
 */
ssize_t mp__recv_fds(int fd, void *buf, size_t n, int *fds, size_t fd_cap, size_t *nfds,
                     bool *ctrunc, bool peek, int64_t deadline);

/*
 * mp__read_some() for an AF_UNIX stream socket, with room for descriptors:
 * one recvmsg(MSG_CMSG_CLOEXEC) of at most n bytes (n > 0), waiting until
 * the deadline (no deadline: one blocking call, as mp__read_some). The
 * SCM_RIGHTS descriptors that came with the bytes, close-on-exec, are
 * stored in fds (room for MP__FDS_MAX) and counted in *nfds; *ctrunc says
 * the kernel had more control data than room (and closed what did not
 * fit). The caller sets *nfds = 0 and *ctrunc = false before the call (the
 * common path, with no control data, writes neither) and owns every
 * descriptor stored, whatever the call returns.
 * Linux (unix_stream_read_generic) ends a read after the first skb that
 * carries descriptors, so any descriptors came with the skb that holds the
 * last bytes returned; they ride on that skb's first byte.
 * Returns the byte count (> 0), 0 at end of file, MP_ETIMEDOUT or -errno.
 */
ssize_t mp__recv_stream(int fd, void *buf, size_t n, int64_t deadline, int *fds, size_t *nfds,
                        bool *ctrunc);

/*
 * Read up to n bytes of a small file (a /proc entry) from its start with
 * one read. Returns the byte count, or -errno.
 */
ssize_t mp__read_small_file(const char *path, void *buf, size_t n);

#endif /* MPIPC_IO_H */
