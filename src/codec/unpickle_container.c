/*
 * unpickle_container - the decoder's container opcodes (unpickle.c runs the
 * machine): lists, tuples, dicts, sets and frozensets, made empty or from
 * the items above a MARK, and filled. Statics start with unpickle_container_.
 *
 * Heights here are provisional: a list can grow after it went into another
 * container, whose height then lags. They still stop runaway nesting early
 * (TUPLE1 repeated a million times), and tuples - the only containers that
 * can be dict keys, and whose hashing and comparison recurse - never change,
 * so their heights are exact. Placing recomputes every height.
 */
#include "codec/unpickle.h"

/* Room for k more items in a list or tuple, paid for first. */
int mp__unpickle_seq_room(struct unpickler *u, mp_obj *seq, size_t k)
{
    size_t cap;
    int rc = mp__seq_cap_for(seq, k, &cap);
    if (rc < 0 || cap == seq->u.seq.cap)
        return rc;
    rc = unpickle_charge(u, (cap - seq->u.seq.cap) * sizeof(mp_obj *));
    return rc < 0 ? rc : mp__seq_reserve(seq, k);
}

/* Move stack items [first, stack.len) into seq, which has room for them:
 * values only, nested no deeper than allowed. */
static int unpickle_container_move(struct unpickler *u, mp_obj *seq, size_t first)
{
    MP__ASSERT(unpickle_fence(u) <= first && first <= u->stack.len);
    MP__ASSERT(seq->u.seq.cap - seq->u.seq.len >= u->stack.len - first);
    for (size_t i = first; i < u->stack.len; i++) {
        mp_obj *item = u->stack.v[i];
        int rc = item->type == TYPE_PROXY_FUNC && seq->type == MP_TYPE_TUPLE
                     ? 0
                     : unpickle_check_value(item);
        if (rc == 0)
            rc = unpickle_adopt_height(u, seq, item);
        if (rc < 0)
            return rc;
        seq->u.seq.items[seq->u.seq.len++] = item;
    }
    u->stack.len = first;
    return 0;
}

/* Build a list or tuple from stack items [first, stack.len) and replace them
 * with it. Its final length is known: the array is allocated to fit. */
static int unpickle_container_seq(struct unpickler *u, int type, size_t first)
{
    size_t count = u->stack.len - first;
    mp_obj *seq;
    int rc = unpickle_new_node(u, type, &seq);
    if (rc < 0)
        return rc;
    seq->height = 1;
    if (count) {
        if (count > SIZE_MAX / sizeof(mp_obj *))
            return -ENOMEM;
        if ((rc = unpickle_charge(u, count * sizeof(mp_obj *))) < 0)
            return rc;
        if (!(seq->u.seq.items = malloc(count * sizeof(mp_obj *))))
            return -ENOMEM;
        seq->u.seq.cap = count;
    }
    rc = unpickle_container_move(u, seq, first);
    return rc < 0 ? rc : unpickle_push(u, seq);
}

static int unpickle_container_append(struct unpickler *u, mp_obj *list, size_t first)
{
    if (list->type != MP_TYPE_LIST)
        return MP_EPROTO; /* Python would call obj.append: refused */
    int rc = mp__unpickle_seq_room(u, list, u->stack.len - first);
    return rc < 0 ? rc : unpickle_container_move(u, list, first);
}

static int unpickle_container_setitems(struct unpickler *u, mp_obj *dict, size_t first)
{
    if (dict->type != MP_TYPE_DICT)
        return MP_EPROTO;
    if ((u->stack.len - first) % 2)
        return MP_EPROTO; /* a key without a value */
    for (size_t i = first; i < u->stack.len; i += 2) {
        mp_obj *key = u->stack.v[i], *value = u->stack.v[i + 1], *old;
        int rc = unpickle_check_value(key);
        if (rc == 0)
            rc = unpickle_check_value(value);
        if (rc == 0)
            rc = unpickle_adopt_height(u, dict, key);
        if (rc == 0)
            rc = unpickle_adopt_height(u, dict, value);
        /* A new key may make the dict grow: the budget must hold the
         * growth before, and pays what actually happened after (a
         * replaced key costs nothing). */
        size_t cap0 = dict->u.d.cap, cap1 = mp__dict_cap_after_insert(dict);
        if (rc == 0 && cap1 > cap0 && cap1 - cap0 > u->mem / MP__DICT_BYTES_PER_CAP)
            rc = MP_EPROTO;
        if (rc == 0)
            rc = mp__dict_store(dict, key, value, &u->budget, &old);
        if (rc == 0 && dict->u.d.cap > cap0) {
            MP__ASSERT(dict->u.d.cap == cap1 && cap1 - cap0 <= u->mem / MP__DICT_BYTES_PER_CAP);
            u->mem -= (dict->u.d.cap - cap0) * MP__DICT_BYTES_PER_CAP;
        }
        if (rc == MP_ETYPE)
            rc = unpickle_fail(u, MP__UNPICKLE_UNHASHABLE);
        if (rc < 0)
            return rc;
        /* A replaced value, or a duplicate key, stays in the arena. */
    }
    u->stack.len = first;
    return 0;
}

/*
 * Add items to a set or frozenset being built: n pointers at items (stack
 * slots, or a list's items for set(list)). Charged as unpickle_container_setitems
 * charges a dict's growth; a duplicate item stays in the arena, so a
 * million copies of one item cost a lookup each and no memory.
 */
static int unpickle_container_add(struct unpickler *u, mp_obj *set, mp_obj *const *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mp_obj *item = items[i];
        int rc = unpickle_check_value(item);
        if (rc == 0)
            rc = unpickle_adopt_height(u, set, item);
        size_t cap0 = set->u.d.cap, cap1 = mp__dict_cap_after_insert(set);
        if (rc == 0 && cap1 > cap0 && cap1 - cap0 > u->mem / MP__DICT_BYTES_PER_CAP)
            rc = MP_EPROTO;
        bool added;
        if (rc == 0)
            rc = mp__set_store(set, item, &u->budget, &added);
        if (rc == 0 && set->u.d.cap > cap0) {
            MP__ASSERT(set->u.d.cap == cap1 && cap1 - cap0 <= u->mem / MP__DICT_BYTES_PER_CAP);
            u->mem -= (set->u.d.cap - cap0) * MP__DICT_BYTES_PER_CAP;
        }
        if (rc == MP_ETYPE)
            rc = unpickle_fail(u, MP__UNPICKLE_UNHASHABLE);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A new set or frozenset (type) holding the n items at items: *out. */
int mp__unpickle_new_set(struct unpickler *u, int type, mp_obj *const *items, size_t n,
                         mp_obj **out)
{
    int rc = unpickle_new_node(u, type, out);
    if (rc < 0)
        return rc;
    (*out)->height = 1;
    return unpickle_container_add(u, *out, items, n);
}

/* ADDITEMS: the items above the last MARK go into the set below it. Only
 * a set: a frozenset has no add(), and Python fails there too. */
static int unpickle_container_additems(struct unpickler *u)
{
    size_t first;
    int rc = unpickle_pop_mark(u, &first);
    if (rc < 0)
        return rc;
    if (first <= unpickle_fence(u))
        return MP_EPROTO; /* no set below the MARK */
    mp_obj *set = u->stack.v[first - 1];
    if (set->type != MP_TYPE_SET)
        return MP_EPROTO;
    rc = unpickle_container_add(u, set, u->stack.v + first, u->stack.len - first);
    u->stack.len = first;
    return rc;
}

/* FROZENSET: the items above the last MARK become a frozenset. */
static int unpickle_container_frozenset(struct unpickler *u)
{
    size_t first;
    mp_obj *fs;
    int rc = unpickle_pop_mark(u, &first);
    /* no items: the stack may never have been allocated */
    mp_obj *const *items = u->stack.len > first ? u->stack.v + first : NULL;
    if (rc == 0)
        rc = mp__unpickle_new_set(u, MP_TYPE_FROZENSET, items, u->stack.len - first, &fs);
    if (rc < 0)
        return rc;
    u->stack.len = first;
    return unpickle_push(u, fs);
}

/* ---- The handlers (unpickle.c's dispatch table) ---- */

/* EMPTY_LIST, EMPTY_TUPLE, EMPTY_DICT, EMPTY_SET */
int mp__unpickle_op_empty(struct unpickler *u)
{
    int op = u->op;
    return unpickle_push_new(u, op == MP__OP_EMPTY_LIST    ? MP_TYPE_LIST
                                : op == MP__OP_EMPTY_TUPLE ? MP_TYPE_TUPLE
                                : op == MP__OP_EMPTY_DICT  ? MP_TYPE_DICT
                                                           : MP_TYPE_SET);
}

int mp__unpickle_op_additems(struct unpickler *u)
{
    return unpickle_container_additems(u);
}

int mp__unpickle_op_frozenset(struct unpickler *u)
{
    return unpickle_container_frozenset(u);
}

/* LIST, TUPLE */
int mp__unpickle_op_list(struct unpickler *u)
{
    size_t first;
    int rc = unpickle_pop_mark(u, &first);
    if (rc < 0)
        return rc;
    return unpickle_container_seq(u, u->op == MP__OP_LIST ? MP_TYPE_LIST : MP_TYPE_TUPLE, first);
}

/* TUPLE1, TUPLE2, TUPLE3 */
int mp__unpickle_op_tuple_n(struct unpickler *u)
{
    size_t k = (size_t)(u->op - MP__OP_TUPLE1 + 1);
    if (u->stack.len < unpickle_fence(u) + k)
        return MP_EPROTO;
    return unpickle_container_seq(u, MP_TYPE_TUPLE, u->stack.len - k);
}

int mp__unpickle_op_dict(struct unpickler *u)
{
    size_t first;
    mp_obj *o;
    int rc = unpickle_pop_mark(u, &first);
    if (rc < 0)
        return rc;
    if ((rc = unpickle_new_node(u, MP_TYPE_DICT, &o)) < 0)
        return rc;
    o->height = 1;
    if ((rc = unpickle_container_setitems(u, o, first)) < 0)
        return rc;
    return unpickle_push(u, o);
}

int mp__unpickle_op_append(struct unpickler *u)
{
    mp_obj *o, *a;
    int rc;
    if ((rc = unpickle_pop_value(u, &a)) < 0 || (rc = unpickle_top(u, &o)) < 0)
        return rc;
    if ((rc = unpickle_push(u, a)) < 0) /* append takes it from the stack */
        return rc;
    return unpickle_container_append(u, o, u->stack.len - 1);
}

int mp__unpickle_op_appends(struct unpickler *u)
{
    size_t first;
    int rc = unpickle_pop_mark(u, &first);
    if (rc < 0)
        return rc;
    if (first <= unpickle_fence(u))
        return MP_EPROTO; /* no list below the MARK */
    return unpickle_container_append(u, u->stack.v[first - 1], first);
}

int mp__unpickle_op_setitem(struct unpickler *u)
{
    if (u->stack.len < unpickle_fence(u) + 3)
        return MP_EPROTO;
    return unpickle_container_setitems(u, u->stack.v[u->stack.len - 3], u->stack.len - 2);
}

int mp__unpickle_op_setitems(struct unpickler *u)
{
    size_t first;
    int rc = unpickle_pop_mark(u, &first);
    if (rc < 0)
        return rc;
    if (first <= unpickle_fence(u))
        return MP_EPROTO;
    return unpickle_container_setitems(u, u->stack.v[first - 1], first);
}
