/* libFuzzer target: what the fork server reads (forkserver.c).
 *
 *   data[0] bit 0 = 0: its prep body (mp__forkserver_body_decode), with
 *           data[1] & 7 descriptors received; the body is data[2..].
 *   data[0] bit 0 = 1: requests on its control socket (a SOCK_SEQPACKET
 *           pair, as the server has).  data[1..] is a run of messages,
 *           each [length byte][descriptor count byte: & 3][bytes], sent
 *           with that many descriptors of /dev/null (SCM_RIGHTS); then the
 *           sending end is closed and mp__forkserver_recv_request is
 *           called until it reports the end.  The server's token is fixed
 *           here (see fuzz_forkserver.dict) so that accepting is reachable.
 *
 * Oracles: only the documented answers; a decoded body's indexes name two
 * distinct received descriptors; an accepted request hands over exactly
 * one descriptor, one that was sent (/dev/null), only when some message
 * began with the token's first bytes, and never more requests than
 * messages; and no descriptor is left open (as many descriptors are open
 * before as after). */
#include "internal.h"
#include "fuzz_fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fz_token[MP__FORKSERVER_TOKEN] = "fuzz-forkserver-token-0123456789";

static void body(const uint8_t *data, size_t size)
{
    size_t nfds = data[1] & 7;
    mp__reader r;
    mp__reader_init(&r, data + 2, size - 2);
    const uint8_t *token = NULL;
    uint32_t owner_i = 0, ctl_i = 0;
    int err = mp__forkserver_body_decode(&r, nfds, &token, &owner_i, &ctl_i);
    if (err == 0 && (token == NULL || owner_i >= nfds || ctl_i >= nfds || owner_i == ctl_i))
        __builtin_trap();
    if (err != 0 && err != MP_EBADMSG)
        __builtin_trap();
}

/* One message with @nfds descriptors of /dev/null; false when it did not fit. */
static bool send_one(int sock, const uint8_t *p, size_t n, size_t nfds)
{
    int fds[FUZZ_MAX_FDS];
    fuzz_cmsg_buf u;
    struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    for (size_t i = 0; i < nfds; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nfds > 0)
        fuzz_attach_fds(&msg, &u, fds, nfds);
    bool sent = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)n;
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]); /* the copies in flight are the receiver's */
    return sent;
}

static bool is_devnull(int fd)
{
    struct stat st, nul;
    return fstat(fd, &st) == 0 && stat("/dev/null", &nul) == 0 && S_ISCHR(st.st_mode) &&
           st.st_rdev == nul.st_rdev;
}

static void requests(const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return;
    size_t off = 1, sent = 0;
    bool token_start = false;
    while (off + 2 <= size) {
        size_t len = data[off], nfds = data[off + 1] & 3;
        off += 2;
        if (len > size - off)
            len = size - off;
        if (!send_one(sv[1], data + off, len, nfds))
            break;
        /* a request whose bytes could start with the token */
        size_t k = len < MP__FORKSERVER_TOKEN ? len : MP__FORKSERVER_TOKEN;
        token_start |= len > 0 && memcmp(data + off, fz_token, k) == 0;
        off += len;
        sent++;
    }
    close(sv[1]); /* the owner hangs up: every read ends */
    size_t answered = 0;
    for (;;) {
        int chan = -1;
        int err = mp__forkserver_recv_request(sv[0], fz_token, &chan);
        if (err == MP_EOF)
            break;
        if (++answered > sent)
            __builtin_trap(); /* more requests than messages */
        if (err == MP_EPERM) {
            if (chan != -1)
                __builtin_trap();
            continue;
        }
        if (err != 0 || !token_start || chan < 0 || !is_devnull(chan))
            __builtin_trap();
        close(chan);
    }
    close(sv[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int fd0 = open_fds();
    if (data[0] & 1)
        requests(data, size);
    else
        body(data, size);
    if (open_fds() != fd0)
        __builtin_trap(); /* a descriptor was left open */
    return 0;
}
