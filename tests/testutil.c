/* Test helpers: see testutil.h. */
#include "testutil.h"

#include <mpipc/error.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tu_sleep(double seconds)
{
    double end = tu_now() + seconds;
    for (;;) {
        double left = end - tu_now();
        if (left <= 0)
            return;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

pid_t tu_fork(int (*fn)(void *arg), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* A watchdog: if the parent failed an assert and never reaps us, we
         * must not block forever and keep CI waiting on our stdout. */
        alarm(TU_CHILD_LIFETIME);
        int code = fn(arg);
        fflush(NULL);
        _exit(code & 0xff);
    }
    assert_true(pid > 0);
    return pid;
}

static int decode_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return status;
}

int tu_poll_child(pid_t pid)
{
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r == 0)
        return TU_RUNNING;
    if (r != pid)
        fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
    return decode_status(status);
}

int tu_wait_child(pid_t pid, double timeout)
{
    double end = tu_now() + timeout;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
        if (tu_now() > end) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return TU_TIMEOUT;
        }
        tu_sleep(0.001);
    }
    return decode_status(status);
}

pid_t tu_spawn_python(const char *script, const char *const *args, const int *keep, int nkeep)
{
    return tu_spawn_python_as("python3", script, args, keep, nkeep);
}

pid_t tu_spawn_python_as(const char *python, const char *script, const char *const *args,
                         const int *keep, int nkeep)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = python;
    argv[n++] = "-c";
    argv[n++] = script;
    for (int i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(TU_CHILD_LIFETIME);
        for (int i = 0; i < nkeep; i++)
            fcntl(keep[i], F_SETFD, 0); /* survive the exec */
        execvp(python, (char *const *)argv);
        _exit(127);
    }
    assert_true(pid > 0);
    return pid;
}

/* ---- the interpreters of the interop tests ---------------------------------------------- */

#define TU_PY_PATH_MAX 512

static char tu_py_store[TU_MAX_PYTHONS][TU_PY_PATH_MAX];
static size_t tu_py_n;
static bool tu_py_done;

struct tu_py_found {
    int minor, patch;
    char path[TU_PY_PATH_MAX];
};

static void tu_py_add(const char *path)
{
    if (tu_py_n < TU_MAX_PYTHONS && strlen(path) < TU_PY_PATH_MAX)
        strcpy(tu_py_store[tu_py_n++], path);
}

/* MPIPC_TEST_PYTHONS: the whole list, paths separated by ':'. */
static void tu_py_from_env(const char *list)
{
    while (*list) {
        size_t len = strcspn(list, ":");
        if (len > 0 && len < TU_PY_PATH_MAX) {
            char path[TU_PY_PATH_MAX];
            memcpy(path, list, len);
            path[len] = '\0';
            tu_py_add(path);
        }
        list += len;
        if (*list == ':')
            list++;
    }
}

/* pyenv's versions/X.Y.Z/bin/pythonX.Y for 3.12 and later: the newest
 * patch release of each X.Y, sorted by minor version. */
static void tu_py_from_pyenv(void)
{
    char root[TU_PY_PATH_MAX];
    const char *env = getenv("PYENV_ROOT");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(root, sizeof root, "%s/versions", env);
    else if (home && *home)
        snprintf(root, sizeof root, "%s/.pyenv/versions", home);
    else
        snprintf(root, sizeof root, "/root/.pyenv/versions");
    DIR *d = opendir(root);
    if (!d && !(env && *env)) {
        snprintf(root, sizeof root, "/root/.pyenv/versions");
        d = opendir(root);
    }
    if (!d)
        return;
    struct tu_py_found found[TU_MAX_PYTHONS];
    size_t nfound = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int major, minor, patch;
        char tail;
        /* Plain releases only: "3.13.0", not "3.13.0t" or "3.14-dev". */
        if (sscanf(e->d_name, "%d.%d.%d%c", &major, &minor, &patch, &tail) != 3 || major != 3 ||
            minor < 12)
            continue;
        char path[TU_PY_PATH_MAX];
        int len =
            snprintf(path, sizeof path, "%s/%s/bin/python%d.%d", root, e->d_name, major, minor);
        if (len < 0 || (size_t)len >= sizeof path || access(path, X_OK) != 0)
            continue;
        size_t i = 0;
        while (i < nfound && found[i].minor != minor)
            i++;
        if (i == nfound) {
            if (nfound == TU_MAX_PYTHONS)
                continue;
            nfound++;
        } else if (found[i].patch >= patch) {
            continue;
        }
        found[i].minor = minor;
        found[i].patch = patch;
        strcpy(found[i].path, path);
    }
    closedir(d);
    for (size_t i = 0; i < nfound; i++) /* a handful: sort by minor */
        for (size_t j = i + 1; j < nfound; j++)
            if (found[j].minor < found[i].minor) {
                struct tu_py_found t = found[i];
                found[i] = found[j];
                found[j] = t;
            }
    for (size_t i = 0; i < nfound; i++)
        tu_py_add(found[i].path);
}

size_t tu_pythons(const char *out[TU_MAX_PYTHONS])
{
    if (!tu_py_done) {
        const char *env = getenv("MPIPC_TEST_PYTHONS");
        if (env && *env) {
            tu_py_from_env(env);
        } else {
            tu_py_add("python3");
            tu_py_from_pyenv();
        }
        if (tu_py_n == 0)
            tu_py_add("python3");
        tu_py_done = true;
    }
    for (size_t i = 0; i < tu_py_n; i++)
        out[i] = tu_py_store[i];
    return tu_py_n;
}

const char *tu_python_at(size_t i)
{
    const char *list[TU_MAX_PYTHONS];
    size_t n = tu_pythons(list);
    if (i >= n)
        return NULL;
    print_message("[  PYTHON  ] %s\n", list[i]);
    return list[i];
}

/* The shared-memory allocator keeps one memfd per arena open for the
 * arena's life (to hand its objects to forkserver and spawn children, as
 * Python's heap arenas keep theirs), and keeps its last arena: those are
 * its state, not a leak, and are not counted. */
static bool tu_is_shm_arena(int fd)
{
    char path[64], target[64];
    (void)snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    return strncmp(target, "/memfd:mpipc-shm", 16) == 0;
}

int tu_count_fds(void)
{
    int n = 0;
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (int fd = 0; fd < max; fd++)
        if (fcntl(fd, F_GETFD) >= 0 && !tu_is_shm_arena(fd))
            n++;
    return n;
}

int tu_fd_setup(void **state)
{
    int *count = malloc(sizeof *count);
    if (!count)
        return -1;
    *count = tu_count_fds();
    *state = count;
    return 0;
}

int tu_fd_teardown(void **state)
{
    int *count = *state;
    int now = tu_count_fds();
    int before = *count;
    free(count);
    if (now != before) {
        print_error("descriptor leak: %d open before the test, %d after\n", before, now);
        return -1;
    }
    return 0;
}

void tu_assert_status(long actual, long expected, const char *expr, const char *file, int line)
{
    if (actual != expected) {
        print_error("%s returned %ld (%s: %s), expected %ld (%s)\n", expr, actual,
                    mp_errname((int)actual), mp_strerror((int)actual), expected,
                    mp_errname((int)expected));
        _fail(file, line);
    }
}

bool tu_under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

bool tu_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return true;
#endif
#endif
    return false;
}

double tu_slowdown(double under_valgrind, double under_sanitizer)
{
    if (tu_under_valgrind())
        return under_valgrind;
    return tu_sanitized() ? under_sanitizer : 1.0;
}

void tu_filter(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : getenv("MPIPC_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
}

/* tu_python_filter: python3 -c script, in on its stdin, its stdout collected. */
int tu_python_filter(const char *script, const void *in, size_t inlen, unsigned char **out,
                     size_t *outlen, double timeout)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(sv[1], 0);
        dup2(sv[1], 1);
        execlp("python3", "python3", "-c", script, (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    double end = tu_now() + timeout;
    size_t off = 0, cap = 1 << 16, got = 0;
    unsigned char *buf = malloc(cap);
    assert_non_null(buf);
    bool writing = true;
    if (inlen == 0) {
        shutdown(sv[0], SHUT_WR);
        writing = false;
    }
    for (;;) {
        double left = end - tu_now();
        if (left <= 0)
            break;
        struct pollfd pfd = {sv[0], (short)(POLLIN | (writing ? POLLOUT : 0)), 0};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        assert_true(r >= 0);
        if (writing && (pfd.revents & (POLLOUT | POLLERR))) {
            ssize_t w = send(sv[0], (const char *)in + off, inlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                off += (size_t)w;
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                off = inlen; /* python went away; its status tells */
            if (off == inlen) {
                shutdown(sv[0], SHUT_WR);
                writing = false;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (got == cap) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
            ssize_t rd = recv(sv[0], buf + got, cap - got, MSG_DONTWAIT);
            if (rd == 0)
                break;
            if (rd > 0)
                got += (size_t)rd;
            else if (errno != EAGAIN && errno != EINTR)
                break;
        }
    }
    close(sv[0]);
    double left = end - tu_now();
    int status = tu_wait_child(pid, left > 1 ? left : 1);
    if (out) {
        *out = buf;
        *outlen = got;
    } else {
        free(buf);
    }
    return status;
}
