/*
 * libmpipc - Listener and Client: Python's multiprocessing.connection
 * Listener(address, authkey=...) and Client(address, authkey=...), and the
 * authkey handshake (deliver_challenge / answer_challenge).
 *
 *     mp_listener *l;
 *     mp_listener_new(&l, "tcp:127.0.0.1:6000", "secret", 6, NULL);
 *     mp_conn *c;
 *     mp_listener_accept(l, &c, MP_FOREVER);      // handshake included
 *
 *     mp_conn *c;                                  // elsewhere
 *     mp_client_connect(&c, "tcp:127.0.0.1:6000", "secret", 6, 10.0);
 *
 * Either end may be Python: a C client joins a Python Listener with the same
 * authkey, and a Python Client joins a C listener.
 *
 * Addresses are strings:
 *   "unix:/path/to/sock" or any string containing '/'   an AF_UNIX path
 *   "unix:@name" or "@name"                             Linux abstract socket
 *   "tcp:host:port" or "host:port" ("[::1]:port")       TCP (IPv4 or IPv6)
 * A listener given a NULL address picks, like Python, a fresh AF_UNIX path
 * in a private directory (mode 0700, under $TMPDIR or /tmp); its socket is
 * mode 0600. A TCP listener given port 0 binds an ephemeral port;
 * mp_listener_address() tells which.
 *
 * Authentication is CPython's challenge/response with HMAC over the authkey,
 * run in both directions (each side proves it knows the key):
 *   - the 3.12+ form: the challenge is "{sha256}" + 40 random bytes and the
 *     answer "{digest}" + HMAC(authkey, challenge, digest);
 *   - the 3.11 form: a 20-byte challenge answered with a raw 16-byte
 *     HMAC-MD5.
 * A listener sends the 3.12 form unless asked for the 3.11 one, and accepts
 * either answer ({md5} and {sha256} digests; the other digests 3.12 allows,
 * sha384 and sha3, are refused with MP_EAUTH). A client answers either form.
 * Every handshake message is read with a 256-byte limit, as in Python, and
 * within the call's timeout; digests are compared in constant time. A wrong
 * key or a peer that sends anything else is MP_EAUTH on both sides - never a
 * crash or a hang.
 *
 * Thread/fork: a listener may be used from several threads. A child that
 * inherits it may accept on it; only the process that made it removes its
 * AF_UNIX socket file when it is closed, as Python's Finalize does.
 */
#ifndef MPIPC_LISTENER_H
#define MPIPC_LISTENER_H

#include <mpipc/common.h>
#include <mpipc/conn.h>
#include <mpipc/error.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A bound, listening socket (Python's Listener). */
typedef struct mp_listener mp_listener;

/* The challenge form a listener sends. */
enum mp_auth_form {
    MP_AUTH_SHA256 = 0, /* "{sha256}" + 40 bytes: CPython 3.12+ (default) */
    MP_AUTH_MD5 = 1,    /* 20 bytes, HMAC-MD5: CPython 3.11 and older */
};

/* Listener options; start from MP_LISTENER_OPTS_INIT so fields added later
 * keep their defaults. */
typedef struct mp_listener_opts {
    int backlog;   /* listen() backlog; 0 picks 16 */
    int challenge; /* enum mp_auth_form */
} mp_listener_opts;

/* Every default of mp_listener_opts: backlog 16, the sha256 challenge. */
#define MP_LISTENER_OPTS_INIT {0, MP_AUTH_SHA256}

/*
 * mp_listener_new - bind and listen (Python's Listener(address, authkey)).
 *
 * address:      see above; NULL for a private AF_UNIX path.
 * authkey, len: the shared key, copied. NULL or len 0 accepts without a
 *               handshake (Python: "if self._authkey:").
 * opts:         NULL for the defaults.
 *
 * Returns 0; -EINVAL for an address that does not parse; -EADDRINUSE,
 * -EACCES, -ENOENT (unknown host), other -errno. *out is NULL on failure.
 * Ownership: mp_listener_free().
 */
MP_API int mp_listener_new(mp_listener **out, const char *address, const void *authkey,
                           size_t authkey_len, const mp_listener_opts *opts);

/*
 * mp_listener_accept - wait for a client and authenticate it (Python's
 * accept()).
 *
 * out:      receives the connection (duplex).
 * timeout:  covers the wait for a client and the handshake (Python has no
 *           timeout here, and a client that connects and stays silent blocks
 *           its accept() forever).
 *
 * Returns 0; MP_ETIMEDOUT; MP_EAUTH (wrong key or handshake garbage; the
 * client's connection is closed); MP_EOF (the client hung up during the
 * handshake); MP_ECLOSED; -errno. Ownership: mp_conn_free() the connection.
 */
MP_API int mp_listener_accept(mp_listener *l, mp_conn **out, double timeout);

/* The bound address in the form above ("unix:/tmp/mpipc-x/listener-y",
 * "tcp:127.0.0.1:45678"); valid until the listener is freed. NULL for NULL. */
MP_API const char *mp_listener_address(const mp_listener *l);

/* The address of the last accepted client (Python's last_accepted), or NULL
 * before the first accept. Valid until the next accept. */
MP_API const char *mp_listener_last_accepted(const mp_listener *l);

/* The listening descriptor: readable when a client is waiting, for mp_wait()
 * (as an fd item). MP_ECLOSED once closed. */
MP_API int mp_listener_fileno(const mp_listener *l);

/* Close the socket (Python's close()); removes an AF_UNIX socket file (and
 * the private directory) made by this process. Closing twice is fine.
 * Later accepts return MP_ECLOSED. Returns 0. */
MP_API int mp_listener_close(mp_listener *l);

/* Close if open, release the handle. Accepts NULL. */
MP_API void mp_listener_free(mp_listener *l);

/*
 * mp_client_connect - connect to a listener and authenticate (Python's
 * Client(address, authkey)).
 *
 * authkey, len: NULL for no handshake. Unlike the listener, an empty
 *               non-NULL key still runs the handshake, as Python's
 *               "if authkey is not None:" does.
 * timeout:      covers connecting and the handshake.
 *
 * Returns 0; MP_EAUTH; MP_ETIMEDOUT; MP_EOF; -ECONNREFUSED, -ENOENT and
 * other -errno; -EINVAL for an address that does not parse.
 * Ownership: mp_conn_free() the connection.
 */
MP_API int mp_client_connect(mp_conn **out, const char *address, const void *authkey,
                             size_t authkey_len, double timeout);

/*
 * mp_deliver_challenge / mp_answer_challenge - one direction of the
 * handshake on any connection (Python's functions of the same names); a
 * listener runs deliver then answer, a client answer then deliver.
 *
 * form:     for deliver, which challenge to send (enum mp_auth_form).
 * Returns 0 once the peer proved the key (deliver) or accepted our answer
 * (answer); MP_EAUTH; MP_ETIMEDOUT; MP_EOF; other connection codes.
 */
MP_API int mp_deliver_challenge(mp_conn *c, const void *authkey, size_t authkey_len, int form,
                                double timeout);
MP_API int mp_answer_challenge(mp_conn *c, const void *authkey, size_t authkey_len,
                               double timeout);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_LISTENER_H */
