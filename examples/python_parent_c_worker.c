/*
 * A C worker driven by a Python parent (examples/python_parent_c_worker.py):
 * the parent listens with multiprocessing.connection.Listener and an
 * authkey, starts this program, and sends it jobs as ordinary Python
 * values; the worker answers each with a Python value. It is the C
 * version of this Python worker:
 *
 *     conn = Client(address, authkey=bytes.fromhex(os.environ['MPIPC_AUTHKEY']))
 *     while (job := conn.recv()) is not None:
 *         kind, arg = job
 *         conn.send(JOBS[kind](arg) if kind in JOBS else ('error', f'unknown job {kind!r}'))
 *
 * Usage (by the parent): python_parent_c_worker tcp:HOST:PORT, with the
 * authkey in hex in MPIPC_AUTHKEY (not on the command line, where any user
 * could read it in ps). (examples/python_peer.c is the other direction: a
 * C parent and a Python child.)
 */
#include <mpipc.h>

#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ("words", text) -> {word: count}, Python's Counter(text.split()) for
 * space-separated text. */
static mp_obj *job_words(const mp_obj *arg)
{
    const char *s;
    size_t len;
    if (mp_obj_get_str(arg, &s, &len) != 0)
        return NULL;
    mp_obj *counts = mp_obj_dict_new();
    for (size_t i = 0; i < len;) {
        while (i < len && s[i] == ' ')
            i++;
        size_t start = i;
        while (i < len && s[i] != ' ')
            i++;
        if (i == start)
            break;
        mp_obj *word = mp_obj_str(s + start, i - start);
        const mp_obj *seen = mp_obj_dict_get(counts, word);
        int64_t n = 0;
        if (seen)
            CHECK(mp_obj_get_int(seen, &n));
        /* An equal key already present stays; the one passed in is freed. */
        CHECK(mp_obj_dict_set(counts, word, mp_obj_int(n + 1)));
    }
    return counts;
}

/* ("primes", n) -> the list of primes below n. */
static mp_obj *job_primes(const mp_obj *arg)
{
    int64_t n;
    if (mp_obj_get_int(arg, &n) != 0 || n > 10000000)
        return NULL;
    mp_obj *primes = mp_obj_list_new();
    for (int64_t p = 2; p < n; p++) {
        bool prime = true;
        for (int64_t d = 2; d * d <= p && prime; d++)
            prime = p % d != 0;
        if (prime)
            CHECK(mp_obj_list_append(primes, mp_obj_int(p)));
    }
    return primes;
}

/* ("stats", [numbers]) -> {'n': len, 'sum': float, 'min': float, 'max': float}. */
static mp_obj *job_stats(const mp_obj *arg)
{
    ssize_t n = mp_obj_len(arg);
    if (n <= 0 || (mp_obj_type(arg) != MP_TYPE_LIST && mp_obj_type(arg) != MP_TYPE_TUPLE))
        return NULL;
    double sum = 0, lo = 0, hi = 0;
    for (size_t i = 0; i < (size_t)n; i++) {
        const mp_obj *x = mp_obj_list_get(arg, i);
        double v;
        int64_t iv;
        if (mp_obj_get_float(x, &v) != 0) {
            if (mp_obj_get_int(x, &iv) != 0)
                return NULL;
            v = (double)iv;
        }
        sum += v;
        lo = i == 0 || v < lo ? v : lo;
        hi = i == 0 || v > hi ? v : hi;
    }
    mp_obj *d = mp_obj_dict_new();
    CHECK(mp_obj_dict_set(d, mp_obj_str_cstr("n"), mp_obj_int(n)));
    CHECK(mp_obj_dict_set(d, mp_obj_str_cstr("sum"), mp_obj_float(sum)));
    CHECK(mp_obj_dict_set(d, mp_obj_str_cstr("min"), mp_obj_float(lo)));
    CHECK(mp_obj_dict_set(d, mp_obj_str_cstr("max"), mp_obj_float(hi)));
    return d;
}

/* ("adler32", data) -> zlib.adler32(data). */
static mp_obj *job_adler32(const mp_obj *arg)
{
    const unsigned char *p;
    size_t len;
    if (mp_obj_get_bytes(arg, &p, &len) != 0)
        return NULL;
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < len; i++) {
        a = (a + p[i]) % 65521;
        b = (b + a) % 65521;
    }
    return mp_obj_int((int64_t)(b << 16 | a));
}

/* ('error', message): what the worker answers to a job it cannot do. */
static mp_obj *refuse(const char *why, const mp_obj *job)
{
    char *text = NULL, msg[300];
    if (mp_obj_repr(job, &text) != 0)
        text = NULL;
    snprintf(msg, sizeof msg, "%s: %.200s", why, text ? text : "?");
    free(text);
    mp_obj *reply = mp_obj_tuple_new();
    CHECK(mp_obj_tuple_append(reply, mp_obj_str_cstr("error")));
    CHECK(mp_obj_tuple_append(reply, mp_obj_str_cstr(msg)));
    return reply;
}

static mp_obj *handle(const mp_obj *job)
{
    static const struct {
        const char *name;
        mp_obj *(*fn)(const mp_obj *arg);
    } jobs[] = {{"words", job_words},
                {"primes", job_primes},
                {"stats", job_stats},
                {"adler32", job_adler32}};
    const char *kind;
    size_t len;
    if (mp_obj_type(job) != MP_TYPE_TUPLE || mp_obj_len(job) != 2 ||
        mp_obj_get_str(mp_obj_list_get(job, 0), &kind, &len) != 0)
        return refuse("not a (kind, argument) tuple", job);
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++)
        if (strlen(jobs[i].name) == len && memcmp(jobs[i].name, kind, len) == 0) {
            mp_obj *result = jobs[i].fn(mp_obj_list_get(job, 1));
            return result ? result : refuse("bad argument", job);
        }
    return refuse("unknown job", job);
}

static size_t unhex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = 0;
    for (; hex[0] && hex[1] && n < cap; hex += 2) {
        unsigned v;
        if (sscanf(hex, "%2x", &v) != 1)
            return 0;
        out[n++] = (unsigned char)v;
    }
    return n;
}

int main(int argc, char **argv)
{
    const char *hex = getenv("MPIPC_AUTHKEY");
    unsigned char key[64];
    size_t key_len = hex ? unhex(hex, key, sizeof key) : 0;
    if (argc != 2 || key_len == 0) {
        fprintf(stderr,
                "usage: MPIPC_AUTHKEY=<hex> %s tcp:HOST:PORT (started by "
                "python_parent_c_worker.py)\n",
                argv[0]);
        return 2;
    }

    mp_conn *c;
    CHECK(mp_client_connect(&c, argv[1], key, key_len, 10.0));
    int served = 0;
    for (;;) {
        mp_obj *job;
        CHECK(mp_conn_recv(c, &job, 30.0));
        if (mp_obj_is_none(job)) {
            mp_obj_free(job);
            break;
        }
        mp_obj *reply = handle(job);
        CHECK(mp_conn_send(c, reply));
        mp_obj_free(reply);
        mp_obj_free(job);
        served++;
    }
    printf("C worker: served %d jobs, bye\n", served);
    mp_conn_free(c);
    return 0;
}
