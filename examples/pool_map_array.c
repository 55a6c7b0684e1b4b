/*
 * map() over a C array: each worker squares chunks of the input straight
 * into the output array - Python's
 *
 *     with Pool() as p:
 *         squares = p.map(square, range(1000000))
 *
 * without a Python object per item: the chunks travel as raw bytes (one
 * message per chunk) and land in `out` directly. A failing item (here, the
 * task refuses negative numbers) makes the whole map fail with its index,
 * code and message, as Python's map raises the item's exception.
 */
#include <mpipc.h>

#include "check.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 1000000

/* Runs in a worker, once per item. */
static int square(const void *in, void *out)
{
    int64_t x = *(const int32_t *)in;
    if (x < 0)
        return mp_task_fail(EDOM, "cannot square %lld here", (long long)x);
    *(int64_t *)out = x * x;
    return 0;
}

int main(void)
{
    static int32_t in[N];
    static int64_t out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;

    mp_pool *p;
    CHECK(mp_pool_new(&p, NULL)); /* one worker per CPU */
    /* chunksize 0: Python's default, ceil(N / (4 * processes)) */
    CHECK(
        mp_pool_map_array(p, square, in, sizeof in[0], N, out, sizeof out[0], 0, NULL, MP_FOREVER));
    printf("squares:");
    for (int i = 0; i < 10; i++)
        printf(" %lld", (long long)out[i]);
    int64_t sum = 0;
    for (int i = 0; i < N; i++)
        sum += out[i];
    printf("\nsum of the squares below %d: %lld\n", N, (long long)sum);

    in[123456] = -1;
    mp_task_error err;
    int rc =
        mp_pool_map_array(p, square, in, sizeof in[0], N, out, sizeof out[0], 0, &err, MP_FOREVER);
    printf("map with a bad item: %s, item %zu, code %d: %s\n", mp_errname(rc), err.index, err.code,
           err.message);

    CHECK(mp_pool_close(p));
    CHECK(mp_pool_join(p, MP_FOREVER));
    mp_pool_free(p);
    return 0;
}
