/*
 * libmpipc - connections: Python's multiprocessing.Pipe and Connection, and
 * multiprocessing.connection.wait().
 *
 * A connection is one end of a pipe or socket that carries whole messages.
 * The framing is byte for byte CPython's (docs/wire.md), so one end may be a C
 * program using this library and the other a Python program using
 * multiprocessing.connection.Connection.
 *
 * Semantics follow Python's Connection:
 *   - messages stay separate and in order; an empty message is legal;
 *   - receiving after every writer of the peer end has closed gives MP_EOF;
 *     a peer that disappears in the middle of a message gives MP_ETRUNCATED;
 *   - a message longer than maxlength gives MP_ETOOLONG and reading from the
 *     end is impossible afterwards (a read-only end is closed; a duplex end
 *     becomes write-only), as in Python;
 *   - using a closed connection gives MP_ECLOSED; sending on a receive-only
 *     end gives MP_EREADONLY, receiving or polling on a send-only end
 *     MP_EWRITEONLY.
 * And where Python hurts, better:
 *   - every receive takes a timeout, so a silent peer cannot hang the caller;
 *   - sending to a peer that is gone returns -EPIPE (or -ECONNRESET); the
 *     process is never killed by SIGPIPE and no signal disposition changes;
 *   - a length header that lies never makes the library allocate more than
 *     the bytes that have actually arrived plus a bounded chunk (1 MiB);
 *   - mp_conn_recv_bytes_into() with too small a buffer keeps the message
 *     for the next receive instead of losing it.
 *
 * Read-ahead. To receive a small message with one system call, a connection
 * reads up to 64 KiB ahead into a private buffer, which therefore holds zero
 * or more whole messages and possibly the start of the next one (a receive
 * that times out part-way also leaves the start of its message there).
 * Consequences a user should know:
 *   - mp_conn_poll() and mp_wait() report a connection ready when a whole
 *     message (or a corrupt header, which the next receive reports at once)
 *     is buffered, or when its descriptor has bytes to read or is at end of
 *     file. The start of a message alone is not ready: they wait on the
 *     descriptor. mp_conn_buffered() counts every byte held, whole message
 *     or not;
 *   - an event loop that polls mp_conn_fileno() itself must, before each
 *     wait on the descriptor, call mp_conn_poll(c, MP_NOWAIT) and receive
 *     while it returns 1, because a message already in the buffer does not
 *     make the descriptor readable;
 *   - a child forked while its parent holds read-ahead data never receives
 *     a message twice and never one that nobody sent:
 *       - whole messages in the parent's buffer are the parent's; the
 *         child starts without them;
 *       - a message the parent had begun (part of its header, its header
 *         and part of its payload, or a large message in progress after a
 *         receive timed out) is discarded by the child: its first receive
 *         reads the rest of that message from the descriptor - completing a
 *         cut header first, to learn the length - throws it away, and goes
 *         on at the next frame boundary. The discarding counts against that
 *         receive's timeout (MP_ETIMEDOUT keeps the progress for the next
 *         call); a peer that closes before the rest comes gives
 *         MP_ETRUNCATED. That message never makes the child's connection
 *         ready; bytes arriving on the descriptor do, as always;
 *       - this holds also when another parent thread was waiting inside a
 *         receive on the end at the moment of fork;
 *       - a child that receives takes the rest of that message from the
 *         descriptor, so the parent can no longer complete it: after the
 *         fork, receive on the end in one of the two processes only, or
 *         share it as the next point says;
 *       - a handle (mpipc/reduction.h) the parent read ahead and kept is
 *         the parent's too: the child closes its copy of the descriptor
 *         and drops its byte;
 *   - on an AF_UNIX end, reading ahead onto a handle message sent between
 *     messages (send_handle) loses nothing: the connection keeps its
 *     descriptor for mp_recv_handle(), and a message receive that finds the
 *     handle next refuses with MP_EPROTO and consumes nothing
 *     (mpipc/reduction.h);
 *   - when several processes receive on the same end at once (a shared
 *     read end guarded by a lock, as multiprocessing.Queue does), call
 *     mp_conn_set_readahead(c, false) first, so that each receive takes
 *     exactly one message from the kernel and leaves the rest for the others.
 *
 * Atomicity of concurrent senders. One send is one writev()/sendmsg() of the
 * header and payload whenever the kernel takes it whole, so small messages
 * from several processes sharing one end do not interleave:
 *   - on a simplex pipe, POSIX guarantees it for header + payload <= PIPE_BUF
 *     (4096 bytes on Linux);
 *   - on a duplex (AF_UNIX stream) end, Linux queues one write as one unit
 *     up to about half the socket send buffer (tens of KiB by default).
 * Beyond those sizes, or if a signal interrupts a write part-way, processes
 * that share an end must serialise their sends with a Lock, as Python's
 * Queue does. Threads of one process are always serialised by the handle.
 *
 * Thread/fork: every function may be called from several threads on one
 * handle, except that mp_conn_close() and mp_conn_free() must not race with
 * other calls on the same handle. Handles made before fork() are inherited
 * and usable in the child, as in Python's fork start method.
 */
#ifndef MPIPC_CONN_H
#define MPIPC_CONN_H

#include <mpipc/common.h>
#include <mpipc/error.h>
#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One end of a pipe or socket that carries whole messages. */
typedef struct mp_conn mp_conn;

/*
 * mp_pipe - Python's multiprocessing.Pipe(duplex).
 *
 * a, b:    receive the two ends.
 * duplex:  true: an AF_UNIX socketpair, both ends send and receive.
 *          false: a pipe(2); as in Python, *a only receives and *b only sends.
 *
 * Returns 0, or -errno (-EMFILE, -ENFILE, -ENOMEM) with *a and *b set to NULL.
 * Ownership: free each end with mp_conn_free(). Both descriptors are
 * close-on-exec.
 */
MP_API int mp_pipe(mp_conn **a, mp_conn **b, bool duplex);

/*
 * Options for mp_pipe_shm. Initialise with MP_PIPE_SHM_OPTS_INIT so that
 * fields added later get their defaults.
 *
 * ring_size:  bytes of shared memory per direction, rounded up to a power of
 *             two, at least 4096; 0 means the default, 1 MiB. A message
 *             larger than about ring_size is sent in pieces and received
 *             whole (see mp_pipe_shm).
 */
typedef struct mp_pipe_shm_opts {
    size_t ring_size; /* bytes per direction; 0 for the default, 1 MiB */
} mp_pipe_shm_opts;

/* Every default of mp_pipe_shm_opts: a 1 MiB ring per direction. */
#define MP_PIPE_SHM_OPTS_INIT                                                                      \
    {                                                                                              \
        0                                                                                          \
    }

/*
 * mp_pipe_shm - a Pipe whose messages travel through shared memory instead
 * of the kernel: the same two mp_conn ends as mp_pipe, and the whole
 * Connection API works on them unchanged (send/recv, bytes and into,
 * maxlength and MP_ETOOSHORT, poll, mp_wait, timeouts, close/free).
 *
 * a, b:    receive the two ends.
 * duplex:  true: both ends send and receive. false: as in Python, *a only
 *          receives and *b only sends.
 * opts:    NULL for the defaults, or options (MP_PIPE_SHM_OPTS_INIT).
 *
 * Differences a user can see, beside speed:
 *   - mp_conn_fileno() is a doorbell socket, not the data path: it becomes
 *     readable when a message is waiting (or every peer end is closed), so
 *     mp_conn_poll, mp_wait and users' poll loops work, provided a loop
 *     calls mp_conn_poll(c, MP_NOWAIT) before each wait on the descriptor
 *     (the rule above for read-ahead): that call asks the next sender to
 *     ring. Never read or write the descriptor yourself, and it is not
 *     framed: a Python end cannot be attached to it;
 *   - a message of any size is delivered whole. One that does not fit the
 *     ring (ring_size) is sent in pieces while the receiver takes them, so
 *     send_bytes of a large message returns only once the receiver has
 *     taken all but the last ring-full; the receiver's buffer grows as the
 *     pieces arrive, never from a length alone;
 *   - several senders on one end, in threads or in processes that share it
 *     by fork, are supported and keep whole messages of any size: a robust
 *     process-shared lock is held around each message, and a sender killed
 *     while holding it leaves no part of its message to be delivered.
 *     Several receivers likewise take whole messages, one receive at a
 *     time;
 *   - a receive that finds nothing spins for a few tens of microseconds
 *     (adapting to whether that paid off), then sleeps in the kernel: an
 *     idle receiver uses no measurable CPU;
 *   - when every peer end is closed or its processes are dead, the
 *     messages already sent are still delivered, then MP_EOF; a peer killed
 *     in the middle of a message larger than the ring gives MP_ETRUNCATED,
 *     never a torn message;
 *   - a ring whose shared indexes or record headers were overwritten gives
 *     MP_EPROTO and nothing out of bounds is read;
 *   - a send after every receiving end was closed (mp_conn_close or
 *     mp_conn_free) gives -EPIPE at once, as the socket Pipe does; a
 *     receiver killed without closing is seen when the sender has to wake it
 *     or wait for room;
 *   - large messages can go without a copy: mp_conn_loan / mp_conn_commit
 *     and mp_conn_recv_view / mp_conn_release;
 *   - an end is handed to another process by descriptor with mp_send_conn
 *     or mp_process_pass_conn like any end: its ring's memory (a memfd)
 *     travels with its doorbell, two descriptors, and the receiver checks
 *     both before using them. Not while a loan or view is out on it or a
 *     message is part-way received (MP_ESTATE); not on a system without
 *     memfd or files in $TMPDIR (MP_ESTATE: share it by fork then). The
 *     other end sees end of file only once every copy, in every process,
 *     is closed.
 *
 * Returns 0; -EINVAL (ring_size over 1 GiB); -ENOMEM, -EMFILE, -ENFILE
 * with *a and *b set to NULL.
 * Ownership: free each end with mp_conn_free(); the shared memory goes when
 * the last end in the last process is freed.
 * Thread/fork: as for mp_pipe. Ends are inherited by fork() and usable in
 * the child; a message the parent was part way through receiving (a large
 * one, after a timeout) is the parent's and the child never receives it.
 */
MP_API int mp_pipe_shm(mp_conn **a, mp_conn **b, bool duplex, const mp_pipe_shm_opts *opts);

/*
 * mp_conn_loan - borrow a buffer to build the next message in place, then
 * send it with mp_conn_commit (zero copy on a shared-memory end).
 *
 * c:        a writable end.
 * size:     the most bytes the message will have.
 * buf:      receives the buffer (size bytes, writable), or NULL on failure.
 * timeout:  how long to wait for room in the ring (a loan does not send
 *           in pieces, so it waits for the receiver), MP_FOREVER or
 *           MP_NOWAIT.
 *
 * On an mp_pipe_shm end, a size up to mp_conn_loan_max(c) is a place in
 * the ring itself: the message is never copied, and the end's send lock is
 * held from the loan to its commit, so the loan is the next message sent
 * on the end (other senders wait; a send from the same thread meanwhile is
 * MP_ESTATE). A larger size, and every loan on a
 * socket end, is a heap buffer that mp_conn_commit sends by copying, as
 * mp_conn_send_bytes does; the calls are the same either way. A sender
 * killed holding a loan publishes nothing of it, and the next sender goes
 * on.
 *
 * Returns 0; MP_ETIMEDOUT (no room in time); MP_ECLOSED; MP_EREADONLY;
 * MP_ESTATE (this thread already holds a loan on c); -EPIPE (every
 * receiving end is closed); MP_EPROTO (corrupt ring); MP_EVALUE (bad
 * timeout); -ENOMEM; -EINVAL (c or buf NULL).
 * Ownership: the buffer is the connection's; end the loan with exactly one
 * mp_conn_commit or mp_conn_loan_cancel, before closing c (after the close
 * both return MP_ECLOSED and the loan is lost).
 * Thread/fork: commit or cancel in the thread that took the loan, in the
 * same process.
 */
MP_API int mp_conn_loan(mp_conn *c, size_t size, void **buf, double timeout);

/*
 * mp_conn_commit - send the first len bytes of a loan as one message, and
 * end the loan (Python's send_bytes of that buffer).
 *
 * c:    the end the loan came from.
 * buf:  the buffer mp_conn_loan gave on c. As with free(), another
 *       pointer is undefined: a heap loan carries a marker that catches
 *       most such mistakes with -EINVAL, but reading it reads the 16
 *       bytes before buf.
 * len:  the message's length, at most the size loaned.
 *
 * Returns 0; MP_EVALUE (len over the size loaned: the loan is kept);
 * -EPIPE (every receiving end closed; the loan ends, the message is not
 * sent); MP_ECLOSED; -EINVAL (buf is no loan of this thread on c); what
 * mp_conn_send_bytes returns for a heap loan.
 * Ownership: the buffer is not the caller's after any return but
 * MP_EVALUE and -EINVAL.
 * Thread/fork: in the thread that took the loan.
 */
MP_API int mp_conn_commit(mp_conn *c, void *buf, size_t len);

/*
 * mp_conn_loan_cancel - end a loan without sending anything.
 *
 * c:    the end the loan came from.
 * buf:  the buffer mp_conn_loan gave on c. As with free(), another
 *       pointer is undefined: a heap loan carries a marker that catches
 *       most such mistakes with -EINVAL, but reading it reads the 16
 *       bytes before buf.
 *
 * Returns 0; MP_ECLOSED; -EINVAL (buf is no loan of this thread on c).
 * Ownership: the buffer is not the caller's after 0.
 * Thread/fork: in the thread that took the loan.
 */
MP_API int mp_conn_loan_cancel(mp_conn *c, void *buf);

/*
 * mp_conn_loan_max - the largest loan c can give in place in shared memory
 * (about half its ring); 0 for a socket end or an end that cannot send.
 * Larger loans still work, on the heap (see mp_conn_loan).
 *
 * c:  a connection end, or NULL (0).
 */
MP_API size_t mp_conn_loan_max(const mp_conn *c);

/*
 * mp_conn_recv_view - receive one whole message as a read-only view,
 * without copying it out where that can be avoided, until mp_conn_release.
 *
 * c:        a readable end.
 * view:     receives the message's bytes (read them only), or NULL.
 * len:      receives its length.
 * timeout:  seconds, MP_FOREVER or MP_NOWAIT, as for mp_conn_recv_bytes.
 *
 * On an mp_pipe_shm end a message that lies whole in the ring (every one
 * sent with a loan, and most others up to half the ring) is viewed in
 * place: no copy, and the receive lock of the end is held until the
 * release, so other receivers wait and the ring keeps that space. Any
 * other message, and every message on a socket end, is received as by
 * mp_conn_recv_bytes into a heap copy. There is no maxlength.
 *
 * Returns 0; MP_EOF; MP_ETRUNCATED; MP_ETIMEDOUT; MP_ECLOSED;
 * MP_EWRITEONLY; MP_ESTATE (this thread already holds a view of c);
 * MP_EPROTO; MP_EVALUE (bad timeout); -ENOMEM; -EINVAL.
 * Ownership: the view is the connection's; end it with mp_conn_release,
 * before closing c (after the close release returns MP_ECLOSED and a heap
 * copy is lost).
 * Thread/fork: release in the thread that took the view. A child forked
 * while a view is held does not hold it.
 */
MP_API int mp_conn_recv_view(mp_conn *c, const void **view, size_t *len, double timeout);

/*
 * mp_conn_release - end a view from mp_conn_recv_view: the message's space
 * goes back to the ring (or its heap copy is freed).
 *
 * c:     the end the view came from.
 * view:  the view.
 *
 * Returns 0; MP_ECLOSED (c was closed first); -EINVAL (NULL).
 * Thread/fork: in the thread that took the view.
 */
MP_API int mp_conn_release(mp_conn *c, const void *view);

/*
 * mp_conn_from_fd - wrap a descriptor that carries framed messages, for
 * example one end inherited from a Python parent.
 *
 * fd:        an open pipe, socket or other stream descriptor.
 * readable:  the end may receive.  writable: the end may send.
 *            At least one must be true (Python raises ValueError otherwise).
 *
 * Returns 0; -EINVAL for fd < 0 or neither direction; -EBADF if fd is not
 * open; -ENOMEM. On success the connection owns fd (mp_conn_close/free close
 * it); on failure the caller still owns it. The descriptor is made
 * close-on-exec.
 */
MP_API int mp_conn_from_fd(mp_conn **out, int fd, bool readable, bool writable);

/*
 * mp_conn_send_bytes - send one message (Python's send_bytes; offset/size
 * are pointer arithmetic on buf).
 *
 * buf, len:  the payload; len may be 0 (an empty message); buf may be NULL
 *            only when len is 0.
 *
 * Blocks until the whole message is written, as Python does.
 * Returns 0; MP_ECLOSED; MP_EREADONLY; -EINVAL; -EPIPE or -ECONNRESET when
 * the peer is gone (the process survives); other -errno.
 */
MP_API int mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len);

/*
 * mp_conn_recv_bytes - receive one whole message into a fresh buffer
 * (Python's recv_bytes(maxlength)).
 *
 * maxlength:  0 for no limit; otherwise a longer message fails with
 *             MP_ETOOLONG and the end can no longer receive.
 * buf, len:   receive the message; *buf is never NULL on success, even for an
 *             empty message.
 * timeout:    seconds to wait for the whole message (MP_FOREVER, MP_NOWAIT).
 *             A message that has only partly arrived when the time runs out
 *             stays buffered; the next call continues it.
 *
 * Returns 0; MP_EOF (peer closed, nothing buffered); MP_ETRUNCATED (peer
 * closed mid-message); MP_ETIMEDOUT; MP_ETOOLONG; MP_EPROTO (corrupt length
 * header; or, consuming nothing, a handle is next: see Read-ahead);
 * MP_ECLOSED; MP_EWRITEONLY; -ENOMEM; other -errno.
 * Ownership: the caller frees *buf with free().
 */
MP_API int mp_conn_recv_bytes(mp_conn *c, size_t maxlength, void **buf, size_t *len,
                              double timeout);

/*
 * mp_conn_recv_bytes_into - receive one message into the caller's buffer at
 * buf + offset (Python's recv_bytes_into(buf, offset)).
 *
 * cap:        the size of buf in bytes; offset <= cap, else -EINVAL.
 * msg_size:   optional; receives the message's size, also when the call
 *             fails with MP_ETOOSHORT.
 * timeout:    as for mp_conn_recv_bytes().
 *
 * Returns the message size (>= 0); MP_ETOOSHORT when it does not fit in
 * cap - offset, in which case nothing is consumed and the next receive gets
 * the same message whole (Python hands it to the exception and it is gone);
 * otherwise the codes of mp_conn_recv_bytes().
 */
MP_API ssize_t mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t cap, size_t offset,
                                       size_t *msg_size, double timeout);

/*
 * mp_conn_send - send a value (Python's send(obj)): one message holding its
 * pickle (protocol 4), which a Python peer's recv() turns into the equal
 * Python object.
 *
 * Returns the codes of mp_conn_send_bytes(), -EINVAL for a NULL value,
 * -ENOMEM. The value is borrowed and unchanged.
 */
MP_API int mp_conn_send(mp_conn *c, const mp_obj *obj);

/*
 * mp_conn_recv - receive one value (Python's recv()).
 *
 * obj:      receives the decoded value.
 * timeout:  as for mp_conn_recv_bytes().
 *
 * Returns 0; MP_EPROTO when the message is not a pickle of the supported
 * types or is refused (any opcode that would import or call code, see
 * docs/wire.md) - the message is consumed and the connection stays usable,
 * as after Python's UnpicklingError; otherwise the codes of
 * mp_conn_recv_bytes(). *obj is NULL on failure.
 * Ownership: the caller frees *obj with mp_obj_free().
 */
MP_API int mp_conn_recv(mp_conn *c, mp_obj **obj, double timeout);

/*
 * mp_conn_poll - whether data is available to receive (Python's poll).
 *
 * timeout: MP_NOWAIT returns at once, MP_FOREVER waits until ready, t > 0
 *          waits up to t seconds.
 *
 * Returns 1 when a whole message is buffered (the next receive takes it
 * without waiting; likewise a corrupt length header, which the next receive
 * reports at once as MP_EPROTO), or when the descriptor has bytes to read or
 * is at end of file or in error; 0 when the timeout passed first; MP_ECLOSED;
 * MP_EWRITEONLY; -errno. Never consumes.
 * The start of a message held in the buffer (after a receive timed out
 * part-way) does not make the connection ready: poll waits on the
 * descriptor. A readable descriptor promises progress, not a whole message:
 * when the bytes there do not complete a message, a receive still waits
 * for the rest, as after Python's poll. At end of file the next receive
 * gives MP_EOF, or MP_ETRUNCATED when a message had begun.
 */
MP_API int mp_conn_poll(mp_conn *c, double timeout);

/*
 * mp_conn_buffered - bytes read from the descriptor and held by the
 * connection, not yet received: whole messages read ahead, the start of a
 * message whose rest has not arrived, and in a forked child the start of a
 * cut header it will discard (see Read-ahead). 0 for a closed or write-only
 * end. Non-zero means a receive may succeed although the descriptor is not
 * readable, not that it will; to decide whether to receive or to wait, ask
 * mp_conn_poll(c, MP_NOWAIT).
 */
MP_API size_t mp_conn_buffered(mp_conn *c);

/*
 * mp_conn_set_readahead - turn read-ahead on (the default) or off.
 *
 * Off: each receive reads exactly one message from the descriptor (two reads
 * per message: header, payload), leaving later messages to other processes
 * that share the end. Data already buffered is still delivered first.
 * Returns 0 or MP_ECLOSED.
 */
MP_API int mp_conn_set_readahead(mp_conn *c, bool on);

/* The descriptor (Python's fileno), or MP_ECLOSED. The connection keeps
 * owning it. See "Read-ahead" above before polling it yourself. */
MP_API int mp_conn_fileno(const mp_conn *c);

/* Python's readable / writable / closed properties. A NULL handle is closed,
 * neither readable nor writable. */
MP_API bool mp_conn_readable(const mp_conn *c);
MP_API bool mp_conn_writable(const mp_conn *c);
MP_API bool mp_conn_closed(const mp_conn *c);

/*
 * mp_conn_close - close the descriptor (Python's close). Later calls return
 * MP_ECLOSED; closing again returns 0. Buffered unreceived data is dropped.
 * Returns 0 or -errno from close(2) (the descriptor is released either way).
 */
MP_API int mp_conn_close(mp_conn *c);

/* mp_conn_free - close if open and release the handle. Accepts NULL. */
MP_API void mp_conn_free(mp_conn *c);

/*
 * mp_wait - Python's multiprocessing.connection.wait(object_list, timeout).
 *
 * Each item names a connection (conn != NULL) or, when conn is NULL, a raw
 * descriptor such as a process sentinel or a listener's fileno. A
 * connection is ready as for mp_conn_poll(): a whole message buffered, or
 * its descriptor readable or at end of file; the start of a message in its
 * buffer alone is not. A raw descriptor is ready when it is readable or at
 * end of file (a sentinel when its process has ended).
 *
 * items, n:  the objects; on return each item's ready field is 1 or 0.
 * timeout:   MP_FOREVER, MP_NOWAIT or seconds.
 *
 * Returns the number of ready items (0 when the timeout passed first);
 * -EINVAL for a NULL array with n > 0 or a negative fd; MP_ECLOSED for a
 * closed connection; MP_EWRITEONLY for a send-only connection; -EBADF for a
 * descriptor that is not open; -ENOMEM.
 */
typedef struct mp_wait_item {
    mp_conn *conn; /* the connection, or NULL to use fd */
    int fd;        /* a raw descriptor, used when conn is NULL */
    int ready;     /* out: 1 if ready */
} mp_wait_item;

/* Python's multiprocessing.connection.wait(): the comment above mp_wait_item
 * gives its parameters and returns. */
MP_API ssize_t mp_wait(mp_wait_item *items, size_t n, double timeout);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_CONN_H */
