/*
 * mgr_connpool - a manager handle's pool of authenticated connections:
 * opening one (connect, hello, a mailbox slot), keeping the idle and the
 * stale ones, closing them. Taking and giving back, on every call's path,
 * are inline in mgr_client.h; the calls themselves are mgr_call.c.
 *
 * Every connection of the handle is in its list all (nconns of them); one
 * a call is not using is in the idle list, or in the stale list while the
 * reply to a call that timed out is still owed (mgr_client.h, MCONN_*).
 * Connection setup runs under open_mu, which the fork handlers also take
 * (mgr_client.c), so no fork can copy a socket that is being set up and
 * not yet in the list.
 */
#include "core/internal.h"
#include "core/io.h"
#include "manager/mgr.h"
#include "manager/mgr_client.h"

#include <mpipc/conn.h>
#include <mpipc/listener.h>

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static void connpool_free(struct mconn *c)
{
    if (c->fd >= 0)
        mp__close(c->fd);
    free(c->rbuf);
    free(c->w.p);
    free(c);
}

static int connpool_new_session_id(int64_t *out)
{
    uint64_t r = 0;
    int rc;
    do {
        rc = mp__random_bytes(&r, sizeof r);
        if (rc < 0)
            return rc;
        r &= (uint64_t)INT64_MAX;
    } while (r == 0);
    *out = (int64_t)r;
    return 0;
}

static void connpool_link_locked(mp_manager *m, struct mconn *c)
{
    mp__list_push_front(&m->all, c);
    m->nconns++;
}

static void connpool_unlink_locked(mp_manager *m, struct mconn *c)
{
    MP__ASSERT(m->nconns > 0);
    mp__list_remove(&m->all, c);
    m->nconns--;
    MP__ASSERT((m->nconns == 0) == mp__list_empty(&m->all));
}

void mp__mgr_connpool_drop(mp_manager *m, struct mconn *c)
{
    MP__ASSERT(c->state == MCONN_BUSY);
    pthread_mutex_lock(&m->mu);
    connpool_unlink_locked(m, c);
    pthread_mutex_unlock(&m->mu);
    connpool_free(c);
}

void mp__mgr_connpool_park(mp_manager *m, struct mconn *c)
{
    MP__ASSERT(c->state == MCONN_BUSY);
    if (client_is_closed(m)) {
        mp__mgr_connpool_drop(m, c);
        return;
    }
    pthread_mutex_lock(&m->mu);
    c->state = MCONN_STALE;
    c->next_idle = m->stale;
    m->stale = c;
    pthread_mutex_unlock(&m->mu);
}

/* Connect and authenticate (mp_client_connect), and add the socket to the
 * handle under open_mu (see the file comment). */
static int connpool_connect(mp_manager *m, struct mconn **out, int64_t *session)
{
    pthread_mutex_lock(&m->open_mu);
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    if (!m->session)
        rc = connpool_new_session_id(&m->session);
    *session = m->session;
    pthread_mutex_unlock(&m->mu);
    if (rc < 0)
        goto fail;
    int64_t tns = __atomic_load_n(&m->timeout_ns, __ATOMIC_RELAXED);
    double timeout = tns < 0 ? MP_FOREVER : (double)tns / 1e9;
    mp_conn *cc;
    rc = mp_client_connect(&cc, m->address, m->key, m->keylen, timeout);
    if (rc < 0)
        goto fail;
    int fd = mp_conn_buffered(cc) == 0 ? mp__dup_cloexec(mp_conn_fileno(cc)) : MP_EPROTO;
    mp_conn_free(cc);
    if (fd < 0) {
        rc = fd;
        goto fail;
    }
    struct mconn *c = calloc(1, sizeof *c);
    if (!c) {
        mp__close(fd);
        rc = -ENOMEM;
        goto fail;
    }
    mp__tcp_keepalive(fd);
    c->fd = fd;
    c->state = MCONN_BUSY;
    pthread_mutex_lock(&m->mu);
    connpool_link_locked(m, c);
    pthread_mutex_unlock(&m->mu);
    pthread_mutex_unlock(&m->open_mu);
    *out = c;
    return 0;

fail:
    pthread_mutex_unlock(&m->open_mu);
    return rc;
}

/* 'hello': this process's session and pid, the reply limit, the protocol;
 * the server answers with its request limit. */
static int connpool_hello(mp_manager *m, struct mconn *c, int64_t session)
{
    struct marg a[4] = {ARG_INT(session), ARG_INT(getpid()), ARG_INT((int64_t)m->max_reply),
                        ARG_INT(MP__MGR_PROTOCOL)};
    mp_obj *r = NULL;
    int fate;
    int rc = mp__mgr_call_roundtrip(m, c, 0, "hello", a, 4, 0, &r, NULL, &fate);
    int64_t max_req = 0;
    if (rc == 0 && (mp_obj_len(r) != 3 || mp_obj_get_int(mp_obj_list_get(r, 1), &max_req) < 0))
        rc = MP_EPROTO;
    mp_obj_free(r);
    if (rc < 0)
        return rc;
    if (max_req > 0)
        __atomic_store_n(&m->server_max, (size_t)max_req, __ATOMIC_RELAXED);
    return 0;
}

/* A process that shares the starter's memory claims a mailbox slot
 * (mgr.h). An error reply (a server without mailboxes) or -1 (none free)
 * leaves the connection on the socket; only a failure that leaves it out
 * of step is an error. */
static int connpool_claim_slot(mp_manager *m, struct mconn *c)
{
    struct marg t[1] = {ARG_INT((int64_t)m->arena->tag)};
    mp_obj *r = NULL;
    int fate;
    int rc = mp__mgr_call_roundtrip(m, c, 0, "shm", t, 1, 0, &r, NULL, &fate);
    int64_t ix = -1;
    if (rc == 0 && mp_obj_get_int(r, &ix) == 0 && ix >= 0 && ix < MP__MGR_SLOTS) {
        c->slot = &m->arena->slot[ix];
        c->seq = 0;
    }
    mp_obj_free(r);
    return rc < 0 && fate != F_REUSE ? rc : 0;
}

int mp__mgr_connpool_open(mp_manager *m, struct mconn **out)
{
    struct mconn *c;
    int64_t session;
    int rc = connpool_connect(m, &c, &session);
    if (rc < 0)
        return rc;
    rc = connpool_hello(m, c, session);
    if (rc == 0 && m->arena)
        rc = connpool_claim_slot(m, c);
    if (rc < 0) {
        mp__mgr_connpool_drop(m, c);
        return rc;
    }
    *out = c;
    return 0;
}

int mp__mgr_connpool_refill(mp_manager *m, struct mconn *stale, struct mconn **out)
{
    struct mconn *c = NULL;
    while (stale) {
        struct mconn *x = stale;
        stale = x->next_idle;
        MP__ASSERT(x->state == MCONN_STALE);
        x->state = MCONN_BUSY;
        int d = c ? 0 : mp__mgr_call_drain(x);
        if (d == 1)
            c = x;
        else if (d == 0)
            mp__mgr_connpool_park(m, x);
        else
            mp__mgr_connpool_drop(m, x);
    }
    if (c) {
        *out = c;
        return 0;
    }
    return mp__mgr_connpool_open(m, out);
}

void mp__mgr_connpool_close_idle(mp_manager *m)
{
    pthread_mutex_lock(&m->mu);
    struct mconn *lists[2] = {m->idle, m->stale};
    m->idle = m->stale = NULL;
    for (int i = 0; i < 2; i++)
        for (struct mconn *x = lists[i]; x; x = x->next_idle) {
            MP__ASSERT(x->state == (i == 0 ? MCONN_IDLE : MCONN_STALE));
            connpool_unlink_locked(m, x);
        }
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; i < 2; i++) {
        struct mconn *c = lists[i];
        while (c) {
            struct mconn *next = c->next_idle;
            connpool_free(c);
            c = next;
        }
    }
}

void mp__mgr_connpool_close_all(mp_manager *m)
{
    struct mconn *c;
    while ((c = mp__list_pop_front(&m->all)) != NULL)
        connpool_free(c);
    m->idle = m->stale = NULL;
    m->nconns = 0;
}
