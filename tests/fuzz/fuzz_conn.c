/* libFuzzer target: the bytes a peer writes on a connection.
 *
 *   data[0]  which reader (mod 6):
 *     0  mp_conn_recv_bytes until an error (maxlength picked by data[1])
 *     1  mp_conn_recv (typed messages) until an error
 *     2  mp_conn_recv_bytes_into until an error other than MP_EMSGSIZE
 *        (buffer size picked by data[1])
 *     3  as 0, over a pipe instead of a socketpair
 *     4  mp__auth_answer: the stream is the challenger's side
 *     5  mp__auth_deliver: the stream is the responder's side; it can
 *        never hold the MAC of a fresh random challenge, so success is a bug
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
 */
#include "internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int mode = data[0] % 6;
    size_t param = sizes[data[1] & 7];
    const uint8_t *stream = data + 2;
    size_t n = size - 2;
    if (n > STREAM_MAX)
        n = STREAM_MAX;

    mp_conn *c = NULL;
    int peer = -1;
    if (mode == 3) {
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
        read_args(c);
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
    return 0;
}
