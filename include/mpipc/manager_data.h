/*
 * libmpipc - the manager's Value, Array and Namespace, and list ordering.
 *
 * Python's SyncManager.Value, .Array and .Namespace, served by a libmpipc
 * manager (mpipc/manager.h) to C and Python clients alike, and the list
 * proxy's sort, reverse and slices:
 *
 *     mp_valueproxy *v;
 *     mp_obj *zero = mp_obj_int(0);
 *     mp_manager_value(m, "i", zero, &v);   // m.Value('i', 0)
 *     mp_valueproxy_set_int(v, 5);          // v.value = 5
 *     mp_listproxy_sort(l, false);          // l.sort()
 *
 * A Value holds any value (Python's managers.Value keeps the typecode and
 * checks nothing); an Array holds items its typecode allows, as Python's
 * array.array; a Namespace holds attributes by name. Every call here is one
 * request to the server: common returns are those of every proxy call
 * (MP_ENOSERVER, MP_ENOOBJ, MP_ECLOSED, MP_ETIMEDOUT, -EINVAL for NULL,
 * -ENOMEM), and a failure records the server's words for mp_errmsg().
 * Thread/fork: as for the dict proxies of mpipc/manager.h - a proxy works
 * in any thread and in children forked later.
 */
#ifndef MPIPC_MANAGER_DATA_H
#define MPIPC_MANAGER_DATA_H

#include <mpipc/common.h>
#include <mpipc/manager.h>
#include <mpipc/obj.h>

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A proxy for a manager-held Value (Python's ValueProxy). */
typedef struct mp_valueproxy mp_valueproxy;
/* A proxy for a manager-held Array (Python's ArrayProxy). */
typedef struct mp_arrayproxy mp_arrayproxy;
/* A proxy for a manager-held Namespace (Python's NamespaceProxy). */
typedef struct mp_nsproxy mp_nsproxy;

/* ---- Value ---------------------------------------------------------------------- */

/*
 * mp_manager_value - a new shared Value (Python's Manager().Value(typecode,
 * value)).
 * m:        the manager.
 * typecode: a str kept with it, such as "i" or "d" (Python checks nothing
 *           against it, and neither does the server).
 * value:    the initial value, copied.
 * out:      receives the proxy (NULL on failure).
 * Returns 0, or a common code. Ownership: mp_valueproxy_free() the proxy;
 * value stays the caller's. Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_value(mp_manager *m, const char *typecode, const mp_obj *value,
                            mp_valueproxy **out);

/*
 * mp_manager_value_named - the Value called name; made from typecode and
 * value if no object has that name yet.
 * Returns 1 when this call made it, 0 when it existed (typecode and value
 * are then ignored); MP_ETYPE when the name is another kind's. Ownership
 * and Thread/fork as mp_manager_value().
 */
MP_API int mp_manager_value_named(mp_manager *m, const char *name, const char *typecode,
                                  const mp_obj *value, mp_valueproxy **out);

/*
 * mp_valueproxy_get - v.value (v.get()) into *value.
 * Returns 0, or a common code. Ownership: mp_obj_free(*value).
 */
MP_API int mp_valueproxy_get(mp_valueproxy *v, mp_obj **value);

/* mp_valueproxy_set - v.value = value (v.set(value)); value is copied.
 * Returns 0, or a common code. */
MP_API int mp_valueproxy_set(mp_valueproxy *v, const mp_obj *value);

/* mp_valueproxy_get_int - v.value as an int. Returns 0; MP_ETYPE when the
 * value is no int (or beyond int64). */
MP_API int mp_valueproxy_get_int(mp_valueproxy *v, int64_t *value);

/* mp_valueproxy_set_int - v.value = value, an int. Returns 0. */
MP_API int mp_valueproxy_set_int(mp_valueproxy *v, int64_t value);

/* mp_valueproxy_get_float - v.value as a float (an int is converted).
 * Returns 0; MP_ETYPE when the value is no number. */
MP_API int mp_valueproxy_get_float(mp_valueproxy *v, double *value);

/* mp_valueproxy_set_float - v.value = value, a float. Returns 0. */
MP_API int mp_valueproxy_set_float(mp_valueproxy *v, double value);

/* mp_valueproxy_free - release the proxy. Accepts NULL. Thread/fork: as
 * mp_dictproxy_free(). */
MP_API void mp_valueproxy_free(mp_valueproxy *v);

/* ---- Array ---------------------------------------------------------------------- */

/*
 * mp_manager_array - a new shared Array (Python's Manager().Array(typecode,
 * seq)), holding items as array.array(typecode, seq) would.
 * m:        the manager.
 * typecode: one of array's typecodes: "b" "B" "h" "H" "i" "I" "l" "L" "q"
 *           "Q" (ints of that range), "f" "d" (floats; "f" rounds to
 *           single precision), "u" (one-character strs).
 * seq:      a list or tuple of the initial items, copied.
 * out:      receives the proxy (NULL on failure).
 * Returns 0; MP_ETYPE for another typecode or an item of the wrong type;
 * MP_EVALUE for an int out of the typecode's range (Python's
 * OverflowError). Ownership: mp_arrayproxy_free() the proxy; seq stays the
 * caller's. Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_array(mp_manager *m, const char *typecode, const mp_obj *seq,
                            mp_arrayproxy **out);

/* mp_arrayproxy_len - len(a): the count, or a negative code. */
MP_API ssize_t mp_arrayproxy_len(mp_arrayproxy *a);

/*
 * mp_arrayproxy_get - a[i] into *value; a negative i counts from the end.
 * Returns 0; MP_EKEY when i is out of range (IndexError). Ownership:
 * mp_obj_free(*value).
 */
MP_API int mp_arrayproxy_get(mp_arrayproxy *a, ssize_t i, mp_obj **value);

/*
 * mp_arrayproxy_set - a[i] = value, checked against the typecode as
 * array.array checks it.
 * Returns 0; MP_EKEY (IndexError); MP_ETYPE for a value of the wrong type;
 * MP_EVALUE for an int out of range (OverflowError). The array is
 * unchanged on failure.
 */
MP_API int mp_arrayproxy_set(mp_arrayproxy *a, ssize_t i, const mp_obj *value);

/* mp_arrayproxy_get_int - a[i] as an int. Returns 0; MP_EKEY; MP_ETYPE. */
MP_API int mp_arrayproxy_get_int(mp_arrayproxy *a, ssize_t i, int64_t *value);

/* mp_arrayproxy_set_int - a[i] = value, an int. Returns 0; MP_EKEY;
 * MP_ETYPE; MP_EVALUE as mp_arrayproxy_set(). */
MP_API int mp_arrayproxy_set_int(mp_arrayproxy *a, ssize_t i, int64_t value);

/*
 * mp_arrayproxy_copy - a[:] (list(a)) as a local list.
 * Returns 0, or a common code. Ownership: mp_obj_free(*list).
 */
MP_API int mp_arrayproxy_copy(mp_arrayproxy *a, mp_obj **list);

/* mp_arrayproxy_free - release the proxy. Accepts NULL. Thread/fork: as
 * mp_dictproxy_free(). */
MP_API void mp_arrayproxy_free(mp_arrayproxy *a);

/* ---- Namespace ------------------------------------------------------------------- */

/*
 * mp_manager_namespace - a new shared Namespace (Python's
 * Manager().Namespace(**attrs)).
 * m:     the manager.
 * attrs: a dict of str names to initial values, copied, or NULL for none
 *        (MP_ETYPE for another type or a name that is no str).
 * out:   receives the proxy (NULL on failure).
 * Returns 0. Ownership: mp_nsproxy_free() the proxy; attrs stays the
 * caller's. Thread/fork: as mp_manager_dict().
 */
MP_API int mp_manager_namespace(mp_manager *m, const mp_obj *attrs, mp_nsproxy **out);

/*
 * mp_manager_namespace_named - the Namespace called name; made from attrs
 * if no object has that name yet.
 * Returns 1 (made), 0 (existed: attrs ignored); MP_ETYPE when the name is
 * another kind's. Ownership and Thread/fork as mp_manager_namespace().
 */
MP_API int mp_manager_namespace_named(mp_manager *m, const char *name, const mp_obj *attrs,
                                      mp_nsproxy **out);

/*
 * mp_nsproxy_get - ns.<name> into *value.
 * Returns 0; MP_EKEY when there is no such attribute (Python's
 * AttributeError). Ownership: mp_obj_free(*value).
 */
MP_API int mp_nsproxy_get(mp_nsproxy *ns, const char *name, mp_obj **value);

/* mp_nsproxy_set - ns.<name> = value; value is copied. Returns 0. */
MP_API int mp_nsproxy_set(mp_nsproxy *ns, const char *name, const mp_obj *value);

/* mp_nsproxy_del - del ns.<name>. Returns 0; MP_EKEY (AttributeError). */
MP_API int mp_nsproxy_del(mp_nsproxy *ns, const char *name);

/*
 * mp_nsproxy_copy - every attribute, as a local dict of name to value
 * (Python's vars() of the referent).
 * Returns 0, or a common code. Ownership: mp_obj_free(*attrs).
 */
MP_API int mp_nsproxy_copy(mp_nsproxy *ns, mp_obj **attrs);

/* mp_nsproxy_free - release the proxy. Accepts NULL. Thread/fork: as
 * mp_dictproxy_free(). */
MP_API void mp_nsproxy_free(mp_nsproxy *ns);

/* ---- list ordering ------------------------------------------------------------------ */

/*
 * mp_listproxy_sort - l.sort(reverse=reverse), stable, with Python's
 * ordering: numbers (bool, int, float) by value, str with str by code
 * point, bytes with bytes, lists with lists and tuples with tuples item by
 * item. There is no key function (the server runs no code).
 * Returns 0; MP_ETYPE when two items cannot be compared (Python's
 * TypeError: '<' not supported), the list then unchanged.
 */
MP_API int mp_listproxy_sort(mp_listproxy *l, bool reverse);

/* mp_listproxy_reverse - l.reverse(), in place. Returns 0. */
MP_API int mp_listproxy_reverse(mp_listproxy *l);

/* ---- list slices (1.1) -------------------------------------------------------------
 *
 * l[start:stop:step] with Python's semantics, on our server and on
 * CPython's: a negative bound counts from the end, bounds past either end
 * are clipped, a negative step walks backwards. Each call sends Python's
 * builtins.slice object (docs/wire.md), as a Python ListProxy does.
 */

/* A bound or step left out, Python's None: l[::-1] is
 * mp_listproxy_get_slice(l, MP_LISTPROXY_NONE, MP_LISTPROXY_NONE, -1, &out).
 * A left-out step is 1; a left-out start or stop is the end the step
 * walks from or to. (SSIZE_MIN itself is thus no bound: pass -SSIZE_MAX,
 * which is clipped exactly as SSIZE_MIN would be.) */
#define MP_LISTPROXY_NONE (-SSIZE_MAX - 1)

/*
 * mp_listproxy_get_slice - l[start:stop:step] as a new local list.
 * l:     the list proxy.
 * start, stop, step: the slice's fields; MP_LISTPROXY_NONE for None.
 * list:  receives the list of the items (NULL on failure).
 * Returns 0; MP_EVALUE for a step of 0 (Python's ValueError: slice step
 * cannot be zero); or a common code.
 * Ownership: mp_obj_free(*list).
 */
MP_API int mp_listproxy_get_slice(mp_listproxy *l, ssize_t start, ssize_t stop, ssize_t step,
                                  mp_obj **list);

/*
 * mp_listproxy_set_slice - l[start:stop:step] = seq.
 * l:     the list proxy.
 * start, stop, step: the slice's fields; MP_LISTPROXY_NONE for None. With
 *        a step of 1 (or None) the slice is replaced by seq's items, which
 *        may be more or fewer (l[2:2] = seq inserts at 2); with any other
 *        step seq must have exactly as many items as the slice.
 * seq:   a list or tuple (MP_ETYPE otherwise), copied.
 * Returns 0; MP_EVALUE for a step of 0 or an extended slice of another
 * size than seq (Python's ValueError: attempt to assign sequence of size
 * X to extended slice of size Y), the list then unchanged; or a common
 * code.
 */
MP_API int mp_listproxy_set_slice(mp_listproxy *l, ssize_t start, ssize_t stop, ssize_t step,
                                  const mp_obj *seq);

/*
 * mp_listproxy_del_slice - del l[start:stop:step].
 * start, stop, step: the slice's fields; MP_LISTPROXY_NONE for None.
 * Returns 0 (also when the slice is empty); MP_EVALUE for a step of 0; or
 * a common code.
 */
MP_API int mp_listproxy_del_slice(mp_listproxy *l, ssize_t start, ssize_t stop, ssize_t step);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_MANAGER_DATA_H */
