/*
 * Helpers shared by the test binaries.
 *
 * Rules the helpers make easy to follow:
 *   - a forked child never calls a cmocka assert: it reports through its exit
 *     status (tu_fork) and the parent asserts;
 *   - every wait has a deadline: tu_wait_child kills a child that overstays,
 *     so a bug fails the test instead of hanging CI;
 *   - tu_fd_setup/tu_fd_teardown check that a test leaves no descriptor open.
 */
#ifndef MPIPC_TESTUTIL_H
#define MPIPC_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <sys/types.h>

/* Returned by tu_wait_child when the child had to be killed at the deadline. */
#define TU_TIMEOUT (-10000)

/* Seconds on CLOCK_MONOTONIC. */
double tu_now(void);

/* Sleep for seconds (EINTR-safe). */
void tu_sleep(double seconds);

/* A forked test child is killed by SIGALRM after this many seconds, so a
 * child whose parent failed an assert never outlives the test run. */
#define TU_CHILD_LIFETIME 60

/* Fork a child that runs fn(arg) and leaves with _exit(fn's result & 0xff).
 * Returns the child's pid (the test fails if fork fails). */
pid_t tu_fork(int (*fn)(void *arg), void *arg);

/* Wait up to timeout seconds for the child: returns its exit status (0..255),
 * -signum if a signal killed it, or TU_TIMEOUT after killing and reaping it. */
int tu_wait_child(pid_t pid, double timeout);

/* Returned by tu_poll_child while the child is still running. */
#define TU_RUNNING (-10001)

/* Reap the child if it has ended: its status as for tu_wait_child, or
 * TU_RUNNING without waiting. */
int tu_poll_child(pid_t pid);

/*
 * Start `python3 -c script arg...` (args: a NULL-terminated list) as a child.
 * The descriptors in keep (an array of nkeep, may be NULL) stay open across
 * the exec, so the script can use them by number; everything else the test
 * opened is close-on-exec or closed by Python. Returns the child's pid; wait
 * for it with tu_wait_child. The child carries the same watchdog as tu_fork.
 */
pid_t tu_spawn_python(const char *script, const char *const *args, const int *keep, int nkeep);

/* tu_spawn_python under the interpreter python: a path, or a name looked up
 * in PATH ("python3"). */
pid_t tu_spawn_python_as(const char *python, const char *script, const char *const *args,
                         const int *keep, int nkeep);

/* Most interpreters tu_pythons lists. */
#define TU_MAX_PYTHONS 8

/*
 * The interpreters an interop test runs its Python side under, one way for
 * every test: "python3" from PATH first, then each CPython 3.12 or later
 * that pyenv holds ($PYENV_ROOT, else $HOME/.pyenv, else /root/.pyenv:
 * versions/X.Y.Z/bin/pythonX.Y, executable), oldest first, one per X.Y.
 * MPIPC_TEST_PYTHONS (paths separated by ':') replaces the whole list.
 * Fills out[0..TU_MAX_PYTHONS) with strings that live as long as the
 * process and returns how many (at least 1). Tests that are not about
 * interop keep to "python3" alone, so the suite's run time stays sane.
 */
size_t tu_pythons(const char *out[TU_MAX_PYTHONS]);

/* The i-th interpreter of tu_pythons, or NULL past the last. It names the
 * interpreter on stdout ("[  PYTHON  ] path"), so a failure that follows
 * says which interpreter it was under. The loop of an interop test:
 *     const char *py;
 *     for (size_t pyi = 0; (py = tu_python_at(pyi)) != NULL; pyi++)
 *         one_case(py);                                                      */
const char *tu_python_at(size_t i);

/*
 * Run `python3 -c script` with in[0..inlen) as its stdin and collect its
 * stdout into *out (malloc'd, *outlen bytes; out may be NULL to discard it),
 * all within timeout seconds. Returns the exit status (0..255), -signal, or
 * TU_TIMEOUT. stdin and stdout are one socket, so no SIGPIPE can hit us.
 */
int tu_python_filter(const char *script, const void *in, size_t inlen, unsigned char **out,
                     size_t *outlen, double timeout);

/* Is this test running under valgrind's memcheck (tests/valgrind.sh)? Its
 * preload library is in LD_PRELOAD of every process it runs. */
bool tu_under_valgrind(void);

/* Was this test built with AddressSanitizer or ThreadSanitizer? */
bool tu_sanitized(void);

/* The factor a time or memory bound meant for a plain build is multiplied
 * by: under_valgrind under memcheck, under_sanitizer in a sanitizer build,
 * 1 otherwise. Each test picks its factors for what it measures. */
double tu_slowdown(double under_valgrind, double under_sanitizer);

/* Every test binary's main starts here: run only the tests whose names
 * match a cmocka glob, given as the first argument or in MPIPC_TEST_FILTER
 * ("test_worker_*", "*dead*"), e.g. to run the death tests many times in a
 * row. Without either, every test runs. */
void tu_filter(int argc, char **argv);

/* Number of open descriptors in this process. */
int tu_count_fds(void);

/* cmocka fixtures that fail the test if it leaked a descriptor. */
int tu_fd_setup(void **state);
int tu_fd_teardown(void **state);

/* Shorthand: a test with the descriptor-leak fixture. */
#define TU_TEST(f) cmocka_unit_test_setup_teardown(f, tu_fd_setup, tu_fd_teardown)

/* Assert that a libmpipc status equals the expected one, printing both names. */
#define TU_ASSERT_STATUS(actual, expected) tu_assert_status((long)(actual), (long)(expected), \
                                                            #actual, __FILE__, __LINE__)
void tu_assert_status(long actual, long expected, const char *expr, const char *file, int line);

#endif /* MPIPC_TESTUTIL_H */
