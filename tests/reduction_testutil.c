/*
 * reduction_testutil - what the reduction test binaries share (test_reduction
 * for the handle calls, test_reduction_readahead for handles mixed with
 * messages on an end that reads ahead): files that prove which descriptor
 * arrived, messages, and raw sendmsg peers.
 */
#include "reduction_testutil.h"

#include "core/io.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* An unnamed file holding text, for a handle whose contents prove which
 * file arrived. */
int make_file(const char *text)
{
    int fd = mp__anon_file("mpipc-reduction-test");
    assert_true(fd >= 0);
    assert_int_equal(mp__pwrite_all(fd, text, strlen(text), 0), 0);
    return fd;
}

/* 0 if fd's file starts with text. */
int file_has(int fd, const char *text)
{
    char buf[128];
    ssize_t r = pread(fd, buf, sizeof buf, 0);
    size_t n = strlen(text);
    return r == (ssize_t)n && memcmp(buf, text, n) == 0 ? 0 : 1;
}

/* 0 if the next message on c is want. */
int expect_bytes(mp_conn *c, const char *want)
{
    void *buf;
    size_t len;
    int rc = mp_conn_recv_bytes(c, 0, &buf, &len, T_LONG);
    if (rc)
        return rc;
    int ok = len == strlen(want) && memcmp(buf, want, len) == 0;
    free(buf);
    return ok ? 0 : -12345;
}

int send_str(mp_conn *c, const char *s)
{
    return mp_conn_send_bytes(c, s, strlen(s));
}

/*
 * A hostile peer: one sendmsg() of the byte `count` with n fresh
 * descriptors (of /dev/null) in SCM_RIGHTS, which it then closes, so that
 * afterwards only the receiver can hold them.
 */
void raw_send(int sock, unsigned char count, int n)
{
    int fds[32];
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 32)];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {&count, 1};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 0) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
    }
    assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), 1);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* A hostile peer: one sendmsg() of len bytes with n fresh descriptors. */
void raw_sendmsg(int sock, const void *buf, size_t len, int n)
{
    int fds[32];
    assert_true(n <= 32);
    for (int i = 0; i < n; i++) {
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fds[i] >= 0);
    }
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 32)];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {(void *)buf, len};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (n > 0) {
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
    }
    assert_int_equal(sendmsg(sock, &msg, MSG_NOSIGNAL), (ssize_t)len);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* A framed message (Python's 4-byte big-endian length) with n descriptors. */
void raw_send_framed(int sock, const char *payload, int n)
{
    unsigned char frame[64];
    size_t len = strlen(payload);
    assert_true(len + 4 <= sizeof frame);
    frame[0] = frame[1] = frame[2] = 0;
    frame[3] = (unsigned char)len;
    memcpy(frame + 4, payload, len);
    raw_sendmsg(sock, frame, len + 4, n);
}
