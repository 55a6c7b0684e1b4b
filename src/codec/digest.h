/*
 * digest - MD5 (RFC 1321), SHA-256 (FIPS 180-4), HMAC (RFC 2104) over
 * either, and a constant-time comparison: what CPython's multiprocessing
 * authkey handshake needs (hmac.new(authkey, message, 'md5') in 3.11, the
 * "{sha256}" form in 3.12+), with no crypto library. Pure: no I/O, no
 * allocation. Private: never installed.
 *
 * MD5 is broken for collision resistance; CPython still uses HMAC-MD5 for the
 * 3.11 handshake, where HMAC's security does not rest on collisions.
 */
#ifndef MPIPC_DIGEST_H
#define MPIPC_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP__MD5_SIZE        16
#define MP__SHA256_SIZE     32
#define MP__DIGEST_MAX_SIZE 32
#define MP__DIGEST_BLOCK    64 /* both hash 64-byte blocks */

typedef enum mp__digest_alg {
    MP__DIGEST_MD5 = 1,
    MP__DIGEST_SHA256 = 2,
} mp__digest_alg;

/* Streaming state of either hash. Plain memory: copy it to fork a stream. */
typedef struct mp__digest_ctx {
    mp__digest_alg alg;
    uint32_t h[8];
    uint64_t total; /* bytes hashed so far */
    unsigned char buf[MP__DIGEST_BLOCK];
    size_t fill;
} mp__digest_ctx;

/* The digest size of alg in bytes (16 or 32), or 0 for an unknown alg. */
size_t mp__digest_size(mp__digest_alg alg);

/*
 * The algorithm Python names name (len bytes, not NUL-terminated): "md5" or
 * "sha256", as in hashlib and the "{sha256}" handshake prefix. Returns the
 * alg, or -EINVAL for any other name.
 */
int mp__digest_from_name(const char *name, size_t len);

/* Start, feed, finish a hash. init returns 0 or -EINVAL for an unknown alg;
 * final writes mp__digest_size(alg) bytes to out. */
int mp__digest_init(mp__digest_ctx *c, mp__digest_alg alg);
void mp__digest_update(mp__digest_ctx *c, const void *p, size_t n);
void mp__digest_final(mp__digest_ctx *c, unsigned char *out);

/* One-shot hashes. */
void mp__md5(const void *p, size_t n, unsigned char out[MP__MD5_SIZE]);
void mp__sha256(const void *p, size_t n, unsigned char out[MP__SHA256_SIZE]);

/* HMAC in steps: the key may be any length (longer than a block is hashed
 * first, RFC 2104). */
typedef struct mp__hmac_ctx {
    mp__digest_ctx inner, outer;
} mp__hmac_ctx;

int mp__hmac_init(mp__hmac_ctx *c, mp__digest_alg alg, const void *key, size_t keylen);
void mp__hmac_update(mp__hmac_ctx *c, const void *p, size_t n);
void mp__hmac_final(mp__hmac_ctx *c, unsigned char *out);

/*
 * mp__hmac - Python's hmac.new(key, msg, alg).digest().
 *
 * out receives mp__digest_size(alg) bytes. Returns that size, or -EINVAL for
 * an unknown alg or NULL pointers with non-zero lengths.
 */
int mp__hmac(mp__digest_alg alg, const void *key, size_t keylen, const void *msg, size_t msglen,
             unsigned char *out);

/*
 * mp__digest_equal - Python's hmac.compare_digest for two n-byte strings:
 * true when equal. Its running time depends only on n, never on where the
 * strings differ, so a peer cannot learn a digest byte by byte from timing.
 */
bool mp__digest_equal(const void *a, const void *b, size_t n);

#endif /* MPIPC_DIGEST_H */
