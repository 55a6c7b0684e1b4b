/*
 * obj_build - mp_obj_build(), Python's Py_BuildValue for mp_obj: a whole
 * value from a format string and C arguments in one call (statics bld_).
 * Why a build or parse failed goes to the thread's mp_errmsg record.
 */
#include "codec/obj_fmt.h"
#include "codec/objimpl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- why the last build or parse failed -------------------------------- */

/* The thread's failure message (mp_errmsg, core/error.c) is the record. */
void mp__obj_fmt_error(int code, const char *fmt, ...)
{
    char msg[MP__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int saved = errno;
    vsnprintf(msg, sizeof msg, fmt, ap);
    errno = saved;
    va_end(ap);
    (void)mp__err(code, "%s", msg);
}

void mp__obj_fmt_clear(void)
{
    mp__err_clear();
}

int mp__obj_fmt_last(const char **msg)
{
    return mp__err_last(msg);
}

/* ---- the builder -------------------------------------------------------- */

/*
 * One walk over the format. After the first failure the walk goes on in
 * "consume" mode: it builds nothing but still takes every argument off the
 * va_list and frees each N item, because the caller handed those over
 * whatever happens (as Py_BuildValue steals N references even when it
 * fails). Only a malformed format stops the walk where it is: the
 * arguments past that point cannot be known.
 */
struct bld {
    const char *fmt; /* the whole format, for messages */
    const char *p;   /* the next format character */
    const char *at;  /* the item being built, for messages */
    va_list ap;
    int err;   /* 0 while building; the first failure's code after it */
    bool stop; /* the format is malformed: consume nothing more */
};

/* Record the first failure only: it is the one the caller needs. */
__attribute__((format(printf, 3, 4))) static void bld_fail(struct bld *b, int code, const char *why,
                                                           ...)
{
    if (b->err)
        return;
    char msg[200];
    va_list ap;
    va_start(ap, why);
    vsnprintf(msg, sizeof msg, why, ap);
    va_end(ap);
    b->err = code;
    mp__obj_fmt_error(code, "mp_obj_build: %s at offset %zu of format \"%.80s\"", msg,
                      (size_t)(b->at - b->fmt), b->fmt);
}

/* A programming error in the format itself: stop walking. */
static void bld_bad_format(struct bld *b, const char *what)
{
    b->err = 0; /* a malformed format outranks an earlier failure */
    b->at = b->p;
    bld_fail(b, -EINVAL, "%s", what);
    b->stop = true;
}

static void bld_skip_separators(struct bld *b)
{
    while (*b->p == ' ' || *b->p == '\t' || *b->p == ',' || *b->p == ':')
        b->p++;
}

/* A value just made by a constructor: NULL means memory ran out. */
static mp_obj *bld_made(struct bld *b, mp_obj *o)
{
    if (!o)
        bld_fail(b, -ENOMEM, "out of memory");
    return o;
}

static mp_obj *bld_int(struct bld *b, int64_t v)
{
    return b->err ? NULL : bld_made(b, mp_obj_int(v));
}

static mp_obj *bld_uint(struct bld *b, unsigned long long v, char code)
{
    if (v > (unsigned long long)INT64_MAX) {
        bld_fail(b, -EOVERFLOW, "'%c' value %llu does not fit a 64-bit int", code, v);
        return NULL;
    }
    return bld_int(b, (int64_t)v);
}

/* s, z, U, y with an optional '#': a str or bytes, or None for NULL. */
static mp_obj *bld_text(struct bld *b, char code)
{
    const char *s = va_arg(b->ap, const char *);
    size_t len = 0;
    bool counted = *b->p == '#';
    if (counted) {
        b->p++;
        len = va_arg(b->ap, size_t);
    }
    if (b->err)
        return NULL;
    if (!s)
        return mp_obj_none();
    if (!counted)
        len = strlen(s);
    if (code == 'y')
        return bld_made(b, mp_obj_bytes(s, len));
    if (!mp__utf8_valid((const unsigned char *)s, len)) {
        bld_fail(b, MP_EVALUE, "'%c' text is not valid UTF-8", code);
        return NULL;
    }
    return bld_made(b, mp_obj_str(s, len));
}

static mp_obj *bld_item(struct bld *b, unsigned depth);

/* The items up to close (a bracket, or '\0': the end of the format) into
 * seq, a list or tuple (NULL once the build failed). Returns seq, or NULL
 * with seq freed after a failure. */
static mp_obj *bld_fill(struct bld *b, mp_obj *seq, char close, int type, unsigned depth)
{
    for (;;) {
        bld_skip_separators(b);
        if (*b->p == close) {
            if (close)
                b->p++;
            break;
        }
        if (*b->p == '\0') {
            bld_bad_format(b, close == ')' ? "unmatched '('" : "unmatched '['");
            break;
        }
        const char *item_at = b->p;
        mp_obj *item = bld_item(b, depth);
        if (b->stop) {
            mp_obj_free(item);
            break;
        }
        if (!item)
            continue;
        int rc =
            type == MP_TYPE_LIST ? mp_obj_list_append(seq, item) : mp_obj_tuple_append(seq, item);
        if (rc < 0) {
            mp_obj_free(item);
            b->at = item_at;
            bld_fail(b, rc, "cannot add an item: %s", mp_strerror(rc));
        }
    }
    if (b->err) {
        mp_obj_free(seq);
        return NULL;
    }
    return seq;
}

static mp_obj *bld_seq(struct bld *b, char close, int type, unsigned depth)
{
    mp_obj *seq = NULL;
    if (!b->err)
        seq = bld_made(b, type == MP_TYPE_LIST ? mp_obj_list_new() : mp_obj_tuple_new());
    return bld_fill(b, seq, close, type, depth);
}

/* {k:v, ...}: keys and values in pairs, colons and commas optional. */
static mp_obj *bld_dict(struct bld *b, unsigned depth)
{
    mp_obj *d = b->err ? NULL : bld_made(b, mp_obj_dict_new());
    for (;;) {
        bld_skip_separators(b);
        if (*b->p == '}') {
            b->p++;
            break;
        }
        if (*b->p == '\0') {
            bld_bad_format(b, "unmatched '{'");
            break;
        }
        const char *key_at = b->p;
        mp_obj *k = bld_item(b, depth);
        bld_skip_separators(b);
        if (!b->stop && (*b->p == '}' || *b->p == '\0'))
            bld_bad_format(b, "a dict key without a value");
        mp_obj *v = b->stop ? NULL : bld_item(b, depth);
        if (b->err) {
            mp_obj_free(k);
            mp_obj_free(v);
            if (b->stop)
                break;
            continue;
        }
        int rc = mp_obj_dict_set(d, k, v);
        if (rc < 0) {
            mp_obj_free(k);
            mp_obj_free(v);
            b->at = key_at;
            if (rc == MP_ETYPE)
                bld_fail(b, rc, "unhashable dict key");
            else
                bld_fail(b, rc, "cannot add a dict item: %s", mp_strerror(rc));
        }
    }
    if (b->err) {
        mp_obj_free(d);
        return NULL;
    }
    return d;
}

/* O copies, N takes over; either refuses NULL, as Py_BuildValue does. */
static mp_obj *bld_object(struct bld *b, char code)
{
    mp_obj *o = va_arg(b->ap, mp_obj *);
    if (!o) {
        bld_fail(b, -EINVAL, "'%c' object is NULL", code);
        return NULL;
    }
    if (code == 'N') {
        if (!b->err)
            return o;
        mp_obj_free(o);
        return NULL;
    }
    return b->err ? NULL : bld_made(b, mp_obj_copy(o));
}

/* One item: a scalar code or a bracketed container. NULL after a failure
 * (the walk has still consumed the item's arguments). */
static mp_obj *bld_item(struct bld *b, unsigned depth)
{
    b->at = b->p;
    char c = *b->p++;
    if ((c == '(' || c == '[' || c == '{') && depth >= MP_OBJ_MAX_DEPTH) {
        b->p--;
        bld_bad_format(b, "nesting deeper than MP_OBJ_MAX_DEPTH");
        return NULL;
    }
    switch (c) {
    case '(':
        return bld_seq(b, ')', MP_TYPE_TUPLE, depth + 1);
    case '[':
        return bld_seq(b, ']', MP_TYPE_LIST, depth + 1);
    case '{':
        return bld_dict(b, depth + 1);
    case 'b': /* char, short and their unsigned kinds arrive promoted to int */
    case 'B':
    case 'h':
    case 'H':
    case 'i':
        return bld_int(b, va_arg(b->ap, int));
    case 'I':
        return bld_int(b, va_arg(b->ap, unsigned));
    case 'l':
        return bld_int(b, va_arg(b->ap, long));
    case 'k':
        return bld_uint(b, va_arg(b->ap, unsigned long), c);
    case 'L':
        return bld_int(b, va_arg(b->ap, int64_t));
    case 'K':
        return bld_uint(b, va_arg(b->ap, unsigned long long), c);
    case 'n':
        return bld_int(b, va_arg(b->ap, ssize_t));
    case 'd':
    case 'f': {
        double v = va_arg(b->ap, double); /* a float arrives promoted */
        return b->err ? NULL : bld_made(b, mp_obj_float(v));
    }
    case 'p': {
        int v = va_arg(b->ap, int);
        return b->err ? NULL : mp_obj_bool(v != 0);
    }
    case 's':
    case 'z':
    case 'U':
    case 'y':
        return bld_text(b, c);
    case 'O':
    case 'S':
    case 'N':
        return bld_object(b, c);
    default:
        b->p--;
        bld_bad_format(b, c == ')' || c == ']' || c == '}' ? "unmatched closing bracket"
                                                           : "bad format character");
        return NULL;
    }
}

/* The top level, as Py_BuildValue reads it: no item is None, one item is
 * the result itself (never wrapped, so it may nest MP_OBJ_MAX_DEPTH deep),
 * several are a tuple. */
static mp_obj *bld_top(struct bld *b)
{
    bld_skip_separators(b);
    if (*b->p == '\0')
        return mp_obj_none();
    const char *first_at = b->p;
    mp_obj *first = bld_item(b, 0);
    bld_skip_separators(b);
    if (b->stop || *b->p == '\0') {
        if (!b->err)
            return first;
        mp_obj_free(first);
        return NULL;
    }
    mp_obj *t = b->err ? NULL : bld_made(b, mp_obj_tuple_new());
    if (t) {
        int rc = mp_obj_tuple_append(t, first);
        if (rc < 0) {
            b->at = first_at;
            bld_fail(b, rc, "cannot add an item: %s", mp_strerror(rc));
            mp_obj_free(t);
            t = NULL;
        } else {
            first = NULL;
        }
    }
    mp_obj_free(first);
    return bld_fill(b, t, '\0', MP_TYPE_TUPLE, 0);
}

MP_API mp_obj *mp_obj_vbuild(const char *fmt, va_list ap)
{
    mp__obj_fmt_clear();
    if (!fmt) {
        mp__obj_fmt_error(-EINVAL, "mp_obj_build: NULL format");
        return NULL;
    }
    struct bld b = {.fmt = fmt, .p = fmt, .at = fmt};
    va_copy(b.ap, ap);
    mp_obj *o = bld_top(&b);
    va_end(b.ap);
    return o;
}

MP_API mp_obj *mp_obj_build(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_obj *o = mp_obj_vbuild(fmt, ap);
    va_end(ap);
    return o;
}
