/*
 * libFuzzer harness for the message length header parser (src/codec/frame.c).
 *
 * For any bytes, mp__frame_decode reads at most what it was given and keeps
 * its contract: complete (1) with a header of 4 or 12 bytes that fits and a
 * length that re-encodes to a header decoding the same, incomplete (0) with
 * a header length larger than what is available, or MP_EPROTO. Feeding the
 * same bytes one at a time never changes the verdict once it is complete.
 */
#include "codec/frame.h"

#include <mpipc/error.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_frame: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Hand the parser an exact-size copy so ASan sees any over-read. */
    unsigned char *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    memcpy(p, data, size);
    uint64_t len = 0;
    size_t hl = 0;
    int rc = mp__frame_decode(p, size, &len, &hl);
    if (rc == 1) {
        check(hl == MP__FRAME_SHORT || hl == MP__FRAME_LONG, "odd header length");
        check(hl <= size, "header longer than the input");
        unsigned char h[MP__FRAME_MAX];
        size_t n = mp__frame_encode(len, h);
        uint64_t len2 = 0;
        size_t hl2 = 0;
        check(mp__frame_decode(h, n, &len2, &hl2) == 1 && len2 == len && hl2 == n,
              "re-encoded header decodes differently");
        /* every prefix is incomplete; the whole header is complete again */
        for (size_t k = 0; k < hl; k++) {
            size_t need = 0;
            int r = mp__frame_decode(p, k, &len2, &need);
            check(r == 0 && need > k, "a prefix of a complete header was not incomplete");
        }
    } else if (rc == 0) {
        check(hl > size && hl <= MP__FRAME_MAX, "incomplete but the header would fit");
    } else {
        check(rc == MP_EPROTO, "unexpected status");
    }
    free(p);
    return 0;
}
