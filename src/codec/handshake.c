/*
 * handshake - the messages of CPython's authkey handshake and the server's
 * side of it as a state machine, all pure (see handshake.h). Follows
 * Lib/multiprocessing/connection.py of 3.12: deliver_challenge,
 * answer_challenge, _create_response, _verify_challenge and
 * _get_digest_name_and_payload. Statics start with hs_.
 */
#include "codec/handshake.h"

#include "codec/digest.h"
#include "core/internal.h"

#include <mpipc/error.h>
#include <mpipc/listener.h>

#include <stdio.h>
#include <string.h>

static const char CHALLENGE[] = "#CHALLENGE#";
static const char WELCOME[] = "#WELCOME#";
static const char FAILURE[] = "#FAILURE#";
#define MD5ONLY_MESSAGE_LEN 20 /* a 3.11 challenge; also the legacy marker */
#define MAX_DIGEST_NAME     8  /* len("sha3_384"), the longest 3.12 allows */

_Static_assert(sizeof CHALLENGE - 1 == MP__HS_PREFIX, "challenge prefix");
_Static_assert(sizeof WELCOME - 1 == MP__HS_VERDICT_LEN, "verdict length");
_Static_assert(sizeof FAILURE - 1 == MP__HS_VERDICT_LEN, "verdict length");

/* What a tagged message (a response, or a challenge's message) says: the
 * part after its "{name}" prefix, and which form it has. */
struct hs_tag {
    const unsigned char *payload;
    size_t plen;
    bool legacy; /* no prefix: the legacy form */
};

/*
 * _get_digest_name_and_payload: a message of 16 or 20 bytes is the legacy
 * form (alg MD5, no prefix); otherwise "{name}payload" with a name 3.12
 * allows. Returns the alg (or 0 for an allowed name this library does not
 * implement), MP_EAUTH for anything else; *t receives the rest.
 */
static int hs_digest_of(const unsigned char *m, size_t n, struct hs_tag *t)
{
    t->legacy = false;
    if (n == MD5ONLY_MESSAGE_LEN || n == MP__MD5_SIZE) {
        t->legacy = true;
        t->payload = m;
        t->plen = n;
        return MP__DIGEST_MD5;
    }
    if (n < 2 || m[0] != '{')
        return MP_EAUTH;
    /* message.find(b'}', 1, _MAX_DIGEST_LEN + 2) */
    size_t limit = n < MAX_DIGEST_NAME + 2 ? n : MAX_DIGEST_NAME + 2;
    const unsigned char *curly = memchr(m + 1, '}', limit - 1);
    if (!curly)
        return MP_EAUTH;
    size_t name_len = (size_t)(curly - m) - 1;
    t->payload = curly + 1;
    t->plen = n - name_len - 2;
    int alg = mp__digest_from_name((const char *)m + 1, name_len);
    if (alg > 0)
        return alg;
    static const char *const other_allowed[] = {"sha384", "sha3_256", "sha3_384"};
    for (size_t i = 0; i < 3; i++)
        if (strlen(other_allowed[i]) == name_len && !memcmp(m + 1, other_allowed[i], name_len))
            return 0;
    return MP_EAUTH;
}

/* The HMAC of message under key, with the digest the tagged message m
 * names (*t as hs_digest_of): its alg, with the HMAC in out; or MP_EAUTH
 * for garbage or a digest this library cannot compute. */
static int hs_hmac_named(const unsigned char *m, size_t n, const void *key, size_t keylen,
                         const unsigned char *message, size_t mlen,
                         unsigned char out[MP__DIGEST_MAX_SIZE], struct hs_tag *t)
{
    int alg = hs_digest_of(m, n, t);
    if (alg <= 0 || mp__hmac((mp__digest_alg)alg, key, keylen, message, mlen, out) <= 0)
        return MP_EAUTH;
    return alg;
}

size_t mp__hs_challenge(int form, const unsigned char random[MP__HS_RANDOM],
                        unsigned char out[MP__HS_CHALLENGE_MAX])
{
    memcpy(out, CHALLENGE, MP__HS_PREFIX);
    if (form == MP_AUTH_MD5) {
        memcpy(out + MP__HS_PREFIX, random, MD5ONLY_MESSAGE_LEN);
        return MP__HS_PREFIX + MD5ONLY_MESSAGE_LEN;
    }
    memcpy(out + MP__HS_PREFIX, "{sha256}", 8);
    memcpy(out + MP__HS_PREFIX + 8, random, MP__HS_RANDOM);
    return MP__HS_CHALLENGE_MAX;
}

bool mp__hs_verify(const void *key, size_t keylen, const unsigned char *message, size_t mlen,
                   const unsigned char *response, size_t rlen)
{
    struct hs_tag t;
    unsigned char expected[MP__DIGEST_MAX_SIZE];
    int alg = hs_hmac_named(response, rlen, key, keylen, message, mlen, expected, &t);
    return alg > 0 && t.plen == mp__digest_size((mp__digest_alg)alg) &&
           mp__digest_equal(expected, t.payload, t.plen);
}

const unsigned char *mp__hs_verdict(bool ok)
{
    return (const unsigned char *)(ok ? WELCOME : FAILURE);
}

bool mp__hs_welcomed(const unsigned char *v, size_t n)
{
    return n == MP__HS_VERDICT_LEN && memcmp(v, WELCOME, n) == 0;
}

int mp__hs_respond(const void *key, size_t keylen, const unsigned char *challenge, size_t n,
                   unsigned char out[MP__HS_RESPONSE_MAX])
{
    if (n < MP__HS_PREFIX || memcmp(challenge, CHALLENGE, MP__HS_PREFIX) != 0 ||
        n - MP__HS_PREFIX < MD5ONLY_MESSAGE_LEN) /* not a challenge, or one too short */
        return mp__err(MP_EAUTH, "Protocol error, expected challenge"); /* Python 3.12's */
    const unsigned char *message = challenge + MP__HS_PREFIX;
    size_t mlen = n - MP__HS_PREFIX;
    /* The legacy form gets a raw HMAC-MD5; the modern one "{name}" +
     * HMAC-name, over the whole message (prefix included). */
    struct hs_tag t;
    unsigned char mac[MP__DIGEST_MAX_SIZE];
    int alg = hs_hmac_named(message, mlen, key, keylen, message, mlen, mac, &t);
    if (alg < 0)
        return mp__err(alg, "the challenge names a digest this end does not support");
    size_t rlen = 0;
    if (!t.legacy) {
        const char *name = alg == MP__DIGEST_MD5 ? "{md5}" : "{sha256}";
        rlen = strlen(name);
        memcpy(out, name, rlen);
    }
    size_t dn = mp__digest_size((mp__digest_alg)alg);
    memcpy(out + rlen, mac, dn);
    return (int)(rlen + dn);
}

void mp__hs_random(const unsigned char seed[32], uint64_t counter, unsigned char out[MP__HS_RANDOM])
{
    unsigned char block[9], mac[MP__SHA256_SIZE];
    for (int i = 0; i < 8; i++)
        block[i] = (unsigned char)(counter >> (56 - 8 * i));
    for (size_t done = 0, i = 0; done < MP__HS_RANDOM; i++) {
        block[8] = (unsigned char)i;
        (void)mp__hmac(MP__DIGEST_SHA256, seed, 32, block, sizeof block, mac);
        size_t k = MP__HS_RANDOM - done < sizeof mac ? MP__HS_RANDOM - done : sizeof mac;
        memcpy(out + done, mac, k);
        done += k;
    }
}

/* ---- the server's side ----------------------------------------------------------- */

/* Queue one message (len <= MP__HS_CHALLENGE_MAX) as a frame. */
static void hs_put(struct mp__hs *h, const unsigned char *p, size_t len, int state)
{
    size_t hl = mp__frame_encode(len, h->out);
    memcpy(h->out + hl, p, len);
    h->out_pos = 0;
    h->out_len = (uint8_t)(hl + len);
    h->state = (uint8_t)state;
}

void mp__hs_server_start(struct mp__hs *h, int form, const unsigned char random[MP__HS_RANDOM])
{
    memset(h, 0, offsetof(struct mp__hs, message));
    unsigned char c[MP__HS_CHALLENGE_MAX];
    size_t n = mp__hs_challenge(form, random, c);
    h->mlen = (uint8_t)(n - MP__HS_PREFIX);
    memcpy(h->message, c + MP__HS_PREFIX, h->mlen);
    hs_put(h, c, n, MP__HS_SEND_CHALLENGE);
}

static bool hs_sending(const struct mp__hs *h)
{
    return h->state == MP__HS_SEND_CHALLENGE || h->state == MP__HS_SEND_VERDICT ||
           h->state == MP__HS_SEND_RESPONSE;
}

static bool hs_reading(const struct mp__hs *h)
{
    return h->state == MP__HS_READ_RESPONSE || h->state == MP__HS_READ_CHALLENGE ||
           h->state == MP__HS_READ_VERDICT;
}

size_t mp__hs_output(const struct mp__hs *h, const unsigned char **p)
{
    if (!hs_sending(h))
        return 0;
    *p = h->out + h->out_pos;
    return (size_t)(h->out_len - h->out_pos);
}

void mp__hs_sent(struct mp__hs *h, size_t n)
{
    if (!hs_sending(h) || n > (size_t)(h->out_len - h->out_pos))
        return;
    h->out_pos = (uint8_t)(h->out_pos + n);
    if (h->out_pos < h->out_len)
        return;
    h->in_len = 0;
    switch (h->state) {
    case MP__HS_SEND_CHALLENGE:
        h->state = MP__HS_READ_RESPONSE;
        break;
    case MP__HS_SEND_VERDICT:
        /* deliver_challenge raises after sending "#FAILURE#" */
        h->state = h->welcome ? MP__HS_READ_CHALLENGE : MP__HS_FAILED;
        break;
    default: /* MP__HS_SEND_RESPONSE */
        h->state = MP__HS_READ_VERDICT;
        break;
    }
}

size_t mp__hs_want(struct mp__hs *h, unsigned char **buf)
{
    if (!hs_reading(h))
        return 0;
    *buf = h->in + h->in_len;
    uint64_t len;
    size_t hl;
    int rc = mp__frame_decode(h->in_len ? h->in : NULL, h->in_len, &len, &hl);
    if (rc == 0)
        return hl - h->in_len; /* the rest of the header */
    /* mp__hs_received failed the machine on a bad or long header, so the
     * header here is complete and announces at most MP__HS_MAXLEN bytes,
     * of which fewer than all have come. */
    return hl + (size_t)len - h->in_len;
}

/* A whole message is in: act on it. */
static void hs_on_message(struct mp__hs *h, const void *key, size_t keylen, const unsigned char *p,
                          size_t n)
{
    switch (h->state) {
    case MP__HS_READ_RESPONSE:
        h->welcome = mp__hs_verify(key, keylen, h->message, h->mlen, p, n);
        hs_put(h, mp__hs_verdict(h->welcome), MP__HS_VERDICT_LEN, MP__HS_SEND_VERDICT);
        break;
    case MP__HS_READ_CHALLENGE: {
        unsigned char r[MP__HS_RESPONSE_MAX];
        int rn = mp__hs_respond(key, keylen, p, n, r);
        if (rn < 0)
            h->state = MP__HS_FAILED;
        else
            hs_put(h, r, (size_t)rn, MP__HS_SEND_RESPONSE);
        break;
    }
    default: /* MP__HS_READ_VERDICT */
        h->state = mp__hs_welcomed(p, n) ? MP__HS_DONE : MP__HS_FAILED;
        break;
    }
}

int mp__hs_received(struct mp__hs *h, const void *key, size_t keylen, size_t n)
{
    if (!hs_reading(h) || n == 0)
        return h->state;
    unsigned char *unused;
    if (n > mp__hs_want(h, &unused)) {
        h->state = MP__HS_FAILED; /* a driver bug: never read past a message */
        return h->state;
    }
    h->in_len = (uint16_t)(h->in_len + n);
    uint64_t len;
    size_t hl;
    int rc = mp__frame_decode(h->in, h->in_len, &len, &hl);
    if (rc < 0 || (rc == 1 && len > MP__HS_MAXLEN)) {
        /* recv_bytes(256) raises: a corrupt header or a long message */
        h->state = MP__HS_FAILED;
        return h->state;
    }
    if (rc == 0 || h->in_len < hl + len)
        return h->state;
    hs_on_message(h, key, keylen, h->in + hl, (size_t)len);
    h->in_len = 0;
    return h->state;
}

bool mp__hs_heard(const struct mp__hs *h)
{
    return h->state > MP__HS_READ_RESPONSE || (h->state == MP__HS_READ_RESPONSE && h->in_len > 0);
}
