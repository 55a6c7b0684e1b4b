/* unpickle limits: the decoder's memory and time stay within a bound per
 * input byte (docs/wire.md), measured in a forked child for the costliest
 * pickles of each shape, and hostile ones are refused within the budget. */
#include "pickle_helpers.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- Memory and time bounded per input byte ----------------------------
 *
 * Each pickle is decoded in a forked child, which reports how much its peak
 * RSS (ru_maxrss) grew while decoding; the input is built before the fork,
 * so only the decoder's own memory counts. The bounds are per input byte,
 * with 16 MiB of slack for the allocator, and scaled under memcheck and
 * the sanitizers, which add memory of their own per allocation.
 */

/* How much slower than a plain build this run is (time bounds). */
static double slowdown(void)
{
    return tu_slowdown(30.0, 4.0);
}

/* How much more memory than a plain build the tools take for the same
 * allocations: ASan's redzones and quarantine, memcheck's bookkeeping,
 * TSan's shadow (several bytes per byte). */
static double mem_slack(void)
{
#if defined(__SANITIZE_THREAD__)
    return 8.0;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    return 8.0;
#endif
#endif
    return tu_under_valgrind() || slowdown() > 1.0 ? 3.0 : 1.0;
}

/* The big inputs' size in MiB: 8, or MPIPC_TEST_DECODE_MIB (1 to 8), which
 * the sanitizer presets and the memcheck run set lower (CMakePresets.json,
 * tests/CMakeLists.txt): there each node costs many times its plain-build
 * CPU, and their memory slack makes the per-byte bounds loose anyway; the
 * plain build checks the bounds at full size. 1 under memcheck when unset. */
static size_t decode_mib(void)
{
    const char *env = getenv("MPIPC_TEST_DECODE_MIB");
    int mib = env && *env ? atoi(env) : 0;
    if (mib >= 1 && mib <= 8)
        return (size_t)mib;
    return tu_under_valgrind() ? 1 : 8;
}

/* The input size for the memory tests: 8 MiB, less where decode_mib says. */
static size_t mem_test_bytes(void)
{
    return decode_mib() << 20;
}

/* count scaled as mem_test_bytes is: count at 8 MiB, count / 8 at 1 MiB. */
static int scaled_count(int count)
{
    return (int)((size_t)count * decode_mib() / 8);
}

/* A pickle being built. */
struct pbuf {
    unsigned char *p;
    size_t len, cap;
};

static void pb_put(struct pbuf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void pb_op(struct pbuf *b, unsigned op)
{
    unsigned char c = (unsigned char)op;
    pb_put(b, &c, 1);
}

struct mem_report {
    int status;      /* what mp__pickle_loads returned */
    long growth_kib; /* ru_maxrss after minus before */
};

struct mem_child {
    const struct pbuf *b;
    int fd;
};

static int decode_and_report(void *arg)
{
    struct mem_child *c = arg;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    mp_obj *o = NULL;
    int rc = mp__pickle_loads(c->b->p, c->b->len, &o);
    getrusage(RUSAGE_SELF, &r1);
    mp_obj_free(o);
    struct mem_report rep;
    memset(&rep, 0, sizeof rep); /* no uninitialised padding on the wire */
    rep.status = rc;
    rep.growth_kib = r1.ru_maxrss - r0.ru_maxrss;
    return write(c->fd, &rep, sizeof rep) == (ssize_t)sizeof rep ? 0 : 1;
}

static struct mem_report decode_in_child(const struct pbuf *b)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    struct mem_child c = {b, fds[1]};
    pid_t pid = tu_fork(decode_and_report, &c);
    close(fds[1]);
    assert_int_equal(tu_wait_child(pid, 20.0 * slowdown()), 0);
    struct mem_report rep;
    assert_int_equal(read(fds[0], &rep, sizeof rep), (ssize_t)sizeof rep);
    close(fds[0]);
    return rep;
}

/* The child's peak RSS grew by at most per_byte bytes per input byte plus
 * 16 MiB (times mem_slack()). */
static void assert_peak_within(const char *what, struct mem_report r, size_t n, double per_byte)
{
    double bound = (per_byte * (double)n + (16 << 20)) * mem_slack();
    double grew = (double)r.growth_kib * 1024.0;
    if (grew > bound)
        fail_msg("%s: %zu input bytes grew the peak RSS by %.1f MiB, %.1f per byte (bound %.1f "
                 "MiB)",
                 what, n, grew / (1 << 20), grew / (double)n, bound / (1 << 20));
}

static void test_a_stack_of_none_costs_a_pointer_per_opcode(void **state)
{
    (void)state;
    /* 8 MiB of NONE and no STOP: refused at the end, but every NONE was on
     * the stack first. CPython holds a pointer per None (0.6 GB for 64
     * MiB); so must we, not a 48-byte node plus two pointers. */
    size_t n = mem_test_bytes();
    struct pbuf b = {0};
    pb_put(&b, "\x80\x04", 2);
    while (b.len < n)
        pb_op(&b, 'N');
    struct mem_report r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, MP_EPROTO);
    assert_peak_within("NONE on the stack", r, b.len, 16);
    free(b.p);
}

/* A list of count copies of the item pickle, in APPENDS batches of 1000 as
 * CPython writes it; item_len bytes each. */
static void list_of(struct pbuf *b, const void *item, size_t item_len, size_t total)
{
    pb_put(b, "\x80\x04]", 3);
    while (b->len + 1002 * item_len < total) {
        pb_op(b, '(');
        for (int i = 0; i < 1000; i++)
            pb_put(b, item, item_len);
        pb_op(b, 'e');
    }
    pb_op(b, '.');
}

static void test_a_list_of_none_costs_a_pointer_per_item(void **state)
{
    (void)state;
    size_t n = mem_test_bytes();
    struct pbuf b = {0};
    list_of(&b, "N", 1, n);
    struct mem_report r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, 0);
    assert_peak_within("a list of None", r, b.len, 16);
    free(b.p);
}

static void test_a_list_of_small_ints_costs_a_pointer_per_item(void **state)
{
    (void)state;
    /* BININT1 7: two bytes per item. Python caches -5..256; so do we. */
    size_t n = mem_test_bytes();
    struct pbuf b = {0};
    list_of(&b, "K\x07", 2, n);
    struct mem_report r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, 0);
    assert_peak_within("a list of small ints", r, b.len, 8);
    free(b.p);
}

static void test_memoizing_every_value_costs_a_slot_per_key(void **state)
{
    (void)state;
    /* NONE, then MEMOIZE over and over: one memo key per input byte, keys
     * 0, 1, 2... as CPython's pickler numbers them. */
    size_t n = mem_test_bytes();
    struct pbuf b = {0};
    pb_put(&b, "\x80\x04N", 3);
    while (b.len < n)
        pb_op(&b, 0x94);
    pb_op(&b, '.');
    struct mem_report r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, 0);
    assert_peak_within("MEMOIZE", r, b.len, 24);
    free(b.p);
}

static void test_empty_lists_stay_within_the_documented_bound(void **state)
{
    (void)state;
    /* The costliest opcode for its size: EMPTY_LIST makes a node from one
     * byte. MP__PICKLE_MEM_FACTOR bytes per input byte, plus malloc's 16
     * bytes per 48-byte node: on the bare stack, in a list as CPython
     * writes [[] for i in range(n)] (EMPTY_LIST MEMOIZE), and from a MARK
     * with LIST (protocol 0-1). */
    size_t n = mem_test_bytes() / 2;
    double bound = MP__PICKLE_MEM_FACTOR * 4.0 / 3.0;
    struct pbuf b = {0};
    pb_put(&b, "\x80\x04", 2);
    while (b.len < n)
        pb_op(&b, ']');
    struct mem_report r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, MP_EPROTO);
    assert_peak_within("EMPTY_LIST on the stack", r, b.len, bound);
    b.len = 0;
    list_of(&b, "]\x94", 2, n);
    r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, 0);
    assert_peak_within("a list of empty lists", r, b.len, bound);
    b.len = 0;
    pb_put(&b, "(", 1);
    while (b.len < n)
        pb_op(&b, ']');
    pb_put(&b, "l.", 2);
    r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, 0);
    assert_peak_within("LIST of empty lists", r, b.len, bound);
    free(b.p);
}

static void test_refuses_a_bytearray_rebuilt_beyond_the_memory_budget(void **state)
{
    (void)state;
    /* One memoized 1 MiB bytes object, made into a bytearray 512 times:
     * 7 bytes of input per MiB of output. Python would build all 512; the
     * decoder stops at its budget, MP__PICKLE_MEM_FACTOR bytes per input
     * byte, instead of taking 512 MiB. */
    struct pbuf b = {0};
    pb_put(&b,
           "\x80\x04\x8c\x08"
           "builtins\x8c\x09"
           "bytearray\x93\x94"
           "0",
           26);
    size_t big = (size_t)1 << 20;
    unsigned char hdr[5] = {'B', 0, 0, 0x10, 0}; /* BINBYTES 1 MiB */
    pb_put(&b, hdr, 5);
    unsigned char *zeros = calloc(1, big);
    assert_non_null(zeros);
    pb_put(&b, zeros, big);
    free(zeros);
    pb_put(&b,
           "\x94"
           "0",
           2);
    for (int i = 0; i < 512; i++)
        pb_put(&b, "h\x00h\x01\x85R0", 7);
    pb_put(&b, "N.", 2);
    struct mem_report r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, MP_EPROTO);
    assert_peak_within("bytearray copies", r, b.len, MP__PICKLE_MEM_FACTOR);
    /* the same with 8 copies is within the budget and decodes */
    b.len -= 512 * 7 + 2;
    for (int i = 0; i < 8; i++)
        pb_put(&b, "h\x00h\x01\x85R0", 7);
    pb_put(&b, "N.", 2);
    mp_obj *o = loads_ok(b.p, b.len);
    assert_true(mp_obj_is_none(o));
    free(b.p);
}

static void test_loads_the_costliest_legitimate_pickles_within_the_budget(void **state)
{
    (void)state;
    /* The budget is above what any real pickle needs: a million empty
     * lists, tuples or dicts built from a MARK (the most memory per input
     * byte), and empty APPENDS / SETITEMS, which Python accepts. (A million
     * and the 100,000s below at full size; scaled_count: at 1 MiB, 125,000
     * lists still take ten times the budget's 1 MiB floor.) */
    static const char *const kinds[] = {"]", ")", "}"};
    static const char closers[] = {'l', 't', 'l'};
    const int million = scaled_count(1000000), many = scaled_count(100000);
    for (int k = 0; k < 3; k++) {
        struct pbuf b = {0};
        pb_put(&b, "(", 1);
        for (int i = 0; i < million; i++)
            pb_put(&b, kinds[k], 1);
        pb_op(&b, (unsigned char)closers[k]);
        pb_op(&b, '.');
        mp_obj *o = loads_ok(b.p, b.len);
        assert_int_equal(mp_obj_len(o), million);
        mp_obj_free(o);
        free(b.p);
    }
    assert_loads_repr(P("\x80\x04](e."), "[]");
    assert_loads_repr(P("\x80\x04}(u."), "{}");
    assert_loads_repr(P("\x80\x04](NNe."), "[None, None]");
    /* Small dicts, the costliest values with contents: what our encoder
     * writes for [{None: None}] * n (4 bytes a dict) and what CPython's
     * pickle.dumps([{None: None} for _ in range(n)]) writes (MEMOIZE after
     * each EMPTY_DICT), and one-item dicts of small ints. */
    static const char *const dicts[] = {"}NNs", "}\x94NNs", "}K\x01K\x02s"};
    static const size_t dict_len[] = {4, 5, 6};
    for (int k = 0; k < 3; k++) {
        struct pbuf b = {0};
        pb_put(&b, "\x80\x04](", 4);
        for (int i = 0; i < many; i++)
            pb_put(&b, dicts[k], dict_len[k]);
        pb_put(&b, "e.", 2);
        mp_obj *o = loads_ok(b.p, b.len);
        assert_int_equal(mp_obj_len(o), many);
        assert_int_equal(mp_obj_len(mp_obj_list_get(o, (ssize_t)many - 1)), 1);
        mp_obj_free(o);
        free(b.p);
    }
    /* ... and the encoder's own output round-trips. */
    mp_obj *l = mp_obj_list_new();
    for (int i = 0; i < many; i++) {
        mp_obj *d = mp_obj_dict_new();
        assert_int_equal(mp_obj_dict_set(d, mp_obj_none(), mp_obj_none()), 0);
        assert_int_equal(mp_obj_list_append(l, d), 0);
    }
    unsigned char *p;
    size_t n;
    assert_int_equal(mp__pickle_dumps(l, &p, &n), 0);
    mp_obj *back = loads_ok(p, n);
    assert_true(mp_obj_equal(back, l));
    mp_obj_free(back);
    mp_obj_free(l);
    free(p);
}

/* A dict of count NaN keys: {nan: 0, nan: 1, ...}, each NaN its own
 * BINFLOAT (the same bits every time), as CPython pickles
 * {float('nan'): i for i in range(count)}. */
static void nan_dict(struct pbuf *b, size_t count)
{
    pb_put(b, "\x80\x04}", 3);
    for (size_t i = 0; i < count; i += 1000) {
        pb_op(b, '(');
        for (size_t j = i; j < count && j < i + 1000; j++) {
            pb_put(b, "G\x7f\xf8\x00\x00\x00\x00\x00\x00", 9);
            unsigned char v[5] = {'J', (unsigned char)j, (unsigned char)(j >> 8),
                                  (unsigned char)(j >> 16), 0};
            pb_put(b, v, 5);
        }
        pb_op(b, 'u');
    }
    pb_op(b, '.');
}

static void test_a_memoized_nan_is_one_object_as_in_python(void **state)
{
    (void)state;
    /* One NaN object used twice through the memo. Python: the same key
     * twice ({nan: 2}), and in a list two references to one object, which
     * are one dict key and make [l[0]] == [l[1]] true. Our copies keep the
     * NaN's identity, so they behave the same. */
    assert_loads_repr(P("\x80\x04}(G\x7f\xf8\x00\x00\x00\x00\x00\x00\x94K\x01h\x00K\x02u."),
                      "{nan: 2}");
    mp_obj *l = loads_ok(P("\x80\x04(G\x7f\xf8\x00\x00\x00\x00\x00\x00\x94h\x00l."));
    const mp_obj *a = mp_obj_list_get(l, 0), *b = mp_obj_list_get(l, 1);
    assert_true(a != b);              /* two nodes: a value is a tree */
    assert_false(mp_obj_equal(a, b)); /* nan == nan is False in Python too */
    mp_obj *d = mp_obj_dict_new(), *la = mp_obj_list_new(), *lb = mp_obj_list_new();
    TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_copy(a), mp_obj_int(1)), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_copy(b), mp_obj_int(2)), 0);
    assert_int_equal(mp_obj_len(d), 1);
    TU_ASSERT_STATUS(mp_obj_list_append(la, mp_obj_copy(a)), 0);
    TU_ASSERT_STATUS(mp_obj_list_append(lb, mp_obj_copy(b)), 0);
    assert_true(mp_obj_equal(la, lb));
    /* two NaNs the pickle made separately are two objects */
    mp_obj *m = loads_ok(
        P("\x80\x04(G\x7f\xf8\x00\x00\x00\x00\x00\x00G\x7f\xf8\x00\x00\x00\x00\x00\x00l."));
    TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_copy(mp_obj_list_get(m, 0)), mp_obj_int(3)), 0);
    TU_ASSERT_STATUS(mp_obj_dict_set(d, mp_obj_copy(mp_obj_list_get(m, 1)), mp_obj_int(4)), 0);
    assert_int_equal(mp_obj_len(d), 3);
    mp_obj_free(m);
    mp_obj_free(la);
    mp_obj_free(lb);
    mp_obj_free(d);
    mp_obj_free(l);
}

static void test_a_dict_of_100000_nan_keys_decodes_in_linear_time(void **state)
{
    (void)state;
    /* NaN never equals NaN, so each is a key of its own; hashed by their
     * (equal) bits they would all probe one cluster. Python hashes a NaN
     * by identity: 0.024 s for 40,000. */
    struct pbuf b = {0};
    nan_dict(&b, 100000);
    double t0 = tu_now();
    mp_obj *o = loads_ok(b.p, b.len);
    double took = tu_now() - t0;
    assert_int_equal(mp_obj_len(o), 100000);
    if (took > 1.0 * slowdown())
        fail_msg("100,000 NaN keys took %.2f s to decode", took);
    mp_obj_free(o);
    free(b.p);
}

/* ---- Sets ------------------------------------------------------------------ */

static void test_a_huge_additems_of_distinct_ints_stays_within_the_memory_bound(void **state)
{
    (void)state;
    /* One ADDITEMS of distinct BININTs, 5 input bytes each: a 48-byte node
     * and up to 4 table entries of 40 bytes per item, charged before each
     * growth as a dict's are. It decodes, within the bound. */
    struct pbuf b = {0};
    pb_put(&b, "\x80\x04\x8f(", 4);
    size_t items = mem_test_bytes() / 5;
    for (size_t i = 0; i < items; i++) {
        uint32_t v = (uint32_t)(100000 + i);
        unsigned char op[5] = {'J', (unsigned char)v, (unsigned char)(v >> 8),
                               (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
        pb_put(&b, op, 5);
    }
    pb_put(&b, "\x90.", 2);
    struct mem_report r = decode_in_child(&b);
    TU_ASSERT_STATUS(r.status, 0);
    assert_peak_within("ADDITEMS of distinct ints", r, b.len, MP__PICKLE_MEM_FACTOR);
    free(b.p);
}

static void test_a_million_duplicate_set_items_cost_a_lookup_each(void **state)
{
    (void)state;
    /* A memoized 64 KiB str added a million times (BINGET, 2 bytes each):
     * Python's set keeps one item; so do we, and each duplicate is found by
     * identity, not by comparing 64 KiB. Then the same with equal but
     * distinct strs, whose comparisons the input itself pays for. */
    struct pbuf b = {0};
    size_t big = 64 << 10;
    pb_put(&b, "\x80\x04X", 3);
    unsigned char len4[4] = {0, 0, 1, 0}; /* 65536 */
    pb_put(&b, len4, 4);
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, 'a', big);
    pb_put(&b, text, big);
    pb_put(&b,
           "\x94"
           "0\x8f(",
           4); /* MEMOIZE (key 0), POP, EMPTY_SET, MARK */
    for (int i = 0; i < 1000000; i++)
        pb_put(&b, "h\x00", 2);
    pb_put(&b, "\x90.", 2);
    double t0 = tu_now();
    mp_obj *o = loads_ok(b.p, b.len);
    double took = tu_now() - t0;
    assert_int_equal(mp_obj_type(o), MP_TYPE_SET);
    assert_int_equal(mp_obj_len(o), 1);
    if (took > 2.0 * slowdown())
        fail_msg("a million duplicates took %.2f s", took);
    mp_obj_free(o);
    /* 200 equal, distinct 64 KiB strs: 13 MB of input, compared once each */
    struct pbuf c = {0};
    pb_put(&c, "\x80\x04\x8f(", 4);
    for (int i = 0; i < 200; i++) {
        pb_put(&c, "X", 1);
        pb_put(&c, len4, 4);
        pb_put(&c, text, big);
    }
    pb_put(&c, "\x90.", 2);
    o = loads_ok(c.p, c.len);
    assert_int_equal(mp_obj_len(o), 1);
    mp_obj_free(o);
    free(c.p);
    free(text);
    free(b.p);
}

/* F0 = frozenset({0}); F(k+1) = frozenset({(Fk, 1), (Fk, 2)}), each level
 * memoized and referenced twice: 2**levels nodes as a tree. */
static void nested_frozensets(struct pbuf *b, int levels)
{
    b->len = 0;
    pb_put(b,
           "\x80\x04(K\x00\x91\x94"
           "0",
           8); /* F0 in memo 0, popped */
    for (int k = 0; k < levels; k++) {
        unsigned char key = (unsigned char)k;
        unsigned char lvl[] = {'(', 'h', key, 'K',  1,    0x86, 'h',
                               key, 'K', 2,   0x86, 0x91, 0x94, '0'};
        pb_put(b, lvl, sizeof lvl);
    }
    unsigned char last[] = {'h', (unsigned char)levels, '.'};
    pb_put(b, last, sizeof last);
}

static void test_frozensets_shared_level_after_level_hash_once_and_copy_within_budget(void **state)
{
    (void)state;
    /* Hashing (Fk, 1) hashes Fk: were a frozenset's hash not kept, each
     * level would hash the one below twice, 2**levels work. Placing makes
     * the copies Python's sharing stands for: 12 levels fit the work
     * budget; 60 would be 2**60 nodes, refused at the budget, quickly. */
    struct pbuf b = {0};
    nested_frozensets(&b, 12);
    mp_obj *o = loads_ok(b.p, b.len);
    assert_int_equal(mp_obj_type(o), MP_TYPE_FROZENSET);
    assert_int_equal(mp_obj_len(o), 2);
    mp_obj_free(o);
    nested_frozensets(&b, 60);
    double t0 = tu_now();
    assert_refused(b.p, b.len);
    double took = tu_now() - t0;
    if (took > 5.0 * slowdown())
        fail_msg("refusing 60 levels took %.2f s", took);
    free(b.p);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_stack_of_none_costs_a_pointer_per_opcode),
        cmocka_unit_test(test_a_list_of_none_costs_a_pointer_per_item),
        cmocka_unit_test(test_a_list_of_small_ints_costs_a_pointer_per_item),
        cmocka_unit_test(test_memoizing_every_value_costs_a_slot_per_key),
        cmocka_unit_test(test_empty_lists_stay_within_the_documented_bound),
        cmocka_unit_test(test_refuses_a_bytearray_rebuilt_beyond_the_memory_budget),
        cmocka_unit_test(test_loads_the_costliest_legitimate_pickles_within_the_budget),
        cmocka_unit_test(test_a_memoized_nan_is_one_object_as_in_python),
        cmocka_unit_test(test_a_dict_of_100000_nan_keys_decodes_in_linear_time),
        cmocka_unit_test(test_a_huge_additems_of_distinct_ints_stays_within_the_memory_bound),
        cmocka_unit_test(test_a_million_duplicate_set_items_cost_a_lookup_each),
        cmocka_unit_test(test_frozensets_shared_level_after_level_hash_once_and_copy_within_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
