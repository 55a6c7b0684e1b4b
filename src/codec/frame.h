/*
 * frame - the message length header, byte for byte CPython's
 * multiprocessing.connection framing (docs/wire.md). Pure: no I/O, no
 * allocation, so the fuzzer and the unit tests can hit it directly.
 *
 *   length < 2^31            4-byte big-endian signed length, then payload
 *   length >= 2^31           int32 -1, 8-byte big-endian unsigned length, payload
 *
 * CPython 3.8+ switches to the long form when the payload is larger than
 * 0x7fffffff bytes; a receiver accepts the long form for any size.
 */
#ifndef MPIPC_FRAME_H
#define MPIPC_FRAME_H

#include <mpipc/error.h>

#include <stddef.h>
#include <stdint.h>

#define MP__FRAME_SHORT 4u
#define MP__FRAME_LONG  12u
#define MP__FRAME_MAX   MP__FRAME_LONG

/* Write the header for a payload of len bytes into out; returns its length
 * (MP__FRAME_SHORT or MP__FRAME_LONG). */
size_t mp__frame_encode(uint64_t len, unsigned char out[MP__FRAME_MAX]);

/* Write the short header of a payload of len <= 0x7fffffff bytes: for
 * writers that reserve the header's 4 bytes and fill them in once the
 * payload is built (their limits keep them below 2^31). */
static inline void mp__frame_put_short(unsigned char out[MP__FRAME_SHORT], uint32_t len)
{
    out[0] = (unsigned char)(len >> 24);
    out[1] = (unsigned char)(len >> 16);
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)len;
}

/* The first 4 bytes of a header as the big-endian word they are: a short
 * form's length when <= 0x7fffffff (0 for an empty message). */
static inline uint32_t mp__frame_word(const unsigned char p[MP__FRAME_SHORT])
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * Parse a header from the first avail bytes of p.
 *   returns 1   complete: *payload_len and *header_len are set;
 *   returns 0   more bytes are needed: *header_len is how many the header
 *               needs in all (4, or 12 once the long-form marker is seen);
 *   MP_EPROTO   a negative length other than -1, or a long-form length that
 *               does not fit in ssize_t.
 */
int mp__frame_decode(const unsigned char *p, size_t avail, uint64_t *payload_len,
                     size_t *header_len);

/*
 * Whether the first avail bytes of p hold a whole frame, header and payload:
 *   returns 1   yes;   0   not yet;   MP_EPROTO   the header is corrupt.
 * Inline for the short form, because a connection asks after every read and
 * every message it delivers (to tell poll() whether a message is buffered).
 */
static inline int mp__frame_whole(const unsigned char *p, size_t avail)
{
    if (avail < MP__FRAME_SHORT)
        return 0;
    uint32_t word = mp__frame_word(p);
    if (word <= 0x7fffffffu)
        return word <= avail - MP__FRAME_SHORT;
    uint64_t len;
    size_t hdr;
    int rc = mp__frame_decode(p, avail, &len, &hdr);
    return rc == 1 ? len <= avail - hdr : rc;
}

#endif /* MPIPC_FRAME_H */
