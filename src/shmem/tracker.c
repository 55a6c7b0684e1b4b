/*
 * tracker.c - the resource tracker (Python's resource_tracker): a process
 * forked on first use that unlinks the tracked blocks still registered once
 * every process that could unlink them has ended, however they ended.
 *
 * Design. The tracker holds the read end of a pipe; the process that
 * started it holds the write end, close-on-exec, and so does every child it
 * forks afterwards (they share its tracker, as Python's forked children
 * do). Each register or unregister is one line, "R/psm_x\n" or "U/psm_x\n",
 * written with one write of at most PIPE_BUF bytes, so lines from several
 * processes never interleave. End of file on the pipe means that no process
 * holding the write end is left: the tracker unlinks what is registered and
 * leaves. It never prints (Python's warns about "leaked shared_memory
 * objects"), and keeps SIGINT and SIGTERM blocked, as Python's ignores them,
 * so a Ctrl-C to the process group does not stop the cleanup.
 *
 * Statics start with trk_.
 */
#include "shmem/shmem.h"

#include "core/io.h"
#include "core/popen.h"
#include "core/shm.h"

#include <mpipc/process.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* One line: the op letter, the path (at most NAME_MAX bytes), "\n". */
#define TRK_LINE_MAX (NAME_MAX + 3)

/* This process's write end (-1: none yet), and the pipe it was, so that a
 * descriptor some code closed (a server child closing what it inherited)
 * and the number reused by another file is never written to. A forked
 * child inherits them, which is the point. Guarded by trk_mu, a lock of
 * this file's own (the fork that starts the tracker happens under it, and
 * the fork path may take the library's other locks); the atfork child
 * handler renews it, as a thread of the parent may have held it. */
static int trk_fd = -1;
static dev_t trk_dev;
static ino_t trk_ino;
static pthread_mutex_t trk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t trk_once = PTHREAD_ONCE_INIT;

static void trk_atfork_child(void)
{
    /* Re-initialised, not assigned: ThreadSanitizer has to see it. */
    (void)pthread_mutex_init(&trk_mu, NULL);
}

static void trk_install(void)
{
    /* Fails only with ENOMEM; a child forked while another thread holds the
     * lock would then wait on it: nothing better to do from a once-routine. */
    (void)pthread_atfork(NULL, NULL, trk_atfork_child);
}

static void trk_lock(void)
{
    (void)pthread_once(&trk_once, trk_install);
    int rc = pthread_mutex_lock(&trk_mu);
    MP__ASSERT(rc == 0);
    (void)rc;
}

static void trk_unlock(void)
{
    int rc = pthread_mutex_unlock(&trk_mu);
    MP__ASSERT(rc == 0);
    (void)rc;
}

/* ---- the tracker process ------------------------------------------------ */

struct trk_set {
    char **names;
    size_t n, cap;
};

static void trk_set_add(struct trk_set *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->names[i], name) == 0)
            return;
    char *copy = strdup(name);
    if (!copy)
        return; /* out of memory: that block may leak, as nothing can report it */
    char **grown = set->n < set->cap
                       ? set->names
                       : mp__array_grow(set->names, &set->cap, sizeof *set->names, 16);
    if (!grown) {
        free(copy);
        return;
    }
    set->names = grown;
    set->names[set->n++] = copy;
}

static void trk_set_remove(struct trk_set *set, const char *name)
{
    for (size_t i = 0; i < set->n; i++) {
        if (strcmp(set->names[i], name) == 0) {
            free(set->names[i]);
            set->names[i] = set->names[--set->n];
            return;
        }
    }
}

static void trk_line(struct trk_set *set, char *line)
{
    if (line[0] == 'R' && line[1] == '/')
        trk_set_add(set, line + 1);
    else if (line[0] == 'U' && line[1] == '/')
        trk_set_remove(set, line + 1);
    /* anything else: not ours; ignored, as Python ignores bad lines */
}

/* A forked tracker starts with the starter's mappings, and a named block
 * stays in memory while any process maps it: drop every /dev/shm mapping,
 * so that blocks the starter unlinks are freed when the starter unmaps
 * them, not when the tracker ends. (Python's tracker is a fresh program.) */
static void trk_drop_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return;
    struct {
        uintptr_t lo, hi;
    } r[64];
    size_t n = 0;
    char line[512];
    while (n < 64 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        const char *path = strchr(line, '/');
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && hi > lo && path &&
            strncmp(path, "/dev/shm/", 9) == 0)
            r[n].lo = lo, r[n++].hi = hi;
    }
    fclose(f);
    for (size_t i = 0; i < n; i++)
        mp__shm_unmap((void *)r[i].lo, r[i].hi - r[i].lo);
}

/* The tracker's life: read lines until end of file, then unlink. */
static int trk_main(void *arg)
{
    int rfd = *(const int *)arg;
    /* Descriptors inherited from the starter (its pipes and sockets) would
     * keep their peers from seeing end of file for as long as we live. */
    mp__close_fds_except(&rfd, 1);
    trk_drop_mappings();
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, NULL);

    struct trk_set set = {0};
    char buf[4 * TRK_LINE_MAX];
    size_t have = 0;
    bool skipping = false; /* inside a line too long to be ours */
    for (;;) {
        ssize_t got = mp__read_some(rfd, buf + have, sizeof buf - have, MP__NO_DEADLINE, false);
        if (got <= 0)
            break; /* end of file: everyone who could unlink is gone */
        have += (size_t)got;
        size_t start = 0;
        for (size_t i = 0; i < have; i++) {
            if (buf[i] != '\n')
                continue;
            buf[i] = '\0';
            if (!skipping)
                trk_line(&set, buf + start);
            skipping = false;
            start = i + 1;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have > TRK_LINE_MAX) {
            skipping = true;
            have = 0;
        }
    }
    for (size_t i = 0; i < set.n; i++)
        (void)shm_unlink(set.names[i]);
    _exit(0); /* no exit procedure: nothing of the starter's is ours */
}

/* ---- the starter's side -------------------------------------------------- */

static bool trk_fd_valid_locked(void)
{
    struct stat st;
    return trk_fd >= 0 && fstat(trk_fd, &st) == 0 && st.st_dev == trk_dev && st.st_ino == trk_ino;
}

/* Fork the tracker through mp_process (fork's one home), then let the
 * handle go: the tracker outlives it, is never joined by the exit
 * procedure, and ends only once this process and its children are gone. */
static int trk_start_locked(void)
{
    int fds[2];
    int rc = mp__pipe(fds);
    if (rc < 0)
        return rc;
    mp_process *p = NULL;
    /* Python's tracker is no Process: it takes no Process-N number. */
    if ((rc = mp_process_new(&p, trk_main, &fds[0])) == 0)
        mp__process_uncount(p);
    if (rc == 0 && (rc = mp_process_set_name(p, "ResourceTracker")) == 0)
        rc = mp_process_start(p);
    mp_process_free(p);
    mp__close(fds[0]);
    struct stat st;
    if (rc == 0 && fstat(fds[1], &st) < 0)
        rc = -errno;
    if (rc < 0) {
        mp__close(fds[1]);
        return rc;
    }
    if (trk_fd >= 0 && trk_fd_valid_locked())
        mp__close(trk_fd); /* a tracker that died: its pipe is useless */
    trk_fd = fds[1];
    trk_dev = st.st_dev;
    trk_ino = st.st_ino;
    return 0;
}

static int trk_ensure_locked(void)
{
    return trk_fd_valid_locked() ? 0 : trk_start_locked();
}

MP_API int mp_resource_tracker_ensure_running(void)
{
    trk_lock();
    int rc = trk_ensure_locked();
    trk_unlock();
    return rc;
}

static int trk_send(char op, const char *path)
{
    char line[TRK_LINE_MAX + 1];
    size_t n = strlen(path);
    if (n > NAME_MAX + 1)
        return -ENAMETOOLONG;
    line[0] = op;
    memcpy(line + 1, path, n);
    line[n + 1] = '\n';
    trk_lock();
    int rc = trk_ensure_locked();
    for (int attempt = 0; rc == 0; attempt++) {
        struct iovec iov = {line, n + 2};
        rc = mp__write_all(trk_fd, &iov, 1, false, false);
        /* The tracker died (killed by hand): start another, as Python's
         * ensure_running does; what the dead one held is lost. */
        if (rc != -EPIPE || attempt > 0 || op == 'U')
            break;
        rc = trk_start_locked();
    }
    trk_unlock();
    return rc;
}

int mp__shm_tracker_register(const char *path)
{
    return trk_send('R', path);
}

int mp__shm_tracker_unregister(const char *path)
{
    return trk_send('U', path);
}
