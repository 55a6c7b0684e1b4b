/*
 * sync_value - Value and Array (see sync.h): typed items in shared memory,
 * each access under the object's RLock when it has one, as sharedctypes
 * does. The other primitives are in the sibling files listed in sync_impl.h.
 */
#include "sync/sync_impl.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* A Value is an Array of one item; both handles point at this. The RLock
 * is inside (no pointer), so the block means the same at any address: a
 * forkserver or spawn child maps it where it can (process/passobj.c). */
struct mp_array {
    struct mp_rlock lock; /* initialised only when `locked` (not Raw) */
    bool locked;
    size_t len;
    uint32_t itemsize;
    char typecode;
};

/* Items start two cache lines in, aligned for every typecode. */
#define ITEMS_OFFSET MP__SYNC_ARRAY_HEADER
_Static_assert(sizeof(struct mp_array) <= ITEMS_OFFSET, "header fits before the items");

static unsigned char *array_items(struct mp_array *a)
{
    return (unsigned char *)a + ITEMS_OFFSET;
}

/* The Array's RLock, or NULL for a Raw one. */
static mp_rlock *array_lock(struct mp_array *a)
{
    return a->locked ? &a->lock : NULL;
}

size_t mp__sync_array_size(const void *obj)
{
    const struct mp_array *a = obj;
    if (a->itemsize == 0 || a->len > (SIZE_MAX - ITEMS_OFFSET) / a->itemsize)
        return 0;
    return ITEMS_OFFSET + a->len * a->itemsize;
}

enum kind { K_SIGNED, K_UNSIGNED, K_FLOAT };

struct ctype {
    char code;
    unsigned char size;
    unsigned char kind;
};

static const struct ctype ctypes[] = {
    {'c', sizeof(char), K_SIGNED},
    {'b', sizeof(signed char), K_SIGNED},
    {'B', sizeof(unsigned char), K_UNSIGNED},
    {'h', sizeof(short), K_SIGNED},
    {'H', sizeof(unsigned short), K_UNSIGNED},
    {'i', sizeof(int), K_SIGNED},
    {'I', sizeof(unsigned int), K_UNSIGNED},
    {'l', sizeof(long), K_SIGNED},
    {'L', sizeof(unsigned long), K_UNSIGNED},
    {'q', sizeof(long long), K_SIGNED},
    {'Q', sizeof(unsigned long long), K_UNSIGNED},
    {'f', sizeof(float), K_FLOAT},
    {'d', sizeof(double), K_FLOAT},
};

static const struct ctype *array_ctype(char code)
{
    for (size_t i = 0; i < sizeof ctypes / sizeof ctypes[0]; i++)
        if (ctypes[i].code == code)
            return &ctypes[i];
    return NULL;
}

static int array_make(struct mp_array **out, char typecode, size_t n, const void *init,
                      bool with_lock)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    const struct ctype *t = array_ctype(typecode);
    if (!t || n == 0)
        return MP_EVALUE;
    if (n > (SIZE_MAX - ITEMS_OFFSET) / t->size)
        return -ENOMEM;
    struct mp_array *a;
    int rc = sync_obj_alloc(out, (void **)&a, ITEMS_OFFSET + n * t->size);
    if (rc < 0)
        return rc;
    if (with_lock && (rc = mp__mutex_init(&a->lock.mu, true)) < 0) {
        mp__shm_free(a);
        return rc;
    }
    a->locked = with_lock;
    a->len = n;
    a->itemsize = t->size;
    a->typecode = typecode;
    if (init)
        memcpy(array_items(a), init, n * t->size);
    *out = a;
    return 0;
}

static void array_free(struct mp_array *a)
{
    if (a && mp__shm_owned(a)) {
        if (a->locked)
            (void)pthread_mutex_destroy(&a->lock.mu);
        mp__shm_free(a);
    }
}

/* Python's index rule: negative counts from the end. */
static int array_resolve_index(const struct mp_array *a, ssize_t i, size_t *at)
{
    if (i < 0) {
        if ((size_t) - (i + 1) >= a->len)
            return MP_EKEY;
        *at = a->len - (size_t) - (i + 1) - 1;
    } else {
        if ((size_t)i >= a->len)
            return MP_EKEY;
        *at = (size_t)i;
    }
    return 0;
}

/* Take the item's lock if it has one: 0 or MP_EOWNERDEAD (taken either way). */
static int array_item_lock(struct mp_array *a)
{
    return a->locked ? mp_rlock_acquire(&a->lock, MP_FOREVER) : 0;
}

static void array_item_unlock(struct mp_array *a)
{
    if (a->locked)
        (void)mp_rlock_release(&a->lock);
}

static int array_load_int(const struct ctype *t, const unsigned char *p, int64_t *out)
{
    switch (t->code) {
    case 'c':
        *out = *(const char *)p;
        return 0;
    case 'b':
        *out = *(const signed char *)p;
        return 0;
    case 'B':
        *out = *(const unsigned char *)p;
        return 0;
    case 'h':
        *out = *(const short *)p;
        return 0;
    case 'H':
        *out = *(const unsigned short *)p;
        return 0;
    case 'i':
        *out = *(const int *)p;
        return 0;
    case 'I':
        *out = *(const unsigned int *)p;
        return 0;
    case 'l':
        *out = *(const long *)p;
        return 0;
    case 'q':
        *out = *(const long long *)p;
        return 0;
    case 'L':
        if (*(const unsigned long *)p > INT64_MAX)
            return -ERANGE;
        *out = (int64_t) * (const unsigned long *)p;
        return 0;
    case 'Q':
        if (*(const unsigned long long *)p > INT64_MAX)
            return -ERANGE;
        *out = (int64_t) * (const unsigned long long *)p;
        return 0;
    default:
        return MP_ETYPE;
    }
}

/* True if x fits an integer type of `size` bytes of the given kind. */
static bool array_int_fits(const struct ctype *t, int64_t x)
{
    if (t->size >= 8)
        return t->kind == K_SIGNED || x >= 0;
    int bits = t->size * 8;
    if (t->code == 'c')
        return x >= CHAR_MIN && x <= CHAR_MAX;
    if (t->kind == K_SIGNED)
        return x >= -(INT64_C(1) << (bits - 1)) && x < (INT64_C(1) << (bits - 1));
    return x >= 0 && x < (INT64_C(1) << bits);
}

static int array_store_int(const struct ctype *t, unsigned char *p, int64_t x)
{
    if (t->kind == K_FLOAT)
        return MP_ETYPE;
    if (!array_int_fits(t, x))
        return -ERANGE;
    switch (t->code) {
    case 'c':
        *(char *)p = (char)x;
        break;
    case 'b':
        *(signed char *)p = (signed char)x;
        break;
    case 'B':
        *(unsigned char *)p = (unsigned char)x;
        break;
    case 'h':
        *(short *)p = (short)x;
        break;
    case 'H':
        *(unsigned short *)p = (unsigned short)x;
        break;
    case 'i':
        *(int *)p = (int)x;
        break;
    case 'I':
        *(unsigned int *)p = (unsigned int)x;
        break;
    case 'l':
        *(long *)p = (long)x;
        break;
    case 'L':
        *(unsigned long *)p = (unsigned long)x;
        break;
    case 'q':
        *(long long *)p = (long long)x;
        break;
    case 'Q':
        *(unsigned long long *)p = (unsigned long long)x;
        break;
    }
    return 0;
}

/* One locked access to item i: op 0 get_int, 1 set_int, 2 get_float, 3 set_float. */
enum access { GET_INT, SET_INT, GET_FLOAT, SET_FLOAT };

static int array_item_access(struct mp_array *a, ssize_t i, enum access op, int64_t *ip, double *fp)
{
    if (!a)
        return -EINVAL;
    size_t at;
    int rc = array_resolve_index(a, i, &at);
    if (rc < 0)
        return rc;
    const struct ctype *t = array_ctype(a->typecode);
    bool is_float = t->kind == K_FLOAT;
    if (is_float != (op == GET_FLOAT || op == SET_FLOAT))
        return MP_ETYPE;
    unsigned char *p = array_items(a) + at * t->size;
    int lrc = array_item_lock(a);
    if (lrc < 0 && lrc != MP_EOWNERDEAD)
        return lrc;
    switch (op) {
    case GET_INT:
        rc = array_load_int(t, p, ip);
        break;
    case SET_INT:
        rc = array_store_int(t, p, *ip);
        break;
    case GET_FLOAT:
        if (t->code == 'f') {
            float f;
            memcpy(&f, p, sizeof f);
            *fp = f;
        } else {
            memcpy(fp, p, sizeof *fp);
        }
        break;
    case SET_FLOAT:
        if (t->code == 'f') {
            float f = (float)*fp;
            memcpy(p, &f, sizeof f);
        } else {
            memcpy(p, fp, sizeof *fp);
        }
        break;
    }
    array_item_unlock(a);
    return rc < 0 ? rc : lrc;
}

MP_API int mp_value_new(mp_value **out, char typecode, const void *init, bool with_lock)
{
    return array_make((struct mp_array **)out, typecode, 1, init, with_lock);
}

MP_API void *mp_value_ptr(mp_value *v)
{
    return v ? array_items((struct mp_array *)v) : NULL;
}

MP_API mp_rlock *mp_value_get_lock(mp_value *v)
{
    return v ? array_lock((struct mp_array *)v) : NULL;
}

MP_API char mp_value_typecode(const mp_value *v)
{
    return v ? ((const struct mp_array *)v)->typecode : 0;
}

MP_API int mp_value_get_int(mp_value *v, int64_t *out)
{
    if (!out)
        return -EINVAL;
    return array_item_access((struct mp_array *)v, 0, GET_INT, out, NULL);
}

MP_API int mp_value_set_int(mp_value *v, int64_t x)
{
    return array_item_access((struct mp_array *)v, 0, SET_INT, &x, NULL);
}

MP_API int mp_value_get_float(mp_value *v, double *out)
{
    if (!out)
        return -EINVAL;
    return array_item_access((struct mp_array *)v, 0, GET_FLOAT, NULL, out);
}

MP_API int mp_value_set_float(mp_value *v, double x)
{
    return array_item_access((struct mp_array *)v, 0, SET_FLOAT, NULL, &x);
}

MP_API void mp_value_free(mp_value *v)
{
    array_free((struct mp_array *)v);
}

MP_API int mp_array_new(mp_array **out, char typecode, size_t n, const void *init, bool with_lock)
{
    return array_make(out, typecode, n, init, with_lock);
}

MP_API void *mp_array_ptr(mp_array *a)
{
    return a ? array_items(a) : NULL;
}

MP_API ssize_t mp_array_len(const mp_array *a)
{
    return a ? (ssize_t)a->len : -EINVAL;
}

MP_API mp_rlock *mp_array_get_lock(mp_array *a)
{
    return a ? array_lock(a) : NULL;
}

MP_API char mp_array_typecode(const mp_array *a)
{
    return a ? a->typecode : 0;
}

MP_API int mp_array_get_int(mp_array *a, ssize_t i, int64_t *out)
{
    if (!out)
        return -EINVAL;
    return array_item_access(a, i, GET_INT, out, NULL);
}

MP_API int mp_array_set_int(mp_array *a, ssize_t i, int64_t x)
{
    return array_item_access(a, i, SET_INT, &x, NULL);
}

MP_API int mp_array_get_float(mp_array *a, ssize_t i, double *out)
{
    if (!out)
        return -EINVAL;
    return array_item_access(a, i, GET_FLOAT, NULL, out);
}

MP_API int mp_array_set_float(mp_array *a, ssize_t i, double x)
{
    return array_item_access(a, i, SET_FLOAT, NULL, &x);
}

MP_API void mp_array_free(mp_array *a)
{
    array_free(a);
}
