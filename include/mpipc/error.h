/*
 * libmpipc - status codes.
 *
 * A function that can fail returns an int (or ssize_t): 0 or a count on
 * success, a negative code on failure. Two kinds of negative codes exist:
 *
 *   -errno     an operating-system failure, for example -EMFILE or -EPIPE;
 *   MP_E...    a condition of the library's own, each the C twin of the Python
 *              exception multiprocessing raises in the same situation.
 *
 * The library's codes lie below -1000, far from every errno value, so the two
 * kinds never collide. mp_strerror() describes both kinds.
 */
#ifndef MPIPC_ERROR_H
#define MPIPC_ERROR_H

#include <mpipc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's own status codes: each the C twin of a Python exception. */
enum mp_status {
    MP_OK = 0,
    /* EOFError: the peer closed every writer and no message remains. */
    MP_EOF = -1001,
    /* queue.Empty: nothing to get before the timeout. */
    MP_EMPTY = -1002,
    /* queue.Full: no room to put before the timeout. */
    MP_FULL = -1003,
    /* TimeoutError, or a wait that ran out of time. */
    MP_ETIMEDOUT = -1004,
    /* OSError("bad message length"): the message is longer than maxlength;
     * the connection cannot be read afterwards, as in Python. From a queue's
     * put: the item is longer than the queue's max_item (nothing is put). */
    MP_ETOOLONG = -1005,
    /* BufferTooShort: the message does not fit the caller's buffer. */
    MP_ETOOSHORT = -1006,
    /* Use of a closed connection, queue or pool. */
    MP_ECLOSED = -1007,
    /* Corrupt framing, or a pickle that is malformed or refused. */
    MP_EPROTO = -1008,
    /* ValueError: a call that Python rejects with ValueError. */
    MP_EVALUE = -1009,
    /* AuthenticationError: the authkey handshake failed. */
    MP_EAUTH = -1010,
    /* BrokenBarrierError. */
    MP_EBROKEN = -1011,
    /* A pool task reported failure. */
    MP_ETASK = -1012,
    /* A pool worker died while running the task. */
    MP_EWORKER = -1013,
    /* The lock was acquired, but its previous holder died holding it. */
    MP_EOWNERDEAD = -1014,
    /* OSError("got end of file during message"): the peer went away after
     * sending only part of a message. */
    MP_ETRUNCATED = -1015,
    /* OSError("connection is read-only"): send on a receive-only end. */
    MP_EREADONLY = -1016,
    /* OSError("connection is write-only"): receive or poll on a send-only end. */
    MP_EWRITEONLY = -1017,
    /* AssertionError in Python: the object is not in a state that allows the
     * call (starting a process twice, joining one never started, ...). */
    MP_ESTATE = -1018,
    /* The answer does not exist yet: Python returns None (a process's exit
     * code while it runs). */
    MP_ENOTDONE = -1019,
    /* TypeError: a value of the wrong type for the call (mp_obj_get_int on a
     * str, an unhashable dict key). */
    MP_ETYPE = -1020,
    /* LookupError: no such key in a dict (KeyError) or index in a list
     * (IndexError). */
    MP_EKEY = -1021,
    /* The manager server is gone: it died, was shut down, or cannot be
     * reached (Python's EOFError / ConnectionRefusedError from a proxy). */
    MP_ENOSERVER = -1040,
    /* No such shared object on the manager: the name was never given, or
     * the object was released by everyone who held it. */
    MP_ENOOBJ = -1041,
    /* A pool or pool result used in a child forked from the process that
     * owns it: the pool's threads and workers exist only in its owner. */
    MP_EFORKED = -1030,
    /* The pool was terminated before this task finished (Python leaves the
     * caller blocked in get() instead). */
    MP_ETERMINATED = -1031,
};

/*
 * mp_strerror - describe a status code.
 *
 * code: any value a libmpipc function returned: 0, a named MP_E code or a
 *       negative errno value.
 *
 * Returns a static, NUL-terminated English description; never NULL. Unknown
 * codes give "unknown libmpipc status". Thread/fork: safe to call anywhere.
 */
MP_API const char *mp_strerror(int code);

/*
 * mp_errname - the symbolic name of a status code.
 *
 * Returns "MP_OK", "MP_EOF", ... for the library's codes, the errno macro name
 * for the common negative errno values ("EPIPE", "EMFILE", ...) and
 * "MP_UNKNOWN" otherwise. The string is static. Useful in log lines and test
 * failure messages.
 */
MP_API const char *mp_errname(int code);

/*
 * mp_errmsg - why the last call on this thread failed, in words.
 *
 * code: the status the failed call returned.
 *
 * When the library knows more than a code says - the opcode and offset of a
 * refused pickle, the repr of a manager KeyError's key, the pid and signal of
 * a dead pool worker, which side of an authkey handshake failed - the call
 * records a message for the calling thread as it fails. mp_errmsg(code)
 * returns that message if the last failure recorded on this thread had this
 * code, and mp_strerror(code) otherwise, so it is always safe to call with
 * what a call returned:
 *
 *     int rc = mp_conn_recv(c, &obj, 5.0);
 *     if (rc < 0)
 *         fprintf(stderr, "recv: %s\n", mp_errmsg(rc));
 *
 * This is dlerror()'s model (per thread), not sqlite3_errmsg()'s (per
 * handle): many calls that fail have no handle. Read the message right after
 * the failing call: a later libmpipc call on the same thread may replace it,
 * and a later failure with the same code that records nothing may leave an
 * older message in place. Messages are at most 255 bytes (longer ones are cut
 * and end in "..."); a key's repr in them is cut to about 200 bytes.
 *
 * Returns a NUL-terminated string; never NULL. Ownership: the library's; it
 * stays valid until this thread's next libmpipc call. Thread/fork: each
 * thread has its own record, and recording never allocates; a child made by
 * fork starts with a copy of the forking thread's record.
 */
MP_API const char *mp_errmsg(int code);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_ERROR_H */
