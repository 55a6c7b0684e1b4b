/*
 * libmpipc - values: the C side of the Python objects a Connection carries.
 *
 * An mp_obj is one of None, bool, int (64-bit), float (double), str (UTF-8),
 * bytes, list, tuple or dict. mp_conn_send() pickles it so that a Python
 * peer's recv() gets the equal Python object, and mp_conn_recv() turns what a
 * Python peer sent back into an mp_obj.
 *
 * Ownership: a value is a tree.
 *   - Every value has exactly one owner: either the caller (a "root" value,
 *     released with mp_obj_free) or the one container it was put into.
 *   - Containers own their items: putting a value into a list, tuple or dict
 *     hands it over on success, and freeing the container frees the items.
 *     On failure nothing changes and the caller still owns what it passed.
 *   - Getters return borrowed pointers that stay valid until the item is
 *     replaced or removed, or its container is freed.
 *   - There is no sharing and no reference count: a value is never inside two
 *     containers, so freeing one tree can never touch another, and a value
 *     can never contain itself. Misuse that would break this (putting a value
 *     that is already inside a container, or a container into its own
 *     contents) is refused with -EINVAL and changes nothing.
 *   - The one exception, as in Python: None, True, False and the ints -5 to
 *     256 are immortal. Each exists once, and mp_obj_none(), mp_obj_bool()
 *     and mp_obj_int() return that one value: it may go into any number of
 *     containers, freeing it (or a container holding it) does nothing, and
 *     it never changes. A received list of a million Nones or small ints so
 *     costs a pointer per item, as in Python. Code that treats every value
 *     the same way (free what you own, hand roots to containers) needs no
 *     change; only comparing pointers can tell.
 *   - Python's shared references (x = [1]; y = [x, x]) arrive as equal,
 *     independent copies: y[0] == y[1] holds, but changing one does not change
 *     the other. A received pickle whose shared references would expand
 *     beyond max(64 MiB, 16 times its size) is refused (docs/wire.md).
 *
 * Nesting. A value nests at most MP_OBJ_MAX_DEPTH containers deep (Python's
 * own pickle and repr give up at about the same depth, its recursion limit).
 * A call that would nest deeper returns MP_EVALUE. Operations on a value
 * (free, copy, equal, repr, pickling) recurse once per level, so their stack
 * use is bounded: about 100-130 bytes per level in an optimized build, so a
 * thread with 128 KiB of stack handles the deepest value (more in debug and
 * sanitizer builds).
 *
 * Python semantics kept:
 *   - str holds Unicode text as strict UTF-8 (no surrogates, no overlong
 *     forms) and may contain NUL; its length in Python is its number of code
 *     points (mp_obj_len).
 *   - bool is an int: True == 1 == 1.0, and as dict keys 1, 1.0 and True are
 *     the same key (the first key inserted stays, as in Python: {1: 'a',
 *     True: 'b'} is {1: 'b'}). int and float compare exactly (2**53 + 1 !=
 *     float(2**53 + 1)), and NaN equals nothing, itself included.
 *   - NaN is found by identity, as in Python: each mp_obj_float(NAN) is a
 *     key of its own ({nan: 1, nan: 2} after two inserts), found by that
 *     value only. A copy of a NaN (mp_obj_copy, or a received value Python
 *     shared) is the same object as the original, as copy.deepcopy() keeps
 *     a float: it finds the same key, and [x] == [copy of x].
 *   - dict hashing is keyed with 128 random bits per process (from the
 *     kernel), for every key type, so a peer cannot choose keys that
 *     collide: a dict built from received data stays O(1) per insert.
 *   - dict keys must be hashable: None, bool, int, float, str, bytes, or a
 *     tuple of hashable values. A list or dict as key is Python's TypeError
 *     (MP_ETYPE). Dicts keep insertion order (Python 3.7+).
 *   - tuples are immutable once they are inside another value; a root tuple
 *     can still be filled with mp_obj_tuple_append.
 *
 * Status codes: -EINVAL for NULL or misused arguments; MP_ETYPE (TypeError)
 * for a value of the wrong type, an unhashable key; MP_EKEY (KeyError) for a
 * missing key or index; MP_EVALUE for nesting beyond MP_OBJ_MAX_DEPTH; -ENOMEM.
 *
 * Thread/fork: values carry no locks. Several threads may read one value at
 * once (getters, mp_obj_equal, mp_obj_repr, mp_obj_copy, sending it); a
 * thread that modifies a value must be the only one using it. Values are
 * plain memory and survive fork().
 */
#ifndef MPIPC_OBJ_H
#define MPIPC_OBJ_H

#include <mpipc/common.h>
#include <mpipc/error.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A value: None, bool, int, float, str, bytes, list, tuple or dict. */
typedef struct mp_obj mp_obj;

/* The kinds of value, as returned by mp_obj_type(). */
typedef enum mp_type {
    MP_TYPE_NONE = 1,
    MP_TYPE_BOOL,
    MP_TYPE_INT,
    MP_TYPE_FLOAT,
    MP_TYPE_STR,
    MP_TYPE_BYTES,
    MP_TYPE_LIST,
    MP_TYPE_TUPLE,
    MP_TYPE_DICT,
} mp_type;

/* The deepest nesting of containers a value may have: [] nests 1 deep,
 * [[]] 2 deep, a scalar 0. */
#define MP_OBJ_MAX_DEPTH 1000

/* ---- Constructors ------------------------------------------------------
 *
 * Each returns a new root value (or, for None, bools and ints -5..256, the
 * immortal one), or NULL when memory runs out (and, for str, when the text
 * is not valid UTF-8). A failed constructor leaks nothing.
 * Ownership: the caller owns the result: free it with mp_obj_free(), or hand
 * it to a container (both also fine, and without effect, for an immortal).
 */

/* None: the one immortal None (see Ownership), never NULL. */
MP_API mp_obj *mp_obj_none(void);

/* True or False: the immortal True or False, never NULL. */
MP_API mp_obj *mp_obj_bool(bool v);

/* An int in the range of int64_t. For -5..256 it is the immortal value of
 * that int (never NULL). */
MP_API mp_obj *mp_obj_int(int64_t v);

/* A float. Every double is kept bit for bit, NaN payloads and -0.0 included. */
MP_API mp_obj *mp_obj_float(double v);

/*
 * mp_obj_str - a str from len bytes of UTF-8 at s (NUL bytes allowed; s may
 * be NULL when len is 0). The bytes are copied.
 *
 * Returns NULL if the bytes are not strict UTF-8 (Python's UnicodeDecodeError:
 * truncated or overlong sequences, surrogates U+D800..U+DFFF, code points
 * above U+10FFFF) or memory runs out.
 */
MP_API mp_obj *mp_obj_str(const char *s, size_t len);

/* mp_obj_str_cstr - a str from a NUL-terminated UTF-8 string (NULL if s is
 * NULL or not valid UTF-8, or memory runs out). */
MP_API mp_obj *mp_obj_str_cstr(const char *s);

/* mp_obj_bytes - bytes holding a copy of len bytes at p (p may be NULL when
 * len is 0). */
MP_API mp_obj *mp_obj_bytes(const void *p, size_t len);

/* An empty list, an empty tuple (fill it with mp_obj_tuple_append before
 * putting it anywhere), an empty dict. */
MP_API mp_obj *mp_obj_list_new(void);
MP_API mp_obj *mp_obj_tuple_new(void);
MP_API mp_obj *mp_obj_dict_new(void);

/*
 * mp_obj_free - release a root value and everything inside it. NULL is
 * accepted.
 *
 * A value that sits inside a container belongs to the container: passing one
 * here does nothing (free the container, or remove the item from it).
 */
MP_API void mp_obj_free(mp_obj *o);

/* ---- Type and scalar accessors ----------------------------------------- */

/*
 * mp_obj_type - the kind of a value: an MP_TYPE_* value, or -EINVAL for NULL.
 */
MP_API int mp_obj_type(const mp_obj *o);

/* mp_type_name - Python's name of a type ("NoneType", "bool", "int", "float",
 * "str", "bytes", "list", "tuple", "dict"); "?" for anything else. Static. */
MP_API const char *mp_type_name(int type);

/*
 * Checked accessors. Each stores the value through its out-parameter and
 * returns 0, or returns MP_ETYPE (Python's TypeError) when o has another type
 * and -EINVAL when an argument is NULL; the out-parameters are untouched on
 * failure.
 *
 * mp_obj_get_bool   a bool.
 * mp_obj_get_int    an int, or a bool (Python's bool is an int: True is 1).
 * mp_obj_get_float  a float (an int is not converted).
 * mp_obj_get_str    a str: *s points at its UTF-8 bytes, followed by a NUL
 *                   that is not counted in *len (the text itself may hold
 *                   NULs). len may be NULL.
 * mp_obj_get_bytes  bytes: *p points at them (followed by a NUL not counted
 *                   in *len). len may be NULL.
 * Ownership: *s and *p are borrowed from o and live as long as o.
 */
MP_API int mp_obj_get_bool(const mp_obj *o, bool *v);
MP_API int mp_obj_get_int(const mp_obj *o, int64_t *v);
MP_API int mp_obj_get_float(const mp_obj *o, double *v);
MP_API int mp_obj_get_str(const mp_obj *o, const char **s, size_t *len);
MP_API int mp_obj_get_bytes(const mp_obj *o, const unsigned char **p, size_t *len);

/* mp_obj_is_none - true when o is None (false for NULL). */
MP_API bool mp_obj_is_none(const mp_obj *o);

/*
 * mp_obj_len - Python's len(o): the number of items of a list, tuple or dict,
 * of bytes in bytes, of code points in a str.
 *
 * Returns the length; MP_ETYPE for None, bool, int and float; -EINVAL for
 * NULL.
 */
MP_API ssize_t mp_obj_len(const mp_obj *o);

/* ---- Lists and tuples -------------------------------------------------- */

/*
 * mp_obj_list_append - Python's list.append(item).
 *
 * list:  a list.
 * item:  a root value (one not inside any container), not list's own root.
 *
 * Returns 0; MP_ETYPE if list is not a list; MP_EVALUE if the result would
 * nest deeper than MP_OBJ_MAX_DEPTH; -EINVAL for NULL, for an item that is
 * already inside a container, or for an item that contains list; -ENOMEM.
 * Ownership: on success list owns item; on failure the caller still does.
 */
MP_API int mp_obj_list_append(mp_obj *list, mp_obj *item);

/*
 * mp_obj_tuple_append - add item at the end of a tuple that is being built.
 *
 * tuple: a tuple that is a root value (a tuple inside another value is
 *        immutable, as in Python; appending to it gives -EINVAL).
 * Codes and ownership as mp_obj_list_append.
 */
MP_API int mp_obj_tuple_append(mp_obj *tuple, mp_obj *item);

/*
 * mp_obj_list_get - Python's seq[i] for a list or a tuple; a negative i
 * counts from the end, as in Python (seq[-1] is the last item).
 *
 * Returns the item, or NULL when seq is NULL, is not a list or tuple, or
 * i is out of range (Python's IndexError).
 * Ownership: borrowed from seq (const): valid while seq is and the item is
 * not replaced; never free it. To change a nested container in place, use
 * mp_obj_list_get_mut().
 */
MP_API const mp_obj *mp_obj_list_get(const mp_obj *seq, ssize_t i);

/*
 * mp_obj_list_get_mut - the same item, for changing it in place (a list or
 * dict inside seq, say): mp_obj_list_get() for a caller that holds seq
 * non-const.
 * Returns the item, or NULL as mp_obj_list_get().
 * Ownership: borrowed from seq, which still owns it: never free it or add
 * it to another container.
 */
MP_API mp_obj *mp_obj_list_get_mut(mp_obj *seq, ssize_t i);

/*
 * mp_obj_list_set - Python's list[i] = item: replaces (and frees) the item at
 * index i of a list; a negative i counts from the end.
 *
 * Returns 0; MP_ETYPE if list is not a list; MP_EKEY when i is out of range
 * (Python's IndexError); other codes as mp_obj_list_append.
 * Ownership: on success list owns item; on failure the caller still does.
 */
MP_API int mp_obj_list_set(mp_obj *list, ssize_t i, mp_obj *item);

/* ---- Dicts ------------------------------------------------------------- */

/*
 * mp_obj_dict_set - Python's d[key] = value.
 *
 * d:      a dict.
 * key:    a hashable root value (see the top of this file).
 * value:  a root value, other than key (unless both are one immortal value,
 *         as in d[None] = None) and other than d's own root.
 *
 * If an equal key is present its value is replaced (and freed) and the key
 * already in the dict stays, as in Python; the key passed in is then freed.
 * Returns 0; MP_ETYPE if d is not a dict or key is unhashable; MP_EVALUE for
 * nesting beyond MP_OBJ_MAX_DEPTH; -EINVAL for NULL or misused arguments;
 * -ENOMEM.
 * Ownership: on success the dict owns key and value (or has freed key); on
 * failure the caller still owns both.
 */
MP_API int mp_obj_dict_set(mp_obj *d, mp_obj *key, mp_obj *value);

/*
 * mp_obj_dict_get - Python's d.get(key): the value stored under a key equal
 * to key, or NULL when there is none, key is unhashable, or d is not a dict.
 *
 * Ownership: the result is borrowed from d (const: see mp_obj_list_get); key
 * stays the caller's.
 */
MP_API const mp_obj *mp_obj_dict_get(const mp_obj *d, const mp_obj *key);

/* Shorthands for the usual key types, without building a key value:
 * d.get("name") with a NUL-terminated UTF-8 key, and d.get(k) with an int.
 * Ownership: borrowed, as mp_obj_dict_get(). */
MP_API const mp_obj *mp_obj_dict_get_cstr(const mp_obj *d, const char *key);
MP_API const mp_obj *mp_obj_dict_get_int(const mp_obj *d, int64_t key);

/*
 * mp_obj_dict_get_mut - mp_obj_dict_get() for changing the value in place (a
 * list or dict stored in d, say).
 * Returns the value, or NULL as mp_obj_dict_get().
 * Ownership: borrowed from d, which still owns it: never free it or add it
 * to another container; key stays the caller's.
 */
MP_API mp_obj *mp_obj_dict_get_mut(mp_obj *d, const mp_obj *key);

/*
 * mp_obj_dict_del - Python's del d[key]: removes the key and frees both the
 * stored key and its value.
 *
 * Returns 0; MP_EKEY (KeyError) when no key equal to key is present;
 * MP_ETYPE if d is not a dict or key is unhashable; -EINVAL for NULL.
 */
MP_API int mp_obj_dict_del(mp_obj *d, const mp_obj *key);

/*
 * mp_obj_dict_next - iterate over a dict in insertion order (Python's
 * d.items()).
 *
 * pos:    the iteration state: set *pos = 0 before the first call.
 * key, value: receive borrowed pointers to the next item (either may be
 *         NULL), const as mp_obj_dict_get()'s; to change a value in place,
 *         look it up with mp_obj_dict_get_mut().
 *
 * Returns 1 with the next item, 0 when there are no more, MP_ETYPE if d is
 * not a dict, -EINVAL for NULL. Replacing values while iterating is fine;
 * adding or deleting keys makes the iteration skip or repeat items (Python
 * raises RuntimeError there), but never reads out of bounds.
 */
MP_API int mp_obj_dict_next(const mp_obj *d, size_t *pos, const mp_obj **key, const mp_obj **value);

/* ---- Whole values ------------------------------------------------------ */

/*
 * mp_obj_equal - Python's a == b, deep. Values of different types compare
 * unequal, except the numbers (bool, int, float compare by value). NaN is not
 * equal to itself as a float, but a container is equal to itself, as in
 * Python (identity comes first in container comparisons). Dicts are equal
 * when they hold equal keys mapped to equal values, in any order. false if
 * either is NULL.
 */
MP_API bool mp_obj_equal(const mp_obj *a, const mp_obj *b);

/*
 * mp_obj_copy - a deep copy of o (of a container's whole contents).
 * Immortal values are not copied (the copy holds the same ones), and a
 * copied NaN keeps its identity, as copy.deepcopy() keeps both.
 *
 * Returns the new root value, or NULL for NULL o or when memory runs out.
 * Ownership: the caller owns the copy; o is unchanged and stays its owner's.
 */
MP_API mp_obj *mp_obj_copy(const mp_obj *o);

/*
 * mp_obj_repr - Python's repr(o), character for character: 'it''s' as
 * "it's", escapes \n \t \r \\ \xhh \uhhhh \Uhhhhhhhh as Python 3.11 chooses
 * them (Unicode 14 printability), b'..' for bytes, the shortest float that
 * reads back to the same double ('0.1', '1e+16', 'inf', 'nan', '-0.0'),
 * (1,) for a one-item tuple, {'a': 1} for dicts in insertion order.
 *
 * out: receives a NUL-terminated string (repr output never holds NUL).
 * Returns 0; -EINVAL for NULL arguments; -ENOMEM (then *out is NULL).
 * Ownership: the caller frees *out with free().
 */
MP_API int mp_obj_repr(const mp_obj *o, char **out);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_OBJ_H */
