/*
 * error - status code names and descriptions. The table is the one place a
 * code is described; adding a code to error.h means adding its row here, and
 * tests/test_error.c checks that every code in the enum has one. Also the
 * report of a broken invariant (MP__ASSERT, debug builds only), and the
 * calling thread's failure message (mp__err, mp_errmsg). Statics start with
 * error_.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct code_row {
    int code;
    const char *name;
    const char *text;
};

static const struct code_row library_codes[] = {
    {MP_OK, "MP_OK", "success"},
    {MP_EOF, "MP_EOF", "end of file: the peer closed the connection"},
    {MP_EMPTY, "MP_EMPTY", "queue is empty"},
    {MP_FULL, "MP_FULL", "queue is full"},
    {MP_ETIMEDOUT, "MP_ETIMEDOUT", "timed out"},
    {MP_ETOOLONG, "MP_ETOOLONG", "bad message length: message longer than maxlength"},
    {MP_ETOOSHORT, "MP_ETOOSHORT", "buffer too short for the message"},
    {MP_ECLOSED, "MP_ECLOSED", "handle is closed"},
    {MP_EPROTO, "MP_EPROTO", "corrupt frame or refused pickle data"},
    {MP_EVALUE, "MP_EVALUE", "invalid value for this call"},
    {MP_EAUTH, "MP_EAUTH", "authentication failed"},
    {MP_EBROKEN, "MP_EBROKEN", "barrier is broken"},
    {MP_ETASK, "MP_ETASK", "pool task reported failure"},
    {MP_EWORKER, "MP_EWORKER", "pool worker died running the task"},
    {MP_EOWNERDEAD, "MP_EOWNERDEAD", "acquired; the previous holder died holding it"},
    {MP_ETRUNCATED, "MP_ETRUNCATED", "got end of file during message"},
    {MP_EREADONLY, "MP_EREADONLY", "connection is read-only"},
    {MP_EWRITEONLY, "MP_EWRITEONLY", "connection is write-only"},
    {MP_ESTATE, "MP_ESTATE", "object is not in a state that allows this call"},
    {MP_ENOTDONE, "MP_ENOTDONE", "not finished yet"},
    {MP_ETYPE, "MP_ETYPE", "value of the wrong type"},
    {MP_EKEY, "MP_EKEY", "no such key or index"},
    {MP_ENOSERVER, "MP_ENOSERVER", "manager server is gone or unreachable"},
    {MP_ENOOBJ, "MP_ENOOBJ", "no such shared object on the manager"},
    {MP_EFORKED, "MP_EFORKED", "pool used in a child forked from the process that owns it"},
    {MP_ETERMINATED, "MP_ETERMINATED", "pool was terminated before the task finished"},
};

#define ERRNO_ROW(e)                                                                               \
    {                                                                                              \
        -(e), #e, NULL                                                                             \
    }
static const struct code_row errno_codes[] = {
    ERRNO_ROW(EPERM),    ERRNO_ROW(ENOENT),       ERRNO_ROW(ESRCH),      ERRNO_ROW(EINTR),
    ERRNO_ROW(EIO),      ERRNO_ROW(EBADF),        ERRNO_ROW(ECHILD),     ERRNO_ROW(EAGAIN),
    ERRNO_ROW(ENOMEM),   ERRNO_ROW(EACCES),       ERRNO_ROW(EFAULT),     ERRNO_ROW(EBUSY),
    ERRNO_ROW(EEXIST),   ERRNO_ROW(EINVAL),       ERRNO_ROW(ENFILE),     ERRNO_ROW(EMFILE),
    ERRNO_ROW(ENOSPC),   ERRNO_ROW(EPIPE),        ERRNO_ROW(ERANGE),     ERRNO_ROW(EDEADLK),
    ERRNO_ROW(ENOSYS),   ERRNO_ROW(ENOTSOCK),     ERRNO_ROW(EADDRINUSE), ERRNO_ROW(ECONNRESET),
    ERRNO_ROW(ENOTCONN), ERRNO_ROW(ECONNREFUSED), ERRNO_ROW(EOVERFLOW),  ERRNO_ROW(ENAMETOOLONG),
};

static const struct code_row *error_find_row(int code)
{
    for (size_t i = 0; i < sizeof library_codes / sizeof library_codes[0]; i++)
        if (library_codes[i].code == code)
            return &library_codes[i];
    for (size_t i = 0; i < sizeof errno_codes / sizeof errno_codes[0]; i++)
        if (errno_codes[i].code == code)
            return &errno_codes[i];
    return NULL;
}

MP_API const char *mp_strerror(int code)
{
    const struct code_row *row = error_find_row(code);
    if (row && row->text)
        return row->text;
    if (code < 0 && code > MP_ERRNO_MIN)
        /* glibc returns a static string for every errno it knows. */
        return strerror(-code);
    return "unknown libmpipc status";
}

MP_API const char *mp_errname(int code)
{
    const struct code_row *row = error_find_row(code);
    return row ? row->name : "MP_UNKNOWN";
}

/* The last failure recorded on this thread (code 0: none). Thread-local,
 * like errno, so threads never share or race on it; a child made by fork
 * starts with the forking thread's copy, which is harmless: it describes a
 * failure that really happened in that thread before the fork. */
static _Thread_local struct {
    int code;
    char msg[MP__ERRMSG_MAX];
} error_last;

/* vsnprintf into a fixed buffer: no allocation for the formats the library
 * uses (%s, %d, %zu, %x and their kin), and it cuts where the buffer ends.
 * A cut message ends in "..." so a reader knows it was cut. */
int mp__err(int code, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(error_last.msg, sizeof error_last.msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        error_last.code = 0;
    } else {
        if ((size_t)n >= sizeof error_last.msg) {
            size_t end = sizeof error_last.msg - 4;
            /* Do not leave half a UTF-8 sequence before the dots. */
            while (end > 0 && ((unsigned char)error_last.msg[end] & 0xC0) == 0x80)
                end--;
            memcpy(error_last.msg + end, "...", 4);
        }
        error_last.code = code;
    }
    errno = saved;
    return code;
}

void mp__err_clear(void)
{
    error_last.code = 0;
}

int mp__err_last(const char **msg)
{
    if (msg)
        *msg = error_last.code ? error_last.msg : "";
    return error_last.code;
}

const char *mp__err_msg(int code)
{
    return code != 0 && error_last.code == code ? error_last.msg : NULL;
}

MP_API const char *mp_errmsg(int code)
{
    const char *m = mp__err_msg(code);
    return m ? m : mp_strerror(code);
}

#ifdef MPIPC_ASSERTS
/* Debug and sanitizer builds only (internal.h): the one place the library
 * prints and aborts, for an invariant of its own that does not hold. */
void mp__assert_fail(const char *expr, const char *file, int line, const char *func)
{
    fprintf(stderr, "libmpipc: %s:%d: %s: invariant failed: %s\n", file, line, func, expr);
    abort();
}
#endif
