/* Shared by the fuzz targets that send descriptors and check for leaked ones. */
#ifndef MP_FUZZ_FDS_H
#define MP_FUZZ_FDS_H

#include <dirent.h>
#include <string.h>
#include <sys/socket.h>

/* The most descriptors a fuzz target sends with one message. */
#define FUZZ_MAX_FDS 3

/* Control buffer for FUZZ_MAX_FDS descriptors, aligned for a cmsghdr. */
typedef union fuzz_cmsg_buf {
    char buf[CMSG_SPACE(FUZZ_MAX_FDS * sizeof(int))];
    struct cmsghdr align;
} fuzz_cmsg_buf;

/* Attach @k (1..FUZZ_MAX_FDS) descriptors to @msg as SCM_RIGHTS, in @u. */
static inline void fuzz_attach_fds(struct msghdr *msg, fuzz_cmsg_buf *u, const int *fds, size_t k)
{
    memset(u, 0, sizeof *u);
    msg->msg_control = u->buf;
    msg->msg_controllen = CMSG_SPACE(k * sizeof(int));
    struct cmsghdr *cm = CMSG_FIRSTHDR(msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(k * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, k * sizeof(int));
}

/* How many descriptors are open.  (The lowest free number would not do:
 * a leaked descriptor can sit above a hole that closes again.) */
static inline int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return n;
}

#endif
