/*
 * obj_parse - mp_obj_parse(), Python's PyArg_ParseTuple for mp_obj: check a
 * value's shape, then unpack it into C variables, with Python's messages
 * naming the position that failed (statics prs_).
 */
#include "codec/obj_fmt.h"
#include "codec/objimpl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Nested (...) groups one format may hold (Python's getargs reports 32). */
#define PRS_MAX_NEST 32

/*
 * The format is walked twice over the same value: the first walk checks
 * everything and writes nothing, the second writes the variables and
 * cannot fail. So a failure leaves every variable as it was.
 */
struct prs {
    const char *fmt;   /* the whole format, for messages */
    const char *p;     /* the next format character */
    const char *end;   /* the end of the items (":name" may follow) */
    const char *fname; /* the name after ':', or NULL */
    va_list ap;
    bool store;     /* the second walk */
    unsigned depth; /* entries of path in use */
    /* Where the walk is: path[0] the argument (from 1), then the item
     * within each nested sequence (from 0), as Python's messages count. */
    size_t path[PRS_MAX_NEST + 2];
};

static bool prs_is_separator(char c)
{
    return c == ' ' || c == '\t' || c == ',';
}

static void prs_skip_separators(struct prs *b)
{
    while (b->p < b->end && prs_is_separator(*b->p))
        b->p++;
}

/* Record a failure of the value at the walk's position: "[name() ]argument
 * 3, item 0" then sep then the reason. Returns code. */
__attribute__((format(printf, 4, 5))) static int prs_fail(struct prs *b, int code, const char *sep,
                                                          const char *why, ...)
{
    char what[160], where[512];
    va_list ap;
    va_start(ap, why);
    vsnprintf(what, sizeof what, why, ap);
    va_end(ap);
    size_t k = 0;
    if (b->fname)
        k += (size_t)snprintf(where, sizeof where, "%.60s() ", b->fname);
    if (b->depth == 0) {
        snprintf(where + k, sizeof where - k, "argument");
    } else {
        k += (size_t)snprintf(where + k, sizeof where - k, "argument %zu", b->path[0]);
        for (unsigned i = 1; i < b->depth && k < sizeof where; i++)
            k += (size_t)snprintf(where + k, sizeof where - k, ", item %zu", b->path[i]);
    }
    mp__obj_fmt_error(code, "%s%s%s", where, sep, what);
    return code;
}

static const char *prs_type_name(const mp_obj *o)
{
    return mp_type_name(mp_obj_type(o));
}

/*
 * The syntax of the items from p to the group's close (')', or '\0' for
 * the end e): counts the items in *n and those before a '|' in *nreq.
 * Returns the position after the group, or NULL with *why and *at set.
 */
static const char *prs_scan(const char *p, const char *e, char close, unsigned nest, size_t *n,
                            size_t *nreq, const char **why, const char **at)
{
    size_t count = 0;
    bool opt = false;
    for (;;) {
        while (p < e && prs_is_separator(*p))
            p++;
        if (close == ')' ? p < e && *p == ')' : p == e)
            break;
        *at = p;
        if (p == e) {
            *why = "unmatched '('";
            return NULL;
        }
        char c = *p++;
        if (c == '|') {
            if (opt) {
                *why = "a second '|'";
                return NULL;
            }
            opt = true;
            *nreq = count;
        } else if (c == '(') {
            size_t in, inreq;
            if (nest >= PRS_MAX_NEST) {
                *why = "nesting deeper than 32";
                return NULL;
            }
            p = prs_scan(p, e, ')', nest + 1, &in, &inreq, why, at);
            if (!p)
                return NULL;
            count++;
        } else if (c != '\0' && strchr("ibhlLnBHIkKdfpszyOUS", c)) {
            if ((c == 's' || c == 'z' || c == 'y') && p < e && *p == '#')
                p++;
            count++;
        } else {
            *why = c == ')' ? "unmatched ')'" : "bad format character";
            return NULL;
        }
    }
    *n = count;
    if (!opt)
        *nreq = count;
    return close == ')' ? p + 1 : p;
}

static int prs_get_int(struct prs *b, const mp_obj *o, int64_t *v)
{
    int rc = mp_obj_get_int(o, v);
    if (rc == MP_ETYPE)
        return prs_fail(b, MP_ETYPE, " ", "must be int, not %s", prs_type_name(o));
    if (rc < 0)
        return prs_fail(b, rc, ": ", "%s", mp_strerror(rc));
    return 0;
}

/* An int for a variable of range [lo, hi], in Python's OverflowError words
 * (kind: "signed integer", ...). */
static int prs_int_in(struct prs *b, const mp_obj *o, int64_t lo, int64_t hi, const char *kind,
                      int64_t *v)
{
    int rc = prs_get_int(b, o, v);
    if (rc < 0)
        return rc;
    if (*v > hi)
        return prs_fail(b, -EOVERFLOW, ": ", "%s is greater than maximum", kind);
    if (*v < lo)
        return prs_fail(b, -EOVERFLOW, ": ", "%s is less than minimum", kind);
    return 0;
}

/* Python's truth value (bool(o)), for 'p'. */
static bool prs_truth(const mp_obj *o)
{
    bool bv;
    int64_t iv;
    double dv;
    if (mp_obj_is_none(o))
        return false;
    if (mp_obj_get_bool(o, &bv) == 0)
        return bv;
    if (mp_obj_get_int(o, &iv) == 0)
        return iv != 0;
    if (mp_obj_get_float(o, &dv) == 0)
        return dv != 0.0; /* NaN is true, as in Python */
    ssize_t len = mp_obj_len(o);
    return len != 0; /* a sized value by its length; anything else is true */
}

/* s, z, y with an optional '#'. */
static int prs_text(struct prs *b, const mp_obj *o, char c)
{
    bool counted = b->p < b->end && *b->p == '#';
    if (counted)
        b->p++;
    const char **out = va_arg(b->ap, const char **);
    size_t *lenp = counted ? va_arg(b->ap, size_t *) : NULL;
    if (!o)
        return 0;
    if (!out || (counted && !lenp))
        return prs_fail(b, -EINVAL, ": ", "a NULL variable for '%c'", c);
    const char *s = NULL;
    size_t len = 0;
    if (!(c == 'z' && mp_obj_is_none(o))) {
        const unsigned char *u;
        int rc = c == 'y' ? mp_obj_get_bytes(o, &u, &len) : mp_obj_get_str(o, &s, &len);
        if (rc < 0)
            return prs_fail(b, MP_ETYPE, " ", "must be %s, not %s",
                            c == 'y'   ? "bytes"
                            : c == 'z' ? "str or None"
                                       : "str",
                            prs_type_name(o));
        if (c == 'y')
            s = (const char *)u;
        if (!counted && memchr(s, '\0', len))
            return prs_fail(b, MP_EVALUE, ": ", "%s",
                            c == 'y' ? "embedded null byte" : "embedded null character");
    }
    if (b->store) {
        *out = s;
        if (counted)
            *lenp = len;
    }
    return 0;
}

/* Store v through the next variable, of type T. o NULL: an optional item
 * that is missing: only step over its variable. */
#define PRS_STORE(T, v)                                                                            \
    do {                                                                                           \
        T *out_ = va_arg(b->ap, T *);                                                              \
        if (o && !out_)                                                                            \
            return prs_fail(b, -EINVAL, ": ", "a NULL variable for '%c'", c);                      \
        if (o && b->store)                                                                         \
            *out_ = (T)(v);                                                                        \
    } while (0)

/* One scalar code c for o (NULL: missing, step over). */
static int prs_scalar(struct prs *b, const mp_obj *o, char c)
{
    int64_t v = 0;
    double d = 0;
    int rc = 0;
    switch (c) {
    case 'i':
        if (o)
            rc = prs_int_in(b, o, INT_MIN, INT_MAX, "signed integer", &v);
        if (rc == 0)
            PRS_STORE(int, v);
        return rc;
    case 'b':
        if (o)
            rc = prs_int_in(b, o, 0, UCHAR_MAX, "unsigned byte integer", &v);
        if (rc == 0)
            PRS_STORE(unsigned char, v);
        return rc;
    case 'h':
        if (o)
            rc = prs_int_in(b, o, SHRT_MIN, SHRT_MAX, "signed short integer", &v);
        if (rc == 0)
            PRS_STORE(short, v);
        return rc;
    case 'l':
    case 'L':
    case 'n':
        if (o)
            rc = prs_int_in(b, o, c == 'l' ? LONG_MIN : INT64_MIN, c == 'l' ? LONG_MAX : INT64_MAX,
                            "signed integer", &v);
        if (rc < 0)
            return rc;
        if (c == 'l')
            PRS_STORE(long, v);
        else if (c == 'L')
            PRS_STORE(int64_t, v);
        else
            PRS_STORE(ssize_t, v);
        return 0;
    case 'd':
    case 'f':
        if (o && mp_obj_get_float(o, &d) < 0) {
            if (mp_obj_get_int(o, &v) < 0) /* Python's float(int) */
                return prs_fail(b, MP_ETYPE, " ", "must be real number, not %s", prs_type_name(o));
            d = (double)v;
        }
        if (c == 'd')
            PRS_STORE(double, d);
        else
            PRS_STORE(float, d);
        return 0;
    case 'B':
    case 'H':
    case 'I':
    case 'k':
    case 'K': {
        /* Python's unsigned codes take any int modulo 2**bits, unchecked
         * (PyLong_AsUnsignedLongMask): -1 is all ones. */
        if (o && (rc = prs_get_int(b, o, &v)) < 0)
            return rc;
        uint64_t u = (uint64_t)v;
        if (c == 'B')
            PRS_STORE(unsigned char, u);
        else if (c == 'H')
            PRS_STORE(unsigned short, u);
        else if (c == 'I')
            PRS_STORE(unsigned, u);
        else if (c == 'k')
            PRS_STORE(unsigned long, u);
        else
            PRS_STORE(unsigned long long, u);
        return 0;
    }
    case 'p': {
        int truth = o ? prs_truth(o) : 0;
        PRS_STORE(int, truth);
        return 0;
    }
    case 'U': /* a str or a bytes value itself, as Python's U and S */
    case 'S':
        if (o && mp_obj_type(o) != (c == 'U' ? MP_TYPE_STR : MP_TYPE_BYTES))
            return prs_fail(b, MP_ETYPE, " ", "must be %s, not %s", c == 'U' ? "str" : "bytes",
                            prs_type_name(o));
        PRS_STORE(const mp_obj *, o);
        return 0;
    case 'O':
        PRS_STORE(const mp_obj *, o);
        return 0;
    default: /* s, z, y: prs_scan allowed nothing else */
        MP__ASSERT(c == 's' || c == 'z' || c == 'y');
        return prs_text(b, o, c);
    }
}

static int prs_group(struct prs *b, const mp_obj *seq, bool top, char close);

/* The next item of the format for o (NULL: missing, step over). */
static int prs_item(struct prs *b, const mp_obj *o)
{
    prs_skip_separators(b);
    char c = *b->p++;
    if (c == '(')
        return prs_group(b, o, false, ')');
    return prs_scalar(b, o, c);
}

/* The count check of a group: Python's words for a function's arguments
 * (top) or a nested sequence. */
static int prs_check_len(struct prs *b, const mp_obj *seq, size_t n, size_t nreq, bool top)
{
    int t = mp_obj_type(seq);
    if (t != MP_TYPE_TUPLE && t != MP_TYPE_LIST) {
        if (n == nreq)
            return prs_fail(b, MP_ETYPE, " ", "must be %zu-item sequence, not %s", n,
                            prs_type_name(seq));
        return prs_fail(b, MP_ETYPE, " ", "must be sequence, not %s", prs_type_name(seq));
    }
    size_t len = (size_t)mp_obj_len(seq);
    if (len >= nreq && len <= n)
        return 0;
    if (top) {
        size_t want = len < nreq ? nreq : n;
        mp__obj_fmt_error(MP_ETYPE, "%.60s%s takes %s %zu argument%s (%zu given)",
                          b->fname ? b->fname : "function", b->fname ? "()" : "",
                          n == nreq    ? "exactly"
                          : len < nreq ? "at least"
                                       : "at most",
                          want, want == 1 ? "" : "s", len);
        return MP_ETYPE;
    }
    if (n == nreq)
        return prs_fail(b, MP_ETYPE, " ", "must be sequence of length %zu, not %zu", n, len);
    return prs_fail(b, MP_ETYPE, " ", "must be sequence of length %zu to %zu, not %zu", nreq, n,
                    len);
}

/*
 * The items of a group (b->p just past its '(', or at the start of the top
 * level) against the items of seq (NULL: missing, step over). top: seq's
 * items are the arguments. close: ')', or '\0' for the whole top level.
 */
static int prs_group(struct prs *b, const mp_obj *seq, bool top, char close)
{
    size_t n, nreq;
    const char *why, *at;
    const char *after = prs_scan(b->p, b->end, close, 0, &n, &nreq, &why, &at);
    MP__ASSERT(after != NULL); /* the whole format was scanned first */
    (void)why;
    (void)at;
    size_t len = 0;
    if (seq) {
        int rc = prs_check_len(b, seq, n, nreq, top);
        if (rc < 0)
            return rc;
        len = (size_t)mp_obj_len(seq);
    }
    if (b->depth >= PRS_MAX_NEST + 1)
        return prs_fail(b, -EINVAL, ": ", "nesting deeper than 32");
    b->depth++;
    for (size_t i = 0; i < n; i++) {
        prs_skip_separators(b);
        if (*b->p == '|')
            b->p++;
        b->path[b->depth - 1] = top ? i + 1 : i;
        int rc = prs_item(b, i < len ? mp_obj_list_get(seq, i) : NULL);
        if (rc < 0)
            return rc;
    }
    b->depth--;
    b->p = after;
    return 0;
}

MP_API int mp_obj_vparse(const mp_obj *obj, const char *fmt, va_list ap)
{
    mp__obj_fmt_clear();
    if (!obj || !fmt) {
        mp__obj_fmt_error(-EINVAL, "mp_obj_parse: NULL %s", obj ? "format" : "value");
        return -EINVAL;
    }
    struct prs b = {.fmt = fmt};
    const char *colon = strchr(fmt, ':');
    b.end = colon ? colon : fmt + strlen(fmt);
    b.fname = colon ? colon + 1 : NULL;
    size_t n, nreq;
    const char *why, *at;
    if (!prs_scan(fmt, b.end, '\0', 0, &n, &nreq, &why, &at)) {
        mp__obj_fmt_error(-EINVAL, "mp_obj_parse: %s at offset %zu of format \"%.80s\"", why,
                          (size_t)(at - fmt), fmt);
        return -EINVAL;
    }
    /* As mp_obj_build reads a format: one item stands for obj itself; a
     * lone (...) or several items are obj's items, the arguments. */
    const char *start = fmt;
    while (start < b.end && prs_is_separator(*start))
        start++;
    bool args = !(n == 1 && nreq == 1);
    char close = '\0';
    if (!args && *start == '(') {
        args = true;
        close = ')';
        start++;
    }
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        b.store = pass == 1;
        b.p = start;
        b.depth = 0;
        va_copy(b.ap, ap);
        if (args) {
            rc = prs_group(&b, obj, true, close);
        } else {
            prs_skip_separators(&b);
            char c = *b.p++;
            rc = prs_scalar(&b, obj, c);
        }
        va_end(b.ap);
    }
    MP__ASSERT(rc == 0 || !b.store); /* the storing walk cannot fail */
    return rc;
}

MP_API int mp_obj_parse(const mp_obj *obj, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = mp_obj_vparse(obj, fmt, ap);
    va_end(ap);
    return rc;
}
