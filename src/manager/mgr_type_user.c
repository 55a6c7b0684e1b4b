/*
 * mgr_type_user - objects of the types programs register themselves
 * (mpipc/manager_user.h): made by create("user", name, (typeid, args)),
 * their methods looked up by name in the type's table. Static: suser_.
 */
#include "manager/mgr_server.h"

#include <mpipc/manager_user.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

const struct mp_manager_type *mp__mgr_user_type(const struct server *s, const char *typeid,
                                                size_t len)
{
    for (size_t i = 0; i < s->nutypes; i++) {
        const char *t = s->utypes[i].typeid;
        if (t && strlen(t) == len && memcmp(t, typeid, len) == 0)
            return &s->utypes[i];
    }
    return NULL;
}

int mp__mgr_user_make(struct sobj *o, const struct mp_manager_type *t, const mp_obj *args,
                      size_t skip)
{
    mp_obj *cargs = mp_obj_tuple_new();
    for (ssize_t i = (ssize_t)skip; cargs && i < mp_obj_len(args); i++) {
        mp_obj *a = mp_obj_copy(mp_obj_list_get(args, i));
        if (!a || mp_obj_tuple_append(cargs, a) < 0) {
            mp_obj_free(a);
            mp_obj_free(cargs);
            cargs = NULL;
        }
    }
    if (!cargs)
        return -ENOMEM;
    void *self = NULL;
    int rc = t->create ? t->create(cargs, &self) : 0;
    mp_obj_free(cargs);
    if (rc > 0)
        rc = MP_EPROTO; /* a constructor's status is 0 or negative */
    if (rc < 0)
        return rc;
    o->utype = t;
    o->uself = self;
    return 0;
}

/* create's initial value is (typeid, args). */
static int suser_init(const struct req *r, struct sobj *o)
{
    const mp_obj *init = mp__mgr_arg(r, 2);
    const mp_obj *args = mp_obj_list_get(init, 1);
    const char *typeid;
    size_t len;
    if (mp_obj_type(init) != MP_TYPE_TUPLE || mp_obj_len(init) != 2 ||
        mp_obj_get_str(mp_obj_list_get(init, 0), &typeid, &len) < 0 ||
        mp_obj_type(args) != MP_TYPE_TUPLE)
        return MP_ETYPE;
    const struct mp_manager_type *t = mp__mgr_user_type(r->s, typeid, len);
    if (!t)
        return MP_EVALUE;
    return mp__mgr_user_make(o, t, args, 0);
}

static void suser_fini(struct server *s, struct sobj *o)
{
    (void)s;
    if (o->utype && o->utype->free)
        o->utype->free(o->uself);
    o->uself = NULL;
}

static const mp_manager_method *suser_method(const struct sobj *o, const char *name, size_t len)
{
    const struct mp_manager_type *t = o->utype;
    for (size_t i = 0; i < t->nmethods; i++)
        if (strlen(t->methods[i].name) == len && memcmp(t->methods[i].name, name, len) == 0)
            return &t->methods[i];
    return NULL;
}

/* A method's failure: KeyError with the repr of the first argument, as a
 * dict's; the words a library call of the method recorded for this code
 * (mp_errmsg); else the words every reply of the code has. */
static void suser_fail(const struct req *r, const mp_manager_method *m, int rc)
{
    struct sconn *c = r->c;
    const char *msg = mp_errmsg(rc);
    char text[160];
    if (rc == MP_EKEY && mp_obj_len(r->args) > 0) {
        mp__mgr_reply_keyerror(c, mp_obj_list_get(r->args, 0));
    } else if ((rc == MP_EVALUE || rc == MP_ETYPE) && strcmp(msg, mp_strerror(rc)) == 0) {
        snprintf(text, sizeof text, "%s: %s.%s() refused its arguments",
                 rc == MP_EVALUE ? "ValueError" : "TypeError", r->o->utype->typeid, m->name);
        mp__mgr_reply_error(c, rc, text);
    } else if (strcmp(msg, mp_strerror(rc)) == 0 || rc == -ENOMEM)
        mp__mgr_reply_status(c, rc);
    else
        mp__mgr_reply_error(c, rc, msg);
}

void mp__mgr_user_call(const struct req *r, const char *meth, size_t mlen)
{
    const mp_manager_method *m = suser_method(r->o, meth, mlen);
    char text[160];
    if (!m) {
        snprintf(text, sizeof text, "AttributeError: %s has no method '%.*s'", r->o->utype->typeid,
                 (int)(mlen > 64 ? 64 : mlen), meth);
        mp__mgr_reply_error(r->c, MP_EPROTO, text);
        return;
    }
    ssize_t na = mp_obj_len(r->args);
    if (na < m->min_args || na > m->max_args) {
        snprintf(text, sizeof text, "TypeError: %s() takes %d to %d arguments (%zd given)", m->name,
                 m->min_args, m->max_args, na);
        mp__mgr_reply_error(r->c, MP_ETYPE, text);
        return;
    }
    mp_obj *result = NULL;
    int rc = m->fn(r->o->uself, r->args, &result);
    if (rc > 0)
        rc = MP_EPROTO;
    if (rc < 0) {
        mp_obj_free(result);
        suser_fail(r, m, rc);
        return;
    }
    mp_obj *none = result ? NULL : mp_obj_none();
    if (!result && !none) {
        mp__mgr_reply_status(r->c, -ENOMEM);
        return;
    }
    (void)mp__mgr_reply_obj(r->c, result ? result : none);
    mp_obj_free(result);
    mp_obj_free(none);
}

mp_obj *mp__mgr_user_exposed(const struct mp_manager_type *t)
{
    mp_obj *e = mp_obj_tuple_new();
    for (size_t i = 0; e && i < t->nmethods; i++) {
        mp_obj *n = mp_obj_str_cstr(t->methods[i].name);
        if (!n || mp_obj_tuple_append(e, n) < 0) {
            mp_obj_free(n);
            mp_obj_free(e);
            e = NULL;
        }
    }
    return e;
}

bool mp__mgr_user_has(const struct sobj *o, const char *meth)
{
    return suser_method(o, meth, strlen(meth)) != NULL;
}

const struct stype mp__mgr_type_user = {"user", NULL, 0, suser_init, suser_fini};
