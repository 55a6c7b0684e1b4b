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

#include <stddef.h>
#include <stdint.h>

#define MP__FRAME_SHORT 4u
#define MP__FRAME_LONG 12u
#define MP__FRAME_MAX MP__FRAME_LONG

/* Write the header for a payload of len bytes into out; returns its length
 * (MP__FRAME_SHORT or MP__FRAME_LONG). */
size_t mp__frame_encode(uint64_t len, unsigned char out[MP__FRAME_MAX]);

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

#endif /* MPIPC_FRAME_H */
