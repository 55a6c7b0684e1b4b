/*
 * mgr_server_py_repr - repr(obj) of a referent, for the __str__ and
 * __repr__ that CPython's server answers for every object (its
 * fallback_mapping; BaseProxy.__str__ asks for it). Static functions: pyr_.
 */
#include "manager/mgr_server.h"

#include <mpipc/error.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int pyr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* managers.Namespace.__repr__: 'Namespace(a=1, b=2)', the name=repr(value)
 * texts of the names not starting with '_', sorted. */
static int pyr_namespace(const mp_obj *d, char **out)
{
    ssize_t n = mp_obj_len(d);
    char **items = calloc(n > 0 ? (size_t)n : 1, sizeof *items);
    if (!items)
        return -ENOMEM;
    size_t k = 0, pos = 0, total = sizeof "Namespace()";
    const mp_obj *key, *v;
    int rc = 0;
    while (rc == 0 && mp_obj_dict_next(d, &pos, &key, &v) == 1) {
        const char *name;
        size_t len;
        char *vr = NULL;
        if (mp_obj_get_str(key, &name, &len) < 0 || len == 0 || name[0] == '_')
            continue;
        if ((rc = mp_obj_repr(v, &vr)) < 0)
            break;
        size_t need = len + 1 + strlen(vr) + 1;
        items[k] = malloc(need);
        if (!items[k]) {
            free(vr);
            rc = -ENOMEM;
            break;
        }
        memcpy(items[k], name, len);
        items[k][len] = '=';
        memcpy(items[k] + len + 1, vr, strlen(vr) + 1);
        free(vr);
        total += need + 2;
        k++;
    }
    char *s = rc == 0 ? malloc(total) : NULL;
    if (rc == 0 && !s)
        rc = -ENOMEM;
    if (s) {
        qsort(items, k, sizeof *items, pyr_cmp);
        strcpy(s, "Namespace(");
        for (size_t i = 0; i < k; i++) {
            if (i > 0)
                strcat(s, ", ");
            strcat(s, items[i]);
        }
        strcat(s, ")");
    }
    for (size_t i = 0; i < k; i++)
        free(items[i]);
    free(items);
    *out = s;
    return rc;
}

int mp__mgr_py_repr(const struct sobj *o, char **out)
{
    *out = NULL;
    switch (o->kind) {
    case K_DICT:
        return mp_obj_repr(o->value, out);
    case K_LIST:
        return o->py_iter ? MP_ETYPE : mp_obj_repr(o->value, out);
    case K_NAMESPACE:
        return pyr_namespace(o->value, out);
    default:
        return MP_ETYPE; /* the reprs of the others show an address */
    }
}
