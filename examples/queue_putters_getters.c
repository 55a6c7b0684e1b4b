/*
 * Ten processes put into a Queue(3) and ten others get from it - the
 * "批量生产数据放入队列再批量获取结果" program of seed 004, ported from Python:
 *
 *     def inputQ(queue):
 *         info = str(os.getpid()) + '(put):' + str(time.asctime())
 *         queue.put(info)
 *
 *     def outputQ(queue):
 *         info = queue.get()
 *         print('%s%s\033[32m%s\033[0m' % (str(os.getpid()), '(get):', info))
 *
 *     queue = multiprocessing.Queue(3)
 *     for i in range(10):  Process(target=inputQ, args=(queue,)).start()
 *     for i in range(10):  Process(target=outputQ, args=(queue,)).start()
 *     ... join them all
 *
 * With room for only three items, putters wait for getters; every message
 * still arrives exactly once.
 */
#include <mpipc.h>

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static mp_queue *queue;

static int inputQ(void *arg)
{
    (void)arg;
    char info[128];
    time_t now = time(NULL);
    char when[32];
    strftime(when, sizeof when, "%a %b %e %H:%M:%S %Y", localtime(&now)); /* time.asctime() */
    int len = snprintf(info, sizeof info, "%d(put):%s", (int)getpid(), when);
    CHECK(mp_queue_put(queue, info, (size_t)len, MP_FOREVER));
    return 0;
}

static int outputQ(void *arg)
{
    (void)arg;
    void *info;
    size_t len;
    CHECK(mp_queue_get(queue, &info, &len, MP_FOREVER));
    printf("%d(get):\033[32m%.*s\033[0m\n", (int)getpid(), (int)len, (char *)info);
    free(info);
    return 0;
}

int main(void)
{
    CHECK(mp_queue_new(&queue, 3));
    mp_process *record1[10], *record2[10];
    for (int i = 0; i < 10; i++) { /* the input processes */
        CHECK(mp_process_new(&record1[i], inputQ, NULL));
        CHECK(mp_process_start(record1[i]));
    }
    for (int i = 0; i < 10; i++) { /* the output processes */
        CHECK(mp_process_new(&record2[i], outputQ, NULL));
        CHECK(mp_process_start(record2[i]));
    }
    for (int i = 0; i < 10; i++) {
        CHECK(mp_process_join(record1[i], MP_FOREVER));
        mp_process_free(record1[i]);
    }
    for (int i = 0; i < 10; i++) {
        CHECK(mp_process_join(record2[i], MP_FOREVER));
        mp_process_free(record2[i]);
    }
    mp_queue_free(queue);
    return 0;
}
