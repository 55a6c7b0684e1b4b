/*
 * A log pipeline on a JoinableQueue: producer processes emit log records,
 * consumer processes parse them and count by level, and the totals are
 * exact. It mirrors this Python program:
 *
 *     def producer(q, n):
 *         for i in range(RECORDS):
 *             q.put(record(n, i))            # "<time> <LEVEL> producer-<n>: ..."
 *
 *     def consumer(q, results):
 *         counts = collections.Counter()
 *         while (rec := q.get()) is not None:
 *             counts[parse_level(rec)] += 1
 *             q.task_done()
 *         q.task_done()
 *         results.put(dict(counts))
 *
 *     q, results = JoinableQueue(), Queue()
 *     ... start 3 producers and 2 consumers; join the producers ...
 *     q.join()                              # every record is task_done()
 *     for _ in consumers: q.put(None)
 *     totals = sum of the consumers' dicts, checked against what was sent
 *
 * q.join() returns only once each record put has been matched by a
 * task_done(), so the main process knows the work is finished before it
 * tells the consumers to stop. Exits with status 1 if a count is off.
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 3
#define CONSUMERS 2
#define RECORDS   400 /* per producer */

/* The levels a consumer recognises; anything else counts as "unparsed". */
static const char *const levels[] = {"DEBUG", "INFO", "WARNING", "ERROR", "unparsed"};
#define NLEVELS 5

/* What producer n emits as its i-th record. Every 97th line is garbage. */
static void make_record(int n, int i, char *buf, size_t cap)
{
    if (i % 97 == 96) {
        snprintf(buf, cap, "#### torn line from producer-%d", n);
        return;
    }
    static const int weights[] = {0, 0, 0, 1, 1, 1, 1, 2, 2, 3}; /* 3:4:2:1 */
    int level = weights[(i * 7 + n) % 10];
    snprintf(buf, cap, "2026-12-06T04:%02d:%02d %s producer-%d: request %d served", i / 60 % 60,
             i % 60, levels[level], n, i);
}

/* "<time> <LEVEL> <rest>" -> the index of LEVEL in levels[]. */
static int parse_level(const char *rec, size_t len)
{
    const char *sp = memchr(rec, ' ', len);
    if (!sp)
        return NLEVELS - 1;
    const char *word = sp + 1;
    const char *end = memchr(word, ' ', len - (size_t)(word - rec));
    if (!end)
        return NLEVELS - 1;
    for (int l = 0; l < NLEVELS - 1; l++)
        if ((size_t)(end - word) == strlen(levels[l]) && memcmp(word, levels[l], end - word) == 0)
            return l;
    return NLEVELS - 1;
}

typedef struct {
    mp_queue *records; /* JoinableQueue of str, then one None per consumer */
    mp_queue *results; /* Queue of {level: count} dicts, one per consumer */
    int n;
} pipeline;

static int producer(void *arg)
{
    const pipeline *pl = arg;
    for (int i = 0; i < RECORDS; i++) {
        char rec[128];
        make_record(pl->n, i, rec, sizeof rec);
        mp_obj *o = mp_obj_str_cstr(rec);
        CHECK(mp_queue_put_obj(pl->records, o, 30.0));
        mp_obj_free(o);
    }
    return 0;
}

static int consumer(void *arg)
{
    const pipeline *pl = arg;
    long counts[NLEVELS] = {0};
    for (;;) {
        mp_obj *rec;
        CHECK(mp_queue_get_obj(pl->records, &rec, 30.0));
        bool stop = mp_obj_is_none(rec);
        if (!stop) {
            const char *s;
            size_t len;
            CHECK(mp_obj_get_str(rec, &s, &len));
            counts[parse_level(s, len)]++;
        }
        mp_obj_free(rec);
        CHECK(mp_queue_task_done(pl->records));
        if (stop)
            break;
    }
    mp_obj *d = mp_obj_dict_new();
    for (int l = 0; l < NLEVELS; l++)
        if (counts[l])
            CHECK(mp_obj_dict_set(d, mp_obj_str_cstr(levels[l]), mp_obj_int(counts[l])));
    CHECK(mp_queue_put_obj(pl->results, d, 30.0));
    mp_obj_free(d);
    /* Like Python's Queue at process exit: the result is flushed to the
     * pipe before the process ends. */
    return 0;
}

int main(void)
{
    pipeline pl[PRODUCERS + CONSUMERS];
    mp_queue *records, *results;
    CHECK(mp_queue_new_joinable(&records, 0));
    CHECK(mp_queue_new(&results, 0));

    mp_process *procs[PRODUCERS + CONSUMERS];
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
        pl[i] = (pipeline){records, results, i};
        CHECK(mp_process_new(&procs[i], i < PRODUCERS ? producer : consumer, &pl[i]));
        CHECK(mp_process_start(procs[i]));
    }
    for (int i = 0; i < PRODUCERS; i++)
        CHECK(mp_process_join(procs[i], 30.0));
    CHECK(mp_queue_join(records, 30.0)); /* every record parsed and counted */
    for (int i = 0; i < CONSUMERS; i++) {
        mp_obj *none = mp_obj_none();
        CHECK(mp_queue_put_obj(records, none, 30.0));
        mp_obj_free(none);
    }

    /* Add up the consumers' dicts. */
    long got[NLEVELS] = {0};
    for (int i = 0; i < CONSUMERS; i++) {
        mp_obj *d;
        CHECK(mp_queue_get_obj(results, &d, 30.0));
        for (int l = 0; l < NLEVELS; l++) {
            int64_t v;
            const mp_obj *count = mp_obj_dict_get_cstr(d, levels[l]);
            if (count && mp_obj_get_int(count, &v) == 0)
                got[l] += (long)v;
        }
        mp_obj_free(d);
    }
    CHECK(mp_queue_join(records, 30.0)); /* the stop markers, too */
    for (int i = PRODUCERS; i < PRODUCERS + CONSUMERS; i++)
        CHECK(mp_process_join(procs[i], 30.0));

    /* What was sent, counted here without the pipeline. */
    long want[NLEVELS] = {0}, total = 0;
    for (int n = 0; n < PRODUCERS; n++)
        for (int i = 0; i < RECORDS; i++) {
            char rec[128];
            make_record(n, i, rec, sizeof rec);
            want[parse_level(rec, strlen(rec))]++;
        }
    int bad = 0;
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
        int code;
        CHECK(mp_process_exitcode(procs[i], &code));
        bad |= code != 0;
    }
    for (int l = 0; l < NLEVELS; l++) {
        printf("%-8s %ld\n", levels[l], got[l]);
        total += got[l];
        bad |= got[l] != want[l];
    }
    printf("total    %ld records from %d producers, counted by %d consumers: %s\n", total,
           PRODUCERS, CONSUMERS, bad ? "MISMATCH" : "exact");

    for (int i = 0; i < PRODUCERS + CONSUMERS; i++)
        mp_process_free(procs[i]);
    mp_queue_free(results);
    mp_queue_free(records);
    return bad;
}
