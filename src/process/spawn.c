/*
 * spawn - the spawn start method: posix_spawn of this program with its
 * target named and its message on an inherited pipe, and mp_spawn_main, the
 * child's way in (Python's popen_spawn_posix.py and spawn.py). Statics start
 * with spawn_.
 *
 * The child's command line is `<program> --mpipc-spawn <rfd> <sfd>`: rfd is
 * the read end of a pipe carrying the message (a framed pickle, start.h),
 * sfd the write end of the sentinel pipe, which the child holds until it
 * ends. Both, and the descriptors the parent passed, keep their numbers
 * across the exec; mp_spawn_main makes them close-on-exec again at once.
 */
#include "core/internal.h"
#include "core/io.h"
#include "process/start.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPAWN_FLAG "--mpipc-spawn"
#define SPAWN_SELF "/proc/self/exe"
/* How long a spawned child waits for its message. */
#define SPAWN_MESSAGE_TIMEOUT 60.0

/*
 * Python's "An attempt has been made to start a new process before the
 * current process has finished its bootstrapping phase": a spawned child
 * whose main() did not call mp_spawn_main() first runs the parent's main
 * again and would spawn again, without end. Its command line tells.
 */
static bool spawn_booted; /* mp_spawn_main took this run as a spawned child */

static bool spawn_is_unbooted_child(void)
{
    if (spawn_booted)
        return false;
    char buf[512];
    ssize_t n = mp__read_small_file("/proc/self/cmdline", buf, sizeof buf - 1);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    size_t first = strlen(buf);
    return (ssize_t)first + 1 < n && strcmp(buf + first + 1, SPAWN_FLAG) == 0;
}

/* Make the child's descriptors and spawn it, under the process mutex (see
 * core/popen.h). On success *rfd_w is the message pipe's write end and
 * *sentinel the sentinel's read end. */
static int spawn_exec(const struct mp__start_proc *sp, pid_t *pid, int *rfd_w, int *sentinel)
{
    char self[PATH_MAX];
    ssize_t len = readlink(SPAWN_SELF, self, sizeof self - 1);
    if (len <= 0)
        return len < 0 ? MP__NEG_ERRNO() : -ENOENT;
    self[len] = '\0';

    int msg[2] = {-1, -1}, sen[2] = {-1, -1};
    int keep[MP__START_MAX_FDS + 2];
    char rbuf[16], sbuf[16];
    mp__process_lock();
    int rc = mp__pipe(msg);
    if (rc == 0)
        rc = mp__pipe(sen);
    if (rc == 0) {
        keep[0] = msg[0];
        keep[1] = sen[1];
        memcpy(keep + 2, sp->fds, sp->nfds * sizeof(int));
        snprintf(rbuf, sizeof rbuf, "%d", msg[0]);
        snprintf(sbuf, sizeof sbuf, "%d", sen[1]);
        char *argv[] = {self, SPAWN_FLAG, rbuf, sbuf, NULL};
        rc = mp__process_spawn_locked(SPAWN_SELF, argv, keep, sp->nfds + 2, pid);
    }
    /* The child's ends are the child's now (or nobody's). */
    if (msg[0] >= 0)
        mp__close(msg[0]);
    if (sen[1] >= 0)
        mp__close(sen[1]);
    mp__process_unlock();
    if (rc < 0) {
        if (msg[1] >= 0)
            mp__close(msg[1]);
        if (sen[0] >= 0)
            mp__close(sen[0]);
        return rc;
    }
    *rfd_w = msg[1];
    *sentinel = sen[0];
    return 0;
}

static int spawn_start(void *data, const struct mp__popen_child *child, pid_t *pid, int *sentinel)
{
    struct mp__start_proc *sp = data;
    int rc = mp__start_check_target(sp);
    if (rc < 0)
        return rc;
    if (spawn_is_unbooted_child())
        return mp__err(MP_ESTATE, "a process was started before this spawned child finished "
                                  "bootstrapping: call mp_spawn_main() first in main()");
    /* Encode first: a failure to make the message starts nothing. */
    void *msg = NULL;
    size_t len = 0;
    rc = mp__start_dumps(sp, child, &msg, &len);
    if (rc < 0)
        return rc;
    int w = -1;
    rc = spawn_exec(sp, pid, &w, sentinel);
    if (rc < 0) {
        free(msg);
        return rc;
    }
    /* A child that goes before reading fails this send (-EPIPE, never a
     * SIGPIPE); it is started all the same, and its exit code says so. */
    mp_conn *c = NULL;
    if (mp_conn_from_fd(&c, w, false, true) == 0)
        (void)mp_conn_send_bytes(c, msg, len);
    else
        mp__close(w);
    mp_conn_free(c);
    free(msg);
    return 0;
}

const struct mp__popen_ops mp__spawn_ops = {
    .start = spawn_start,
    .poll = NULL, /* a child of ours: waitpid */
    .free = mp__start_proc_free,
};

/* ---- the child ------------------------------------------------------------------ */

/* A descriptor number from the command line: digits only, open. */
static int spawn_parse_fd(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > INT_MAX || !mp__fd_is_open((int)v))
        return -1;
    return (int)v;
}

/* Read the message, run the target. Returns the exit code. */
static int spawn_child(int rfd, int sfd)
{
    mp_conn *c = NULL;
    mp_obj *msg = NULL;
    if (mp_conn_from_fd(&c, rfd, true, false) < 0) {
        mp__close(rfd);
        return 1;
    }
    int rc = mp_conn_recv(c, &msg, SPAWN_MESSAGE_TIMEOUT);
    mp_conn_free(c);
    if (rc < 0)
        return 1;
    int fds[MP__START_MAX_FDS];
    size_t n = 0;
    const mp_obj *list = mp_obj_dict_get_cstr(msg, "fds");
    ssize_t len = list ? mp_obj_len(list) : -1;
    bool ok = len >= 0 && len <= MP__START_MAX_FDS;
    for (ssize_t i = 0; ok && i < len; i++) {
        int64_t v;
        ok = mp_obj_get_int(mp_obj_list_get(list, i), &v) == 0 && v >= 0 && v <= INT_MAX &&
             mp__fd_is_open((int)v);
        if (ok) {
            fds[n++] = (int)v;
            (void)mp__set_cloexec((int)v); /* inherited for this exec only */
        }
    }
    int code = ok ? mp__start_run(msg, fds, n, sfd) : 1;
    mp_obj_free(msg);
    return code;
}

MP_API int mp_spawn_main(int argc, char **argv)
{
    if (argc < 2 || !argv || !argv[1] || strcmp(argv[1], SPAWN_FLAG) != 0)
        return 0;
    int rfd = argc == 4 ? spawn_parse_fd(argv[2]) : -1;
    int sfd = argc == 4 ? spawn_parse_fd(argv[3]) : -1;
    if (rfd < 0 || sfd < 0 || rfd == sfd)
        return mp__err(MP_EVALUE, "malformed " SPAWN_FLAG " command line");
    spawn_booted = true;
    (void)mp__set_cloexec(rfd);
    (void)mp__set_cloexec(sfd);
    mp__process_child_exit(spawn_child(rfd, sfd));
}
