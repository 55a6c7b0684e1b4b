/*
 * digest - MD5, SHA-256 and HMAC over them (digest.h), for the authkey
 * handshake. Straight from RFC 1321 and FIPS 180-4. Statics start with
 * digest_.
 */
#include "codec/digest.h"
#include "core/internal.h"

#include <errno.h>
#include <string.h>

#define ROTL32(x, n) ((uint32_t)(((x) << (n)) | ((x) >> (32 - (n)))))
#define ROTR32(x, n) ((uint32_t)(((x) >> (n)) | ((x) << (32 - (n)))))

/* ---- MD5 ---------------------------------------------------------------- */

static const uint32_t md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

static const unsigned char md5_r[64] = {
    7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 5,  9,  14, 20, 5,  9,
    14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
    4,  11, 16, 23, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21,
};

static void digest_md5_block(uint32_t h[4], const unsigned char *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) & 15;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) & 15;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) & 15;
        }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + ROTL32(a + f + md5_k[i] + m[g], md5_r[i]);
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

/* ---- SHA-256 ------------------------------------------------------------ */

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static void digest_sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR32(w[i - 15], 7) ^ ROTR32(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR32(w[i - 2], 17) ^ ROTR32(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = ROTR32(e, 6) ^ ROTR32(e, 11) ^ ROTR32(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = hh + S1 + ch + sha256_k[i] + w[i];
        uint32_t S0 = ROTR32(a, 2) ^ ROTR32(a, 13) ^ ROTR32(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
}

/* ---- Streaming ---------------------------------------------------------- */

size_t mp__digest_size(mp__digest_alg alg)
{
    switch (alg) {
    case MP__DIGEST_MD5:
        return MP__MD5_SIZE;
    case MP__DIGEST_SHA256:
        return MP__SHA256_SIZE;
    default:
        return 0;
    }
}

int mp__digest_from_name(const char *name, size_t len)
{
    if (!name)
        return -EINVAL;
    if (len == 3 && memcmp(name, "md5", 3) == 0)
        return MP__DIGEST_MD5;
    if (len == 6 && memcmp(name, "sha256", 6) == 0)
        return MP__DIGEST_SHA256;
    return -EINVAL;
}

int mp__digest_init(mp__digest_ctx *c, mp__digest_alg alg)
{
    static const uint32_t md5_iv[4] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    static const uint32_t sha256_iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    if (!c || !mp__digest_size(alg))
        return -EINVAL;
    memset(c, 0, sizeof *c);
    c->alg = alg;
    if (alg == MP__DIGEST_MD5)
        memcpy(c->h, md5_iv, sizeof md5_iv);
    else
        memcpy(c->h, sha256_iv, sizeof sha256_iv);
    return 0;
}

static void digest_block(mp__digest_ctx *c, const unsigned char *p)
{
    if (c->alg == MP__DIGEST_MD5)
        digest_md5_block(c->h, p);
    else
        digest_sha256_block(c->h, p);
}

void mp__digest_update(mp__digest_ctx *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    if (!n)
        return; /* data may be NULL then */
    c->total += n;
    if (c->fill) {
        size_t take = MP__DIGEST_BLOCK - c->fill;
        if (take > n)
            take = n;
        memcpy(c->buf + c->fill, p, take);
        c->fill += take;
        p += take;
        n -= take;
        if (c->fill < MP__DIGEST_BLOCK)
            return;
        digest_block(c, c->buf);
        c->fill = 0;
    }
    for (; n >= MP__DIGEST_BLOCK; p += MP__DIGEST_BLOCK, n -= MP__DIGEST_BLOCK)
        digest_block(c, p);
    if (n) {
        memcpy(c->buf, p, n);
        c->fill = n;
    }
}

void mp__digest_final(mp__digest_ctx *c, unsigned char *out)
{
    /* Padding: 0x80, zeros, then the bit length in 8 bytes (little-endian for
     * MD5, big-endian for SHA-256) ending a block. */
    uint64_t bits = c->total * 8;
    unsigned char pad[MP__DIGEST_BLOCK + 8];
    size_t padlen = (c->fill < 56 ? 56 : 120) - c->fill;
    memset(pad, 0, sizeof pad);
    pad[0] = 0x80;
    for (int i = 0; i < 8; i++)
        pad[padlen + (size_t)i] = c->alg == MP__DIGEST_MD5 ? (unsigned char)(bits >> (8 * i))
                                                           : (unsigned char)(bits >> (56 - 8 * i));
    uint64_t total = c->total;
    mp__digest_update(c, pad, padlen + 8);
    c->total = total;
    if (c->alg == MP__DIGEST_MD5) {
        for (int i = 0; i < 4; i++)
            for (int k = 0; k < 4; k++)
                out[4 * i + k] = (unsigned char)(c->h[i] >> (8 * k));
    } else {
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < 4; k++)
                out[4 * i + k] = (unsigned char)(c->h[i] >> (24 - 8 * k));
    }
}

void mp__md5(const void *p, size_t n, unsigned char out[MP__MD5_SIZE])
{
    mp__digest_ctx c;
    mp__digest_init(&c, MP__DIGEST_MD5);
    mp__digest_update(&c, p, n);
    mp__digest_final(&c, out);
}

void mp__sha256(const void *p, size_t n, unsigned char out[MP__SHA256_SIZE])
{
    mp__digest_ctx c;
    mp__digest_init(&c, MP__DIGEST_SHA256);
    mp__digest_update(&c, p, n);
    mp__digest_final(&c, out);
}

/* ---- HMAC (RFC 2104) ---------------------------------------------------- */

int mp__hmac_init(mp__hmac_ctx *c, mp__digest_alg alg, const void *key, size_t keylen)
{
    if (!c || !mp__digest_size(alg) || (!key && keylen))
        return -EINVAL;
    unsigned char k[MP__DIGEST_BLOCK];
    memset(k, 0, sizeof k);
    if (keylen > MP__DIGEST_BLOCK) {
        mp__digest_ctx h;
        mp__digest_init(&h, alg);
        mp__digest_update(&h, key, keylen);
        mp__digest_final(&h, k);
    } else if (keylen) {
        memcpy(k, key, keylen);
    }
    unsigned char pad[MP__DIGEST_BLOCK];
    for (int i = 0; i < MP__DIGEST_BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    mp__digest_init(&c->inner, alg);
    mp__digest_update(&c->inner, pad, sizeof pad);
    for (int i = 0; i < MP__DIGEST_BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    mp__digest_init(&c->outer, alg);
    mp__digest_update(&c->outer, pad, sizeof pad);
    /* The key, and the pads derived from it, are secrets. */
    mp__wipe(k, sizeof k);
    mp__wipe(pad, sizeof pad);
    return 0;
}

void mp__hmac_update(mp__hmac_ctx *c, const void *p, size_t n)
{
    mp__digest_update(&c->inner, p, n);
}

void mp__hmac_final(mp__hmac_ctx *c, unsigned char *out)
{
    unsigned char ih[MP__DIGEST_MAX_SIZE];
    mp__digest_final(&c->inner, ih);
    mp__digest_update(&c->outer, ih, mp__digest_size(c->inner.alg));
    mp__digest_final(&c->outer, out);
}

int mp__hmac(mp__digest_alg alg, const void *key, size_t keylen, const void *msg, size_t msglen,
             unsigned char *out)
{
    if (!out || (!msg && msglen))
        return -EINVAL;
    mp__hmac_ctx c;
    int rc = mp__hmac_init(&c, alg, key, keylen);
    if (rc < 0)
        return rc;
    mp__hmac_update(&c, msg, msglen);
    mp__hmac_final(&c, out);
    return (int)mp__digest_size(alg);
}

bool mp__digest_equal(const void *a, const void *b, size_t n)
{
    /* Accumulate every difference; no early exit. volatile keeps the
     * compiler from turning the loop into a short-circuiting memcmp. */
    const volatile unsigned char *x = a, *y = b;
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= (unsigned char)(x[i] ^ y[i]);
    return acc == 0;
}
