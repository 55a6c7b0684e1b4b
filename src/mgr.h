/*
 * mgr - what the manager's two halves share: the protocol constants
 * (docs/manager.md specifies the messages) and the server loop's entry
 * point. Private: manager.c (the client side, handles and proxies) and
 * mgr_server.c (the server) include it; never installed.
 */
#ifndef MPIPC_MGR_H
#define MPIPC_MGR_H

#include <mpipc/listener.h>

#include <stddef.h>
#include <stdint.h>

/* The protocol version both ends announce in 'hello'. */
#define MP__MGR_PROTOCOL 1

/* Message size limits: the default for requests (server) and replies
 * (client), and the largest a caller may ask for (every frame then has the
 * short 4-byte header). */
#define MP__MGR_DEFAULT_MAX ((size_t)64 << 20)
#define MP__MGR_MAX_LIMIT   ((size_t)1 << 30)

/* A connection's handshake must end within this many seconds. */
#define MP__MGR_HANDSHAKE_TIMEOUT 10.0

/* The listen() backlog of a manager's socket: a hundred children that all
 * connect at once wait in it instead of being refused. */
#define MP__MGR_BACKLOG 256

/*
 * Spinning. On a machine where a sleeping process takes tens of
 * microseconds to wake (virtual machines above all: an idle vCPU needs an
 * interrupt), sleeping and waking once per message costs more than the
 * message. So a client whose call is answered at once (one that does not
 * wait in the server) polls for the reply for up to CLIENT_SPIN before it
 * blocks, and the server polls for up to SERVER_SPIN after a busy moment
 * before it sleeps. A client connection whose spins keep missing (a remote
 * or overloaded server) stops spinning, trying again only now and then, so
 * the CPU it burns stays a small fraction of the time it waits.
 */
#define MP__MGR_CLIENT_SPIN_NS INT64_C(20000)
#define MP__MGR_SERVER_SPIN_NS INT64_C(50000)
#define MP__MGR_SPIN_MISSES    4
#define MP__MGR_SPIN_RETRY     64 /* then it tries once every this many calls */

/* What the server loop needs. */
struct mp__mgr_cfg {
    const void *authkey; /* the key every connection must prove (required) */
    size_t authkey_len;
    size_t max_request; /* requests above this get MP_ETOOLONG */
    int alive_fd;       /* read end of the starter's pipe, or -1 (serve) */
};

/*
 * Run the server on a listening socket until a client asks it to shut down
 * or alive_fd reports that the starter died (end of file). The listener must
 * have been made without an authkey: the server runs the handshake itself,
 * in helper threads, so a slow or silent client never stalls the others.
 * Returns 0 after a shutdown or the starter's death, -ENOMEM/-errno if the
 * loop cannot run. Everything the server made is released before it
 * returns; the listener stays the caller's.
 */
int mp__mgr_serve(mp_listener *l, const struct mp__mgr_cfg *cfg);

#endif /* MPIPC_MGR_H */
