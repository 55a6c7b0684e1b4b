/*
 * io_fds - passing descriptors over AF_UNIX sockets (SCM_RIGHTS): the
 * sendmsg/recvmsg edges of io.h's family, beside io.c to keep each file
 * short. Statics start with io_fd_.
 */
#define _GNU_SOURCE
#include "core/io.h"

#include <mpipc/common.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int mp__socket_kind(int fd, int *family, bool *stream)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl = sizeof ss;
    int type = 0;
    socklen_t tl = sizeof type;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0)
        return MP__NEG_ERRNO();
    *family = ss.ss_family;
    *stream = type == SOCK_STREAM;
    return 0;
}

int mp__fd_directions(int fd, bool *readable, bool *writable)
{
    int sock = mp__fd_is_socket(fd);
    if (sock < 0)
        return sock;
    int fl = sock ? O_RDWR : fcntl(fd, F_GETFL);
    if (fl < 0)
        return MP__NEG_ERRNO();
    *readable = (fl & O_ACCMODE) != O_WRONLY;
    *writable = (fl & O_ACCMODE) != O_RDONLY;
    return 0;
}

/* Room for MP__FDS_MAX descriptors, aligned for struct cmsghdr, plus
 * room for the credentials a socket with SO_PASSCRED gets beside them. */
union io_fd_cmsg {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MP__FDS_MAX) + 64];
};

int mp__send_fds(int fd, const void *buf, size_t n, const int *fds, size_t nfds)
{
    if (n == 0 || nfds > MP__FDS_MAX || (nfds && !fds))
        return -EINVAL;
    union io_fd_cmsg ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {(void *)buf, n};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    while (iov.iov_len > 0) {
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int wr = mp__wait_fd(fd, POLLOUT, MP__NO_DEADLINE);
                if (wr < 0)
                    return wr;
                continue;
            }
            return MP__NEG_ERRNO();
        }
        /* The kernel took the descriptors with the first byte it took. */
        iov.iov_base = (char *)iov.iov_base + w;
        iov.iov_len -= (size_t)w;
        if (w > 0) {
            msg.msg_control = NULL;
            msg.msg_controllen = 0;
        }
    }
    return 0;
}

/* Move the SCM_RIGHTS descriptors of a received message into fds, closing
 * any beyond fd_cap (the buffer's size bounds them, so none should be), and
 * make them close-on-exec where MSG_CMSG_CLOEXEC is missing. */
static void io_fd_take(struct msghdr *msg, int *fds, size_t fd_cap, size_t *nfds)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
            cm->cmsg_len < CMSG_LEN(0))
            continue;
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(cm);
        for (size_t i = 0; i < count; i++) {
            int got;
            memcpy(&got, data + i * sizeof(int), sizeof got);
#ifndef MSG_CMSG_CLOEXEC
            (void)mp__set_cloexec(got);
#endif
            if (*nfds < fd_cap)
                fds[(*nfds)++] = got;
            else
                mp__close(got);
        }
    }
}

ssize_t mp__recv_fds(int fd, void *buf, size_t n, int *fds, size_t fd_cap, size_t *nfds,
                     bool *ctrunc, bool peek, int64_t deadline)
{
    *nfds = 0;
    *ctrunc = false;
    if (n == 0 || fd_cap > MP__FDS_MAX || (fd_cap && !fds))
        return -EINVAL;
    union io_fd_cmsg ctl;
    int flags = MSG_DONTWAIT;
#ifdef MSG_CMSG_CLOEXEC
    flags |= MSG_CMSG_CLOEXEC;
#endif
    if (peek)
        flags |= MSG_PEEK;
    for (;;) {
        struct iovec iov = {buf, n};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        /* A peek gets no room: the kernel installs nothing and says with
         * MSG_CTRUNC that descriptors came with the bytes. */
        if (!peek && fd_cap) {
            msg.msg_control = ctl.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * fd_cap);
        }
        ssize_t r = recvmsg(fd, &msg, flags);
        if (r >= 0) {
            if (msg.msg_controllen)
                io_fd_take(&msg, fds, fd_cap, nfds);
            *ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return MP__NEG_ERRNO();
        /* Nothing yet: wait with what is left of the deadline. */
        int rc = mp__wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

ssize_t mp__recv_stream(int fd, void *buf, size_t n, int64_t deadline, int *fds, size_t *nfds,
                        bool *ctrunc)
{
    union io_fd_cmsg ctl;
    int flags = deadline == MP__NO_DEADLINE ? 0 : MSG_DONTWAIT;
#ifdef MSG_CMSG_CLOEXEC
    flags |= MSG_CMSG_CLOEXEC;
#endif
    if (n > SSIZE_MAX)
        n = SSIZE_MAX;
    for (;;) {
        struct iovec iov = {buf, n};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        ssize_t r = recvmsg(fd, &msg, flags);
        if (r >= 0) {
            /* The kernel sets msg_controllen to what it wrote: 0 on the
             * common path, which costs nothing more than recv(). */
            if (__builtin_expect(msg.msg_controllen != 0 || (msg.msg_flags & MSG_CTRUNC), 0)) {
                io_fd_take(&msg, fds, MP__FDS_MAX, nfds);
                *ctrunc = (msg.msg_flags & MSG_CTRUNC) != 0;
            }
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return MP__NEG_ERRNO();
        /* No data yet (or a descriptor someone made non-blocking). */
        int rc = mp__wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}
