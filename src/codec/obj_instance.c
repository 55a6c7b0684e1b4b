/*
 * obj_instance - the CPython classes the codec knows as inert values
 * (MP_TYPE_INSTANCE: a class and its args, docs/wire.md says which and why)
 * and the public calls that make and read them. Statics start with inst_.
 */
#include "codec/objimpl.h"
#include "core/internal.h"

#include <errno.h>
#include <string.h>

/* The whole list. Index 0 is Token (MP__CLS_TOKEN), 1 RebuildProxy
 * (MP__CLS_REBUILD_PROXY: a proxy inside a value); the rest are exceptions,
 * rebuilt by REDUCE of the class with its args. */
static const struct {
    const char *module, *name, *qualname;
} inst_classes[] = {
    {"multiprocessing.managers", "Token", "multiprocessing.managers.Token"},
    {"multiprocessing.managers", "RebuildProxy", "multiprocessing.managers.RebuildProxy"},
    {"multiprocessing.managers", "RemoteError", "multiprocessing.managers.RemoteError"},
    {"builtins", "KeyError", "builtins.KeyError"},
    {"builtins", "IndexError", "builtins.IndexError"},
    {"builtins", "ValueError", "builtins.ValueError"},
    {"builtins", "TypeError", "builtins.TypeError"},
    {"builtins", "AttributeError", "builtins.AttributeError"},
    {"builtins", "RuntimeError", "builtins.RuntimeError"},
    {"builtins", "StopIteration", "builtins.StopIteration"},
    {"builtins", "range", "builtins.range"}, /* list(range(3)) to a manager */
    {"builtins", "OverflowError", "builtins.OverflowError"},
    {"builtins", "slice", "builtins.slice"},
    {"threading", "BrokenBarrierError", "threading.BrokenBarrierError"},
    {"multiprocessing.context", "AuthenticationError", "multiprocessing.context.AuthenticationError"},
    {"queue", "Empty", "queue.Empty"},
    {"queue", "Full", "queue.Full"},
};

#define INST_COUNT ((int)(sizeof inst_classes / sizeof inst_classes[0]))

/* The func of a RebuildProxy: AutoProxy and the proxy classes SyncManager
 * registers (Lib/multiprocessing/managers.py), all in module
 * multiprocessing.managers. A proxy pickles as RebuildProxy(func, token,
 * serializer, kwds); no other func is read. */
static const char *const inst_proxy_funcs[] = {
    "AutoProxy",      "ListProxy",    "DictProxy",  "IteratorProxy", "AcquirerProxy",  "EventProxy",
    "ConditionProxy", "BarrierProxy", "ValueProxy", "ArrayProxy",    "NamespaceProxy", "PoolProxy",
};

#define INST_NFUNCS ((int)(sizeof inst_proxy_funcs / sizeof inst_proxy_funcs[0]))

static bool inst_eq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && memcmp(a, b, alen) == 0;
}

int mp__instance_lookup(const char *mod, size_t modlen, const char *name, size_t namelen)
{
    /* CPython 3.7+ defines queue.Empty in C as _queue.Empty and pickles it
     * under that module; protocols 0-2 write Python 2's module names
     * (exceptions.KeyError, Queue.Full, __builtin__.slice), as pickle's
     * fix_imports maps them, and multiprocessing.AuthenticationError for
     * multiprocessing.context's (_compat_pickle's REVERSE_IMPORT_MAPPING).
     * Each is the same class. */
    if (inst_eq(mod, modlen, "_queue") && inst_eq(name, namelen, "Empty"))
        mod = "queue", modlen = 5;
    else if (inst_eq(mod, modlen, "Queue"))
        mod = "queue", modlen = 5;
    else if (inst_eq(mod, modlen, "exceptions") || inst_eq(mod, modlen, "__builtin__"))
        mod = "builtins", modlen = 8;
    else if (inst_eq(mod, modlen, "multiprocessing") && inst_eq(name, namelen, "AuthenticationError"))
        mod = "multiprocessing.context", modlen = 23;
    for (int i = 0; i < INST_COUNT; i++)
        if (inst_eq(mod, modlen, inst_classes[i].module) &&
            inst_eq(name, namelen, inst_classes[i].name))
            return i;
    return -1;
}

int mp__proxy_func_lookup(const char *mod, size_t modlen, const char *name, size_t namelen)
{
    if (!inst_eq(mod, modlen, "multiprocessing.managers"))
        return -1;
    for (int i = 0; i < INST_NFUNCS; i++)
        if (inst_eq(name, namelen, inst_proxy_funcs[i]))
            return i;
    return -1;
}

const char *mp__proxy_func_name(int func)
{
    MP__ASSERT(func >= 0 && func < INST_NFUNCS);
    return inst_proxy_funcs[func];
}

bool mp__proxy_args_ok(const mp_obj *args)
{
    if (args->type != MP_TYPE_TUPLE || args->u.seq.len != 4)
        return false;
    mp_obj *const *it = args->u.seq.items;
    return it[0]->type == MP_TYPE_STR &&
           mp__proxy_func_lookup("multiprocessing.managers", 24, it[0]->u.s.data, it[0]->u.s.len) >=
               0 &&
           it[1]->type == MP_TYPE_INSTANCE && mp__instance_cls(it[1]) == MP__CLS_TOKEN &&
           it[2]->type == MP_TYPE_STR && it[3]->type == MP_TYPE_DICT;
}

const char *mp__instance_module(int cls)
{
    MP__ASSERT(cls >= 0 && cls < INST_COUNT);
    return inst_classes[cls].module;
}

const char *mp__instance_name(int cls)
{
    MP__ASSERT(cls >= 0 && cls < INST_COUNT);
    return inst_classes[cls].name;
}

const char *mp__instance_qualname(int cls)
{
    MP__ASSERT(cls >= 0 && cls < INST_COUNT);
    return inst_classes[cls].qualname;
}

bool mp__instance_is_exception(int cls)
{
    MP__ASSERT(cls >= 0 && cls < INST_COUNT);
    const char *n = inst_classes[cls].name;
    return cls != MP__CLS_TOKEN && cls != MP__CLS_REBUILD_PROXY && strcmp(n, "slice") != 0 &&
           strcmp(n, "range") != 0;
}

bool mp__instance_is_slice(const mp_obj *o)
{
    return o && o->type == MP_TYPE_INSTANCE &&
           strcmp(inst_classes[mp__instance_cls(o)].name, "slice") == 0;
}

/* A slice's args are what slice.__reduce__ gives, (start, stop, step),
 * and the decoder keeps to what a list index can be: each an int (a bool
 * is one in Python) or None. Python's slice('a') would pickle too, but
 * nothing a manager serves takes one. */
static bool inst_slice_args_ok(const mp_obj *args)
{
    if (args->u.seq.len != 3)
        return false;
    for (size_t i = 0; i < 3; i++) {
        int t = args->u.seq.items[i]->type;
        if (t != MP_TYPE_INT && t != MP_TYPE_BOOL && t != MP_TYPE_NONE)
            return false;
    }
    return true;
}

/* range(start, stop, step), as range.__reduce__ gives it: int64s here,
 * step not 0 (Python's ValueError). */
static bool inst_range_args_ok(const mp_obj *args)
{
    mp_obj *const *it = args->u.seq.items;
    for (size_t i = 0; args->u.seq.len == 3 && i < 3; i++)
        if (it[i]->type != MP_TYPE_INT || mp__obj_is_bigint(it[i]))
            return false;
    return args->u.seq.len == 3 && it[2]->u.i != 0;
}

bool mp__instance_args_ok(int cls, const mp_obj *args)
{
    MP__ASSERT(cls >= 0 && cls < INST_COUNT);
    if (!args || args->type != MP_TYPE_TUPLE)
        return false;
    if (cls == MP__CLS_TOKEN)
        return args->u.seq.len == 3;
    if (cls == MP__CLS_REBUILD_PROXY)
        return mp__proxy_args_ok(args);
    if (strcmp(inst_classes[cls].name, "slice") == 0)
        return inst_slice_args_ok(args);
    if (strcmp(inst_classes[cls].name, "range") == 0)
        return inst_range_args_ok(args);
    return true;
}

MP_API mp_obj *mp_obj_instance_new(const char *cls, const mp_obj *args)
{
    if (!cls || !args || args->type != MP_TYPE_TUPLE)
        return NULL;
    const char *dot = strrchr(cls, '.');
    if (!dot)
        return NULL;
    int i = mp__instance_lookup(cls, (size_t)(dot - cls), dot + 1, strlen(dot + 1));
    if (i < 0 || !mp__instance_args_ok(i, args))
        return NULL;
    if ((unsigned)args->height + 1 > MP_OBJ_MAX_DEPTH)
        return NULL;
    mp_obj *copy = mp_obj_copy(args);
    if (!copy)
        return NULL;
    mp_obj *o = mp__obj_alloc(MP_TYPE_INSTANCE);
    if (!o || mp__seq_push(o, copy) < 0) {
        mp_obj_free(copy);
        mp__obj_free_node(o);
        return NULL;
    }
    o->u.seq.hash = (uint64_t)i;
    o->height = (uint16_t)(copy->height + 1);
    mp__obj_move(copy, NULL, o);
    return o;
}

MP_API const char *mp_obj_instance_class(const mp_obj *o)
{
    if (!o || o->type != MP_TYPE_INSTANCE)
        return NULL;
    return mp__instance_qualname(mp__instance_cls(o));
}

MP_API const mp_obj *mp_obj_instance_args(const mp_obj *o)
{
    if (!o || o->type != MP_TYPE_INSTANCE)
        return NULL;
    MP__ASSERT(o->u.seq.len == 1);
    return o->u.seq.items[0];
}
