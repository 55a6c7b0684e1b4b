/*
 * libmpipc - definitions every public header shares: the export macro and the
 * timeout constants.
 */
#ifndef MPIPC_COMMON_H
#define MPIPC_COMMON_H

/*
 * MP_API marks a function that is part of the library's public ABI. The library
 * is built with hidden visibility, so only functions marked MP_API are exported
 * from libmpipc.so; the same marking is harmless in the static library.
 */
#if defined(__GNUC__) || defined(__clang__)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif

/* After MP_API: version.h declares functions with it. */
#include <mpipc/version.h>

/*
 * Timeouts are seconds as a double, as in Python.
 *
 *   MP_FOREVER (any negative value)  wait without limit (Python's timeout=None)
 *   MP_NOWAIT  (0)                   do not wait (Python's block=False)
 *   t > 0                            wait up to t seconds, measured on
 *                                    CLOCK_MONOTONIC; a signal that interrupts
 *                                    the wait does not restart the clock.
 *   NaN                              refused: every function that takes a
 *                                    timeout returns MP_EVALUE (Python's
 *                                    ValueError) and does nothing else.
 *
 * Note one difference from Python: Connection.poll(-1) in Python returns at once,
 * while every negative timeout here means "forever".
 */
#define MP_FOREVER (-1.0)
#define MP_NOWAIT  (0.0)

#endif /* MPIPC_COMMON_H */
