/*
 * libmpipc - values: the C side of the Python objects a Connection carries.
 *
 * An mp_obj is one of None, bool, int (any size, as in Python), float
 * (double), str (UTF-8), bytes, list, tuple, dict, set, frozenset,
 * bytearray, or an inert instance of one of the few CPython classes Python's
 * managers send (exceptions, Token: mp_obj_instance_new). mp_conn_send()
 * pickles it so that a Python
 * peer's recv() gets the equal Python object, and mp_conn_recv() turns what a
 * Python peer sent back into an mp_obj.
 *
 * Ownership: a value is a tree.
 *   - Every value has exactly one owner: either the caller (a "root" value,
 *     released with mp_obj_free) or the one container it was put into.
 *   - Containers own their items: putting a value into a list, tuple, dict,
 *     set or frozenset hands it over on success, and freeing the container
 *     frees the items. On failure nothing changes and the caller still owns
 *     what it passed.
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
 *   - str holds Unicode text as UTF-8 (no overlong forms) and may contain
 *     NUL; its length in Python is its number of code points (mp_obj_len).
 *     A Python str may hold lone surrogates U+D800..U+DFFF (os.walk and
 *     os.listdir return '\udcff' for a file name byte that is not UTF-8);
 *     such a code point is kept in its 3-byte form ED A0..BF 80..BF, as
 *     Python's pickle writes it (errors="surrogatepass"), counts as one
 *     code point and is written back the same way. Two surrogates in a row
 *     stay two code points ('\ud83d\ude00' is not an emoji), as in Python.
 *     mp_obj_str_fsencode gives the bytes to open such a file with.
 *   - int is exact at any size: Python's ints beyond 64 bits arrive whole
 *     and go back whole. mp_obj_get_int hands out those that fit int64
 *     (mp_obj_int_fits); mp_obj_int_to_bytes, mp_obj_int_from_bytes,
 *     mp_obj_int_from_str and mp_obj_repr convert any of them.
 *   - bool is an int: True == 1 == 1.0, and as dict keys 1, 1.0 and True are
 *     the same key (the first key inserted stays, as in Python: {1: 'a',
 *     True: 'b'} is {1: 'b'}). int and float compare exactly (2**53 + 1 !=
 *     float(2**53 + 1), 2**64 == 2.0**64, and they are one dict key), and
 *     NaN equals nothing, itself included.
 *   - NaN is found by identity, as in Python: each mp_obj_float(NAN) is a
 *     key of its own ({nan: 1, nan: 2} after two inserts), found by that
 *     value only. A copy of a NaN (mp_obj_copy, or a received value Python
 *     shared) is the same object as the original, as copy.deepcopy() keeps
 *     a float: it finds the same key, and [x] == [copy of x].
 *   - dict hashing is keyed with 128 random bits per process (from the
 *     kernel), for every key type, so a peer cannot choose keys that
 *     collide: a dict built from received data stays O(1) per insert.
 *   - dict keys and set items must be hashable: None, bool, int, float,
 *     str, bytes, or a tuple or frozenset of hashable values. A list, dict,
 *     set or bytearray as key is Python's TypeError (MP_ETYPE). Dicts keep
 *     insertion order (Python 3.7+).
 *   - tuples are immutable once they are inside another value; a root tuple
 *     can still be filled with mp_obj_tuple_append.
 *
 * Status codes: -EINVAL for NULL or misused arguments; MP_ETYPE (TypeError)
 * for a value of the wrong type, an unhashable key; MP_EKEY (KeyError) for a
 * missing key or index; MP_EVALUE for nesting beyond MP_OBJ_MAX_DEPTH and
 * for int text beyond MP_OBJ_INT_MAX_STR_DIGITS (ValueError); -ERANGE for an
 * int that does not fit where it is asked to (OverflowError); -ENOMEM.
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

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A value: None, bool, int, float, str, bytes, list, tuple, dict, set,
 * frozenset, bytearray or an instance of a listed CPython class. */
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
    MP_TYPE_SET,
    MP_TYPE_FROZENSET,
    MP_TYPE_BYTEARRAY,
    MP_TYPE_INSTANCE, /* an inert instance of a listed CPython class (1.1) */
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
 * that int (never NULL). Ints beyond it: mp_obj_int_from_bytes,
 * mp_obj_int_from_str. */
MP_API mp_obj *mp_obj_int(int64_t v);

/* A float. Every double is kept bit for bit, NaN payloads and -0.0 included. */
MP_API mp_obj *mp_obj_float(double v);

/*
 * mp_obj_str - a str from len bytes of UTF-8 at s (NUL bytes allowed; s may
 * be NULL when len is 0). The bytes are copied.
 *
 * Accepts what Python's bytes.decode("utf-8", "surrogatepass") accepts:
 * strict UTF-8, plus lone surrogates U+D800..U+DFFF in their 3-byte form
 * (ED A0..BF 80..BF), which is what mp_obj_get_str hands back for them.
 * Returns NULL for anything else (Python's UnicodeDecodeError: truncated or
 * overlong sequences, code points above U+10FFFF, stray bytes) or when
 * memory runs out. For bytes that are a file name, not text, use
 * mp_obj_str_fsdecode.
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
 * "str", "bytes", "list", "tuple", "dict", "set", "frozenset", "bytearray",
 * and "instance" for MP_TYPE_INSTANCE); "?" for anything else. Static. */
MP_API const char *mp_type_name(int type);

/*
 * Checked accessors. Each stores the value through its out-parameter and
 * returns 0, or returns MP_ETYPE (Python's TypeError) when o has another type
 * and -EINVAL when an argument is NULL; the out-parameters are untouched on
 * failure.
 *
 * mp_obj_get_bool   a bool.
 * mp_obj_get_int    an int, or a bool (Python's bool is an int: True is 1).
 *                   An int beyond int64 gives -ERANGE (Python's
 *                   OverflowError, as in PyLong_AsLongLong).
 * mp_obj_get_float  a float (an int is not converted).
 * mp_obj_get_str    a str: *s points at its UTF-8 bytes, followed by a NUL
 *                   that is not counted in *len (the text itself may hold
 *                   NULs). Lone surrogates are in their 3-byte form ED
 *                   A0..BF xx, which strict UTF-8 readers refuse (see
 *                   mp_obj_str_fsencode for file names). len may be NULL.
 * mp_obj_get_bytes  bytes or a bytearray (both are "bytes-like" in Python):
 *                   *p points at them (followed by a NUL not counted in
 *                   *len). len may be NULL.
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
 * mp_obj_len - Python's len(o): the number of items of a list, tuple, dict,
 * set or frozenset, of bytes in bytes or a bytearray, of code points in a str.
 *
 * Returns the length; MP_ETYPE for None, bool, int and float; -EINVAL for
 * NULL.
 */
MP_API ssize_t mp_obj_len(const mp_obj *o);

/* ---- Ints of any size ------------------------------------------------- */

/* Python's limit on int <-> decimal text (sys.int_info.default_max_str_digits):
 * the digits of an int's text, sign not counted. Beyond it, mp_obj_repr and
 * mp_obj_int_from_str refuse with MP_EVALUE, as Python raises ValueError,
 * so a peer's huge int never costs quadratic time. */
#define MP_OBJ_INT_MAX_STR_DIGITS 4300

/*
 * mp_obj_int_from_bytes - Python's int.from_bytes(le, "little",
 * signed=is_signed): an int of any size from len little-endian bytes
 * (two's complement when is_signed). len 0 is 0.
 *
 * Returns the new int (immortal for -5..256), or NULL when le is NULL with
 * len > 0 or memory runs out. Ownership: the caller owns the result.
 */
MP_API mp_obj *mp_obj_int_from_bytes(const void *le, size_t len, bool is_signed);

/*
 * mp_obj_int_to_bytes - Python's o.to_bytes(len, "little", signed=is_signed).
 *
 * o:         an int or a bool.
 * len:       the bytes to write; mp_obj_int_bit_length tells how many the
 *            value needs: (bits + 7) / 8, or bits / 8 + 1 when signed.
 * out:       receives exactly len bytes (may be NULL when len is 0).
 *
 * Returns 0; -ERANGE when the value needs more than len bytes, or is
 * negative and is_signed is false (Python's OverflowError); MP_ETYPE for
 * another type; -EINVAL for NULL. out is untouched on failure.
 */
MP_API int mp_obj_int_to_bytes(const mp_obj *o, size_t len, bool is_signed, void *out);

/*
 * mp_obj_int_bit_length - Python's o.bit_length(): the bits of |o|, 0 for 0.
 *
 * Returns the count; MP_ETYPE for a value that is not an int or bool;
 * -EINVAL for NULL; -ENOMEM.
 */
MP_API ssize_t mp_obj_int_bit_length(const mp_obj *o);

/* mp_obj_int_fits - true when o is an int or bool whose value fits int64_t,
 * so that mp_obj_get_int succeeds; false for a bigger int, another type, or
 * NULL. */
MP_API bool mp_obj_int_fits(const mp_obj *o);

/*
 * mp_obj_int_from_str - Python's int(s) in base 10: ASCII spaces around, an
 * optional sign, decimal digits that single underscores may separate
 * ("-1_000"); any size up to MP_OBJ_INT_MAX_STR_DIGITS digits.
 *
 * s, len:  the text (not NUL-terminated; s may be NULL when len is 0).
 * out:     receives the new int.
 *
 * Returns 0; MP_EVALUE for text Python's int() refuses (ValueError:
 * "invalid literal for int() with base 10") or with more than
 * MP_OBJ_INT_MAX_STR_DIGITS digits ("Exceeds the limit (4300 digits)");
 * -EINVAL for NULL; -ENOMEM. Python also accepts non-ASCII decimal digits
 * and Unicode spaces ('\u0663' is 3): those are refused here with
 * MP_EVALUE. On failure *out is NULL.
 * Ownership: the caller owns *out.
 */
MP_API int mp_obj_int_from_str(const char *s, size_t len, mp_obj **out);

/* ---- File names -------------------------------------------------------- */

/*
 * mp_obj_str_fsencode - Python's os.fsencode(o) on Linux ("utf-8" with
 * errors="surrogateescape"): the bytes of the file name a str stands for.
 * Each lone surrogate U+DC80..U+DCFF becomes the byte 0x80..0xFF it
 * escapes, so a name from a Python peer's os.walk() opens the same file.
 *
 * o:    a str.
 * out:  receives the bytes, followed by a NUL not counted in *len. A name
 *       may hold NUL (Python's open() refuses it with ValueError: check
 *       strlen(*out) == *len before calling open()).
 *
 * Returns 0; MP_EVALUE when o holds another lone surrogate (Python's
 * UnicodeEncodeError); MP_ETYPE when o is not a str; -EINVAL for NULL;
 * -ENOMEM. On failure *out is NULL.
 * Ownership: the caller frees *out with free().
 */
MP_API int mp_obj_str_fsencode(const mp_obj *o, char **out, size_t *len);

/*
 * mp_obj_str_fsdecode - Python's os.fsdecode(p) on Linux: a str from the
 * bytes of a file name, UTF-8 where they are, and each byte that is not
 * part of a valid UTF-8 sequence as the lone surrogate U+DC80..U+DCFF that
 * escapes it. Never fails on content: mp_obj_str_fsencode gives the same
 * bytes back, and a Python peer gets the str its os.fsdecode would make.
 *
 * Returns the new str, or NULL when p is NULL with len > 0 or memory runs
 * out. Ownership: the caller owns the result.
 */
MP_API mp_obj *mp_obj_str_fsdecode(const void *p, size_t len);

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
 * mp_obj_dict_get_or - Python's d.get(key, default): the value stored under
 * a key equal to key, or dflt when there is none (dflt may be NULL, as
 * d.get(key) gives None: then the result is NULL when absent).
 *
 * Returns NULL also when d is NULL or not a dict, or key is unhashable or
 * NULL (there is nothing to find): only dflt can be mistaken for a stored
 * value, as in Python.
 * Ownership: borrowed, from d or from the caller's dflt; nothing is copied.
 */
MP_API const mp_obj *mp_obj_dict_get_or(const mp_obj *d, const mp_obj *key, const mp_obj *dflt);

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

/* ---- Sets and frozensets -----------------------------------------------
 *
 * A set holds distinct hashable items (the key types of a dict, frozensets
 * included), in insertion order here (Python's own order follows hashes, so
 * a received set's order is its pickle's). Equality is set equality, in any
 * order, and a set equals a frozenset with the same items, as in Python.
 * A frozenset is hashable (a dict key or a set item) and immutable once it
 * is inside another value. A C program builds one as it builds a tuple:
 * mp_obj_frozenset_new(), then mp_obj_set_add() while it is still a root.
 */

/* An empty set; an empty frozenset (fill it with mp_obj_set_add before
 * putting it anywhere). NULL when memory runs out. Ownership: the caller's. */
MP_API mp_obj *mp_obj_set_new(void);
MP_API mp_obj *mp_obj_frozenset_new(void);

/*
 * mp_obj_set_add - Python's set.add(item).
 *
 * set:   a set, or a frozenset that is a root value (a frozenset inside a
 *        value is immutable: -EINVAL).
 * item:  a hashable root value (see the top of this file), not set's root.
 *
 * If an equal item is present it stays, and the item passed in is freed,
 * as mp_obj_dict_set does with a key. Returns 0; MP_ETYPE if set is not a
 * set or frozenset, or item is unhashable (Python's TypeError); MP_EVALUE
 * for nesting beyond MP_OBJ_MAX_DEPTH; -EINVAL for NULL or misused
 * arguments; -ENOMEM.
 * Ownership: on success the set owns item (or has freed it); on failure the
 * caller still owns it.
 */
MP_API int mp_obj_set_add(mp_obj *set, mp_obj *item);

/*
 * mp_obj_set_contains - Python's item in set, for a set or frozenset.
 *
 * Returns 1 or 0; MP_ETYPE if set is not a set or frozenset or item is
 * unhashable (Python raises TypeError for `[] in s`); -EINVAL for NULL.
 * Ownership: item stays the caller's.
 */
MP_API int mp_obj_set_contains(const mp_obj *set, const mp_obj *item);

/*
 * mp_obj_set_discard - Python's set.discard(item): removes (and frees) the
 * item equal to item, if there is one.
 *
 * Returns 1 when an item was removed, 0 when none was present; MP_ETYPE if
 * set is not a set (a frozenset has no discard) or item is unhashable;
 * -EINVAL for NULL. Ownership: item stays the caller's.
 */
MP_API int mp_obj_set_discard(mp_obj *set, const mp_obj *item);

/*
 * mp_obj_set_next - iterate over a set or frozenset (in insertion order).
 *
 * pos:   the iteration state: set *pos = 0 before the first call.
 * item:  receives a borrowed pointer to the next item (may be NULL); it
 *        must not be modified.
 *
 * Returns 1 with the next item, 0 when there are no more, MP_ETYPE if set
 * is not a set or frozenset, -EINVAL for NULL. As for mp_obj_dict_next,
 * adding or discarding items meanwhile may skip or repeat items, but never
 * reads out of bounds.
 * Ownership: *item is borrowed from set (see mp_obj_list_get).
 */
MP_API int mp_obj_set_next(const mp_obj *set, size_t *pos, const mp_obj **item);

/* ---- Bytearrays -------------------------------------------------------- */

/*
 * mp_obj_bytearray - a bytearray holding a copy of len bytes at p (p may be
 * NULL when len is 0). It reads like bytes (mp_obj_get_bytes, mp_obj_len),
 * equals the bytes with the same contents (b'ab' == bytearray(b'ab') in
 * Python), is unhashable (not a dict key or set item) and has its own repr,
 * bytearray(b'ab'). Its length is fixed; its bytes can be changed in place
 * with mp_obj_get_bytes_mut.
 *
 * Returns the new value, or NULL for p NULL with len > 0 or when memory
 * runs out. Ownership: the caller's.
 */
MP_API mp_obj *mp_obj_bytearray(const void *p, size_t len);

/*
 * mp_obj_get_bytes_mut - the bytes of a bytearray, writable in place
 * (Python's ba[i] = x): *p points at *len bytes (len may be NULL).
 *
 * Returns 0; MP_ETYPE if o is not a bytearray (bytes are immutable);
 * -EINVAL for NULL. Ownership: *p is borrowed from o and lives as long as o.
 */
MP_API int mp_obj_get_bytes_mut(mp_obj *o, unsigned char **p, size_t *len);

/* ---- Whole values ------------------------------------------------------ */

/*
 * mp_obj_equal - Python's a == b, deep. Values of different types compare
 * unequal, except the numbers (bool, int, float compare by value), bytes
 * and bytearray (by contents), and set and frozenset (by items). NaN is not
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
 * them (Unicode 14 printability), b'..' for bytes, bytearray(b'..'),
 * {1, 2}, set(), frozenset({1, 2}) and frozenset() (items in insertion
 * order, where Python's follow their hashes), the shortest float that
 * reads back to the same double ('0.1', '1e+16', 'inf', 'nan', '-0.0'),
 * (1,) for a one-item tuple, {'a': 1} for dicts in insertion order.
 *
 * An int is written in decimal, a lone surrogate in a str as '\udcff'.
 *
 * out: receives a NUL-terminated string (repr output never holds NUL).
 * Returns 0; MP_EVALUE when o holds an int of more than
 * MP_OBJ_INT_MAX_STR_DIGITS digits (Python's ValueError: "Exceeds the limit
 * (4300 digits) for integer string conversion"); -EINVAL for NULL
 * arguments; -ENOMEM. On failure *out is NULL.
 * Ownership: the caller frees *out with free().
 */
MP_API int mp_obj_repr(const mp_obj *o, char **out);

/* ---- Instances of CPython's manager classes (1.1) ----------------------
 *
 * Python's managers send a few class instances: the exception a referent's
 * method raised (('#ERROR', KeyError('k'))), a Token naming a shared
 * object (('#PROXY', (exposed, token))), and a proxy inside a value
 * (d['x'] = m.list(): RebuildProxy). An MP_TYPE_INSTANCE value stands
 * for one of them as an inert value: the class's name and its arguments,
 * nothing else. The decoder never imports or calls to make one, and the
 * encoder writes one so that Python's unpickler rebuilds the real object.
 * Only the classes of docs/wire.md are known:
 *   "multiprocessing.managers.Token", "multiprocessing.managers.RebuildProxy",
 *   "multiprocessing.managers.RemoteError",
 *   "builtins.KeyError", "builtins.IndexError", "builtins.ValueError",
 *   "builtins.TypeError", "builtins.AttributeError", "builtins.RuntimeError",
 *   "builtins.StopIteration", "builtins.range", "builtins.OverflowError",
 *   "builtins.slice" (what a ListProxy sends for l[a:b:c]),
 *   "threading.BrokenBarrierError", "queue.Empty" and "queue.Full".
 * Any other class name is refused, on the wire and here.
 *
 * args is the tuple Python passes to the class: an exception's e.args
 * (KeyError('k'): ('k',)); for a Token, the (typeid, address, id) its
 * __getstate__ returns, which must have three items; for a RebuildProxy (a
 * proxy reference), (func, token, serializer, kwds): func the name of the
 * proxy class as a str ("ListProxy", "DictProxy", "AutoProxy", ... the list
 * of docs/wire.md), token a Token instance, serializer a str ("pickle"),
 * kwds a dict; for a range, (start, stop, step), three ints, step not 0;
 * for a slice, its (start, stop, step), three items each an int, a bool or
 * None (Python's slice('a') is refused: no list takes one). An instance compares
 * equal to another of the same class with equal args, is unhashable (MP_ETYPE
 * as a dict key), and its repr is Python's (KeyError('k'), Empty(),
 * Token(typeid='dict', address='/tmp/m', id='7f1'), range(0, 3)); a proxy
 * reference shows its call, RebuildProxy('ListProxy', Token(...), 'pickle',
 * {}). It nests one level deeper than its args.
 */

/*
 * mp_obj_instance_new - an instance of class cls with arguments args.
 *
 * cls: a class name of the list above, module and name ("builtins.KeyError").
 * args: a tuple, copied.
 * Returns a new root value, or NULL when cls or args is NULL, cls is not on
 * the list, args is not a tuple (or not the shape above, for a Token, a
 * RebuildProxy, a range or a slice), the result would nest deeper than
 * MP_OBJ_MAX_DEPTH, or memory runs out.
 * Ownership: the caller owns the result (mp_obj_free); args stays the
 * caller's.
 */
MP_API mp_obj *mp_obj_instance_new(const char *cls, const mp_obj *args);

/*
 * mp_obj_instance_class - the class of an instance: its module and name
 * ("queue.Empty", "multiprocessing.managers.Token"), a static string; NULL
 * when o is NULL or not an MP_TYPE_INSTANCE.
 */
MP_API const char *mp_obj_instance_class(const mp_obj *o);

/*
 * mp_obj_instance_args - the arguments of an instance: a tuple.
 * Returns the tuple, or NULL when o is NULL or not an MP_TYPE_INSTANCE.
 * Ownership: borrowed from o (const): valid while o is; never free it.
 */
MP_API const mp_obj *mp_obj_instance_args(const mp_obj *o);

/* ---- Building and unpacking in one call --------------------------------
 *
 * mp_obj_build and mp_obj_parse are Python's Py_BuildValue and
 * PyArg_ParseTuple for mp_obj, with the same format codes. Spaces, tabs
 * and commas between items are ignored (and colons, in a build's dicts).
 */

/*
 * mp_obj_build - a value from a format and C arguments, as Py_BuildValue:
 * mp_obj_build("(s,i,[d,d])", "x", 2, 0.5, 1.5) is ('x', 2, [0.5, 1.5]).
 *
 * fmt: the items to build, each one of
 *   i b h B H  int (any of them passed as int), as a Python int
 *   I          unsigned int                     k  unsigned long
 *   l          long                             K  unsigned long long
 *   L          int64_t (long long)              n  ssize_t
 *   d f        double (a float is promoted to double)
 *   p          int, as a bool: True when non-zero (Python 3.14's p)
 *   s z U      const char *, NUL-terminated UTF-8, as a str; NULL gives None
 *   s# z# U#   const char *, size_t: len bytes of UTF-8 (NULs allowed)
 *   y          const char *, NUL-terminated, as bytes; NULL gives None
 *   y#         const char *, size_t: len bytes, as bytes
 *   O S        mp_obj *, copied (mp_obj_copy); the caller keeps it
 *   N          mp_obj *, taken over: see Ownership
 *   (...)      a tuple of the items inside, [...] a list,
 *   {k:v,...}  a dict of the pairs inside (keys must be hashable).
 *   One item at the top level is the result itself ("i" gives an int, not
 *   a 1-tuple: write "(i)" for that); several are a tuple; none is None.
 *
 * Returns the new value, or NULL when
 *   - fmt is NULL or malformed (an unknown code, unmatched brackets, a dict
 *     key without a value, nesting beyond MP_OBJ_MAX_DEPTH), or an O or N
 *     argument is NULL: programming errors, as in Python (-EINVAL);
 *   - a str is not valid UTF-8 (MP_EVALUE), a dict key is unhashable
 *     (MP_ETYPE), k or K does not fit 64 bits (-EOVERFLOW), the value nests
 *     too deep (MP_EVALUE), or memory runs out (-ENOMEM).
 * Why it failed is recorded for the calling thread, as
 * docs/conventions.md describes ("Why a call failed"), with the offset in
 * fmt of the item that failed: "mp_obj_build: 's' text is not valid UTF-8
 * at offset 3 of format "[N,s,N]"". A malformed format outranks a bad value
 * met before it.
 * Ownership: the caller owns the result (mp_obj_free). Every N argument is
 * the result's on success and freed on failure, as Py_BuildValue steals N
 * references even when it fails: a call like
 * mp_obj_build("[N,N]", mp_obj_int(1), mp_obj_str_cstr(s)) leaks nothing
 * and needs no checks of its own (a NULL N argument, from a constructor
 * that failed, makes the build fail). Past the point where a format is
 * malformed, arguments cannot be read, so N items there are not freed.
 * An N argument must be a root value.
 */
MP_API mp_obj *mp_obj_build(const char *fmt, ...);

/* mp_obj_vbuild - mp_obj_build with a va_list (ap is not consumed: the call
 * works on a va_copy). */
MP_API mp_obj *mp_obj_vbuild(const char *fmt, va_list ap);

/*
 * mp_obj_parse - check a value's shape and unpack it into C variables, as
 * PyArg_ParseTuple: mp_obj_parse(obj, "(s,i|d)", &name, &n, &ratio)
 * unpacks ('x', 2) or ('x', 2, 0.5).
 *
 * obj: the value. The format reads it the way mp_obj_build would have
 *      built it, so a value built with a format parses with that format
 *      (with the codes both take, as in Python): one item at the top
 *      level is obj itself ("i": obj is an int); a
 *      top-level (...) or several items (or none) are the items of obj, a
 *      tuple or a list (its "arguments", counted from 1 in messages, as
 *      Python counts them).
 * fmt: the items, each one of
 *   i          int *      an int (or bool) in int's range
 *   b          unsigned char *   h  short *     (ranges checked)
 *   l          long *     L  int64_t *          n  ssize_t *
 *   B H I k K  unsigned char *, unsigned short *, unsigned *,
 *              unsigned long *, unsigned long long *: any int, modulo
 *              2**bits and unchecked, as in Python (-1 is all ones)
 *   d          double *   f  float *     a float, or an int converted
 *   p          int *      Python's truth value of any value (1 or 0)
 *   s          const char **  a str without NUL characters
 *   s#         const char **, size_t *   any str (NULs allowed)
 *   z, z#      as s, s#, and None gives NULL (and a length of 0)
 *   y          const char **  bytes without NUL bytes
 *   y#         const char **, size_t *   any bytes
 *   O          const mp_obj **  any value
 *   U S        const mp_obj **  a str (U) or a bytes (S) value
 *   (...)      a tuple or list of exactly these items (nested)
 *   |          the items after it are optional (top level only): a
 *              missing one leaves its variables as they were
 *   :name      at the end: the function name used in messages.
 *   Strings come back NUL-terminated and borrowed from obj.
 *
 * Returns 0, or (nothing written to any variable)
 *   MP_ETYPE   a wrong type or item count, in Python's words, with the
 *              position: "argument 2 must be int, not str",
 *              "argument 3, item 0 must be str, not int" (items counted
 *              from 0 within a nested sequence, as Python does),
 *              "function takes exactly 3 arguments (2 given)";
 *   MP_EVALUE  a NUL inside a str for s ("embedded null character") or
 *              inside bytes for y;
 *   -EOVERFLOW an int out of a variable's range ("argument 1: signed
 *              integer is greater than maximum");
 *   -EINVAL    obj, fmt or a variable pointer NULL, or fmt malformed.
 * The message is recorded for the calling thread, as mp_obj_build's.
 * Ownership: nothing to free. Pointers and values written are borrowed
 * from obj and live as long as it does unchanged. On failure no variable is
 * written: every check is made before the first store.
 */
MP_API int mp_obj_parse(const mp_obj *obj, const char *fmt, ...);

/* mp_obj_vparse - mp_obj_parse with a va_list (not consumed: the call
 * works on va_copy). */
MP_API int mp_obj_vparse(const mp_obj *obj, const char *fmt, va_list ap);
/*
 * mp_obj_dumps - Python's pickle.dumps(o, protocol=4): the exact pickle
 * mp_conn_send() puts in a frame (no FRAME opcode and no memo, which
 * Python's loads does not need).
 *
 * out, len: receive the pickle and its length.
 * Returns 0; -EINVAL for NULL arguments; -ENOMEM (then *out is NULL).
 * Ownership: the caller frees *out with free(); o stays the caller's.
 */
MP_API int mp_obj_dumps(const mp_obj *o, void **out, size_t *len);

/*
 * mp_obj_loads - Python's pickle.loads(buf): decodes one pickle with the
 * decoder mp_conn_recv() uses, with the same limits and refusals
 * (docs/wire.md): nothing is imported or called, and only the names of its
 * fixed table (builtins.bytearray, set, frozenset) are recognised. As
 * Python's pickle.loads does, bytes after the STOP opcode are ignored
 * (mp_conn_recv refuses them: a frame holds exactly one pickle); a STOP
 * that leaves other values or an open MARK is refused, where Python
 * ignores them too (docs/wire.md).
 *
 * out: receives the value.
 * Returns 0; MP_EPROTO for a pickle that is refused or malformed (nothing
 * leaks); -EINVAL for NULL arguments; -ENOMEM. On failure *out is NULL.
 * Ownership: the caller frees *out with mp_obj_free().
 */
MP_API int mp_obj_loads(const void *buf, size_t len, mp_obj **out);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_OBJ_H */
