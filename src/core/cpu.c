/*
 * cpu - how many CPUs there are (Python's os.cpu_count) and how many this
 * process may use (Python 3.13's os.process_cpu_count), for process.h.
 */
/* sched_getaffinity() and the CPU_*_S macros are GNU extensions. */
#define _GNU_SOURCE

#include "core/internal.h"

#include <mpipc/process.h>

#include <errno.h>
#include <sched.h>
#include <unistd.h>

/* Python's os.cpu_count(): the CPUs online, or None when unknown. */
MP_API ssize_t mp_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (ssize_t)n : -ENOSYS;
}

/* len(os.sched_getaffinity(0)), as CPython computes it: the kernel's mask
 * may be wider than a cpu_set_t (more than 1,024 CPUs), so the set grows
 * until sched_getaffinity() stops answering EINVAL. */
MP_API ssize_t mp_process_cpu_count(void)
{
    for (int ncpus = 1024; ncpus <= (1 << 20); ncpus *= 2) {
        cpu_set_t *set = CPU_ALLOC((size_t)ncpus);
        if (!set)
            break; /* no memory: fall back, as the count only tunes */
        size_t size = CPU_ALLOC_SIZE((size_t)ncpus);
        CPU_ZERO_S(size, set);
        if (sched_getaffinity(0, size, set) == 0) {
            int n = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            return n >= 1 ? (ssize_t)n : mp_cpu_count();
        }
        int e = errno;
        CPU_FREE(set);
        if (e != EINVAL)
            break;
    }
    return mp_cpu_count();
}
