/*
 * unpickle_scalar - the decoder's value opcodes (unpickle.c runs the
 * machine): None, bools, ints of every width, floats, str, bytes and
 * bytearray. Statics start with unpickle_scalar_.
 */
#include "codec/unpickle.h"

/* An int: a shared immortal node for -5..256 (no allocation), else new. */
static int unpickle_scalar_int(struct unpickler *u, int64_t v)
{
    mp_obj *o = mp__obj_immortal_int(v);
    if (!o) {
        int rc = unpickle_new_node(u, MP_TYPE_INT, &o);
        if (rc < 0)
            return rc;
        o->u.i = v;
    }
    return unpickle_push(u, o);
}

/* LONG1/LONG4's bytes (little-endian two's complement, in the input): an
 * int64 when the value fits, else a big int node, charged like a str. The
 * length was checked against the input before: nothing is allocated for
 * bytes that are not there. */
static int unpickle_scalar_long(struct unpickler *u, const unsigned char *p, size_t len)
{
    len = mp__int_canonical_len(p, len);
    if (len <= 8)
        return unpickle_scalar_int(u, mp__int_le_to_i64(p, len));
    int rc = unpickle_charge(u, sizeof(mp_obj) + len + 1);
    if (rc < 0)
        return rc;
    mp_obj *o = unpickle_arena_add(u, mp__obj_bigint(p, len));
    return o ? unpickle_push(u, o) : -ENOMEM;
}

/* INT and LONG's decimal text: int64 at once, else a big int (Python's
 * int(text), up to its 4300 digits; beyond, its ValueError is MP_EPROTO
 * here, as every refused pickle). */
static int unpickle_scalar_decimal(struct unpickler *u, const unsigned char *s, size_t n)
{
    int64_t iv;
    if (mp__pickle_parse_int(s, n, &iv) == 0)
        return unpickle_scalar_int(u, iv);
    size_t i = n && (s[0] == '-' || s[0] == '+');
    for (size_t k = i; k < n; k++)
        if (s[k] < '0' || s[k] > '9')
            return MP_EPROTO;
    unsigned char *le;
    size_t len;
    int rc = mp__int_from_digits(n && s[0] == '-', (const char *)s + i, n - i, &le, &len);
    if (rc == MP_EVALUE)
        return MP_EPROTO;
    if (rc < 0)
        return rc;
    rc = unpickle_scalar_long(u, le, len);
    free(le);
    return rc;
}

static int unpickle_scalar_float(struct unpickler *u, double v)
{
    mp_obj *o;
    int rc = unpickle_new_node(u, MP_TYPE_FLOAT, &o);
    if (rc < 0)
        return rc;
    mp__obj_set_float(o, v);
    return unpickle_push(u, o);
}

static int unpickle_scalar_str(struct unpickler *u, size_t len)
{
    const unsigned char *s = u->p + u->pos;
    if (!mp__str_valid(s, len))
        return MP_EPROTO; /* Python's "utf-8" with "surrogatepass" decodes it */
    u->pos += len;
    return unpickle_push_strbytes(u, MP_TYPE_STR, s, len);
}

static int unpickle_scalar_bytes(struct unpickler *u, int type, size_t len)
{
    const unsigned char *s = u->p + u->pos;
    u->pos += len;
    return unpickle_push_strbytes(u, type, s, len);
}

/* Protocol 0's UNICODE: raw-unicode-escape converted to UTF-8, which takes
 * at most two bytes per input byte. */
static int unpickle_scalar_raw_unicode(struct unpickler *u, const unsigned char *s, size_t n)
{
    size_t cap;
    if (mp__add_overflows(n, n, &cap))
        return -ENOMEM;
    if (cap + 1 > u->mem)
        return MP_EPROTO; /* held only until the str is made, but held */
    unsigned char *out = malloc(cap + 1);
    if (!out)
        return -ENOMEM;
    size_t len;
    int rc = mp__pickle_raw_unicode(s, n, out, &len);
    if (rc == 0)
        rc = unpickle_push_strbytes(u, MP_TYPE_STR, out, len);
    free(out);
    return rc;
}

/* ---- The handlers (unpickle.c's dispatch table) ---- */

int mp__unpickle_op_none(struct unpickler *u)
{
    return unpickle_push(u, mp_obj_none());
}

/* NEWTRUE, NEWFALSE */
int mp__unpickle_op_bool(struct unpickler *u)
{
    return unpickle_push(u, mp_obj_bool(u->op == MP__OP_NEWTRUE));
}

int mp__unpickle_op_int(struct unpickler *u)
{
    const unsigned char *line;
    size_t len;
    int rc = unpickle_read_line(u, &line, &len);
    if (rc < 0)
        return rc;
    if (len == 2 && line[0] == '0' && (line[1] == '0' || line[1] == '1'))
        return unpickle_push(u, mp_obj_bool(line[1] == '1')); /* protocol 0-1 True/False */
    return unpickle_scalar_decimal(u, line, len);
}

int mp__unpickle_op_long(struct unpickler *u)
{
    const unsigned char *line;
    size_t len;
    int rc = unpickle_read_line(u, &line, &len);
    if (rc < 0)
        return rc;
    if (len && line[len - 1] == 'L')
        len--;
    return unpickle_scalar_decimal(u, line, len);
}

int mp__unpickle_op_binint(struct unpickler *u)
{
    uint64_t v;
    int rc = unpickle_read_le(u, 4, &v);
    return rc < 0 ? rc : unpickle_scalar_int(u, (int32_t)(uint32_t)v);
}

int mp__unpickle_op_binint1(struct unpickler *u)
{
    int rc = unpickle_need(u, 1);
    return rc < 0 ? rc : unpickle_scalar_int(u, u->p[u->pos++]);
}

int mp__unpickle_op_binint2(struct unpickler *u)
{
    uint64_t v;
    int rc = unpickle_read_le(u, 2, &v);
    return rc < 0 ? rc : unpickle_scalar_int(u, (int64_t)v);
}

/* LONG1, LONG4 */
int mp__unpickle_op_long_bin(struct unpickler *u)
{
    size_t len;
    int rc;
    if (u->op == MP__OP_LONG4) {
        if ((rc = unpickle_need(u, 4)) < 0)
            return rc;
        if (u->p[u->pos + 3] & 0x80)
            return MP_EPROTO; /* negative byte count */
    }
    if ((rc = unpickle_read_len(u, unpickle_width(u->op), &len)) < 0)
        return rc;
    u->pos += len;
    return unpickle_scalar_long(u, u->p + u->pos - len, len);
}

int mp__unpickle_op_float(struct unpickler *u)
{
    const unsigned char *line;
    size_t len;
    double f;
    int rc = unpickle_read_line(u, &line, &len);
    if (rc < 0)
        return rc;
    if ((rc = mp__pickle_parse_float(line, len, &f)) < 0)
        return rc;
    return unpickle_scalar_float(u, f);
}

int mp__unpickle_op_binfloat(struct unpickler *u)
{
    int rc = unpickle_need(u, 8);
    if (rc < 0)
        return rc;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits = bits << 8 | u->p[u->pos + (size_t)i]; /* big-endian */
    u->pos += 8;
    double f;
    memcpy(&f, &bits, sizeof bits);
    return unpickle_scalar_float(u, f);
}

/* SHORT_BINUNICODE, BINUNICODE, BINUNICODE8 */
int mp__unpickle_op_binunicode(struct unpickler *u)
{
    size_t len;
    int rc = unpickle_read_len(u, unpickle_width(u->op), &len);
    return rc < 0 ? rc : unpickle_scalar_str(u, len);
}

int mp__unpickle_op_unicode(struct unpickler *u)
{
    const unsigned char *line;
    size_t len;
    int rc = unpickle_read_line(u, &line, &len);
    return rc < 0 ? rc : unpickle_scalar_raw_unicode(u, line, len);
}

/* SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8 */
int mp__unpickle_op_binbytes(struct unpickler *u)
{
    size_t len;
    int rc = unpickle_read_len(u, unpickle_width(u->op), &len);
    if (rc < 0)
        return rc;
    return unpickle_scalar_bytes(u, u->op == MP__OP_BYTEARRAY8 ? MP_TYPE_BYTEARRAY : MP_TYPE_BYTES,
                                 len);
}
