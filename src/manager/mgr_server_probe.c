/*
 * mgr_server_probe - the manager server's request handling without
 * sockets (mgr.h, "The probe"), for the request fuzzers
 * (fuzz/fuzz_request.c, fuzz/fuzz_fastpath.c) and tests. Static functions:
 * probe_.
 */
#include "core/io.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_CONNS 4

struct mp__mgr_probe {
    struct server s;
    struct sconn *c[PROBE_CONNS];
    int peer[PROBE_CONNS]; /* the client's end of each, held open, or -1 */
};

/* A fresh connection in place i. Its descriptor is real (the reaper
 * closes it, and tells torn-down connections by fd -1) but never used: one
 * end of a socket pair whose other end the probe holds open, so the
 * server sees a client that is there (mp__peer_gone) until closed. */
static int probe_conn(struct mp__mgr_probe *p, unsigned i)
{
    int sv[2];
    int rc = mp__socketpair(sv);
    if (rc < 0)
        return rc;
    rc = mp__mgr_conn_add(&p->s, sv[0]);
    if (rc < 0) {
        mp__close(sv[0]);
        mp__close(sv[1]);
        return rc;
    }
    p->c[i] = p->s.conns[p->s.nconns - 1];
    p->peer[i] = sv[1];
    return 0;
}

static void probe_close_peer(struct mp__mgr_probe *p, unsigned i)
{
    if (p->peer[i] >= 0)
        mp__close(p->peer[i]);
    p->peer[i] = -1;
}

int mp__mgr_probe_new(struct mp__mgr_probe **out, size_t max_request)
{
    *out = NULL;
    struct mp__mgr_probe *p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    int rc = mp__mgr_server_init(&p->s, max_request ? max_request : MP__MGR_DEFAULT_MAX);
    p->s.probe = true;
    for (unsigned i = 0; i < PROBE_CONNS; i++)
        p->peer[i] = -1;
    for (unsigned i = 0; rc == 0 && i < PROBE_CONNS; i++)
        rc = probe_conn(p, i);
    if (rc < 0)
        goto fail;
    *out = p;
    return 0;
fail:
    mp__mgr_probe_free(p);
    return rc;
}

int mp__mgr_probe_request(struct mp__mgr_probe *p, unsigned i, const void *req, size_t n)
{
    struct server *s = &p->s;
    struct sconn *c = p->c[i % PROBE_CONNS];
    if (!mp__mgr_conn_ready(s, c))
        return MP_ESTATE; /* the server would not read it yet */
    mp__mgr_handle_request(s, c, req, n);
    mp__mgr_reply_done(c);
    mp__mgr_after_reply(s);
    return 0;
}

int mp__mgr_probe_take(struct mp__mgr_probe *p, unsigned i, unsigned char **out, size_t *len)
{
    struct sconn *c = p->c[i % PROBE_CONNS];
    *out = NULL;
    *len = c->out.len;
    if (c->out.len) {
        *out = malloc(c->out.len);
        if (!*out)
            return -ENOMEM;
        memcpy(*out, c->out.p, c->out.len);
    }
    /* As if it had all been sent (mp__mgr_conn_flush). */
    c->out_pos = c->out.len = 0;
    mp__mgr_budget_give(&p->s, &c->out_charge);
    return 0;
}

int mp__mgr_probe_close(struct mp__mgr_probe *p, unsigned i)
{
    i %= PROBE_CONNS;
    p->c[i]->broken = true;
    p->c[i]->hung_up = true;
    mp__mgr_conns_reap(&p->s);
    probe_close_peer(p, i);
    return probe_conn(p, i);
}

void mp__mgr_probe_expire(struct mp__mgr_probe *p)
{
    mp__mgr_waiters_expire(&p->s, INT64_MAX);
}

bool mp__mgr_probe_stopped(const struct mp__mgr_probe *p)
{
    return p->s.stop;
}

void mp__mgr_probe_free(struct mp__mgr_probe *p)
{
    if (!p)
        return;
    mp__mgr_server_free(&p->s);
    for (unsigned i = 0; i < PROBE_CONNS; i++)
        probe_close_peer(p, i);
    free(p);
}
