/*
 * The only home of descriptor-creating and interruptible syscalls.  Every
 * descriptor is born CLOEXEC and is never 0..2; EINTR is retried.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

/* Move a descriptor off 0..2 (someone closed stdio): never hand those out. */
static int above_stdio(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    close(fd);
    errno = err;
    return nfd;
}

static int ret_fd(int fd)
{
    fd = above_stdio(fd);
    return fd < 0 ? -errno : fd;
}

/* Both ends of a new pair off 0..2; on failure neither is left open. */
static int pair_above_stdio(int fds[2])
{
    fds[0] = above_stdio(fds[0]);
    fds[1] = above_stdio(fds[1]);
    if (fds[0] >= 0 && fds[1] >= 0)
        return 0;
    int err = -errno;
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    return err;
}

int mp__sys_socketpair(int type, int sv[2])
{
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    return pair_above_stdio(sv);
}

int mp__sys_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    return pair_above_stdio(fds);
}

int mp__sys_dup(int fd)
{
    int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return nfd < 0 ? -errno : nfd;
}

int mp__sys_pidfd_open(pid_t pid)
{
    /* pidfds are always close-on-exec */
    return ret_fd((int)syscall(SYS_pidfd_open, pid, 0));
}

int mp__sys_pidfd_send_signal(int pidfd, int sig)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
        return -errno;
    return 0;
}

int mp__sys_open_devnull(int flags)
{
    return ret_fd(open("/dev/null", flags | O_CLOEXEC));
}

int mp__sys_memfd(const char *name)
{
    return ret_fd(memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
}

#define SIZE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

int mp__sys_memfd_size(int fd, uint64_t size)
{
    if (size > (uint64_t)INT64_MAX)
        return MP_EINVAL;
    while (ftruncate(fd, (off_t)size) < 0)
        if (errno != EINTR)
            return -errno;
    return fcntl(fd, F_ADD_SEALS, SIZE_SEALS | F_SEAL_SEAL) < 0 ? -errno : 0;
}

int mp__sys_memfd_sized(int fd, uint64_t *size)
{
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0)
        return errno == EINVAL ? MP_EBADMSG : -errno; /* not a memfd */
    if ((seals & SIZE_SEALS) != SIZE_SEALS)
        return MP_EBADMSG;
    if (fstat(fd, &st) < 0)
        return -errno;
    *size = (uint64_t)st.st_size;
    return 0;
}

int mp__sys_shm_open(const char *name, int flags)
{
    /* O_NOFOLLOW: a symlink planted in /dev/shm is never followed (musl) */
    return ret_fd(shm_open(name, flags | O_NOFOLLOW | O_CLOEXEC, 0600));
}

int mp__sys_signalfd(const sigset_t *mask)
{
    return ret_fd(signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK));
}

void mp__sys_close(int fd)
{
    if (fd < 0)
        return;
    int err = errno;
    close(fd); /* never retried: the descriptor is gone either way */
    errno = err;
}

int mp__sys_poll1(int fd, short events, const mp__deadline *d)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&pfd, 1, mp__deadline_poll_ms(d));
        if (r > 0) {
            if (pfd.revents & POLLNVAL)
                return MP_EBADF;
            return 1;
        }
        if (r == 0) {
            if (mp__deadline_expired(d))
                return 0;
            continue; /* poll's ms rounding woke us early */
        }
        if (errno != EINTR)
            return -errno;
    }
}

int mp__sys_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == ENOTSOCK)
            w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int mp__sys_read_all(int fd, void *p, size_t n)
{
    char *c = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, c + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return got == 0 ? MP_EOF : MP_ETRUNCATED;
        got += (size_t)r;
    }
    return 0;
}

int mp__sys_send_fds(int sock, const void *p, size_t n, const int *fds, size_t nfds)
{
    if (nfds > MP__MAX_FDS || n == 0)
        return MP_EINVAL;
    mp__fdbuf u;
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    mp__sys_pack_fds(&msg, &u, fds, nfds);
    ssize_t w;
    do
        w = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -errno;
    if ((size_t)w < n)
        return mp__sys_write_all(sock, (const char *)p + w, n - (size_t)w);
    return 0;
}

int mp__sys_recv_fds(int sock, void *p, size_t n, int *fds, size_t maxfds, size_t *nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * MP__MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = p, .iov_len = n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    ssize_t r;
    *nfds = 0;
    do
        r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    int err = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int tmp[MP__MAX_FDS];
        if (k > MP__MAX_FDS)
            k = MP__MAX_FDS;
        memcpy(tmp, CMSG_DATA(cm), k * sizeof(int));
        for (size_t i = 0; i < k; i++) {
            int fd = above_stdio(tmp[i]);
            if (fd >= 0 && *nfds < maxfds)
                fds[(*nfds)++] = fd;
            else {
                mp__sys_close(fd);
                err = MP_EBADMSG;
            }
        }
    }
    if (msg.msg_flags & MSG_CTRUNC)
        err = MP_EBADMSG;
    if (r == 0)
        err = err ? err : MP_EOF;
    else if ((size_t)r < n && err == 0) {
        int e = mp__sys_read_all(sock, (char *)p + r, n - (size_t)r);
        if (e < 0)
            err = e == MP_EOF ? MP_ETRUNCATED : e;
    }
    if (err < 0) {
        for (size_t i = 0; i < *nfds; i++)
            mp__sys_close(fds[i]);
        *nfds = 0;
    }
    return err;
}

int mp__sys_eventfd(unsigned init, int flags)
{
    return ret_fd(eventfd(init, flags | EFD_CLOEXEC));
}

int mp__sys_socket(int family, int type)
{
    return ret_fd(socket(family, type | SOCK_CLOEXEC, 0));
}

int mp__sys_accept(int lfd)
{
    return ret_fd(accept4(lfd, NULL, NULL, SOCK_CLOEXEC));
}

void mp__sys_pack_fds(struct msghdr *msg, mp__fdbuf *buf, const int *fds, size_t nfds)
{
    if (nfds == 0)
        return;
    memset(buf, 0, sizeof *buf);
    msg->msg_control = buf->buf;
    msg->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *cm = CMSG_FIRSTHDR(msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
}
