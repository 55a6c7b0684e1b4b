/*
 * obj_str - file names as Python hands them over: os.fsencode and
 * os.fsdecode (UTF-8 with "surrogateescape", Python's file system encoding on
 * Linux) between a str and the bytes a C program opens. One of the obj family
 * (objimpl.h); statics start str_.
 */
#include "codec/objimpl.h"
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The length of the strict UTF-8 sequence at p[0..n) (1 to 4), or 0 when no
 * valid sequence starts there (the byte is then escaped). */
static size_t str_utf8_seq(const unsigned char *p, size_t n)
{
    for (size_t k = 1; k <= 4 && k <= n; k++)
        if (mp__utf8_valid(p, k))
            return k;
    return 0;
}

MP_API int mp_obj_str_fsencode(const mp_obj *o, char **out, size_t *len)
{
    if (out)
        *out = NULL;
    if (!o || !out || !len)
        return -EINVAL;
    if (o->type != MP_TYPE_STR)
        return MP_ETYPE;
    const unsigned char *s = (const unsigned char *)o->u.s.data;
    size_t n = o->u.s.len;
    /* A lone surrogate is ED A0..BF xx: U+DC80..U+DCFF is ED B2..B3 xx. */
    for (size_t i = 0; i + 2 < n; i++)
        if (s[i] == 0xed && s[i + 1] >= 0xa0 && (s[i + 1] < 0xb2 || s[i + 1] > 0xb3))
            return MP_EVALUE; /* UnicodeEncodeError: surrogates not allowed */
    char *b = malloc(n + 1);  /* escapes only shrink */
    if (!b)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0xed && s[i + 1] >= 0xa0) {
            /* U+DC80 + x, in a str's 3-byte form: the byte 0x80 + x. */
            b[k++] = (char)(0x80 | (s[i + 1] & 0x01) << 6 | (s[i + 2] & 0x3f));
            i += 3;
        } else {
            b[k++] = (char)s[i++];
        }
    }
    b[k] = '\0';
    *out = b;
    *len = k;
    return 0;
}

MP_API mp_obj *mp_obj_str_fsdecode(const void *p, size_t len)
{
    if (!p && len)
        return NULL;
    const unsigned char *s = p;
    /* An escaped byte takes 3 bytes instead of 1. */
    size_t cap;
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    cap = 3 * len + 1;
    unsigned char *b = malloc(cap);
    if (!b)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t q = str_utf8_seq(s + i, len - i);
        if (q) {
            memcpy(b + k, s + i, q);
            k += q;
            i += q;
            continue;
        }
        /* Byte x >= 0x80 that starts no valid sequence: U+DC00 + x, which
         * is ED B2..B3 80..BF. (Bytes below 0x80 always decode.) */
        unsigned x = s[i++];
        b[k++] = 0xed;
        b[k++] = (unsigned char)(0xb0 | x >> 6);
        b[k++] = (unsigned char)(0x80 | (x & 0x3f));
    }
    mp_obj *o = mp__obj_strbytes(MP_TYPE_STR, b, k);
    free(b);
    return o;
}
