/*
 * internal - private declarations shared by the library's source files: status
 * code ranges, MP__ASSERT, mp__wipe, growth helpers, the fork generation.
 * Never installed.
 *
 * Internal non-static symbols start with mp__ so they cannot collide with the
 * public mp_ names or with a user's symbols (they are hidden from the shared
 * library's ABI by -fvisibility=hidden anyway).
 */
#ifndef MPIPC_INTERNAL_H
#define MPIPC_INTERNAL_H

#include <mpipc/error.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Status codes in (MP_ERRNO_MIN, 0) are negated errno values. */
#define MP_ERRNO_MIN (-1000)

/* The negated errno of the last failed system call, never 0. */
#define MP__NEG_ERRNO() (errno > 0 ? -errno : -EIO)

/* 1 when built with ThreadSanitizer, which needs a few calls made in the
 * ways it can see (it does not intercept every pthread call). */
#if defined(__SANITIZE_THREAD__)
#define MP__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MP__TSAN 1
#endif
#endif
#ifndef MP__TSAN
#define MP__TSAN 0
#endif

/*
 * MP__ASSERT(cond) states an invariant the code relies on: a reference
 * count, a FIFO sequence, a state transition, a lock order. Debug and
 * sanitizer builds (MPIPC_ASSERTS, set by CMake) check it, and a false one
 * names the place and aborts, so a test run catches it where it broke.
 * Release builds compile it to nothing: the library never aborts a user's
 * program. It is for what cannot happen, never for bad input or a failed
 * system call, which are status codes.
 */
#ifdef MPIPC_ASSERTS
#define MP__ASSERT(cond) ((cond) ? (void)0 : mp__assert_fail(#cond, __FILE__, __LINE__, __func__))
_Noreturn void mp__assert_fail(const char *expr, const char *file, int line, const char *func);
#else
#define MP__ASSERT(cond) ((void)sizeof(!(cond)))
#endif

/* Marks a static function only MP__ASSERT calls: compiled out with the
 * asserts, it is then unused, and no compiler should say so. */
#if defined(__GNUC__) || defined(__clang__)
#define MP__ASSERT_ONLY __attribute__((unused))
#else
#define MP__ASSERT_ONLY
#endif

/* Overwrite a secret (an authkey copy, a handshake seed) before its memory
 * is freed or goes out of scope: through volatile stores, which the
 * compiler may not drop as it may a memset of memory about to die. */
static inline void mp__wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* Overflow-checked size arithmetic: true when a + b would wrap. */
static inline bool mp__add_overflows(size_t a, size_t b, size_t *sum)
{
    return __builtin_add_overflow(a, b, sum);
}

/* The capacity a growable buffer of capacity cap (0: none yet, which starts
 * at first) doubles to so that it holds need bytes; need itself where
 * doubling would overflow. */
static inline size_t mp__grow_cap(size_t cap, size_t need, size_t first)
{
    size_t c = cap ? cap : first;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return need;
        c *= 2;
    }
    return c;
}

/* Room for one more element in the array arr of elem-byte elements, full
 * at *cap of them (0: none yet): arr realloc'd to twice *cap (first to
 * begin with) and *cap updated, or NULL with both unchanged. */
static inline void *mp__array_grow(void *arr, size_t *cap, size_t elem, size_t first)
{
    size_t n = *cap ? *cap * 2 : first;
    if (n < *cap || n > SIZE_MAX / elem)
        return NULL;
    void *p = realloc(arr, n * elem);
    if (p)
        *cap = n;
    return p;
}

/*
 * Fork generation: a process-wide counter that a pthread_atfork child handler
 * increments. A handle records the generation it last saw; a mismatch tells
 * it, for the price of one load, that it now lives in a forked child and must
 * drop process-local state (a read-ahead buffer, mutexes a parent thread may
 * have held). Cheaper than getpid(), which is a real system call in glibc.
 */
unsigned mp__forkgen(void);

/*
 * A process-wide mutex for the rare slow paths that repair a handle after
 * fork. Valid in the child: the atfork child handler re-creates it.
 */
void mp__forkfix_lock(void);
void mp__forkfix_unlock(void);

/*
 * At-exit hooks (process.c). A hook runs in the exit procedure of the process
 * that added it (never in a child that merely inherited the registration):
 * after a child's target returns, or when the main program exits. Hooks with
 * priority >= 0 run before the process's children are joined, the others
 * after, each group in reverse order of registration (Python's finalizer
 * exitpriority). Queues use this to flush what their feeder holds.
 * mp__exit_hook_add returns an id > 0, or -ENOMEM.
 */
typedef void (*mp__exit_hook_fn)(void *arg);
int mp__exit_hook_add(mp__exit_hook_fn fn, void *arg, int priority);
void mp__exit_hook_remove(int id);

/*
 * In a child started by mp_process_start: the descriptor that keeps its
 * sentinel open (the parent sees end of file when it closes), which a child
 * that closes the descriptors it inherited must keep. -1 elsewhere.
 */
int mp__process_sentinel_fd(void);

/*
 * Fork handlers of the library that take locks. They run from the process
 * module's own pthread_atfork handlers, after its mutex in prepare (parent
 * and child handlers in the reverse order), so every fork - mp_process_start's,
 * which holds that mutex across fork(), or any other - takes the library's
 * locks in one order. Call once per module (from its pthread_once); any of
 * the three may be NULL. Returns 0, or -ENOMEM beyond the table's 8 entries.
 */
int mp__atfork_register(void (*prepare)(void), void (*parent)(void), void (*child)(void));

/*
 * The calling thread's failure message (error.h, mp_errmsg). mp__err records
 * code with a printf-formatted message and returns code, so a failing site
 * reads `return mp__err(MP_EPROTO, "... (offset %zu)", off);`. The record is
 * thread-local, bounded (MP__ERRMSG_MAX bytes with the NUL; a longer message
 * is cut and ends in "..."), never allocates and keeps errno. mp__err_clear
 * forgets it: an entry point that records messages clears the record as it
 * starts, so an old message cannot pass for the new failure's.
 * mp__err_msg is the message recorded for code, or NULL. mp__err_last is
 * the code of the last record (0: none) with its message in *msg ("" for
 * none; msg may be NULL).
 */
#define MP__ERRMSG_MAX 256
int mp__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mp__err_clear(void);
const char *mp__err_msg(int code);
int mp__err_last(const char **msg);

#endif /* MPIPC_INTERNAL_H */
