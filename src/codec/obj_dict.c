/*
 * obj_dict - what makes two keys the same, and the dict that files them:
 * the keyed hash (SipHash-1-3 under a per-process key), Python's equality,
 * and CPython's compact dict table. One of the obj family (objimpl.h lists
 * the files); statics here start with dict_. Hashing, equality and lookup
 * stay in this one file so that the compiler sees the whole hot path.
 */
#include "codec/objimpl.h"
#include "core/internal.h"
#include "core/io.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static uint64_t dict_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void dict_hash_seed(void)
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
    s ^= (uint64_t)(uintptr_t)&dict_hash_seed << 13 ^ (uint64_t)getpid() << 32;
    hash_k0 = dict_splitmix64(&s);
    hash_k1 = dict_splitmix64(&s);
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
static uint64_t dict_siphash13(unsigned char tag, const unsigned char *p, size_t len)
{
    pthread_once(&hash_once, dict_hash_seed);
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

static uint64_t dict_hash_i64(int64_t v)
{
    unsigned char b[8];
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(u >> (8 * i));
    return dict_siphash13('i', b, 8);
}

/* A double that holds an integer in int64 range, as that integer. Python's
 * int/float comparisons are exact, so only these floats can equal an int. */
static bool dict_double_as_i64(double f, int64_t *out)
{
    if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0))
        return false; /* NaN, infinities, out of range */
    int64_t i = (int64_t)f;
    if ((double)i != f)
        return false;
    *out = i;
    return true;
}

/* Python's "is" for two nodes: the same node, or copies of one NaN. */
static bool dict_same_object(const mp_obj *a, const mp_obj *b)
{
    return a == b || (a->type == MP_TYPE_FLOAT && b->type == MP_TYPE_FLOAT && a->u.fl.nan_id &&
                      a->u.fl.nan_id == b->u.fl.nan_id);
}

/* ---- Hashing and equality ----------------------------------------------- */

/* FNV-like combination of item hashes, after CPython's xxHash-based tuple
 * hash; the item hashes are keyed already. */
#define XXPRIME_1 UINT64_C(11400714785074694791)
#define XXPRIME_2 UINT64_C(14029467366897019727)
#define XXPRIME_5 UINT64_C(2870177450012600261)

/*
 * A frozenset's hash: the same whatever the order of its items, as equal
 * frozensets may hold them in any order. Each item's hash (keyed already,
 * and stored in its entry) is mixed on its own and the results summed, the
 * way CPython's frozenset hash combines its items. It is kept in 32 bits,
 * in what would be padding in the node (objimpl.h): a frozenset is hashed
 * once, when it becomes immutable, not once per lookup that reaches it -
 * which matters for frozensets of frozensets a pickle shares in many places.
 */
static int dict_hash_frozenset(const mp_obj *o, bool cache, uint64_t *h)
{
    if (o->flags & MP__F_HASHED) {
        *h = o->fs_hash;
        return 0;
    }
    uint64_t acc = (uint64_t)o->u.d.used * XXPRIME_5;
    for (size_t i = 0; i < o->u.d.n; i++) {
        const struct mp__dict_entry *e = &o->u.d.entries[i];
        if (!e->key)
            continue;
        uint64_t x = e->hash ^ (e->hash >> 31);
        x *= XXPRIME_2;
        acc += x ^ (x >> 29);
    }
    acc ^= acc >> 32;
    acc *= XXPRIME_1;
    uint32_t folded = (uint32_t)(acc >> 32);
    *h = folded;
    if (cache) {
        mp_obj *w = (mp_obj *)o;
        w->fs_hash = folded;
        w->flags |= MP__F_HASHED;
    }
    return 0;
}

int mp__obj_hash(const mp_obj *o, bool cache, uint64_t *h)
{
    int64_t iv;
    switch (o->type) {
    case MP_TYPE_NONE:
        *h = dict_siphash13('N', NULL, 0);
        return 0;
    case MP_TYPE_BOOL:
        *h = dict_hash_i64(o->u.b);
        return 0;
    case MP_TYPE_INT:
        if (mp__obj_is_bigint(o)) {
            /* Its canonical bytes: a float equal to it hashes the same
             * bytes (below). More than 8 of them, so never an int64's. */
            *h = dict_siphash13('i', (const unsigned char *)o->u.s.data, o->u.s.len);
            return 0;
        }
        *h = dict_hash_i64(o->u.i);
        return 0;
    case MP_TYPE_FLOAT: {
        if (dict_double_as_i64(o->u.f, &iv)) {
            *h = dict_hash_i64(iv); /* 1.0 hashes as 1, -0.0 as 0 */
            return 0;
        }
        unsigned char big[MP__INT_DOUBLE_BYTES];
        size_t bn;
        if (mp__int_from_double_big(o->u.f, big, &bn)) {
            *h = dict_siphash13('i', big, bn); /* 2.0**64 hashes as 2**64 */
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
            *h = dict_siphash13(tag, b, 8);
            return 0;
        }
        memcpy(b, &o->u.f, 8);
        *h = dict_siphash13('f', b, 8);
        return 0;
    }
    case MP_TYPE_STR:
    case MP_TYPE_BYTES:
        if (o->flags & MP__F_HASHED) {
            *h = o->u.s.hash;
            return 0;
        }
        *h = dict_siphash13(o->type == MP_TYPE_STR ? 's' : 'b', (const unsigned char *)o->u.s.data,
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
    case MP_TYPE_FROZENSET:
        return dict_hash_frozenset(o, cache, h);
    default:
        return MP_ETYPE; /* list, dict, set, bytearray: unhashable, as in Python */
    }
}

static bool dict_is_number(const mp_obj *o)
{
    return o->type == MP_TYPE_BOOL || o->type == MP_TYPE_INT || o->type == MP_TYPE_FLOAT;
}

/* A big int against another number: equal only to the same big int, or to
 * the float holding exactly its value (Python compares int and float
 * exactly). */
static bool dict_bigint_equal(const mp_obj *big, const mp_obj *n)
{
    const unsigned char *p = (const unsigned char *)big->u.s.data;
    size_t len = big->u.s.len;
    if (n->type == MP_TYPE_INT && mp__obj_is_bigint(n))
        return n->u.s.len == len && memcmp(n->u.s.data, p, len) == 0;
    unsigned char buf[MP__INT_DOUBLE_BYTES];
    size_t bn;
    return n->type == MP_TYPE_FLOAT && mp__int_from_double_big(n->u.f, buf, &bn) && bn == len &&
           memcmp(buf, p, len) == 0;
}

static bool dict_numbers_equal(const mp_obj *a, const mp_obj *b)
{
    if (a->type == MP_TYPE_INT && mp__obj_is_bigint(a))
        return dict_bigint_equal(a, b);
    if (b->type == MP_TYPE_INT && mp__obj_is_bigint(b))
        return dict_bigint_equal(b, a);
    if (a->type == MP_TYPE_FLOAT && b->type == MP_TYPE_FLOAT)
        return a->u.f == b->u.f;
    if (a->type == MP_TYPE_FLOAT || b->type == MP_TYPE_FLOAT) {
        const mp_obj *f = a->type == MP_TYPE_FLOAT ? a : b;
        const mp_obj *n = f == a ? b : a;
        int64_t iv = n->type == MP_TYPE_INT ? n->u.i : n->u.b;
        int64_t fv;
        return dict_double_as_i64(f->u.f, &fv) && fv == iv;
    }
    int64_t x = a->type == MP_TYPE_INT ? a->u.i : a->u.b;
    int64_t y = b->type == MP_TYPE_INT ? b->u.i : b->u.b;
    return x == y;
}

static int dict_lookup(const mp_obj *d, const mp_obj *key, uint64_t h, size_t *work,
                       size_t *slot_out, size_t *entry_out);

/* The types Python compares with each other by contents: bytes with
 * bytearray (b'a' == bytearray(b'a')), set with frozenset. */
static int dict_kind(const mp_obj *o)
{
    switch (o->type) {
    case MP_TYPE_BYTEARRAY:
        return MP_TYPE_BYTES;
    case MP_TYPE_FROZENSET:
        return MP_TYPE_SET;
    default:
        return o->type;
    }
}

static int dict_eq_items(const mp_obj *a, const mp_obj *b, size_t *work);

/*
 * a == b: 1 equal, 0 not. work (NULL: unlimited) is a budget of bytes the
 * comparison may walk: the decoder compares keys while its values are still
 * graphs with shared nodes, where a plain walk can take exponential time;
 * running out gives MP_EPROTO.
 */
static int dict_eq_rec(const mp_obj *a, const mp_obj *b, size_t *work)
{
    if (work) {
        if (*work < sizeof(mp_obj))
            return MP_EPROTO;
        *work -= sizeof(mp_obj);
    }
    if (dict_is_number(a) && dict_is_number(b))
        return dict_numbers_equal(a, b);
    if (a->type != b->type && dict_kind(a) != dict_kind(b))
        return 0;
    switch (a->type) {
    case MP_TYPE_NONE:
        return 1;
    case MP_TYPE_STR:
    case MP_TYPE_BYTES:
    case MP_TYPE_BYTEARRAY:
        if (a->u.s.len != b->u.s.len)
            return 0;
        if (work) {
            if (*work < a->u.s.len)
                return MP_EPROTO;
            *work -= a->u.s.len;
        }
        return memcmp(a->u.s.data, b->u.s.data, a->u.s.len) == 0;
    case MP_TYPE_INSTANCE:
        /* Python compares exceptions and Tokens by identity; a value has
         * none, so an instance equals another of its class with equal
         * args (its one item). */
        if (mp__instance_cls(a) != mp__instance_cls(b))
            return 0;
        /* fall through */
    case MP_TYPE_LIST:
    case MP_TYPE_TUPLE:
        if (a->u.seq.len != b->u.seq.len)
            return 0;
        for (size_t i = 0; i < a->u.seq.len; i++) {
            int rc = dict_eq_items(a->u.seq.items[i], b->u.seq.items[i], work);
            if (rc <= 0)
                return rc;
        }
        return 1;
    case MP_TYPE_DICT:
    case MP_TYPE_SET:
    case MP_TYPE_FROZENSET:
        /* Same size, and every key (item) of a is in b - with an equal
         * value, for a dict. */
        if (a->u.d.used != b->u.d.used)
            return 0;
        for (size_t i = 0; i < a->u.d.n; i++) {
            const struct mp__dict_entry *e = &a->u.d.entries[i];
            if (!e->key)
                continue;
            size_t slot, idx;
            int rc = dict_lookup(b, e->key, e->hash, work, &slot, &idx);
            if (rc > 0 && a->type == MP_TYPE_DICT)
                rc = dict_eq_items(e->value, b->u.d.entries[idx].value, work);
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
static int dict_eq_items(const mp_obj *a, const mp_obj *b, size_t *work)
{
    return dict_same_object(a, b) ? 1 : dict_eq_rec(a, b, work);
}

MP_API bool mp_obj_equal(const mp_obj *a, const mp_obj *b)
{
    if (!a || !b)
        return false;
    return dict_eq_rec(a, b, NULL) == 1;
}

/* ---- Dicts ---------------------------------------------------------------
 *
 * CPython's compact layout: entries in insertion order, and an index of
 * 2*cap slots (linear probing) holding entry numbers + 1, INDEX_EMPTY or
 * INDEX_DUMMY for a deleted entry, in one block: the entries, a count of
 * the slots that are not empty ("filled"), the index. The dict is rebuilt
 * before more than cap entries are written or more than cap slots filled,
 * so at least half the slots are always empty and probing ends. (The two
 * differ: popitem() and taking the last key forget deleted entries at the
 * end, whose slots stay dummies, and an insert may reuse a dummy.)
 */

/* A dict's first block holds 2 entries: most dicts a peer sends are small,
 * and the decoder's memory bound (docs/wire.md) must cover a list of
 * one-item dicts, 4 bytes of pickle each. Growth is 4x from there. */
#define DICT_MIN_CAP 2u
#define INDEX_EMPTY  ((size_t)0)
#define INDEX_DUMMY  SIZE_MAX

/* The bytes of a block of cap entries. */
#define DICT_BLOCK_BYTES(cap) ((cap)*MP__DICT_BYTES_PER_CAP + sizeof(size_t))

static size_t *dict_filled(const mp_obj *d)
{
    return (size_t *)(void *)(d->u.d.entries + d->u.d.cap);
}

static size_t *dict_index(const mp_obj *d)
{
    return dict_filled(d) + 1;
}

/* The counts every operation keeps: live entries among those written, no
 * more written than the block holds, no more slots filled than half the
 * index (so probing ends). */
static void dict_check(const mp_obj *d)
{
    MP__ASSERT(d->u.d.used <= d->u.d.n);
    MP__ASSERT(d->u.d.n <= d->u.d.cap);
    MP__ASSERT(d->u.d.cap == 0 || (d->u.d.cap & (d->u.d.cap - 1)) == 0);
    MP__ASSERT(d->u.d.cap == 0 ||
               (d->u.d.used <= *dict_filled(d) && *dict_filled(d) <= d->u.d.cap));
    (void)d;
}

/* A new entry needs a rebuild first: the entries are all written (which an
 * empty dict without a block is), or the index is half filled. */
static bool dict_full(const mp_obj *d)
{
    return d->u.d.n == d->u.d.cap || *dict_filled(d) == d->u.d.cap;
}

/* Find key (hash h): 1 found (slot and entry set), 0 absent, or MP_EPROTO
 * when the comparisons ran out of work (see dict_eq_rec). Keys match by
 * identity or equality, as in Python, which is how a NaN key can be found
 * at all. */
static int dict_lookup(const mp_obj *d, const mp_obj *key, uint64_t h, size_t *work,
                       size_t *slot_out, size_t *entry_out)
{
    if (!d->u.d.cap)
        return 0;
    dict_check(d);
    const size_t *index = dict_index(d);
    size_t mask = 2 * d->u.d.cap - 1;
    for (size_t slot = (size_t)h & mask;; slot = (slot + 1) & mask) {
        size_t v = index[slot];
        if (v == INDEX_EMPTY)
            return 0;
        if (v == INDEX_DUMMY)
            continue;
        MP__ASSERT(v <= d->u.d.n);
        const struct mp__dict_entry *e = &d->u.d.entries[v - 1];
        if (e->hash != h)
            continue;
        int rc = dict_eq_items(e->key, key, work);
        if (rc < 0)
            return rc;
        if (rc) {
            *slot_out = slot;
            *entry_out = v - 1;
            return 1;
        }
    }
}

/* Find a key the caller may not write to (its hash is not cached): 1 found,
 * 0 absent, MP_ETYPE for an unhashable key. */
static int dict_find(const mp_obj *d, const mp_obj *key, size_t *slot, size_t *idx)
{
    uint64_t h;
    int rc = mp__obj_hash(key, false, &h);
    return rc < 0 ? rc : dict_lookup(d, key, h, NULL, slot, idx);
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
    return dict_full(d) ? dict_rebuild_cap(d) : d->u.d.cap;
}

/* Rebuild with room for at least one more entry, dropping deleted ones. */
static int dict_grow(mp_obj *d)
{
    size_t cap = dict_rebuild_cap(d);
    if (!cap)
        return -ENOMEM;
    /* cap entries, the count, 2*cap slots, overflow-checked */
    if (cap > (SIZE_MAX - sizeof(size_t)) / MP__DICT_BYTES_PER_CAP)
        return -ENOMEM;
    struct mp__dict_entry *entries = malloc(DICT_BLOCK_BYTES(cap));
    if (!entries)
        return -ENOMEM;
    size_t *filled = (size_t *)(void *)(entries + cap), *index = filled + 1;
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
    MP__ASSERT(n == d->u.d.used && n < cap);
    *filled = n;
    free(d->u.d.entries);
    d->u.d.entries = entries;
    d->u.d.cap = cap;
    d->u.d.n = n;
    return 0;
}

int mp__dict_insert_new(mp_obj *d, mp_obj *key, mp_obj *value, uint64_t h)
{
    if (dict_full(d)) {
        int rc = dict_grow(d);
        if (rc < 0)
            return rc;
    }
    MP__ASSERT(d->u.d.n < d->u.d.cap && *dict_filled(d) < d->u.d.cap);
    size_t *index = dict_index(d);
    size_t mask = 2 * d->u.d.cap - 1;
    size_t slot = (size_t)h & mask;
    while (index[slot] != INDEX_EMPTY && index[slot] != INDEX_DUMMY)
        slot = (slot + 1) & mask;
    if (index[slot] == INDEX_EMPTY)
        ++*dict_filled(d);
    struct mp__dict_entry *e = &d->u.d.entries[d->u.d.n];
    e->key = key;
    e->value = value;
    e->hash = h;
    index[slot] = ++d->u.d.n;
    d->u.d.used++;
    dict_check(d);
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
    return mp__dict_insert_new(d, key, value, h);
}

MP_API int mp_obj_dict_set(mp_obj *d, mp_obj *key, mp_obj *value)
{
    if (!d || !key || !value || (key == value && !mp__obj_immortal(key)))
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    int rc = mp__obj_check_insert(d, key);
    if (rc == 0)
        rc = mp__obj_check_insert(d, value);
    if (rc < 0)
        return rc;
    mp_obj *old;
    rc = mp__dict_store(d, key, value, NULL, &old);
    if (rc < 0)
        return rc;
    mp__obj_move(value, NULL, d);
    if (old) {
        /* Python keeps the key already present and drops the new one. */
        MP__ASSERT(mp__obj_immortal(old) || old->parent == d);
        mp__obj_free_tree(old);
        mp__obj_free_tree(key);
    } else {
        mp__obj_move(key, NULL, d);
        mp__obj_raise_heights(d, key->height);
    }
    mp__obj_raise_heights(d, value->height);
    return 0;
}

static mp_obj *dict_get_probe(const mp_obj *d, const mp_obj *key)
{
    if (!d || !key || d->type != MP_TYPE_DICT)
        return NULL;
    size_t slot, idx;
    if (dict_find(d, key, &slot, &idx) != 1)
        return NULL;
    return d->u.d.entries[idx].value;
}

MP_API const mp_obj *mp_obj_dict_get(const mp_obj *d, const mp_obj *key)
{
    return dict_get_probe(d, key);
}

MP_API mp_obj *mp_obj_dict_get_mut(mp_obj *d, const mp_obj *key)
{
    return dict_get_probe(d, key);
}

MP_API const mp_obj *mp_obj_dict_get_cstr(const mp_obj *d, const char *key)
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

MP_API const mp_obj *mp_obj_dict_get_int(const mp_obj *d, int64_t key)
{
    mp_obj probe;
    memset(&probe, 0, sizeof probe);
    probe.type = MP_TYPE_INT;
    probe.u.i = key;
    return dict_get_probe(d, &probe);
}

/* Unlink entry idx, which index slot names: the entry becomes a hole and
 * the slot a dummy. The pair goes to *key_out and *value_out, still owned
 * by d (see dict_release). */
static void dict_unlink(mp_obj *d, size_t slot, size_t idx, mp_obj **key_out, mp_obj **value_out)
{
    struct mp__dict_entry *e = &d->u.d.entries[idx];
    MP__ASSERT(e->key && dict_index(d)[slot] == idx + 1 && d->u.d.used > 0);
    *key_out = e->key;
    *value_out = e->value;
    e->key = NULL;
    e->value = NULL;
    dict_index(d)[slot] = INDEX_DUMMY;
    d->u.d.used--;
}

/* Hand an unlinked pair over to the caller as roots. Deleted entries at the
 * end are forgotten, so popitem() stays O(1): no index slot names them (a
 * deleted entry's slot is a dummy). */
static void dict_release(mp_obj *d, mp_obj *key, mp_obj *value)
{
    mp__obj_move(key, d, NULL);
    mp__obj_move(value, d, NULL);
    while (d->u.d.n > 0 && !d->u.d.entries[d->u.d.n - 1].key)
        d->u.d.n--;
    dict_check(d);
}

MP_API int mp_obj_dict_del(mp_obj *d, const mp_obj *key)
{
    if (!d || !key)
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    size_t slot, idx;
    int rc = dict_find(d, key, &slot, &idx);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return MP_EKEY;
    mp_obj *k, *v;
    dict_unlink(d, slot, idx, &k, &v);
    mp__obj_free_tree(k);
    mp__obj_free_tree(v);
    return 0;
}

MP_API int mp_obj_dict_next(const mp_obj *d, size_t *pos, const mp_obj **key, const mp_obj **value)
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

/* ---- Sets ------------------------------------------------------------------
 *
 * A set or frozenset is the dict table with keys only: each entry's value
 * is NULL. Everything that walks a table (free, copy, placing a decoded
 * value) skips the NULL values.
 */

static bool dict_is_set(const mp_obj *o)
{
    return o->type == MP_TYPE_SET || o->type == MP_TYPE_FROZENSET;
}

MP_API int mp_obj_set_add(mp_obj *set, mp_obj *item)
{
    if (!set || !item)
        return -EINVAL;
    if (!dict_is_set(set))
        return MP_ETYPE;
    if (set->type == MP_TYPE_FROZENSET && set->parent)
        return -EINVAL; /* inside a value: immutable (it may be a dict key) */
    int rc = mp__obj_check_insert(set, item);
    if (rc < 0)
        return rc;
    uint64_t h;
    if ((rc = mp__obj_hash(item, true, &h)) < 0)
        return rc;
    size_t slot, idx;
    rc = dict_lookup(set, item, h, NULL, &slot, &idx);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        mp__obj_free_tree(item); /* Python keeps the item already there */
        return 0;
    }
    if ((rc = mp__dict_insert_new(set, item, NULL, h)) < 0)
        return rc;
    set->flags &= (uint8_t)~MP__F_HASHED; /* a root frozenset being built */
    mp__obj_move(item, NULL, set);
    mp__obj_raise_heights(set, item->height);
    return 0;
}

MP_API int mp_obj_set_contains(const mp_obj *set, const mp_obj *item)
{
    if (!set || !item)
        return -EINVAL;
    if (!dict_is_set(set))
        return MP_ETYPE;
    size_t slot, idx;
    return dict_find(set, item, &slot, &idx);
}

MP_API int mp_obj_set_discard(mp_obj *set, const mp_obj *item)
{
    if (!set || !item)
        return -EINVAL;
    if (set->type != MP_TYPE_SET)
        return MP_ETYPE;
    size_t slot, idx;
    int rc = dict_find(set, item, &slot, &idx);
    if (rc <= 0)
        return rc;
    mp_obj *k, *v;
    dict_unlink(set, slot, idx, &k, &v);
    MP__ASSERT(v == NULL);
    mp__obj_free_tree(k);
    return 1;
}

MP_API int mp_obj_set_next(const mp_obj *set, size_t *pos, const mp_obj **item)
{
    if (!set || !pos)
        return -EINVAL;
    if (!dict_is_set(set))
        return MP_ETYPE;
    while (*pos < set->u.d.n) {
        const struct mp__dict_entry *e = &set->u.d.entries[(*pos)++];
        if (!e->key)
            continue;
        if (item)
            *item = e->key;
        return 1;
    }
    return 0;
}

int mp__set_store(mp_obj *set, mp_obj *item, size_t *work, bool *added)
{
    uint64_t h;
    int rc = mp__obj_hash(item, true, &h);
    if (rc < 0)
        return rc;
    size_t slot, idx;
    rc = dict_lookup(set, item, h, work, &slot, &idx);
    if (rc < 0)
        return rc;
    *added = rc == 0;
    return rc ? 0 : mp__dict_insert_new(set, item, NULL, h);
}

/* ---- Operations for the manager server (objimpl.h) ---------------------- */

int mp__dict_take(mp_obj *d, const mp_obj *key, mp_obj **key_out, mp_obj **value_out)
{
    if (!d || !key || !key_out || !value_out)
        return -EINVAL;
    if (d->type != MP_TYPE_DICT)
        return MP_ETYPE;
    size_t slot, idx;
    int rc = dict_find(d, key, &slot, &idx);
    if (rc <= 0)
        return rc;
    dict_unlink(d, slot, idx, key_out, value_out);
    dict_release(d, *key_out, *value_out);
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
    dict_release(d, *key_out, *value_out);
    return 1;
}

MP_API const mp_obj *mp_obj_dict_get_or(const mp_obj *d, const mp_obj *key, const mp_obj *dflt)
{
    if (!d || !key || d->type != MP_TYPE_DICT)
        return NULL;
    uint64_t h;
    if (mp__obj_hash(key, false, &h) < 0)
        return NULL; /* Python's TypeError: not "absent" */
    const mp_obj *v = mp_obj_dict_get(d, key);
    return v ? v : dflt;
}
