/*
 * mgr_server - the manager's server: the event loop (what it polls, how it
 * spins and sleeps, what it does with what poll() says), the lifetime of
 * connections, and teardown. Static functions: srv_. mgr_server.h has the
 * design notes and the map of the family's files.
 */
#include "core/io.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* ---- connections' lifetime -------------------------------------------------------- */

int mp__mgr_conn_add(struct server *s, int fd)
{
    if (s->nconns == s->conns_cap) {
        struct sconn **v = mp__array_grow(s->conns, &s->conns_cap, sizeof *v, 16);
        if (!v)
            return -ENOMEM;
        s->conns = v;
    }
    struct sconn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fd = fd;
    c->srv = s;
    c->id = ++s->next_conn_id;
    c->max_reply = MP__MGR_DEFAULT_MAX;
    s->conns[s->nconns++] = c;
    return 0;
}

/* Tear a broken connection down: its waiter goes, and if it was the last
 * connection of its process, the session ends (locks released, references
 * dropped). */
static void srv_conn_kill(struct server *s, struct sconn *c)
{
    if (c->waiter)
        mp__mgr_waiter_free(s, c->waiter);
    if (c->job) { /* its decode is dropped when it comes back */
        c->job->owner = NULL;
        c->job = NULL;
    }
    /* A slot is free again once the client has let go of the connection.
     * One whose client may still be using it (the server hung up on it: out
     * of memory, a fatal frame error) stays taken for good: the client
     * could still write a request into it, which must not land in another
     * connection's slot. */
    if (c->slot) {
        MP__ASSERT(s->nslots > 0 && s->slot_used[c->slot_ix]);
        if (c->hung_up)
            s->slot_used[c->slot_ix] = false;
        c->slot = NULL;
        s->nslots--;
    }
    mp__close(c->fd);
    c->fd = -1;
    struct session *ss = c->sess;
    c->sess = NULL;
    if (ss) {
        MP__ASSERT(ss->nconns > 0);
        if (--ss->nconns == 0)
            mp__mgr_session_end(s, ss);
    }
}

static void srv_conn_free(struct sconn *c)
{
    mp_obj_free(c->py_saved);
    mp__mgr_budget_give(c->srv, &c->in_charge);
    mp__mgr_budget_give(c->srv, &c->out_charge);
    if (c->job)
        c->job->owner = NULL;
    free(c->in);
    free(c->out.p);
    free(c);
}

/* Kill broken connections until none is left (killing one may break
 * others, whose replies fail), then compact the array. */
void mp__mgr_conns_reap(struct server *s)
{
    bool any = true;
    while (any) {
        any = false;
        for (size_t i = 0; i < s->nconns; i++) {
            struct sconn *c = s->conns[i];
            if (c->broken && c->fd >= 0) {
                srv_conn_kill(s, c);
                any = true;
            }
        }
    }
    size_t j = 0;
    for (size_t i = 0; i < s->nconns; i++) {
        if (s->conns[i]->fd < 0)
            srv_conn_free(s->conns[i]);
        else
            s->conns[j++] = s->conns[i];
    }
    s->nconns = j;
}

/* ---- what the loop polls ----------------------------------------------------------- */

static int srv_ensure_pollfds(struct server *s, size_t n)
{
    if (n <= s->pcap)
        return 0;
    size_t cap = s->pcap ? s->pcap : 32;
    while (cap < n)
        cap *= 2;
    struct pollfd *p = realloc(s->pfds, cap * sizeof *p);
    if (!p)
        return -ENOMEM;
    s->pfds = p;
    struct sconn **pc = realloc(s->pconn, cap * sizeof *pc);
    if (!pc)
        return -ENOMEM;
    s->pconn = pc;
    struct hsconn **ph = realloc(s->phs, cap * sizeof *ph);
    if (!ph)
        return -ENOMEM;
    s->phs = ph;
    s->pcap = cap;
    return 0;
}

/* Does the connection want its socket read now? Reading stops while a
 * request cannot be handled yet (it waits, its reply is being sent, or the
 * helper thread decodes it) and 64 KiB are already buffered. */
static bool srv_wants_input(const struct sconn *c)
{
    if (c->broken || c->closing)
        return false;
    if (!c->waiter && !c->job && mp__mgr_conn_idle_output(c))
        return true;
    return c->in_len - c->in_pos < MP__MGR_IN_KEEP;
}

/* One round of the loop: what is polled, where, and until when. */
struct srv_round {
    size_t n;                     /* descriptors polled */
    size_t listener, alive, wake; /* their indexes, or SIZE_MAX */
    bool paused;                  /* accepting is paused */
    int64_t deadline;             /* the first waiter or handshake due */
};

/* Add fd to the poll set (with its connection or handshake, or neither);
 * returns its index. */
static size_t srv_poll_add(struct server *s, struct srv_round *r, int fd, short events,
                           struct sconn *c, struct hsconn *h)
{
    size_t i = r->n++;
    s->pfds[i] = (struct pollfd){.fd = fd, .events = events, .revents = 0};
    s->pconn[i] = c;
    s->phs[i] = h;
    return i;
}

/* Fill the poll set for this round and find its deadline. */
static int srv_round_begin(struct server *s, struct srv_round *r, int lfd)
{
    if (srv_ensure_pollfds(s, s->nconns + s->nhs + 3) < 0)
        return -ENOMEM;
    *r = (struct srv_round){0, SIZE_MAX, SIZE_MAX, SIZE_MAX, false, MP__NO_DEADLINE};
    r->paused = s->accept_pause && mp__now_ns() < s->accept_pause;
    if (!r->paused)
        r->listener = srv_poll_add(s, r, lfd, POLLIN, NULL, NULL);
    if (s->alive_fd >= 0)
        r->alive = srv_poll_add(s, r, s->alive_fd, POLLIN, NULL, NULL);
    if (s->worker) /* the helper thread's decodes */
        r->wake = srv_poll_add(s, r, mp__mgr_worker_fd(s->worker), POLLIN, NULL, NULL);
    for (size_t i = 0; i < s->nconns; i++) {
        struct sconn *c = s->conns[i];
        /* Bytes still peeked (a request that waits): only a hang-up is news. */
        short in = c->peeked ? mp__poll_rdhup() : srv_wants_input(c) ? POLLIN : 0;
        short ev = (short)(in | (mp__mgr_conn_idle_output(c) ? 0 : POLLOUT));
        srv_poll_add(s, r, c->fd, ev, c, NULL);
    }
    for (struct hsconn *h = mp__list_first(&s->hs); h; h = mp__list_next(&s->hs, h)) {
        const unsigned char *unused;
        short ev = mp__hs_output(&h->m, &unused) ? POLLOUT : POLLIN;
        srv_poll_add(s, r, h->fd, ev, NULL, h);
    }
    int64_t d = mp__mgr_waiters_next_deadline(s);
    int64_t hs = mp__mgr_hs_next_deadline(s);
    if (hs != MP__NO_DEADLINE && (d == MP__NO_DEADLINE || hs < d))
        d = hs;
    if (r->paused && (d == MP__NO_DEADLINE || d > s->accept_pause))
        d = s->accept_pause; /* look at the listener again then */
    r->deadline = d;
    return 0;
}

/* ---- spinning and sleeping ---------------------------------------------------------- */

/* How the loop has been looking for work, across rounds. */
struct srv_spin {
    bool busy;           /* the last round handled a client */
    int64_t last_poll;   /* when the sockets were last looked at */
    unsigned pause_skip; /* spins left before looking in place again */
};

/*
 * Right after work, the next request is likely microseconds away: look for
 * it without sleeping for a moment, yielding the CPU between looks (mgr.h,
 * "Spinning"). Slots cost a load to look at, sockets a poll(): while some
 * connection has a slot the sockets are looked at every SERVER_POLL while
 * the slots are quiet, and every SERVER_BUSY_POLL however busy they keep
 * the loop, so that socket clients, newcomers and the starter's pipe are
 * heard; without slots, at every look. Returns poll()'s result (0 when
 * none was made or it saw nothing); *mail: a request waits in a slot.
 */
static int srv_spin(struct server *s, const struct srv_round *r, struct srv_spin *sp, bool *mail)
{
    int pr = 0;
    int64_t t0 = mp__now_ns();
    int64_t until = t0 + MP__MGR_SERVER_SPIN_NS;
    if (r->deadline != MP__NO_DEADLINE && r->deadline < until)
        until = r->deadline;
    /* First in place (no yield) while mailbox clients answer quickly;
     * after a look in place that found nothing, yielding for the next
     * PAUSE_RETRY spins (mgr.h, "Spinning"). */
    bool pausing = s->nslots && !sp->pause_skip;
    if (sp->pause_skip)
        sp->pause_skip--;
    for (;;) {
        int64_t t = mp__now_ns();
        *mail = s->nslots && mp__mgr_slots_pending(s);
        int64_t every = *mail ? MP__MGR_SERVER_BUSY_POLL_NS : MP__MGR_SERVER_POLL_NS;
        if (!s->nslots || t - sp->last_poll >= every) {
            sp->last_poll = t;
            pr = mp__poll(s->pfds, (nfds_t)r->n, t);
        }
        if (*mail || pr != 0 || t >= until)
            return pr;
        if (pausing && t - t0 < MP__MGR_SERVER_PAUSE_NS) {
            for (int k = 0; k < 16; k++)
                mp__mgr_relax();
            continue;
        }
        if (pausing) {
            pausing = false;
            sp->pause_skip = MP__MGR_PAUSE_RETRY;
        }
        sched_yield();
    }
}

/* Wait for something to do: a look that does not wait when work is
 * already waiting (s->again), a spin after a busy round, else a sleep in
 * poll() until the round's deadline. Returns poll()'s result. */
static int srv_wait(struct server *s, const struct srv_round *r, struct srv_spin *sp)
{
    int pr = 0;
    bool mail = false; /* a request waits in a slot */
    bool again = s->again;
    s->again = false;
    if (again) {
        sp->last_poll = mp__now_ns();
        pr = mp__poll(s->pfds, (nfds_t)r->n, sp->last_poll);
        mail = true; /* not asleep: the spin below and the sleep are skipped */
    } else if (sp->busy) {
        pr = srv_spin(s, r, sp, &mail);
    }
    if (pr == 0 && !mail) {
        /* About to sleep: say so, then look at the slots once more (mgr.h,
         * "Mailboxes"). */
        if (s->arena) {
            __atomic_store_n(&s->arena->ssleep, 1, __ATOMIC_SEQ_CST);
            mail = mp__mgr_slots_pending(s);
        }
        if (!mail) {
            pr = mp__poll(s->pfds, (nfds_t)r->n, r->deadline);
            sp->last_poll = mp__now_ns();
        }
        if (s->arena)
            __atomic_store_n(&s->arena->ssleep, 0, __ATOMIC_RELAXED);
    }
    sp->busy = mail;
    return pr;
}

/* ---- one round ------------------------------------------------------------------------ */

/* Act on what poll() reported: handshakes, newcomers, decoded requests,
 * connections' sockets. Returns true when a connection's socket was ready. */
static bool srv_events(struct server *s, const struct srv_round *r, int lfd)
{
    /* Handshakes before accepting: an accept may close one (out of
     * descriptors), and phs[] must not point at it by then. */
    for (size_t i = 0; i < r->n; i++)
        if (s->phs[i] && s->pfds[i].revents)
            mp__mgr_hs_step(s, s->phs[i]);
    mp__mgr_hs_expire(s);
    if (r->listener != SIZE_MAX && s->pfds[r->listener].revents)
        mp__mgr_accept(s, lfd);
    if (r->wake != SIZE_MAX && s->pfds[r->wake].revents)
        mp__mgr_collect_decoded(s);
    bool busy = false;
    for (size_t i = 0; i < r->n; i++) {
        struct sconn *c = s->pconn[i];
        short ev = s->pfds[i].revents;
        if (!c || !ev)
            continue;
        busy = true;
        if (ev & POLLOUT)
            mp__mgr_conn_flush(c);
        if (ev & (POLLIN | POLLHUP | POLLERR | mp__poll_rdhup()))
            mp__mgr_conn_read(s, c);
        if (ev & POLLNVAL)
            c->broken = true;
    }
    return busy;
}

/* Serve until a shutdown, the starter's death (0) or a failure (-errno). */
static int srv_run(struct server *s, int lfd)
{
    /* No signal is touched here: every send is MSG_NOSIGNAL (a started
     * server's child has also blocked SIGINT before it got here). */
    struct srv_spin sp = {false, 0, 0};
    while (!s->stop) {
        struct srv_round r;
        if (srv_round_begin(s, &r, lfd) < 0)
            return -ENOMEM;
        int pr = srv_wait(s, &r, &sp);
        if (pr < 0)
            return pr;
        if (r.alive != SIZE_MAX && s->pfds[r.alive].revents)
            return 0; /* the starter is gone: so are we */
        if (srv_events(s, &r, lfd))
            sp.busy = true;
        mp__mgr_waiters_expire(s, mp__now_ns());
        for (size_t i = 0; i < s->nconns && !s->stop; i++)
            mp__mgr_conn_process(s, s->conns[i]);
        for (size_t i = 0; i < s->nconns; i++)
            mp__mgr_conn_take_peeked(s->conns[i]);
        mp__mgr_conns_reap(s);
        for (size_t i = 0; i < s->nconns && !s->again; i++)
            s->again = mp__mgr_conn_has_work(s->conns[i]);
    }
    return 0;
}

/* ---- start and stop -------------------------------------------------------------------- */

int mp__mgr_server_init(struct server *s, size_t max_request)
{
    memset(s, 0, sizeof *s);
    MP__LIST_INIT(&s->hs, struct hsconn, node);
    MP__LIST_INIT(&s->sessions, struct session, node);
    MP__LIST_INIT(&s->locks, struct sobj, lnode);
    MP__LIST_INIT(&s->timed, struct waiter, tnode);
    s->max_request = max_request;
    s->hs_timeout_ns = (int64_t)(MP__MGR_HANDSHAKE_TIMEOUT * 1e9);
    s->budget = mp__mgr_budget_for(max_request);
    s->reserve_fd = -1;
    s->alive_fd = -1;
    s->names = mp_obj_dict_new();
    return s->names ? 0 : -ENOMEM;
}

void mp__mgr_server_free(struct server *s)
{
    /* Waiters first (they point at connections and objects). */
    struct waiter *w;
    while ((w = mp__list_first(&s->timed)) != NULL)
        mp__mgr_waiter_free(s, w);
    for (size_t i = 0; i < s->nconns; i++) {
        struct sconn *c = s->conns[i];
        if (c->waiter)
            mp__mgr_waiter_free(s, c->waiter);
        if (c->fd >= 0)
            mp__close(c->fd);
        srv_conn_free(c);
    }
    free(s->conns);
    mp__mgr_worker_free(s->worker); /* after the connections let go of its jobs */
    mp__mgr_objs_free(s);
    mp_obj_free(s->names);
    free(s->pfds);
    free(s->pconn);
    free(s->phs);
    /* The seed is a secret: do not leave it on the stack. */
    mp__wipe(s->hs_seed, sizeof s->hs_seed);
}

static void srv_teardown(struct server *s)
{
    /* Say goodbye: a shutdown's own reply is usually still pending. */
    for (size_t i = 0; i < s->nconns; i++)
        mp__mgr_conn_flush(s->conns[i]);
    /* Handshakes under way end with end of file. */
    mp__mgr_hs_close_all(s);
    if (s->reserve_fd >= 0)
        mp__close(s->reserve_fd);
    mp__mgr_server_free(s);
}

int mp__mgr_serve(mp_listener *l, const struct mp__mgr_cfg *cfg)
{
    if (!l || !cfg || !cfg->authkey || !cfg->authkey_len)
        return -EINVAL;
    int lfd = mp_listener_fileno(l);
    if (lfd < 0)
        return lfd;
    size_t max = cfg->max_request ? cfg->max_request : MP__MGR_DEFAULT_MAX;
    struct server s;
    int rc = mp__mgr_server_init(&s, max > MP__MGR_MAX_LIMIT ? MP__MGR_MAX_LIMIT : max);
    if (rc < 0)
        goto fail;
    s.listener = l;
    s.key = cfg->authkey;
    s.keylen = cfg->authkey_len;
    s.alive_fd = cfg->alive_fd;
    s.arena = cfg->arena;
    s.utypes = cfg->types;
    s.nutypes = cfg->ntypes;
    double hs = cfg->handshake_timeout > 0 ? cfg->handshake_timeout : MP__MGR_HANDSHAKE_TIMEOUT;
    s.hs_timeout_ns = hs < 1e9 ? (int64_t)(hs * 1e9) : INT64_MAX / 2;
    /* The challenges' secret, drawn once: a handshake then needs no
     * system call (nor a descriptor) for its randomness. */
    rc = mp__random_bytes(s.hs_seed, sizeof s.hs_seed);
    if (rc < 0)
        goto fail;
    s.reserve_fd = mp__dup_cloexec(lfd);
    if (s.reserve_fd < 0) {
        rc = s.reserve_fd;
        goto fail;
    }
    rc = srv_run(&s, lfd);
    srv_teardown(&s);
    return rc;
fail:
    srv_teardown(&s);
    return rc;
}
