/*
 * libmpipc - the manager: Python's multiprocessing.Manager() for C. A server
 * process holds shared dicts, lists, locks and queues; every process that
 * can reach it - forked children, or programs on other hosts that know its
 * TCP address and authkey - works on them through proxies.
 *
 *     mp_manager *m;
 *     mp_manager_start(&m, NULL);                  // forks the server
 *     mp_obj *init = ...;                          // {'count': 100}
 *     mp_dictproxy *d;
 *     mp_manager_dict(m, init, &d);
 *     mp_lockproxy *lock;
 *     mp_manager_lock(m, &lock);
 *     // in each of 100 children:
 *     mp_lockproxy_acquire(lock, MP_FOREVER);
 *     int64_t n;
 *     mp_dictproxy_get_int(d, "count", &n);
 *     mp_dictproxy_set_int(d, "count", n - 1);
 *     mp_lockproxy_release(lock);
 *     // or, with no lock at all: mp_dictproxy_add_int(d, "count", -1, NULL);
 *     ...
 *     mp_dictproxy_free(d); mp_lockproxy_free(lock);
 *     mp_manager_free(m);                          // stops the server
 *
 * Design. mp_manager_start() forks a server process (through mp_process)
 * that listens on a private AF_UNIX socket in a 0700 directory, with a fresh
 * 32-byte random authkey. mp_manager_serve() runs the same server in the
 * calling process on any address (a TCP port for other hosts), and
 * mp_manager_connect() reaches one from anywhere. Connections authenticate
 * with the Listener/Client handshake of mpipc/listener.h (CPython's HMAC
 * challenge/response). One event-loop thread in the server owns every
 * object, so each request is atomic: mp_dictproxy_add_int() is a lock-free
 * counter, and compare-and-set is built in. Requests that wait (a lock
 * acquire, a queue get or put, a queue join) wait in the server, never
 * blocking it, with the timeout the caller gave.
 *
 * Protocol (docs/manager.md has the details). Every message is one frame of
 * CPython's connection format holding a pickle (docs/wire.md): a request is
 * (ident, method, args) - ident 0 addresses the manager itself ('hello',
 * 'create', 'attach', 'incref', 'release', 'unlink', 'info', 'shutdown',
 * 'ping'), any other ident one shared object - and the reply is
 * ('#RETURN', value) or ('#ERROR', code, text), where code is the status
 * code the proxy call returns. Python's own clients speak CPython's
 * dialect to the same server, and this client speaks it to CPython's
 * server ("CPython's server" below).
 *
 * Proxies. A proxy (mp_dictproxy, mp_listproxy, mp_lockproxy, mp_queueproxy) names one object
 * on one manager; each call is one round trip. Proxies and the manager
 * handle may be used from several threads (each thread that calls at a
 * given moment gets a connection of its own from the handle's pool, so a
 * thread blocked in mp_queueproxy_get() does not hold up the others) and after
 * fork: a child's first call opens the child's own connection, never the
 * parent's socket (the library closes the child's inherited copies at fork,
 * CPython gh-101320), and registers the child as a holder of the object.
 *
 * Lifetime of objects. An object lives while some process holds it: the
 * one that made it, every process that attached to it, and every process
 * that used a proxy it inherited. A process holds it once per proxy and
 * lets go of that hold when it frees the proxy, of all of them when its
 * last connection closes (it exited or died). An object with a
 * name also lives until mp_manager_unlink(). Using an object that no longer
 * exists gives MP_ENOOBJ.
 *
 * Failure guarantees.
 *   - The server dies: every call returns MP_ENOSERVER as soon as its
 *     socket reports the end (at once for a local server, even for a call
 *     blocked with MP_FOREVER), and never later than its timeout (the
 *     operation's own wait plus the handle's call timeout, see
 *     mp_manager_set_timeout). Over TCP a host that vanishes without a
 *     reset is noticed by keepalive probes within about 25 s.
 *   - A client dies (or exits, or frees its handle): the server releases
 *     every manager lock the process held - the next acquirer gets the lock
 *     with MP_EOWNERDEAD (Python keeps such a lock held forever) - cancels
 *     its waiting requests and drops its references.
 *   - The starter dies: a started server notices at once (a pipe only the
 *     starter holds reaches end of file) and exits; no orphan servers.
 *   - A call whose reply does not come within its timeout returns
 *     MP_ETIMEDOUT and keeps its connection aside until the late reply
 *     arrives (then it is reused): closing it could make a merely slow
 *     server think the process had gone and release its locks.
 *   - Requests larger than the server's limit (64 MiB unless set) get
 *     MP_ETOOLONG; a proxy checks before it sends, so its connection stays
 *     usable. A malformed request gets an error reply (MP_EPROTO) and the
 *     server goes on serving everyone, the sender included.
 *
 * Cost. A call is one round trip, and on many machines (virtual ones
 * above all) a system call, a context switch and above all waking a
 * sleeping process cost more than the message. So:
 *   - Mailboxes. A started manager maps a block of shared memory before it
 *     forks its server, and every process forked from the starter since
 *     (the starter included) carries its calls through it: each connection
 *     gets a 1 KiB mailbox (up to 128 connections), and a call whose
 *     request and reply each fit in 960 bytes is a few stores and loads on
 *     both sides, with no system call while both ends are awake. Larger
 *     messages, handles made by mp_manager_connect() and servers run by
 *     mp_manager_serve() use the socket; every call still gets its own
 *     reply or error, and death is still noticed on the socket at once.
 *     What that buys is measured by bench/ (W6) and shown in
 *     docs/performance.md and docs/manager.md ("Spinning").
 *   - Polling. A client looks for its reply for up to 20 us before it
 *     sleeps (10 us for a call that may wait in the server: a lock
 *     acquire, a queue get, put or join - and not at all once the server
 *     says the call has to wait), and the server looks for work for up to
 *     50 us after a busy moment. Over mailboxes both first look in place;
 *     when that does not pay (more processes than CPUs, so the one being
 *     waited for is not running alongside) they yield the CPU between
 *     looks (sched_yield) for a while, so that it runs at once. Such a
 *     wait costs CPU time for at most that long per call. Over a socket a
 *     client polls only for calls that the server answers at once, and
 *     the server yields between polls. A connection whose polls keep
 *     missing (an overloaded server) stops polling. While mailbox clients
 *     keep it busy, the server looks at its sockets every 25-50 us, so a
 *     socket client of such a server may wait that much longer.
 *
 * CPython's server. mp_manager_connect() also reaches a Python
 * SyncManager (manager.start() or get_server().serve_forever(), AF_UNIX or
 * TCP, the same authkey handshake), and the dict, list, lock, rlock and
 * queue proxies then work on Python's objects with Python's protocol: a
 * call on the server itself (create, incref, decref, shutdown) takes a
 * connection of its own, a proxy's call goes on one of the handle's
 * connections that sent accept_connection, and Python's exceptions come
 * back as the codes the same calls give against our server (KeyError and
 * IndexError: MP_EKEY, ValueError and RuntimeError: MP_EVALUE, TypeError:
 * MP_ETYPE, queue.Empty: MP_EMPTY, queue.Full: MP_FULL; a server-side
 * traceback: MP_EPROTO, or MP_ENOOBJ for an unknown object or typeid),
 * with Python's words in mp_errmsg(). Attaching by name
 * (mp_manager_attach_dict(m, "shared", ...) and the like) calls the typeid
 * the Python program registered under that name (BaseManager.register(
 * "shared", callable=...)), which is how Python shares one object. What
 * Python's server cannot do gives -ENOTSUP with a message: atomic add and
 * compare-and-set, creating named objects, mp_manager_unlink and
 * mp_manager_info. Python's semantics hold there, not ours: a lock held by
 * a process that dies stays held, the mailboxes are not used, and a call
 * that times out closes its connection (a lock acquire the server grants
 * later stays granted). An RLock belongs to the thread that acquired it,
 * as in Python: each thread calls an RLock proxy on a connection of its
 * own (Python's server owns the lock by the thread serving that
 * connection), kept until the proxy is freed.
 *
 * Proxies inside values (1.1). A Python client may store a proxy in a
 * shared value (d['inner'] = m.list(), m.list([m.dict()]), q.put(m.Lock()))
 * or pass one to create (m.Condition(m.Lock())). Python pickles it as
 * managers.RebuildProxy(...), which the C side reads, on our server and on
 * CPython's, as an inert MP_TYPE_INSTANCE of class
 * "multiprocessing.managers.RebuildProxy" (mpipc/obj.h: its args name the
 * proxy class and carry the Token). A C program passes it on as any value
 * (stored again in a dict or list or put on a queue, it reaches a Python
 * client as a working proxy), or makes a C proxy of it for a dict, list,
 * Lock/RLock or Queue of the same server: mp_manager_dict_from_ref() and
 * its siblings; the other way, mp_listproxy_ref() and its siblings give
 * the reference of a C proxy, to store in a value as Python stores a
 * proxy. On our server a dict, list, Namespace or Queue whose
 * value holds a reference to one of the server's objects keeps that object
 * alive until the value lets go of it (CPython's server keeps it for good),
 * a reference a reply sends to a Python client is kept until that client's
 * incref (Python's RebuildProxy increfs as it loads it), and a Condition
 * made over a Lock or RLock proxy keeps that lock. A reference a C client
 * reads is not held for it: it names a live object while some value or
 * proxy still holds that object.
 *
 * Thread/fork: see Proxies above. Only the process that started a manager
 * stops it (mp_manager_shutdown or mp_manager_free there; an exit hook does
 * it at normal exit, as Python's finalizer does); in other processes,
 * freeing the handle only closes that process's connections.
 */
#ifndef MPIPC_MANAGER_H
#define MPIPC_MANAGER_H

#include <mpipc/common.h>
#include <mpipc/error.h>
#include <mpipc/obj.h>

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A manager: the server's address and key, and this process's connections. */
typedef struct mp_manager mp_manager;
/* Proxies of the four kinds of shared object. */
typedef struct mp_dictproxy mp_dictproxy;
typedef struct mp_listproxy mp_listproxy;
typedef struct mp_lockproxy mp_lockproxy;
typedef struct mp_queueproxy mp_queueproxy;

/* A type of your own (mpipc/manager_user.h). */
struct mp_manager_type;

/* Manager options; start from MP_MANAGER_OPTS_INIT so fields added later
 * keep their defaults. */
typedef struct mp_manager_opts {
    /* mp_manager_start: where the server listens; NULL for a private
     * AF_UNIX socket (mode 0600 in a 0700 directory). Any listener address
     * works, e.g. "tcp:0.0.0.0:50000". Ignored by serve and connect. */
    const char *address;
    /* mp_manager_start: the authkey; NULL for 32 random bytes. Ignored by
     * serve and connect, which take theirs as arguments. */
    const void *authkey;
    size_t authkey_len; /* the authkey's length in bytes */
    /* Client side: how long a call may take beyond the wait it asked for
     * (connecting included); negative waits without limit. Default 30 s. */
    double timeout;
    /* The largest request the server accepts and the largest reply a
     * client accepts, in bytes; 0 for 64 MiB, at most 1 GiB. */
    size_t max_message;
    /* mp_manager_serve: called once the server listens, with the bound
     * address (useful with port 0); may be NULL. */
    void (*ready)(const char *address, void *arg);
    void *ready_arg; /* passed to ready as arg */
    /* mp_manager_start and mp_manager_serve: the types of your own the
     * server serves (mpipc/manager_user.h), ntypes of them; borrowed, and
     * must stay valid while the server runs. NULL for none. A malformed
     * table (a type without typeid, a method without name or function,
     * min_args > max_args, a typeid twice) is -EINVAL. */
    const struct mp_manager_type *types;
    size_t ntypes; /* how many types */
    /* mp_manager_start and mp_manager_serve (1.1): the seconds a new
     * connection has, from its accept, to prove the authkey both ways; one
     * that has not by then is closed. 0 for 10 s; negative or NaN is
     * -EINVAL. Ignored by connect. */
    double handshake_timeout;
} mp_manager_opts;

/* Every default of mp_manager_opts: a private socket, a random key, 30 s,
 * a 10 s handshake. */
#define MP_MANAGER_OPTS_INIT                                                                       \
    {                                                                                              \
        NULL, NULL, 0, 30.0, 0, NULL, NULL, NULL, 0, 0.0                                           \
    }

/* ---- Managers ------------------------------------------------------------ */

/*
 * mp_manager_start - fork a server process and connect to it (Python's
 * Manager() / BaseManager.start()).
 *
 * out:   receives the handle.
 * opts:  NULL for the defaults: a private AF_UNIX socket and a random key.
 *
 * The server exits when mp_manager_shutdown() or mp_manager_free() is called
 * in this process, when this process exits normally (an exit hook, like
 * Python's finalizer), and when this process dies in any other way. It
 * closes the descriptors it inherited (other than stdio), so it never keeps
 * a pipe of its parent open, and ignores the SIGINT a terminal sends to the
 * whole process group (as Python's does).
 * Returns 0; -EINVAL (bad options); MP_ESTATE when called in a daemon
 * child (daemons may not have children); -EADDRINUSE and the other codes of
 * mp_listener_new() for a bad opts->address; -ENOMEM, -EAGAIN; MP_ENOSERVER
 * if the server died before it reported its address.
 * Ownership: mp_manager_free(). Thread/fork: see the file comment.
 */
MP_API int mp_manager_start(mp_manager **out, const mp_manager_opts *opts);

/*
 * mp_manager_connect - reach a running manager (Python's
 * BaseManager(address, authkey).connect()).
 *
 * address:           "tcp:host:port", "unix:/path", ... (listener.h).
 * authkey, len:      the server's key (required, len > 0).
 * opts:              NULL for the defaults (timeout, max_message).
 *
 * Opens one connection now, so a wrong address or key is reported here.
 * The server may be ours or CPython's (a Python SyncManager run by
 * manager.start() or get_server().serve_forever()): CPython's answers our
 * hello with a traceback and its 'dummy' as Python's does, and the handle
 * then speaks Python's protocol (see "CPython's server" above).
 * Returns 0; MP_EAUTH for a wrong key; -ECONNREFUSED, -ENOENT (no such
 * socket or host); MP_EOF (the server hung up during the handshake, as one
 * out of descriptors does); MP_ETIMEDOUT; -EINVAL; -ENOMEM.
 * Ownership: mp_manager_free() disconnects (the server keeps running);
 * authkey is copied. Thread/fork: as a started handle (see the file
 * comment).
 */
MP_API int mp_manager_connect(mp_manager **out, const char *address, const void *authkey,
                              size_t authkey_len, const mp_manager_opts *opts);

/*
 * mp_manager_serve - run a manager server in this process until a client
 * asks it to stop with mp_manager_shutdown() (Python's
 * BaseManager(address, authkey).get_server().serve_forever()).
 *
 * address:       where to listen ("tcp:0.0.0.0:50000"; port 0 picks one,
 *                reported to opts->ready).
 * authkey, len:  the key clients must prove (required, len > 0).
 * opts:          max_message and ready are used; may be NULL.
 *
 * Blocks. Everything the server made is released before it returns.
 * Returns 0 after a shutdown request; the codes of mp_listener_new();
 * -EINVAL; -ENOMEM.
 * Ownership: authkey is borrowed until it returns.
 * Thread/fork: runs in the calling thread, which serves every connection
 * (handshakes included) and starts no thread. A child forked meanwhile
 * does not serve (it holds copies of the server's sockets until it exits
 * or execs).
 */
MP_API int mp_manager_serve(const char *address, const void *authkey, size_t authkey_len,
                            const mp_manager_opts *opts);

/*
 * mp_manager_shutdown - stop the server.
 *
 * For a started manager (only in the process that started it): asks the
 * server to stop, waits for it (terminating it if it does not stop within a
 * few seconds), and removes its private socket and directory. For a
 * connected handle: sends the request (any authenticated client may stop a
 * server, as in Python). Either way the handle's calls return MP_ECLOSED
 * afterwards; proxies in other processes get MP_ENOSERVER.
 * Returns 0 (also when the server had already died, and when called
 * again); MP_ESTATE in a process that inherited a started manager; for a
 * connected handle, the request's codes (MP_ENOSERVER...).
 * Thread/fork: calls of other threads in flight end with MP_ENOSERVER or
 * MP_ECLOSED.
 */
MP_API int mp_manager_shutdown(mp_manager *m);

/*
 * mp_manager_free - shut down a started manager (in the process that
 * started it), close this process's connections, release the handle.
 * Accepts NULL. Proxies may outlive it: their calls then return
 * MP_ECLOSED; each must still be freed.
 * Thread/fork: not while another thread still calls through the handle
 * (its proxies may be freed later). In a process that inherited a started
 * handle it only closes that process's connections.
 */
MP_API void mp_manager_free(mp_manager *m);

/* mp_manager_address - the server's address ("unix:/tmp/mpipc-.../listener-...",
 * "tcp:127.0.0.1:50000"). Ownership: borrowed, valid while the handle
 * lives. NULL for NULL. Thread/fork: any. */
MP_API const char *mp_manager_address(const mp_manager *m);

/* mp_manager_authkey - the authkey; *len receives its length. Hand it (with
 * the address) to programs started separately so they can connect.
 * Ownership: borrowed from the handle, a secret: do not log it.
 * Thread/fork: any. */
MP_API const void *mp_manager_authkey(const mp_manager *m, size_t *len);

/* mp_manager_pid - the server's pid for a started manager (its child); 0 for
 * a connected handle or NULL. Thread/fork: any. */
MP_API pid_t mp_manager_pid(const mp_manager *m);

/* mp_manager_set_timeout - set the call timeout (see opts.timeout) for every
 * thread and proxy of this handle; negative for no limit. Returns 0 or
 * -EINVAL (NULL); MP_EVALUE (NaN). Thread/fork: any thread; a child inherits
 * the value. */
MP_API int mp_manager_set_timeout(mp_manager *m, double timeout);

/*
 * mp_manager_info - the server's state, for monitoring and tests (Python's
 * _debug_info / _number_of_objects).
 *
 * info: receives a dict {'pid': int, 'objects': int, 'sessions': int (client
 *       processes connected), 'connections': int, 'mailboxes': int (the
 *       connections that carry their calls through shared memory, see
 *       "Cost" above), 'waiting': int (requests parked in the server: lock
 *       acquires, queue gets, puts and joins that wait), 'buffered' and
 *       'budget': int (bytes of large messages in flight, and the most the
 *       server holds for them: docs/manager.md), 'session': this
 *       process's session id, 'connection': the id of the connection that
 *       answered, 'mailbox': bool (whether that one does), 'names': [str,
 *       ...]}.
 * Returns 0 or a call's codes; -ENOTSUP on CPython's server.
 * Ownership: mp_obj_free(*info).
 * Thread/fork: any thread, any process with the handle.
 */
MP_API int mp_manager_info(mp_manager *m, mp_obj **info);

/*
 * mp_manager_unlink - forget a name: the object of that name lives on only
 * while processes still hold it. Returns 0; MP_ENOOBJ for an unknown name;
 * -EINVAL for a name that is not UTF-8; a call's codes; -ENOTSUP on
 * CPython's server, which has no names.
 * Thread/fork: any thread, any process with the handle.
 */
MP_API int mp_manager_unlink(mp_manager *m, const char *name);

/* ---- Making and finding shared objects ----------------------------------------
 *
 * Every kind comes with three constructors:
 *   mp_manager_X(m, ..., &p)             a new anonymous object;
 *   mp_manager_X_named(m, name, ..., &p) the object called name, made (from
 *                                        the initial value) if it does not
 *                                        exist yet;
 *   mp_manager_attach_X(m, name, &p)     the object called name, which must
 *                                        exist.
 * Names are NUL-terminated UTF-8 strings. Common returns of all twelve:
 * MP_ETYPE when the name belongs to an object of another kind;
 * MP_ECLOSED, MP_ENOSERVER, MP_ETIMEDOUT, MP_EAUTH (reconnecting with a key
 * the server no longer takes); MP_ETOOLONG for an initial value beyond the
 * request limit; -EINVAL (NULL arguments, a name that is not UTF-8);
 * -ENOMEM. *out is NULL on failure. On CPython's server the _named ones
 * give -ENOTSUP, and attach_X(m, name) calls the typeid registered under
 * name (MP_ENOOBJ when there is none): see "CPython's server" above.
 */

/*
 * mp_manager_dict - a new shared dict (Python's Manager().dict(initial)).
 * initial: a dict whose items are copied into it, or NULL for {}
 *          (MP_ETYPE for anything else).
 * Returns 0. Ownership: mp_dictproxy_free() the proxy; initial stays the
 * caller's. Thread/fork: the proxy works in any thread, and in children
 * forked later (see the file comment).
 */
MP_API int mp_manager_dict(mp_manager *m, const mp_obj *initial, mp_dictproxy **out);

/*
 * mp_manager_dict_named - the dict called name; made from initial (NULL for
 * {}) if no object has that name yet.
 * Returns 1 when this call made it, 0 when it existed (initial is then
 * ignored), or a negative code. Ownership and Thread/fork as
 * mp_manager_dict().
 */
MP_API int mp_manager_dict_named(mp_manager *m, const char *name, const mp_obj *initial,
                                 mp_dictproxy **out);

/*
 * mp_manager_attach_dict - the existing dict called name.
 * Returns 0; MP_ENOOBJ when no object has that name. Ownership and
 * Thread/fork as mp_manager_dict().
 */
MP_API int mp_manager_attach_dict(mp_manager *m, const char *name, mp_dictproxy **out);

/*
 * mp_manager_dict_from_ref - a proxy for the dict a proxy reference names.
 * ref: the inert value a Python proxy inside a value decodes to (class
 *      "multiprocessing.managers.RebuildProxy": "Proxies inside values"
 *      above), here a DictProxy's (typeid 'dict') of the server m talks to,
 *      ours or CPython's.
 * Returns 0; MP_ETYPE when ref is no proxy reference or one of another
 * kind; MP_EVALUE when its Token names another server (its address is not
 * mp_manager_address(m)) or an id no server gives; MP_ENOOBJ when the
 * object is gone; a call's codes. *out is NULL on failure.
 * Ownership: mp_dictproxy_free() the proxy, which holds the object as an
 * attached one does; ref stays the caller's.
 * Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_dict_from_ref(mp_manager *m, const mp_obj *ref, mp_dictproxy **out);

/*
 * mp_dictproxy_ref - the proxy reference of a dict proxy, to store in a
 * shared value (Python's d['pets'] = pets, m.list([pets])).
 * d:    the proxy.
 * ref:  receives the reference: an inert value of class
 *       "multiprocessing.managers.RebuildProxy" naming the object by a Token
 *       of this server's address (Python's form: the socket's path, or
 *       (host, port)) and the object's id, as Python pickles a DictProxy.
 * Store it in a value of the same server (a dict, a list, a queue) as a
 * Python program stores a proxy: a Python client that reads it gets a
 * working DictProxy, a C client makes a proxy of it with
 * mp_manager_dict_from_ref(). On our server the value that holds it keeps the
 * object alive; CPython's keeps it for good.
 * No round trip: the reference names the object whether or not it still
 * exists.
 * Returns 0; MP_EVALUE for a manager whose address has no form a Token
 * carries (neither unix: nor tcp:); -EINVAL (NULL arguments); -ENOMEM.
 * *ref is NULL on failure.
 * Ownership: mp_obj_free(*ref).
 * Thread/fork: any thread, any process with the proxy.
 */
MP_API int mp_dictproxy_ref(const mp_dictproxy *d, mp_obj **ref);

/*
 * mp_manager_list - a new shared list (Python's Manager().list(initial)).
 * initial: a list or tuple whose items are copied, or NULL for [].
 * Returns 0. Ownership: mp_listproxy_free() the proxy; initial stays the
 * caller's. Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_list(mp_manager *m, const mp_obj *initial, mp_listproxy **out);

/*
 * mp_manager_list_named - the list called name; made from initial if new.
 * Returns 1 (made), 0 (existed) or a negative code. Ownership and
 * Thread/fork as mp_manager_list().
 */
MP_API int mp_manager_list_named(mp_manager *m, const char *name, const mp_obj *initial,
                                 mp_listproxy **out);

/*
 * mp_manager_attach_list - the existing list called name.
 * Returns 0; MP_ENOOBJ. Ownership and Thread/fork as mp_manager_list().
 */
MP_API int mp_manager_attach_list(mp_manager *m, const char *name, mp_listproxy **out);

/*
 * mp_manager_list_from_ref - a proxy for the list a proxy reference names:
 * ref is a ListProxy's (typeid 'list'), as mp_manager_dict_from_ref()
 * takes it.
 * Returns and failures as mp_manager_dict_from_ref().
 * Ownership: mp_listproxy_free() the proxy; ref stays the caller's.
 * Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_list_from_ref(mp_manager *m, const mp_obj *ref, mp_listproxy **out);

/*
 * mp_listproxy_ref - the proxy reference of a list proxy, to store in a
 * shared value (Python's m.list([a, b]), a.append(b)).
 * l:    the proxy.
 * ref:  receives the reference: an inert value of class
 *       "multiprocessing.managers.RebuildProxy" naming the object by a Token
 *       of this server's address (Python's form: the socket's path, or
 *       (host, port)) and the object's id, as Python pickles a ListProxy.
 * Store it in a value of the same server (a dict, a list, a queue) as a
 * Python program stores a proxy: a Python client that reads it gets a
 * working ListProxy, a C client makes a proxy of it with
 * mp_manager_list_from_ref(). On our server the value that holds it keeps the
 * object alive; CPython's keeps it for good.
 * No round trip: the reference names the object whether or not it still
 * exists.
 * Returns 0; MP_EVALUE for a manager whose address has no form a Token
 * carries (neither unix: nor tcp:); -EINVAL (NULL arguments); -ENOMEM.
 * *ref is NULL on failure.
 * Ownership: mp_obj_free(*ref).
 * Thread/fork: any thread, any process with the proxy.
 */
MP_API int mp_listproxy_ref(const mp_listproxy *l, mp_obj **ref);

/*
 * mp_manager_lock - a new manager Lock (Python's Manager().Lock()), held in
 * the server and released by it when its holder's process dies.
 * Returns 0. Ownership: mp_lockproxy_free() the proxy. Thread/fork: as
 * mp_manager_dict(); the holder is a thread of a process.
 */
MP_API int mp_manager_lock(mp_manager *m, mp_lockproxy **out);

/*
 * mp_manager_rlock - a new manager RLock (Python's Manager().RLock()): the
 * thread that holds it may acquire it again, and only it may release it.
 * Returns 0. Ownership and Thread/fork as mp_manager_lock().
 */
MP_API int mp_manager_rlock(mp_manager *m, mp_lockproxy **out);

/*
 * mp_manager_lock_named - the lock called name; made as an RLock when
 * recursive, else a Lock, if new. A lock of the other kind under that name
 * is MP_ETYPE.
 * Returns 1 (made), 0 (existed) or a negative code. Ownership and
 * Thread/fork as mp_manager_lock().
 */
MP_API int mp_manager_lock_named(mp_manager *m, const char *name, bool recursive,
                                 mp_lockproxy **out);

/*
 * mp_manager_attach_lock - the existing Lock or RLock called name.
 * Returns 0; MP_ENOOBJ. Ownership and Thread/fork as mp_manager_lock().
 */
MP_API int mp_manager_attach_lock(mp_manager *m, const char *name, mp_lockproxy **out);

/*
 * mp_manager_lock_from_ref - a proxy for the Lock or RLock a proxy
 * reference names: ref is an AcquirerProxy's of a Lock or an RLock (typeid
 * 'Lock' or 'RLock'), as mp_manager_dict_from_ref() takes it.
 * Returns and failures as mp_manager_dict_from_ref().
 * Ownership: mp_lockproxy_free() the proxy; ref stays the caller's.
 * Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_lock_from_ref(mp_manager *m, const mp_obj *ref, mp_lockproxy **out);

/*
 * mp_manager_queue - a new manager Queue (Python's Manager().Queue(maxsize)
 * / JoinableQueue), held in the server.
 * maxsize: the most items it holds; 0 for no limit (Python's maxsize <= 0).
 * Returns 0; -EOVERFLOW for a maxsize above INT64_MAX. Ownership:
 * mp_queueproxy_free() the proxy. Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_queue(mp_manager *m, size_t maxsize, mp_queueproxy **out);

/*
 * mp_manager_queue_named - the queue called name; made with maxsize if new.
 * Returns 1 (made), 0 (existed) or a negative code. Ownership and
 * Thread/fork as mp_manager_queue().
 */
MP_API int mp_manager_queue_named(mp_manager *m, const char *name, size_t maxsize,
                                  mp_queueproxy **out);

/*
 * mp_manager_attach_queue - the existing queue called name.
 * Returns 0; MP_ENOOBJ. Ownership and Thread/fork as mp_manager_queue().
 */
MP_API int mp_manager_attach_queue(mp_manager *m, const char *name, mp_queueproxy **out);

/*
 * mp_manager_queue_from_ref - a proxy for the Queue a proxy reference
 * names: ref is a Queue's or JoinableQueue's AutoProxy (typeid 'Queue' or
 * 'JoinableQueue'), as mp_manager_dict_from_ref() takes it.
 * Returns and failures as mp_manager_dict_from_ref().
 * Ownership: mp_queueproxy_free() the proxy; ref stays the caller's.
 * Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_queue_from_ref(mp_manager *m, const mp_obj *ref, mp_queueproxy **out);

/*
 * mp_queueproxy_ref - the proxy reference of a queue proxy, to store in a
 * shared value (Python's l.append(m.Queue())): a Queue's AutoProxy, with
 * queue.Queue's methods exposed.
 * q:    the proxy.
 * ref:  receives the reference: an inert value of class
 *       "multiprocessing.managers.RebuildProxy" naming the object by a Token
 *       of this server's address (Python's form: the socket's path, or
 *       (host, port)) and the object's id, as Python pickles a Queue's AutoProxy.
 * Store it in a value of the same server (a dict, a list, a queue) as a
 * Python program stores a proxy: a Python client that reads it gets a
 * working Queue proxy, a C client makes a proxy of it with
 * mp_manager_queue_from_ref(). On our server the value that holds it keeps the
 * object alive; CPython's keeps it for good.
 * No round trip: the reference names the object whether or not it still
 * exists.
 * Returns 0; MP_EVALUE for a manager whose address has no form a Token
 * carries (neither unix: nor tcp:); -EINVAL (NULL arguments); -ENOMEM.
 * *ref is NULL on failure.
 * Ownership: mp_obj_free(*ref).
 * Thread/fork: any thread, any process with the proxy.
 */
MP_API int mp_queueproxy_ref(const mp_queueproxy *q, mp_obj **ref);

/* ---- Dict proxies ------------------------------------------------------------
 *
 * Python's DictProxy. Keys and values are mp_obj values, with Python's key
 * semantics (1, 1.0 and True are one key; an unhashable key is MP_ETYPE).
 * Every call is one round trip and atomic in the server.
 *
 * Common returns, not repeated below: MP_ECLOSED (the handle was shut down
 * or freed), MP_ENOSERVER, MP_ETIMEDOUT (no reply within the call timeout),
 * MP_ENOOBJ (the dict no longer exists), MP_ETOOLONG (the request or the
 * reply beyond the size limit), MP_EPROTO, MP_EAUTH, -EINVAL (NULL
 * arguments, a key string that is not UTF-8), -ENOMEM, -EAGAIN (the
 * server's budget for large requests in flight is spent for the moment).
 *
 * Nothing is lost to a reply that is too large: a call that would remove or
 * replace what it returns (pop, popitem, a compare-and-set, setdefault, a
 * list's pop, a queue's get) and whose reply is beyond this handle's
 * max_message returns MP_ETOOLONG with the object unchanged, so a handle
 * with a larger limit can still take the item. The size that counts is the
 * reply as sent: values are sent without sharing, so an item that a Python
 * producer sent once and referenced 15 times counts 15 times.
 *
 * Ownership, for every call: keys and values passed in are borrowed (copied
 * to the server); values handed back are the caller's.
 * Thread/fork, for every call: any thread, and any process forked after the
 * proxy was made (its first call registers it as a holder).
 */

/*
 * mp_dictproxy_get - d[key].
 * value: receives the value (NULL on failure).
 * Returns 0; MP_EKEY (KeyError) when absent; MP_ETYPE for an unhashable
 * key. Ownership: mp_obj_free(*value).
 */
MP_API int mp_dictproxy_get(mp_dictproxy *d, const mp_obj *key, mp_obj **value);

/*
 * mp_dictproxy_get_default - Python's d.get(key, default): d[key], or a copy of
 * dflt when the key is absent, in one round trip.
 * dflt:  the default (borrowed); NULL stands for None, as d.get(key) gives.
 * value: receives the value or the copy of the default (NULL on failure).
 * Returns 0 (present or not); MP_ETYPE for an unhashable key.
 * Ownership: mp_obj_free(*value), also when it is the default's copy.
 */
MP_API int mp_dictproxy_get_default(mp_dictproxy *d, const mp_obj *key, const mp_obj *dflt,
                                    mp_obj **value);

/* mp_dictproxy_set - d[key] = value. Returns 0; MP_ETYPE for an unhashable key;
 * MP_EVALUE when value would nest deeper than MP_OBJ_MAX_DEPTH. */
MP_API int mp_dictproxy_set(mp_dictproxy *d, const mp_obj *key, const mp_obj *value);

/* mp_dictproxy_del - del d[key]. Returns 0; MP_EKEY when absent; MP_ETYPE. */
MP_API int mp_dictproxy_del(mp_dictproxy *d, const mp_obj *key);

/* mp_dictproxy_contains - key in d. Returns 1 or 0; MP_ETYPE. */
MP_API int mp_dictproxy_contains(mp_dictproxy *d, const mp_obj *key);

/* mp_dictproxy_len - len(d): the count, or a negative code. */
MP_API ssize_t mp_dictproxy_len(mp_dictproxy *d);

/*
 * mp_dictproxy_keys - list(d.keys()), in insertion order, as one snapshot.
 * Returns 0. Ownership: mp_obj_free(*list).
 */
MP_API int mp_dictproxy_keys(mp_dictproxy *d, mp_obj **list);

/* mp_dictproxy_values - list(d.values()). Returns 0. Ownership: mp_obj_free(*list). */
MP_API int mp_dictproxy_values(mp_dictproxy *d, mp_obj **list);

/* mp_dictproxy_items - list(d.items()): a list of (key, value) tuples.
 * Returns 0. Ownership: mp_obj_free(*list). */
MP_API int mp_dictproxy_items(mp_dictproxy *d, mp_obj **list);

/* mp_dictproxy_clear - d.clear(). Returns 0. */
MP_API int mp_dictproxy_clear(mp_dictproxy *d);

/*
 * mp_dictproxy_pop - d.pop(key).
 * value: receives the removed value; may be NULL to drop it.
 * Returns 0; MP_EKEY when absent; MP_ETYPE. Ownership: mp_obj_free(*value).
 */
MP_API int mp_dictproxy_pop(mp_dictproxy *d, const mp_obj *key, mp_obj **value);

/*
 * mp_dictproxy_popitem - d.popitem(): remove the last inserted pair.
 * key, value: receive it; either may be NULL.
 * Returns 0; MP_EKEY when d is empty. Ownership: mp_obj_free() each.
 */
MP_API int mp_dictproxy_popitem(mp_dictproxy *d, mp_obj **key, mp_obj **value);

/*
 * mp_dictproxy_setdefault - d.setdefault(key, dflt): store dflt unless key is
 * present. value (may be NULL) receives d[key] after the call.
 * Returns 0; MP_ETYPE. Ownership: mp_obj_free(*value).
 */
MP_API int mp_dictproxy_setdefault(mp_dictproxy *d, const mp_obj *key, const mp_obj *dflt,
                                   mp_obj **value);

/*
 * mp_dictproxy_update - d.update(other).
 * other: a dict, or a list or tuple of 2-item lists/tuples.
 * Returns 0; MP_ETYPE (other is neither, or a key is unhashable);
 * MP_EVALUE (an item is not a pair). On those errors nothing changes.
 */
MP_API int mp_dictproxy_update(mp_dictproxy *d, const mp_obj *other);

/*
 * mp_dictproxy_copy - the whole dict as a local value (Python's d.copy(), or
 * print(d)).
 * Returns 0. Ownership: mp_obj_free(*copy).
 */
MP_API int mp_dictproxy_copy(mp_dictproxy *d, mp_obj **copy);

/*
 * mp_dictproxy_add - d[key] += delta, atomically in the server (beyond Python: no
 * lock needed). A missing key counts as 0 and is created, as a Counter or
 * Redis INCRBY does.
 * result: receives the new value; may be NULL.
 * Returns 0; MP_ETYPE when the stored value is not an int (a bool counts as
 * one, and becomes an int); -EOVERFLOW when the stored int or the sum does
 * not fit in 64 bits (nothing changes); -ENOTSUP on CPython's server, which
 * has no atomic add (nothing changes).
 */
MP_API int mp_dictproxy_add(mp_dictproxy *d, const mp_obj *key, int64_t delta, int64_t *result);

/*
 * mp_dictproxy_cas - compare and set, atomically: store desired if d[key] ==
 * expected (Python equality: 10 == 10.0), or, with expected NULL, if key is
 * absent.
 * current: receives the value found before the call, or NULL when the key
 *          was absent; may be NULL.
 * Returns 1 when desired was stored, 0 when not; MP_ETYPE; -ENOTSUP on
 * CPython's server.
 * Ownership: mp_obj_free(*current).
 */
MP_API int mp_dictproxy_cas(mp_dictproxy *d, const mp_obj *key, const mp_obj *expected,
                            const mp_obj *desired, mp_obj **current);

/*
 * Convenience forms: the key is a NUL-terminated UTF-8 string (a str key
 * in Python terms); values are C types.
 */

/* mp_dictproxy_get_int - d[key] as an int (a bool is 1 or 0). Returns 0; MP_EKEY
 * when absent; MP_ETYPE when the value is not an int; -ERANGE when it is an
 * int beyond int64. */
MP_API int mp_dictproxy_get_int(mp_dictproxy *d, const char *key, int64_t *value);

/* mp_dictproxy_get_int_default - d.get(key, dflt) as an int: *value is d[key], or
 * dflt when the key is absent (one round trip). Returns 0; MP_ETYPE when the
 * value is not an int. */
MP_API int mp_dictproxy_get_int_default(mp_dictproxy *d, const char *key, int64_t dflt,
                                        int64_t *value);

/* mp_dictproxy_set_int - d[key] = value. Returns 0. */
MP_API int mp_dictproxy_set_int(mp_dictproxy *d, const char *key, int64_t value);

/* mp_dictproxy_add_int - mp_dictproxy_add() with a str key: the seed's
 * d['count'] -= 1 without a lock is mp_dictproxy_add_int(d, "count", -1, NULL). */
MP_API int mp_dictproxy_add_int(mp_dictproxy *d, const char *key, int64_t delta, int64_t *result);

/*
 * mp_dictproxy_cas_int - compare and set with ints: if d[key] == expected, store
 * desired. current (may be NULL) receives the int found.
 * Returns 1 when stored, 0 when the value was another int; MP_EKEY when the
 * key is absent; MP_ETYPE when the stored value is not an int; -ERANGE when
 * it is an int beyond int64.
 */
MP_API int mp_dictproxy_cas_int(mp_dictproxy *d, const char *key, int64_t expected, int64_t desired,
                                int64_t *current);

/*
 * mp_dictproxy_get_str - d[key] as a str.
 * value: receives a malloc'd copy of its UTF-8, NUL-terminated (the text may
 *        hold NULs itself); len (may be NULL) its length without the NUL.
 * Returns 0; MP_EKEY; MP_ETYPE when the value is not a str.
 * Ownership: free(*value).
 */
MP_API int mp_dictproxy_get_str(mp_dictproxy *d, const char *key, char **value, size_t *len);

/* mp_dictproxy_set_str - d[key] = value (a NUL-terminated UTF-8 string; -EINVAL
 * when it is not UTF-8). Returns 0. */
MP_API int mp_dictproxy_set_str(mp_dictproxy *d, const char *key, const char *value);

/*
 * mp_dictproxy_get_bytes - d[key] as bytes: a malloc'd copy followed by a NUL
 * not counted in *len (len may be NULL).
 * Returns 0; MP_EKEY; MP_ETYPE when the value is not bytes.
 * Ownership: free(*value).
 */
MP_API int mp_dictproxy_get_bytes(mp_dictproxy *d, const char *key, void **value, size_t *len);

/* mp_dictproxy_set_bytes - d[key] = bytes(value[0..len)); value may be NULL when
 * len is 0. Returns 0. */
MP_API int mp_dictproxy_set_bytes(mp_dictproxy *d, const char *key, const void *value, size_t len);

/* mp_dictproxy_del_str - del d[key]. Returns 0; MP_EKEY when absent. */
MP_API int mp_dictproxy_del_str(mp_dictproxy *d, const char *key);

/* mp_dictproxy_contains_str - key in d: 1 or 0. */
MP_API int mp_dictproxy_contains_str(mp_dictproxy *d, const char *key);

/*
 * mp_dictproxy_free - release the proxy; this process stops holding the dict
 * (which lives on while others hold it). Accepts NULL.
 * Thread/fork: not while another thread uses the same proxy. In a child
 * that never used the proxy, only the memory is released.
 */
MP_API void mp_dictproxy_free(mp_dictproxy *d);

/* ---- List proxies -------------------------------------------------------------
 *
 * Python's ListProxy. Indexes are ssize_t; a negative index counts from the
 * end; out of range is MP_EKEY (IndexError). Common returns, Ownership and
 * Thread/fork as for dict proxies.
 */

/* For the stop of mp_listproxy_slice: to the end of the list. */
#define MP_LISTPROXY_END SSIZE_MAX

/* mp_listproxy_append - l.append(value). Returns 0. */
MP_API int mp_listproxy_append(mp_listproxy *l, const mp_obj *value);

/* mp_listproxy_extend - l.extend(seq), seq a list or tuple (MP_ETYPE
 * otherwise). Returns 0. */
MP_API int mp_listproxy_extend(mp_listproxy *l, const mp_obj *seq);

/* mp_listproxy_get - l[i] into *value. Returns 0; MP_EKEY.
 * Ownership: mp_obj_free(*value). */
MP_API int mp_listproxy_get(mp_listproxy *l, ssize_t i, mp_obj **value);

/* mp_listproxy_set - l[i] = value. Returns 0; MP_EKEY. */
MP_API int mp_listproxy_set(mp_listproxy *l, ssize_t i, const mp_obj *value);

/* mp_listproxy_len - len(l): the count, or a negative code. */
MP_API ssize_t mp_listproxy_len(mp_listproxy *l);

/*
 * mp_listproxy_pop - l.pop(i); Python's pop() is i = -1.
 * value: receives the removed item; may be NULL to drop it.
 * Returns 0; MP_EKEY for an empty list or an index out of range.
 * Ownership: mp_obj_free(*value).
 */
MP_API int mp_listproxy_pop(mp_listproxy *l, ssize_t i, mp_obj **value);

/* mp_listproxy_insert - l.insert(i, value); i is clamped to the list, as in
 * Python (l.insert(-100, x) puts x first). Returns 0. */
MP_API int mp_listproxy_insert(mp_listproxy *l, ssize_t i, const mp_obj *value);

/*
 * mp_listproxy_slice - l[start:stop] as a new local list, clamped as Python
 * slices are (negative bounds count from the end; stop MP_LISTPROXY_END for the
 * end).
 * Returns 0. Ownership: mp_obj_free(*list).
 */
MP_API int mp_listproxy_slice(mp_listproxy *l, ssize_t start, ssize_t stop, mp_obj **list);

/* mp_listproxy_copy - l[:] as a local list. Returns 0.
 * Ownership: mp_obj_free(*list). */
MP_API int mp_listproxy_copy(mp_listproxy *l, mp_obj **list);

/* mp_listproxy_del - del l[i]. Returns 0; MP_EKEY. */
MP_API int mp_listproxy_del(mp_listproxy *l, ssize_t i);

/* mp_listproxy_clear - l.clear(). Returns 0. */
MP_API int mp_listproxy_clear(mp_listproxy *l);

/* mp_listproxy_index - l.index(value): the first index holding an equal item;
 * MP_EVALUE (ValueError) when there is none. */
MP_API ssize_t mp_listproxy_index(mp_listproxy *l, const mp_obj *value);

/* mp_listproxy_count - l.count(value): how many items are equal to value. */
MP_API ssize_t mp_listproxy_count(mp_listproxy *l, const mp_obj *value);

/* mp_listproxy_contains - value in l: 1 or 0. */
MP_API int mp_listproxy_contains(mp_listproxy *l, const mp_obj *value);

/* mp_listproxy_remove - l.remove(value): the first equal item. Returns 0;
 * MP_EVALUE when there is none. */
MP_API int mp_listproxy_remove(mp_listproxy *l, const mp_obj *value);

/* mp_listproxy_append_int / mp_listproxy_append_str - append an int, or a
 * NUL-terminated UTF-8 string as a str. Returns 0. */
MP_API int mp_listproxy_append_int(mp_listproxy *l, int64_t value);
MP_API int mp_listproxy_append_str(mp_listproxy *l, const char *value);

/* mp_listproxy_get_int - l[i] as an int. Returns 0; MP_EKEY; MP_ETYPE. */
MP_API int mp_listproxy_get_int(mp_listproxy *l, ssize_t i, int64_t *value);

/* mp_listproxy_get_str - l[i] as a malloc'd NUL-terminated copy of a str (len
 * may be NULL). Returns 0; MP_EKEY; MP_ETYPE. Ownership: free(*value). */
MP_API int mp_listproxy_get_str(mp_listproxy *l, ssize_t i, char **value, size_t *len);

/* mp_listproxy_free - release the proxy (see mp_dictproxy_free). Accepts NULL. */
MP_API void mp_listproxy_free(mp_listproxy *l);

/* ---- Lock proxies -------------------------------------------------------------- */

/*
 * mp_lockproxy_acquire - Python's lock.acquire(timeout=...), held in the server.
 *
 * timeout: MP_FOREVER, MP_NOWAIT (Python's blocking=False) or seconds.
 *          Waiters get the lock in arrival order.
 *
 * Returns 0 when acquired; MP_EOWNERDEAD when acquired from a holder whose
 * process died (or exited, or closed its manager) holding it - what it
 * protected may be half-updated; the next acquirer gets 0 again;
 * MP_ETIMEDOUT when not acquired (Python returns False). An RLock is
 * re-entered by the thread that holds it; a Lock is not: its holder waits
 * like anyone else, as in Python. Plus the common codes of dict proxies.
 * Thread/fork: the holder is the calling thread of the calling process.
 */
MP_API int mp_lockproxy_acquire(mp_lockproxy *lk, double timeout);

/*
 * mp_lockproxy_release - Python's lock.release(). A Lock may be released by any
 * thread or process (as Python's may); an RLock only by its holder.
 * Returns 0; MP_EVALUE (Python's RuntimeError) for a lock that is not held,
 * or an RLock held by someone else; the common codes.
 * Thread/fork: any thread, any process that has the proxy.
 */
MP_API int mp_lockproxy_release(mp_lockproxy *lk);

/* mp_lockproxy_free - release the proxy (not the lock). Accepts NULL.
 * Thread/fork: as mp_dictproxy_free(). */
MP_API void mp_lockproxy_free(mp_lockproxy *lk);

/* ---- Queue proxies --------------------------------------------------------------
 *
 * Python's manager Queue / JoinableQueue (a queue.Queue held in the
 * server), for processes that were not forked from the queue's creator:
 * they attach by name. Items are mp_obj values, delivered in FIFO order;
 * blocked getters and putters are served in arrival order. Common returns,
 * Ownership and Thread/fork as for dict proxies; a thread blocked in get()
 * or put() holds up no other thread.
 */

/* mp_queueproxy_put - q.put(item, timeout). Returns 0; MP_FULL when a bounded
 * queue is still full when the timeout passes (MP_NOWAIT: put_nowait). */
MP_API int mp_queueproxy_put(mp_queueproxy *q, const mp_obj *item, double timeout);

/*
 * mp_queueproxy_get - q.get(timeout): the oldest item into *item.
 * Returns 0; MP_EMPTY when nothing arrives before the timeout (MP_NOWAIT:
 * get_nowait). Ownership: mp_obj_free(*item).
 */
MP_API int mp_queueproxy_get(mp_queueproxy *q, mp_obj **item, double timeout);

/* mp_queueproxy_qsize - q.qsize(): the count, or a negative code. */
MP_API ssize_t mp_queueproxy_qsize(mp_queueproxy *q);

/* mp_queueproxy_empty / mp_queueproxy_full - q.empty(), q.full(): 1 or 0. */
MP_API int mp_queueproxy_empty(mp_queueproxy *q);
MP_API int mp_queueproxy_full(mp_queueproxy *q);

/* mp_queueproxy_task_done - JoinableQueue.task_done(). Returns 0; MP_EVALUE
 * when called more often than items were put. */
MP_API int mp_queueproxy_task_done(mp_queueproxy *q);

/* mp_queueproxy_join - JoinableQueue.join(timeout): wait until every item put
 * has been marked done. Returns 0; MP_ETIMEDOUT. */
MP_API int mp_queueproxy_join(mp_queueproxy *q, double timeout);

/* mp_queueproxy_free - release the proxy. Accepts NULL. Thread/fork: as
 * mp_dictproxy_free(). */
MP_API void mp_queueproxy_free(mp_queueproxy *q);

#ifdef __cplusplus
}
#endif

/* Semaphore, BoundedSemaphore, Event, Condition and Barrier proxies (1.1). */
#include <mpipc/manager_sync.h>

#endif /* MPIPC_MANAGER_H */
