/*
 * mgr_type_value - the manager server's Value, Array and Namespace (Python's
 * SyncManager.Value / Array / Namespace referents): their methods and tables.
 * Static functions: sdata_. Siblings: mgr_type_dict.c, mgr_type_list.c.
 */
#include "codec/objimpl.h"
#include "manager/mgr_server.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Value: managers.Value(typecode, value), which keeps any value ---------- */

/* create's initial value: (typecode, value), typecode a str. */
static int sdata_value_init(const struct req *r, struct sobj *o)
{
    mp_obj *init = mp__mgr_arg(r, 2);
    if (mp_obj_type(init) != MP_TYPE_TUPLE || mp_obj_len(init) != 2 ||
        mp_obj_type(mp_obj_list_get(init, 0)) != MP_TYPE_STR)
        return MP_ETYPE;
    o->value = mp__seq_take(init, 1);
    return o->value ? 0 : -ENOMEM;
}

static int sdata_value_get(const struct req *r)
{
    mp__mgr_reply_obj(r->c, r->o->value);
    return 0;
}

static int sdata_value_set(const struct req *r)
{
    mp_obj_free(r->o->value);
    r->o->value = mp__seq_take(r->args, 0);
    mp__mgr_reply_none(r->c);
    return 0;
}

static const struct method value_methods[] = {
    {"get", 0, 0, sdata_value_get},
    {"set", 1, 1, sdata_value_set},
};

const struct stype mp__mgr_type_value = {"value", MP__MGR_METHODS(value_methods), sdata_value_init,
                                         NULL};

/* ---- Array: array.array(typecode, seq), a list whose items the typecode checks -- */

/* The integer typecodes and their ranges (Linux LP64: l and L are 64-bit). */
static const struct {
    char tc;
    int64_t lo;
    uint64_t hi;
} sdata_ints[] = {
    {'b', -128, 127},
    {'B', 0, 255},
    {'h', -32768, 32767},
    {'H', 0, 65535},
    {'i', INT32_MIN, INT32_MAX},
    {'I', 0, UINT32_MAX},
    {'l', INT64_MIN, INT64_MAX},
    {'L', 0, UINT64_MAX},
    {'q', INT64_MIN, INT64_MAX},
    {'Q', 0, UINT64_MAX},
};

static bool sdata_typecode_ok(char tc)
{
    if (tc == 'f' || tc == 'd' || tc == 'u')
        return true;
    for (size_t i = 0; i < sizeof sdata_ints / sizeof sdata_ints[0]; i++)
        if (sdata_ints[i].tc == tc)
            return true;
    return false;
}

/* An item for an array of typecode tc, as array.array stores it: a new
 * value (an int, a float rounded to the typecode's precision, a str of one
 * character), or NULL with *code and text set (TypeError, or
 * OverflowError as MP_EVALUE). */
static mp_obj *sdata_item(char tc, const mp_obj *v, int *code, const char **text)
{
    int t = mp_obj_type(v);
    if (tc == 'u') {
        size_t n;
        const char *s;
        if (t == MP_TYPE_STR && mp_obj_get_str(v, &s, &n) == 0 && n > 0 &&
            n == (size_t)(((unsigned char)s[0] < 0x80)   ? 1
                          : ((unsigned char)s[0] < 0xe0) ? 2
                          : ((unsigned char)s[0] < 0xf0) ? 3
                                                         : 4))
            return mp_obj_copy(v);
        *code = MP_ETYPE;
        *text = "TypeError: array item must be unicode character";
        return NULL;
    }
    if (tc == 'f' || tc == 'd') {
        double f;
        int64_t i;
        if (t == MP_TYPE_FLOAT && mp_obj_get_float(v, &f) == 0)
            ;
        else if ((t == MP_TYPE_INT || t == MP_TYPE_BOOL) && mp_obj_get_int(v, &i) == 0)
            f = (double)i;
        else {
            *code = t == MP_TYPE_INT ? MP_EVALUE : MP_ETYPE;
            *text = t == MP_TYPE_INT ? "OverflowError: int too large to convert to float"
                                     : "TypeError: must be real number";
            return NULL;
        }
        return mp_obj_float(tc == 'f' ? (double)(float)f : f);
    }
    if (t != MP_TYPE_INT && t != MP_TYPE_BOOL) {
        *code = MP_ETYPE;
        *text = "TypeError: array item must be an integer";
        return NULL;
    }
    size_t k = 0;
    while (sdata_ints[k].tc != tc)
        k++;
    int64_t i;
    bool fits = mp_obj_get_int(v, &i) == 0;
    /* Beyond int64: only Q and L reach up to 2**64 - 1. */
    if (!fits && sdata_ints[k].hi == UINT64_MAX && mp_obj_int_bit_length(v) == 64 &&
        !(v->u.s.data[v->u.s.len - 1] & 0x80))
        return mp_obj_copy(v);
    if (!fits || i < sdata_ints[k].lo || (i > 0 && (uint64_t)i > sdata_ints[k].hi)) {
        *code = MP_EVALUE;
        *text = "OverflowError: the value does not fit the array's typecode";
        return NULL;
    }
    return mp_obj_int(i);
}

/* The typecode of an array object (kept in its name-free sobj). */
static char sdata_tc(const struct sobj *o)
{
    return o->typecode;
}

/* create's initial value: (typecode, seq), seq a list or tuple. */
static int sdata_array_init(const struct req *r, struct sobj *o)
{
    const mp_obj *init = mp__mgr_arg(r, 2), *tco = mp_obj_list_get(init, 0),
                 *seq = mp_obj_list_get(init, 1);
    const char *tc;
    size_t tn;
    if (mp_obj_type(init) != MP_TYPE_TUPLE || mp_obj_len(init) != 2 ||
        mp_obj_get_str(tco, &tc, &tn) < 0 || tn != 1 || !sdata_typecode_ok(tc[0]) ||
        (mp_obj_type(seq) != MP_TYPE_LIST && mp_obj_type(seq) != MP_TYPE_TUPLE))
        return MP_ETYPE;
    o->typecode = tc[0];
    o->value = mp_obj_list_new();
    for (ssize_t i = 0; o->value && i < mp_obj_len(seq); i++) {
        int code = 0;
        const char *text;
        mp_obj *it = sdata_item(tc[0], mp_obj_list_get(seq, i), &code, &text);
        if (!it || mp_obj_list_append(o->value, it) < 0) {
            mp_obj_free(it);
            return code ? code : -ENOMEM; /* the caller frees o and its value */
        }
    }
    return o->value ? 0 : -ENOMEM;
}

/* Argument 0 as an index of the array (Python's: negative from the end). */
static int sdata_index(const struct req *r, size_t *at)
{
    int64_t i, len = (int64_t)mp_obj_len(r->o->value);
    if (mp_obj_get_int(mp__mgr_arg(r, 0), &i) < 0) {
        mp__mgr_reply_error(r->c, MP_ETYPE, "TypeError: array indices must be integers");
        return MP_ETYPE;
    }
    if (i < 0)
        i += len;
    if (i < 0 || i >= len) {
        mp__mgr_reply_error(r->c, MP_EKEY, "IndexError: array index out of range");
        return MP_EKEY;
    }
    *at = (size_t)i;
    return 0;
}

static int sdata_array_get(const struct req *r)
{
    size_t i;
    if (sdata_index(r, &i) == 0)
        mp__mgr_reply_obj(r->c, mp_obj_list_get(r->o->value, (ssize_t)i));
    return 0;
}

static int sdata_array_set(const struct req *r)
{
    size_t i;
    if (sdata_index(r, &i) < 0)
        return 0;
    int code = 0;
    const char *text = NULL;
    mp_obj *it = sdata_item(sdata_tc(r->o), mp__mgr_arg(r, 1), &code, &text);
    if (!it) {
        if (!code)
            return -ENOMEM;
        mp__mgr_reply_error(r->c, code, text);
        return 0;
    }
    int rc = mp_obj_list_set(r->o->value, (ssize_t)i, it);
    if (rc < 0) {
        mp_obj_free(it);
        return rc;
    }
    mp__mgr_reply_none(r->c);
    return 0;
}

static int sdata_array_typecode(const struct req *r)
{
    char tc[2] = {sdata_tc(r->o), '\0'};
    size_t st = mp__mgr_reply_begin(r->c);
    mp__pickler_str(&r->c->out, tc, 1);
    mp__mgr_reply_end(r->c, st);
    return 0;
}

static const struct method array_methods[] = {
    {"len", 0, 0, mp__mgr_value_len},         {"get", 1, 1, sdata_array_get},
    {"set", 2, 2, sdata_array_set},           {"copy", 0, 0, mp__mgr_value_copy},
    {"typecode", 0, 0, sdata_array_typecode},
};

const struct stype mp__mgr_type_array = {"array", MP__MGR_METHODS(array_methods), sdata_array_init,
                                         NULL};

/* ---- Namespace: attributes by name, a dict of str keys ------------------------- */

/* create's initial value: None or a dict of str keys (Python's **kwds). */
static int sdata_ns_init(const struct req *r, struct sobj *o)
{
    mp_obj *init = mp__mgr_arg(r, 2);
    if (mp_obj_is_none(init)) {
        o->value = mp_obj_dict_new();
        return o->value ? 0 : -ENOMEM;
    }
    if (mp_obj_type(init) != MP_TYPE_DICT)
        return MP_ETYPE;
    size_t pos = 0;
    const mp_obj *k, *v;
    while (mp_obj_dict_next(init, &pos, &k, &v) == 1)
        if (mp_obj_type(k) != MP_TYPE_STR)
            return MP_ETYPE;
    o->value = mp__seq_take(r->args, 2);
    return o->value ? 0 : -ENOMEM;
}

/* Argument 0 as an attribute name: a str, or TypeError replied. */
static int sdata_ns_name(const struct req *r)
{
    if (mp_obj_type(mp__mgr_arg(r, 0)) == MP_TYPE_STR)
        return 0;
    mp__mgr_reply_error(r->c, MP_ETYPE, "TypeError: attribute name must be string");
    return MP_ETYPE;
}

/* AttributeError, worded as Python's: MP_EKEY to a C client. */
static void sdata_ns_missing(const struct req *r)
{
    const char *name;
    size_t n;
    char text[200];
    (void)mp_obj_get_str(mp__mgr_arg(r, 0), &name, &n);
    snprintf(text, sizeof text, "AttributeError: 'Namespace' object has no attribute '%.*s'",
             n > 100 ? 100 : (int)n, name);
    mp__mgr_reply_error(r->c, MP_EKEY, text);
}

static int sdata_ns_get(const struct req *r)
{
    if (sdata_ns_name(r) < 0)
        return 0;
    const mp_obj *v = mp_obj_dict_get(r->o->value, mp__mgr_arg(r, 0));
    if (v)
        mp__mgr_reply_obj(r->c, v);
    else
        sdata_ns_missing(r);
    return 0;
}

static int sdata_ns_set(const struct req *r)
{
    if (sdata_ns_name(r) < 0)
        return 0;
    mp_obj *k = mp_obj_copy(mp__mgr_arg(r, 0));
    mp_obj *v = k ? mp__seq_take(r->args, 1) : NULL;
    int rc = v ? mp_obj_dict_set(r->o->value, k, v) : -ENOMEM;
    if (rc < 0) {
        mp_obj_free(k);
        mp_obj_free(v);
        return rc;
    }
    mp__mgr_reply_none(r->c);
    return 0;
}

static int sdata_ns_del(const struct req *r)
{
    if (sdata_ns_name(r) < 0)
        return 0;
    if (mp_obj_dict_del(r->o->value, mp__mgr_arg(r, 0)) < 0)
        sdata_ns_missing(r);
    else
        mp__mgr_reply_none(r->c);
    return 0;
}

static const struct method ns_methods[] = {
    {"get", 1, 1, sdata_ns_get},
    {"set", 2, 2, sdata_ns_set},
    {"del", 1, 1, sdata_ns_del},
    {"copy", 0, 0, mp__mgr_value_copy},
};

const struct stype mp__mgr_type_namespace = {"namespace", MP__MGR_METHODS(ns_methods),
                                             sdata_ns_init, NULL};
