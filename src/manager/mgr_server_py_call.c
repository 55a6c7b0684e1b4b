/*
 * mgr_server_py_call - CPython's manager dialect: a proxy's calls (ident an
 * object's), each turned into one of our methods by its type's table
 * (mgr_server_py.c) with its arguments rewritten. Static functions: pycall_.
 */
#include "manager/mgr_server_py.h"

#include <mpipc/error.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A Python timeout from (block, timeout) as ours (a new value): None for
 * forever, 0 for no wait; NULL with *bad set for a negative timeout. */
static mp_obj *pycall_timeout(const mp_obj *block, const mp_obj *timeout, bool *bad)
{
    bool b = true;
    double t;
    if (block && mp_obj_get_bool(block, &b) < 0) {
        int64_t i;
        b = mp_obj_get_int(block, &i) < 0 || i != 0;
    }
    if (!b)
        return mp_obj_float(0);
    if (!timeout || mp_obj_is_none(timeout))
        return mp_obj_none();
    if (mp__mgr_arg_timeout(timeout, &t) < 0 || (t < 0 && t != -1)) {
        *bad = true;
        return NULL;
    }
    return t == -1 ? mp_obj_none() : mp_obj_float(t); /* threading's -1: forever */
}

/* Python's arguments as ours (a new tuple), or NULL with *bad set for
 * arguments Python's method would refuse. */
static mp_obj *pycall_args(struct sconn *c, const struct py_method *m, const mp_obj *args,
                           const mp_obj *kwds, bool *bad)
{
    ssize_t n = mp_obj_len(args);
    const mp_obj *a0 = n > 0 ? mp_obj_list_get(args, 0) : NULL;
    mp_obj *t;
    switch (m->args) {
    case PA_KEY_NONE:
        if (n < 1 || n > 2)
            break;
        return mp_obj_build("(OO)", a0, n == 2 ? mp_obj_list_get(args, 1) : mp_obj_none());
    case PA_POP:
        if (n < 1 || n > 2)
            break;
        c->py_saved = mp_obj_copy(n == 2 ? mp_obj_list_get(args, 1) : a0);
        if (n == 2)
            c->py_x = PX_DEFAULT;
        return mp_obj_build("(O)", a0);
    case PA_UPDATE:
        return mp_obj_build("(O)", a0 ? a0 : kwds);
    case PA_GET:
        t = pycall_timeout(mp__mgr_pys_param(args, kwds, 0, "block", NULL),
                           mp__mgr_pys_param(args, kwds, 1, "timeout", NULL), bad);
        return t ? mp_obj_build("(N)", t) : NULL;
    case PA_GET_NOWAIT:
        return mp_obj_build("(d)", 0.0);
    case PA_PUT: {
        const mp_obj *item = mp__mgr_pys_param(args, kwds, 0, "item", NULL);
        if (!item)
            break;
        t = pycall_timeout(mp__mgr_pys_param(args, kwds, 1, "block", NULL),
                           mp__mgr_pys_param(args, kwds, 2, "timeout", NULL), bad);
        return t ? mp_obj_build("(ON)", item, t) : NULL;
    }
    case PA_PUT_NOWAIT:
        return n == 1 ? mp_obj_build("(Od)", a0, 0.0) : NULL;
    case PA_JOIN:
        return mp_obj_build("(N)", mp_obj_none());
    case PA_ACQUIRE:
        t = pycall_timeout(mp__mgr_pys_param(args, kwds, 0, "blocking", NULL),
                           mp__mgr_pys_param(args, kwds, 1, "timeout", NULL), bad);
        return t ? mp_obj_build("(Ni)", t, 0) : NULL;
    case PA_SORT: {
        /* list.sort(*, key=None, reverse=False): keywords only. */
        if (n != 0)
            break;
        const mp_obj *key = mp__mgr_pys_param(args, kwds, 0, "key", NULL);
        const mp_obj *rev = mp__mgr_pys_param(args, kwds, 0, "reverse", NULL);
        if (mp_obj_len(kwds) != (key != NULL) + (rev != NULL))
            break;
        return mp_obj_build("(OO)", rev ? rev : mp_obj_bool(false), key ? key : mp_obj_none());
    }
    case PA_RELEASE:
    case PA_FIRST:
        return n == 0 ? mp_obj_build("(i)", 0) : NULL;
    case PA_WAIT:
    case PA_CWAIT: {
        const mp_obj *to = mp__mgr_pys_param(args, kwds, 0, "timeout", NULL);
        double d;
        if (to && !mp_obj_is_none(to) && mp__mgr_arg_timeout(to, &d) == 0 && d < 0)
            t = mp_obj_float(0); /* threading's waits: a negative timeout does not wait */
        else
            t = pycall_timeout(NULL, to, bad);
        if (!t)
            return NULL;
        return m->args == PA_WAIT ? mp_obj_build("(N)", t) : mp_obj_build("(Ni)", t, 0);
    }
    case PA_NOTIFY: {
        const mp_obj *nn = mp__mgr_pys_param(args, kwds, 0, "n", NULL);
        return nn ? mp_obj_build("(Oi)", nn, 0) : mp_obj_build("(ii)", 1, 0);
    }
    default:
        if (mp_obj_len(kwds) > 0)
            break;
        if (m->reply == PX_KEY && a0)
            c->py_saved = mp_obj_copy(a0);
        return mp_obj_copy(args);
    }
    *bad = true;
    return NULL;
}

/* DictProxy.__iter__: Python's server makes an Iterator of iter(d) and
 * replies ('#PROXY', (exposed, token)); its client fills in the token's
 * address and takes the reference create gave. Here the iterator holds
 * the keys as they are now, and fails as Python's once d changed size. */
static void pycall_iterate(struct server *s, struct sconn *c, struct sobj *d)
{
    mp_obj *keys = mp_obj_list_new();
    size_t pos = 0;
    const mp_obj *k, *v;
    while (keys && mp_obj_dict_next(d->value, &pos, &k, &v) == 1) {
        mp_obj *kc = mp_obj_copy(k);
        if (!kc || mp_obj_list_append(keys, kc) < 0) {
            mp_obj_free(kc);
            mp_obj_free(keys);
            keys = NULL;
        }
    }
    struct sobj *it = keys ? mp__mgr_obj_new(s, K_LIST) : NULL;
    if (!it || mp__mgr_pys_incref(s, it) < 0) {
        if (it)
            mp__mgr_obj_destroy(s, it);
        mp_obj_free(keys);
        mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
        return;
    }
    it->value = keys;
    it->py_iter = true;
    it->py_src = d->id;
    it->py_src_len = mp_obj_len(d->value);
    mp_obj *targs = mp_obj_build("(sNN)", "Iterator", mp_obj_none(), mp__mgr_pys_ident(it));
    mp_obj *tok = targs ? mp_obj_instance_new("multiprocessing.managers.Token", targs) : NULL;
    mp_obj_free(targs);
    mp_obj *r =
        tok ? mp_obj_build("(s(NN))", "#PROXY", mp__mgr_pys_exposed(&mp__mgr_pys_iter_type), tok)
            : NULL;
    if (r)
        mp__mgr_pys_send(c, r);
    else
        mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
    mp_obj_free(r);
}

/* A method of a type of your own: Python's AttributeError for a name the
 * type does not expose, TypeError for keywords (mgr_type_user.c words the
 * rest). */
static void pycall_call_user(struct server *s, struct sconn *c, struct sobj *o, const char *meth,
                             const mp_obj *args, const mp_obj *kwds)
{
    c->py_kind = K_USER;
    if (!mp__mgr_user_has(o, meth)) {
        mp__mgr_pys_raise(c, "builtins.AttributeError",
                          "method is not in this type's exposed methods");
        return;
    }
    if (mp_obj_len(kwds) > 0) {
        mp__mgr_pys_raise(c, "builtins.TypeError", "keyword arguments not accepted");
        return;
    }
    if (mp_obj_len(args) > 0) { /* MP_EKEY: KeyError(the first argument) */
        c->py_x = PX_KEY;
        c->py_saved = mp_obj_copy(mp_obj_list_get(args, 0));
    }
    const struct req r = {s, c, o, (mp_obj *)args};
    mp__mgr_user_call(&r, meth, strlen(meth));
}

/* Python's dict iterator raises RuntimeError once the dict changed size
 * (while the dict lives: ours may end before its iterator). True when it
 * did and that error went out. */
static bool pycall_iter_changed(struct server *s, struct sconn *c, const struct sobj *it)
{
    const struct sobj *d = mp__mgr_obj_find(s, it->py_src);
    if (!d || d->kind != K_DICT || mp_obj_len(d->value) == it->py_src_len)
        return false;
    mp__mgr_pys_raise(c, "builtins.RuntimeError", "dictionary changed size during iteration");
    return true;
}

void mp__mgr_pys_call(struct server *s, struct sconn *c, const mp_obj *ident, const char *meth,
                      const mp_obj *args, const mp_obj *kwds)
{
    struct sobj *o = mp__mgr_pys_find(s, ident);
    if (o && o->kind == K_USER) {
        pycall_call_user(s, c, o, meth, args, kwds);
        return;
    }
    const struct py_type *t = o ? mp__mgr_pys_type_of(o) : NULL;
    if (!t) {
        mp__mgr_pys_traceback(c, "KeyError: %s", "no such object");
        return;
    }
    if (o->kind == K_DICT && strcmp(meth, "__iter__") == 0) {
        pycall_iterate(s, c, o);
        return;
    }
    if (o->py_iter && strcmp(meth, "__next__") == 0 && pycall_iter_changed(s, c, o))
        return;
    const mp_obj *attr = mp_obj_len(args) == 1 ? mp_obj_list_get(args, 0) : NULL;
    if (o->kind == K_BARRIER && strcmp(meth, "__getattribute__") == 0 && attr &&
        mp_obj_get_str(attr, &meth, NULL) == 0) {
        /* BarrierProxy's parties, n_waiting, broken: methods here */
        if (strcmp(meth, "wait") == 0 || strcmp(meth, "abort") == 0 || strcmp(meth, "reset") == 0)
            meth = "?"; /* a bound method is no value */
        args = mp_obj_tuple_new();
        if (!args) {
            mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
            return;
        }
        mp__mgr_pys_call(s, c, ident, meth, args, kwds);
        mp_obj_free((mp_obj *)args);
        return;
    }
    const struct py_method *m = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->methods[i].py, meth) == 0)
            m = &t->methods[i];
    if (!m && (strcmp(meth, "__str__") == 0 || strcmp(meth, "__repr__") == 0)) {
        char *text = NULL; /* Python's fallback: str(obj), repr(obj) */
        if (mp__mgr_py_repr(o, &text) == 0) {
            mp__mgr_pys_return(c, mp_obj_str_cstr(text));
            free(text);
            return;
        }
    }
    if (!m) {
        mp__mgr_pys_traceback(c, "AttributeError: method '%s' is not served by libmpipc's manager",
                              meth);
        return;
    }
    c->py_x = m->reply;
    c->py_kind = o->kind;
    bool bad = false;
    mp_obj *ours = pycall_args(c, m, args, kwds, &bad);
    const struct stype *st = mp__mgr_types[o->kind];
    const struct method *md = NULL;
    for (size_t i = 0; i < st->nmethods; i++)
        if (strcmp(st->methods[i].name, m->ours) == 0)
            md = &st->methods[i];
    MP__ASSERT(md != NULL); /* every table names our methods */
    ssize_t na = ours ? mp_obj_len(ours) : -1;
    if (!ours || !md || na < md->min_args || na > md->max_args) {
        if (bad || ours)
            mp__mgr_pys_raise(c, "builtins.TypeError", "wrong arguments for this method");
        else
            mp__mgr_pys_traceback(c, "%s", "the server is out of memory");
        mp_obj_free(ours);
        return;
    }
    const struct req r = {s, c, o, ours};
    bool nest = o->nest_seen || mp__mgr_nest_any(args) || mp__mgr_nest_any(kwds);
    int rc = md->fn(&r);
    if (rc < 0)
        mp__mgr_reply_failed(&r, rc);
    mp_obj_free(ours);
    if (nest) /* last: o may go (mgr_server_nest.c) */
        mp__mgr_nest_refresh(s, o);
}
