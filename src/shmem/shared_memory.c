/*
 * shared_memory.c - Python's SharedMemory: POSIX shared memory objects
 * created or attached by name, mapped whole (mpipc/shared_memory.h).
 * shm_open and shm_unlink live here; the mapping is made in core/shm.c.
 */
#include "shmem/shmem.h"

#include "core/io.h"
#include "core/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Python's _SHM_NAME_PREFIX and the 4 random bytes of _make_filename(),
 * which keep a name within FreeBSD's 14 characters. */
#define SHM_PREFIX       "/psm_"
#define SHM_RANDOM_BYTES 4

static const mp_shared_memory_opts shm_default_opts = MP_SHARED_MEMORY_OPTS_INIT;

/* The path shm_open takes: the name with a leading "/" added, as Python's
 * _prepend_leading_slash does. */
static int shm_make_path(char *path, const char *name)
{
    size_t n = strlen(name);
    if (n > MP_SHARED_MEMORY_NAME_MAX)
        return mp__err(-EINVAL, "shared memory name longer than %d bytes",
                       MP_SHARED_MEMORY_NAME_MAX);
    path[0] = '/';
    memcpy(path + 1, name, n + 1);
    return 0;
}

static int shm_random_path(char *path)
{
    unsigned char r[SHM_RANDOM_BYTES];
    int rc = mp__random_bytes(r, sizeof r);
    if (rc < 0)
        return rc;
    snprintf(path, MP_SHARED_MEMORY_NAME_MAX + 2, SHM_PREFIX "%02x%02x%02x%02x", r[0], r[1], r[2],
             r[3]);
    return 0;
}

/* glibc's shm_open opens with O_CLOEXEC (and O_NOFOLLOW) itself, so the
 * descriptor is close-on-exec atomically. */
static int shm_open_path(const char *path, int flags, int *fd)
{
    int f;
    do
        f = shm_open(path, flags, 0600);
    while (f < 0 && errno == EINTR);
    if (f < 0)
        return -errno;
    *fd = f;
    return 0;
}

static int shm_unlink_path(const char *path)
{
    int saved = errno;
    int rc = shm_unlink(path) == 0 ? 0 : -errno;
    errno = saved;
    return rc;
}

/* Size the new object (create), then map all of it: the size is the
 * object's own, from fstat, as Python takes it. */
static int shm_map(mp_shared_memory *s, size_t create_size)
{
    int rc;
    if (create_size && (rc = mp__truncate(s->fd, create_size)) < 0)
        return rc;
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return -errno;
    if (st.st_size <= 0) /* Python's mmap.mmap(fd, 0) */
        return mp__err(MP_EVALUE, "cannot mmap an empty file");
    if ((uintmax_t)st.st_size > SIZE_MAX)
        return -ERANGE;
    s->size = (size_t)st.st_size;
    return mp__shm_map_fd(&s->buf, s->fd, s->size);
}

static mp_shared_memory *shm_alloc(const mp_shared_memory_opts *opts)
{
    mp_shared_memory *s = calloc(1, sizeof *s);
    if (s) {
        s->fd = -1;
        s->track = (opts ? opts : &shm_default_opts)->track;
    }
    return s;
}

MP_API int mp_shared_memory_create(mp_shared_memory **out, const char *name, size_t size,
                                   const mp_shared_memory_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (size == 0)
        return mp__err(MP_EVALUE, "'size' must be a positive number different from zero");
    if ((uintmax_t)size > (uintmax_t)INT64_MAX)
        return mp__err(-ERANGE, "'size' %zu does not fit off_t", size);
    mp_shared_memory *s = shm_alloc(opts);
    if (!s)
        return -ENOMEM;
    /* The tracker first: forked after the mapping, it would hold it. */
    int rc = s->track ? mp_resource_tracker_ensure_running() : 0;
    if (rc < 0) {
        free(s);
        return rc;
    }
    if (name) {
        if ((rc = shm_make_path(s->path, name)) == 0)
            rc = shm_open_path(s->path, O_RDWR | O_CREAT | O_EXCL, &s->fd);
    } else {
        /* Python loops on FileExistsError with a new random name. */
        do {
            if ((rc = shm_random_path(s->path)) == 0)
                rc = shm_open_path(s->path, O_RDWR | O_CREAT | O_EXCL, &s->fd);
        } while (rc == -EEXIST);
    }
    if (rc < 0) {
        if (rc == -EEXIST)
            (void)mp__err(rc, "File exists: '%s'", s->path);
        free(s);
        return rc;
    }
    rc = shm_map(s, size);
    if (rc == 0 && s->track)
        rc = mp__shm_tracker_register(s->path);
    if (rc < 0) {
        /* Python unlinks what it created when sizing or mapping fails. */
        mp__shm_unmap(s->buf, s->size);
        (void)shm_unlink_path(s->path);
        mp__close(s->fd);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

MP_API int mp_shared_memory_attach(mp_shared_memory **out, const char *name,
                                   const mp_shared_memory_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!name)
        return mp__err(-EINVAL, "'name' can only be None if create=True");
    mp_shared_memory *s = shm_alloc(opts);
    if (!s)
        return -ENOMEM;
    int rc = s->track ? mp_resource_tracker_ensure_running() : 0;
    if (rc == 0)
        rc = shm_make_path(s->path, name);
    if (rc == 0 && (rc = shm_open_path(s->path, O_RDWR, &s->fd)) == -ENOENT)
        rc = mp__err(rc, "No such file or directory: '%s'", s->path);
    if (rc == 0)
        rc = shm_map(s, 0);
    if (rc == 0 && s->track)
        rc = mp__shm_tracker_register(s->path);
    if (rc < 0) {
        mp__shm_unmap(s->buf, s->size);
        if (s->fd >= 0)
            mp__close(s->fd);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

MP_API const char *mp_shared_memory_name(const mp_shared_memory *shm)
{
    return shm ? shm->path + 1 : NULL;
}

MP_API size_t mp_shared_memory_size(const mp_shared_memory *shm)
{
    return shm ? shm->size : 0;
}

MP_API void *mp_shared_memory_buf(const mp_shared_memory *shm)
{
    return shm ? shm->buf : NULL;
}

MP_API int mp_shared_memory_close(mp_shared_memory *shm)
{
    if (!shm)
        return -EINVAL;
    if (shm->buf) {
        mp__shm_unmap(shm->buf, shm->size);
        shm->buf = NULL;
    }
    if (shm->fd >= 0) {
        mp__close(shm->fd);
        shm->fd = -1;
    }
    return 0;
}

MP_API int mp_shared_memory_unlink(mp_shared_memory *shm)
{
    if (!shm)
        return -EINVAL;
    int rc = shm_unlink_path(shm->path);
    if (rc == -ENOENT)
        return mp__err(rc, "No such file or directory: '%s'", shm->path);
    if (rc < 0)
        return rc;
    /* As Python: unregister only once the name is really gone. A tracker
     * that cannot be told keeps a name that no longer exists; its
     * shm_unlink at the end then fails harmlessly. */
    if (shm->track)
        (void)mp__shm_tracker_unregister(shm->path);
    return 0;
}

MP_API void mp_shared_memory_free(mp_shared_memory *shm)
{
    if (!shm)
        return;
    (void)mp_shared_memory_close(shm);
    free(shm);
}
