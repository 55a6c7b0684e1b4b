/*
 * The Pool on MPI ranks beside the fork pool (issue 18), for bench/run.py:
 * prints "<case> <tasks/s>" for 100,000 trivial tasks (square an int,
 * mp_pool_map_array, chunksize 1) and 1,000 tasks of 10 ms each (chunksize
 * 1; the ideal on 3 workers is 3.33 s, 300 tasks/s), on 3 workers.
 *
 * usage: mpirun -n 4 bench_pool_mpi <trivial|sleep10> [tasks]   MPI ranks
 *        bench_pool_mpi <trivial|sleep10> [tasks] fork          fork pool
 * The pool is made and warmed up before the clock starts.
 */
#include <mpipc.h>
#include <mpipc/mpi.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "bench_pool_mpi: %s: %s\n", what, mp_strerror(rc));
        exit(1);
    }
}

static int square_item(const void *in, void *out)
{
    int64_t x = *(const int64_t *)in;
    *(int64_t *)out = x * x;
    return 0;
}
MP_TASK(square_item);

static int sleep10_item(const void *in, void *out)
{
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
    *(int64_t *)out = *(const int64_t *)in;
    return 0;
}
MP_TASK(sleep10_item);

static int bench_run(mp_pool *p, const char *mode, long n)
{
    int64_t *in = malloc((size_t)n * sizeof *in), *out = malloc((size_t)n * sizeof *out);
    if (!in || !out)
        check(-ENOMEM, "malloc");
    for (long i = 0; i < n; i++)
        in[i] = i;
    check(mp_pool_map_array(p, square_item, in, 8, 300, out, 8, 1, NULL, MP_FOREVER), "warm-up");
    bool sleepy = strcmp(mode, "sleep10") == 0;
    double t0 = now();
    check(mp_pool_map_array(p, sleepy ? sleep10_item : square_item, in, 8, (size_t)n, out, 8, 1,
                            NULL, MP_FOREVER),
          "map");
    double t1 = now();
    for (long i = 0; i < n; i++)
        if (out[i] != (sleepy ? i : i * i)) {
            fprintf(stderr, "bench_pool_mpi: wrong result at %ld\n", i);
            return 1;
        }
    printf("%s %.0f\n", mode, (double)n / (t1 - t0));
    free(in);
    free(out);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "trivial";
    bool sleepy = strcmp(mode, "sleep10") == 0;
    long n = argc > 2 ? atol(argv[2]) : sleepy ? 1000 : 100000;
    bool fork_pool = argc > 3 && strcmp(argv[3], "fork") == 0;
    const char *scale = getenv("MPIPC_BENCH_SCALE");
    n = (long)((double)n * (scale ? atof(scale) : 1.0));
    if (n < 300)
        n = 300;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    mp_pool *p = NULL;
    int rc = 0;
    if (fork_pool) {
        o.processes = 3;
        check(mp_pool_new(&p, &o), "mp_pool_new");
        rc = bench_run(p, mode, n);
        mp_pool_free(p);
        return rc;
    }
    int level;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &level);
    rc = mp_pool_new_mpi(&p, &o, MPI_COMM_WORLD, NULL);
    check(rc, "mp_pool_new_mpi");
    if (rc == 0) {
        rc = bench_run(p, mode, n);
        mp_pool_free(p);
    } else {
        rc = 0; /* a worker rank, let go */
    }
    MPI_Finalize();
    return rc;
}
