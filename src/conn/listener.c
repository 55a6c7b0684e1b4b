/*
 * listener - Python's Listener, Client and authkey handshake (see
 * listener.h). Socket system calls live in core/io.c; this file parses
 * addresses, manages the private socket directory, and carries the authkey
 * handshake (whose messages codec/handshake.c builds and checks) over a
 * blocking connection, one deadline for the whole exchange. Static functions
 * carry listener_.
 */
#include "codec/handshake.h"
#include "core/internal.h"
#include "core/io.h"

#include <mpipc/listener.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_BACKLOG 16

struct mp_listener {
    int fd;
    pid_t creator;
    int challenge;
    unsigned char *authkey;
    size_t authkey_len;
    struct mp__sockaddr bound;
    char address[512];
    char private_dir[256]; /* non-empty when we made the directory */
    bool unlink_path;      /* an AF_UNIX path file to remove on close */
    pthread_mutex_t mu;    /* guards last_accepted */
    char last_accepted[512];
    bool have_last;
};

/* ---- addresses -------------------------------------------------------------- */

static bool listener_starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "host:port", "[v6]:port" -> a; port 0..65535. */
static int listener_parse_tcp(const char *s, struct mp__sockaddr *a)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon[1] == '\0')
        return -EINVAL;
    const char *host = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    if (hlen >= sizeof a->host)
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || errno || port > 65535 || colon[1] < '0' || colon[1] > '9')
        return -EINVAL;
    a->family = AF_INET;
    memcpy(a->host, host, hlen);
    a->host[hlen] = '\0';
    a->port = (unsigned)port;
    return 0;
}

static int listener_parse_unix(const char *path, struct mp__sockaddr *a)
{
    bool abstract = path[0] == '@';
    if (abstract)
        path++;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof a->path)
        return -EINVAL;
#ifndef __linux__
    if (abstract)
        return -EINVAL; /* the abstract namespace is Linux's */
#endif
    a->family = AF_UNIX;
    a->abstract = abstract;
    memcpy(a->path, path, n + 1);
    return 0;
}

static int listener_parse_address(const char *s, struct mp__sockaddr *a)
{
    memset(a, 0, sizeof *a);
    if (!s || !*s)
        return -EINVAL;
    if (listener_starts_with(s, "unix:"))
        return listener_parse_unix(s + 5, a);
    if (listener_starts_with(s, "tcp:"))
        return listener_parse_tcp(s + 4, a);
    if (s[0] == '@' || strchr(s, '/'))
        return listener_parse_unix(s, a);
    return listener_parse_tcp(s, a);
}

static void listener_format_address(const struct mp__sockaddr *a, char *out, size_t cap)
{
    if (a->family == AF_UNIX)
        snprintf(out, cap, "unix:%s%s", a->abstract ? "@" : "", a->path);
    else if (strchr(a->host, ':'))
        snprintf(out, cap, "tcp:[%s]:%u", a->host, a->port);
    else
        snprintf(out, cap, "tcp:%s:%u", a->host, a->port);
}

/* Python's arbitrary_address('AF_UNIX'): a fresh path in a private 0700
 * directory. */
static int listener_private_unix_address(mp_listener *l)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    int n = snprintf(l->private_dir, sizeof l->private_dir, "%s/mpipc-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof l->private_dir)
        return -ENAMETOOLONG;
    if (!mkdtemp(l->private_dir)) {
        int rc = MP__NEG_ERRNO();
        l->private_dir[0] = '\0';
        return rc;
    }
    unsigned char r[4];
    int rc = mp__random_bytes(r, sizeof r);
    if (rc < 0)
        return rc;
    memset(&l->bound, 0, sizeof l->bound);
    l->bound.family = AF_UNIX;
    n = snprintf(l->bound.path, sizeof l->bound.path, "%s/listener-%02x%02x%02x%02x",
                 l->private_dir, r[0], r[1], r[2], r[3]);
    if (n < 0 || (size_t)n >= sizeof l->bound.path)
        return -ENAMETOOLONG;
    return 0;
}

/* ---- the handshake ---------------------------------------------------------- */

/* The messages are built and checked by codec/handshake.c; this is the
 * blocking transport for them. One deadline covers the whole exchange (both
 * directions) of an accept or a connect. */

/* A handshake receive into buf: at most MP__HS_MAXLEN bytes, as Python's
 * recv_bytes(256) (a longer message stops the connection reading); a
 * message over the limit or a corrupt frame is a failed handshake. */
static int listener_recv_handshake(mp_conn *c, unsigned char buf[MP__HS_MAXLEN], size_t *len,
                                   int64_t deadline)
{
    void *msg;
    int rc = mp_conn_recv_bytes(c, MP__HS_MAXLEN, &msg, len, mp__deadline_left(deadline));
    if (rc == MP_ETOOLONG || rc == MP_EPROTO || rc == MP_ETRUNCATED)
        return mp__err(MP_EAUTH, "the peer's handshake message is corrupt or over %d bytes",
                       (int)MP__HS_MAXLEN);
    if (rc < 0)
        return rc;
    MP__ASSERT(*len <= MP__HS_MAXLEN);
    memcpy(buf, msg, *len);
    free(msg);
    return 0;
}

static int listener_deliver(mp_conn *c, const void *key, size_t keylen, int form, int64_t deadline)
{
    unsigned char random[MP__HS_RANDOM], out[MP__HS_CHALLENGE_MAX];
    int rc = mp__random_bytes(random, sizeof random);
    if (rc < 0)
        return rc;
    size_t n = mp__hs_challenge(form, random, out);
    rc = mp_conn_send_bytes(c, out, n);
    if (rc < 0)
        return rc;
    unsigned char resp[MP__HS_MAXLEN];
    size_t rlen;
    if ((rc = listener_recv_handshake(c, resp, &rlen, deadline)) < 0)
        return rc;
    bool ok = mp__hs_verify(key, keylen, out + MP__HS_PREFIX, n - MP__HS_PREFIX, resp, rlen);
    rc = mp_conn_send_bytes(c, mp__hs_verdict(ok), MP__HS_VERDICT_LEN);
    if (!ok) /* Python's AuthenticationError text */
        return mp__err(MP_EAUTH, "digest received was wrong");
    return rc;
}

static int listener_answer(mp_conn *c, const void *key, size_t keylen, int64_t deadline)
{
    unsigned char msg[MP__HS_MAXLEN], reply[MP__HS_RESPONSE_MAX];
    size_t n;
    int rc = listener_recv_handshake(c, msg, &n, deadline);
    if (rc < 0)
        return rc;
    int rn = mp__hs_respond(key, keylen, msg, n, reply);
    if (rn < 0)
        return rn;
    if ((rc = mp_conn_send_bytes(c, reply, (size_t)rn)) < 0)
        return rc;
    /* The verdict reuses msg: the challenge is answered. */
    if ((rc = listener_recv_handshake(c, msg, &n, deadline)) < 0)
        return rc;
    return mp__hs_welcomed(msg, n) ? 0 : mp__err(MP_EAUTH, "digest sent was rejected");
}

/* A peer that hangs up during the handshake shows as end of file, a reset
 * or a broken pipe depending on who moved first; report one code for it. */
static int listener_hung_up_is_eof(int rc)
{
    return rc == -ECONNRESET || rc == -EPIPE ? MP_EOF : rc;
}

/* Both directions, in the order the listener (deliver first) or the client
 * (answer first) runs them. */
static int listener_handshake(mp_conn *c, const void *key, size_t keylen, int form,
                              bool deliver_first, int64_t deadline)
{
    int rc = deliver_first ? listener_deliver(c, key, keylen, form, deadline)
                           : listener_answer(c, key, keylen, deadline);
    if (rc == 0)
        rc = deliver_first ? listener_answer(c, key, keylen, deadline)
                           : listener_deliver(c, key, keylen, form, deadline);
    return listener_hung_up_is_eof(rc);
}

MP_API int mp_deliver_challenge(mp_conn *c, const void *authkey, size_t authkey_len, int form,
                                double timeout)
{
    if (!c || (!authkey && authkey_len) || (form != MP_AUTH_SHA256 && form != MP_AUTH_MD5))
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    return listener_hung_up_is_eof(
        listener_deliver(c, authkey, authkey_len, form, mp__deadline(timeout)));
}

MP_API int mp_answer_challenge(mp_conn *c, const void *authkey, size_t authkey_len, double timeout)
{
    if (!c || (!authkey && authkey_len))
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    return listener_hung_up_is_eof(listener_answer(c, authkey, authkey_len, mp__deadline(timeout)));
}

/* ---- Listener ----------------------------------------------------------------- */

MP_API int mp_listener_new(mp_listener **out, const char *address, const void *authkey,
                           size_t authkey_len, const mp_listener_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!authkey && authkey_len)
        return -EINVAL;
    mp_listener_opts o = MP_LISTENER_OPTS_INIT;
    if (opts)
        o = *opts;
    if (o.challenge != MP_AUTH_SHA256 && o.challenge != MP_AUTH_MD5)
        return -EINVAL;

    mp_listener *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->fd = -1;
    l->creator = getpid();
    l->challenge = o.challenge;
    int rc = -ENOMEM;
    /* From here mp_listener_free() undoes whatever was done. */
    if (pthread_mutex_init(&l->mu, NULL) != 0)
        goto fail;
    if (authkey_len) {
        if (!(l->authkey = malloc(authkey_len)))
            goto fail;
        memcpy(l->authkey, authkey, authkey_len);
        l->authkey_len = authkey_len;
    }
    struct mp__sockaddr want;
    if (address) {
        rc = listener_parse_address(address, &want);
    } else {
        rc = listener_private_unix_address(l);
        want = l->bound;
    }
    if (rc < 0)
        goto fail;
    int fd = mp__listen(&want, o.backlog > 0 ? o.backlog : DEFAULT_BACKLOG, &l->bound);
    if (fd < 0) {
        rc = fd;
        goto fail;
    }
    l->fd = fd;
    if (want.family == AF_UNIX && !want.abstract) {
        l->unlink_path = true;
        /* Python's socket is as private as its directory; ours is 0600 as
         * well, whatever the umask. */
        if (!address)
            (void)chmod(want.path, 0600);
    }
    listener_format_address(&l->bound, l->address, sizeof l->address);
    *out = l;
    return 0;

fail:
    mp_listener_free(l);
    return rc;
}

MP_API int mp_listener_accept(mp_listener *l, mp_conn **out, double timeout)
{
    if (!l || !out)
        return -EINVAL;
    *out = NULL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    int lfd = __atomic_load_n(&l->fd, __ATOMIC_ACQUIRE);
    if (lfd < 0)
        return MP_ECLOSED;
    int64_t deadline = mp__deadline(timeout);
    char peer[sizeof l->last_accepted];
    int fd = mp__accept(lfd, deadline, peer, sizeof peer);
    if (fd < 0)
        return fd;
    mp_conn *c;
    int rc = mp_conn_from_fd(&c, fd, true, true);
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    pthread_mutex_lock(&l->mu);
    memcpy(l->last_accepted, peer, sizeof peer);
    l->have_last = true;
    pthread_mutex_unlock(&l->mu);
    if (l->authkey_len) {
        rc = listener_handshake(c, l->authkey, l->authkey_len, l->challenge, true, deadline);
        if (rc < 0) {
            mp_conn_free(c);
            return rc;
        }
        /* CPython's Client writes its first message right behind its
         * WELCOME; acknowledge that now so Nagle does not hold it ~40 ms. */
        mp__tcp_ack_now(fd);
    }
    *out = c;
    return 0;
}

MP_API const char *mp_listener_address(const mp_listener *l)
{
    return l ? l->address : NULL;
}

MP_API const char *mp_listener_last_accepted(const mp_listener *l)
{
    return l && l->have_last ? l->last_accepted : NULL;
}

MP_API int mp_listener_fileno(const mp_listener *l)
{
    if (!l)
        return -EINVAL;
    int fd = __atomic_load_n(&l->fd, __ATOMIC_ACQUIRE);
    return fd < 0 ? MP_ECLOSED : fd;
}

MP_API int mp_listener_close(mp_listener *l)
{
    if (!l)
        return -EINVAL;
    int fd = __atomic_exchange_n(&l->fd, -1, __ATOMIC_ACQ_REL);
    if (fd >= 0)
        mp__close(fd);
    /* Only the process that bound the path removes it (a forked child that
     * closes its copy must not pull the socket from under its parent). */
    if (getpid() == l->creator) {
        if (l->unlink_path) {
            (void)unlink(l->bound.path);
            l->unlink_path = false;
        }
        if (l->private_dir[0]) {
            (void)rmdir(l->private_dir);
            l->private_dir[0] = '\0';
        }
    }
    return 0;
}

MP_API void mp_listener_free(mp_listener *l)
{
    if (!l)
        return;
    mp_listener_close(l);
    if (l->authkey) {
        /* The key is a secret: do not leave it in freed memory. */
        mp__wipe(l->authkey, l->authkey_len);
        free(l->authkey);
    }
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- Client -------------------------------------------------------------------- */

MP_API int mp_client_connect(mp_conn **out, const char *address, const void *authkey,
                             size_t authkey_len, double timeout)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!authkey && authkey_len)
        return -EINVAL;
    if (mp__bad_timeout(timeout))
        return MP_EVALUE;
    struct mp__sockaddr a;
    int rc = listener_parse_address(address, &a);
    if (rc < 0)
        return rc;
    int64_t deadline = mp__deadline(timeout);
    int fd = mp__connect(&a, deadline);
    if (fd < 0)
        return fd;
    mp_conn *c;
    rc = mp_conn_from_fd(&c, fd, true, true);
    if (rc < 0) {
        mp__close(fd);
        return rc;
    }
    if (authkey) {
        rc = listener_handshake(c, authkey, authkey_len, MP_AUTH_SHA256, false, deadline);
        if (rc < 0) {
            mp_conn_free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}
