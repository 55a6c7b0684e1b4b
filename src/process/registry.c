/*
 * registry - targets by name (mp_target_register, MP_TARGET): the child of a
 * forkserver or spawn finds its target here, as Python's unpickler finds a
 * function by its qualified name. Statics start with reg_.
 *
 * One process-wide list, documented in context.h: MP_TARGET fills it from
 * constructors before main, so every run of the program (a spawned child
 * included) builds the same one. Entries are never removed.
 */
#include "core/internal.h"
#include "process/start.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define REG_NAME_MAX 255

struct reg_entry {
    struct reg_entry *next;
    mp_named_target_fn fn;
    char name[];
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry *reg_list;

/* reg_mu held. */
static struct reg_entry *reg_find(const char *name)
{
    for (struct reg_entry *e = reg_list; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

MP_API int mp_target_register(const char *name, mp_named_target_fn fn)
{
    if (!name || !fn)
        return -EINVAL;
    size_t len = strnlen(name, REG_NAME_MAX + 1);
    if (len == 0 || len > REG_NAME_MAX)
        return -EINVAL;
    struct reg_entry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return -ENOMEM;
    memcpy(e->name, name, len + 1);
    e->fn = fn;
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *old = reg_find(name);
    int rc = 0;
    if (old) {
        rc = old->fn == fn ? 0 : mp__err(MP_EVALUE, "target '%s' is already registered", name);
    } else {
        e->next = reg_list;
        reg_list = e;
        e = NULL;
    }
    pthread_mutex_unlock(&reg_mu);
    free(e);
    return rc;
}

MP_API int mp_target_lookup(const char *name, mp_named_target_fn *fn)
{
    if (!name || !fn)
        return -EINVAL;
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *e = reg_find(name);
    if (e)
        *fn = e->fn;
    pthread_mutex_unlock(&reg_mu);
    return e ? 0
             : mp__err(MP_EKEY, "no target registered as '%.200s' (mp_target_register, MP_TARGET)",
                       name);
}
