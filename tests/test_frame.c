/* frame: the length header is byte for byte CPython's
 * (multiprocessing/connection.py, Connection._send_bytes/_recv_bytes). */
#include "testutil.h"

#include "codec/frame.h"

#include <mpipc/error.h>

#include <string.h>

static void test_short_header_is_big_endian_int32(void **state)
{
    (void)state;
    unsigned char h[MP__FRAME_MAX];
    assert_int_equal(mp__frame_encode(0, h), 4);
    assert_memory_equal(h, "\0\0\0\0", 4);
    assert_int_equal(mp__frame_encode(0x01020304, h), 4);
    assert_memory_equal(h, "\x01\x02\x03\x04", 4);
    /* struct.pack("!i", 0x7fffffff): CPython uses the short form up to here. */
    assert_int_equal(mp__frame_encode(0x7fffffffu, h), 4);
    assert_memory_equal(h, "\x7f\xff\xff\xff", 4);
}

static void test_long_header_above_int32_is_minus_one_then_uint64(void **state)
{
    (void)state;
    unsigned char h[MP__FRAME_MAX];
    /* struct.pack("!i", -1) + struct.pack("!Q", n) for n > 0x7fffffff */
    assert_int_equal(mp__frame_encode(0x80000000u, h), 12);
    assert_memory_equal(h, "\xff\xff\xff\xff\0\0\0\0\x80\0\0\0", 12);
    assert_int_equal(mp__frame_encode(UINT64_C(0x0102030405060708), h), 12);
    assert_memory_equal(h + 4, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
}

static void test_decode_round_trips_both_forms(void **state)
{
    (void)state;
    const uint64_t sizes[] = {0, 1, 255, 65536, 0x7fffffffu, 0x80000000u, UINT64_C(1) << 40};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char h[MP__FRAME_MAX];
        size_t n = mp__frame_encode(sizes[i], h);
        uint64_t got = 0;
        size_t hl = 0;
        assert_int_equal(mp__frame_decode(h, n, &got, &hl), 1);
        assert_int_equal(hl, n);
        assert_true(got == sizes[i]);
    }
}

static void test_decode_asks_for_more_until_the_header_is_whole(void **state)
{
    (void)state;
    unsigned char h[MP__FRAME_MAX];
    size_t n = mp__frame_encode(UINT64_C(3), h);
    uint64_t got;
    size_t need;
    for (size_t avail = 0; avail < n; avail++) {
        assert_int_equal(mp__frame_decode(h, avail, &got, &need), 0);
        assert_int_equal(need, 4);
    }
    n = mp__frame_encode(UINT64_C(0x100000000), h);
    for (size_t avail = 4; avail < n; avail++) {
        assert_int_equal(mp__frame_decode(h, avail, &got, &need), 0);
        assert_int_equal(need, 12);
    }
}

static void test_long_form_is_accepted_for_small_sizes(void **state)
{
    (void)state;
    /* A sender may use the long form for any size; the receiver accepts it. */
    const unsigned char h[12] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5};
    uint64_t got;
    size_t hl;
    assert_int_equal(mp__frame_decode(h, sizeof h, &got, &hl), 1);
    assert_int_equal(got, 5);
    assert_int_equal(hl, 12);
}

static void test_negative_lengths_other_than_minus_one_are_corrupt(void **state)
{
    (void)state;
    uint64_t got;
    size_t hl;
    const unsigned char minus2[4] = {0xff, 0xff, 0xff, 0xfe};
    const unsigned char intmin[4] = {0x80, 0, 0, 0};
    TU_ASSERT_STATUS(mp__frame_decode(minus2, 4, &got, &hl), MP_EPROTO);
    TU_ASSERT_STATUS(mp__frame_decode(intmin, 4, &got, &hl), MP_EPROTO);
}

static void test_long_form_beyond_any_buffer_is_corrupt(void **state)
{
    (void)state;
    uint64_t got;
    size_t hl;
    const unsigned char huge[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0};
    TU_ASSERT_STATUS(mp__frame_decode(huge, 12, &got, &hl), MP_EPROTO);
}

static void test_whole_says_when_header_and_payload_have_arrived(void **state)
{
    (void)state;
    unsigned char f[MP__FRAME_LONG + 3] = {0, 0, 0, 3, 'a', 'b', 'c'};
    for (size_t avail = 0; avail < 7; avail++)
        assert_int_equal(mp__frame_whole(f, avail), 0);
    assert_int_equal(mp__frame_whole(f, 7), 1);
    assert_int_equal(mp__frame_whole(f, 8), 1); /* the next frame's start */
    /* The long form, for a small size as a forger may send it. */
    memcpy(f, "\xff\xff\xff\xff\0\0\0\0\0\0\0\3abc", sizeof f);
    for (size_t avail = 0; avail < sizeof f; avail++)
        assert_int_equal(mp__frame_whole(f, avail), 0);
    assert_int_equal(mp__frame_whole(f, sizeof f), 1);
    /* An empty message is whole with its header. */
    assert_int_equal(mp__frame_whole((const unsigned char *)"\0\0\0\0", 4), 1);
    /* Corrupt: a negative length other than -1. */
    assert_int_equal(mp__frame_whole((const unsigned char *)"\x80\0\0\0", 4), MP_EPROTO);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_header_is_big_endian_int32),
        cmocka_unit_test(test_long_header_above_int32_is_minus_one_then_uint64),
        cmocka_unit_test(test_decode_round_trips_both_forms),
        cmocka_unit_test(test_decode_asks_for_more_until_the_header_is_whole),
        cmocka_unit_test(test_long_form_is_accepted_for_small_sizes),
        cmocka_unit_test(test_negative_lengths_other_than_minus_one_are_corrupt),
        cmocka_unit_test(test_long_form_beyond_any_buffer_is_corrupt),
        cmocka_unit_test(test_whole_says_when_header_and_payload_have_arrived),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
