/*
 * obj_int - Python's ints beyond int64 (obj.h): their canonical bytes, the
 * decimal text both ways within Python's 4300-digit limit, int.from_bytes and
 * int.to_bytes, and the exact meeting of big ints with floats that equality
 * and hashing need. One of the obj family (objimpl.h); statics start int_.
 *
 * A big int is an MP_TYPE_INT node flagged MP__F_BIGINT whose u.s holds the
 * shortest little-endian two's complement bytes of its value - what
 * CPython's pickle writes after LONG1/LONG4 - and never fewer than 9 of
 * them: an int that fits int64 is always a plain node, so every int has one
 * form and equality is a comparison of bytes. The arithmetic here is
 * schoolbook on 32-bit limbs, quadratic, and only ever run on at most
 * MP_OBJ_INT_MAX_STR_DIGITS decimal digits.
 */
#include "codec/objimpl.h"
#include "core/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Canonical bytes ----------------------------------------------------- */

size_t mp__int_canonical_len(const unsigned char *p, size_t len)
{
    /* A top byte is redundant when it only repeats the sign of the byte
     * below it. */
    while (len > 0) {
        unsigned char top = p[len - 1];
        if (top != 0x00 && top != 0xff)
            break;
        if (len == 1) {
            if (top == 0x00)
                len = 0; /* zero is no bytes, as pickle's encode_long writes it */
            break;
        }
        if ((top == 0xff) != ((p[len - 2] & 0x80) != 0))
            break;
        len--;
    }
    return len;
}

int64_t mp__int_le_to_i64(const unsigned char *p, size_t len)
{
    MP__ASSERT(len <= 8);
    uint64_t v = len && (p[len - 1] & 0x80) ? UINT64_MAX : 0;
    for (size_t i = 0; i < len; i++) {
        v &= ~((uint64_t)0xff << (8 * i));
        v |= (uint64_t)p[i] << (8 * i);
    }
    return (int64_t)v;
}

mp_obj *mp__obj_bigint(const unsigned char *p, size_t len)
{
    MP__ASSERT(len > 8 && mp__int_canonical_len(p, len) == len);
    mp_obj *o = mp__obj_strbytes(MP_TYPE_INT, p, len);
    if (o)
        o->flags |= MP__F_BIGINT;
    return o;
}

mp_obj *mp__obj_int_from_le(const unsigned char *p, size_t len)
{
    len = mp__int_canonical_len(p, len);
    if (len <= 8)
        return mp_obj_int(mp__int_le_to_i64(p, len));
    return mp__obj_bigint(p, len);
}

/* The canonical bytes of any int or bool, in buf (8 bytes) for a small one. */
static void int_bytes(const mp_obj *o, unsigned char buf[8], const unsigned char **p, size_t *len)
{
    if (mp__obj_is_bigint(o)) {
        *p = (const unsigned char *)o->u.s.data;
        *len = o->u.s.len;
        return;
    }
    uint64_t v = o->type == MP_TYPE_BOOL ? (uint64_t)o->u.b : (uint64_t)o->u.i;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(v >> (8 * i));
    *p = buf;
    *len = mp__int_canonical_len(buf, 8);
}

static bool int_is_int(const mp_obj *o)
{
    return o && (o->type == MP_TYPE_INT || o->type == MP_TYPE_BOOL);
}

/* Negate n little-endian two's complement bytes in place. */
static void int_negate(unsigned char *p, size_t n)
{
    unsigned carry = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)(unsigned char)~p[i] + carry;
        p[i] = (unsigned char)v;
        carry = v >> 8;
    }
}

/* ---- Floats ---------------------------------------------------------------- */

bool mp__int_from_double_big(double f, unsigned char buf[MP__INT_DOUBLE_BYTES], size_t *len)
{
    if (!isfinite(f) || fabs(f) < 0x1p63)
        return false;
    /* |f| = m * 2^e with m in [0.5, 1): its 53-bit mantissa shifted left by
     * e - 53 >= 11 bits. Every such double is an integer. */
    int e;
    double m = frexp(fabs(f), &e);
    uint64_t mant = (uint64_t)ldexp(m, 53);
    unsigned shift = (unsigned)(e - 53);
    size_t n = (size_t)e / 8 + 2; /* the magnitude's bytes and a sign byte */
    MP__ASSERT(n <= MP__INT_DOUBLE_BYTES);
    memset(buf, 0, n);
    uint64_t lo = mant << (shift % 8); /* below 2^61: no bits lost */
    for (unsigned i = 0; i < 8 && shift / 8 + i < n; i++)
        buf[shift / 8 + i] = (unsigned char)(lo >> (8 * i));
    if (f < 0)
        int_negate(buf, n);
    *len = mp__int_canonical_len(buf, n);
    return true;
}

/* ---- Decimal text -------------------------------------------------------- */

/* 10^k for k = 0..9 */
static const uint32_t int_pow10[10] = {1,      10,      100,      1000,      10000,
                                       100000, 1000000, 10000000, 100000000, 1000000000};

int mp__int_from_digits(bool neg, const char *digits, size_t nd, unsigned char **le, size_t *len)
{
    *le = NULL;
    *len = 0;
    if (nd == 0)
        return MP_EVALUE;
    if (nd > MP_OBJ_INT_MAX_STR_DIGITS)
        return MP_EVALUE; /* Python's "Exceeds the limit (4300 digits)" */
    /* A limb holds more than 9 digits: nd / 9 + 1 limbs suffice. */
    size_t cap = nd / 9 + 1, used = 0;
    uint32_t *mag = malloc(cap * sizeof *mag);
    if (!mag)
        return -ENOMEM;
    size_t i = 0;
    while (i < nd) {
        size_t k = i == 0 && nd % 9 ? nd % 9 : 9;
        uint32_t chunk = 0;
        for (size_t j = 0; j < k; j++)
            chunk = chunk * 10 + (uint32_t)(digits[i + j] - '0');
        i += k;
        uint64_t carry = chunk;
        for (size_t l = 0; l < used; l++) {
            uint64_t t = (uint64_t)mag[l] * int_pow10[k] + carry;
            mag[l] = (uint32_t)t;
            carry = t >> 32;
        }
        if (carry) {
            MP__ASSERT(used < cap);
            mag[used++] = (uint32_t)carry;
        }
    }
    size_t n = used * 4 + 1;
    unsigned char *b = malloc(n);
    if (!b) {
        free(mag);
        return -ENOMEM;
    }
    for (size_t l = 0; l < used; l++)
        for (int j = 0; j < 4; j++)
            b[4 * l + (size_t)j] = (unsigned char)(mag[l] >> (8 * j));
    b[n - 1] = 0;
    free(mag);
    if (neg)
        int_negate(b, n);
    *le = b;
    *len = mp__int_canonical_len(b, n);
    return 0;
}

int mp__int_to_decimal(const mp_obj *o, char **out, size_t *outlen)
{
    *out = NULL;
    unsigned char small[8];
    const unsigned char *p;
    size_t len;
    int_bytes(o, small, &p, &len);
    bool neg = len && (p[len - 1] & 0x80);
    /* The magnitude as 32-bit limbs. */
    size_t nl = len / 4 + 1;
    uint32_t *mag = calloc(nl, sizeof *mag);
    if (!mag)
        return -ENOMEM;
    unsigned carry = neg;
    for (size_t i = 0; i < len; i++) {
        unsigned v = neg ? (unsigned)(unsigned char)~p[i] + carry : p[i];
        if (neg)
            carry = v >> 8;
        mag[i / 4] |= (uint32_t)(v & 0xff) << (8 * (i % 4));
    }
    size_t used = nl;
    while (used && mag[used - 1] == 0)
        used--;
    /* Refuse before the quadratic work what surely has too many digits: a
     * magnitude of b bits has at least floor((b - 1) log10 2) + 1 digits. */
    size_t bits = used ? (used - 1) * 32 + (32 - (size_t)__builtin_clz(mag[used - 1])) : 0;
    if (bits > 1 &&
        (bits - 1) / 1000 * 301 + (bits - 1) % 1000 * 301 / 1000 + 1 > MP_OBJ_INT_MAX_STR_DIGITS) {
        free(mag);
        return MP_EVALUE;
    }
    /* Nine digits at a time, least significant first. */
    size_t ccap = used * 32 / 29 + 2, nc = 0;
    uint32_t *chunks = malloc(ccap * sizeof *chunks);
    if (!chunks) {
        free(mag);
        return -ENOMEM;
    }
    do {
        uint64_t rem = 0;
        for (size_t l = used; l-- > 0;) {
            uint64_t t = rem << 32 | mag[l];
            mag[l] = (uint32_t)(t / 1000000000u);
            rem = t % 1000000000u;
        }
        while (used && mag[used - 1] == 0)
            used--;
        MP__ASSERT(nc < ccap);
        chunks[nc++] = (uint32_t)rem;
    } while (used);
    free(mag);
    size_t top = 1;
    while (top < 10 && chunks[nc - 1] >= int_pow10[top])
        top++;
    size_t nd = top + 9 * (nc - 1);
    int rc = 0;
    char *s = NULL;
    if (nd > MP_OBJ_INT_MAX_STR_DIGITS)
        rc = MP_EVALUE;
    else if (!(s = malloc(nd + 2)))
        rc = -ENOMEM;
    if (rc == 0) {
        size_t k = 0;
        if (neg)
            s[k++] = '-';
        for (size_t c = nc; c-- > 0;) {
            size_t w = c == nc - 1 ? top : 9;
            for (size_t j = w; j-- > 0;)
                s[k + j] = (char)('0' + chunks[c] / int_pow10[w - 1 - j] % 10);
            k += w;
        }
        s[k] = '\0';
        *out = s;
        *outlen = k;
    }
    free(chunks);
    return rc;
}

/* ---- Public API ------------------------------------------------------------ */

MP_API mp_obj *mp_obj_int_from_bytes(const void *le, size_t len, bool is_signed)
{
    if (!le && len)
        return NULL;
    const unsigned char *p = le;
    if (is_signed || len == 0 || !(p[len - 1] & 0x80))
        return mp__obj_int_from_le(p, len);
    /* Unsigned with the top bit set: one more byte, zero, keeps it positive. */
    size_t n;
    if (mp__add_overflows(len, 1, &n))
        return NULL;
    unsigned char *b = malloc(n);
    if (!b)
        return NULL;
    memcpy(b, p, len);
    b[len] = 0;
    mp_obj *o = mp__obj_int_from_le(b, n);
    free(b);
    return o;
}

MP_API int mp_obj_int_to_bytes(const mp_obj *o, size_t len, bool is_signed, void *out)
{
    if (!o || (!out && len))
        return -EINVAL;
    if (!int_is_int(o))
        return MP_ETYPE;
    unsigned char small[8];
    const unsigned char *p;
    size_t n;
    int_bytes(o, small, &p, &n);
    bool neg = n && (p[n - 1] & 0x80);
    if (!is_signed) {
        if (neg)
            return -ERANGE; /* can't convert negative int to unsigned */
        if (n && p[n - 1] == 0)
            n--; /* the sign byte is not needed */
    }
    if (n > len)
        return -ERANGE; /* int too big to convert */
    if (len) {
        memcpy(out, p, n);
        memset((unsigned char *)out + n, neg ? 0xff : 0x00, len - n);
    }
    return 0;
}

MP_API ssize_t mp_obj_int_bit_length(const mp_obj *o)
{
    if (!o)
        return -EINVAL;
    if (!int_is_int(o))
        return MP_ETYPE;
    if (!mp__obj_is_bigint(o)) {
        int64_t v = o->type == MP_TYPE_BOOL ? o->u.b : o->u.i;
        uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        return m ? 64 - __builtin_clzll(m) : 0;
    }
    size_t n = o->u.s.len;
    const unsigned char *p = (const unsigned char *)o->u.s.data;
    unsigned char *tmp = NULL;
    if (p[n - 1] & 0x80) {
        if (!(tmp = malloc(n)))
            return -ENOMEM;
        memcpy(tmp, p, n);
        int_negate(tmp, n);
        p = tmp;
    }
    while (n > 1 && p[n - 1] == 0)
        n--;
    ssize_t bits = (ssize_t)((n - 1) * 8) + (32 - __builtin_clz(p[n - 1]));
    free(tmp);
    return bits;
}

MP_API bool mp_obj_int_fits(const mp_obj *o)
{
    return int_is_int(o) && !mp__obj_is_bigint(o);
}

static bool int_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

MP_API int mp_obj_int_from_str(const char *s, size_t len, mp_obj **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!s && len)
        return -EINVAL;
    /* Python's int(text): spaces around, a sign, digits that single
     * underscores may separate. */
    size_t i = 0, end = len;
    while (i < end && int_space(s[i]))
        i++;
    while (end > i && int_space(s[end - 1]))
        end--;
    bool neg = false;
    if (i < end && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    char *digits = malloc(end - i + 1);
    if (!digits)
        return -ENOMEM;
    size_t nd = 0;
    int rc = 0;
    for (size_t k = i; k < end && rc == 0; k++) {
        if (s[k] >= '0' && s[k] <= '9')
            digits[nd++] = s[k];
        else if (s[k] != '_' || k == i || k + 1 == end || s[k + 1] == '_')
            rc = MP_EVALUE; /* invalid literal for int() with base 10 */
    }
    unsigned char *le = NULL;
    size_t n = 0;
    if (rc == 0)
        rc = mp__int_from_digits(neg, digits, nd, &le, &n);
    free(digits);
    if (rc < 0)
        return rc;
    *out = mp__obj_int_from_le(le, n);
    free(le);
    return *out ? 0 : -ENOMEM;
}
