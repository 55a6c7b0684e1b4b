/*
 * unpickle_text - the text fields of protocols 0 and 1 that the decoder
 * (unpickle.c) reads: decimal ints, floats as repr() writes them, and
 * raw-unicode-escape str. Pure functions of bytes, declared in pickle.h;
 * statics start with unpickle_.
 */
#include "codec/pickle.h"
#include "core/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Optional sign and decimal digits, within int64 (Python's int(line) for
 * what Python writes; other spellings are refused). */
int mp__pickle_parse_int(const unsigned char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (i == n)
        return MP_EPROTO;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return MP_EPROTO;
        unsigned d = s[i] - '0';
        if (v > (limit - d) / 10)
            return MP_EPROTO; /* beyond int64 */
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int unpickle_ascii_ieq(const unsigned char *s, size_t n, const char *word)
{
    size_t k = strlen(word);
    if (n != k)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != (unsigned char)word[i])
            return 0;
    }
    return 1;
}

/*
 * Python's float(text) for the forms repr() writes: [sign] digits [. digits]
 * [e [sign] digits], inf, infinity, nan. The text is rebuilt as
 * "<digits>e<exponent>" with no decimal point, so strtod's locale does not
 * matter and the result is correctly rounded.
 */
int mp__pickle_parse_float(const unsigned char *s, size_t n, double *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    if (unpickle_ascii_ieq(s + i, n - i, "inf") || unpickle_ascii_ieq(s + i, n - i, "infinity")) {
        *out = neg ? -HUGE_VAL : HUGE_VAL;
        return 0;
    }
    if (unpickle_ascii_ieq(s + i, n - i, "nan")) {
        *out = neg ? -NAN : NAN;
        return 0;
    }
    char *buf = malloc(n + 32);
    if (!buf)
        return -ENOMEM;
    size_t b = 0, ndigits = 0;
    long frac = 0, exp = 0;
    if (neg)
        buf[b++] = '-';
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, ndigits++)
        buf[b++] = (char)s[i];
    if (i < n && s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, ndigits++) {
            buf[b++] = (char)s[i];
            if (frac < 1000000000L)
                frac++;
        }
    }
    int rc = ndigits ? 0 : MP_EPROTO;
    if (rc == 0 && i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            eneg = s[i++] == '-';
        if (i == n)
            rc = MP_EPROTO;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (exp < 1000000000L)
                exp = exp * 10 + (s[i] - '0');
        if (eneg)
            exp = -exp;
    }
    if (i != n)
        rc = MP_EPROTO;
    if (rc == 0) {
        snprintf(buf + b, 32, "e%ld", exp - frac);
        *out = strtod(buf, NULL);
    }
    free(buf);
    return rc;
}

static int unpickle_hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/* Append code point cp as UTF-8 at out: the bytes written (1 to 4). */
static size_t unpickle_put_utf8(unsigned char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

int mp__pickle_raw_unicode(const unsigned char *s, size_t n, unsigned char *out, size_t *len)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = s[i++];
        if (cp == '\\' && i < n && (s[i] == 'u' || s[i] == 'U')) {
            int digits = s[i] == 'u' ? 4 : 8;
            i++;
            if (n - i < (size_t)digits)
                return MP_EPROTO;
            cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = unpickle_hexval(s[i++]);
                if (h < 0)
                    return MP_EPROTO;
                cp = cp << 4 | (uint32_t)h;
            }
            /* A lone surrogate (\udcff: protocol 0's spelling of a str
             * from os.walk) stays one, in its 3-byte form (obj.h). */
            if (cp > 0x10ffff)
                return MP_EPROTO;
        } else if (cp == '\\' && i < n) {
            /* A backslash pair: both stay, and the second cannot start an
             * escape (CPython's decoder consumes them together). */
            out[o++] = '\\';
            cp = s[i++];
        }
        o += unpickle_put_utf8(out + o, cp);
    }
    *len = o;
    return 0;
}
