/*
 * obj - values (obj.h). Layout and raw helpers in objimpl.h.
 *
 * Every public mutator keeps three invariants that make the rest simple:
 * a node has at most one owner (parent), a container never holds one of its
 * ancestors, and no tree nests deeper than MP_OBJ_MAX_DEPTH. Free, copy,
 * equality and repr can then recurse without bound checks or cycle tracking.
 */
#include "codec/objimpl.h"
#include "codec/unicode_printable.h"
#include "core/internal.h"
#include "core/io.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DICT_MIN_CAP 8u
#define INDEX_EMPTY  ((size_t)0)
#define INDEX_DUMMY  SIZE_MAX

/* ---- Keyed hashing ------------------------------------------------------
 *
 * Dicts decoded from a peer's pickle hold keys the peer chose. With a fixed
 * hash function a peer could send thousands of colliding keys and make each
 * insert linear (HashDoS). Python salts its str hash per process for that
 * reason; so do we, for every key type: SipHash-1-3 (Python's own since
 * 3.11) over a canonical byte form of the key - the int64 of an int, bool
 * or integral float (so 1, 1.0 and True hash alike, as they are equal),
 * the bits of any other float, the bytes of a str or bytes - with a 128-bit
 * key drawn once per process from the kernel (getrandom, or /dev/urandom).
 * A peer that knows all of this but not the key cannot choose colliding
 * keys: there is no reduction modulo a known number, and no structure in
 * the output to aim at. NaN is hashed by identity (below), as in Python:
 * NaN never equals NaN, so equal bits must not mean equal hashes.
 * Forked children inherit the key, as Python's children inherit theirs.
 */

static uint64_t hash_k0, hash_k1;
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void hash_seed(void)
{
    uint64_t k[2];
    int saved = errno; /* the first hash of a dict call draws the key */
    int rc = mp__random_bytes(k, sizeof k);
    errno = saved;
    if (rc == 0) {
        hash_k0 = k[0];
        hash_k1 = k[1];
        return;
    }
    /* No kernel randomness at all (getrandom refused and no /dev/urandom: a
     * strict sandbox or chroot). The best left is what a remote peer cannot
     * see exactly: clocks, pid and address-space layout. */
    struct timespec rt = {0, 0}, mono = {0, 0};
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    int local = 0;
    uint64_t s = (uint64_t)rt.tv_sec * UINT64_C(1000000007) ^ (uint64_t)rt.tv_nsec;
    s ^= ((uint64_t)mono.tv_nsec << 20) ^ (uint64_t)mono.tv_sec;
    s ^= (uint64_t)(uintptr_t)&local ^ ((uint64_t)(uintptr_t)&hash_k0 << 7);
    s ^= (uint64_t)(uintptr_t)&hash_seed << 13 ^ (uint64_t)getpid() << 32;
    hash_k0 = splitmix64(&s);
    hash_k1 = splitmix64(&s);
}

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL64(v1, 13);                                                                       \
        v1 ^= v0;                                                                                  \
        v0 = ROTL64(v0, 32);                                                                       \
        v2 += v3;                                                                                  \
        v3 = ROTL64(v3, 16);                                                                       \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL64(v3, 21);                                                                       \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL64(v1, 17);                                                                       \
        v1 ^= v2;                                                                                  \
        v2 = ROTL64(v2, 32);                                                                       \
    } while (0)

/* SipHash-1-3 of a tag byte followed by len bytes at p. The tag keeps str
 * "a" and bytes b"a" apart (they are never equal in Python 3). */
static uint64_t siphash13(unsigned char tag, const unsigned char *p, size_t len)
{
    pthread_once(&hash_once, hash_seed);
    uint64_t v0 = hash_k0 ^ UINT64_C(0x736f6d6570736575);
    uint64_t v1 = hash_k1 ^ UINT64_C(0x646f72616e646f6d);
    uint64_t v2 = hash_k0 ^ UINT64_C(0x6c7967656e657261);
    uint64_t v3 = hash_k1 ^ UINT64_C(0x7465646279746573);
    uint64_t total = (uint64_t)len + 1;
    unsigned char block[8];
    size_t fill = 0;
    block[fill++] = tag;
    for (;;) {
        size_t take = 8 - fill;
        if (take > len)
            take = len;
        if (take) { /* p may be NULL when len is 0 */
            memcpy(block + fill, p, take);
            p += take;
        }
        fill += take;
        len -= take;
        if (fill < 8)
            break;
        uint64_t m = 0;
        for (int i = 7; i >= 0; i--)
            m = m << 8 | block[i];
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
        fill = 0;
    }
    uint64_t b = total << 56;
    for (size_t i = 0; i < fill; i++)
        b |= (uint64_t)block[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_i64(int64_t v)
{
    unsigned char b[8];
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(u >> (8 * i));
    return siphash13('i', b, 8);
}

/* A double that holds an integer in int64 range, as that integer. Python's
 * int/float comparisons are exact, so only these floats can equal an int. */
static bool double_as_i64(double f, int64_t *out)
{
    if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0))
        return false; /* NaN, infinities, out of range */
    int64_t i = (int64_t)f;
    if ((double)i != f)
        return false;
    *out = i;
    return true;
}

/* NaN identities: 1, 2, 3... never reused in a process (a 64-bit counter
 * does not wrap), so two NaN nodes share one only when one is a copy of the
 * other. The hash is keyed, so the sequence is not a pattern a peer can aim
 * at. */
static atomic_uint_fast64_t nan_ids;

void mp__obj_set_float(mp_obj *o, double v)
{
    o->u.fl.value = v;
    o->u.fl.nan_id =
        isnan(v) ? atomic_fetch_add_explicit(&nan_ids, 1, memory_order_relaxed) + 1 : 0;
}

/* Python's "is" for two nodes: the same node, or copies of one NaN. */
static bool same_object(const mp_obj *a, const mp_obj *b)
{
    return a == b || (a->type == MP_TYPE_FLOAT && b->type == MP_TYPE_FLOAT && a->u.fl.nan_id &&
                      a->u.fl.nan_id == b->u.fl.nan_id);
}

/* ---- Immortal nodes ------------------------------------------------------
 *
 * None, False, True and the ints -5..256 (CPython's small-int cache) exist
 * once each. A decoded list of a million Nones or small ints then costs a
 * pointer per item, as in Python, instead of a node per item. Nothing
 * writes to these nodes, so threads share them freely.
 */

#define SMALL_INT_MIN (-5)
#define SMALL_INT_MAX 256

#define IMM(t, field, v)                                                                           \
    {                                                                                              \
        .type = (t), .flags = MP__F_IMMORTAL, .u.field = (v)                                       \
    }
#define I1(v)  IMM(MP_TYPE_INT, i, (v))
#define I4(v)  I1(v), I1((v) + 1), I1((v) + 2), I1((v) + 3)
#define I16(v) I4(v), I4((v) + 4), I4((v) + 8), I4((v) + 12)
#define I64(v) I16(v), I16((v) + 16), I16((v) + 32), I16((v) + 48)

static mp_obj imm_none = IMM(MP_TYPE_NONE, i, 0);
static mp_obj imm_bool[2] = {IMM(MP_TYPE_BOOL, b, false), IMM(MP_TYPE_BOOL, b, true)};
static mp_obj imm_int[SMALL_INT_MAX - SMALL_INT_MIN + 1] = {
    I1(-5), I1(-4), I1(-3), I1(-2), I1(-1), I64(0), I64(64), I64(128), I64(192), I1(256),
};

/* A node joins a container: record the owner (immortal nodes have none). */
static void set_parent(mp_obj *item, mp_obj *parent)
{
    if (!mp__obj_immortal(item))
        item->parent = parent;
}

/* ---- UTF-8 ------------------------------------------------------------- */

bool mp__utf8_valid(const unsigned char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates U+D800..U+DFFF */
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else {
            return false; /* continuation byte, overlong C0/C1, F5..FF */
        }
        if (len - i <= need)
            return false;
        if (p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= need; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf)
                return false;
        i += need + 1;
    }
    return true;
}

/* ---- Nodes -------------------------------------------------------------- */

mp_obj *mp__obj_alloc(int type)
{
    mp_obj *o = calloc(1, sizeof *o);
    if (o)
        o->type = (uint8_t)type;
    return o;
}

mp_obj *mp__obj_strbytes(int type, const void *p, size_t len)
{
    size_t size;
    if (mp__add_overflows(sizeof(mp_obj), len, &size) || mp__add_overflows(size, 1, &size))
        return NULL;
    mp_obj *o = malloc(size);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->type = (uint8_t)type;
    char *data = (char *)(o + 1);
    if (len)
        memcpy(data, p, len);
    data[len] = '\0';
    o->u.s.data = data;
    o->u.s.len = len;
    return o;
}

static bool is_seq(const mp_obj *o)
{
    return o->type == MP_TYPE_LIST || o->type == MP_TYPE_TUPLE;
}

void mp__obj_free_node(mp_obj *o)
{
    if (!o || mp__obj_immortal(o))
        return;
    if (is_seq(o))
        free(o->u.seq.items);
    else if (o->type == MP_TYPE_DICT)
        free(o->u.d.entries);
    free(o);
}

void mp__obj_free_tree(mp_obj *o)
{
    if (!o || mp__obj_immortal(o))
        return;
    if (is_seq(o)) {
        for (size_t i = 0; i < o->u.seq.len; i++)
            mp__obj_free_tree(o->u.seq.items[i]);
    } else if (o->type == MP_TYPE_DICT) {
        for (size_t i = 0; i < o->u.d.n; i++) {
            struct mp__dict_entry *e = &o->u.d.entries[i];
            if (e->key) {
                mp__obj_free_tree(e->key);
                mp__obj_free_tree(e->value);
            }
        }
    }
    mp__obj_free_node(o);
}

MP_API void mp_obj_free(mp_obj *o)
{
    /* An item belongs to its container: freeing it here would leave the
     * container pointing at freed memory, so that misuse is ignored. */
    if (!o || o->parent)
        return;
    int saved = errno;
    mp__obj_free_tree(o);
    errno = saved;
}

MP_API mp_obj *mp_obj_none(void)
{
    return &imm_none;
}

MP_API mp_obj *mp_obj_bool(bool v)
{
    return &imm_bool[v ? 1 : 0];
}

mp_obj *mp__obj_immortal_int(int64_t v)
{
    return v >= SMALL_INT_MIN && v <= SMALL_INT_MAX ? &imm_int[v - SMALL_INT_MIN] : NULL;
}

MP_API mp_obj *mp_obj_int(int64_t v)
{
    mp_obj *o = mp__obj_immortal_int(v);
    if (o)
        return o;
    o = mp__obj_alloc(MP_TYPE_INT);
    if (o)
        o->u.i = v;
    return o;
}

MP_API mp_obj *mp_obj_float(double v)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_FLOAT);
    if (o)
        mp__obj_set_float(o, v);
    return o;
}

MP_API mp_obj *mp_obj_str(const char *s, size_t len)
{
    if (!s && len)
        return NULL;
    if (!mp__utf8_valid((const unsigned char *)s, len))
        return NULL;
    return mp__obj_strbytes(MP_TYPE_STR, s, len);
}

MP_API mp_obj *mp_obj_str_cstr(const char *s)
{
    if (!s)
        return NULL;
    return mp_obj_str(s, strlen(s));
}

MP_API mp_obj *mp_obj_bytes(const void *p, size_t len)
{
    if (!p && len)
        return NULL;
    return mp__obj_strbytes(MP_TYPE_BYTES, p, len);
}

MP_API mp_obj *mp_obj_list_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_LIST);
    if (o)
        o->height = 1;
    return o;
}

MP_API mp_obj *mp_obj_tuple_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_TUPLE);
    if (o)
        o->height = 1;
    return o;
}

MP_API mp_obj *mp_obj_dict_new(void)
{
    mp_obj *o = mp__obj_alloc(MP_TYPE_DICT);
    if (o)
        o->height = 1;
    return o;
}

/* ---- Accessors ---------------------------------------------------------- */

MP_API int mp_obj_type(const mp_obj *o)
{
    if (!o)
        return -EINVAL;
    return o->type;
}

MP_API const char *mp_type_name(int type)
{
    switch (type) {
    case MP_TYPE_NONE:
        return "NoneType";
    case MP_TYPE_BOOL:
        return "bool";
    case MP_TYPE_INT:
        return "int";
    case MP_TYPE_FLOAT:
        return "float";
    case MP_TYPE_STR:
        return "str";
    case MP_TYPE_BYTES:
        return "bytes";
    case MP_TYPE_LIST:
        return "list";
    case MP_TYPE_TUPLE:
        return "tuple";
    case MP_TYPE_DICT:
        return "dict";
    default:
        return "?";
    }
}

MP_API bool mp_obj_is_none(const mp_obj *o)
{
    return o && o->type == MP_TYPE_NONE;
}

MP_API int mp_obj_get_bool(const mp_obj *o, bool *v)
{
    if (!o || !v)
        return -EINVAL;
    if (o->type != MP_TYPE_BOOL)
        return MP_ETYPE;
    *v = o->u.b;
    return 0;
}

MP_API int mp_obj_get_int(const mp_obj *o, int64_t *v)
{
    if (!o || !v)
        return -EINVAL;
    if (o->type == MP_TYPE_INT)
        *v = o->u.i;
    else if (o->type == MP_TYPE_BOOL)
        *v = o->u.b;
    else
        return MP_ETYPE;
    return 0;
}

MP_API int mp_obj_get_float(const mp_obj *o, double *v)
{
    if (!o || !v)
        return -EINVAL;
    if (o->type != MP_TYPE_FLOAT)
        return MP_ETYPE;
    *v = o->u.f;
    return 0;
}

MP_API int mp_obj_get_str(const mp_obj *o, const char **s, size_t *len)
{
    if (!o || !s)
        return -EINVAL;
    if (o->type != MP_TYPE_STR)
        return MP_ETYPE;
    *s = o->u.s.data;
    if (len)
        *len = o->u.s.len;
    return 0;
}

MP_API int mp_obj_get_bytes(const mp_obj *o, const unsigned char **p, size_t *len)
{
    if (!o || !p)
        return -EINVAL;
    if (o->type != MP_TYPE_BYTES)
        return MP_ETYPE;
    *p = (const unsigned char *)o->u.s.data;
    if (len)
        *len = o->u.s.len;
    return 0;
}

MP_API ssize_t mp_obj_len(const mp_obj *o)
{
    if (!o)
        return -EINVAL;
    switch (o->type) {
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE:
        return (ssize_t)o->u.seq.len;
    case MP_TYPE_DICT:
        return (ssize_t)o->u.d.used;
    case MP_TYPE_BYTES:
        return (ssize_t)o->u.s.len;
    case MP_TYPE_STR: {
        /* Valid UTF-8: one code point per byte that is not a continuation. */
        ssize_t n = 0;
        for (size_t i = 0; i < o->u.s.len; i++)
            n += ((unsigned char)o->u.s.data[i] & 0xc0) != 0x80;
        return n;
    }
    default:
        return MP_ETYPE;
    }
}

/* ---- Hashing and equality ----------------------------------------------- */

/* FNV-like combination of item hashes, after CPython's xxHash-based tuple
 * hash; the item hashes are keyed already. */
#define XXPRIME_1 UINT64_C(11400714785074694791)
#define XXPRIME_2 UINT64_C(14029467366897019727)
#define XXPRIME_5 UINT64_C(2870177450012600261)

int mp__obj_hash(const mp_obj *o, bool cache, uint64_t *h)
{
    int64_t iv;
    switch (o->type) {
    case MP_TYPE_NONE:
        *h = siphash13('N', NULL, 0);
        return 0;
    case MP_TYPE_BOOL:
        *h = hash_i64(o->u.b);
        return 0;
    case MP_TYPE_INT:
        *h = hash_i64(o->u.i);
        return 0;
    case MP_TYPE_FLOAT: {
        if (double_as_i64(o->u.f, &iv)) {
            *h = hash_i64(iv); /* 1.0 hashes as 1, -0.0 as 0 */
            return 0;
        }
        unsigned char b[8];
        if (isnan(o->u.f)) {
            /* By identity, as Python does (NaN equals nothing, so its
             * bits say nothing about which key it is): the NaN's identity,
             * or for a node made without one (a probe on the stack) its
             * address. Distinct NaN objects spread over the whole table. */
            uint64_t id = o->u.fl.nan_id;
            unsigned char tag = 'n';
            if (!id) {
                id = (uint64_t)(uintptr_t)o;
                tag = 'a';
            }
            memcpy(b, &id, 8);
            *h = siphash13(tag, b, 8);
            return 0;
        }
        memcpy(b, &o->u.f, 8);
        *h = siphash13('f', b, 8);
        return 0;
    }
    case MP_TYPE_STR:
    case MP_TYPE_BYTES:
        if (o->flags & MP__F_HASHED) {
            *h = o->u.s.hash;
            return 0;
        }
        *h = siphash13(o->type == MP_TYPE_STR ? 's' : 'b', (const unsigned char *)o->u.s.data,
                       o->u.s.len);
        if (cache) {
            mp_obj *w = (mp_obj *)o;
            w->u.s.hash = *h;
            w->flags |= MP__F_HASHED;
        }
        return 0;
    case MP_TYPE_TUPLE: {
        if (o->flags & MP__F_HASHED) {
            *h = o->u.seq.hash;
            return 0;
        }
        uint64_t acc = XXPRIME_5;
        for (size_t i = 0; i < o->u.seq.len; i++) {
            uint64_t lane;
            int rc = mp__obj_hash(o->u.seq.items[i], cache, &lane);
            if (rc < 0)
                return rc;
            acc += lane * XXPRIME_2;
            acc = ROTL64(acc, 31);
            acc *= XXPRIME_1;
        }
        acc += (uint64_t)o->u.seq.len ^ (XXPRIME_5 ^ UINT64_C(3527539));
        *h = acc;
        if (cache) {
            mp_obj *w = (mp_obj *)o;
            w->u.seq.hash = acc;
            w->flags |= MP__F_HASHED;
        }
        return 0;
    }
    default:
        return MP_ETYPE; /* list, dict: unhashable, as in Python */
    }
}

static bool is_number(const mp_obj *o)
{
    return o->type == MP_TYPE_BOOL || o->type == MP_TYPE_INT || o->type == MP_TYPE_FLOAT;
}

static bool numbers_equal(const mp_obj *a, const mp_obj *b)
{
    if (a->type == MP_TYPE_FLOAT && b->type == MP_TYPE_FLOAT)
        return a->u.f == b->u.f;
    if (a->type == MP_TYPE_FLOAT || b->type == MP_TYPE_FLOAT) {
        const mp_obj *f = a->type == MP_TYPE_FLOAT ? a : b;
        const mp_obj *n = f == a ? b : a;
        int64_t iv = n->type == MP_TYPE_INT ? n->u.i : n->u.b;
        int64_t fv;
        return double_as_i64(f->u.f, &fv) && fv == iv;
    }
    int64_t x = a->type == MP_TYPE_INT ? a->u.i : a->u.b;
    int64_t y = b->type == MP_TYPE_INT ? b->u.i : b->u.b;
    return x == y;
}

static int dict_lookup(const mp_obj *d, const mp_obj *key, uint64_t h, size_t *work,
                       size_t *slot_out, size_t *entry_out);

static int eq_items(const mp_obj *a, const mp_obj *b, size_t *work);

/*
 * a == b: 1 equal, 0 not. work (NULL: unlimited) is a budget of bytes the
 * comparison may walk: the decoder compares keys while its values are still
 * graphs with shared nodes, where a plain walk can take exponential time;
 * running out gives MP_EPROTO.
 */
static int eq_rec(const mp_obj *a, const mp_obj *b, size_t *work)
{
    if (work) {
        if (*work < sizeof(mp_obj))
            return MP_EPROTO;
        *work -= sizeof(mp_obj);
    }
    if (is_number(a) && is_number(b))
        return numbers_equal(a, b);
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case MP_TYPE_NONE:
        return 1;
    case MP_TYPE_STR:
    case MP_TYPE_BYTES:
        if (a->u.s.len != b->u.s.len)
            return 0;
        if (work) {
            if (*work < a->u.s.len)
                return MP_EPROTO;
            *work -= a->u.s.len;
        }
        return memcmp(a->u.s.data, b->u.s.data, a->u.s.len) == 0;
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE:
        if (a->u.seq.len != b->u.seq.len)
            return 0;
        for (size_t i = 0; i < a->u.seq.len; i++) {
            int rc = eq_items(a->u.seq.items[i], b->u.seq.items[i], work);
            if (rc <= 0)
                return rc;
        }
        return 1;
    case MP_TYPE_DICT:
        if (a->u.d.used != b->u.d.used)
            return 0;
        for (size_t i = 0; i < a->u.d.n; i++) {
            const struct mp__dict_entry *e = &a->u.d.entries[i];
            if (!e->key)
                continue;
            size_t slot, idx;
            int rc = dict_lookup(b, e->key, e->hash, work, &slot, &idx);
            if (rc <= 0)
                return rc;
            rc = eq_items(e->value, b->u.d.entries[idx].value, work);
            if (rc <= 0)
                return rc;
        }
        return 1;
    default:
        return 0;
    }
}

/* Python's PyObject_RichCompareBool: identity first, then ==. Containers
 * compare their items this way, so [nan] == [nan] only when it is the same
 * float object: one node, or copies of one NaN (mp__obj_set_float). */
static int eq_items(const mp_obj *a, const mp_obj *b, size_t *work)
{
    return same_object(a, b) ? 1 : eq_rec(a, b, work);
}

MP_API bool mp_obj_equal(const mp_obj *a, const mp_obj *b)
{
    if (!a || !b)
        return false;
    return eq_rec(a, b, NULL) == 1;
}

/* ---- Sequences ---------------------------------------------------------- */

size_t mp__seq_cap_for(size_t cap, size_t need)
{
    if (need <= cap)
        return cap;
    size_t c = cap ? cap : 4;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return 0;
        c *= 2;
    }
    return c > SIZE_MAX / sizeof(mp_obj *) ? 0 : c;
}

int mp__seq_reserve(mp_obj *seq, size_t n)
{
    size_t need;
    if (mp__add_overflows(seq->u.seq.len, n, &need))
        return -ENOMEM;
    if (need <= seq->u.seq.cap)
        return 0;
    size_t cap = mp__seq_cap_for(seq->u.seq.cap, need);
    if (!cap)
        return -ENOMEM;
    mp_obj **items = realloc(seq->u.seq.items, cap * sizeof *items);
    if (!items)
        return -ENOMEM;
    seq->u.seq.items = items;
    seq->u.seq.cap = cap;
    return 0;
}

int mp__seq_push(mp_obj *seq, mp_obj *item)
{
    int rc = mp__seq_reserve(seq, 1);
    if (rc < 0)
        return rc;
    seq->u.seq.items[seq->u.seq.len++] = item;
    return 0;
}

/* The number of containers from the root down to c, c included; *root gets
 * the root. Bounded by MP_OBJ_MAX_DEPTH. */
static unsigned level_of(const mp_obj *c, const mp_obj **root)
{
    unsigned level = 1;
    while (c->parent) {
        c = c->parent;
        level++;
    }
    *root = c;
    return level;
}

/* An item of height h went into c: raise the heights on the way up. */
static void raise_heights(mp_obj *c, unsigned h)
{
    while (c) {
        unsigned nh = h + 1;
        if (c->height >= nh)
            return;
        c->height = (uint16_t)nh;
        h = nh;
        c = c->parent;
    }
}

/* The checks shared by every call that puts an item into container c:
 * -EINVAL for misuse that would break the tree, MP_EVALUE for depth. */
static int check_insert(const mp_obj *c, const mp_obj *item)
{
    if (item->parent)
        return -EINVAL; /* owned by another container already */
    const mp_obj *root;
    unsigned level = level_of(c, &root);
    if (root == item)
        return -EINVAL; /* c is inside item (or is item): a cycle */
    if (level + item->height > MP_OBJ_MAX_DEPTH)
        return MP_EVALUE;
    return 0;
}

static int seq_append(mp_obj *seq, mp_obj *item)
{
    int rc = check_insert(seq, item);
    if (rc < 0)
        return rc;
    rc = mp__seq_push(seq, item);
    if (rc < 0)
        return rc;
    set_parent(item, seq);
    raise_heights(seq, item->height);
    return 0;
}

MP_API int mp_obj_list_append(mp_obj *list, mp_obj *item)
{
    if (!list || !item)
        return -EINVAL;
    if (list->type != MP_TYPE_LIST)
        return MP_ETYPE;
    return seq_append(list, item);
}

MP_API int mp_obj_tuple_append(mp_obj *tuple, mp_obj *item)
{
    if (!tuple || !item)
        return -EINVAL;
    if (tuple->type != MP_TYPE_TUPLE)
        return MP_ETYPE;
    if (tuple->parent)
        return -EINVAL; /* inside a value: immutable (it may be a dict key) */
    int rc = seq_append(tuple, item);
    if (rc == 0)
        tuple->flags &= (uint8_t)~MP__F_HASHED;
    return rc;
}

MP_API mp_obj *mp_obj_list_get(const mp_obj *seq, size_t i)
{
    if (!seq || !is_seq(seq) || i >= seq->u.seq.len)
        return NULL;
    return seq->u.seq.items[i];
}

MP_API int mp_obj_list_set(mp_obj *list, size_t i, mp_obj *item)
{
    if (!list || !item)
        return -EINVAL;
    if (list->type != MP_TYPE_LIST)
        return MP_ETYPE;
    if (i >= list->u.seq.len)
        return MP_EKEY;
    int rc = check_insert(list, item);
    if (rc < 0)
        return rc;
    mp__obj_free_tree(list->u.seq.items[i]);
    list->u.seq.items[i] = item;
    set_parent(item, list);
    /* Heights stay upper bounds when the old item was deeper. */
    raise_heights(list, item->height);
    return 0;
}

/* ---- Dicts ---------------------------------------------------------------
 *
 * CPython's compact layout: entries in insertion order, and an index of
 * 2*cap slots (linear probing) holding entry numbers + 1, INDEX_EMPTY or
 * INDEX_DUMMY for a deleted entry. At most cap entries are written before a
 * rebuild, so at least half the slots are always empty and probing ends.
 */

static size_t *dict_index(const mp_obj *d)
{
    return (size_t *)(void *)(d->u.d.entries + d->u.d.cap);
}

/* Find key (hash h): 1 found (slot and entry set), 0 absent, or MP_EPROTO
 * when the comparisons ran out of work (see eq_rec). Keys match by identity
 * or equality, as in Python, which is how a NaN key can be found at all. */
static int dict_lookup(const mp_obj *d, const mp_obj *key, uint64_t h, size_t *work,
                       size_t *slot_out, size_t *entry_out)
{
    if (!d->u.d.cap)
        return 0;
    const size_t *index = dict_index(d);
    size_t mask = 2 * d->u.d.cap - 1;
    for (size_t slot = (size_t)h & mask;; slot = (slot + 1) & mask) {
        size_t v = index[slot];
        if (v == INDEX_EMPTY)
            return 0;
        if (v == INDEX_DUMMY)
            continue;
        const struct mp__dict_entry *e = &d->u.d.entries[v - 1];
        if (e->hash != h)
            continue;
        int rc = eq_items(e->key, key, work);
        if (rc < 0)
            return rc;
        if (rc) {
            *slot_out = slot;
            *entry_out = v - 1;
            return 1;
        }
    }
}

/* The capacity a rebuild gives d: room for as many new entries again as
 * it holds, so rebuilds stay amortised O(1) even when deletes made the
 * entries full (0 on overflow). */
static size_t dict_rebuild_cap(const mp_obj *d)
{
    size_t cap = DICT_MIN_CAP;
    while (cap < 2 * d->u.d.used + 1) {
        if (cap > SIZE_MAX / 4)
            return 0;
        cap *= 2;
    }
    return cap;
}

size_t mp__dict_cap_after_insert(const mp_obj *d)
{
    return d->u.d.n == d->u.d.cap ? dict_rebuild_cap(d) : d->u.d.cap;
}

/* Rebuild with room for at least one more entry, dropping deleted ones. */
static int dict_grow(mp_obj *d)
{
    size_t cap = dict_rebuild_cap(d);
    if (!cap)
        return -ENOMEM;
    /* cap entries + 2*cap slots, overflow-checked */
    size_t per = sizeof(struct mp__dict_entry) + 2 * sizeof(size_t);
    if (cap > SIZE_MAX / per)
        return -ENOMEM;
    struct mp__dict_entry *entries = malloc(cap * per);
    if (!entries)
        return -ENOMEM;
    size_t *index = (size_t *)(void *)(entries + cap);
    memset(index, 0, 2 * cap * sizeof(size_t));
    size_t mask = 2 * cap - 1, n = 0;
    for (size_t i = 0; i < d->u.d.n; i++) {
        const struct mp__dict_entry *e = &d->u.d.entries[i];
        if (!e->key)
            continue;
        entries[n] = *e;
        size_t slot = (size_t)e->hash & mask;
        while (index[slot] != INDEX_EMPTY)
            slot = (slot + 1) & mask;
        index[slot] = n + 1;
        n++;
    }
    free(d->u.d.entries);
    d->u.d.entries = entries;
    d->u.d.cap = cap;
    d->u.d.n = n;
    return 0;
}

/* Append a key known to be absent. */
static int dict_insert_new(mp_obj *d, mp_obj *key, mp_obj *value, uint64_t h)
{
    if (d->u.d.n == d->u.d.cap) {
        int rc = dict_grow(d);
        if (rc < 0)
            return rc;
    }
    size_t *index = dict_index(d);
    size_t mask = 2 * d->u.d.cap - 1;
    size_t slot = (size_t)h & mask;
    while (index[slot] != INDEX_EMPTY && index[slot] != INDEX_DUMMY)
        slot = (slot + 1) & mask;
    struct mp__dict_entry *e = &d->u.d.entries[d->u.d.n];
    e->key = key;
    e->value = value;
    e->hash = h;
    index[slot] = ++d->u.d.n;
    d->u.d.used++;
    return 0;
}

int mp__dict_store(mp_obj *d, mp_obj *key, mp_obj *value, size_t *work, mp_obj **old_value)
{
    uint64_t h;
    int rc = mp__obj_hash(key, true, &h);
    if (rc < 0)
        return rc;
    size_t slot, idx;
    rc = dict_lookup(d, key, h, work, &slot, &idx);
    if (rc < 0)
        return rc;
    if (rc) {
        *old_value = d->u.d.entries[idx].value;
        d->u.d.entries[idx].value = value;
        return 0;
    }
    *old_value = NULL;
    return dict_insert_new(d, key, value, h);
}

MP_API int mp_obj_dict_set(mp_obj *d, mp_obj *key, mp_obj *value)
{
    if (!d || !key || !value || (key == value && !mp__obj_immortal(key)))
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    int rc = check_insert(d, key);
    if (rc == 0)
        rc = check_insert(d, value);
    if (rc < 0)
        return rc;
    mp_obj *old;
    rc = mp__dict_store(d, key, value, NULL, &old);
    if (rc < 0)
        return rc;
    set_parent(value, d);
    if (old) {
        /* Python keeps the key already present and drops the new one. */
        mp__obj_free_tree(old);
        mp__obj_free_tree(key);
    } else {
        set_parent(key, d);
        raise_heights(d, key->height);
    }
    raise_heights(d, value->height);
    return 0;
}

static mp_obj *dict_get_probe(const mp_obj *d, const mp_obj *key)
{
    if (!d || !key || d->type != MP_TYPE_DICT)
        return NULL;
    uint64_t h;
    if (mp__obj_hash(key, false, &h) < 0)
        return NULL;
    size_t slot, idx;
    if (dict_lookup(d, key, h, NULL, &slot, &idx) != 1)
        return NULL;
    return d->u.d.entries[idx].value;
}

MP_API mp_obj *mp_obj_dict_get(const mp_obj *d, const mp_obj *key)
{
    return dict_get_probe(d, key);
}

MP_API mp_obj *mp_obj_dict_get_cstr(const mp_obj *d, const char *key)
{
    if (!key)
        return NULL;
    mp_obj probe;
    memset(&probe, 0, sizeof probe);
    probe.type = MP_TYPE_STR;
    probe.u.s.data = key;
    probe.u.s.len = strlen(key);
    return dict_get_probe(d, &probe);
}

MP_API mp_obj *mp_obj_dict_get_int(const mp_obj *d, int64_t key)
{
    mp_obj probe;
    memset(&probe, 0, sizeof probe);
    probe.type = MP_TYPE_INT;
    probe.u.i = key;
    return dict_get_probe(d, &probe);
}

MP_API int mp_obj_dict_del(mp_obj *d, const mp_obj *key)
{
    if (!d || !key)
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    uint64_t h;
    int rc = mp__obj_hash(key, false, &h);
    if (rc < 0)
        return rc;
    size_t slot, idx;
    if (dict_lookup(d, key, h, NULL, &slot, &idx) != 1)
        return MP_EKEY;
    struct mp__dict_entry *e = &d->u.d.entries[idx];
    mp_obj *k = e->key, *v = e->value;
    e->key = NULL;
    e->value = NULL;
    dict_index(d)[slot] = INDEX_DUMMY;
    d->u.d.used--;
    mp__obj_free_tree(k);
    mp__obj_free_tree(v);
    return 0;
}

MP_API int mp_obj_dict_next(const mp_obj *d, size_t *pos, const mp_obj **key, mp_obj **value)
{
    if (!d || !pos)
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    while (*pos < d->u.d.n) {
        const struct mp__dict_entry *e = &d->u.d.entries[(*pos)++];
        if (!e->key)
            continue;
        if (key)
            *key = e->key;
        if (value)
            *value = e->value;
        return 1;
    }
    return 0;
}

/* ---- Operations for the manager server (objimpl.h) ---------------------- */

mp_obj *mp__seq_take(mp_obj *seq, size_t i)
{
    if (!seq || !is_seq(seq) || i >= seq->u.seq.len)
        return NULL;
    mp_obj *item = seq->u.seq.items[i];
    memmove(seq->u.seq.items + i, seq->u.seq.items + i + 1,
            (seq->u.seq.len - i - 1) * sizeof *seq->u.seq.items);
    seq->u.seq.len--;
    seq->flags &= (uint8_t)~MP__F_HASHED;
    set_parent(item, NULL);
    return item;
}

int mp__list_insert(mp_obj *list, size_t i, mp_obj *item)
{
    if (!list || !item)
        return -EINVAL;
    if (list->type != MP_TYPE_LIST)
        return MP_ETYPE;
    if (i > list->u.seq.len)
        return MP_EKEY;
    int rc = check_insert(list, item);
    if (rc == 0)
        rc = mp__seq_reserve(list, 1);
    if (rc < 0)
        return rc;
    memmove(list->u.seq.items + i + 1, list->u.seq.items + i,
            (list->u.seq.len - i) * sizeof *list->u.seq.items);
    list->u.seq.items[i] = item;
    list->u.seq.len++;
    set_parent(item, list);
    raise_heights(list, item->height);
    return 0;
}

/* Unlink entry idx (found at index slot) and hand over key and value. */
static void dict_unlink(mp_obj *d, size_t slot, size_t idx, mp_obj **key_out, mp_obj **value_out)
{
    struct mp__dict_entry *e = &d->u.d.entries[idx];
    *key_out = e->key;
    *value_out = e->value;
    e->key = NULL;
    e->value = NULL;
    dict_index(d)[slot] = INDEX_DUMMY;
    d->u.d.used--;
    set_parent(*key_out, NULL);
    set_parent(*value_out, NULL);
    /* Deleted entries at the end are forgotten, so popitem() stays O(1):
     * no index slot names them (a deleted entry's slot is a dummy). */
    while (d->u.d.n > 0 && !d->u.d.entries[d->u.d.n - 1].key)
        d->u.d.n--;
}

int mp__dict_take(mp_obj *d, const mp_obj *key, mp_obj **key_out, mp_obj **value_out)
{
    if (!d || !key || !key_out || !value_out)
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    uint64_t h;
    int rc = mp__obj_hash(key, false, &h);
    if (rc < 0)
        return rc;
    size_t slot, idx;
    if (dict_lookup(d, key, h, NULL, &slot, &idx) != 1)
        return 0;
    dict_unlink(d, slot, idx, key_out, value_out);
    return 1;
}

int mp__dict_popitem(mp_obj *d, mp_obj **key_out, mp_obj **value_out)
{
    if (!d || !key_out || !value_out)
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    if (d->u.d.used == 0)
        return 0;
    size_t idx = d->u.d.n;
    while (idx > 0 && !d->u.d.entries[idx - 1].key)
        idx--;
    idx--; /* used > 0: a live entry exists */
    struct mp__dict_entry *e = &d->u.d.entries[idx];
    /* Find the index slot that names this entry. */
    size_t *index = dict_index(d);
    size_t mask = 2 * d->u.d.cap - 1;
    size_t slot = (size_t)e->hash & mask;
    while (index[slot] != idx + 1)
        slot = (slot + 1) & mask;
    dict_unlink(d, slot, idx, key_out, value_out);
    return 1;
}

/* ---- Copy --------------------------------------------------------------- */

static size_t node_cost(const mp_obj *o)
{
    size_t c = sizeof(mp_obj);
    if (o->type == MP_TYPE_STR || o->type == MP_TYPE_BYTES)
        c += o->u.s.len + 1;
    else if (is_seq(o))
        c += o->u.seq.len * sizeof(mp_obj *);
    else if (o->type == MP_TYPE_DICT)
        c += o->u.d.used * (sizeof(struct mp__dict_entry) + 4 * sizeof(size_t));
    return c;
}

static int charge(size_t *budget, size_t cost)
{
    if (*budget < cost)
        return MP_EPROTO;
    *budget -= cost;
    return 0;
}

int mp__obj_copy_limited(const mp_obj *o, size_t *budget, mp_obj **out)
{
    *out = NULL;
    if (mp__obj_immortal(o)) {
        *out = (mp_obj *)o; /* shared, never written: nothing to copy */
        return 0;
    }
    int rc = charge(budget, node_cost(o));
    if (rc < 0)
        return rc;
    mp_obj *c;
    if (o->type == MP_TYPE_STR || o->type == MP_TYPE_BYTES) {
        c = mp__obj_strbytes(o->type, o->u.s.data, o->u.s.len);
        if (!c)
            return -ENOMEM;
        c->flags = o->flags & MP__F_HASHED;
        c->u.s.hash = o->u.s.hash;
        *out = c;
        return 0;
    }
    c = mp__obj_alloc(o->type);
    if (!c)
        return -ENOMEM;
    c->height = o->height;
    if (is_seq(o)) {
        c->flags = o->flags & MP__F_HASHED;
        c->u.seq.hash = o->u.seq.hash;
        rc = mp__seq_reserve(c, o->u.seq.len);
        for (size_t i = 0; rc == 0 && i < o->u.seq.len; i++) {
            mp_obj *item;
            rc = mp__obj_copy_limited(o->u.seq.items[i], budget, &item);
            if (rc == 0) {
                set_parent(item, c);
                c->u.seq.items[c->u.seq.len++] = item;
            }
        }
    } else if (o->type == MP_TYPE_DICT) {
        for (size_t i = 0; rc == 0 && i < o->u.d.n; i++) {
            const struct mp__dict_entry *e = &o->u.d.entries[i];
            if (!e->key)
                continue;
            mp_obj *k = NULL, *v = NULL;
            rc = mp__obj_copy_limited(e->key, budget, &k);
            if (rc == 0)
                rc = mp__obj_copy_limited(e->value, budget, &v);
            if (rc == 0)
                rc = dict_insert_new(c, k, v, e->hash);
            if (rc < 0) {
                mp__obj_free_tree(k);
                mp__obj_free_tree(v);
                break;
            }
            set_parent(k, c);
            set_parent(v, c);
        }
    } else {
        c->u = o->u; /* a scalar; a NaN keeps its identity (objimpl.h) */
    }
    if (rc < 0) {
        mp__obj_free_tree(c);
        return rc;
    }
    *out = c;
    return 0;
}

MP_API mp_obj *mp_obj_copy(const mp_obj *o)
{
    if (!o)
        return NULL;
    size_t unlimited = SIZE_MAX;
    mp_obj *c;
    if (mp__obj_copy_limited(o, &unlimited, &c) < 0)
        return NULL;
    return c;
}

/* ---- repr --------------------------------------------------------------- */

struct sbuf {
    char *p;
    size_t len, cap;
    int err;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    size_t need;
    if (mp__add_overflows(b->len, n, &need) || mp__add_overflows(need, 1, &need)) {
        b->err = -ENOMEM;
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) {
                cap = need;
                break;
            }
            cap *= 2;
        }
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

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
    sb_put(b, &c, 1);
}

static const char hexdigits[] = "0123456789abcdef";

static void sb_hex(struct sbuf *b, char kind, uint32_t v, int ndigits)
{
    char tmp[10];
    tmp[0] = '\\';
    tmp[1] = kind;
    for (int i = 0; i < ndigits; i++)
        tmp[2 + i] = hexdigits[(v >> (4 * (ndigits - 1 - i))) & 0xf];
    sb_put(b, tmp, (size_t)ndigits + 2);
}

static bool unicode_printable(uint32_t cp)
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
static char pick_quote(const char *s, size_t n)
{
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    return sq && !dq ? '"' : '\'';
}

/* unicode_repr() of CPython 3.11, on valid UTF-8. */
static void repr_str(struct sbuf *b, const mp_obj *o)
{
    const unsigned char *s = (const unsigned char *)o->u.s.data;
    size_t n = o->u.s.len;
    char quote = pick_quote((const char *)s, n);
    sb_putc(b, quote);
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
        if (cp == (uint32_t)quote || cp == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)cp);
        } else if (cp == '\t') {
            sb_puts(b, "\\t");
        } else if (cp == '\n') {
            sb_puts(b, "\\n");
        } else if (cp == '\r') {
            sb_puts(b, "\\r");
        } else if (cp < ' ' || cp == 0x7f) {
            sb_hex(b, 'x', cp, 2);
        } else if (cp < 0x7f || unicode_printable(cp)) {
            sb_put(b, (const char *)s + i, len);
        } else if (cp <= 0xff) {
            sb_hex(b, 'x', cp, 2);
        } else if (cp <= 0xffff) {
            sb_hex(b, 'u', cp, 4);
        } else {
            sb_hex(b, 'U', cp, 8);
        }
        i += len;
    }
    sb_putc(b, quote);
}

/* bytes_repr() of CPython 3.11. */
static void repr_bytes(struct sbuf *b, const mp_obj *o)
{
    const unsigned char *s = (const unsigned char *)o->u.s.data;
    size_t n = o->u.s.len;
    char quote = pick_quote((const char *)s, n);
    sb_putc(b, 'b');
    sb_putc(b, quote);
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c == (unsigned char)quote || c == '\\') {
            sb_putc(b, '\\');
            sb_putc(b, (char)c);
        } else if (c == '\t') {
            sb_puts(b, "\\t");
        } else if (c == '\n') {
            sb_puts(b, "\\n");
        } else if (c == '\r') {
            sb_puts(b, "\\r");
        } else if (c < ' ' || c >= 0x7f) {
            sb_hex(b, 'x', c, 2);
        } else {
            sb_putc(b, (char)c);
        }
    }
    sb_putc(b, quote);
}

/*
 * The decimal digits of |x| with ndigits significant digits, correctly
 * rounded (glibc's printf is exact), as a digit string and the exponent of
 * the first digit. The locale's decimal point is skipped, whatever it is.
 */
static int sig_digits(double x, int ndigits, char *digits, int *exp10)
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
static bool reads_back(const char *digits, int n, int exp10, double x)
{
    char buf[64];
    memcpy(buf, digits, (size_t)n);
    snprintf(buf + n, sizeof buf - (size_t)n, "e%d", exp10 - (n - 1));
    return strtod(buf, NULL) == x;
}

/* Add delta (+1 or -1) to the last digit of a digit string. Returns false
 * when the result would need another digit or lose its first one. */
static bool bump_digits(char *d, int n, int delta)
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
static void shortest_digits(double x, char *digits, int *ndigits, int *decpt)
{
    for (int n = 1; n <= 17; n++) {
        int e;
        if (sig_digits(x, n, digits, &e) < 0)
            break;
        if (reads_back(digits, n, e, x)) {
            *ndigits = n;
            *decpt = e + 1;
            return;
        }
        char alt[24];
        for (int delta = -1; delta <= 1; delta += 2) {
            memcpy(alt, digits, (size_t)n);
            if (bump_digits(alt, n, delta) && reads_back(alt, n, e, x)) {
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
    if (sig_digits(x, 17, digits, &e) < 0) {
        digits[0] = '0';
        e = 0;
    }
    *ndigits = 17;
    *decpt = e + 1;
}

/* format_float_short(x, 'r', 0, Py_DTSF_ADD_DOT_0) of CPython. */
static void repr_float(struct sbuf *b, double x)
{
    if (isnan(x)) {
        sb_puts(b, "nan");
        return;
    }
    if (isinf(x)) {
        sb_puts(b, x > 0 ? "inf" : "-inf");
        return;
    }
    if (signbit(x))
        sb_putc(b, '-');
    x = fabs(x);
    if (x == 0) {
        sb_puts(b, "0.0");
        return;
    }
    char d[24];
    int n, decpt;
    shortest_digits(x, d, &n, &decpt);
    while (n > 1 && d[n - 1] == '0')
        n--; /* bump_digits may leave trailing zeros */
    if (decpt <= -4 || decpt > 16) {
        sb_putc(b, d[0]);
        if (n > 1) {
            sb_putc(b, '.');
            sb_put(b, d + 1, (size_t)n - 1);
        }
        char ebuf[16];
        int e = decpt - 1;
        snprintf(ebuf, sizeof ebuf, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        sb_puts(b, ebuf);
    } else if (decpt <= 0) {
        sb_puts(b, "0.");
        for (int i = 0; i < -decpt; i++)
            sb_putc(b, '0');
        sb_put(b, d, (size_t)n);
    } else if (decpt >= n) {
        sb_put(b, d, (size_t)n);
        for (int i = n; i < decpt; i++)
            sb_putc(b, '0');
        sb_puts(b, ".0");
    } else {
        sb_put(b, d, (size_t)decpt);
        sb_putc(b, '.');
        sb_put(b, d + decpt, (size_t)(n - decpt));
    }
}

/* Scalars, kept out of line so that the frame repr_obj repeats once per
 * nesting level stays small (see "Nesting" in obj.h). */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void
repr_scalar(struct sbuf *b, const mp_obj *o)
{
    char num[32];
    switch (o->type) {
    case MP_TYPE_NONE:
        sb_puts(b, "None");
        break;
    case MP_TYPE_BOOL:
        sb_puts(b, o->u.b ? "True" : "False");
        break;
    case MP_TYPE_INT:
        snprintf(num, sizeof num, "%lld", (long long)o->u.i);
        sb_puts(b, num);
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
    default:
        sb_puts(b, "?");
        break;
    }
}

static void repr_obj(struct sbuf *b, const mp_obj *o)
{
    switch (o->type) {
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE: {
        bool list = o->type == MP_TYPE_LIST;
        sb_putc(b, list ? '[' : '(');
        for (size_t i = 0; i < o->u.seq.len; i++) {
            if (i)
                sb_puts(b, ", ");
            repr_obj(b, o->u.seq.items[i]);
        }
        if (!list && o->u.seq.len == 1)
            sb_putc(b, ',');
        sb_putc(b, list ? ']' : ')');
        break;
    }
    case MP_TYPE_DICT: {
        sb_putc(b, '{');
        bool first = true;
        for (size_t i = 0; i < o->u.d.n; i++) {
            const struct mp__dict_entry *e = &o->u.d.entries[i];
            if (!e->key)
                continue;
            if (!first)
                sb_puts(b, ", ");
            first = false;
            repr_obj(b, e->key);
            sb_puts(b, ": ");
            repr_obj(b, e->value);
        }
        sb_putc(b, '}');
        break;
    }
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
    struct sbuf b = {NULL, 0, 0, 0};
    repr_obj(&b, o);
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *out = b.p;
    return 0;
}
