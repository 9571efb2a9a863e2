/* libFuzzer target: the bytes a peer writes on a connection.
 *
 *   data[0]  which reader (mod 8):
 *     0  mp_conn_recv_bytes until an error (maxlength picked by data[1])
 *     1  mp_conn_recv (typed messages) until an error
 *     2  mp_conn_recv_bytes_into until an error other than MP_EMSGSIZE
 *        (buffer size picked by data[1])
 *     3  as 0, over a pipe instead of a socketpair
 *     4  mp__auth_answer: the stream is the challenger's side
 *     5  mp__auth_deliver: the stream is the responder's side; it can
 *        never hold the MAC of a fresh random challenge, so success is a bug
 *     6  mp_conn_recv (typed messages) from a stream sent in pieces, each
 *        with descriptors (SCM_RIGHTS): the receive path that takes them
 *     7  as 6, read by mp_conn_recv_bytes, which wants no descriptors
 *   data[1]  a size parameter
 *   data[2..] the peer's stream
 *
 * The stream is written into one end of a socketpair (or pipe) whose writing
 * side is then shut, so every read ends at end of file and nothing can hang.
 * Only what fits in the socket buffer is written (at most 32 KiB, with a
 * non-blocking write), and the peer stays open for the replies a handshake
 * writes.  Checked: no crash or leak (sanitizers), only the documented error
 * codes, lengths within the limits asked for, and memory that follows the
 * bytes received rather than the lengths announced.
 *
 * Modes 6 and 7 send data[2..] as pieces [length byte][descriptor byte]
 * [bytes]: the descriptor byte's bits 0-1 are how many (0..3) go with the
 * piece, bits 2-3 what they are (/dev/null, a socket, a sealed memfd, one
 * of each).  Every descriptor that arrives must be closed again by the
 * library, whatever it made of the bytes: as many descriptors are open
 * before as after.
 */
#include "internal.h"
#include "fuzz_fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAM_MAX 32768

static const size_t sizes[8] = {0, 1, 4, 16, 255, 256, 4096, 65536};

static bool expected_error(int r)
{
    return r == MP_EOF || r == MP_ETRUNCATED || r == MP_EBADMSG || r == MP_EMSGSIZE ||
           r == MP_EBADF;
}

/* Memory may follow what arrived (with slack for growth), never a length. */
static void check_cap(const mp_buf *b, size_t streamed)
{
    if (b->cap > 2 * streamed + ((size_t)16 << 20))
        __builtin_trap();
}

static size_t feed(int fd, const uint8_t *p, size_t n)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    return done;
}

static void read_bytes(mp_conn *c, size_t maxlength, size_t streamed)
{
    mp_buf in = MP_BUF_INIT;
    size_t limit = maxlength ? maxlength : MP_CONN_MAXLEN;
    int r;
    size_t got = 0;
    while ((r = mp_conn_recv_bytes(c, &in, maxlength)) == 0) {
        if (in.len > limit || in.len > in.cap)
            __builtin_trap();
        got += in.len + 4;
        if (got > streamed)
            __builtin_trap(); /* more than was sent */
        check_cap(&in, streamed);
    }
    if (!expected_error(r))
        __builtin_trap();
    check_cap(&in, streamed);
    if (r == MP_EMSGSIZE &&
        (mp_conn_readable(c) || mp_conn_recv_bytes(c, &in, maxlength) != MP_EBADF))
        __builtin_trap(); /* a refused end stops being readable */
    mp_buf_free(&in);
}

static void read_args(mp_conn *c)
{
    mp_args *a = NULL;
    int r;
    while ((r = mp_conn_recv(c, &a)) == 0) {
        if (a == NULL)
            __builtin_trap();
        (void)mp_args_count(a);
        mp_args_free(a);
        a = NULL;
    }
    if (a != NULL || !expected_error(r))
        __builtin_trap();
}

static void read_into(mp_conn *c, size_t cap)
{
    static uint8_t buf[65536];
    int r;
    size_t len;
    do {
        len = (size_t)-1;
        r = mp_conn_recv_bytes_into(c, buf, cap, &len);
        if (r == 0 && len > cap)
            __builtin_trap();
        /* too long for @cap: consumed, *len its length; or beyond the
         * default cap: refused unread, and the end is no longer readable */
        if (r == MP_EMSGSIZE && mp_conn_readable(c) && (len <= cap || len == (size_t)-1))
            __builtin_trap();
    } while (r == 0 || r == MP_EMSGSIZE);
    if (!expected_error(r))
        __builtin_trap();
}

static const char key[] = "fuzz key";

static int piece_fd(unsigned kind, size_t i)
{
    if (kind == 3)
        kind = (unsigned)i % 3;
    if (kind == 1) {
        int sv[2];
        if (mp__sys_socketpair(SOCK_STREAM, sv) < 0)
            return -1;
        mp__sys_close(sv[1]);
        return sv[0];
    }
    if (kind == 2) {
        int fd = mp__sys_memfd("fuzz-conn");
        if (fd >= 0 && mp__sys_memfd_size(fd, 4096) != 0) {
            close(fd);
            return -1;
        }
        return fd;
    }
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Send the pieces of @stream on @sock (non-blocking: what does not fit is
 * dropped); the number of bytes sent. */
static size_t feed_pieces(int sock, const uint8_t *stream, size_t n)
{
    size_t off = 0, sent = 0;
    while (off + 2 <= n) {
        size_t len = stream[off], nfds = stream[off + 1] & 3;
        unsigned kind = (stream[off + 1] >> 2) & 3;
        off += 2;
        if (len > n - off)
            len = n - off;
        int fds[FUZZ_MAX_FDS];
        fuzz_cmsg_buf u;
        struct iovec iov = {.iov_base = (void *)(stream + off), .iov_len = len};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        size_t k = 0;
        for (; k < nfds; k++)
            if ((fds[k] = piece_fd(kind, k)) < 0)
                break;
        if (k > 0 && len > 0) /* descriptors ride on at least one byte */
            fuzz_attach_fds(&msg, &u, fds, k);
        ssize_t w = len > 0 ? sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
        for (size_t i = 0; i < k; i++)
            close(fds[i]); /* those in flight are the receiver's now */
        if (w < 0)
            break;
        sent += (size_t)w;
        if ((size_t)w < len)
            break;
        off += len;
    }
    return sent;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int mode = data[0] % 8;
    size_t param = sizes[data[1] & 7];
    const uint8_t *stream = data + 2;
    size_t n = size - 2;
    if (n > STREAM_MAX)
        n = STREAM_MAX;

    mp_conn *c = NULL;
    int peer = -1;
    int fd0 = open_fds();
    if (mode == 6 || mode == 7) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return 0;
        n = feed_pieces(sv[1], stream, n);
        close(sv[1]); /* nothing is written back in these modes */
        if (mp_conn_from_fd(&c, sv[0], true, true) != 0) {
            close(sv[0]);
            return 0;
        }
    } else if (mode == 3) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0)
            return 0;
        n = feed(p[1], stream, n);
        close(p[1]);
        if (mp_conn_from_fd(&c, p[0], true, false) != 0) {
            close(p[0]);
            return 0;
        }
    } else {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return 0;
        n = feed(sv[1], stream, n);
        shutdown(sv[1], SHUT_WR); /* reads end at EOF; replies still land */
        peer = sv[1];
        if (mp_conn_from_fd(&c, sv[0], true, true) != 0) {
            close(sv[0]);
            close(peer);
            return 0;
        }
    }

    switch (mode) {
    case 0:
    case 3:
        read_bytes(c, param, n);
        break;
    case 1:
    case 6:
        read_args(c);
        break;
    case 7:
        read_bytes(c, param, n);
        break;
    case 2:
        read_into(c, param);
        break;
    case 4: {
        int r = mp__auth_answer(c, key, sizeof key - 1);
        if (r != 0 && r != MP_EAUTH && r != MP_EPIPE && !expected_error(r))
            __builtin_trap();
        break;
    }
    case 5: {
        int r = mp__auth_deliver(c, key, sizeof key - 1);
        if (r == 0)
            __builtin_trap(); /* accepted a reply made without the challenge */
        if (r != MP_EAUTH && r != MP_EPIPE && !expected_error(r))
            __builtin_trap();
        break;
    }
    }
    mp_conn_close(c);
    if (peer >= 0)
        close(peer);
    if (open_fds() != fd0)
        __builtin_trap(); /* a received descriptor was left open */
    return 0;
}
