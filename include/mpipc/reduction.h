/*
 * libmpipc - passing handles: Python's multiprocessing.reduction
 * (send_handle, recv_handle) and connections sent over connections.
 *
 * A descriptor travels over a duplex connection (an AF_UNIX socket: one end
 * of mp_pipe(.., true), or a Listener/Client connection on a "unix:"
 * address) as Python sends it on Unix: one sendmsg() of a single byte, the
 * number of descriptors modulo 256, with the descriptors in an SCM_RIGHTS
 * control message. There is no acknowledgement (CPython waits for one only
 * on macOS). So a C end and a Python end pass descriptors both ways:
 *
 *     # Python                                 // C
 *     from multiprocessing.reduction import  int fd;
 *         send_handle                         mp_recv_handle(c, &fd, 5.0);
 *     send_handle(conn, f.fileno(), pid)
 *
 * The receiver gets a new descriptor for the same open file (as dup(2)
 * would give, in another process), close-on-exec; the sender keeps its own
 * and may close it once the call returns.
 *
 * The message travels outside the framing of conn.h, between two messages,
 * and a connection carries both in any mix, read-ahead on (the default) or
 * off:
 *   - a receive that reads ahead past a message onto a handle keeps the
 *     handle's descriptor with its byte (an AF_UNIX end reads with
 *     recvmsg(); docs/wire.md says how the byte is found), and
 *     mp_recv_handle() takes it when it is next; until then the handle
 *     makes mp_conn_poll() ready and counts as one byte in
 *     mp_conn_buffered(); mp_conn_free() closes a kept handle never taken;
 *   - a receive of a message that finds a handle next refuses with
 *     MP_EPROTO and consumes nothing: receive it with mp_recv_handle();
 *   - a receive of a handle that finds a framed message instead (no
 *     descriptor with the next byte) refuses with MP_EPROTO and consumes
 *     nothing: receive the message with mp_conn_recv and try again;
 *   - descriptors a peer attaches to an ordinary message are closed as
 *     they arrive, never delivered and never leaked.
 *
 * Connections over connections. mp_send_conn() hands one end of a
 * connection to another process, where mp_recv_conn() makes it a working
 * mp_conn: how a server gives each client it accepted to a worker process
 * (Python pickles the Connection with reduction.DupFd). Only the descriptor
 * travels, byte-compatible with send_handle, so a Python server's
 * send_handle(conn, client_socket.fileno(), pid) reaches a C worker's
 * mp_recv_conn() too. The receiver takes the directions the descriptor
 * allows: a socket is duplex, a pipe end reads or writes by its access mode.
 *
 * Thread/fork: these calls may run on several threads at once with other
 * calls on the same connections (they take the connection's send or receive
 * lock); a connection being handed over must not be sent on by another
 * thread meanwhile. A child forked while its parent keeps a handle it read
 * ahead does not get that handle (it is the parent's, as whole messages
 * read ahead are, conn.h): the child closes its copy of the descriptor, and
 * its first mp_recv_handle() reads the next handle from the socket.
 */
#ifndef MPIPC_REDUCTION_H
#define MPIPC_REDUCTION_H

#include <mpipc/common.h>
#include <mpipc/conn.h>
#include <mpipc/error.h>

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * mp_send_handle - send a duplicate of a descriptor (Python's
 * multiprocessing.reduction.send_handle).
 *
 * c:                a writable duplex connection (an AF_UNIX stream socket).
 * fd:               the descriptor to send; borrowed, still the caller's.
 * destination_pid:  the receiving process; unused on Unix, as in Python,
 *                   and kept for the same call shape.
 *
 * Blocks while the socket is full, as a send does (no timeout).
 * Returns 0; -EINVAL for a NULL c or fd < 0; -EBADF when fd is not open
 * (nothing is sent); -ENOTSOCK when c is a pipe and -EAFNOSUPPORT when it
 * is a socket of another family (TCP), both with a message for
 * mp_errmsg(); MP_ECLOSED; MP_EREADONLY; -EPIPE or -ECONNRESET when the peer
 * is gone (never a SIGPIPE); other -errno.
 */
MP_API int mp_send_handle(mp_conn *c, int fd, pid_t destination_pid);

/*
 * mp_recv_handle - receive a descriptor sent by mp_send_handle() or Python's
 * send_handle (Python's recv_handle).
 *
 * fd:       receives the new descriptor, close-on-exec; -1 on failure.
 * timeout:  seconds to wait for it (MP_FOREVER, MP_NOWAIT).
 *
 * Returns 0; MP_ETIMEDOUT; MP_EOF (the peer closed; Python's EOFError);
 * MP_EPROTO, with a message for mp_errmsg(), when the next bytes are no
 * handle message: no descriptor with them (nothing is consumed), or a
 * count byte that does not match the descriptors that came, or more than
 * one descriptor, or more than the buffer holds (MSG_CTRUNC) - every
 * descriptor that arrived is closed, none leaks (Python raises
 * RuntimeError or AssertionError and leaks them); MP_ESTATE, with a
 * message, when a message is part-way received (a receive timed out in
 * it); -ENOTSOCK or -EAFNOSUPPORT as for mp_send_handle(); MP_ECLOSED;
 * MP_EWRITEONLY; MP_EVALUE for a NaN timeout; -EINVAL for NULL arguments;
 * other -errno (-EMFILE).
 * Ownership: the caller closes *fd.
 */
MP_API int mp_recv_handle(mp_conn *c, int *fd, double timeout);

/*
 * mp_send_conn - hand one end of a connection to the process at the other
 * end of c (Python's conn.send(other_connection)).
 *
 * c:     a writable duplex connection, as for mp_send_handle().
 * conn:  the end to hand over; borrowed: this process keeps its copy, and
 *        usually frees it right after, as a Python server closes the
 *        connection it handed to a worker.
 *
 * Returns 0; -EINVAL for NULL arguments or conn == c; MP_ESTATE, with a
 * message, when conn holds bytes it read ahead and has not delivered (they
 * would be lost to the receiver: mp_conn_buffered(conn) > 0; receive them
 * first), or when conn allows fewer directions than its descriptor (a
 * socket end made receive-only, or write-only after MP_ETOOLONG), since
 * the receiver would get them all; MP_ECLOSED when either is closed; the
 * codes of mp_send_handle().
 *
 * A shared-memory end (mp_pipe_shm) travels as two handle messages sent
 * back to back under c's send lock: its ring's memory (a memfd), then its
 * doorbell socket; only mp_recv_conn() (not Python) rebuilds it. MP_ESTATE
 * as well while a loan or view is out on it or a message is part-way
 * received there, or when its memory has no descriptor (no memfd).
 */
MP_API int mp_send_conn(mp_conn *c, mp_conn *conn);

/*
 * mp_recv_conn - receive a connection end sent by mp_send_conn(), or a
 * socket or pipe descriptor sent by send_handle, as a working connection.
 *
 * out:      receives the connection: duplex for a socket, read-only or
 *           write-only for a pipe end by its access mode. NULL on failure.
 * timeout:  as for mp_recv_handle().
 *
 * A file received first is a shared-memory end's ring (mp_send_conn()): its
 * doorbell must follow, and both are checked before use - the ring's size
 * and shape against the file, its indexes, and that the doorbell is one of
 * its ends - else MP_EPROTO with a message.
 *
 * Returns 0, or the codes of mp_recv_handle(); MP_EPROTO for a malformed
 * shared-memory hand-over; -ENOMEM (every descriptor received is closed on
 * every failure, and nothing stays mapped). Ownership: mp_conn_free() the
 * connection.
 */
MP_API int mp_recv_conn(mp_conn *c, mp_conn **out, double timeout);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_REDUCTION_H */
