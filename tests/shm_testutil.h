/* Helpers of test_shared_memory.c and test_shared_memory_list.c: the
 * Python peer on two pipes (under each interpreter of tu_pythons), and
 * the /dev/shm bookkeeping that checks the suite leaves no block behind. */
#ifndef MPIPC_TEST_SHM_TESTUTIL_H
#define MPIPC_TEST_SHM_TESTUTIL_H

#include "testutil.h"

#include <mpipc/shared_memory.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHMT_TIMEOUT 30.0

/* Every name a test made, C's or Python's: none may remain at the end. */
static char shmt_names[256][MP_SHARED_MEMORY_NAME_MAX + 1];
static size_t shmt_nnames;

static inline void shmt_note(const char *name)
{
    if (shmt_nnames < 256)
        snprintf(shmt_names[shmt_nnames++], sizeof shmt_names[0], "%.254s", name);
}

static inline bool shmt_exists(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return access(path, F_OK) == 0;
}

/* Wait up to timeout seconds for a name to go away. */
static inline bool shmt_gone_within(const char *name, double timeout)
{
    double end = tu_now() + timeout;
    while (shmt_exists(name)) {
        if (tu_now() > end)
            return false;
        tu_sleep(0.02);
    }
    return true;
}

/* A unique name for this test process. */
static inline void shmt_name(char *buf, size_t cap, const char *what)
{
    static unsigned seq;
    snprintf(buf, cap, "mpipc_t%ld_%s_%u", (long)getpid(), what, seq++);
    shmt_note(buf);
}

/* /dev/shm listing before the group: every entry after the group that was
 * not there before must not be one of ours. */
static char **shmt_before;
static size_t shmt_nbefore;

static inline int shmt_group_setup(void **state)
{
    (void)state;
    DIR *d = opendir("/dev/shm");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char **g = realloc(shmt_before, (shmt_nbefore + 1) * sizeof *g);
        if (!g)
            break;
        shmt_before = g;
        shmt_before[shmt_nbefore++] = strdup(e->d_name);
    }
    closedir(d);
    return 0;
}

static inline int shmt_group_teardown(void **state)
{
    (void)state;
    int leaked = 0;
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        bool old = false;
        for (size_t i = 0; i < shmt_nbefore && !old; i++)
            old = shmt_before[i] && strcmp(shmt_before[i], e->d_name) == 0;
        for (size_t i = 0; i < shmt_nnames && !old; i++) {
            if (strcmp(shmt_names[i], e->d_name) == 0) {
                fprintf(stderr, "leaked shared memory block: /dev/shm/%s\n", e->d_name);
                leaked++;
            }
        }
    }
    if (d)
        closedir(d);
    for (size_t i = 0; i < shmt_nbefore; i++)
        free(shmt_before[i]);
    free(shmt_before);
    return leaked ? -1 : 0;
}

/* A Python peer: `py -c script args...` with its stdin and stdout on pipes;
 * py is one of tu_pythons (tu_python_at). */
struct shmt_py {
    pid_t pid;
    int in;  /* we write its stdin */
    int out; /* we read its stdout */
};

static inline void shmt_py_start(struct shmt_py *p, const char *py, const char *script,
                                 const char *const *args)
{
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    for (int k = 0; k < 2; k++) {
        fcntl(a[k], F_SETFD, FD_CLOEXEC);
        fcntl(b[k], F_SETFD, FD_CLOEXEC);
    }
    const char *argv[16];
    int n = 0;
    argv[n++] = py;
    argv[n++] = "-c";
    argv[n++] = script;
    for (int i = 0; args && args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(TU_CHILD_LIFETIME);
        dup2(a[0], 0);
        dup2(b[1], 1);
        execvp(py, (char *const *)argv); /* a path, or "python3" from PATH */
        _exit(127);
    }
    assert_true(pid > 0);
    close(a[0]);
    close(b[1]);
    p->pid = pid;
    p->in = a[1];
    p->out = b[0];
}

/* One line from the peer (without its newline), within SHMT_TIMEOUT. */
static inline void shmt_py_line(struct shmt_py *p, char *buf, size_t cap)
{
    size_t n = 0;
    double end = tu_now() + SHMT_TIMEOUT;
    while (n + 1 < cap) {
        struct pollfd pfd = {p->out, POLLIN, 0};
        int left = (int)((end - tu_now()) * 1000);
        assert_true(left > 0);
        if (poll(&pfd, 1, left) <= 0)
            continue;
        char c;
        ssize_t got = read(p->out, &c, 1);
        if (got <= 0)
            break;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
}

static inline void shmt_py_say(struct shmt_py *p, const char *line)
{
    size_t n = strlen(line);
    assert_int_equal(write(p->in, line, n), (ssize_t)n);
    assert_int_equal(write(p->in, "\n", 1), 1);
}

/* Close the pipes and return the peer's exit status. */
static inline int shmt_py_finish(struct shmt_py *p)
{
    close(p->in);
    close(p->out);
    return tu_wait_child(p->pid, SHMT_TIMEOUT);
}

/* The Python side never lets its own resource tracker unlink a block it
 * only attached to (Python 3.11-3.12 register every attach). */
#define SHMT_PY_PRELUDE                                                                            \
    "import sys\n"                                                                                 \
    "from multiprocessing import shared_memory, resource_tracker\n"                                \
    "def untrack(shm): resource_tracker.unregister(shm._name, 'shared_memory')\n"

#endif /* MPIPC_TEST_SHM_TESTUTIL_H */
