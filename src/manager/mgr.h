/*
 * mgr - what the manager's two halves share: the protocol constants
 * (docs/manager.md specifies the messages), the mailboxes' layout, and the
 * server's entry points. Private: the client (its files include it through
 * mgr_client.h) and the server (through mgr_server.h; each header lists its
 * half's files) include it; never installed.
 */
#ifndef MPIPC_MGR_H
#define MPIPC_MGR_H

#include "core/list.h"

#include <mpipc/listener.h>
#include <mpipc/obj.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The protocol version both ends announce in 'hello'. */
#define MP__MGR_PROTOCOL 1

/* Message size limits: the default for requests (server) and replies
 * (client), and the largest a caller may ask for (every frame then has the
 * short 4-byte header). */
#define MP__MGR_DEFAULT_MAX ((size_t)64 << 20)
#define MP__MGR_MAX_LIMIT   ((size_t)1 << 30)

/* A connection's whole handshake must end within this many seconds of its
 * accept. */
#define MP__MGR_HANDSHAKE_TIMEOUT 10.0

/* The listen() backlog of a manager's socket: a hundred children that all
 * connect at once wait in it instead of being refused, and so does a client
 * that arrives while a thousand others (an attack re-opening what the server
 * closed) connect at once - a full TCP backlog drops its SYN, which costs
 * it a 1 s retransmit. The system caps it (Linux: net.core.somaxconn). */
#define MP__MGR_BACKLOG 4096

/*
 * Spinning. On a machine where a sleeping process takes tens of
 * microseconds to wake (virtual machines above all: an idle vCPU needs an
 * interrupt), sleeping and waking once per message costs more than the
 * message. So a client polls for its reply for a moment before it blocks -
 * up to CLIENT_SPIN for a call the server answers at once, up to
 * CLIENT_WAIT_SPIN for one that may wait there (a lock, a queue), which
 * catches the uncontended case - and the server polls for up to
 * SERVER_SPIN after a busy moment before it sleeps. A server whose clients
 * hold mailboxes looks at those between two yields and at its sockets (a
 * poll(), a system call) every SERVER_POLL, or every SERVER_BUSY_POLL while
 * the mailboxes keep it busy: looking at the sockets more often costs the
 * mailbox rows more than it gains the socket clients. A socket client of
 * such a server may so wait up to SERVER_POLL longer while the server
 * spins (not while it sleeps); a server without mailbox clients polls its
 * sockets at every look.
 *
 * Yield or spin in place? With more processes than CPUs - four clients
 * and a server on two vCPUs, or on one when the machine is busy - a
 * process that spins in place keeps the very process it waits for off the
 * CPU until its spin is over, while one that yields (sched_yield) lets it
 * run at once: yielding wins there. But where the two ends do have a CPU
 * each (the mp_lock row: one client works at a time), spinning in place
 * keeps them there and wins. So both ends adapt: a client (for calls the
 * server answers at once) and the server (while mailbox clients are
 * connected) first look in place for up to CLIENT_PAUSE / SERVER_PAUSE; a
 * look that ends without an answer means the other end is not running
 * alongside, and the next PAUSE_RETRY waits yield from the start. Where
 * the other end has a CPU of its own, a yield with nobody else to run is
 * cheap, so little is lost there.
 *
 * A server whose clients all speak over sockets (Python's proxies) spins
 * too, though each look there is a poll() and a yield: the spin is about
 * half its CPU per request, but it is what spares those clients a wake-up
 * of the server on every request they send. Sleeping instead of spinning
 * whenever the socket clients that may be running and the server
 * outnumber the CPUs (W6 by four Python clients on two CPUs) halved the
 * server's CPU per request, but cost the clients 20-25% more CPU per
 * request and 20-28% of their requests per second (perf stat, 4 x 2,500
 * operations, on a busy two-vCPU machine); with requests peeked
 * (mgr_server_conn.c, mp__mgr_conn_read) sleeping ran at half the ops/s
 * of spinning.
 *
 * A client connection whose spins keep missing (an overloaded server)
 * stops spinning, trying again only now and then, so the CPU it burns
 * stays a small fraction of the time it waits.
 *
 * The measurements behind these choices and values (W6 rows of
 * bench/bench_manager.c, run by bench/run.py) are in docs/manager.md,
 * "Spinning".
 */
#define MP__MGR_CLIENT_SPIN_NS      INT64_C(20000)
#define MP__MGR_CLIENT_WAIT_SPIN_NS INT64_C(10000)
#define MP__MGR_SERVER_SPIN_NS      INT64_C(50000)
#define MP__MGR_SERVER_POLL_NS      INT64_C(25000)
#define MP__MGR_SERVER_BUSY_POLL_NS INT64_C(50000)
#define MP__MGR_CLIENT_PAUSE_NS     INT64_C(20000)
#define MP__MGR_SERVER_PAUSE_NS     INT64_C(20000)
#define MP__MGR_PAUSE_RETRY         256
#define MP__MGR_SPIN_MISSES         4
#define MP__MGR_SPIN_RETRY          64 /* then it tries once every this many calls */

/*
 * Mailboxes. A started manager maps one block of shared memory before it
 * forks the server, so the server and every process forked from the
 * starter afterwards see it. Each connection of such a process may claim a
 * slot in it ('shm' request, docs/manager.md) and then carry its small
 * requests and replies through the slot instead of the socket: a call is
 * then a few stores and loads, and no system call at all when both ends
 * are awake. The socket stays: it carries what does not fit a slot, it is
 * how each end wakes a sleeping other (a "doorbell": a frame of length 0),
 * and its end of file is still how either end learns that the other died.
 *
 * A slot's state is seq << 2 | kind: the client publishes request seq
 * (REQ) after writing data and len; the server answers it with REP (the
 * reply pickle is in data) or REP_SOCK (the reply frame comes by the
 * socket, because it does not fit). State is published after data and
 * len, and read before them (release/acquire at least). Before an end
 * sleeps it raises its flag (ssleep for the server, csleep for the client
 * of a slot) and looks once more; the other end publishes, then looks at
 * the flag, and rings the doorbell when it takes the flag down. Flag and
 * state are stored and loaded sequentially consistent (no fences, which
 * ThreadSanitizer cannot follow), so one of the two always sees the other.
 * Either end may see a doorbell it no longer needs; both skip them. When a
 * request has to wait in the server (a lock held, a queue empty or full)
 * the server writes its seq to parked, and the client stops looking and
 * sleeps at once: the reply may be a long way off.
 *
 * Everything in the block is written by processes the server does not
 * trust more than their sockets: the server copies a request out before
 * it decodes it and bounds every length; a client does the same.
 */
#define MP__MGR_SLOTS         128
#define MP__MGR_SLOT_SIZE     1024
#define MP__MGR_SLOT_DATA     (MP__MGR_SLOT_SIZE - 64)
#define MP__MGR_SLOT_REQ      UINT64_C(1)
#define MP__MGR_SLOT_REP      UINT64_C(2)
#define MP__MGR_SLOT_REP_SOCK UINT64_C(3)

struct mp__mgr_slot {
    uint64_t state;  /* atomic: seq << 2 | kind */
    uint32_t len;    /* bytes in data (request or reply) */
    uint32_t csleep; /* atomic: the client waits on its socket for a doorbell */
    uint64_t parked; /* atomic: the seq of a request the server made wait */
    unsigned char pad_[40];
    unsigned char data[MP__MGR_SLOT_DATA];
};

struct mp__mgr_arena {
    uint64_t tag;    /* random, nonzero: a client shows it in 'shm' */
    uint32_t ssleep; /* atomic: the server is about to sleep in poll() */
    unsigned char pad_[52];
    struct mp__mgr_slot slot[MP__MGR_SLOTS];
};

_Static_assert(sizeof(struct mp__mgr_slot) == MP__MGR_SLOT_SIZE, "slot layout");

_Static_assert(sizeof(struct mp__mgr_arena) == 64 + MP__MGR_SLOTS * MP__MGR_SLOT_SIZE,
               "arena layout");

/* Spin in place for a moment: the CPU's spin-wait hint where there is one. */
static inline void mp__mgr_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/*
 * Large requests. A request frame larger than MP__MGR_IN_KEEP is large: the
 * server buffers it only within its budget for large messages in flight
 * (MP__MGR_BUDGET_FACTOR times its request limit), which is charged for the
 * buffer holding such a frame - growing with the bytes that arrive, never by
 * what the header claims - until the frame is decoded, and for every reply
 * larger than MP__MGR_OUT_KEEP until it has been sent. A request that does
 * not fit the budget is read and dropped as it arrives, and answered
 * ('#ERROR', -EAGAIN, ...); a reply that does not fit becomes that error
 * (nothing changes: docs/manager.md). A large request is decoded, and freed
 * once it has been handled, by a helper thread (mgr_worker.c), so the loop
 * serves everyone else meanwhile. What the server holds at most for messages
 * in flight is then the budget, plus one request's decoding (the decoder's
 * bound, docs/wire.md), plus one reply being built.
 */
#define MP__MGR_IN_KEEP       ((size_t)64 << 10)
#define MP__MGR_OUT_KEEP      ((size_t)1 << 20)
#define MP__MGR_BUDGET_FACTOR 4u

enum { MP__MGR_JOB_DECODE = 1, MP__MGR_JOB_FREE };

/* A job for the helper thread. DECODE: decode len bytes at buf + off into
 * obj (rc: 0 or the decoder's code); the thread frees buf. FREE: free obj
 * and buf. The thread frees a FREE job; a DECODE job comes back through
 * mp__mgr_worker_collect. owner and charge are the loop's alone. */
struct mp__mgr_job {
    int op;
    unsigned char *buf;
    size_t off, len;
    mp_obj *obj;
    int rc;
    void *owner;               /* the connection waiting for it; NULL once that is gone */
    size_t charge;             /* the budget the loop charged for it */
    struct mp__list_node node; /* in the worker's todo or done list */
};

struct mp__mgr_worker;

/* A worker, its thread not started yet: 0, -ENOMEM, -errno. */
int mp__mgr_worker_new(struct mp__mgr_worker **out);
/* The descriptor the loop polls: readable when decodes have finished. */
int mp__mgr_worker_fd(const struct mp__mgr_worker *w);
/* Queue a job (the worker owns it from now on; a DECODE comes back).
 * Starts the thread on first use: 0, or -errno when it cannot (the job is
 * then still the caller's). */
int mp__mgr_worker_submit(struct mp__mgr_worker *w, struct mp__mgr_job *j);
/* Move the finished DECODE jobs to the end of out (an initialized list of
 * mp__mgr_job; they are the caller's). */
void mp__mgr_worker_collect(struct mp__mgr_worker *w, struct mp__list *out);
/* Stop the thread after its current job; free every job it still holds. */
void mp__mgr_worker_free(struct mp__mgr_worker *w);

/* What the server loop needs. */
struct mp__mgr_cfg {
    const void *authkey; /* the key every connection must prove (required) */
    size_t authkey_len;
    size_t max_request;          /* requests above this get MP_ETOOLONG */
    int alive_fd;                /* read end of the starter's pipe, or -1 (serve) */
    struct mp__mgr_arena *arena; /* the mailboxes of a started manager, or NULL */
    const struct mp_manager_type *types; /* types of your own (manager_user.h) */
    size_t ntypes;
    double handshake_timeout; /* seconds; 0 for MP__MGR_HANDSHAKE_TIMEOUT */
};

/*
 * Run the server on a listening socket until a client asks it to shut down
 * or alive_fd reports that the starter died (end of file). The listener must
 * have been made without an authkey: the server runs every handshake itself,
 * without blocking, in its loop, so a slow or silent client never stalls
 * the others.
 * Returns 0 after a shutdown or the starter's death, -ENOMEM/-errno if the
 * loop cannot run. Everything the server made is released before it
 * returns; the listener stays the caller's.
 */
int mp__mgr_serve(mp_listener *l, const struct mp__mgr_cfg *cfg);

/* Is a table of types of your own whole (mgr_proxy_user.c): every type
 * named, its methods there, each named, with a function and 0 <= min_args
 * <= max_args, no typeid twice? 0, or -EINVAL with a message. */
int mp__mgr_types_check(const struct mp_manager_type *t, size_t n);

/*
 * The probe (mgr_server_probe.c): the server's request handling without
 * sockets, for the request fuzzer (fuzz/fuzz_request.c) and tests. A probe is a server
 * state with 4 connections that are never sent anything: a request runs on
 * connection i (mod 4) exactly as if it had been read from that socket, and
 * each connection's reply frames stay in its output until taken.
 *
 * _new: 0 or -ENOMEM; max_request 0 for the default. Free with _free.
 * _request: run the payload of one request frame on connection i: 0, or
 *   MP_ESTATE when the server would not read that connection now (its last
 *   request waits in the server, or its reply was not taken yet).
 * _take: the bytes of the frames written to connection i since the last
 *   take (*out NULL when none; else the caller frees it); they count as sent.
 * _close: connection i's peer hangs up (its session may end: locks are
 *   released, waiters dropped); a fresh connection takes its place.
 * _expire: every timed waiter's deadline passes.
 * _stopped: a shutdown request has been served.
 */
struct mp__mgr_probe;
int mp__mgr_probe_new(struct mp__mgr_probe **out, size_t max_request);
int mp__mgr_probe_request(struct mp__mgr_probe *p, unsigned i, const void *req, size_t n);
int mp__mgr_probe_take(struct mp__mgr_probe *p, unsigned i, unsigned char **out, size_t *len);
int mp__mgr_probe_close(struct mp__mgr_probe *p, unsigned i);
void mp__mgr_probe_expire(struct mp__mgr_probe *p);
bool mp__mgr_probe_stopped(const struct mp__mgr_probe *p);
void mp__mgr_probe_free(struct mp__mgr_probe *p);

/*
 * The server's fast request reader (mgr_server_request.c), for the
 * differential fuzzer (fuzz/fuzz_fastpath.c): the bytes of one request
 * pickle; 1 with *ident, *meth and *mlen (into p) and *args (a new tuple,
 * mp_obj_free) set; 0 when it leaves the bytes to the general decoder;
 * -ENOMEM. Whatever it accepts, the general decoder reads as the same
 * (ident, method, args).
 */
int mp__mgr_quick_request(const unsigned char *p, size_t n, int64_t *ident, const char **meth,
                          size_t *mlen, mp_obj **args);

#endif /* MPIPC_MGR_H */
