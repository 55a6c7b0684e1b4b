/*
 * mgr_client - a manager handle (mpipc/manager.h): start a server child,
 * connect to one, serve, shut down and free; the registry of live handles
 * and the fork handlers. The rest of the client half is listed in
 * mgr_client.h; the server is mgr_server.c; docs/manager.md has the messages.
 *
 * Fork. Every live handle is in a registry. pthread_atfork handlers take
 * the registry lock and each handle's locks around fork(); in the child they
 * close every inherited connection and the starter's "alive" pipe and empty
 * the pool, so a child never writes to its parent's sockets and never keeps
 * them (or the server) alive after the parent is gone. The child's first
 * call opens its own connection under a new session id. Connection setup
 * runs under open_mu, which the prepare handler also takes, so no fork can
 * copy a socket that is being set up and not yet in the registry.
 *
 * References. A handle counts itself and each of its proxies (refs): a
 * proxy that outlives mp_manager_free() gets MP_ECLOSED, not a dangling
 * pointer, and the last one frees the handle.
 */
#include "core/internal.h"
#include "core/io.h"
#include "core/shm.h"
#include "manager/mgr.h"
#include "manager/mgr_client.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>
#include <mpipc/manager.h>
#include <mpipc/process.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_BYTES     32
#define START_TIMEOUT 30.0 /* for the server child to report its address */
#define STOP_TIMEOUT  5.0  /* for it to exit after the shutdown request */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mp__list registry = MP__LIST_INITIALIZER(registry, struct mp_manager, rnode);
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

/* ---- the registry and fork ---------------------------------------------------- */

static void client_atfork_prepare(void)
{
    pthread_mutex_lock(&reg_mu);
    for (mp_manager *m = mp__list_first(&registry); m; m = mp__list_next(&registry, m)) {
        pthread_mutex_lock(&m->open_mu);
        pthread_mutex_lock(&m->mu);
    }
}

static void client_atfork_parent(void)
{
    for (mp_manager *m = mp__list_first(&registry); m; m = mp__list_next(&registry, m)) {
        pthread_mutex_unlock(&m->mu);
        pthread_mutex_unlock(&m->open_mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

/* In the child: the parent's connections and alive pipe are not ours. */
static void client_atfork_child(void)
{
    for (mp_manager *m = mp__list_first(&registry); m; m = mp__list_next(&registry, m)) {
        mp__mgr_connpool_close_all(m);
        mp__mgr_py_close_idle(m, true);
        m->session = 0;
        if (m->alive_wr >= 0) {
            mp__close(m->alive_wr);
            m->alive_wr = -1;
        }
        pthread_mutex_unlock(&m->mu);
        pthread_mutex_unlock(&m->open_mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

static void client_reg_setup(void)
{
    (void)mp__atfork_register(client_atfork_prepare, client_atfork_parent, client_atfork_child);
}

/* ---- a handle's life ------------------------------------------------------------ */

static void client_destroy(mp_manager *m)
{
    pthread_mutex_lock(&reg_mu);
    mp__list_remove(&registry, m);
    if (m->alive_wr >= 0)
        mp__close(m->alive_wr);
    pthread_mutex_unlock(&reg_mu);
    mp__mgr_connpool_close_all(m);
    mp__mgr_py_close_idle(m, false);
    /* Only the starter owns the server's process handle; a child that
     * inherited it leaves the copy alone (its descriptor is the parent's). */
    if (m->proc && m->starter == getpid())
        mp_process_free(m->proc);
    mp__wipe(m->key, m->keylen); /* a secret */
    free(m->key);
    /* Only this process's view goes: the server and other children may
     * still have theirs (mp__shm_map). */
    mp__shm_unmap(m->arena, sizeof *m->arena);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->open_mu);
    free(m);
}

void mp__mgr_client_unref(mp_manager *m)
{
    int left = __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL);
    MP__ASSERT(left >= 0);
    if (left == 0)
        client_destroy(m);
}

static int client_new(mp_manager **out, const char *address, const void *key, size_t keylen,
                      const mp_manager_opts *o)
{
    (void)pthread_once(&reg_once, client_reg_setup);
    (void)mp__forkgen(); /* install the generation counter before any fork */
    if (o->max_message > MP__MGR_MAX_LIMIT)
        return -EINVAL;
    if (mp__bad_timeout(o->timeout))
        return MP_EVALUE;
    mp_manager *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->refs = 1;
    m->alive_wr = -1;
    MP__LIST_INIT(&m->all, struct mconn, node);
    m->timeout_ns = client_seconds_to_ns(o->timeout);
    m->max_reply = o->max_message ? o->max_message : MP__MGR_DEFAULT_MAX;
    m->server_max = MP__MGR_DEFAULT_MAX;
    if (pthread_mutex_init(&m->mu, NULL) != 0)
        goto fail;
    if (pthread_mutex_init(&m->open_mu, NULL) != 0)
        goto fail_mu;
    if (address)
        snprintf(m->address, sizeof m->address, "%s", address);
    m->key = malloc(keylen ? keylen : 1);
    if (!m->key)
        goto fail_open_mu;
    if (key)
        memcpy(m->key, key, keylen);
    m->keylen = keylen;
    pthread_mutex_lock(&reg_mu);
    mp__list_push_front(&registry, m);
    pthread_mutex_unlock(&reg_mu);
    *out = m;
    return 0;

fail_open_mu:
    pthread_mutex_destroy(&m->open_mu);
fail_mu:
    pthread_mutex_destroy(&m->mu);
fail:
    free(m);
    return -ENOMEM;
}

static mp_manager_opts client_opts(const mp_manager_opts *opts)
{
    mp_manager_opts o = MP_MANAGER_OPTS_INIT;
    if (opts)
        o = *opts;
    return o;
}

/* ---- starting and stopping a server ------------------------------------------- */

struct start_args {
    const char *address;
    const unsigned char *key;
    size_t keylen;
    size_t max_message;
    int alive_rd;
    mp_conn *report;
    struct mp__mgr_arena *arena;
    const struct mp_manager_type *types;
    size_t ntypes;
    double handshake_timeout;
};

/* A listener for a manager's server: no authkey (the server runs every
 * handshake itself) and a deep backlog (mgr.h). */
static int client_listen(mp_listener **l, const char *address)
{
    mp_listener_opts lo = MP_LISTENER_OPTS_INIT;
    lo.backlog = MP__MGR_BACKLOG;
    return mp_listener_new(l, address, NULL, 0, &lo);
}

/* The server child: report the address (or why not), then serve. */
static int client_server_main(void *arg)
{
    struct start_args *a = arg;
    int keep[3] = {a->alive_rd, mp_conn_fileno(a->report), mp__process_sentinel_fd()};
    mp__close_fds_except(keep, 3);

    /* Python's manager ignores SIGINT (bpo-36368): a Ctrl-C meant for the
     * program must not kill the server under the parent's cleanup code.
     * Blocking it here changes no disposition; threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    (void)pthread_sigmask(SIG_BLOCK, &set, NULL);

    mp_listener *l;
    int rc = client_listen(&l, a->address);
    char msg[600];
    if (rc < 0)
        snprintf(msg, sizeof msg, "err:%d", rc);
    else
        snprintf(msg, sizeof msg, "ok:%s", mp_listener_address(l));
    (void)mp_conn_send_bytes(a->report, msg, strlen(msg));
    mp_conn_free(a->report);
    if (rc < 0)
        return 1;
    struct mp__mgr_cfg cfg = {a->key,   a->keylen, a->max_message, a->alive_rd,
                              a->arena, a->types,  a->ntypes,      a->handshake_timeout};
    rc = mp__mgr_serve(l, &cfg);
    mp_listener_free(l);
    mp__close(a->alive_rd);
    return rc == 0 ? 0 : 1;
}

/* Remove a private socket file and its directory that a killed server left. */
static void client_remove_private_socket(const char *address)
{
    if (strncmp(address, "unix:", 5) != 0)
        return;
    const char *path = address + 5;
    (void)unlink(path);
    char dir[sizeof((mp_manager *)0)->address];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && strstr(dir, "/mpipc-")) {
        *slash = '\0';
        (void)rmdir(dir);
    }
}

static void client_close_alive(mp_manager *m)
{
    pthread_mutex_lock(&reg_mu);
    if (m->alive_wr >= 0) {
        mp__close(m->alive_wr);
        m->alive_wr = -1;
    }
    pthread_mutex_unlock(&reg_mu);
}

/* Stop a server this process started: ask, wait, insist. */
static void client_stop_started(mp_manager *m)
{
    if (__atomic_exchange_n(&m->closed, true, __ATOMIC_ACQ_REL))
        return;
    if (m->hook > 0) {
        mp__exit_hook_remove(m->hook);
        m->hook = 0;
    }
    int64_t saved = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    int64_t quick = (int64_t)(STOP_TIMEOUT * 1e9);
    if (saved < 0 || saved > quick)
        __atomic_store_n(&m->timeout_ns, quick, __ATOMIC_RELAXED);
    (void)mp__mgr_call(m, 0, "shutdown", NULL, 0, 0, NULL, NULL, true);
    __atomic_store_n(&m->timeout_ns, saved, __ATOMIC_RELAXED);
    mp__mgr_connpool_close_idle(m);
    client_close_alive(m); /* a server that missed the request sees end of file */
    if (m->proc) {
        if (mp_process_join(m->proc, STOP_TIMEOUT) == MP_ETIMEDOUT) {
            (void)mp_process_terminate(m->proc);
            if (mp_process_join(m->proc, STOP_TIMEOUT) == MP_ETIMEDOUT) {
                (void)mp_process_kill(m->proc);
                (void)mp_process_join(m->proc, MP_FOREVER);
            }
        }
        /* Joined: release its sentinel now, not when the last proxy goes. */
        if (mp_process_close(m->proc) == 0) {
            mp_process_free(m->proc);
            m->proc = NULL;
        }
    }
    if (m->private_addr)
        client_remove_private_socket(m->address);
}

static void client_exit_hook(void *arg)
{
    mp_manager *m = arg;
    m->hook = 0; /* the exit procedure took it off its list */
    client_stop_started(m);
}

/* The mailboxes, mapped before the server is forked (mgr.h). Without them
 * every call simply goes by the socket. */
static void client_map_arena(mp_manager *m)
{
    void *arena = NULL;
    if (mp__shm_map(&arena, sizeof *m->arena) != 0)
        return;
    m->arena = arena;
    uint64_t tag = 0;
    if (mp__random_bytes(&tag, sizeof tag) < 0)
        tag = 0;
    tag &= (uint64_t)INT64_MAX;
    m->arena->tag = tag ? tag : 1;
}

/* Read the server child's report: "ok:<address>" (kept in m->address) or
 * "err:<code>". */
static int client_read_report(mp_manager *m, mp_conn *rd, bool private_addr)
{
    void *msg = NULL;
    size_t len = 0;
    int rc = mp_conn_recv_bytes(rd, sizeof m->address + 8, &msg, &len, START_TIMEOUT);
    if (rc < 0) {
        free(msg);
        /* EOF: the child died before it reported */
        return rc == MP_EOF || rc == MP_ETRUNCATED ? MP_ENOSERVER : rc;
    }
    char text[sizeof m->address + 16];
    size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
    memcpy(text, msg, n);
    text[n] = '\0';
    free(msg);
    if (strncmp(text, "ok:", 3) == 0 && n - 3 < sizeof m->address) {
        memcpy(m->address, text + 3, n - 3 + 1);
        m->private_addr = private_addr;
    } else if (strncmp(text, "err:", 4) == 0) {
        rc = (int)strtol(text + 4, NULL, 10);
        if (rc >= 0)
            rc = MP_EPROTO;
    } else {
        rc = MP_EPROTO;
    }
    return rc;
}

/* Fork the server child and wait for its report. Once m->started, a
 * failure leaves a child for the caller to stop. */
static int client_start_server(mp_manager *m, const mp_manager_opts *o)
{
    mp_conn *rd = NULL, *wr = NULL;
    int alive[2] = {-1, -1};
    int rc = mp_pipe(&rd, &wr, false);
    if (rc == 0) {
        /* Registered under the registry lock, so every fork from now on -
         * the server's own included - closes its copy of the write end. */
        pthread_mutex_lock(&reg_mu);
        rc = mp__pipe(alive);
        if (rc == 0)
            m->alive_wr = alive[1];
        pthread_mutex_unlock(&reg_mu);
    }
    struct start_args a = {o->address, m->key,   m->keylen, o->max_message,       alive[0],
                           wr,         m->arena, o->types,  o->ntypes, o->handshake_timeout};
    if (rc == 0)
        rc = mp_process_new(&m->proc, client_server_main, &a);
    if (rc == 0)
        (void)mp_process_set_name(m->proc, "SyncManager");
    if (rc == 0)
        rc = mp_process_start(m->proc);
    if (rc < 0 && m->proc) { /* never started: client_destroy would not free it */
        mp_process_free(m->proc);
        m->proc = NULL;
    }
    if (alive[0] >= 0)
        mp__close(alive[0]);
    mp_conn_free(wr);
    if (rc == 0) {
        m->starter = getpid();
        m->started = true;
        m->server_pid = mp_process_pid(m->proc);
        rc = client_read_report(m, rd, o->address == NULL);
    }
    mp_conn_free(rd);
    return rc;
}

MP_API int mp_manager_start(mp_manager **out, const mp_manager_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    mp_manager_opts o = client_opts(opts);
    if ((o.authkey && !o.authkey_len) || (!o.authkey && o.authkey_len) ||
        mp__mgr_types_check(o.types, o.ntypes) < 0 || !(o.handshake_timeout >= 0))
        return -EINVAL;
    unsigned char rnd[KEY_BYTES];
    const void *key = o.authkey;
    size_t keylen = o.authkey_len;
    if (!key) {
        int rc = mp__random_bytes(rnd, sizeof rnd);
        if (rc < 0)
            return rc;
        key = rnd;
        keylen = sizeof rnd;
    }
    mp_manager *m;
    int rc = client_new(&m, NULL, key, keylen, &o);
    mp__wipe(rnd, sizeof rnd); /* a secret */
    if (rc < 0)
        return rc;
    client_map_arena(m);
    rc = client_start_server(m, &o);
    if (rc < 0)
        goto fail;
    rc = mp__exit_hook_add(client_exit_hook, m, 0);
    if (rc < 0)
        goto fail;
    m->hook = rc;
    *out = m;
    return 0;

fail:
    if (m->started) {
        __atomic_store_n(&m->closed, true, __ATOMIC_RELEASE);
        client_close_alive(m);
        if (mp_process_join(m->proc, STOP_TIMEOUT) == MP_ETIMEDOUT) {
            (void)mp_process_kill(m->proc);
            (void)mp_process_join(m->proc, MP_FOREVER);
        }
    }
    mp__mgr_client_unref(m);
    return rc;
}

MP_API int mp_manager_connect(mp_manager **out, const char *address, const void *authkey,
                              size_t authkey_len, const mp_manager_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!address || !authkey || !authkey_len)
        return -EINVAL;
    mp_manager_opts o = client_opts(opts);
    if (strlen(address) >= sizeof((mp_manager *)0)->address)
        return -EINVAL;
    mp_manager *m;
    int rc = client_new(&m, address, authkey, authkey_len, &o);
    if (rc < 0)
        return rc;
    struct mconn *c;
    rc = mp__mgr_connpool_open(m, &c);
    if (rc == MP_EPROTO && mp__mgr_py_probe(m) == 0) {
        m->py = true; /* CPython's server: it answered our hello with a traceback */
        mp__err_clear();
        *out = m;
        return 0;
    }
    if (rc < 0) {
        mp__mgr_client_unref(m);
        return rc;
    }
    connpool_put(m, c);
    *out = m;
    return 0;
}

MP_API int mp_manager_serve(const char *address, const void *authkey, size_t authkey_len,
                            const mp_manager_opts *opts)
{
    if (!address || !authkey || !authkey_len)
        return -EINVAL;
    mp_manager_opts o = client_opts(opts);
    if (o.max_message > MP__MGR_MAX_LIMIT || mp__mgr_types_check(o.types, o.ntypes) < 0 ||
        !(o.handshake_timeout >= 0))
        return -EINVAL;
    mp_listener *l;
    int rc = client_listen(&l, address);
    if (rc < 0)
        return rc;
    if (o.ready)
        o.ready(mp_listener_address(l), o.ready_arg);
    struct mp__mgr_cfg cfg = {authkey, authkey_len, o.max_message, -1,
                              NULL,    o.types,     o.ntypes,      o.handshake_timeout};
    rc = mp__mgr_serve(l, &cfg);
    mp_listener_free(l);
    return rc;
}

MP_API int mp_manager_shutdown(mp_manager *m)
{
    if (!m)
        return -EINVAL;
    if (m->started) {
        if (m->starter != getpid())
            return MP_ESTATE;
        client_stop_started(m);
        return 0;
    }
    if (client_is_closed(m))
        return 0;
    int rc = mp__mgr_call(m, 0, "shutdown", NULL, 0, 0, NULL, NULL, false);
    __atomic_store_n(&m->closed, true, __ATOMIC_RELEASE);
    mp__mgr_connpool_close_idle(m);
    mp__mgr_py_close_idle(m, false);
    return rc;
}

MP_API void mp_manager_free(mp_manager *m)
{
    if (!m)
        return;
    if (m->started && m->starter == getpid())
        client_stop_started(m);
    __atomic_store_n(&m->closed, true, __ATOMIC_RELEASE);
    mp__mgr_connpool_close_idle(m);
    mp__mgr_py_close_idle(m, false);
    mp__mgr_client_unref(m);
}

/* ---- the handle's own calls and fields -------------------------------------------- */

MP_API const char *mp_manager_address(const mp_manager *m)
{
    return m ? m->address : NULL;
}

MP_API const void *mp_manager_authkey(const mp_manager *m, size_t *len)
{
    if (len)
        *len = m ? m->keylen : 0;
    return m ? m->key : NULL;
}

MP_API pid_t mp_manager_pid(const mp_manager *m)
{
    return m && m->started ? m->server_pid : 0;
}

MP_API int mp_manager_set_timeout(mp_manager *m, double timeout)
{
    if (!m)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    __atomic_store_n(&m->timeout_ns, client_seconds_to_ns(timeout), __ATOMIC_RELAXED);
    return 0;
}

MP_API int mp_manager_info(mp_manager *m, mp_obj **info)
{
    if (!m || !info)
        return -EINVAL;
    return mp__mgr_call(m, 0, "info", NULL, 0, 0, info, NULL, false);
}

MP_API int mp_manager_unlink(mp_manager *m, const char *name)
{
    if (!m || client_check_name(name) < 0)
        return -EINVAL;
    struct marg a[1] = {ARG_STR(name, strlen(name))};
    return mp__mgr_call(m, 0, "unlink", a, 1, 0, NULL, NULL, false);
}
