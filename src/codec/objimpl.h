/*
 * objimpl - the layout of mp_obj and the raw operations the pickle decoder
 * builds on. Private: never installed. The obj family implements it:
 *   obj.c       nodes, immortal nodes, constructors, accessors, lists and
 *               tuples, the tree's bookkeeping, copy and free (statics obj_);
 *   obj_dict.c  the keyed hash, Python's equality and the dict table
 *               (statics dict_);
 *   obj_repr.c  Python's repr() (statics repr_);
 *   obj_int.c   ints beyond int64 (statics int_);
 *   obj_str.c   str with lone surrogates, fsencode/fsdecode (statics str_);
 *   obj_instance.c  the CPython classes known as inert instances, their
 *               table and the public instance calls (statics inst_).
 * The pickle codec builds on it; the manager's two halves (src/manager/)
 * use the tree-keeping operations at the end.
 *
 * The public API (obj.h) keeps every value a tree: each node records its one
 * owner in parent, and height bounds the nesting below it. The decoder needs
 * more freedom for a while: a pickle's memo may put one node in several
 * places and even build cycles, so unpickle.c builds with the raw mp__ calls
 * below (which ignore parent and height), then checks the result and turns it
 * into a proper tree before anyone else sees it.
 *
 * Immortal nodes are the exception to "one owner": None, False, True and the
 * ints -5..256 exist once each (static storage, MP__F_IMMORTAL), shared by
 * every value that holds them, as Python shares its singletons and small
 * ints. Nothing ever writes to one: their parent stays NULL, freeing one does
 * nothing, and code that would change a node in place must first check
 * mp__obj_immortal().
 */
#ifndef MPIPC_OBJIMPL_H
#define MPIPC_OBJIMPL_H

#include "core/internal.h"

#include <mpipc/obj.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* flags */
#define MP__F_HASHED   0x01u /* u.s.hash / u.seq.hash / fs_hash holds the key hash */
#define MP__F_GREY     0x02u /* unpickle.c: being placed (on the DFS path) */
#define MP__F_BLACK    0x04u /* unpickle.c: placed in the result tree */
#define MP__F_IMMORTAL 0x08u /* a shared static node: never written or freed */
#define MP__F_BIGINT   0x10u /* an int beyond int64: u.s holds its bytes (obj_int.c) */

struct mp__dict_entry {
    mp_obj *key; /* NULL: a deleted entry, skipped by iteration */
    mp_obj *value;
    uint64_t hash;
};

struct mp_obj {
    uint8_t type;     /* enum mp_type, or an internal MP__TYPE_ below */
    uint8_t flags;    /* MP__F_ */
    uint16_t height;  /* containers nested here: 0 scalar, 1 for [], ... */
    uint32_t fs_hash; /* frozenset: its hash when MP__F_HASHED (in what would
                       * be padding: a node stays 48 bytes) */
    mp_obj *parent;   /* the container that owns this node; NULL for a root */
    union {
        bool b;
        int64_t i;
        double f;
        struct { /* float: value aliases f; nan_id is a NaN's identity */
            double value;
            uint64_t nan_id; /* 0 for a number; NaN: unique per object */
        } fl;
        struct { /* str, bytes: data follows the node (or, for a probe key
                  * built on the stack, points at the caller's bytes) */
            const char *data;
            size_t len;
            uint64_t hash;
        } s;
        struct { /* list, tuple */
            mp_obj **items;
            size_t len, cap;
            uint64_t hash;
        } seq;
        struct { /* dict, set, frozenset (a set's entries have value NULL):
                  * entries in insertion order, then the index of 2*cap
                  * slots, in one block */
            struct mp__dict_entry *entries;
            size_t used; /* live entries */
            size_t n;    /* entries written, deleted ones included */
            size_t cap;  /* entries the block holds: 0 or a power of two */
        } d;
    } u;
};

/* The types whose nodes use u.d: dict, set and frozenset. */
static inline bool mp__obj_is_table(const mp_obj *o)
{
    return o->type == MP_TYPE_DICT || o->type == MP_TYPE_SET || o->type == MP_TYPE_FROZENSET;
}

/* The types whose nodes use u.s: str, bytes and bytearray. */
static inline bool mp__obj_is_strbytes(const mp_obj *o)
{
    return o->type == MP_TYPE_STR || o->type == MP_TYPE_BYTES || o->type == MP_TYPE_BYTEARRAY;
}

/* Allocate a node of the given type with zeroed contents (NULL: no memory). */
mp_obj *mp__obj_alloc(int type);

/* True for the shared static nodes (None, False, True, ints -5..256). */
static inline bool mp__obj_immortal(const mp_obj *o)
{
    return (o->flags & MP__F_IMMORTAL) != 0;
}

/* The immortal node of an int in -5..256; NULL for other values. */
mp_obj *mp__obj_immortal_int(int64_t v);

/*
 * Store v in a float node. A NaN gets a fresh identity (nan_id): Python
 * hashes a NaN by identity and a container finds it only by identity, so a
 * dict holds any number of NaN keys without them colliding. Copies of the
 * node (mp_obj_copy, the copies the decoder makes of a shared value) keep
 * the identity: they stand for one Python object, as copy.deepcopy() keeps
 * a float.
 */
void mp__obj_set_float(mp_obj *o, double v);

/* A str or bytes node holding a copy of p[0..len) (no UTF-8 check). */
mp_obj *mp__obj_strbytes(int type, const void *p, size_t len);

/* Strict UTF-8 as Python's "utf-8" codec decodes it with errors="strict". */
bool mp__utf8_valid(const unsigned char *p, size_t len);

/* UTF-8 as Python's pickle writes a str: "utf-8" with errors="surrogatepass",
 * so strict UTF-8 plus lone surrogates U+D800..U+DFFF in their 3-byte form
 * (ED A0..BF 80..BF). What a str node holds. */
bool mp__str_valid(const unsigned char *p, size_t len);

/* ---- Ints beyond int64 (obj_int.c) ---------------------------------------
 *
 * A big int is an MP_TYPE_INT node with MP__F_BIGINT whose u.s holds the
 * shortest little-endian two's complement bytes of its value, always more
 * than 8 (an int that fits int64 is never big): one form per value. */

static inline bool mp__obj_is_bigint(const mp_obj *o)
{
    return (o->flags & MP__F_BIGINT) != 0;
}

/* The length of the shortest two's complement form of p[0..len): redundant
 * sign bytes dropped at the top; 0 for zero. */
size_t mp__int_canonical_len(const unsigned char *p, size_t len);

/* Sign-extend len <= 8 little-endian two's complement bytes. */
int64_t mp__int_le_to_i64(const unsigned char *p, size_t len);

/* A big node from canonical bytes, len > 8 (NULL: no memory). */
mp_obj *mp__obj_bigint(const unsigned char *p, size_t len);

/* Any int from two's complement bytes: an immortal, small or big node. */
mp_obj *mp__obj_int_from_le(const unsigned char *p, size_t len);

/* The room mp__int_from_double_big needs: a double's 1024 bits and a sign. */
#define MP__INT_DOUBLE_BYTES 136

/* The canonical bytes of the int a float equals, for a finite float with
 * |f| >= 2^63 (all integers): true with buf and *len set; false for any
 * other float (those equal no big int). */
bool mp__int_from_double_big(double f, unsigned char buf[MP__INT_DOUBLE_BYTES], size_t *len);

/* nd decimal digits (ASCII, nothing else) and a sign as canonical two's
 * complement bytes: 0 with *le (malloc'd, the caller frees) and *len set;
 * MP_EVALUE for no digits or more than MP_OBJ_INT_MAX_STR_DIGITS; -ENOMEM. */
int mp__int_from_digits(bool neg, const char *digits, size_t nd, unsigned char **le, size_t *len);

/* The decimal text of an int or bool: 0 with *out (malloc'd, NUL-terminated)
 * and *len; MP_EVALUE beyond MP_OBJ_INT_MAX_STR_DIGITS digits, refused
 * before the quadratic work when the size alone shows it; -ENOMEM. */
int mp__int_to_decimal(const mp_obj *o, char **out, size_t *len);

/* Append to a list or tuple ignoring parent/height: 0 or -ENOMEM. */
int mp__seq_push(mp_obj *seq, mp_obj *item);

/* Make room for n more items: 0 or -ENOMEM. */
int mp__seq_reserve(mp_obj *seq, size_t n);

/* The capacity mp__seq_reserve(seq, n) grows seq to: 0 with *cap set (the
 * present capacity when n more items fit already), or -ENOMEM on overflow.
 * The decoder charges the growth to its memory budget before it happens. */
int mp__seq_cap_for(const mp_obj *seq, size_t n, size_t *cap);

/* The bytes per entry of a dict's block of cap entries (the entry and its
 * two index slots; the block holds one word more, its fill count). */
#define MP__DICT_BYTES_PER_CAP (sizeof(struct mp__dict_entry) + 2 * sizeof(size_t))

/* The capacity storing one more new key would give d (its current capacity
 * when it has room). */
size_t mp__dict_cap_after_insert(const mp_obj *d);

/*
 * Hash a key, Python-consistently with mp_obj_equal (1, 1.0 and True hash
 * alike). cache: store the hashes of str, bytes and tuples in the nodes (only
 * for nodes the caller may write). Returns 0, or MP_ETYPE for an unhashable
 * value (a list or dict, also inside a tuple).
 */
int mp__obj_hash(const mp_obj *o, bool cache, uint64_t *h);

/*
 * Store key -> value in d ignoring parent/height. If an equal key is present,
 * its value is replaced: *old_value receives the replaced value and key is not
 * stored (the caller keeps both). Otherwise *old_value is NULL and the dict
 * now points at key and value. work: NULL, or a budget of bytes that key
 * comparisons may walk, decreased as they do (for keys that are graphs with
 * shared nodes). Returns 0, MP_ETYPE (unhashable key), MP_EPROTO (work ran
 * out) or -ENOMEM; on failure nothing changed but the key's cached hash.
 */
int mp__dict_store(mp_obj *d, mp_obj *key, mp_obj *value, size_t *work, mp_obj **old_value);

/*
 * Add item to a set or frozenset ignoring parent/height (the decoder's
 * ADDITEMS, FROZENSET and set()): *added is true when it was new, false
 * when an equal item was there (the caller keeps item). work as in
 * mp__dict_store. Returns 0, MP_ETYPE (unhashable), MP_EPROTO (work ran
 * out) or -ENOMEM; on failure nothing changed but the item's cached hash.
 */
int mp__set_store(mp_obj *set, mp_obj *item, size_t *work, bool *added);

/* Free one node's own storage, not the nodes it points at (an immortal
 * node: nothing). */
void mp__obj_free_node(mp_obj *o);

/* Free a node and everything below it, whatever its parent says (immortal
 * nodes are skipped). */
void mp__obj_free_tree(mp_obj *o);

/*
 * Deep-copy a tree, charging the memory each new node uses against *budget
 * (bytes). Returns 0 with *out set (a root: parent NULL); MP_EPROTO when the
 * budget runs out; -ENOMEM. On failure *out is NULL and nothing leaks.
 * Immortal nodes are not copied: the copy holds the same ones (free, and
 * *out is o itself when o is immortal).
 */
int mp__obj_copy_limited(const mp_obj *o, size_t *budget, mp_obj **out);

/* ---- Instances (obj_instance.c) -----------------------------------------
 *
 * An MP_TYPE_INSTANCE node uses u.seq with exactly one item, its args tuple,
 * so the tree code (free, copy, placing) treats it as a one-item sequence;
 * u.seq.hash holds the class's index in the table below (an instance is
 * unhashable, so the field is free, and copying a sequence copies it). */

/* The index of Token, the one class rebuilt by NEWOBJ + BUILD (its state,
 * three items) rather than by REDUCE. */
#define MP__CLS_TOKEN 0
/* The index of RebuildProxy, a proxy inside a value: its args are (func's
 * name as a str, a Token, the serializer str, the kwds dict); the decoder
 * reads it as REDUCE of the class with (func, token, serializer, kwds), func
 * a global of mp__proxy_func_lookup's list, and the encoder writes it so. */
#define MP__CLS_REBUILD_PROXY 1

/* A class by module and name as a pickle's GLOBAL / STACK_GLOBAL names it:
 * its index, or -1 when it is not on the list. Aliases the table accepts
 * (_queue.Empty, which is queue.Empty on CPython 3.7+) map to one index. */
int mp__instance_lookup(const char *mod, size_t modlen, const char *name, size_t namelen);

/* A RebuildProxy's func by module and name: its index, or -1 when it is
 * not one of AutoProxy and the proxy classes SyncManager registers. */
int mp__proxy_func_lookup(const char *mod, size_t modlen, const char *name, size_t namelen);
/* The func's name (a static string), in module multiprocessing.managers. */
const char *mp__proxy_func_name(int func);
/* Whether args is a RebuildProxy's: (a listed func's name, a Token, a str,
 * a dict). */
bool mp__proxy_args_ok(const mp_obj *args);


/* The class's module, name, and "module.name" (static strings). */
const char *mp__instance_module(int cls);
const char *mp__instance_name(int cls);
const char *mp__instance_qualname(int cls);

/* Whether args (any value) are what class cls takes: a tuple, of three
 * items for a Token, a RebuildProxy's four (above), three ints, bools or
 * Nones for a slice, range's three int64s with a step not 0. */
bool mp__instance_args_ok(int cls, const mp_obj *args);

/* Whether o is a builtins.slice instance (o may be NULL). */
bool mp__instance_is_slice(const mp_obj *o);

/* Whether class cls is one of the exceptions (not Token, RebuildProxy,
 * slice or range). */
bool mp__instance_is_exception(int cls);

static inline int mp__instance_cls(const mp_obj *o)
{
    return (int)o->u.seq.hash;
}

static inline bool mp__obj_has_items(const mp_obj *o)
{
    return o->type == MP_TYPE_LIST || o->type == MP_TYPE_TUPLE || o->type == MP_TYPE_INSTANCE;
}

/* ---- Tree-keeping operations obj.h does not offer (for the manager server,
 * which edits shared lists and dicts in place and moves values out of
 * decoded requests without copying them). Each keeps every invariant of
 * obj.h: the item moved out becomes a root (parent NULL); heights stay upper
 * bounds. */

/* Remove item i of a list or tuple and return it as a root value; NULL when
 * i is out of range or seq is not a list or tuple. Must not be used on a
 * tuple that is (inside) a dict key. The item may be immortal (shared): a
 * caller that changes values in place checks mp__obj_immortal() first. */
mp_obj *mp__seq_take(mp_obj *seq, size_t i);

/* Python's list.insert for 0 <= i <= len: 0; MP_EKEY for i > len; the codes
 * of mp_obj_list_append otherwise. On success the list owns item. */
int mp__list_insert(mp_obj *list, size_t i, mp_obj *item);

/* Remove key from d and hand over the stored key and value as roots: 1 when
 * found, 0 when absent, MP_ETYPE for an unhashable key. */
int mp__dict_take(mp_obj *d, const mp_obj *key, mp_obj **key_out, mp_obj **value_out);

/* Python's dict.popitem(): remove the last inserted item and hand over its
 * key and value as roots. 1, or 0 when d is empty. Amortised O(1). */
int mp__dict_popitem(mp_obj *d, mp_obj **key_out, mp_obj **value_out);

/* ---- Shared by the obj family's files only ------------------------------ */

/* Item passes from owner `from` to owner `to` (NULL: it is, or becomes, a
 * root). Immortal nodes have no owner and are never written. The assertion
 * is the one-owner rule: a node joins a container only as a root, and only
 * its owner gives it up. */
static inline void mp__obj_move(mp_obj *item, const mp_obj *from, mp_obj *to)
{
    if (mp__obj_immortal(item)) {
        MP__ASSERT(item->parent == NULL);
        return;
    }
    MP__ASSERT(item->parent == from);
    (void)from;
    item->parent = to;
}

/* The checks shared by every call that puts item into container c: 0;
 * -EINVAL for misuse that would break the tree (item has an owner, or
 * holds c); MP_EVALUE when the result would nest too deep. Inline: every
 * insert of obj.c and obj_dict.c runs it. */
static inline int mp__obj_check_insert(const mp_obj *c, const mp_obj *item)
{
    if (item->parent)
        return -EINVAL; /* owned by another container already */
    /* The containers from the root down to c, c included: bounded by
     * MP_OBJ_MAX_DEPTH. */
    unsigned level = 1;
    const mp_obj *root = c;
    while (root->parent) {
        root = root->parent;
        level++;
    }
    if (root == item)
        return -EINVAL; /* c is inside item (or is item): a cycle */
    if (level + item->height > MP_OBJ_MAX_DEPTH)
        return MP_EVALUE;
    return 0;
}

/* An item of height h went into c: raise the heights on the way up. */
static inline void mp__obj_raise_heights(mp_obj *c, unsigned h)
{
    while (c) {
        unsigned nh = h + 1;
        if (c->height >= nh)
            return;
        MP__ASSERT(nh <= MP_OBJ_MAX_DEPTH); /* mp__obj_check_insert saw to it */
        c->height = (uint16_t)nh;
        h = nh;
        c = c->parent;
    }
}

/* Append key -> value (hash h) to d, a key known to be absent, ignoring
 * parent/height: 0 or -ENOMEM. */
int mp__dict_insert_new(mp_obj *d, mp_obj *key, mp_obj *value, uint64_t h);

#endif /* MPIPC_OBJIMPL_H */
