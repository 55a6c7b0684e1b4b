/* Helpers the pickle codec's tests share (test_pickle.c, test_unpickle.c,
 * test_unpickle_limits.c): decode and compare, decode and expect a refusal,
 * and a pickle written as a C string literal. */
#ifndef MPIPC_TEST_PICKLE_HELPERS_H
#define MPIPC_TEST_PICKLE_HELPERS_H

#include "testutil.h"

#include "codec/pickle.h"

#include <mpipc/obj.h>

#include <stdlib.h>
#include <string.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* A pickle written as a C string literal, and its length. */
#define P(lit) (const unsigned char *)(lit), (sizeof(lit) - 1)

static inline char *repr_of(const mp_obj *o)
{
    char *s = NULL;
    TU_ASSERT_STATUS(mp_obj_repr(o, &s), 0);
    return s;
}

static inline mp_obj *loads_ok(const unsigned char *p, size_t n)
{
    mp_obj *o = (mp_obj *)1;
    TU_ASSERT_STATUS(mp__pickle_loads(p, n, &o), 0);
    assert_non_null(o);
    return o;
}

static inline void assert_loads_repr(const unsigned char *p, size_t n, const char *expected)
{
    mp_obj *o = loads_ok(p, n);
    char *s = repr_of(o);
    assert_string_equal(s, expected);
    free(s);
    mp_obj_free(o);
}

static inline void assert_refused(const unsigned char *p, size_t n)
{
    mp_obj *o = (mp_obj *)1;
    TU_ASSERT_STATUS(mp__pickle_loads(p, n, &o), MP_EPROTO);
    assert_null(o);
}

#endif /* MPIPC_TEST_PICKLE_HELPERS_H */
