/*
 * registry - functions by name: a process's targets (mp_target_register,
 * MP_TARGET) and the pool's tasks (mp_task_register_*, MP_TASK). A child of
 * a forkserver or spawn, or a spawn pool's worker, finds its function here,
 * as Python's unpickler finds a function by its qualified name. Statics
 * start with reg_.
 *
 * One process-wide list, documented in context.h and pool.h: MP_TARGET and
 * MP_TASK fill it from constructors before main, so every run of the
 * program (a spawned child included) builds the same one. Each entry has a
 * kind (a target, or a task form) and a 64-bit id, a hash of its kind and
 * name, that a spawn pool sends in place of the function's address; two
 * names with one id are refused, so an id names one function. Entries are
 * never removed.
 */
#include "core/internal.h"
#include "process/start.h"

#include <mpipc/pool.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REG_NAME_MAX 255

struct reg_entry {
    struct reg_entry *next;
    int kind; /* MP__REG_TARGET or an mp_task_kind */
    uint64_t id;
    mp_task_fn fn;
    char name[];
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct reg_entry *reg_list;

/* FNV-1a over the kind's byte and the name: the same in every run. */
static uint64_t reg_hash(int kind, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = (h ^ (uint64_t)(unsigned char)kind) * 0x100000001b3ULL;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++)
        h = (h ^ *s) * 0x100000001b3ULL;
    return h;
}

/* reg_mu held. */
static struct reg_entry *reg_find(int kind, const char *name)
{
    for (struct reg_entry *e = reg_list; e; e = e->next)
        if (e->kind == kind && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static const char *reg_kind_word(int kind)
{
    switch (kind) {
    case MP_TASK_OBJ:
        return "value task";
    case MP_TASK_BYTES:
        return "bytes task";
    case MP_TASK_ARRAY:
        return "array task";
    case MP_TASK_INIT:
        return "initializer";
    default:
        return "target";
    }
}

/* Add fn under (kind, name): 0 (also when that very entry exists), MP_EVALUE
 * when the name is another function's or its id another name's, -EINVAL,
 * -ENOMEM. */
static int reg_add(int kind, const char *name, mp_task_fn fn)
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
    e->kind = kind;
    e->id = reg_hash(kind, name);
    e->fn = fn;
    int rc = 0;
    pthread_mutex_lock(&reg_mu);
    for (struct reg_entry *o = reg_list; o && rc == 0; o = o->next) {
        if (o->kind == kind && strcmp(o->name, name) == 0)
            rc = o->fn == fn ? 1
                             : mp__err(MP_EVALUE, "%s '%s' is already registered",
                                       reg_kind_word(kind), name);
        else if (o->id == e->id)
            rc = mp__err(MP_EVALUE, "%s '%s' collides with '%s' (the same 64-bit id): rename one",
                         reg_kind_word(kind), name, o->name);
    }
    if (rc == 0) {
        e->next = reg_list;
        reg_list = e;
        e = NULL;
    }
    pthread_mutex_unlock(&reg_mu);
    free(e);
    return rc > 0 ? 0 : rc;
}

MP_API int mp_target_register(const char *name, mp_named_target_fn fn)
{
    return reg_add(MP__REG_TARGET, name, (mp_task_fn)fn);
}

MP_API int mp_target_lookup(const char *name, mp_named_target_fn *fn)
{
    if (!name || !fn)
        return -EINVAL;
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *e = reg_find(MP__REG_TARGET, name);
    if (e)
        *fn = (mp_named_target_fn)e->fn;
    pthread_mutex_unlock(&reg_mu);
    return e ? 0
             : mp__err(MP_EKEY, "no target registered as '%.200s' (mp_target_register, MP_TARGET)",
                       name);
}

MP_API int mp_task_register_obj(const char *name, mp_obj_fn fn)
{
    return reg_add(MP_TASK_OBJ, name, (mp_task_fn)fn);
}

MP_API int mp_task_register_bytes(const char *name, mp_bytes_fn fn)
{
    return reg_add(MP_TASK_BYTES, name, (mp_task_fn)fn);
}

MP_API int mp_task_register_array(const char *name, mp_array_fn fn)
{
    return reg_add(MP_TASK_ARRAY, name, (mp_task_fn)fn);
}

MP_API int mp_task_register_init(const char *name, mp_init_fn fn)
{
    return reg_add(MP_TASK_INIT, name, (mp_task_fn)fn);
}

static bool reg_task_kind(mp_task_kind kind)
{
    return kind == MP_TASK_OBJ || kind == MP_TASK_BYTES || kind == MP_TASK_ARRAY ||
           kind == MP_TASK_INIT;
}

MP_API int mp_task_lookup(mp_task_kind kind, const char *name, mp_task_fn *fn)
{
    if (!reg_task_kind(kind) || !name || !fn)
        return -EINVAL;
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *e = reg_find((int)kind, name);
    if (e)
        *fn = e->fn;
    pthread_mutex_unlock(&reg_mu);
    return e ? 0
             : mp__err(MP_EKEY, "KeyError: no %s registered as '%.200s' (MP_TASK)",
                       reg_kind_word((int)kind), name);
}

/* The entry of fn as a kind; the first registered wins when fn has several
 * names (any of them maps back to fn). reg_mu held. */
static struct reg_entry *reg_find_fn(int kind, mp_task_fn fn)
{
    struct reg_entry *found = NULL;
    for (struct reg_entry *e = reg_list; e; e = e->next)
        if (e->kind == kind && e->fn == fn)
            found = e; /* the list is newest first */
    return found;
}

MP_API int mp_task_name(mp_task_kind kind, mp_task_fn fn, const char **name)
{
    if (!reg_task_kind(kind) || !fn || !name)
        return -EINVAL;
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *e = reg_find_fn((int)kind, fn);
    if (e)
        *name = e->name;
    pthread_mutex_unlock(&reg_mu);
    return e ? 0
             : mp__err(MP_EKEY, "%s %p is not registered (MP_TASK, mp_task_register_*)",
                       reg_kind_word((int)kind), (void *)(uintptr_t)fn);
}

int mp__task_id(int kind, mp_task_fn fn, uint64_t *id)
{
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *e = reg_find_fn(kind, fn);
    if (e)
        *id = e->id;
    pthread_mutex_unlock(&reg_mu);
    return e ? 0 : MP_EKEY;
}

int mp__task_by_id(int kind, uint64_t id, mp_task_fn *fn)
{
    pthread_mutex_lock(&reg_mu);
    struct reg_entry *e = reg_list;
    while (e && !(e->kind == kind && e->id == id))
        e = e->next;
    if (e)
        *fn = e->fn;
    pthread_mutex_unlock(&reg_mu);
    return e ? 0 : MP_EKEY;
}
