/*
 * A pool hashing every file under a directory - the cookbook's Python
 *
 *     def digest(path):
 *         with open(path, 'rb') as f:
 *             return hashlib.file_digest(f, 'sha256').hexdigest()
 *
 *     paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
 *     with Pool() as pool:
 *         for path, h in zip(paths, pool.map(digest, paths)):
 *             print(f'{h}  {os.path.relpath(path, root)}')
 *
 * with a value task (a path in, a hex string out) and a 64-bit FNV-1a hash
 * written here in a few lines. The pool's answers are checked against the
 * same hashes computed in this process; a mismatch exits with status 1.
 * Usage: pool_hash_files [directory]. Without one, it hashes a small tree it
 * writes into a temporary directory (and removes), so its output is fixed.
 *
 * The same file, built with POOL_ON_MPI (target pool_hash_files_mpi, when
 * MPI is found), runs as `mpirun -n 4 pool_hash_files_mpi`: rank 0 makes
 * the pool, ranks 1-3 are its workers. The one line that changes is the
 * pool's constructor (POOL_NEW below); MPI_Init_thread and MPI_Finalize
 * frame main, and the worker ranks return once the pool lets them go.
 */
#include <mpipc.h>

#ifdef POOL_ON_MPI
#include <mpipc/mpi.h>
#define POOL_NEW(pool, opts) mp_pool_new_mpi(pool, opts, MPI_COMM_WORLD, NULL)
#else
#define POOL_NEW(pool, opts) mp_pool_new(pool, opts)
#endif

#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A growable list of C strings: the paths found by the walk. */
typedef struct {
    char **v;
    size_t n, cap;
} paths;

static void paths_add(paths *ps, const char *path)
{
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 64;
        ps->v = realloc(ps->v, ps->cap * sizeof *ps->v);
    }
    ps->v[ps->n] = strdup(path);
    if (!ps->v || !ps->v[ps->n]) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    ps->n++;
}

/* os.walk, files only, symbolic links not followed (lstat). */
static void walk(const char *dir, paths *ps)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        exit(1);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            walk(path, ps);
        else if (S_ISREG(st.st_mode))
            paths_add(ps, path);
    }
    closedir(d);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FNV-1a, 64 bits: enough to tell files apart in an example; use SHA-256
 * where an adversary picks the files. */
static int hash_file(const char *path, char hex[17])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t h = 0xcbf29ce484222325u;
    unsigned char buf[65536];
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0 || (got < 0 && errno == EINTR))
        for (ssize_t i = 0; i < got; i++)
            h = (h ^ buf[i]) * 0x100000001b3u;
    int err = got < 0 ? -errno : 0;
    close(fd);
    snprintf(hex, 17, "%016llx", (unsigned long long)h);
    return err;
}

/* The task, in a worker: args is (path,), the result the hex digest. A file
 * that cannot be read fails the map with its errno and a message. */
static int digest_task(const mp_obj *args, mp_obj **result)
{
    const char *path;
    size_t len;
    char hex[17];
    if (mp_obj_get_str(mp_obj_list_get(args, 0), &path, &len) != 0)
        return mp_task_fail(EINVAL, "expected a path");
    int rc = hash_file(path, hex);
    if (rc != 0)
        return mp_task_fail(-rc, "%s: %s", path, strerror(-rc));
    *result = mp_obj_str_cstr(hex);
    return *result ? 0 : mp_task_fail(ENOMEM, "out of memory");
}
/* Registered by name: MPI ranks (and spawn pools) find tasks that way. */
MP_TASK(digest_task);

/* The fixed tree for the ctest: 3 directories of 8 files whose contents
 * depend only on their names. Returns the temporary root. */
static char *make_tree(void)
{
    const char *tmp = getenv("TMPDIR");
    char *root = malloc(4096);
    snprintf(root, 4096, "%s/pool_hash_files.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        exit(1);
    }
    const char *subdirs[3] = {"docs", "src", "src/core"};
    for (int d = 0; d < 3; d++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", root, subdirs[d]);
        CHECK(mkdir(dir, 0700) == 0 ? 0 : -errno);
        for (int f = 0; f < 8; f++) {
            char path[4200];
            snprintf(path, sizeof path, "%s/file%d.txt", dir, f);
            FILE *fp = fopen(path, "w");
            if (!fp) {
                perror(path);
                exit(1);
            }
            for (int line = 0; line <= 100 * f; line++)
                fprintf(fp, "%s line %d\n", subdirs[d], line);
            fclose(fp);
        }
    }
    return root;
}

static void remove_tree(const char *root, const paths *ps)
{
    for (size_t i = 0; i < ps->n; i++)
        unlink(ps->v[i]);
    const char *subdirs[3] = {"src/core", "src", "docs"};
    for (int d = 0; d < 3; d++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", root, subdirs[d]);
        rmdir(dir);
    }
    rmdir(root);
}

/* The program proper, on the process that owns the pool. */
static int hash_tree(mp_pool *pool, int argc, char **argv)
{
    char *made = argc > 1 ? NULL : make_tree();
    const char *root = argc > 1 ? argv[1] : made;

    paths ps = {0};
    walk(root, &ps);
    qsort(ps.v, ps.n, sizeof *ps.v, by_name);

    /* The paths travel in the tasks' input (pickled), so the workers need
     * nothing from this process's memory. */
    mp_obj *items = mp_obj_list_new();
    for (size_t i = 0; i < ps.n; i++)
        CHECK(mp_obj_list_append(items, mp_obj_str_cstr(ps.v[i])));
    mp_obj *digests;
    mp_task_error err;
    int rc = mp_pool_map(pool, digest_task, items, 0, &digests, &err, 60.0);
    if (rc != 0) {
        fprintf(stderr, "map failed: %s, item %zu: %s\n", mp_errname(rc), err.index, err.message);
        return 1;
    }
    CHECK(mp_pool_close(pool));
    CHECK(mp_pool_join(pool, 30.0));
    mp_pool_free(pool); /* after close + join: nothing left to fail */

    /* map keeps the input order, so the lines come out sorted by path. */
    size_t mismatches = 0, root_len = strlen(root);
    for (size_t i = 0; i < ps.n; i++) {
        const char *hex;
        size_t len;
        CHECK(mp_obj_get_str(mp_obj_list_get(digests, i), &hex, &len));
        char mine[17];
        CHECK(hash_file(ps.v[i], mine));
        if (len != 16 || memcmp(hex, mine, 16) != 0) {
            fprintf(stderr, "mismatch for %s: pool %.*s, here %s\n", ps.v[i], (int)len, hex, mine);
            mismatches++;
        }
        printf("%.*s  %s\n", (int)len, hex, ps.v[i] + root_len + 1);
    }
    printf("%zu files hashed by the pool, %zu mismatches against one process\n", ps.n, mismatches);

    mp_obj_free(digests);
    mp_obj_free(items);
    if (made)
        remove_tree(made, &ps);
    for (size_t i = 0; i < ps.n; i++)
        free(ps.v[i]);
    free(ps.v);
    free(made);
    return mismatches == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
#ifdef POOL_ON_MPI
    int level;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &level);
#endif
    mp_pool *pool;
    mp_pool_opts opts = MP_POOL_OPTS_INIT;
#ifndef POOL_ON_MPI
    opts.processes = 4; /* under mpirun: every other rank */
#endif
    int rc = POOL_NEW(&pool, &opts);
    CHECK(rc);
    int status = 0;
    if (rc == 0) /* else (1) a worker rank, done serving */
        status = hash_tree(pool, argc, argv);
#ifdef POOL_ON_MPI
    MPI_Finalize();
#endif
    return status;
}
