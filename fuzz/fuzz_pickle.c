/*
 * libFuzzer harness for the pickle decoder (src/codec/unpickle.c).
 *
 * Whatever the input, mp__pickle_loads must return a status without
 * crashing, leaking or touching memory it does not own (ASan/UBSan watch).
 * mp_obj_loads must accept at least what it accepts, as the equal value.
 * When it accepts, the value must survive a round trip: dumps, loads again,
 * and the two values must print the same repr (repr, unlike ==, also tells
 * -0.0 from 0.0 and NaN from NaN) and encode to the same bytes. The copy and
 * equality paths run on every accepted value too. The decoder's memory
 * budget (80 bytes per input byte) keeps every input far below the
 * -rss_limit_mb that run.sh sets.
 */
#include "codec/pickle.h"

#include <mpipc/obj.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_pickle: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mp_obj *a = (mp_obj *)1, *l = (mp_obj *)1;
    int rc = mp__pickle_loads(data, size, &a);
    /* mp_obj_loads is the same decoder, but ignores bytes after STOP: it
     * accepts whatever the connection's accepts, as the same value. */
    int lrc = mp_obj_loads(data, size, &l);
    check(lrc == 0 ? l != NULL : l == NULL, "mp_obj_loads left *out wrong");
    check(rc != 0 || lrc == 0, "mp_obj_loads refused what mp__pickle_loads accepted");
    if (rc != 0) {
        mp_obj_free(l);
        check(a == NULL, "failed loads left *out set");
        check(rc == MP_EPROTO || rc == -12 /* -ENOMEM */, "unexpected status");
        return 0;
    }
    char *rl = NULL;
    int cl = mp_obj_repr(l, &rl);
    mp_obj_free(l);
    check(a != NULL, "loads succeeded without a value");

    unsigned char *p1 = NULL, *p2 = NULL;
    size_t n1 = 0, n2 = 0;
    check(mp__pickle_dumps(a, &p1, &n1) == 0, "dumps of a decoded value failed");
    mp_obj *b = NULL;
    check(mp__pickle_loads(p1, n1, &b) == 0, "our own pickle did not load");
    check(mp__pickle_dumps(b, &p2, &n2) == 0, "second dumps failed");
    check(n1 == n2 && memcmp(p1, p2, n1) == 0, "dumps is not stable across a round trip");

    char *ra = NULL, *rb = NULL;
    int ca = mp_obj_repr(a, &ra), cb = mp_obj_repr(b, &rb);
    /* MP_EVALUE: an int of more than 4300 digits, as Python's repr. */
    check(ca == cb && ca == cl && (ca == 0 || ca == MP_EVALUE), "repr failed");
    check(ca != 0 || strcmp(ra, rb) == 0, "round trip changed the value");
    check(ca != 0 || strcmp(ra, rl) == 0, "mp_obj_loads read another value");
    free(rl);
    /* The checks below excuse a value holding a NaN; unknown when repr was
     * refused, so excused then too. */
    const char *text = ca == 0 ? ra : "nan?";

    mp_obj *c = mp_obj_copy(a);
    check(c != NULL, "copy failed");
    /* == is Python's: false only where a NaN hides inside. A copy keeps
     * each NaN's identity (as copy.deepcopy keeps a float), so it compares
     * exactly as the value does with itself; the round trip makes new NaN
     * objects. */
    check(mp_obj_equal(a, c) == mp_obj_equal(a, a), "copy and value compare differently");
    check(mp_obj_equal(a, b) || strstr(text, "nan") != NULL, "round trip not equal");
    check(mp_obj_equal(a, a) || strstr(text, "nan") != NULL, "value not equal to itself");
    check(mp_obj_len(a) != -22 /* -EINVAL */, "len of a value failed");
    if (mp_obj_type(a) == MP_TYPE_INSTANCE) {
        /* An inert instance: a listed class, a tuple of args; unhashable. */
        check(mp_obj_instance_class(a) != NULL, "instance without a class");
        check(mp_obj_type(mp_obj_instance_args(a)) == MP_TYPE_TUPLE, "instance args not a tuple");
        mp_obj *again = mp_obj_instance_new(mp_obj_instance_class(a), mp_obj_instance_args(a));
        check(again != NULL && mp_obj_equal(again, a), "a decoded instance cannot be rebuilt");
        mp_obj_free(again);
    }

    free(ra);
    free(rb);
    free(p1);
    free(p2);
    mp_obj_free(a);
    mp_obj_free(b);
    mp_obj_free(c);
    return 0;
}
