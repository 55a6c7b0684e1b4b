/*
 * Why the asan test preset runs a failed test once more (see .ci/run).
 * One thread mallocs and frees; the main thread forks children that malloc.
 * Built with GCC 12's -fsanitize=address (Debian 12), a few children in a
 * thousand deadlock in their first malloc: libasan does not take its
 * allocator's locks around fork(). With glibc's malloc none ever does.
 *
 *   gcc -fsanitize=address -O1 .ci/asan_fork_malloc.c -pthread && ./a.out
 *   -> "hung 2 of 1000" (a deadlocked child is killed by its alarm)
 *
 * Not part of the test suite: it measures the sanitizer, not libmpipc.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *churn(void *arg)
{
    (void)arg;
    for (unsigned s = 0;; s++) {
        void *p[256];
        for (int i = 0; i < 256; i++)
            p[i] = malloc(16 + (size_t)((i * 7919u + s) % 20000));
        for (int i = 0; i < 256; i++)
            free(p[i]);
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    int hung = 0;
    for (int k = 0; k < 1000; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(2);
            void *q[2000];
            for (int i = 0; i < 2000; i++)
                q[i] = malloc(16 + (size_t)((i * 104729u) % 30000));
            for (int i = 0; i < 2000; i++)
                free(q[i]);
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st))
            hung++;
    }
    printf("hung %d of 1000\n", hung);
    return 0;
}
