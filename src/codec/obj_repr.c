/*
 * obj_repr - Python's repr() of a value (mp_obj_repr in obj.h): CPython
 * 3.11's str, bytes and shortest-float spellings, byte for byte. One of the
 * obj family (objimpl.h lists the files); statics here start with repr_.
 */
#include "codec/objimpl.h"
#include "codec/unicode_printable.h"
#include "core/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct repr_buf {
    char *p;
    size_t len, cap;
    int err;
};

static void repr_put(struct repr_buf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    size_t need;
    if (mp__add_overflows(b->len, n, &need) || mp__add_overflows(need, 1, &need)) {
        b->err = -ENOMEM;
        return;
    }
    if (need > b->cap) {
        size_t cap = mp__grow_cap(b->cap, need, 64);
        char *p = realloc(b->p, cap);
        if (!p) {
            b->err = -ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void repr_puts(struct repr_buf *b, const char *s)
{
    repr_put(b, s, strlen(s));
}

static void repr_putc(struct repr_buf *b, char c)
{
    repr_put(b, &c, 1);
}

static const char repr_hexdigits[] = "0123456789abcdef";

static void repr_hex(struct repr_buf *b, char kind, uint32_t v, int ndigits)
{
    char tmp[10];
    tmp[0] = '\\';
    tmp[1] = kind;
    for (int i = 0; i < ndigits; i++)
        tmp[2 + i] = repr_hexdigits[(v >> (4 * (ndigits - 1 - i))) & 0xf];
    repr_put(b, tmp, (size_t)ndigits + 2);
}

static bool repr_printable(uint32_t cp)
{
    size_t lo = 0, hi = sizeof mp__nonprintable / sizeof mp__nonprintable[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < mp__nonprintable[mid][0])
            hi = mid;
        else if (cp > mp__nonprintable[mid][1])
            lo = mid + 1;
        else
            return false;
    }
    return true;
}

/* Python's quote choice for str and bytes: ' unless the text holds ' and no ". */
static char repr_quote(const char *s, size_t n)
{
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    return sq && !dq ? '"' : '\'';
}

/* The escapes str and bytes share: the quote, a backslash, tab, newline
 * and carriage return. False when c is none of them. */
static bool repr_escape(struct repr_buf *b, uint32_t c, char quote)
{
    if (c == (uint32_t)(unsigned char)quote || c == '\\') {
        repr_putc(b, '\\');
        repr_putc(b, (char)c);
    } else if (c == '\t') {
        repr_puts(b, "\\t");
    } else if (c == '\n') {
        repr_puts(b, "\\n");
    } else if (c == '\r') {
        repr_puts(b, "\\r");
    } else {
        return false;
    }
    return true;
}

/* unicode_repr() of CPython 3.11, on a str's UTF-8 (lone surrogates, in
 * their 3-byte form, are not printable: \udcff as Python writes them). */
static void repr_str(struct repr_buf *b, const mp_obj *o)
{
    const unsigned char *s = (const unsigned char *)o->u.s.data;
    size_t n = o->u.s.len;
    char quote = repr_quote((const char *)s, n);
    repr_putc(b, quote);
    size_t i = 0;
    while (i < n) {
        uint32_t cp = s[i];
        size_t len = 1;
        if (cp >= 0xf0) {
            cp = (uint32_t)(s[i] & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3f) << 12 |
                 (uint32_t)(s[i + 2] & 0x3f) << 6 | (s[i + 3] & 0x3f);
            len = 4;
        } else if (cp >= 0xe0) {
            cp = (uint32_t)(s[i] & 0x0f) << 12 | (uint32_t)(s[i + 1] & 0x3f) << 6 |
                 (s[i + 2] & 0x3f);
            len = 3;
        } else if (cp >= 0xc0) {
            cp = (uint32_t)(s[i] & 0x1f) << 6 | (s[i + 1] & 0x3f);
            len = 2;
        }
        if (repr_escape(b, cp, quote)) {
            /* done */
        } else if (cp < ' ' || cp == 0x7f) {
            repr_hex(b, 'x', cp, 2);
        } else if (cp < 0x7f || repr_printable(cp)) {
            repr_put(b, (const char *)s + i, len);
        } else if (cp <= 0xff) {
            repr_hex(b, 'x', cp, 2);
        } else if (cp <= 0xffff) {
            repr_hex(b, 'u', cp, 4);
        } else {
            repr_hex(b, 'U', cp, 8);
        }
        i += len;
    }
    repr_putc(b, quote);
}

/* An int beyond int64 in decimal; MP_EVALUE beyond Python's 4300 digits
 * (its ValueError "Exceeds the limit (4300 digits) for integer string
 * conversion"), so a peer's huge int never costs quadratic time here. */
static void repr_bigint(struct repr_buf *b, const mp_obj *o)
{
    char *s;
    size_t n;
    if (b->err)
        return;
    int rc = mp__int_to_decimal(o, &s, &n);
    if (rc < 0) {
        b->err = rc;
        return;
    }
    repr_put(b, s, n);
    free(s);
}

/* bytes_repr() of CPython 3.11. */
static void repr_bytes(struct repr_buf *b, const mp_obj *o)
{
    const unsigned char *s = (const unsigned char *)o->u.s.data;
    size_t n = o->u.s.len;
    char quote = repr_quote((const char *)s, n);
    repr_putc(b, 'b');
    repr_putc(b, quote);
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (repr_escape(b, c, quote)) {
            /* done */
        } else if (c < ' ' || c >= 0x7f) {
            repr_hex(b, 'x', c, 2);
        } else {
            repr_putc(b, (char)c);
        }
    }
    repr_putc(b, quote);
}

/*
 * The decimal digits of |x| with ndigits significant digits, correctly
 * rounded (glibc's printf is exact), as a digit string and the exponent of
 * the first digit. The locale's decimal point is skipped, whatever it is.
 */
static int repr_sig_digits(double x, int ndigits, char *digits, int *exp10)
{
    char buf[64];
    int w = snprintf(buf, sizeof buf, "%.*e", ndigits - 1, x);
    if (w <= 0 || (size_t)w >= sizeof buf)
        return -1;
    int n = 0;
    const char *p = buf;
    for (; *p && *p != 'e' && *p != 'E'; p++)
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
    if (*p == '\0' || n != ndigits)
        return -1;
    *exp10 = atoi(p + 1);
    return 0;
}

/* Whether digits (n of them, first digit at 10**exp10) read back as x.
 * The text has no decimal point, so strtod's locale cannot interfere. */
static bool repr_reads_back(const char *digits, int n, int exp10, double x)
{
    char buf[64];
    memcpy(buf, digits, (size_t)n);
    snprintf(buf + n, sizeof buf - (size_t)n, "e%d", exp10 - (n - 1));
    return strtod(buf, NULL) == x;
}

/* Add delta (+1 or -1) to the last digit of a digit string. Returns false
 * when the result would need another digit or lose its first one. */
static bool repr_bump_digits(char *d, int n, int delta)
{
    for (int i = n - 1; i >= 0; i--) {
        int v = d[i] - '0' + delta;
        if (v >= 0 && v <= 9) {
            d[i] = (char)('0' + v);
            return d[0] != '0';
        }
        d[i] = delta > 0 ? '0' : '9';
    }
    return false;
}

/*
 * The shortest digit string that reads back as x (> 0, finite), and among
 * those the closest to x: what David Gay's dtoa mode 0 gives Python's
 * repr(). For each length, the correctly rounded string is the candidate;
 * when it does not read back, the only other string of that length that can
 * is its neighbour on the other side of x (the rounding interval of a power
 * of two is lopsided).
 */
static void repr_shortest_digits(double x, char *digits, int *ndigits, int *decpt)
{
    for (int n = 1; n <= 17; n++) {
        int e;
        if (repr_sig_digits(x, n, digits, &e) < 0)
            break;
        if (repr_reads_back(digits, n, e, x)) {
            *ndigits = n;
            *decpt = e + 1;
            return;
        }
        char alt[24];
        for (int delta = -1; delta <= 1; delta += 2) {
            memcpy(alt, digits, (size_t)n);
            if (repr_bump_digits(alt, n, delta) && repr_reads_back(alt, n, e, x)) {
                memcpy(digits, alt, (size_t)n);
                *ndigits = n;
                *decpt = e + 1;
                return;
            }
        }
    }
    /* 17 significant digits always read back; reached only if snprintf
     * failed, which it cannot for a finite double. */
    int e = 0;
    if (repr_sig_digits(x, 17, digits, &e) < 0) {
        digits[0] = '0';
        e = 0;
    }
    *ndigits = 17;
    *decpt = e + 1;
}

/* format_float_short(x, 'r', 0, Py_DTSF_ADD_DOT_0) of CPython. */
static void repr_float(struct repr_buf *b, double x)
{
    if (isnan(x)) {
        repr_puts(b, "nan");
        return;
    }
    if (isinf(x)) {
        repr_puts(b, x > 0 ? "inf" : "-inf");
        return;
    }
    if (signbit(x))
        repr_putc(b, '-');
    x = fabs(x);
    if (x == 0) {
        repr_puts(b, "0.0");
        return;
    }
    char d[24];
    int n, decpt;
    repr_shortest_digits(x, d, &n, &decpt);
    while (n > 1 && d[n - 1] == '0')
        n--; /* repr_bump_digits may leave trailing zeros */
    if (decpt <= -4 || decpt > 16) {
        repr_putc(b, d[0]);
        if (n > 1) {
            repr_putc(b, '.');
            repr_put(b, d + 1, (size_t)n - 1);
        }
        char ebuf[16];
        int e = decpt - 1;
        snprintf(ebuf, sizeof ebuf, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        repr_puts(b, ebuf);
    } else if (decpt <= 0) {
        repr_puts(b, "0.");
        for (int i = 0; i < -decpt; i++)
            repr_putc(b, '0');
        repr_put(b, d, (size_t)n);
    } else if (decpt >= n) {
        repr_put(b, d, (size_t)n);
        for (int i = n; i < decpt; i++)
            repr_putc(b, '0');
        repr_puts(b, ".0");
    } else {
        repr_put(b, d, (size_t)decpt);
        repr_putc(b, '.');
        repr_put(b, d + decpt, (size_t)(n - decpt));
    }
}

/* Scalars, kept out of line so that the frame repr_obj repeats once per
 * nesting level stays small (see "Nesting" in obj.h). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void
repr_scalar(struct repr_buf *b, const mp_obj *o)
{
    char num[32];
    switch (o->type) {
    case MP_TYPE_NONE:
        repr_puts(b, "None");
        break;
    case MP_TYPE_BOOL:
        repr_puts(b, o->u.b ? "True" : "False");
        break;
    case MP_TYPE_INT:
        if (mp__obj_is_bigint(o)) {
            repr_bigint(b, o);
            break;
        }
        snprintf(num, sizeof num, "%lld", (long long)o->u.i);
        repr_puts(b, num);
        break;
    case MP_TYPE_FLOAT:
        repr_float(b, o->u.f);
        break;
    case MP_TYPE_STR:
        repr_str(b, o);
        break;
    case MP_TYPE_BYTES:
        repr_bytes(b, o);
        break;
    case MP_TYPE_BYTEARRAY:
        repr_puts(b, "bytearray(");
        repr_bytes(b, o);
        repr_putc(b, ')');
        break;
    default:
        repr_puts(b, "?");
        break;
    }
}

static void repr_obj(struct repr_buf *b, const mp_obj *o);

/* {1, 2}, frozenset({1, 2}); empty: set(), frozenset() (as Python, since
 * {} is a dict). */
static void repr_set(struct repr_buf *b, const mp_obj *o)
{
    bool frozen = o->type == MP_TYPE_FROZENSET;
    if (o->u.d.used == 0) {
        repr_puts(b, frozen ? "frozenset()" : "set()");
        return;
    }
    repr_puts(b, frozen ? "frozenset({" : "{");
    bool first = true;
    for (size_t i = 0; i < o->u.d.n; i++) {
        const struct mp__dict_entry *e = &o->u.d.entries[i];
        if (!e->key)
            continue;
        if (!first)
            repr_puts(b, ", ");
        first = false;
        repr_obj(b, e->key);
    }
    repr_puts(b, frozen ? "})" : "}");
}

static void repr_obj(struct repr_buf *b, const mp_obj *o);

/* Python's repr of an exception, Name(arg, ...), and of a Token, whose
 * __repr__ names its three fields. */
static void repr_instance(struct repr_buf *b, const mp_obj *o)
{
    static const char *const token_fields[] = {"typeid=", "address=", "id="};
    int cls = mp__instance_cls(o);
    const mp_obj *args = o->u.seq.items[0];
    size_t n = args->u.seq.len;
    repr_puts(b, mp__instance_name(cls));
    repr_putc(b, '(');
    if (strcmp(mp__instance_name(cls), "range") == 0 && n == 3 && args->u.seq.items[2]->u.i == 1)
        n = 2; /* range(0, 3), as Python shows a step of 1 */
    for (size_t i = 0; i < n; i++) {
        if (i)
            repr_puts(b, ", ");
        if (cls == MP__CLS_TOKEN && i < 3)
            repr_puts(b, token_fields[i]);
        repr_obj(b, args->u.seq.items[i]);
    }
    repr_putc(b, ')');
}

static void repr_obj(struct repr_buf *b, const mp_obj *o)
{
    switch (o->type) {
    case MP_TYPE_INSTANCE:
        repr_instance(b, o);
        break;
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE: {
        bool list = o->type == MP_TYPE_LIST;
        repr_putc(b, list ? '[' : '(');
        for (size_t i = 0; i < o->u.seq.len; i++) {
            if (i)
                repr_puts(b, ", ");
            repr_obj(b, o->u.seq.items[i]);
        }
        if (!list && o->u.seq.len == 1)
            repr_putc(b, ',');
        repr_putc(b, list ? ']' : ')');
        break;
    }
    case MP_TYPE_DICT: {
        repr_putc(b, '{');
        bool first = true;
        for (size_t i = 0; i < o->u.d.n; i++) {
            const struct mp__dict_entry *e = &o->u.d.entries[i];
            if (!e->key)
                continue;
            if (!first)
                repr_puts(b, ", ");
            first = false;
            repr_obj(b, e->key);
            repr_puts(b, ": ");
            repr_obj(b, e->value);
        }
        repr_putc(b, '}');
        break;
    }
    case MP_TYPE_SET:
    case MP_TYPE_FROZENSET:
        repr_set(b, o);
        break;
    default:
        repr_scalar(b, o);
        break;
    }
}

MP_API int mp_obj_repr(const mp_obj *o, char **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!o)
        return -EINVAL;
    struct repr_buf b = {NULL, 0, 0, 0};
    repr_obj(&b, o);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *out = b.p;
    return 0;
}
