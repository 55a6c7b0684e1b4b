/*
 * libFuzzer harness for the authkey handshake (src/codec/handshake.c): the pure
 * message functions and the server's state machine that the manager's
 * event loop drives.
 *
 * The first byte picks what the rest of the input is:
 *   0  the bytes a client sends, fed to the server's machine in chunks the
 *      input also chooses. Whatever arrives, the machine only asks for
 *      bytes it has room for, never more than the message being read still
 *      needs, and ends in MP__HS_FAILED or keeps waiting; it never
 *      reaches MP__HS_DONE (that takes the key).
 *   1  a challenge a server sends, answered by mp__hs_respond: an answer is
 *      either MP_EAUTH or one that mp__hs_verify accepts for that message
 *      under the same key and refuses under another.
 *   2  an honest exchange with a key, challenge bytes and chunking taken
 *      from the input: the machine must reach MP__HS_DONE, having sent a
 *      challenge that parses, a "#WELCOME#" and a response the client
 *      accepts; with a client holding another key, it must fail. Or, once
 *      the client has proved the key, the rest of the input as what the
 *      client sends next (its challenge and verdict, or anything else).
 */
#include "codec/frame.h"
#include "codec/handshake.h"

#include <mpipc/error.h>
#include <mpipc/listener.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_handshake: %s\n", what);
        abort();
    }
}

/* A reader of the input: bytes until it runs out, then zeros. */
struct in {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static int valid_state(int st)
{
    return st >= MP__HS_SEND_CHALLENGE && st <= MP__HS_FAILED;
}

/* Everything the machine has to send, in chunks of 1..chunk bytes, copied
 * to out (which receives at most cap bytes). Returns the bytes taken. */
static size_t drain(struct mp__hs *h, unsigned char *out, size_t cap, size_t chunk)
{
    size_t got = 0;
    const unsigned char *p;
    size_t n;
    while ((n = mp__hs_output(h, &p)) > 0) {
        check(n <= sizeof h->out, "output larger than its buffer");
        size_t k = n < chunk ? n : chunk;
        check(got + k <= cap, "more output than one message");
        memcpy(out + got, p, k);
        got += k;
        mp__hs_sent(h, k);
    }
    return got;
}

/* Feed all of p to the machine in chunks of 1..chunk bytes, as the machine
 * asks for them. Returns how many it took. */
static size_t feed(struct mp__hs *h, const void *key, size_t keylen, const unsigned char *p,
                   size_t n, size_t chunk)
{
    size_t used = 0;
    unsigned char *buf;
    size_t want;
    while (used < n && (want = mp__hs_want(h, &buf)) > 0) {
        check(buf >= h->in && buf + want <= h->in + sizeof h->in, "wants past its buffer");
        size_t k = want < chunk ? want : chunk;
        if (k > n - used)
            k = n - used;
        memcpy(buf, p + used, k);
        used += k;
        int st = mp__hs_received(h, key, keylen, k);
        check(valid_state(st) && st == h->state, "bad state");
    }
    return used;
}

static const unsigned char KEY[] = "fuzz key";

static void server_fed_anything(struct in *in)
{
    struct mp__hs h;
    unsigned char random[MP__HS_RANDOM];
    for (size_t i = 0; i < sizeof random; i++)
        random[i] = take(in);
    int form = take(in) & 1 ? MP_AUTH_MD5 : MP_AUTH_SHA256;
    size_t chunk = 1 + take(in) % 64;
    mp__hs_server_start(&h, form, random);
    check(!mp__hs_heard(&h), "heard before a byte came");
    unsigned char out[MP__FRAME_MAX + MP__HS_MAXLEN];
    size_t total = 0;
    while (in->n) {
        size_t n = drain(&h, out, sizeof out, chunk);
        total += n;
        if (h.state == MP__HS_FAILED || h.state == MP__HS_DONE)
            break;
        size_t used = feed(&h, KEY, sizeof KEY - 1, in->p, in->n, chunk);
        in->p += used;
        in->n -= used;
        if (!used && !mp__hs_output(&h, &(const unsigned char *){NULL}))
            break;
    }
    check(h.state != MP__HS_DONE, "proved the key without it");
    check(total < 4096, "unbounded output");
}

static void client_answers_anything(struct in *in)
{
    unsigned char resp[MP__HS_RESPONSE_MAX];
    size_t klen = take(in) % 80; /* keys longer than a block are hashed first */
    unsigned char key[80];
    for (size_t i = 0; i < klen; i++)
        key[i] = take(in);
    /* The rest is the challenge, in an exact-size copy so ASan sees any
     * over-read. */
    unsigned char *c = malloc(in->n ? in->n : 1);
    if (!c)
        return;
    memcpy(c, in->p, in->n);
    int rn = mp__hs_respond(key, klen, c, in->n, resp);
    check(rn == MP_EAUTH || (rn > 0 && (size_t)rn <= sizeof resp), "bad response length");
    if (rn > 0) {
        check(in->n >= MP__HS_PREFIX + 20, "answered a short challenge");
        const unsigned char *m = c + MP__HS_PREFIX;
        size_t mlen = in->n - MP__HS_PREFIX;
        check(mp__hs_verify(key, klen, m, mlen, resp, (size_t)rn), "own answer refused");
        key[klen] = 'x';
        check(!mp__hs_verify(key, klen + 1, m, mlen, resp, (size_t)rn), "other key accepted");
    }
    (void)mp__hs_welcomed(c, in->n);
    free(c);
}

/* Read one whole frame out of buf[0, n): payload pointer and length. */
static const unsigned char *frame_payload(const unsigned char *buf, size_t n, size_t *len)
{
    uint64_t l;
    size_t hl;
    check(mp__frame_decode(buf, n, &l, &hl) == 1 && hl + l == n, "output is not one frame");
    *len = (size_t)l;
    return buf + hl;
}

static void honest_exchange(struct in *in)
{
    unsigned char key[64];
    size_t klen = take(in) % sizeof key;
    for (size_t i = 0; i < klen; i++)
        key[i] = take(in);
    unsigned char srandom[MP__HS_RANDOM], crandom[MP__HS_RANDOM];
    for (size_t i = 0; i < MP__HS_RANDOM; i++)
        srandom[i] = take(in), crandom[i] = take(in);
    uint8_t flags = take(in);
    int sform = flags & 1 ? MP_AUTH_MD5 : MP_AUTH_SHA256;
    int cform = flags & 2 ? MP_AUTH_MD5 : MP_AUTH_SHA256;
    bool wrong = flags & 4; /* the client holds another key */
    size_t chunk = 1 + take(in) % 64;
    unsigned char ckey[65];
    memcpy(ckey, key, klen);
    size_t cklen = klen;
    if (wrong)
        ckey[cklen++] = 'x';

    struct mp__hs h;
    mp__hs_server_start(&h, sform, srandom);
    unsigned char buf[MP__FRAME_MAX + MP__HS_MAXLEN], msg[MP__FRAME_MAX + MP__HS_MAXLEN];
    size_t len, n;

    /* server -> challenge; client -> response */
    n = drain(&h, buf, sizeof buf, chunk);
    const unsigned char *ch = frame_payload(buf, n, &len);
    unsigned char resp[MP__HS_RESPONSE_MAX];
    int rn = mp__hs_respond(ckey, cklen, ch, len, resp);
    check(rn > 0, "our own challenge is refused");
    size_t hl = mp__frame_encode((uint64_t)rn, msg);
    memcpy(msg + hl, resp, (size_t)rn);
    check(feed(&h, key, klen, msg, hl + (size_t)rn, chunk) == hl + (size_t)rn, "response left");
    check(mp__hs_heard(&h), "not heard after a response");

    /* server -> verdict */
    n = drain(&h, buf, sizeof buf, chunk);
    const unsigned char *v = frame_payload(buf, n, &len);
    if (wrong) {
        check(!mp__hs_welcomed(v, len) && h.state == MP__HS_FAILED, "a wrong key welcomed");
        return;
    }
    check(mp__hs_welcomed(v, len) && h.state == MP__HS_READ_CHALLENGE, "the right key refused");
    if (flags & 8) {
        /* The second half from the input: the machine asks only for what
         * a message needs, and answers only a challenge it accepts. */
        size_t used = feed(&h, key, klen, in->p, in->n, chunk);
        in->p += used;
        in->n -= used;
        n = drain(&h, buf, sizeof buf, chunk);
        if (n) {
            const unsigned char *r = frame_payload(buf, n, &len);
            check(len <= MP__HS_RESPONSE_MAX, "a long response");
            (void)r;
        }
        used = feed(&h, key, klen, in->p, in->n, chunk);
        check(valid_state(h.state), "bad state");
        return;
    }

    /* client -> challenge; server -> response; client -> verdict */
    unsigned char cc[MP__HS_CHALLENGE_MAX];
    size_t cn = mp__hs_challenge(cform, crandom, cc);
    hl = mp__frame_encode(cn, msg);
    memcpy(msg + hl, cc, cn);
    check(feed(&h, key, klen, msg, hl + cn, chunk) == hl + cn, "challenge left");
    n = drain(&h, buf, sizeof buf, chunk);
    const unsigned char *sr = frame_payload(buf, n, &len);
    bool ok = mp__hs_verify(key, klen, cc + MP__HS_PREFIX, cn - MP__HS_PREFIX, sr, len);
    check(ok, "the server's answer is refused");
    hl = mp__frame_encode(MP__HS_VERDICT_LEN, msg);
    memcpy(msg + hl, mp__hs_verdict(true), MP__HS_VERDICT_LEN);
    check(feed(&h, key, klen, msg, hl + MP__HS_VERDICT_LEN, chunk) == hl + MP__HS_VERDICT_LEN,
          "verdict left");
    check(h.state == MP__HS_DONE, "an honest exchange did not end");
    unsigned char *unused;
    check(mp__hs_want(&h, &unused) == 0, "wants bytes after the end");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = {data, size};
    switch (take(&in) % 3) {
    case 0:
        server_fed_anything(&in);
        break;
    case 1:
        client_answers_anything(&in);
        break;
    default:
        honest_exchange(&in);
        break;
    }
    return 0;
}
