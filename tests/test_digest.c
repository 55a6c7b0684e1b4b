/* digest: MD5, SHA-256 and HMAC over both give the published test vectors
 * (RFC 1321, FIPS 180-4 / NIST, RFC 2202, RFC 4231), agree with Python's
 * hashlib/hmac at the padding edges, and compare in constant time what
 * hmac.compare_digest compares. */
#include "testutil.h"

#include "codec/digest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

static void hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static void assert_digest(mp__digest_alg alg, const void *p, size_t n, const char *expected)
{
    unsigned char d[MP__DIGEST_MAX_SIZE];
    char h[2 * MP__DIGEST_MAX_SIZE + 1];
    if (alg == MP__DIGEST_MD5)
        mp__md5(p, n, d);
    else
        mp__sha256(p, n, d);
    hex(d, mp__digest_size(alg), h);
    assert_string_equal(h, expected);
}

static void assert_hmac(mp__digest_alg alg, const void *key, size_t keylen, const void *msg,
                        size_t msglen, const char *expected)
{
    unsigned char d[MP__DIGEST_MAX_SIZE];
    char h[2 * MP__DIGEST_MAX_SIZE + 1];
    int n = mp__hmac(alg, key, keylen, msg, msglen, d);
    assert_int_equal(n, (int)mp__digest_size(alg));
    hex(d, (size_t)n, h);
    /* RFC 4231 case 5 publishes only the first 128 bits */
    assert_memory_equal(h, expected, strlen(expected));
}

#define S(lit) lit, (sizeof(lit) - 1)

static void test_md5_rfc1321_vectors(void **state)
{
    (void)state;
    /* RFC 1321, appendix A.5 */
    assert_digest(MP__DIGEST_MD5, S(""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_digest(MP__DIGEST_MD5, S("a"), "0cc175b9c0f1b6a831c399e269772661");
    assert_digest(MP__DIGEST_MD5, S("abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_digest(MP__DIGEST_MD5, S("message digest"), "f96b697d7cb7938d525a2f31aaf161d0");
    assert_digest(MP__DIGEST_MD5, S("abcdefghijklmnopqrstuvwxyz"),
                  "c3fcd3d76192e4007dfb496cca67e13b");
    assert_digest(MP__DIGEST_MD5,
                  S("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"),
                  "d174ab98d277d9f5a5611c2c9f419d9f");
    assert_digest(MP__DIGEST_MD5,
                  S("1234567890123456789012345678901234567890"
                    "1234567890123456789012345678901234567890"),
                  "57edf4a22be3c955ac49da2e2107b67a");
}

static void test_sha256_fips_180_4_vectors(void **state)
{
    (void)state;
    /* FIPS 180-4 examples (NIST CSRC): one block, two blocks, empty */
    assert_digest(MP__DIGEST_SHA256, S("abc"),
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_digest(MP__DIGEST_SHA256, S("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    assert_digest(MP__DIGEST_SHA256, S(""),
                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_digest(MP__DIGEST_SHA256,
                  S("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                    "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_sha256_and_md5_of_a_million_a(void **state)
{
    (void)state;
    /* NIST's long message: 1,000,000 repetitions of 'a', fed in uneven
     * pieces so that every buffering path runs. */
    char *buf = malloc(1000000);
    assert_non_null(buf);
    memset(buf, 'a', 1000000);
    assert_digest(MP__DIGEST_SHA256, buf, 1000000,
                  "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    assert_digest(MP__DIGEST_MD5, buf, 1000000, "7707d6ae4e027c70eea2a935c2296f21");
    mp__digest_ctx c;
    TU_ASSERT_STATUS(mp__digest_init(&c, MP__DIGEST_SHA256), 0);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t k = step < 1000000 - off ? step : 1000000 - off;
        mp__digest_update(&c, buf + off, k);
        off += k;
        step = step * 7 % 1013 + 1;
    }
    unsigned char d[32];
    char h[65];
    mp__digest_final(&c, d);
    hex(d, 32, h);
    assert_string_equal(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(buf);
}

static void test_padding_edges_agree_with_python_hashlib(void **state)
{
    (void)state;
    /* hashlib.md5(b'a'*n), hashlib.sha256(b'a'*n) around 55/56/64 bytes,
     * where the length field does or does not fit the last block. */
    static const struct {
        size_t n;
        const char *md5, *sha256;
    } t[] = {
        {55, "ef1772b6dff9a122358552954ad0df65",
         "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "3b0c8ac703f828b04c6c197006d17218",
         "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {57, "652b906d60af96844ebd21b674f35e93",
         "f13b2d724659eb3bf47f2dd6af1accc87b81f09f59f2b75e5c0bed6589dfe8c6"},
        {63, "b06521f39153d618550606be297466d5",
         "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "014842d480b571495a4a0363793f7367",
         "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "c743a45e0d2e6a95cb859adae0248435",
         "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "8a7bd0732ed6a28ce75f6dabc90e1613",
         "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "5f61c0ccad4cac44c75ff505e1f1e537",
         "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
        {128, "e510683b3f5ffe4093d021808bc6ff70",
         "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
    };
    char a[128];
    memset(a, 'a', sizeof a);
    for (size_t i = 0; i < N_ELEMS(t); i++) {
        assert_digest(MP__DIGEST_MD5, a, t[i].n, t[i].md5);
        assert_digest(MP__DIGEST_SHA256, a, t[i].n, t[i].sha256);
    }
}

static void test_streaming_in_any_pieces_equals_one_shot(void **state)
{
    (void)state;
    unsigned char msg[300];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (unsigned char)(i * 31 + 7);
    for (int alg = MP__DIGEST_MD5; alg <= MP__DIGEST_SHA256; alg++) {
        for (size_t n = 0; n <= sizeof msg; n += 13) {
            unsigned char one[32], pieces[32];
            mp__digest_ctx c;
            TU_ASSERT_STATUS(mp__digest_init(&c, (mp__digest_alg)alg), 0);
            mp__digest_update(&c, msg, n);
            mp__digest_final(&c, one);
            for (size_t cut = 0; cut <= n; cut += 17) {
                TU_ASSERT_STATUS(mp__digest_init(&c, (mp__digest_alg)alg), 0);
                mp__digest_update(&c, msg, cut);
                mp__digest_update(&c, NULL, 0);
                mp__digest_update(&c, msg + cut, n - cut);
                mp__digest_final(&c, pieces);
                assert_memory_equal(one, pieces, mp__digest_size((mp__digest_alg)alg));
            }
        }
    }
}

static void test_hmac_md5_rfc2202_vectors(void **state)
{
    (void)state;
    unsigned char k16b[16], k16a[16], k25[25], k16c[16], k80[80], d50[50], c50[50];
    memset(k16b, 0x0b, 16);
    memset(k16a, 0xaa, 16);
    memset(k16c, 0x0c, 16);
    memset(k80, 0xaa, 80);
    memset(d50, 0xdd, 50);
    memset(c50, 0xcd, 50);
    for (int i = 0; i < 25; i++)
        k25[i] = (unsigned char)(i + 1);
    assert_hmac(MP__DIGEST_MD5, k16b, 16, S("Hi There"), "9294727a3638bb1c13f48ef8158bfc9d");
    assert_hmac(MP__DIGEST_MD5, S("Jefe"), S("what do ya want for nothing?"),
                "750c783e6ab0b503eaa86e310a5db738");
    assert_hmac(MP__DIGEST_MD5, k16a, 16, d50, 50, "56be34521d144c88dbb8c733f0e8b3f6");
    assert_hmac(MP__DIGEST_MD5, k25, 25, c50, 50, "697eaf0aca3a3aea3a75164746ffaa79");
    assert_hmac(MP__DIGEST_MD5, k16c, 16, S("Test With Truncation"),
                "56461ef2342edc00f9bab995690efd4c");
    assert_hmac(MP__DIGEST_MD5, k80, 80,
                S("Test Using Larger Than Block-Size Key - Hash Key First"),
                "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd");
    assert_hmac(MP__DIGEST_MD5, k80, 80,
                S("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"),
                "6f630fad67cda0ee1fb1f562db3aa53e");
}

static void test_hmac_sha256_rfc4231_vectors(void **state)
{
    (void)state;
    unsigned char k20b[20], k20a[20], k25[25], k20c[20], k131[131], d50[50], c50[50];
    memset(k20b, 0x0b, 20);
    memset(k20a, 0xaa, 20);
    memset(k20c, 0x0c, 20);
    memset(k131, 0xaa, 131);
    memset(d50, 0xdd, 50);
    memset(c50, 0xcd, 50);
    for (int i = 0; i < 25; i++)
        k25[i] = (unsigned char)(i + 1);
    /* Test cases 1-7 of RFC 4231 section 4 */
    assert_hmac(MP__DIGEST_SHA256, k20b, 20, S("Hi There"),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    assert_hmac(MP__DIGEST_SHA256, S("Jefe"), S("what do ya want for nothing?"),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert_hmac(MP__DIGEST_SHA256, k20a, 20, d50, 50,
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    assert_hmac(MP__DIGEST_SHA256, k25, 25, c50, 50,
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    assert_hmac(MP__DIGEST_SHA256, k20c, 20, S("Test With Truncation"),
                "a3b6167473100ee06e0c796c2955552b"); /* truncated to 128 bits */
    assert_hmac(MP__DIGEST_SHA256, k131, 131,
                S("Test Using Larger Than Block-Size Key - Hash Key First"),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    assert_hmac(MP__DIGEST_SHA256, k131, 131,
                S("This is a test using a larger than block-size key and a larger than "
                  "block-size data. The key needs to be hashed before being used by the HMAC "
                  "algorithm."),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void test_hmac_keys_at_the_block_size_agree_with_python_hmac(void **state)
{
    (void)state;
    /* hmac.new(bytes(range(n)), b'edge of the block', alg) for n = 63, 64,
     * 65: a key of exactly one block is used as is, one byte more is hashed. */
    static const struct {
        size_t keylen;
        const char *md5, *sha256;
    } t[] = {
        {63, "0d1a13c220b1a6bdbae20dfd705a0456",
         "435183cba02a924a61bc109ad10c5bad6b4509f55c57aab05e80b8b40db19162"},
        {64, "3ecfecba9c962564bfc5d2c135a7b124",
         "30153163a1c28044f1390fdaa2a356560c6984a5bb437867a735f2fd36e1eaba"},
        {65, "e9a71263dbef515589f136ccd79efc09",
         "c5ba50693a4105e14ffc777effd2d6248cc61a6875d73829ff3b8c7b31b2630e"},
    };
    unsigned char key[65];
    for (int i = 0; i < 65; i++)
        key[i] = (unsigned char)i;
    for (size_t i = 0; i < N_ELEMS(t); i++) {
        assert_hmac(MP__DIGEST_MD5, key, t[i].keylen, S("edge of the block"), t[i].md5);
        assert_hmac(MP__DIGEST_SHA256, key, t[i].keylen, S("edge of the block"), t[i].sha256);
    }
    /* empty key and message: hmac.new(b'', b'', alg) */
    assert_hmac(MP__DIGEST_MD5, NULL, 0, NULL, 0, "74e6f7298a9c2d168935f58c001bad88");
    assert_hmac(MP__DIGEST_SHA256, NULL, 0, NULL, 0,
                "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_hmac_in_steps_equals_one_shot(void **state)
{
    (void)state;
    unsigned char one[32], steps[32];
    assert_int_equal(mp__hmac(MP__DIGEST_SHA256, S("key"), S("part one, part two"), one), 32);
    mp__hmac_ctx c;
    TU_ASSERT_STATUS(mp__hmac_init(&c, MP__DIGEST_SHA256, S("key")), 0);
    mp__hmac_update(&c, S("part one, "));
    mp__hmac_update(&c, S("part two"));
    mp__hmac_final(&c, steps);
    assert_memory_equal(one, steps, 32);
}

static void test_bad_arguments_are_einval(void **state)
{
    (void)state;
    unsigned char d[32];
    mp__digest_ctx c;
    mp__hmac_ctx h;
    TU_ASSERT_STATUS(mp__digest_init(&c, (mp__digest_alg)0), -EINVAL);
    TU_ASSERT_STATUS(mp__digest_init(NULL, MP__DIGEST_MD5), -EINVAL);
    TU_ASSERT_STATUS(mp__hmac(MP__DIGEST_MD5, NULL, 3, S("m"), d), -EINVAL);
    TU_ASSERT_STATUS(mp__hmac(MP__DIGEST_MD5, S("k"), NULL, 3, d), -EINVAL);
    TU_ASSERT_STATUS(mp__hmac(MP__DIGEST_MD5, S("k"), S("m"), NULL), -EINVAL);
    TU_ASSERT_STATUS(mp__hmac((mp__digest_alg)7, S("k"), S("m"), d), -EINVAL);
    TU_ASSERT_STATUS(mp__hmac_init(&h, (mp__digest_alg)7, S("k")), -EINVAL);
    assert_int_equal(mp__digest_size((mp__digest_alg)7), 0);
}

static void test_algorithm_names_are_pythons(void **state)
{
    (void)state;
    /* the names in hmac.new(..., 'md5') and the "{sha256}" handshake prefix */
    assert_int_equal(mp__digest_from_name(S("md5")), MP__DIGEST_MD5);
    assert_int_equal(mp__digest_from_name(S("sha256")), MP__DIGEST_SHA256);
    TU_ASSERT_STATUS(mp__digest_from_name(S("sha1")), -EINVAL);
    TU_ASSERT_STATUS(mp__digest_from_name(S("sha2567")), -EINVAL);
    TU_ASSERT_STATUS(mp__digest_from_name(S("")), -EINVAL);
    TU_ASSERT_STATUS(mp__digest_from_name(NULL, 3), -EINVAL);
    assert_int_equal(mp__digest_size(MP__DIGEST_MD5), 16);
    assert_int_equal(mp__digest_size(MP__DIGEST_SHA256), 32);
}

static void test_digest_equal_compares_every_byte(void **state)
{
    (void)state;
    /* hmac.compare_digest semantics: equal only if every byte is */
    unsigned char a[32], b[32];
    for (int i = 0; i < 32; i++)
        a[i] = b[i] = (unsigned char)(i * 37);
    assert_true(mp__digest_equal(a, b, 32));
    assert_true(mp__digest_equal(a, b, 0));
    for (int i = 0; i < 32; i++) {
        b[i] ^= 0x80;
        assert_false(mp__digest_equal(a, b, 32));
        b[i] ^= 0x81;
        assert_false(mp__digest_equal(a, b, 32));
        b[i] ^= 0x01;
    }
    assert_true(mp__digest_equal(a, b, 32));
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_md5_rfc1321_vectors),
        cmocka_unit_test(test_sha256_fips_180_4_vectors),
        cmocka_unit_test(test_sha256_and_md5_of_a_million_a),
        cmocka_unit_test(test_padding_edges_agree_with_python_hashlib),
        cmocka_unit_test(test_streaming_in_any_pieces_equals_one_shot),
        cmocka_unit_test(test_hmac_md5_rfc2202_vectors),
        cmocka_unit_test(test_hmac_sha256_rfc4231_vectors),
        cmocka_unit_test(test_hmac_keys_at_the_block_size_agree_with_python_hmac),
        cmocka_unit_test(test_hmac_in_steps_equals_one_shot),
        cmocka_unit_test(test_bad_arguments_are_einval),
        cmocka_unit_test(test_algorithm_names_are_pythons),
        cmocka_unit_test(test_digest_equal_compares_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
