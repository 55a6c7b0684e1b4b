/*
 * bench_shm - SIZE bytes (1 GiB by default) written by one side and summed
 * by the other, C -> Python and Python -> C, through a shared memory block
 * (mpipc/shared_memory.h) or over a Pipe (mpipc/conn.h, 16 MiB messages).
 *
 *   bench_shm c2py_shm|c2py_pipe|py2c_shm|py2c_pipe SIZE PYTHON SCRIPT
 *
 * SCRIPT is bench/bench_shm.py. The data is 16 MiB chunks of the uint64s
 * 0, 1, 2, ...; the reader sums every uint64 (Python: sum() over
 * memoryview.cast('Q'), chunk by chunk) and the sum is checked. The time
 * runs from the start (python3's start-up included, ~20 ms) to the reader's
 * last add. Prints "<case> <MB/s>".
 */
#define _DEFAULT_SOURCE
#include <mpipc/conn.h>
#include <mpipc/shared_memory.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK ((size_t)16 << 20)

static const mp_shared_memory_opts untracked = {.track = false};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_shm: %s: %s\n", what, mp_errmsg(rc));
    exit(1);
}

static uint64_t *make_chunk(void)
{
    uint64_t *c = malloc(CHUNK);
    if (!c)
        die("malloc", -12);
    for (size_t i = 0; i < CHUNK / 8; i++)
        c[i] = i;
    return c;
}

static uint64_t expected_sum(size_t size)
{
    uint64_t s = 0;
    for (size_t off = 0; off < size; off += CHUNK) {
        uint64_t k = (size - off < CHUNK ? size - off : CHUNK) / 8;
        s += k * (k - 1) / 2;
    }
    return s;
}

static uint64_t sum_words(const void *p, size_t n)
{
    const uint64_t *w = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n / 8; i++)
        s += w[i];
    return s;
}

/* Start PYTHON SCRIPT args... with its stdin/stdout on pipes (out_fd: we
 * read its stdout; in_fd: we write its stdin, or -1) and keep_fd inherited. */
static pid_t spawn(char **argv, int keep_fd, int *out_fd, int *in_fd)
{
    int o[2], i[2];
    if (pipe(o) < 0 || pipe(i) < 0)
        die("pipe", -1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(i[0], 0);
        if (keep_fd >= 0)
            fcntl(keep_fd, F_SETFD, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    close(o[1]);
    close(i[0]);
    *out_fd = o[0];
    if (in_fd)
        *in_fd = i[1];
    else
        close(i[1]);
    return pid;
}

static void read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    char c;
    while (n + 1 < cap && read(fd, &c, 1) == 1 && c != '\n')
        buf[n++] = c;
    buf[n] = '\0';
}

static void finish(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_shm: python failed\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_shm CASE SIZE PYTHON SCRIPT\n");
        return 2;
    }
    const char *mode = argv[1];
    size_t size = (size_t)strtoull(argv[2], NULL, 10) / 8 * 8;
    char *py = argv[3], *script = argv[4], sizes[32], fds[16], line[300];
    snprintf(sizes, sizeof sizes, "%zu", size);
    uint64_t want = expected_sum(size), got = 0;
    uint64_t *chunk = make_chunk();
    int rc, out, in;
    double t0 = now();

    if (!strcmp(mode, "c2py_shm")) {
        mp_shared_memory *shm;
        if ((rc = mp_shared_memory_create(&shm, NULL, size, &untracked)) < 0)
            die("create", rc);
        unsigned char *b = mp_shared_memory_buf(shm);
        for (size_t off = 0; off < size; off += CHUNK)
            memcpy(b + off, chunk, size - off < CHUNK ? size - off : CHUNK);
        char *pargv[] = {py, script, "sum_shm", (char *)mp_shared_memory_name(shm), sizes, NULL};
        pid_t pid = spawn(pargv, -1, &out, NULL);
        read_line(out, line, sizeof line);
        finish(pid);
        got = strtoull(line, NULL, 10);
        mp_shared_memory_unlink(shm);
        mp_shared_memory_free(shm);
    } else if (!strcmp(mode, "c2py_pipe")) {
        mp_conn *r, *w;
        if ((rc = mp_pipe(&r, &w, false)) < 0)
            die("pipe", rc);
        snprintf(fds, sizeof fds, "%d", mp_conn_fileno(r));
        char *pargv[] = {py, script, "sum_pipe", fds, sizes, NULL};
        pid_t pid = spawn(pargv, mp_conn_fileno(r), &out, NULL);
        mp_conn_free(r);
        for (size_t off = 0; off < size; off += CHUNK)
            if ((rc = mp_conn_send_bytes(w, chunk, size - off < CHUNK ? size - off : CHUNK)) < 0)
                die("send", rc);
        read_line(out, line, sizeof line);
        finish(pid);
        got = strtoull(line, NULL, 10);
        mp_conn_free(w);
    } else if (!strcmp(mode, "py2c_shm")) {
        char *pargv[] = {py, script, "fill_shm", sizes, NULL};
        pid_t pid = spawn(pargv, -1, &out, &in);
        read_line(out, line, sizeof line);
        mp_shared_memory *shm;
        if ((rc = mp_shared_memory_attach(&shm, line, &untracked)) < 0)
            die("attach", rc);
        got = sum_words(mp_shared_memory_buf(shm), size);
        mp_shared_memory_free(shm);
        if (write(in, "done\n", 5) != 5)
            die("write", -1);
        finish(pid);
    } else if (!strcmp(mode, "py2c_pipe")) {
        mp_conn *r, *w;
        if ((rc = mp_pipe(&r, &w, false)) < 0)
            die("pipe", rc);
        snprintf(fds, sizeof fds, "%d", mp_conn_fileno(w));
        char *pargv[] = {py, script, "fill_pipe", fds, sizes, NULL};
        pid_t pid = spawn(pargv, mp_conn_fileno(w), &out, NULL);
        mp_conn_free(w);
        for (size_t have = 0; have < size;) {
            ssize_t n = mp_conn_recv_bytes_into(r, chunk, CHUNK, 0, NULL, MP_FOREVER);
            if (n < 0)
                die("recv", (int)n);
            got += sum_words(chunk, (size_t)n);
            have += (size_t)n;
        }
        finish(pid);
        mp_conn_free(r);
    } else {
        fprintf(stderr, "bench_shm: unknown case %s\n", mode);
        return 2;
    }
    double secs = now() - t0;
    if (got != want) {
        fprintf(stderr, "bench_shm: %s: sum %" PRIu64 ", want %" PRIu64 "\n", mode, got, want);
        return 1;
    }
    printf("%s %.1f\n", mode, size / 1e6 / secs);
    free(chunk);
    return 0;
}
