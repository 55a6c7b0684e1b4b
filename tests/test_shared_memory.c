/* Tests of mp_shared_memory (Python's SharedMemory), the resource tracker
 * and the SharedMemoryManager: names, sizes, errors as Python raises them,
 * real python3 on the other side both ways, forked processes, and nothing
 * left in /dev/shm. The test process itself never tracks (so it starts no
 * tracker and its descriptor count stays put); tracking is tested in forked
 * children, each with a tracker of its own. */
/* MAP_ANONYMOUS is POSIX.1-2024, not 2008: glibc shows it with _DEFAULT_SOURCE. */
#define _DEFAULT_SOURCE
#include "shm_testutil.h"

#include <mpipc/error.h>
#include <mpipc/obj.h>
#include <mpipc/shared_memory.h>

#include <pthread.h>
#include <regex.h>
#include <sys/mman.h>

static const mp_shared_memory_opts untracked = {.track = false};

/* ---- names, sizes, errors ----------------------------------------------- */

/* Python's SharedMemory(create=True, size=n): a "psm_" + 8 hex digits name,
 * reported without the slash, a zero-filled block of n bytes at
 * /dev/shm/<name>. */
static void test_shm_create_generates_a_python_style_name(void **state)
{
    (void)state;
    mp_shared_memory *shm;
    TU_ASSERT_STATUS(mp_shared_memory_create(&shm, NULL, 1000, &untracked), 0);
    const char *name = mp_shared_memory_name(shm);
    shmt_note(name);
    regex_t re;
    assert_int_equal(regcomp(&re, "^psm_[0-9a-f]{8}$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regexec(&re, name, 0, NULL, 0), 0);
    regfree(&re);
    assert_int_equal(mp_shared_memory_size(shm), 1000);
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 1000);
    assert_int_equal(st.st_mode & 0777, 0600);
    const unsigned char *b = mp_shared_memory_buf(shm);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(b[i], 0);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), 0);
    assert_false(shmt_exists(name));
    mp_shared_memory_free(shm);
}

/* Python: SharedMemory("nope") raises FileNotFoundError. */
static void test_shm_attach_missing_name_is_enoent(void **state)
{
    (void)state;
    char name[64];
    shmt_name(name, sizeof name, "missing");
    mp_shared_memory *shm = (mp_shared_memory *)1;
    TU_ASSERT_STATUS(mp_shared_memory_attach(&shm, name, &untracked), -ENOENT);
    assert_null(shm);
    assert_non_null(strstr(mp_errmsg(-ENOENT), name));
}

/* Python: SharedMemory(name, create=True) on an existing name raises
 * FileExistsError, and the existing block keeps its contents. */
static void test_shm_create_existing_name_is_eexist_and_keeps_the_block(void **state)
{
    (void)state;
    char name[64];
    shmt_name(name, sizeof name, "exists");
    mp_shared_memory *a, *b = (mp_shared_memory *)1;
    TU_ASSERT_STATUS(mp_shared_memory_create(&a, name, 64, &untracked), 0);
    memcpy(mp_shared_memory_buf(a), "kept", 4);
    TU_ASSERT_STATUS(mp_shared_memory_create(&b, name, 128, &untracked), -EEXIST);
    assert_null(b);
    TU_ASSERT_STATUS(mp_shared_memory_attach(&b, name, &untracked), 0);
    assert_int_equal(mp_shared_memory_size(b), 64);
    assert_memory_equal(mp_shared_memory_buf(b), "kept", 4);
    mp_shared_memory_free(b);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(a), 0);
    mp_shared_memory_free(a);
}

/* Python: create=True with size 0 raises ValueError with these words, and
 * nothing is created. */
static void test_shm_create_size_zero_is_evalue(void **state)
{
    (void)state;
    char name[64];
    shmt_name(name, sizeof name, "zero");
    mp_shared_memory *shm = (mp_shared_memory *)1;
    TU_ASSERT_STATUS(mp_shared_memory_create(&shm, name, 0, &untracked), MP_EVALUE);
    assert_null(shm);
    assert_string_equal(mp_errmsg(MP_EVALUE),
                        "'size' must be a positive number different from zero");
    assert_false(shmt_exists(name));
}

/* Python takes an attached block's size from fstat, not from the caller. */
static void test_shm_attach_reports_the_objects_real_size(void **state)
{
    (void)state;
    char name[64];
    shmt_name(name, sizeof name, "size");
    mp_shared_memory *a, *b;
    TU_ASSERT_STATUS(mp_shared_memory_create(&a, name, 12345, &untracked), 0);
    TU_ASSERT_STATUS(mp_shared_memory_attach(&b, name, &untracked), 0);
    assert_int_equal(mp_shared_memory_size(b), 12345);
    assert_string_equal(mp_shared_memory_name(b), name);
    ((char *)mp_shared_memory_buf(a))[12344] = 'z';
    assert_int_equal(((char *)mp_shared_memory_buf(b))[12344], 'z');
    mp_shared_memory_free(b);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(a), 0);
    mp_shared_memory_free(a);
}

/* Python allows unlink after close; a second unlink is FileNotFoundError;
 * close twice is harmless and leaves no buffer. */
static void test_shm_close_then_unlink_then_unlink_again_is_enoent(void **state)
{
    (void)state;
    mp_shared_memory *shm;
    TU_ASSERT_STATUS(mp_shared_memory_create(&shm, NULL, 10, &untracked), 0);
    shmt_note(mp_shared_memory_name(shm));
    TU_ASSERT_STATUS(mp_shared_memory_close(shm), 0);
    TU_ASSERT_STATUS(mp_shared_memory_close(shm), 0);
    assert_null(mp_shared_memory_buf(shm));
    TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), 0);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), -ENOENT);
    mp_shared_memory_free(shm);
}

/* Bad input gets a named error and changes nothing. */
static void test_shm_bad_arguments_are_refused(void **state)
{
    (void)state;
    mp_shared_memory *shm = (mp_shared_memory *)1;
    TU_ASSERT_STATUS(mp_shared_memory_create(NULL, NULL, 10, NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_shared_memory_attach(&shm, NULL, &untracked), -EINVAL);
    assert_null(shm);
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    TU_ASSERT_STATUS(mp_shared_memory_create(&shm, longname, 10, &untracked), -EINVAL);
    TU_ASSERT_STATUS(mp_shared_memory_create(&shm, "a/b", 10, &untracked), -EINVAL);
    TU_ASSERT_STATUS(mp_shared_memory_close(NULL), -EINVAL);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(NULL), -EINVAL);
    assert_null(mp_shared_memory_name(NULL));
    assert_int_equal(mp_shared_memory_size(NULL), 0);
    mp_shared_memory_free(NULL);
}

/* ---- across fork -------------------------------------------------------- */

static int child_attach_and_write(void *arg)
{
    mp_shared_memory *shm;
    if (mp_shared_memory_attach(&shm, arg, &untracked) < 0)
        return 10;
    if (mp_shared_memory_size(shm) != 4096)
        return 11;
    unsigned char *b = mp_shared_memory_buf(shm);
    if (b[0] != 0xAB)
        return 12;
    for (int i = 1; i < 4096; i++)
        b[i] = (unsigned char)i;
    mp_shared_memory_free(shm);
    return 0;
}

/* A child that attaches by name writes what the parent reads; a child
 * writing through the mapping it inherited does too. */
static void test_shm_forked_child_writes_what_the_parent_reads(void **state)
{
    (void)state;
    mp_shared_memory *shm;
    TU_ASSERT_STATUS(mp_shared_memory_create(&shm, NULL, 4096, &untracked), 0);
    shmt_note(mp_shared_memory_name(shm));
    unsigned char *b = mp_shared_memory_buf(shm);
    b[0] = 0xAB;
    char name[MP_SHARED_MEMORY_NAME_MAX + 1];
    strcpy(name, mp_shared_memory_name(shm));
    assert_int_equal(tu_wait_child(tu_fork(child_attach_and_write, name), SHMT_TIMEOUT), 0);
    for (int i = 1; i < 4096; i++)
        assert_int_equal(b[i], (unsigned char)i);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), 0);
    mp_shared_memory_free(shm);
}

/* ---- with real python3 -------------------------------------------------- */

static const char py_creates[] =
    SHMT_PY_PRELUDE "shm = shared_memory.SharedMemory(create=True, size=int(sys.argv[1]))\n"
                    "shm.buf[:5] = b'hello'\n"
                    "print(shm.name, flush=True)\n"
                    "sys.stdin.readline()\n"
                    "got = bytes(shm.buf[5:10]), shm.buf[-1]\n"
                    "shm.close(); shm.unlink()\n"
                    "print('ok' if got == (b'world', 0x5A) else 'bad %r' % (got,), flush=True)\n";

/* Python creates a block; C attaches by the name Python reports, reads
 * Python's bytes, writes and closes; Python sees C's writes. */
static void test_shm_python_creates_c_attaches_and_writes(void **state)
{
    (void)state;
    const char *interp;
    for (size_t pyi = 0; (interp = tu_python_at(pyi)) != NULL; pyi++) {
        struct shmt_py py;
        const char *args[] = {"10000", NULL};
        shmt_py_start(&py, interp, py_creates, args);
        char name[300], line[300];
        shmt_py_line(&py, name, sizeof name);
        shmt_note(name);
        mp_shared_memory *shm;
        TU_ASSERT_STATUS(mp_shared_memory_attach(&shm, name, &untracked), 0);
        assert_int_equal(mp_shared_memory_size(shm), 10000);
        unsigned char *b = mp_shared_memory_buf(shm);
        assert_memory_equal(b, "hello", 5);
        memcpy(b + 5, "world", 5);
        b[9999] = 0x5A;
        TU_ASSERT_STATUS(mp_shared_memory_close(shm), 0);
        mp_shared_memory_free(shm);
        shmt_py_say(&py, "done");
        shmt_py_line(&py, line, sizeof line);
        assert_string_equal(line, "ok");
        assert_int_equal(shmt_py_finish(&py), 0);
        assert_false(shmt_exists(name));
    }
}

static const char py_attaches[] =
    SHMT_PY_PRELUDE "shm = shared_memory.SharedMemory(name=sys.argv[1])\n"
                    "untrack(shm)\n"
                    "ok = shm.size == int(sys.argv[2]) and bytes(shm.buf[:6]) == b'from C'\n"
                    "shm.buf[6:17] = b' and Python'\n"
                    "shm.close()\n"
                    "print('ok' if ok else 'bad size %d' % shm.size, flush=True)\n";

/* C creates a block; Python attaches by name, reads C's bytes, writes and
 * closes; C sees Python's writes. */
static void test_shm_c_creates_python_attaches_and_writes(void **state)
{
    (void)state;
    const char *interp;
    for (size_t pyi = 0; (interp = tu_python_at(pyi)) != NULL; pyi++) {
        mp_shared_memory *shm;
        TU_ASSERT_STATUS(mp_shared_memory_create(&shm, NULL, 777, &untracked), 0);
        shmt_note(mp_shared_memory_name(shm));
        memcpy(mp_shared_memory_buf(shm), "from C", 6);
        struct shmt_py py;
        const char *args[] = {mp_shared_memory_name(shm), "777", NULL};
        shmt_py_start(&py, interp, py_attaches, args);
        char line[300];
        shmt_py_line(&py, line, sizeof line);
        assert_string_equal(line, "ok");
        assert_int_equal(shmt_py_finish(&py), 0);
        assert_memory_equal(mp_shared_memory_buf(shm), "from C and Python", 17);
        TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), 0);
        mp_shared_memory_free(shm);
    }
}

/* ---- the resource tracker ----------------------------------------------- */

struct kill_case {
    char name[64];
    int report[2]; /* the creator writes 'c' once the block exists */
};

static int grandchild_waits(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

/* The creator: make a tracked block, start a grandchild (which shares the
 * tracker), tell the test both, then wait to be killed. */
static int child_creates_tracked_then_waits(void *arg)
{
    struct kill_case *kc = arg;
    mp_shared_memory *shm;
    if (mp_shared_memory_create(&shm, kc->name, 100, NULL) < 0)
        return 10;
    pid_t g = tu_fork(grandchild_waits, NULL);
    if (write(kc->report[1], &g, sizeof g) != sizeof g)
        return 11;
    for (;;)
        pause();
    return 0;
}

/* Python's resource tracker: a tracked block whose creator is SIGKILLed
 * (no unlink, no exit procedure) is unlinked once the creator's process
 * tree is gone - not before, while a child that inherited the tracker
 * still runs. */
static void test_shm_tracker_unlinks_after_the_creators_tree_is_sigkilled(void **state)
{
    (void)state;
    struct kill_case kc;
    shmt_name(kc.name, sizeof kc.name, "kill");
    assert_int_equal(pipe(kc.report), 0);
    pid_t c = tu_fork(child_creates_tracked_then_waits, &kc);
    close(kc.report[1]);
    pid_t g = 0;
    struct pollfd pfd = {kc.report[0], POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, (int)(SHMT_TIMEOUT * 1000)), 1);
    assert_int_equal(read(kc.report[0], &g, sizeof g), sizeof g);
    close(kc.report[0]);
    assert_true(shmt_exists(kc.name));

    assert_int_equal(kill(c, SIGKILL), 0);
    assert_int_equal(tu_wait_child(c, SHMT_TIMEOUT), -SIGKILL);
    tu_sleep(0.3);
    assert_true(shmt_exists(kc.name)); /* the grandchild could still unlink it */

    assert_int_equal(kill(g, SIGKILL), 0);
    assert_true(shmt_gone_within(kc.name, SHMT_TIMEOUT));
}

struct forget_case {
    char kept[64], tracked[64];
};

/* Unlink a tracked block, make an untracked one under the same name, and
 * leave a second tracked block behind; then end normally. */
static int child_unlinks_one_and_leaves_one(void *arg)
{
    struct forget_case *fc = arg;
    mp_shared_memory *a, *b, *c;
    if (mp_shared_memory_create(&a, fc->kept, 10, NULL) < 0)
        return 10;
    if (mp_shared_memory_unlink(a) < 0)
        return 11;
    mp_shared_memory_free(a);
    if (mp_shared_memory_create(&b, fc->kept, 10, &untracked) < 0)
        return 12;
    mp_shared_memory_free(b);
    if (mp_shared_memory_create(&c, fc->tracked, 10, NULL) < 0)
        return 13;
    mp_shared_memory_free(c);
    return 0;
}

/* Python's unlink() unregisters: the tracker unlinks what was left
 * registered at the end, and not a name that was unlinked (here made again
 * by someone else). */
static void test_shm_tracker_forgets_a_block_once_it_is_unlinked(void **state)
{
    (void)state;
    struct forget_case fc;
    shmt_name(fc.kept, sizeof fc.kept, "kept");
    shmt_name(fc.tracked, sizeof fc.tracked, "tracked");
    assert_int_equal(tu_wait_child(tu_fork(child_unlinks_one_and_leaves_one, &fc), SHMT_TIMEOUT),
                     0);
    assert_true(shmt_gone_within(fc.tracked, SHMT_TIMEOUT));
    assert_true(shmt_exists(fc.kept));
    mp_shared_memory *shm;
    TU_ASSERT_STATUS(mp_shared_memory_attach(&shm, fc.kept, &untracked), 0);
    TU_ASSERT_STATUS(mp_shared_memory_unlink(shm), 0);
    mp_shared_memory_free(shm);
}

/* The tracker's start: a second call starts nothing (one more descriptor
 * in all), and the tracker holds none of the starter's descriptors: a pipe
 * the starter opened before sees end of file once the starter closes its
 * writer. */
static int child_starts_tracker_twice(void *arg)
{
    (void)arg;
    int p[2];
    if (pipe(p) < 0)
        return 10;
    int before = tu_count_fds();
    if (mp_resource_tracker_ensure_running() < 0 || mp_resource_tracker_ensure_running() < 0)
        return 11;
    if (tu_count_fds() != before + 1)
        return 12;
    close(p[1]);
    struct pollfd pfd = {p[0], POLLIN, 0};
    char c;
    if (poll(&pfd, 1, 10000) != 1 || read(p[0], &c, 1) != 0)
        return 13; /* someone else still holds the writer */
    return 0;
}

static void test_shm_tracker_starts_once_and_holds_no_descriptor_of_ours(void **state)
{
    (void)state;
    assert_int_equal(tu_wait_child(tu_fork(child_starts_tracker_twice, NULL), SHMT_TIMEOUT), 0);
}

/* Threads of one process creating tracked blocks at once: each create
 * registers whole (one line per write), and the tracker unlinks all of
 * them when the process ends. */
#define THREADS    4
#define PER_THREAD 8

struct thread_case {
    char names[THREADS * PER_THREAD][64];
    int failures;
};

struct thread_arg {
    struct thread_case *tc;
    int t;
};

static void *thread_creates(void *arg)
{
    struct thread_arg *ta = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        mp_shared_memory *shm;
        if (mp_shared_memory_create(&shm, ta->tc->names[ta->t * PER_THREAD + i], 64, NULL) < 0)
            __atomic_add_fetch(&ta->tc->failures, 1, __ATOMIC_RELAXED);
        else
            mp_shared_memory_free(shm);
    }
    return NULL;
}

static int child_creates_from_threads(void *arg)
{
    struct thread_case *tc = arg;
    pthread_t th[THREADS];
    struct thread_arg ta[THREADS];
    for (int t = 0; t < THREADS; t++) {
        ta[t] = (struct thread_arg){tc, t};
        if (pthread_create(&th[t], NULL, thread_creates, &ta[t]) != 0)
            return 10;
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    return tc->failures ? 11 : 0;
}

static void test_shm_tracker_unlinks_blocks_made_by_many_threads(void **state)
{
    (void)state;
    struct thread_case tc = {0};
    for (int i = 0; i < THREADS * PER_THREAD; i++)
        shmt_name(tc.names[i], sizeof tc.names[i], "thr");
    assert_int_equal(tu_wait_child(tu_fork(child_creates_from_threads, &tc), SHMT_TIMEOUT), 0);
    for (int i = 0; i < THREADS * PER_THREAD; i++)
        assert_true(shmt_gone_within(tc.names[i], SHMT_TIMEOUT));
}

/* ---- SharedMemoryManager ------------------------------------------------ */

/* The names made through the manager, in memory the test shares. */
struct smm_case {
    mp_shared_memory_manager *smm;
    char (*names)[MP_SHARED_MEMORY_NAME_MAX + 1]; /* 4 names, shared */
};

static int grandchild_makes_through_manager(void *arg)
{
    struct smm_case *sc = arg;
    mp_shared_memory *shm;
    if (mp_shared_memory_manager_create(sc->smm, 50, &shm) < 0)
        return 20;
    strcpy(sc->names[2], mp_shared_memory_name(shm));
    mp_shared_memory_free(shm);
    mp_obj *seq = mp_obj_list_new();
    mp_obj_list_append(seq, mp_obj_int(7));
    mp_shareable_list *l;
    if (mp_shared_memory_manager_shareable_list(sc->smm, seq, &l) < 0)
        return 21;
    mp_obj_free(seq);
    strcpy(sc->names[3], mp_shared_memory_name(mp_shareable_list_shm(l)));
    mp_shareable_list_free(l);
    /* Only the manager's own process shuts it down, as in Python. */
    if (mp_shared_memory_manager_shutdown(sc->smm) != MP_ESTATE)
        return 22;
    return 0;
}

static int child_runs_a_manager(void *arg)
{
    struct smm_case *sc = arg;
    if (mp_shared_memory_manager_new(&sc->smm) < 0)
        return 10;
    mp_shared_memory *a, *b;
    if (mp_shared_memory_manager_create(sc->smm, 100, &a) < 0 ||
        mp_shared_memory_manager_create(sc->smm, 200, &b) < 0)
        return 11;
    strcpy(sc->names[0], mp_shared_memory_name(a));
    strcpy(sc->names[1], mp_shared_memory_name(b));
    if (mp_shared_memory_unlink(b) < 0) /* unlinking early is allowed */
        return 12;
    int rc = tu_wait_child(tu_fork(grandchild_makes_through_manager, sc), SHMT_TIMEOUT);
    if (rc != 0)
        return rc;
    for (int i = 0; i < 4; i++)
        if (i != 1 && !shmt_exists(sc->names[i]))
            return 30 + i;
    if (mp_shared_memory_manager_shutdown(sc->smm) < 0)
        return 13;
    for (int i = 0; i < 4; i++)
        if (shmt_exists(sc->names[i]))
            return 40 + i;
    mp_shared_memory *c = NULL;
    if (mp_shared_memory_manager_create(sc->smm, 10, &c) != MP_ESTATE || c)
        return 14;
    mp_shared_memory_free(a);
    mp_shared_memory_free(b);
    mp_shared_memory_manager_free(sc->smm);
    return 0;
}

/* Python's SharedMemoryManager: every block made through it - here by the
 * manager's process and by a child forked later - is unlinked at shutdown;
 * later creates are refused. */
static void test_shm_manager_shutdown_unlinks_every_block_made_through_it(void **state)
{
    (void)state;
    struct smm_case sc = {0};
    sc.names =
        mmap(NULL, 4 * sizeof *sc.names, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sc.names != MAP_FAILED);
    memset(sc.names, 0, 4 * sizeof *sc.names);
    assert_int_equal(tu_wait_child(tu_fork(child_runs_a_manager, &sc), SHMT_TIMEOUT), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(sc.names[i][0] != '\0');
        shmt_note(sc.names[i]);
        assert_false(shmt_exists(sc.names[i]));
    }
    munmap(sc.names, 4 * sizeof *sc.names);
}

int main(int argc, char **argv)
{
    tu_filter(argc, argv);
    const struct CMUnitTest tests[] = {
        TU_TEST(test_shm_create_generates_a_python_style_name),
        TU_TEST(test_shm_attach_missing_name_is_enoent),
        TU_TEST(test_shm_create_existing_name_is_eexist_and_keeps_the_block),
        TU_TEST(test_shm_create_size_zero_is_evalue),
        TU_TEST(test_shm_attach_reports_the_objects_real_size),
        TU_TEST(test_shm_close_then_unlink_then_unlink_again_is_enoent),
        TU_TEST(test_shm_bad_arguments_are_refused),
        TU_TEST(test_shm_forked_child_writes_what_the_parent_reads),
        TU_TEST(test_shm_python_creates_c_attaches_and_writes),
        TU_TEST(test_shm_c_creates_python_attaches_and_writes),
        TU_TEST(test_shm_tracker_unlinks_after_the_creators_tree_is_sigkilled),
        TU_TEST(test_shm_tracker_forgets_a_block_once_it_is_unlinked),
        TU_TEST(test_shm_tracker_starts_once_and_holds_no_descriptor_of_ours),
        TU_TEST(test_shm_tracker_unlinks_blocks_made_by_many_threads),
        TU_TEST(test_shm_manager_shutdown_unlinks_every_block_made_through_it),
    };
    return cmocka_run_group_tests(tests, shmt_group_setup, shmt_group_teardown);
}
