/*
 * libmpipc - your own manager types, as Python's BaseManager.register allows.
 *
 * A type implemented in C - a constructor, named methods that take and
 * return mp_obj values, a destructor - is registered in the options of the
 * server (mp_manager_opts.types, for mp_manager_start and mp_manager_serve).
 * The server process serves it; C clients make and call objects of it by
 * name, and Python clients do so through BaseManager.register(typeid):
 *
 *     static const mp_manager_method counter_methods[] = {
 *         {"add", 1, 1, counter_add}, {"get", 0, 0, counter_get}};
 *     static const mp_manager_type counter = {
 *         "Counter", counter_new, counter_free, counter_methods, 2};
 *     mp_manager_opts o = MP_MANAGER_OPTS_INIT;
 *     o.types = &counter;
 *     o.ntypes = 1;
 *     mp_manager_start(&m, &o);
 *     mp_manager_create(m, "Counter", NULL, &p);      // m.Counter()
 *     mp_proxy_call(p, "add", args, &result);         // p.add(5)
 *
 * The constructor and the methods run in the server's one loop thread, one
 * request at a time (so an object needs no lock), and must not block: every
 * other client waits meanwhile. A method's negative status reaches a C
 * client as that status and a Python client as the exception of the same
 * meaning (MP_EKEY: KeyError, MP_EVALUE: ValueError, MP_ETYPE: TypeError,
 * MP_EMPTY: queue.Empty ...; others: RemoteError).
 */
#ifndef MPIPC_MANAGER_USER_H
#define MPIPC_MANAGER_USER_H

#include <mpipc/common.h>
#include <mpipc/manager.h>
#include <mpipc/obj.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A proxy for an object of a registered type (Python's AutoProxy, made by
 * BaseManager.register). */
typedef struct mp_proxy mp_proxy;

/* One method of a registered type. */
typedef struct mp_manager_method {
    /* Its name, as clients call it (Python's exposed name). */
    const char *name;
    /* The fewest positional arguments it takes: the server replies
     * MP_ETYPE (Python's TypeError) to fewer without calling it. */
    int min_args;
    /* The most positional arguments it takes (MP_ETYPE to more). */
    int max_args;
    /* The method: self from the type's create, args a tuple (borrowed).
     * Sets *result to a new value (the reply; NULL for None) and returns 0,
     * or returns a negative status (*result is then ignored and freed). */
    int (*fn)(void *self, const mp_obj *args, mp_obj **result);
} mp_manager_method;

/* A type registered with a manager's server. */
typedef struct mp_manager_type {
    /* The name clients create it by (Python's typeid). */
    const char *typeid;
    /* Make an object from the arguments of create (a tuple, borrowed):
     * set *self and return 0, or return a negative status. */
    int (*create)(const mp_obj *args, void **self);
    /* Release an object when its last holder has released it (or the
     * server stops); may be NULL. */
    void (*free)(void *self);
    /* Its methods, nmethods of them. */
    const mp_manager_method *methods;
    /* How many methods the table holds. */
    size_t nmethods;
} mp_manager_type;

/*
 * mp_manager_create - a new object of a registered type (Python's
 * manager.<typeid>(*args) after BaseManager.register(typeid)).
 *
 * m:      the manager (started or connected; the server is ours).
 * typeid: the type's name as its server registered it.
 * args:   the constructor's arguments, a tuple; NULL for none.
 * out:    receives the proxy.
 *
 * Returns 0; MP_EVALUE when the server registered no such typeid; -EINVAL
 * (NULL, args not a tuple); -ENOTSUP on CPython's server; the constructor's
 * own status; the codes of every proxy call (MP_ENOSERVER, MP_ECLOSED,
 * MP_ETIMEDOUT, -ENOMEM).
 * Ownership: mp_proxy_free() the proxy; args is borrowed.
 * Thread/fork: as mp_manager_dict(): the proxy works in any thread, and in
 * children forked later.
 */
MP_API int mp_manager_create(mp_manager *m, const char *typeid, const mp_obj *args, mp_proxy **out);

/*
 * mp_proxy_call - call a method of the proxy's object (Python's
 * proxy._callmethod(method, args)).
 *
 * p:      the proxy.
 * method: the method's name.
 * args:   its arguments, a tuple; NULL for none.
 * result: receives the method's reply (None when it returned NULL); may be
 *         NULL to discard it.
 *
 * Waits for the reply up to the manager's timeout.
 * Returns 0; MP_EPROTO for a method the type does not have; MP_ETYPE for
 * a wrong number of arguments; the method's own negative status (the
 * server's words for mp_errmsg()); -EINVAL (NULL, args not a tuple); the codes of every
 * proxy call (MP_ENOSERVER, MP_ENOOBJ, MP_ECLOSED, MP_ETIMEDOUT, -ENOMEM).
 * Ownership: *result is the caller's (mp_obj_free); args is borrowed.
 * Thread/fork: any thread; children forked later.
 */
MP_API int mp_proxy_call(mp_proxy *p, const char *method, const mp_obj *args, mp_obj **result);

/* mp_proxy_free - release the proxy (the server frees the object once no
 * holder is left). Accepts NULL. Thread/fork: not while another thread
 * calls through it. */
MP_API void mp_proxy_free(mp_proxy *p);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_MANAGER_USER_H */
