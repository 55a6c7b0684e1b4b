/*
 * libFuzzer harness: the manager server's fast request reader
 * (mp__mgr_quick_request in src/manager/mgr_server_request.c, built on the
 * fast readers of src/codec/pickle.h) against the general pickle decoder
 * (src/codec/unpickle.c). The fast reader takes the requests libmpipc clients send
 * most, straight from their bytes, and leaves everything else to the
 * decoder; it must never read bytes differently from it.
 *
 * For any input: when the fast reader takes it, the general decoder must
 * accept the same bytes, as a request the server would run - the tuple
 * (ident: int, method: str, args: tuple) - with the same ident, the same
 * method and the same args, compared strictly (type for type, ints by value,
 * floats by their bits, strs and bytes byte for byte: Python's == would let
 * 1 == 1.0 == True and NaN != NaN slip by). When it does not take the
 * input, it has changed nothing, and the general decoder decides alone.
 */
#include "codec/pickle.h"
#include "manager/mgr.h"

#include <mpipc/obj.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_fastpath: %s\n", what);
        abort();
    }
}

/* The same value, strictly: no numeric tower, NaN equal to itself. */
static int same(const mp_obj *a, const mp_obj *b)
{
    int t = mp_obj_type(a);
    if (t != mp_obj_type(b))
        return 0;
    switch (t) {
    case MP_TYPE_NONE:
        return 1;
    case MP_TYPE_BOOL:
    case MP_TYPE_INT: {
        int64_t x, y;
        return mp_obj_get_int(a, &x) == 0 && mp_obj_get_int(b, &y) == 0 && x == y;
    }
    case MP_TYPE_FLOAT: {
        double x, y;
        if (mp_obj_get_float(a, &x) != 0 || mp_obj_get_float(b, &y) != 0)
            return 0;
        return memcmp(&x, &y, sizeof x) == 0;
    }
    case MP_TYPE_STR: {
        const char *x, *y;
        size_t xn, yn;
        return mp_obj_get_str(a, &x, &xn) == 0 && mp_obj_get_str(b, &y, &yn) == 0 && xn == yn &&
               memcmp(x, y, xn) == 0;
    }
    case MP_TYPE_BYTES: {
        const unsigned char *x, *y;
        size_t xn, yn;
        return mp_obj_get_bytes(a, &x, &xn) == 0 && mp_obj_get_bytes(b, &y, &yn) == 0 && xn == yn &&
               memcmp(x, y, xn) == 0;
    }
    case MP_TYPE_TUPLE:
    case MP_TYPE_LIST: {
        ssize_t n = mp_obj_len(a);
        if (n < 0 || n != mp_obj_len(b))
            return 0;
        for (ssize_t i = 0; i < n; i++)
            if (!same(mp_obj_list_get(a, (size_t)i), mp_obj_list_get(b, (size_t)i)))
                return 0;
        return 1;
    }
    default:
        return 0; /* the fast reader makes nothing else */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t ident = 0;
    const char *meth = NULL;
    size_t mlen = 0;
    mp_obj *args = NULL;
    int q = mp__mgr_quick_request(data, size, &ident, &meth, &mlen, &args);
    check(q == 1 || q == 0 || q == -12 /* -ENOMEM */, "unexpected status");
    if (q != 1) {
        check(args == NULL, "a refusal left a value");
        return 0;
    }
    mp_obj *req = NULL;
    int rc = mp__pickle_loads(data, size, &req);
    if (rc == -12) {
        mp_obj_free(args);
        return 0;
    }
    check(rc == 0, "the fast reader took bytes the decoder refuses");
    int64_t gid;
    const char *gm;
    size_t gml;
    check(mp_obj_type(req) == MP_TYPE_TUPLE && mp_obj_len(req) == 3, "not a 3-tuple");
    check(mp_obj_get_int(mp_obj_list_get(req, 0), &gid) == 0 &&
              mp_obj_type(mp_obj_list_get(req, 0)) == MP_TYPE_INT,
          "the ident is not an int");
    check(gid == ident, "the idents differ");
    check(mp_obj_get_str(mp_obj_list_get(req, 1), &gm, &gml) == 0, "the method is not a str");
    check(gml == mlen && memcmp(gm, meth, mlen) == 0, "the methods differ");
    check(mp_obj_type(args) == MP_TYPE_TUPLE, "the fast reader's args are not a tuple");
    check(same(mp_obj_list_get(req, 2), args), "the args differ");
    mp_obj_free(req);
    mp_obj_free(args);
    return 0;
}
