/*
 * handshake - the authkey handshake of CPython's multiprocessing.connection
 * (deliver_challenge / answer_challenge, the 3.11 HMAC-MD5 form and the
 * 3.12+ "{sha256}" form), as pure code: no I/O, no allocation, no clock and
 * no randomness of its own. The one home of the handshake's messages:
 * listener.c drives them over a blocking mp_conn, the manager's server
 * drives the server-side machine below from its event loop, and the fuzzer
 * feeds both arbitrary bytes. Private: never installed.
 *
 * The exchange (listener.h has the user's view), server first:
 *   server -> client   "#CHALLENGE#" + message     (message: see below)
 *   client -> server   response = MAC(authkey, message)
 *   server -> client   "#WELCOME#" or "#FAILURE#"
 * then the same three steps with the roles swapped. Every message is one
 * frame (frame.h) of at most 256 bytes, as CPython's recv_bytes(256).
 */
#ifndef MPIPC_HANDSHAKE_H
#define MPIPC_HANDSHAKE_H

#include "codec/frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP__HS_MAXLEN        256u /* recv_bytes(256): a longer message fails */
#define MP__HS_PREFIX        11u  /* strlen("#CHALLENGE#") */
#define MP__HS_RANDOM        40u  /* random bytes a challenge takes (3.12 uses 40) */
#define MP__HS_MESSAGE_MAX   (8u + MP__HS_RANDOM)                 /* "{sha256}" + 40 */
#define MP__HS_CHALLENGE_MAX (MP__HS_PREFIX + MP__HS_MESSAGE_MAX) /* a whole challenge */
#define MP__HS_RESPONSE_MAX  (2u + 8u + 32u) /* "{name}" + the largest MAC we make */
#define MP__HS_VERDICT_LEN   9u              /* "#WELCOME#" and "#FAILURE#" alike */

/*
 * mp__hs_challenge - the challenge a listener sends (CPython's
 * deliver_challenge): "#CHALLENGE#" + message, where message is "{sha256}"
 * + 40 random bytes (form MP_AUTH_SHA256) or 20 random bytes (MP_AUTH_MD5).
 * random: MP__HS_RANDOM unpredictable bytes (the caller's source).
 * Writes the payload (no frame header) to out and returns its length; the
 * message the response must MAC is out + MP__HS_PREFIX, the rest of it.
 */
size_t mp__hs_challenge(int form, const unsigned char random[MP__HS_RANDOM],
                        unsigned char out[MP__HS_CHALLENGE_MAX]);

/*
 * mp__hs_verify - CPython's _verify_challenge: does response (the peer's
 * answer to our challenge message) prove the key? Accepts a raw 16-byte
 * HMAC-MD5 (3.11) and "{md5}" / "{sha256}" + MAC (3.12+); the other digests
 * 3.12 allows are refused (we cannot compute them). Constant time in the
 * MAC's bytes.
 */
bool mp__hs_verify(const void *key, size_t keylen, const unsigned char *message, size_t mlen,
                   const unsigned char *response, size_t rlen);

/* The verdict a listener sends after mp__hs_verify: "#WELCOME#" or
 * "#FAILURE#", MP__HS_VERDICT_LEN bytes, static. */
const unsigned char *mp__hs_verdict(bool ok);

/* Is v (n bytes, a verdict received) "#WELCOME#"? */
bool mp__hs_welcomed(const unsigned char *v, size_t n);

/*
 * mp__hs_respond - CPython's answer_challenge and _create_response: check
 * that challenge (the whole payload received, n bytes) is "#CHALLENGE#" and
 * a message of at least 20 bytes, and write the response to out: a raw
 * HMAC-MD5 for a 3.11 (16- or 20-byte) message, "{name}" + HMAC-name over the
 * whole message for a "{md5}" or "{sha256}" one.
 * Returns the response length (> 0), or MP_EAUTH for anything else
 * (including a digest 3.12 allows that this library does not implement).
 */
int mp__hs_respond(const void *key, size_t keylen, const unsigned char *challenge, size_t n,
                   unsigned char out[MP__HS_RESPONSE_MAX]);

/*
 * mp__hs_random - challenge bytes from a secret seed: HMAC-SHA256(seed,
 * counter || i) for the blocks of out, so that a server makes a fresh,
 * unpredictable challenge per connection without a system call (or a
 * descriptor, which it may be out of). The caller draws seed once from the
 * system's random source and never repeats a counter with it.
 */
void mp__hs_random(const unsigned char seed[32], uint64_t counter,
                   unsigned char out[MP__HS_RANDOM]);

/* ---- the server's side as a state machine --------------------------------- */

/*
 * The listener's half of the exchange (deliver, then answer) with its own
 * framing, for a caller that moves the bytes without blocking. The machine
 * asks for bytes by size (mp__hs_want: never more than the message being
 * read still needs, so bytes the peer sends after its last handshake
 * message stay in the socket for whoever reads next) and for bytes to send
 * (mp__hs_output). A state, the challenge it sent, and buffers for one
 * message each way: some 400 bytes, nothing allocated.
 */
enum mp__hs_state {
    MP__HS_SEND_CHALLENGE = 1, /* our challenge is going out */
    MP__HS_READ_RESPONSE,      /* reading the client's answer to it */
    MP__HS_SEND_VERDICT,       /* "#WELCOME#" (or "#FAILURE#") is going out */
    MP__HS_READ_CHALLENGE,     /* reading the client's challenge */
    MP__HS_SEND_RESPONSE,      /* our answer to it is going out */
    MP__HS_READ_VERDICT,       /* reading the client's verdict */
    MP__HS_DONE,               /* both sides proved the key */
    MP__HS_FAILED,             /* MP_EAUTH: a wrong key or bytes out of protocol */
};

struct mp__hs {
    uint8_t state; /* enum mp__hs_state */
    bool welcome;  /* the verdict going out is "#WELCOME#" */
    uint8_t mlen;  /* message[0, mlen): the challenge message we sent */
    uint8_t out_pos, out_len;
    uint16_t in_len; /* in[0, in_len): the message being read, header first */
    unsigned char message[MP__HS_MESSAGE_MAX];
    unsigned char out[MP__FRAME_SHORT + MP__HS_CHALLENGE_MAX];
    unsigned char in[MP__FRAME_MAX + MP__HS_MAXLEN];
};

/* Start: queue the challenge (as mp__hs_challenge). */
void mp__hs_server_start(struct mp__hs *h, int form, const unsigned char random[MP__HS_RANDOM]);

/* Bytes to send now: *p receives where they are; 0 when the machine is
 * not sending. */
size_t mp__hs_output(const struct mp__hs *h, const unsigned char **p);

/* n (<= what mp__hs_output returned) of those bytes were sent. Once all are,
 * the machine moves on to reading (or to MP__HS_FAILED after a
 * "#FAILURE#"). */
void mp__hs_sent(struct mp__hs *h, size_t n);

/* Bytes to read now: *buf receives where to put them; at most the rest of
 * the current message (1 or more); 0 when the machine is not reading. */
size_t mp__hs_want(struct mp__hs *h, unsigned char **buf);

/*
 * n (1 <= n <= what mp__hs_want returned) bytes were put where it said.
 * key: the authkey (needed to check and to answer). Returns the new state:
 * MP__HS_DONE, MP__HS_FAILED (a message over 256 bytes, a corrupt frame
 * header, a wrong MAC, a malformed challenge, a verdict other than
 * "#WELCOME#"), or one still in progress.
 */
int mp__hs_received(struct mp__hs *h, const void *key, size_t keylen, size_t n);

/* Has the client sent any byte yet? (For a deadline on the first bytes.) */
bool mp__hs_heard(const struct mp__hs *h);

#endif /* MPIPC_HANDSHAKE_H */
