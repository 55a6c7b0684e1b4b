/*
 * Pool workloads for bench/run.py, each printed as "<case> <rate>" in tasks
 * per second: 100,000 trivial tasks (square an int) on a pool of 2.
 *
 *   map1           mp_pool_map_array, chunksize 1: 100,000 separate tasks
 *   apply_async    a loop of mp_pool_apply_async (value form: the args
 *                  tuple (i,) is pickled, the result comes back as an
 *                  mp_obj), then mp_result_get on each
 *   map_default    mp_pool_map_array with the default chunksize
 *   map1_values    mp_pool_map over a list of ints, chunksize 1 (the value
 *                  form of map1, for comparison)
 *   apply_async_bytes  the apply_async loop in the bytes form (an int64_t
 *                  in, an int64_t out: no pickling), for comparison
 *
 * The pool is made (and warmed up with one small map) before the clock
 * starts, as bench_pool.py does for Python's Pool.
 *
 * usage: bench_pool <mode> [processes] [tasks] - run.py's scaling rows run
 * map1 on 1, 2, 4 and 8 workers; MPIPC_BENCH_SCALE multiplies the tasks.
 */
#include <mpipc.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_DEFAULT 100000

/* The number of tasks; set once in main before anything reads it. */
static int64_t n_tasks = N_DEFAULT;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "bench_pool: %s: %s\n", what, mp_strerror(rc));
        exit(1);
    }
}

static int square_item(const void *in, void *out)
{
    int64_t x = *(const int64_t *)in;
    *(int64_t *)out = x * x;
    return 0;
}

static int square_value(const mp_obj *args, mp_obj **result)
{
    int64_t x;
    if (mp_obj_get_int(mp_obj_list_get(args, 0), &x) < 0)
        return 1;
    *result = mp_obj_int(x * x);
    return 0;
}

static int square_bytes(const void *in, size_t len, void **out, size_t *out_len)
{
    int64_t x;
    if (len != sizeof x)
        return 1;
    memcpy(&x, in, sizeof x);
    int64_t *o = malloc(sizeof *o);
    if (!o)
        return 1;
    *o = x * x;
    *out = o;
    *out_len = sizeof *o;
    return 0;
}

static int64_t *in, *out;

static void verify(void)
{
    for (int64_t i = 0; i < n_tasks; i++)
        if (out[i] != i * i) {
            fprintf(stderr, "bench_pool: wrong result at %lld\n", (long long)i);
            exit(1);
        }
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "map1";
    int processes = argc > 2 ? atoi(argv[2]) : 2;
    long tasks = argc > 3 ? atol(argv[3]) : N_DEFAULT;
    const char *scale = getenv("MPIPC_BENCH_SCALE");
    n_tasks = (int64_t)((double)tasks * (scale ? atof(scale) : 1.0));
    if (n_tasks < 1000) /* the warm-up maps 1,000 */
        n_tasks = 1000;
    if (processes < 1 || processes > 64) {
        fprintf(stderr, "bench_pool: processes must be 1-64\n");
        return 2;
    }
    in = malloc((size_t)n_tasks * sizeof *in);
    out = malloc((size_t)n_tasks * sizeof *out);
    if (!in || !out)
        check(-ENOMEM, "malloc");
    for (int64_t i = 0; i < n_tasks; i++)
        in[i] = i;
    mp_pool_opts o = MP_POOL_OPTS_INIT;
    o.processes = processes;
    mp_pool *p;
    check(mp_pool_new(&p, &o), "mp_pool_new");
    check(mp_pool_map_array(p, square_item, in, 8, 1000, out, 8, 1, NULL, MP_FOREVER), "warm-up");

    double t0 = now(), t1;
    if (strcmp(mode, "map1") == 0) {
        check(
            mp_pool_map_array(p, square_item, in, 8, (size_t)n_tasks, out, 8, 1, NULL, MP_FOREVER),
            "map");
        t1 = now();
        verify();
    } else if (strcmp(mode, "map_default") == 0) {
        check(
            mp_pool_map_array(p, square_item, in, 8, (size_t)n_tasks, out, 8, 0, NULL, MP_FOREVER),
            "map");
        t1 = now();
        verify();
    } else if (strcmp(mode, "apply_async") == 0) {
        mp_result **rs = malloc((size_t)n_tasks * sizeof *rs);
        mp_obj *args = mp_obj_tuple_new();
        mp_obj_tuple_append(args, mp_obj_int(0));
        for (int64_t i = 0; i < n_tasks; i++) {
            /* a fresh (i,) each time, as Python builds one per call */
            mp_obj_free(args);
            args = mp_obj_tuple_new();
            mp_obj_tuple_append(args, mp_obj_int(i));
            check(mp_pool_apply_async(p, square_value, args, NULL, &rs[i]), "apply_async");
        }
        mp_obj_free(args);
        for (int64_t i = 0; i < n_tasks; i++) {
            const mp_obj *v;
            check(mp_result_get(rs[i], &v, NULL, MP_FOREVER), "get");
            int64_t x;
            if (mp_obj_get_int(v, &x) < 0 || x != i * i)
                check(-1, "wrong result");
            mp_result_free(rs[i]);
        }
        t1 = now();
        free(rs);
    } else if (strcmp(mode, "apply_async_bytes") == 0) {
        mp_result **rs = malloc((size_t)n_tasks * sizeof *rs);
        for (int64_t i = 0; i < n_tasks; i++)
            check(mp_pool_apply_bytes_async(p, square_bytes, &in[i], sizeof in[i], NULL, &rs[i]),
                  "apply_async");
        for (int64_t i = 0; i < n_tasks; i++) {
            const void *v;
            size_t len;
            check(mp_result_get_bytes(rs[i], &v, &len, NULL, MP_FOREVER), "get");
            int64_t x;
            memcpy(&x, v, sizeof x);
            if (len != sizeof x || x != i * i)
                check(-1, "wrong result");
            mp_result_free(rs[i]);
        }
        t1 = now();
        free(rs);
    } else if (strcmp(mode, "map1_values") == 0) {
        mp_obj *items = mp_obj_list_new();
        for (int64_t i = 0; i < n_tasks; i++)
            mp_obj_list_append(items, mp_obj_int(i));
        t0 = now(); /* building the list is not the pool's work */
        mp_obj *res;
        check(mp_pool_map(p, square_value, items, 1, &res, NULL, MP_FOREVER), "map");
        t1 = now();
        mp_obj_free(res);
        mp_obj_free(items);
    } else {
        fprintf(stderr, "bench_pool: unknown mode %s\n", mode);
        return 2;
    }
    check(mp_pool_close(p), "close");
    check(mp_pool_join(p, MP_FOREVER), "join");
    mp_pool_free(p);
    free(in);
    free(out);
    printf("%s %.0f\n", mode, (double)n_tasks / (t1 - t0));
    return 0;
}
