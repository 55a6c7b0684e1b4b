/*
 * mgr_proxy_ref - a C proxy from a proxy reference, the inert value a
 * Python proxy inside a value decodes to (managers.RebuildProxy): the
 * object its Token names, on the server the handle talks to, held as
 * mp_manager_attach_X holds one; and the reverse, the reference of a C
 * proxy (mp_dictproxy_ref...), which C stores in a value as Python stores
 * a proxy. Static functions: pref_.
 */
#include "codec/objimpl.h"
#include "core/internal.h"
#include "manager/mgr_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The Token's address in our form ("unix:/path", "tcp:host:port") is the
 * handle's: 1, 0 when it is another server's, or -ENOMEM. */
static int pref_same_server(const mp_manager *m, const mp_obj *addr)
{
    const char *host;
    int64_t port;
    char buf[320];
    if (mp_obj_type(addr) == MP_TYPE_STR) {
        if (mp_obj_get_str(addr, &host, NULL) < 0)
            return 0;
        snprintf(buf, sizeof buf, "unix:%s", host);
    } else if (mp_obj_type(addr) == MP_TYPE_TUPLE && mp_obj_len(addr) == 2 &&
               mp_obj_get_str(mp_obj_list_get(addr, 0), &host, NULL) == 0 &&
               mp_obj_get_int(mp_obj_list_get(addr, 1), &port) == 0) {
        snprintf(buf, sizeof buf, "tcp:%s:%lld", host, (long long)port);
    } else {
        return 0;
    }
    const char *ours = mp_manager_address(m);
    return ours && strcmp(ours, buf) == 0;
}

/* The object's id: Python's ident, '%x' of it. */
static int pref_ident(const mp_obj *o, int64_t *id)
{
    return mp__mgr_py_ident(o, id) ? 0 : MP_EVALUE;
}

int mp__mgr_proxy_from_ref(mp_manager *m, size_t size, const char *const *typeids,
                           const char *const *kinds, const mp_obj *ref, struct proxy **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!m || !ref)
        return -EINVAL;
    const char *cls = mp_obj_instance_class(ref);
    if (!cls || strcmp(cls, "multiprocessing.managers.RebuildProxy") != 0)
        return mp__err(MP_ETYPE, "TypeError: not a proxy reference");
    const mp_obj *tok = mp_obj_instance_args(mp_obj_list_get(mp_obj_instance_args(ref), 1));
    const char *typeid = NULL, *kind = NULL;
    (void)mp_obj_get_str(mp_obj_list_get(tok, 0), &typeid, NULL);
    for (size_t i = 0; typeid && typeids[i]; i++)
        if (strcmp(typeids[i], typeid) == 0)
            kind = kinds[i];
    if (!kind)
        return mp__err(MP_ETYPE, "TypeError: a proxy of typeid '%s', not of this kind",
                       typeid ? typeid : "?");
    if (!pref_same_server(m, mp_obj_list_get(tok, 1)))
        return mp__err(MP_EVALUE, "the proxy reference names an object of another server");
    int64_t id;
    if (pref_ident(mp_obj_list_get(tok, 2), &id) < 0)
        return mp__err(MP_EVALUE, "the proxy reference's id is not one a server gives");
    MP__ASSERT(size >= sizeof(struct proxy));
    struct proxy *p = calloc(1, size);
    if (!p)
        return -ENOMEM;
    /* Hold it as the proxies made by create or attach do: incref. */
    struct marg a[1] = {ARG_INT(id)};
    int rc = m->py ? mp__mgr_py_adopt(kind, p) : 0;
    if (rc == 0)
        rc = m->py ? mp__mgr_py_call(m, "incref", a, 1, NULL)
                   : mp__mgr_call(m, 0, "incref", a, 1, 0, NULL, NULL, false);
    if (rc < 0) {
        free(p);
        return rc;
    }
    int refs = __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);
    MP__ASSERT(refs >= 1); /* the caller holds the handle */
    p->m = m;
    p->id = id;
    p->gen = mp__forkgen();
    *out = p;
    return 0;
}

/* The handle's address as a Token carries it: a str for "unix:/path", a
 * (host, port) tuple for "tcp:host:port" (Python's forms); NULL when it is
 * neither or memory runs out. */
static mp_obj *pref_token_address(const mp_manager *m)
{
    const char *a = m->address;
    if (strncmp(a, "unix:", 5) == 0)
        return mp_obj_str_cstr(a + 5);
    const char *colon = strrchr(a, ':');
    if (strncmp(a, "tcp:", 4) != 0 || !colon || colon < a + 4)
        return NULL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return NULL;
    return mp_obj_build("(s#L)", a + 4, (size_t)(colon - (a + 4)), (int64_t)port);
}

int mp__mgr_proxy_ref(const struct proxy *p, const char *func, const char *typeid,
                      const char *const *exposed, mp_obj **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!p)
        return -EINVAL;
    mp_obj *addr = pref_token_address(p->m);
    if (!addr)
        return mp__err(MP_EVALUE, "the manager's address %s has no form a Token carries",
                       p->m->address);
    char id[24];
    snprintf(id, sizeof id, "%" PRIx64, (uint64_t)p->id);
    mp_obj *targs = mp_obj_build("(sNs)", typeid, addr, id);
    mp_obj *tok = targs ? mp_obj_instance_new("multiprocessing.managers.Token", targs) : NULL;
    mp_obj_free(targs);
    /* AutoProxy's kwds carry its exposed methods, as BaseProxy.__reduce__
     * writes them, so the Python end that loads it asks the server nothing. */
    mp_obj *kwds = mp_obj_dict_new();
    if (kwds && exposed) {
        mp_obj *e = mp_obj_tuple_new();
        for (size_t i = 0; e && exposed[i]; i++) {
            mp_obj *s = mp_obj_str_cstr(exposed[i]);
            if (!s || mp_obj_tuple_append(e, s) < 0) {
                mp_obj_free(s);
                mp_obj_free(e);
                e = NULL;
            }
        }
        mp_obj *k = mp_obj_str_cstr("exposed");
        if (!e || !k || mp_obj_dict_set(kwds, k, e) < 0) {
            mp_obj_free(k);
            mp_obj_free(e);
            mp_obj_free(kwds);
            kwds = NULL;
        }
    }
    mp_obj *rargs = tok && kwds ? mp_obj_build("(sNsN)", func, tok, "pickle", kwds) : NULL;
    if (!rargs) {
        if (!tok || !kwds) {
            mp_obj_free(tok);
            mp_obj_free(kwds);
        }
        return -ENOMEM;
    }
    *out = mp_obj_instance_new("multiprocessing.managers.RebuildProxy", rargs);
    mp_obj_free(rargs);
    return *out ? 0 : -ENOMEM;
}
