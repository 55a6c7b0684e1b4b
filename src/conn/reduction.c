/*
 * reduction - passing descriptors and connection ends over a connection
 * (mpipc/reduction.h): Python's send_handle/recv_handle message, checked so
 * that no descriptor a peer sends can leak. Statics start with reduction_.
 */
#include "conn/conn_impl.h"
#include "conn/shmpipe.h"
#include "core/internal.h"
#include "core/io.h"

#include <mpipc/reduction.h>

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>

/* The descriptors a handle message is taken with: Python sends one; room
 * for more lets a peer that sends a few be told apart from one that sends
 * a flood (cut short by the kernel). */
#define REDUCTION_FDS_ROOM 16

/* Close every descriptor a refused message brought. */
static void reduction_close_all(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mp__close(fds[i]);
}

/* A handle travels only over an AF_UNIX stream socket; say why not, in
 * Python's words where it has them (socket.fromfd on a pipe: ENOTSOCK). */
static int reduction_check_unix(const struct mp__conn_raw *raw, const char *what)
{
    if (!raw->is_socket)
        return mp__err(-ENOTSOCK,
                       "%s needs a duplex connection (an AF_UNIX socket, mp_pipe(.., true)); "
                       "this one is a pipe",
                       what);
    int family = 0;
    bool stream = false;
    int rc = mp__socket_kind(raw->fd, &family, &stream);
    if (rc < 0)
        return rc;
    if (family != AF_UNIX || !stream)
        return mp__err(-EAFNOSUPPORT,
                       "%s needs an AF_UNIX stream socket; this connection's socket is of "
                       "family %d",
                       what, family);
    return 0;
}

/*
 * Receive one handle message carrying exactly one descriptor (rmu held).
 * It is looked at first without being consumed, so that a framed message
 * found in its place stays whole for mp_conn_recv. Then it is taken with
 * room for REDUCTION_FDS_ROOM descriptors: more than one, a count byte that does
 * not match what came, or control data cut short are refused, and every
 * descriptor that came is closed.
 */
static int reduction_recv_one(int sock, int *out, int64_t deadline)
{
    unsigned char count = 0;
    int fds[REDUCTION_FDS_ROOM];
    size_t nfds = 0;
    bool ctrunc = false;
    ssize_t r = mp__recv_fds(sock, &count, 1, NULL, 0, &nfds, &ctrunc, true, deadline);
    if (r == 0)
        return MP_EOF;
    if (r < 0)
        return (int)r;
    if (!ctrunc)
        return mp__err(MP_EPROTO,
                       "recv_handle: the next message carries no descriptor (first byte 0x%02x); "
                       "it is left for mp_conn_recv",
                       count);
    r = mp__recv_fds(sock, &count, 1, fds, REDUCTION_FDS_ROOM, &nfds, &ctrunc, false, deadline);
    int rc = 0;
    if (r == 0)
        rc = MP_EOF; /* another process took the message */
    else if (r < 0)
        rc = (int)r;
    else if (ctrunc)
        rc = mp__err(MP_EPROTO,
                     "recv_handle: more descriptors came than a handle message holds (%d); "
                     "all closed",
                     REDUCTION_FDS_ROOM);
    else if (nfds != count || nfds != 1)
        rc = mp__err(MP_EPROTO,
                     "recv_handle: the message announced %u descriptor(s) and carried %zu, "
                     "where one was expected; all closed",
                     (unsigned)count, nfds);
    if (rc < 0) {
        reduction_close_all(fds, nfds);
        return rc;
    }
    *out = fds[0];
    return 0;
}

/* Send n handle messages (Python's send_handle, one descriptor each) under
 * one hold of c's send lock, so that no other message comes between them. */
static int reduction_send_fds(mp_conn *c, const int *fds, size_t n)
{
    struct mp__conn_raw raw;
    int rc = mp__conn_raw_begin(c, MP__CONN_RAW_SEND, &raw);
    if (rc < 0)
        return rc;
    rc = reduction_check_unix(&raw, "send_handle");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        /* Python's sendfds: one byte, len(fds) % 256, with the fds. */
        unsigned char count = 1;
        rc = mp__send_fds(raw.fd, &count, 1, &fds[i], 1);
    }
    mp__conn_raw_end(c, MP__CONN_RAW_SEND);
    return rc;
}

MP_API int mp_send_handle(mp_conn *c, int fd, pid_t destination_pid)
{
    (void)destination_pid; /* Unix needs no target process, as in Python */
    if (!c || fd < 0)
        return -EINVAL;
    return reduction_send_fds(c, &fd, 1);
}

MP_API int mp_recv_handle(mp_conn *c, int *fd, double timeout)
{
    if (fd)
        *fd = -1;
    if (!c || !fd)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    mp__err_clear();
    int64_t deadline = mp__deadline(timeout);
    struct mp__conn_raw raw;
    int rc = mp__conn_raw_begin(c, MP__CONN_RAW_RECV, &raw);
    if (rc < 0)
        return rc;
    rc = reduction_check_unix(&raw, "recv_handle");
    if (rc == 0) {
        /* A handle a receive read ahead was kept with its descriptor;
         * with nothing buffered, the next message is in the socket. */
        rc = mp__conn_raw_take_handle(c, fd);
        if (rc == 1)
            rc = 0;
        else if (rc == 0)
            rc = reduction_recv_one(raw.fd, fd, deadline);
        else if (rc == MP_EPROTO)
            rc = mp__err(MP_EPROTO, "recv_handle: the next message (already read ahead) carries "
                                    "no descriptor; it is left for mp_conn_recv");
        else if (rc == MP_ESTATE)
            rc = mp__err(MP_ESTATE, "recv_handle: a message is part-way received (a receive "
                                    "timed out in it); receive it first");
    }
    mp__conn_raw_end(c, MP__CONN_RAW_RECV);
    return rc;
}

/* Lock conn for handing over and check that the receiver will get it as it
 * is: nothing read ahead, and the directions its descriptor allows. A
 * shared-memory end sets *memfd (borrowed) to its ring's memory, which
 * travels before its doorbell (shmpass.c). */
static int reduction_hand_over_begin(mp_conn *conn, struct mp__conn_raw *raw, int *memfd)
{
    int rc = mp__conn_raw_begin(conn, MP__CONN_RAW_HAND_OVER, raw);
    if (rc == MP_ESTATE)
        return mp__err(MP_ESTATE, "send_conn: the connection holds bytes it read ahead and has not "
                                  "delivered; they would be lost (receive them first)");
    if (rc < 0)
        return rc;
    bool readable = false, writable = false;
    if (mp__conn_is_shm(conn))
        rc = mp__shmc_export(conn, memfd);
    else
        rc = mp__fd_directions(raw->fd, &readable, &writable);
    if (rc == 0 && *memfd < 0 && (readable != raw->readable || writable != raw->writable))
        rc = mp__err(MP_ESTATE,
                     "send_conn: the connection is %s%s but its descriptor allows %s%s; the "
                     "receiver would get what the descriptor allows",
                     raw->readable ? "readable" : "not readable",
                     raw->writable ? " and writable" : " and not writable",
                     readable ? "reading" : "no reading", writable ? " and writing" : "");
    if (rc < 0)
        mp__conn_raw_end(conn, MP__CONN_RAW_HAND_OVER);
    return rc;
}

MP_API int mp_send_conn(mp_conn *c, mp_conn *conn)
{
    if (!c || !conn || c == conn)
        return -EINVAL;
    /* Lock order: the end handed over (its receive lock), then c's send
     * lock; no call holds a send lock while it waits for a receive lock. */
    struct mp__conn_raw what;
    int memfd = -1;
    int rc = reduction_hand_over_begin(conn, &what, &memfd);
    if (rc < 0)
        return rc;
    if (memfd >= 0) {
        int fds[2] = {memfd, what.fd};
        rc = reduction_send_fds(c, fds, 2);
    } else {
        rc = reduction_send_fds(c, &what.fd, 1);
    }
    mp__conn_raw_end(conn, MP__CONN_RAW_HAND_OVER);
    return rc;
}

/* The doorbell that follows a shared-memory end's memory (memfd, received
 * first): a working end on both, or an error with both closed. */
static int reduction_recv_shm(mp_conn *c, mp_conn **out, int memfd, int64_t deadline)
{
    int bell = -1;
    int rc = mp_recv_handle(c, &bell, mp__deadline_left(deadline));
    if (rc == MP_EPROTO || rc == MP_EOF)
        rc = mp__err(MP_EPROTO,
                     "recv_conn: a shared-memory ring came without the doorbell that "
                     "follows it (%s)",
                     rc == MP_EOF ? "end of file" : "the next message carries no descriptor");
    if (rc == 0)
        rc = mp__shmc_adopt(out, memfd, bell);
    if (rc < 0) {
        mp__close(memfd);
        if (bell >= 0)
            mp__close(bell);
    }
    return rc;
}

MP_API int mp_recv_conn(mp_conn *c, mp_conn **out, double timeout)
{
    if (out)
        *out = NULL;
    if (!c || !out)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int64_t deadline = mp__deadline(timeout);
    int fd;
    int rc = mp_recv_handle(c, &fd, timeout);
    if (rc < 0)
        return rc;
    if (mp__shmc_is_ring_fd(fd))
        return reduction_recv_shm(c, out, fd, deadline);
    bool readable = false, writable = false;
    rc = mp__fd_directions(fd, &readable, &writable);
    if (rc == 0)
        rc = mp_conn_from_fd(out, fd, readable, writable);
    if (rc < 0)
        mp__close(fd);
    return rc;
}
