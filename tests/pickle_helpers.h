/* Helpers the pickle codec's tests share (test_pickle.c, test_unpickle.c,
 * test_unpickle_limits.c, test_obj_values.c): decode and compare, decode and
 * expect a refusal, a pickle written as a C string literal, and reading what
 * a python3 script dumped. */
#ifndef MPIPC_TEST_PICKLE_HELPERS_H
#define MPIPC_TEST_PICKLE_HELPERS_H

#include "testutil.h"

#include "codec/pickle.h"

#include <mpipc/obj.h>

#include <stdbool.h>
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

/*
 * Check what a python3 script wrote as records of (u32le length, pickle,
 * u32le length, Python's repr of the value): each pickle decodes - with the
 * connection's decoder, or with mp_obj_loads when obj_loads - to a value
 * whose repr is Python's, character for character. Returns the record count.
 */
static inline size_t assert_python_records(const unsigned char *out, size_t n, bool obj_loads)
{
    size_t off = 0, count = 0;
    while (off < n) {
        assert_true(n - off >= 4);
        size_t plen = (size_t)out[off] | (size_t)out[off + 1] << 8 |
                      (size_t)out[off + 2] << 16 | (size_t)out[off + 3] << 24;
        off += 4;
        assert_true(n - off >= plen + 4);
        const unsigned char *pk = out + off;
        off += plen;
        size_t rlen = (size_t)out[off] | (size_t)out[off + 1] << 8 |
                      (size_t)out[off + 2] << 16 | (size_t)out[off + 3] << 24;
        off += 4;
        assert_true(n - off >= rlen);
        mp_obj *o = NULL;
        int rc = obj_loads ? mp_obj_loads(pk, plen, &o) : mp__pickle_loads(pk, plen, &o);
        int show = rlen < 100 ? (int)rlen : 100;
        if (rc != 0)
            fail_msg("record %zu: %s; Python's repr %.*s", count, mp_errname(rc), show,
                     (const char *)out + off);
        char *r = repr_of(o);
        if (strlen(r) != rlen || memcmp(r, out + off, rlen) != 0)
            fail_msg("record %zu: repr %.100s, Python's %.*s", count, r, show,
                     (const char *)out + off);
        free(r);
        mp_obj_free(o);
        off += rlen;
        count++;
    }
    return count;
}

#endif /* MPIPC_TEST_PICKLE_HELPERS_H */
