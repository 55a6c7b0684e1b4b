/*
 * frame - the length header of a Connection message, written and read:
 * 4 bytes big-endian, or -1 and 8 bytes for 2 GiB and more (frame.h,
 * docs/wire.md). No statics.
 */
#include "codec/frame.h"
#include "core/internal.h"

#include <stdint.h>

size_t mp__frame_encode(uint64_t len, unsigned char out[MP__FRAME_MAX])
{
    if (len <= 0x7fffffffu) {
        mp__frame_put_short(out, (uint32_t)len);
        return MP__FRAME_SHORT;
    }
    out[0] = out[1] = out[2] = out[3] = 0xff; /* int32 -1 */
    for (int i = 0; i < 8; i++)
        out[4 + i] = (unsigned char)(len >> (56 - 8 * i));
    return MP__FRAME_LONG;
}

int mp__frame_decode(const unsigned char *p, size_t avail, uint64_t *payload_len,
                     size_t *header_len)
{
    if (avail < MP__FRAME_SHORT) {
        *header_len = MP__FRAME_SHORT;
        return 0;
    }
    uint32_t word = mp__frame_word(p);
    if (word <= 0x7fffffffu) {
        *payload_len = word;
        *header_len = MP__FRAME_SHORT;
        return 1;
    }
    if (word != 0xffffffffu)
        return MP_EPROTO; /* negative, and not the long-form marker */
    *header_len = MP__FRAME_LONG;
    if (avail < MP__FRAME_LONG)
        return 0;
    uint64_t len = 0;
    for (int i = 0; i < 8; i++)
        len = len << 8 | p[4 + i];
    if (len > (uint64_t)INT64_MAX || len > (uint64_t)SIZE_MAX / 2)
        return MP_EPROTO; /* larger than any buffer this process could hold */
    *payload_len = len;
    return 1;
}
