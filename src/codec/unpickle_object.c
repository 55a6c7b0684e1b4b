/*
 * unpickle_object - the decoder's opcodes that would import or call in
 * Python (unpickle.c runs the machine; the names it resolves are listed
 * there): GLOBAL, STACK_GLOBAL, REDUCE, NEWOBJ and BUILD, which build the
 * few values they know without calling anything. Statics: unpickle_object_.
 */
#include "codec/unpickle.h"

/* GLOBAL / STACK_GLOBAL: the table of known names, all in builtins
 * (Python 2's __builtin__ is the same module under fix_imports). Nothing
 * else is resolved: every other name is refused, nothing is imported. */
static int unpickle_object_global(struct unpickler *u, const unsigned char *mod, size_t modlen,
                                  const unsigned char *name, size_t namelen)
{
    static const struct {
        const char *name;
        size_t len;
        int type;
    } known[] = {
        {"bytearray", 9, TYPE_BYTEARRAY_CALLABLE},
        {"set", 3, TYPE_SET_CALLABLE},
        {"frozenset", 9, TYPE_FROZENSET_CALLABLE},
    };
    bool builtins = (modlen == 8 && memcmp(mod, "builtins", 8) == 0) ||
                    (modlen == 11 && memcmp(mod, "__builtin__", 11) == 0);
    for (size_t i = 0; builtins && i < sizeof known / sizeof known[0]; i++)
        if (namelen == known[i].len && memcmp(name, known[i].name, namelen) == 0)
            return unpickle_push_new(u, known[i].type);
    int cls = mp__instance_lookup((const char *)mod, modlen, (const char *)name, namelen);
    int func = mp__proxy_func_lookup((const char *)mod, modlen, (const char *)name, namelen);
    if (cls < 0 && func < 0)
        return unpickle_fail(u, MP__UNPICKLE_IMPORTS);
    mp_obj *o;
    int rc = unpickle_new_node(u, cls < 0 ? TYPE_PROXY_FUNC : TYPE_CLASS, &o);
    if (rc < 0)
        return rc;
    o->u.i = cls < 0 ? func : cls;
    return unpickle_push(u, o);
}

/* Make inst (a new node) an instance of class cls holding args (a tuple)
 * as its one item. The args node may be shared (memo): placing copies it
 * where it must. */
static int unpickle_object_instance(struct unpickler *u, mp_obj *inst, int cls, mp_obj *args)
{
    int rc = mp__unpickle_seq_room(u, inst, 1);
    if (rc == 0)
        rc = unpickle_adopt_height(u, inst, args);
    if (rc < 0)
        return rc;
    inst->type = MP_TYPE_INSTANCE;
    inst->u.seq.hash = (uint64_t)cls;
    inst->u.seq.items[inst->u.seq.len++] = args;
    return 0;
}

/* NEWOBJ: cls.__new__(cls, *args), which CPython writes for a Token with
 * args (). Only that: the result waits for BUILD to give it its state. */
static int unpickle_object_newobj(struct unpickler *u)
{
    mp_obj *args = NULL, *cls = NULL, *o;
    int rc = unpickle_pop_value(u, &args);
    if (rc == 0)
        rc = unpickle_pop_any(u, &cls);
    if (rc < 0)
        return rc;
    if (cls->type != TYPE_CLASS || cls->u.i != MP__CLS_TOKEN || args->type != MP_TYPE_TUPLE ||
        args->u.seq.len != 0)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if ((rc = unpickle_new_node(u, TYPE_TOKEN_UNBUILT, &o)) < 0)
        return rc;
    return unpickle_push(u, o);
}

/* Whether state is what BaseException.__setstate__ takes from CPython 3.12+
 * (AttributeError's {'name': ..., 'args': ...}): a dict of str keys, whose
 * values the decoder has already read as plain values. */
static bool unpickle_object_exc_state(const mp_obj *state)
{
    if (state->type != MP_TYPE_DICT)
        return false;
    for (size_t i = 0; i < state->u.d.n; i++) {
        const mp_obj *k = state->u.d.entries[i].key;
        if (k && k->type != MP_TYPE_STR)
            return false;
    }
    return true;
}

/* BUILD: Token.__setstate__(state), state being (typeid, address, id); or
 * an exception's attributes (3.12+'s AttributeError carries its name so),
 * read and dropped: the instance keeps its class and args, the message.
 * Any other BUILD would call a __setstate__ or set attributes: refused. A
 * Token built once is not built again. */
static int unpickle_object_build(struct unpickler *u)
{
    mp_obj *state = NULL, *tok = NULL;
    int rc = unpickle_pop_value(u, &state);
    if (rc == 0)
        rc = unpickle_top(u, &tok);
    if (rc < 0)
        return rc;
    if (tok->type == MP_TYPE_INSTANCE && mp__instance_is_exception(mp__instance_cls(tok)) &&
        unpickle_object_exc_state(state))
        return 0;
    if (tok->type != TYPE_TOKEN_UNBUILT)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if (state->type != MP_TYPE_TUPLE || state->u.seq.len != 3)
        return MP_EPROTO; /* Token's __setstate__ unpacks three items */
    return unpickle_object_instance(u, tok, MP__CLS_TOKEN, state);
}

/* REDUCE of RebuildProxy: (func, token, serializer, kwds), as CPython's
 * BaseProxy.__reduce__ writes a proxy inside a value, becomes an inert
 * instance whose args hold the func's name as a str. Nothing is called. */
static int unpickle_object_rebuild_proxy(struct unpickler *u, mp_obj *args)
{
    mp_obj **it = args->u.seq.items, *name, *t, *inst;
    if (args->u.seq.len != 4 || it[0]->type != TYPE_PROXY_FUNC)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    const char *fn = mp__proxy_func_name((int)it[0]->u.i);
    int rc = unpickle_new_strbytes(u, MP_TYPE_STR, fn, strlen(fn), &name);
    if (rc == 0)
        rc = unpickle_new_node(u, MP_TYPE_TUPLE, &t);
    if (rc == 0)
        rc = mp__unpickle_seq_room(u, t, 4);
    if (rc < 0)
        return rc;
    t->height = 1;
    t->u.seq.items[t->u.seq.len++] = name;
    for (size_t i = 1; i < 4; i++) {
        if ((rc = unpickle_adopt_height(u, t, it[i])) < 0)
            return rc;
        t->u.seq.items[t->u.seq.len++] = it[i];
    }
    if (!mp__proxy_args_ok(t))
        return MP_EPROTO; /* a token, a serializer str, a kwds dict */
    rc = unpickle_new_node(u, MP_TYPE_INSTANCE, &inst);
    if (rc == 0)
        rc = unpickle_object_instance(u, inst, MP__CLS_REBUILD_PROXY, t);
    return rc < 0 ? rc : unpickle_push(u, inst);
}

/* REDUCE: bytearray() or bytearray(b'...'), as protocols 3 and 4 write a
 * bytearray, and set([...]) or frozenset([...]), as protocols 0 to 3 write
 * sets. The decoder builds these values itself (nothing is called);
 * anything else is refused. */
static int unpickle_object_reduce(struct unpickler *u)
{
    mp_obj *args = NULL, *callable = NULL;
    int rc = unpickle_pop_value(u, &args);
    if (rc == 0)
        rc = unpickle_pop_any(u, &callable);
    if (rc < 0)
        return rc;
    if (args->type != MP_TYPE_TUPLE)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if (callable->type == TYPE_CLASS) {
        /* An exception, a slice or a range: the class with its args. Token is made
         * by NEWOBJ and BUILD only, as CPython writes it. */
        if (callable->u.i == MP__CLS_TOKEN)
            return unpickle_fail(u, MP__UNPICKLE_CALLS);
        if (callable->u.i == MP__CLS_REBUILD_PROXY)
            return unpickle_object_rebuild_proxy(u, args);
        if (!mp__instance_args_ok((int)callable->u.i, args))
            return MP_EPROTO; /* a slice or range of other than its three ints */
        mp_obj *inst = NULL;
        rc = unpickle_new_node(u, MP_TYPE_INSTANCE, &inst);
        if (rc == 0)
            rc = unpickle_object_instance(u, inst, (int)callable->u.i, args);
        return rc < 0 ? rc : unpickle_push(u, inst);
    }
    if (callable->type == TYPE_SET_CALLABLE || callable->type == TYPE_FROZENSET_CALLABLE) {
        mp_obj *list = args->u.seq.len == 1 ? args->u.seq.items[0] : NULL, *set;
        if (!list || list->type != MP_TYPE_LIST)
            return MP_EPROTO;
        int type = callable->type == TYPE_SET_CALLABLE ? MP_TYPE_SET : MP_TYPE_FROZENSET;
        rc = mp__unpickle_new_set(u, type, list->u.seq.items, list->u.seq.len, &set);
        return rc < 0 ? rc : unpickle_push(u, set);
    }
    if (callable->type != TYPE_BYTEARRAY_CALLABLE)
        return unpickle_fail(u, MP__UNPICKLE_CALLS);
    if (args->u.seq.len == 0)
        return unpickle_push_strbytes(u, MP_TYPE_BYTEARRAY, NULL, 0);
    mp_obj *b = args->u.seq.items[0];
    if (args->u.seq.len != 1 || b->type != MP_TYPE_BYTES)
        return MP_EPROTO;
    /* A copy (bytearray is mutable in Python), charged like any other: one
     * memoized bytes object made into a bytearray again and again is a
     * megabyte per few input bytes. */
    return unpickle_push_strbytes(u, MP_TYPE_BYTEARRAY, b->u.s.data, b->u.s.len);
}

/* ---- The handlers (unpickle.c's dispatch table) ---- */

int mp__unpickle_op_global(struct unpickler *u)
{
    const unsigned char *line, *line2;
    size_t len, len2;
    int rc;
    if ((rc = unpickle_read_line(u, &line, &len)) < 0 ||
        (rc = unpickle_read_line(u, &line2, &len2)) < 0)
        return rc;
    return unpickle_object_global(u, line, len, line2, len2);
}

int mp__unpickle_op_stack_global(struct unpickler *u)
{
    mp_obj *a, *b;
    int rc;
    if ((rc = unpickle_pop_value(u, &b)) < 0 || (rc = unpickle_pop_value(u, &a)) < 0)
        return rc;
    if (a->type != MP_TYPE_STR || b->type != MP_TYPE_STR)
        return MP_EPROTO;
    return unpickle_object_global(u, (const unsigned char *)a->u.s.data, a->u.s.len,
                                  (const unsigned char *)b->u.s.data, b->u.s.len);
}

int mp__unpickle_op_reduce(struct unpickler *u)
{
    return unpickle_object_reduce(u);
}

int mp__unpickle_op_newobj(struct unpickler *u)
{
    return unpickle_object_newobj(u);
}

int mp__unpickle_op_build(struct unpickler *u)
{
    return unpickle_object_build(u);
}
