/*
 * Connections: PYTHON-SEMANTICS sections 4-7 and 20.1/20.4/20.5 that apply
 * to C (Pipe, framing on the wire, recv variants, poll, typed messages and
 * descriptor passing, Listener/Client on every address family, the authkey
 * handshake in both roles against a hand-written peer, mp_wait, signals).
 *
 * A "raw peer" is the other end of a socketpair written with write(2), so
 * that the receiver sees exactly the bytes a test chooses (truncated frames,
 * bad lengths, the large form, hand-made handshake messages).
 */
#include "mp_test.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

#define MIB ((size_t)1 << 20)

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            MP__FAIL("write(%d, %zu bytes): %s", fd, n, strerror(errno));
        q += w;
        n -= (size_t)w;
    }
}

/* Read exactly @n bytes (fails on end of file or error). */
static void read_exact(int fd, void *p, size_t n)
{
    char *q = p;
    while (n > 0) {
        ssize_t r = read(fd, q, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            MP__FAIL("read(%d): %s with %zu bytes missing", fd,
                     r == 0 ? "end of file" : strerror(errno), n);
        q += r;
        n -= (size_t)r;
    }
}

/* Is something (data or end of file) readable on @fd right now? */
static bool fd_ready(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

/* Write one frame in the normal form (4-byte big-endian length). */
static void put_frame(int fd, const void *p, size_t n)
{
    uint8_t h[4];
    put_u32(h, (uint32_t)n);
    write_all(fd, h, 4);
    write_all(fd, p, n);
}

/* Write one frame in the large form (FF FF FF FF + 8-byte length). */
static void put_large_frame(int fd, const void *p, size_t n)
{
    uint8_t h[12] = {0xff, 0xff, 0xff, 0xff};
    put_u64(h + 4, n);
    write_all(fd, h, 12);
    write_all(fd, p, n);
}

/* Read one normal-form frame from a raw descriptor; returns its length. */
static size_t get_frame(int fd, void *buf, size_t cap)
{
    uint8_t h[4];
    read_exact(fd, h, 4);
    uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n > cap)
        MP__FAIL("a frame of %u bytes, more than the %zu expected", n, cap);
    read_exact(fd, buf, n);
    return n;
}

/* A connection whose peer is a raw socket the test writes by hand. */
static void raw_pair(mp_conn **c, int *peer)
{
    int sv[2];
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_OK(mp_conn_from_fd(c, sv[0], true, true));
    *peer = sv[1];
}

static void fill(void *p, size_t n, unsigned seed)
{
    uint8_t *q = p;
    for (size_t i = 0; i < n; i++)
        q[i] = (uint8_t)(i * 131u + (i >> 11) + seed);
}

static bool check_fill(const void *p, size_t n, unsigned seed)
{
    const uint8_t *q = p;
    for (size_t i = 0; i < n; i++)
        if (q[i] != (uint8_t)(i * 131u + (i >> 11) + seed))
            return false;
    return true;
}

/* Receive one message and compare it. */
#define EXPECT_MSG(c, want, n)                                                           \
    do {                                                                                 \
        mp_buf b_ = MP_BUF_INIT;                                                         \
        size_t n_ = (n);                                                                 \
        ASSERT_OK(mp_conn_recv_bytes((c), &b_, 0));                                      \
        ASSERT_EQ(n_, b_.len);                                                           \
        ASSERT_MEMEQ((want), b_.data, n_);                                               \
        mp_buf_free(&b_);                                                                \
    } while (0)

#define EXPECT_STR(c, s) EXPECT_MSG(c, s, strlen(s))
#define SEND_STR(c, s) ASSERT_OK(mp_conn_send_bytes((c), (s), strlen(s)))

/* A thread that sends one message after a delay. */
typedef struct sender {
    pthread_t tid;
    mp_conn *c;
    const void *p;
    size_t n;
    double delay;
    int rc;
} sender;

static void *sender_main(void *arg)
{
    sender *s = arg;
    if (s->delay > 0)
        sleep_s(s->delay);
    s->rc = mp_conn_send_bytes(s->c, s->p, s->n);
    return NULL;
}

static void sender_start(sender *s, mp_conn *c, const void *p, size_t n, double delay)
{
    *s = (sender){.c = c, .p = p, .n = n, .delay = delay, .rc = -12345};
    ASSERT_EQ(0, pthread_create(&s->tid, NULL, sender_main, s));
}

static int sender_join(sender *s)
{
    ASSERT_EQ(0, pthread_join(s->tid, NULL));
    return s->rc;
}

/* ---- Pipe: a duplex echo child under each start method ------------------ */

/* args: (conn).  Echoes every message until "quit"; the exit code says what
 * went wrong otherwise. */
static int t_echo(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    if (c == NULL || !mp_conn_readable(c) || !mp_conn_writable(c))
        return 20;
    mp_buf b = MP_BUF_INIT;
    int ret = 0;
    for (;;) {
        int r = mp_conn_recv_bytes(c, &b, 0);
        if (r != 0) {
            ret = r == MP_EOF ? 21 : 22;
            break;
        }
        if (b.len == 4 && memcmp(b.data, "quit", 4) == 0)
            break;
        if (mp_conn_send_bytes(c, b.data, b.len) != 0) {
            ret = 23;
            break;
        }
    }
    mp_buf_free(&b);
    return ret;
}

MP_TEST(pipe_duplex_echo_child, .variants = MP_START_METHODS, .timeout_s = 90)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_GE(mp_conn_fileno(a), 0);
    ASSERT_GE(mp_conn_fileno(b), 0);
    ASSERT_NE(mp_conn_fileno(a), mp_conn_fileno(b));
    ASSERT_TRUE(mp_conn_readable(a) && mp_conn_writable(a));
    ASSERT_TRUE(mp_conn_readable(b) && mp_conn_writable(b));
    struct stat st;
    ASSERT_EQ(0, fstat(mp_conn_fileno(a), &st));
    ASSERT_TRUE(S_ISSOCK(st.st_mode));

    mp_args *args;
    ASSERT_OK(mp_args_new(&args));
    ASSERT_OK(mp_args_add_conn(args, b));
    ASSERT_EQ(MP_ARG_OBJECT, mp_args_type(args, 0));
    mp_process *p;
    p = mp_test_start(ctx, t_echo, args);
    mp_args_free(args);
    ASSERT_OK(mp_conn_close(b)); /* test_spawn_close: messages still flow */

    SEND_STR(a, "hello");
    EXPECT_STR(a, "hello");
    ASSERT_OK(mp_conn_send_bytes(a, "", 0));
    EXPECT_MSG(a, "", 0);
    ASSERT_OK(mp_conn_send_bytes(a, "a\0b", 3));
    EXPECT_MSG(a, "a\0b", 3);

    /* one message of each size, through the child and back */
    static const size_t sizes[] = {16384, 16385, 300000, 16 * MIB};
    mp_buf in = MP_BUF_INIT;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *big = malloc(sizes[i]);
        ASSERT_TRUE(big != NULL);
        fill(big, sizes[i], (unsigned)i);
        ASSERT_OK(mp_conn_send_bytes(a, big, sizes[i]));
        ASSERT_OK(mp_conn_recv_bytes(a, &in, 0));
        ASSERT_EQ(sizes[i], in.len);
        ASSERT_TRUE(check_fill(in.data, in.len, (unsigned)i));
        free(big);
    }
    mp_buf_free(&in);

    /* recv_bytes_into: the byte count, from offset 0; too short: consumed */
    int32_t four[4] = {1, 2, 3, 4}, got[4] = {0};
    size_t len = 0;
    ASSERT_OK(mp_conn_send_bytes(a, four, sizeof four));
    ASSERT_OK(mp_conn_recv_bytes_into(a, got, sizeof got, &len));
    ASSERT_EQ(16, len);
    ASSERT_MEMEQ(four, got, sizeof four);
    ASSERT_OK(mp_conn_send_bytes(a, four, sizeof four));
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes_into(a, got, 8, &len));
    ASSERT_EQ(16, len);
    SEND_STR(a, "after");
    EXPECT_STR(a, "after");

    /* a typed message is a framed message too: the echo gives it back */
    mp_args *m, *back;
    ASSERT_OK(mp_args_of(&m, "ids", 1729, 0.5, "text"));
    ASSERT_OK(mp_conn_send(a, m));
    ASSERT_OK(mp_conn_recv(a, &back));
    ASSERT_EQ(3, mp_args_count(back));
    ASSERT_EQ(1729, mp_args_int(back, 0));
    ASSERT_TRUE(mp_args_double(back, 1) == 0.5);
    ASSERT_STREQ("text", mp_args_str(back, 2));
    mp_args_free(back);
    mp_args_free(m);

    /* poll: nothing pending */
    double t0 = mp_monotonic();
    ASSERT_EQ(0, mp_conn_poll(a, 0));
    ASSERT_LT(mp_monotonic() - t0, 1.0);
    t0 = mp_monotonic();
    ASSERT_EQ(0, mp_conn_poll(a, 0.1));
    ASSERT_GE(mp_monotonic() - t0, 0.09);
    SEND_STR(a, "x");
    t0 = mp_monotonic();
    ASSERT_EQ(1, mp_conn_poll(a, 10));
    EXPECT_STR(a, "x");

    SEND_STR(a, "quit");
    ASSERT_EQ(0, mp_test_join(p, 60));
    /* every copy of the child's end is gone: EOF, and the flags stay */
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(a, &in, 0));
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(a, &in, 0));
    ASSERT_TRUE(mp_conn_readable(a) && mp_conn_writable(a));
    mp_buf_free(&in);
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(NULL));
}

/* ---- one-way pipes ------------------------------------------------------ */

MP_TEST(pipe_one_way)
{
    mp_conn *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false)); /* reader first, as Python */
    ASSERT_TRUE(mp_conn_readable(r));
    ASSERT_FALSE(mp_conn_writable(r));
    ASSERT_FALSE(mp_conn_readable(w));
    ASSERT_TRUE(mp_conn_writable(w));
    struct stat st;
    ASSERT_EQ(0, fstat(mp_conn_fileno(r), &st));
    ASSERT_TRUE(S_ISFIFO(st.st_mode));

    mp_buf buf = MP_BUF_INIT;
    char tmp[16];
    size_t len;
    mp_args *m, *got = NULL;
    ASSERT_OK(mp_args_of(&m, "i", 7));
    ASSERT_ERR(MP_EBADF, mp_conn_send_bytes(r, "x", 1));
    ASSERT_ERR(MP_EBADF, mp_conn_send(r, m));
    ASSERT_ERR(MP_EBADF, mp_conn_recv_bytes(w, &buf, 0));
    ASSERT_ERR(MP_EBADF, mp_conn_recv_bytes_into(w, tmp, sizeof tmp, &len));
    ASSERT_ERR(MP_EBADF, mp_conn_recv(w, &got));
    ASSERT_ERR(MP_EBADF, mp_conn_poll(w, 0));
    ASSERT_ERR(MP_EBADF, mp_conn_poll(w, 0.1));

    ASSERT_EQ(0, mp_conn_poll(r, 0));
    SEND_STR(w, "abc");
    ASSERT_EQ(1, mp_conn_poll(r, 0));
    EXPECT_STR(r, "abc");

    /* the bytes on the wire are Python's */
    SEND_STR(w, "abc");
    uint8_t raw[7];
    read_exact(mp_conn_fileno(r), raw, 7);
    ASSERT_MEMEQ("\0\0\0\3abc", raw, 7);

    ASSERT_OK(mp_conn_send(w, m));
    ASSERT_OK(mp_conn_recv(r, &got));
    ASSERT_EQ(1, mp_args_count(got));
    ASSERT_EQ(7, mp_args_int(got, 0));
    mp_args_free(got);
    mp_args_free(m);

    ASSERT_OK(mp_conn_close(w));
    ASSERT_EQ(1, mp_conn_poll(r, 0)); /* end of file counts */
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(r, &buf, 0));
    mp_buf_free(&buf);
    ASSERT_OK(mp_conn_close(r));
}

/* A gone peer is MP_EPIPE, never a SIGPIPE death. */
MP_TEST(send_to_a_gone_peer)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_OK(mp_conn_close(b));
    ASSERT_ERR(MP_EPIPE, mp_conn_send_bytes(a, "x", 1));
    ASSERT_OK(mp_conn_close(a));

    mp_conn *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    ASSERT_OK(mp_conn_close(r));
    ASSERT_ERR(MP_EPIPE, mp_conn_send_bytes(w, "x", 1));
    ASSERT_ERR(MP_EPIPE, mp_conn_send_bytes(w, "", 0));
    ASSERT_OK(mp_conn_close(w));
}

/* args: (write-only conn).  test_strings: messages, empty ones included,
 * sent with small gaps. */
static const char *const strings_seq[] = {"hello", "", "a", "b", "", "bye", "", "lop"};

static int t_send_strings(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    if (mp_conn_readable(c) || !mp_conn_writable(c))
        return 20; /* a pipe end keeps its direction */
    for (size_t i = 0; i < sizeof strings_seq / sizeof strings_seq[0]; i++) {
        sleep_s(0.02);
        if (mp_conn_send_bytes(c, strings_seq[i], strlen(strings_seq[i])) != 0)
            return 21;
    }
    return 0;
}

MP_TEST(pipe_one_way_strings_from_child, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_conn *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args *args;
    ASSERT_OK(mp_args_new(&args));
    ASSERT_OK(mp_args_add_conn(args, w));
    mp_process *p;
    p = mp_test_start(ctx, t_send_strings, args);
    mp_args_free(args);
    ASSERT_OK(mp_conn_close(w));

    mp_buf b = MP_BUF_INIT;
    double until = mp_monotonic() + 30;
    for (size_t i = 0; i < sizeof strings_seq / sizeof strings_seq[0]; i++) {
        int r1;
        while ((r1 = mp_conn_poll(r, 0.01)) == 0 && mp_monotonic() < until)
            ;
        ASSERT_EQ(1, r1);
        ASSERT_OK(mp_conn_recv_bytes(r, &b, 0));
        ASSERT_EQ(strlen(strings_seq[i]), b.len);
        ASSERT_MEMEQ(strings_seq[i], b.data, b.len);
    }
    ASSERT_EQ(0, mp_test_join(p, 60));
    ASSERT_EQ(1, mp_conn_poll(r, 10)); /* every writer is gone */
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(r, &b, 0));
    mp_buf_free(&b);
    ASSERT_OK(mp_conn_close(r));
}

/* ---- framing ------------------------------------------------------------ */

MP_TEST(wire_format_is_pythons)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    int fb = mp_conn_fileno(b);
    uint8_t raw[16 + 16385];

    SEND_STR(a, "abc");
    read_exact(fb, raw, 7);
    ASSERT_MEMEQ("\0\0\0\3abc", raw, 7);
    ASSERT_OK(mp_conn_send_bytes(a, "", 0));
    read_exact(fb, raw, 4);
    ASSERT_MEMEQ("\0\0\0\0", raw, 4);
    uint8_t big[16385];
    fill(big, sizeof big, 3);
    ASSERT_OK(mp_conn_send_bytes(a, big, sizeof big));
    read_exact(fb, raw, 4 + sizeof big);
    ASSERT_MEMEQ("\0\0\x40\x01", raw, 4);
    ASSERT_MEMEQ(big, raw + 4, sizeof big);
    ASSERT_FALSE(fd_ready(fb)); /* nothing else was written */

    /* and hand-made frames are read back */
    put_frame(fb, "xyz", 3);
    put_frame(fb, "", 0);
    EXPECT_STR(a, "xyz");
    EXPECT_MSG(a, "", 0);
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
}

MP_TEST(send_recv_bytes_sizes, .timeout_s = 60)
{
    static const size_t sizes[] = {0,     1,      3,      100,     4095,    16383,
                                   16384, 16385,  65536,  200000,  1 * MIB, 16 * MIB,
                                   0,     7};
    enum { N = sizeof sizes / sizeof sizes[0] };
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    void *out[N];
    for (size_t i = 0; i < N; i++) {
        out[i] = malloc(sizes[i] ? sizes[i] : 1);
        ASSERT_TRUE(out[i] != NULL);
        fill(out[i], sizes[i], (unsigned)i * 7);
    }
    mp_buf in = MP_BUF_INIT; /* one buffer, reused for every message */
    for (size_t i = 0; i < N; i++) {
        sender s;
        sender_start(&s, a, out[i], sizes[i], 0);
        /* maxlength equal to the size is fine */
        ASSERT_OK(mp_conn_recv_bytes(b, &in, i % 2 ? sizes[i] : 0));
        ASSERT_OK(sender_join(&s));
        ASSERT_EQ(sizes[i], in.len);
        ASSERT_LE(in.len, in.cap);
        ASSERT_TRUE(check_fill(in.data, in.len, (unsigned)i * 7));
    }
    ASSERT_EQ(0, mp_conn_poll(b, 0));
    for (size_t i = 0; i < N; i++)
        free(out[i]);
    mp_buf_free(&in);
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
}

MP_TEST(recv_bytes_into)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    char buf[64];
    size_t len;

    /* an exact fit */
    int32_t four[4] = {1, -2, 3, 0x7fffffff}, got[4] = {0};
    ASSERT_OK(mp_conn_send_bytes(a, four, sizeof four));
    len = 99;
    ASSERT_OK(mp_conn_recv_bytes_into(b, got, sizeof got, &len));
    ASSERT_EQ(16, len);
    ASSERT_MEMEQ(four, got, 16);

    /* one byte short: consumed and dropped, *len the full length */
    SEND_STR(a, "0123456789abcdef!");
    SEND_STR(a, "next");
    len = 0;
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes_into(b, buf, 16, &len));
    ASSERT_EQ(17, len);
    len = 0;
    ASSERT_OK(mp_conn_recv_bytes_into(b, buf, 16, &len));
    ASSERT_EQ(4, len);
    ASSERT_MEMEQ("next", buf, 4);

    /* a much longer message, then the next one intact */
    enum { LONG = 60000 };
    static uint8_t longmsg[LONG];
    fill(longmsg, LONG, 9);
    sender s;
    sender_start(&s, a, longmsg, LONG, 0);
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes_into(b, buf, 10, &len));
    ASSERT_EQ(LONG, len);
    ASSERT_OK(sender_join(&s));
    SEND_STR(a, "after");
    ASSERT_OK(mp_conn_recv_bytes_into(b, buf, sizeof buf, &len));
    ASSERT_EQ(5, len);
    ASSERT_MEMEQ("after", buf, 5);

    /* an empty message fits anywhere */
    ASSERT_OK(mp_conn_send_bytes(a, "", 0));
    len = 99;
    ASSERT_OK(mp_conn_recv_bytes_into(b, buf, 0, &len));
    ASSERT_EQ(0, len);
    ASSERT_OK(mp_conn_send_bytes(a, "", 0));
    ASSERT_OK(mp_conn_recv_bytes_into(b, buf, sizeof buf, &len));
    ASSERT_EQ(0, len);
    ASSERT_EQ(0, mp_conn_poll(b, 0));
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
}

MP_TEST(maxlength_refusal)
{
    uint8_t msg[100];
    fill(msg, sizeof msg, 1);

    /* duplex: the end stops being readable, stays writable */
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_OK(mp_conn_send_bytes(a, msg, sizeof msg));
    ASSERT_OK(mp_conn_send_bytes(a, msg, sizeof msg));
    mp_buf in = MP_BUF_INIT;
    ASSERT_OK(mp_conn_recv_bytes(b, &in, 100)); /* equal: fine */
    ASSERT_EQ(100, in.len);
    mp_buf_free(&in);
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes(b, &in, 99));
    ASSERT_LT(in.cap, 100); /* refused before anything was allocated */
    ASSERT_FALSE(mp_conn_readable(b));
    ASSERT_TRUE(mp_conn_writable(b));
    ASSERT_ERR(MP_EBADF, mp_conn_recv_bytes(b, &in, 0));
    char tmp[200];
    size_t len;
    ASSERT_ERR(MP_EBADF, mp_conn_recv_bytes_into(b, tmp, sizeof tmp, &len));
    ASSERT_ERR(MP_EBADF, mp_conn_poll(b, 0));
    SEND_STR(b, "still writable");
    EXPECT_STR(a, "still writable");
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));

    /* a read-only end */
    mp_conn *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    ASSERT_OK(mp_conn_send_bytes(w, msg, sizeof msg));
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes(r, &in, 50));
    ASSERT_FALSE(mp_conn_readable(r));
    ASSERT_ERR(MP_EBADF, mp_conn_recv_bytes(r, &in, 0));
    ASSERT_OK(mp_conn_close(r));
    ASSERT_OK(mp_conn_close(w));

    /* lengths beyond the default cap, in the large form */
    mp_conn *c;
    int peer;
    raw_pair(&c, &peer);
    uint8_t h[12] = {0xff, 0xff, 0xff, 0xff};
    put_u64(h + 4, (uint64_t)MP_CONN_MAXLEN + 1);
    write_all(peer, h, 12);
    write_all(peer, "abc", 3);
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes(c, &in, 0));
    ASSERT_LT(in.cap, 1 << 20);
    ASSERT_OK(mp_conn_close(c));
    close(peer);

    raw_pair(&c, &peer);
    put_u64(h + 4, UINT64_MAX);
    write_all(peer, h, 12);
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes(c, &in, 0));
    ASSERT_OK(mp_conn_close(c));
    close(peer);

    /* a 2 GiB header against a small maxlength, and against into() */
    raw_pair(&c, &peer);
    write_all(peer, "\x7f\xff\xff\xff", 4);
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes(c, &in, 1000));
    ASSERT_LT(in.cap, 1 << 20);
    ASSERT_OK(mp_conn_close(c));
    close(peer);

    /* the large form obeys maxlength too */
    raw_pair(&c, &peer);
    put_large_frame(peer, "hello", 5);
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes(c, &in, 4));
    ASSERT_FALSE(mp_conn_readable(c));
    ASSERT_OK(mp_conn_close(c));
    close(peer);
    mp_buf_free(&in);
}

/* A peer may announce any length the receiver allows; memory follows the
 * bytes that actually arrive, not the announcement (issue 3: no allocation
 * driven by an attacker's length). */
static void announce(int peer, uint64_t claim)
{
    uint8_t h[12] = {0xff, 0xff, 0xff, 0xff};
    put_u64(h + 4, claim);
    if (claim <= 0x7fffffff)
        write_all(peer, h + 8, 4);
    else
        write_all(peer, h, 12);
    write_all(peer, "0123456789", 10);
    close(peer);
}

MP_TEST(announced_length_does_not_drive_allocation)
{
    static const struct {
        uint64_t claim;
        size_t maxlength;
    } cases[] = {
        {MP_CONN_MAXLEN, 0}, /* the default cap itself */
        {0x7fffffff, 0x7fffffff},
        {(uint64_t)1 << 39, (size_t)1 << 40},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mp_conn *c;
        int peer;
        raw_pair(&c, &peer);
        announce(peer, cases[i].claim);
        mp_buf in = MP_BUF_INIT;
        ASSERT_ERR(MP_ETRUNCATED, mp_conn_recv_bytes(c, &in, cases[i].maxlength));
        ASSERT_LT(in.cap, (size_t)64 << 20);
        mp_buf_free(&in);
        ASSERT_OK(mp_conn_close(c));

        /* into() allocates nothing and has no cap: it drops a long message
         * by reading it, so the peer's end of file comes first. */
        raw_pair(&c, &peer);
        announce(peer, cases[i].claim);
        char small[16];
        size_t len;
        ASSERT_ERR(MP_ETRUNCATED, mp_conn_recv_bytes_into(c, small, sizeof small, &len));
        ASSERT_OK(mp_conn_close(c));
    }
}

MP_TEST(eof_at_a_message_boundary)
{
    mp_conn *c;
    int peer;
    raw_pair(&c, &peer);
    put_frame(peer, "one", 3);
    close(peer);
    EXPECT_STR(c, "one");
    mp_buf in = MP_BUF_INIT;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(c, &in, 0));
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(c, &in, 0)); /* and again */
    char buf[8];
    size_t len;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes_into(c, buf, sizeof buf, &len));
    mp_args *m = NULL;
    ASSERT_ERR(MP_EOF, mp_conn_recv(c, &m));
    ASSERT_EQ(1, mp_conn_poll(c, 0));
    ASSERT_TRUE(mp_conn_readable(c) && mp_conn_writable(c)); /* flags, not state */
    ASSERT_OK(mp_conn_close(c));

    /* a pipe pair whose other end closed */
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_OK(mp_conn_close(b));
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(a, &in, 0));
    ASSERT_OK(mp_conn_close(a));
    mp_buf_free(&in);
}

MP_TEST(eof_inside_a_message)
{
    static const struct {
        const char *bytes;
        size_t n;
    } cases[] = {
        {"\0", 1},
        {"\0\0\0", 3},
        {"\0\0\0\1", 4},
        {"\0\0\0\5ab", 6},
        {"\xff\xff\xff\xff", 4},
        {"\xff\xff\xff\xff\0\0\0", 7},
        {"\xff\xff\xff\xff\0\0\0\0\0\0\0", 11},
        {"\xff\xff\xff\xff\0\0\0\0\0\0\0\5hel", 15},
        {"\0\0\0\2hi\0\0", 8}, /* a good message, then half a header */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int how = 0; how < 3; how++) {
            mp_conn *c;
            int peer;
            raw_pair(&c, &peer);
            write_all(peer, cases[i].bytes, cases[i].n);
            close(peer);
            bool first_ok = i == sizeof cases / sizeof cases[0] - 1;
            int r;
            if (how == 0) {
                mp_buf in = MP_BUF_INIT;
                if (first_ok)
                    ASSERT_OK(mp_conn_recv_bytes(c, &in, 0));
                r = mp_conn_recv_bytes(c, &in, 0);
                mp_buf_free(&in);
            } else if (how == 1) {
                char buf[64];
                size_t len;
                if (first_ok)
                    ASSERT_OK(mp_conn_recv_bytes_into(c, buf, sizeof buf, &len));
                r = mp_conn_recv_bytes_into(c, buf, sizeof buf, &len);
            } else {
                mp_args *m = NULL;
                if (first_ok) {
                    mp_buf in = MP_BUF_INIT;
                    ASSERT_OK(mp_conn_recv_bytes(c, &in, 0));
                    mp_buf_free(&in);
                }
                r = mp_conn_recv(c, &m);
                ASSERT_TRUE(m == NULL);
            }
            if (r != MP_ETRUNCATED)
                MP__FAIL("case %zu, receiver %d: got %d (%s), want MP_ETRUNCATED", i, how, r,
                         mp_errname(r));
            ASSERT_OK(mp_conn_close(c));
        }
    }
}

MP_TEST(negative_lengths_are_malformed)
{
    static const char *const headers[] = {"\xff\xff\xff\xfe", "\x80\0\0\0", "\xff\xff\xff\0",
                                          "\xc0\0\0\1"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        mp_conn *c;
        int peer;
        raw_pair(&c, &peer);
        write_all(peer, headers[i], 4);
        write_all(peer, "hello", 5);
        close(peer); /* a wrong reading ends at EOF instead of hanging */
        mp_buf in = MP_BUF_INIT;
        int r = mp_conn_recv_bytes(c, &in, 0);
        if (r != MP_EBADMSG)
            MP__FAIL("header %zu: got %d (%s), want MP_EBADMSG", i, r, mp_errname(r));
        mp_buf_free(&in);
        ASSERT_OK(mp_conn_close(c));

        raw_pair(&c, &peer);
        write_all(peer, headers[i], 4);
        close(peer);
        char buf[8];
        size_t len;
        ASSERT_ERR(MP_EBADMSG, mp_conn_recv_bytes_into(c, buf, sizeof buf, &len));
        ASSERT_OK(mp_conn_close(c));
    }
}

MP_TEST(large_form_is_accepted)
{
    mp_conn *c;
    int peer;
    raw_pair(&c, &peer);
    put_large_frame(peer, "hello", 5);
    put_large_frame(peer, "", 0);
    put_frame(peer, "hi", 2);
    static uint8_t big[16385];
    fill(big, sizeof big, 5);
    put_large_frame(peer, big, sizeof big);
    put_large_frame(peer, "into", 4);
    close(peer);
    ASSERT_EQ(1, mp_conn_poll(c, 0));
    EXPECT_STR(c, "hello");
    EXPECT_MSG(c, "", 0);
    EXPECT_STR(c, "hi");
    EXPECT_MSG(c, big, sizeof big);
    char buf[8];
    size_t len;
    ASSERT_OK(mp_conn_recv_bytes_into(c, buf, sizeof buf, &len));
    ASSERT_EQ(4, len);
    ASSERT_MEMEQ("into", buf, 4);
    mp_buf in = MP_BUF_INIT;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(c, &in, 0));
    ASSERT_OK(mp_conn_close(c));
    mp_buf_free(&in);
}

/* ---- poll --------------------------------------------------------------- */

MP_TEST(poll_semantics)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    double t0 = mp_monotonic();
    ASSERT_EQ(0, mp_conn_poll(b, 0));
    ASSERT_LT(mp_monotonic() - t0, 1.0);
    t0 = mp_monotonic();
    ASSERT_EQ(0, mp_conn_poll(b, 0.2));
    double took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 190);
    ASSERT_LT(took, 5.0);

    /* an empty message makes poll true; poll never consumes */
    ASSERT_OK(mp_conn_send_bytes(a, "", 0));
    ASSERT_EQ(1, mp_conn_poll(b, 0));
    ASSERT_EQ(1, mp_conn_poll(b, 0));
    t0 = mp_monotonic();
    ASSERT_EQ(1, mp_conn_poll(b, 10));
    ASSERT_LT(mp_monotonic() - t0, 1.0);
    EXPECT_MSG(b, "", 0);
    ASSERT_EQ(0, mp_conn_poll(b, 0));

    /* a message arriving while poll waits */
    sender s;
    sender_start(&s, a, "late", 4, 0.3);
    t0 = mp_monotonic();
    ASSERT_EQ(1, mp_conn_poll(b, 30));
    took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 250);
    ASSERT_LT(took, 10.0);
    ASSERT_OK(sender_join(&s));
    EXPECT_STR(b, "late");

    /* MP_FOREVER (any negative timeout) blocks until data comes */
    sender_start(&s, a, "forever", 7, 0.2);
    ASSERT_EQ(1, mp_conn_poll(b, MP_FOREVER));
    ASSERT_OK(sender_join(&s));
    EXPECT_STR(b, "forever");
    sender_start(&s, a, "neg", 3, 0.2);
    ASSERT_EQ(1, mp_conn_poll(b, -5));
    ASSERT_OK(sender_join(&s));
    EXPECT_STR(b, "neg");

    /* end of file makes it true too */
    ASSERT_OK(mp_conn_close(a));
    ASSERT_EQ(1, mp_conn_poll(b, 10));
    ASSERT_EQ(1, mp_conn_poll(b, 0));
    mp_buf in = MP_BUF_INIT;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(b, &in, 0));
    mp_buf_free(&in);
    ASSERT_OK(mp_conn_close(b));
}

MP_TEST(messages_are_never_merged)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_EQ(0, mp_conn_poll(b, 0));
    ASSERT_EQ(0, mp_conn_poll(b, 0.1));
    SEND_STR(a, "a");
    SEND_STR(a, "b");
    SEND_STR(a, "cd");
    ASSERT_EQ(1, mp_conn_poll(b, 1.0));
    EXPECT_STR(b, "a");
    ASSERT_EQ(1, mp_conn_poll(b, 1.0));
    ASSERT_EQ(1, mp_conn_poll(b, 1.0));
    EXPECT_STR(b, "b");
    ASSERT_EQ(1, mp_conn_poll(b, 1.0));
    EXPECT_STR(b, "cd");
    ASSERT_EQ(0, mp_conn_poll(b, 0));
    ASSERT_EQ(0, mp_conn_poll(b, 0.1));
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
}

/* ---- signals never surface ----------------------------------------------- */

static volatile sig_atomic_t usr1_count;

static void on_usr1(int sig)
{
    (void)sig;
    usr1_count++;
}

/* A SIGUSR1 handler without SA_RESTART: every blocking call sees EINTR. */
static void install_usr1(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
}

/* A thread that signals @target every 20 ms while @dur lasts, then runs
 * @then (if any). */
typedef struct pester {
    pthread_t tid, target;
    double delay, dur;
    void (*then)(struct pester *);
    mp_conn *c;
    const char *addr;
    void *big;
    size_t n;
    int rc;
    int fd;
} pester;

static void *pester_main(void *arg)
{
    pester *p = arg;
    sleep_s(p->delay);
    double until = mp_monotonic() + p->dur;
    while (mp_monotonic() < until) {
        pthread_kill(p->target, SIGUSR1);
        sleep_s(0.02);
    }
    if (p->then)
        p->then(p);
    return NULL;
}

static void pester_start(pester *p)
{
    p->target = pthread_self();
    ASSERT_EQ(0, pthread_create(&p->tid, NULL, pester_main, p));
}

static void then_send_1234(pester *p)
{
    p->rc = mp_conn_send_bytes(p->c, "1234", 4);
}

static void then_recv_big(pester *p)
{
    mp_buf in = MP_BUF_INIT;
    p->rc = mp_conn_recv_bytes(p->c, &in, 0);
    if (p->rc == 0 && (in.len != p->n || !check_fill(in.data, in.len, 77)))
        p->rc = -99999;
    mp_buf_free(&in);
}

/* Write a 16 MiB frame in 64 KiB pieces, signalling between the pieces. */
static void then_write_slowly(pester *p)
{
    uint8_t h[4];
    put_u32(h, (uint32_t)p->n);
    write_all(p->fd, h, 4);
    const uint8_t *q = p->big;
    for (size_t off = 0; off < p->n; off += 65536) {
        pthread_kill(p->target, SIGUSR1);
        write_all(p->fd, q + off, p->n - off < 65536 ? p->n - off : 65536);
    }
    p->rc = 0;
}

static void then_connect(pester *p)
{
    mp_conn *c;
    p->rc = mp_client(&c, p->addr, NULL, 0);
    if (p->rc != 0)
        return;
    mp_buf in = MP_BUF_INIT;
    p->rc = mp_conn_recv_bytes(c, &in, 0);
    if (p->rc == 0 && (in.len != 7 || memcmp(in.data, "welcome", 7) != 0))
        p->rc = -99999;
    mp_buf_free(&in);
    (void)mp_conn_close(c);
}

MP_TEST(signals_do_not_interrupt, .timeout_s = 90)
{
    install_usr1();
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));

    /* a blocking recv */
    usr1_count = 0;
    pester p = {.delay = 0.1, .dur = 0.3, .then = then_send_1234, .c = a};
    pester_start(&p);
    EXPECT_STR(b, "1234");
    ASSERT_EQ(0, pthread_join(p.tid, NULL));
    ASSERT_OK(p.rc);
    ASSERT_GT(usr1_count, 0);

    /* a recv whose body arrives in pieces, signals in between */
    usr1_count = 0;
    size_t n = 16 * MIB;
    void *big = malloc(n);
    ASSERT_TRUE(big != NULL);
    fill(big, n, 77);
    p = (pester){.delay = 0.1, .dur = 0.1, .then = then_write_slowly, .fd = mp_conn_fileno(a),
                 .big = big, .n = n};
    pester_start(&p);
    EXPECT_MSG(b, big, n);
    ASSERT_EQ(0, pthread_join(p.tid, NULL));
    ASSERT_GT(usr1_count, 0);

    /* a large blocking send */
    usr1_count = 0;
    p = (pester){.delay = 0.05, .dur = 0.3, .then = then_recv_big, .c = b, .n = n};
    pester_start(&p);
    ASSERT_OK(mp_conn_send_bytes(a, big, n));
    ASSERT_EQ(0, pthread_join(p.tid, NULL));
    ASSERT_OK(p.rc);
    ASSERT_GT(usr1_count, 0);
    free(big);

    /* poll waits its whole timeout */
    usr1_count = 0;
    p = (pester){.delay = 0.02, .dur = 0.5};
    pester_start(&p);
    double t0 = mp_monotonic();
    ASSERT_EQ(0, mp_conn_poll(b, 0.4));
    double took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 390);
    ASSERT_LT(took, 10.0);
    ASSERT_EQ(0, pthread_join(p.tid, NULL));
    ASSERT_GT(usr1_count, 0);

    /* and so does mp_wait */
    p = (pester){.delay = 0.02, .dur = 0.5};
    pester_start(&p);
    mp_waitable w[2] = {{.kind = MP_WAIT_CONN, .conn = a}, {.kind = MP_WAIT_CONN, .conn = b}};
    t0 = mp_monotonic();
    ASSERT_EQ(0, mp_wait(w, 2, 0.4));
    took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 390);
    ASSERT_LT(took, 10.0);
    ASSERT_EQ(0, pthread_join(p.tid, NULL));

    /* a blocking accept (test_ignore_listener) */
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, NULL, 0, 0));
    usr1_count = 0;
    p = (pester){.delay = 0.1, .dur = 0.2, .then = then_connect, .addr = mp_listener_address(l)};
    pester_start(&p);
    mp_conn *s;
    ASSERT_OK(mp_listener_accept(l, &s, 30));
    SEND_STR(s, "welcome");
    ASSERT_EQ(0, pthread_join(p.tid, NULL));
    ASSERT_OK(p.rc);
    ASSERT_GT(usr1_count, 0);
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));

    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
}

/* ---- typed messages, descriptors and connections ------------------------ */

MP_TEST(typed_messages_in_process)
{
    mp_conn *a, *b, *x, *y, *r, *w;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_OK(mp_pipe(&x, &y, true));
    ASSERT_OK(mp_pipe(&r, &w, false));
    int pfd[2];
    ASSERT_EQ(0, pipe2(pfd, O_CLOEXEC));

    mp_args *m;
    ASSERT_OK(mp_args_new(&m));
    ASSERT_OK(mp_args_add_int(m, 42));
    ASSERT_OK(mp_args_add_int(m, INT64_MIN));
    ASSERT_OK(mp_args_add_double(m, -2.5));
    ASSERT_OK(mp_args_add_str(m, "h\xc3\xa9llo"));
    ASSERT_OK(mp_args_add_str(m, ""));
    ASSERT_OK(mp_args_add_bytes(m, "\0\1\2", 3));
    ASSERT_OK(mp_args_add_bytes(m, NULL, 0));
    ASSERT_OK(mp_args_add_fd(m, pfd[1]));
    ASSERT_OK(mp_args_add_conn(m, y));
    ASSERT_OK(mp_args_add_conn(m, r));
    ASSERT_OK(mp_conn_send(a, m));
    mp_args_free(m);
    /* only the message in flight holds these now */
    close(pfd[1]);
    ASSERT_OK(mp_conn_close(y));
    ASSERT_OK(mp_conn_close(r));

    ASSERT_EQ(1, mp_conn_poll(b, 10));
    mp_args *got = NULL;
    ASSERT_OK(mp_conn_recv(b, &got));
    ASSERT_EQ(10, mp_args_count(got));
    ASSERT_EQ(MP_ARG_INT, mp_args_type(got, 0));
    ASSERT_EQ(42, mp_args_int(got, 0));
    ASSERT_TRUE(mp_args_int(got, 1) == INT64_MIN);
    ASSERT_EQ(MP_ARG_DOUBLE, mp_args_type(got, 2));
    ASSERT_TRUE(mp_args_double(got, 2) == -2.5);
    ASSERT_STREQ("h\xc3\xa9llo", mp_args_str(got, 3));
    ASSERT_STREQ("", mp_args_str(got, 4));
    size_t blen = 99;
    const void *bytes = mp_args_bytes(got, 5, &blen);
    ASSERT_EQ(3, blen);
    ASSERT_MEMEQ("\0\1\2", bytes, 3);
    mp_args_bytes(got, 6, &blen);
    ASSERT_EQ(0, blen);
    ASSERT_EQ(MP_ARG_FD, mp_args_type(got, 7));
    ASSERT_EQ(MP_ARG_OBJECT, mp_args_type(got, 8));
    ASSERT_EQ(MP_ARG_OBJECT, mp_args_type(got, 9));

    /* the descriptor reaches the same pipe */
    int fd = mp_args_fd(got, 7);
    ASSERT_GE(fd, 0);
    write_all(fd, "foo", 3);
    char buf[8];
    read_exact(pfd[0], buf, 3);
    ASSERT_MEMEQ("foo", buf, 3);

    /* the connection talks to the other end, both ways */
    mp_conn *yy = mp_args_conn(got, 8);
    ASSERT_TRUE(yy != NULL);
    ASSERT_TRUE(mp_conn_readable(yy) && mp_conn_writable(yy));
    SEND_STR(yy, "via");
    EXPECT_STR(x, "via");
    SEND_STR(x, "back");
    EXPECT_STR(yy, "back");

    /* a read-only pipe end keeps its direction */
    mp_conn *rr = mp_args_conn(got, 9);
    ASSERT_TRUE(mp_conn_readable(rr));
    ASSERT_FALSE(mp_conn_writable(rr));
    SEND_STR(w, "dir");
    EXPECT_STR(rr, "dir");
    ASSERT_ERR(MP_EBADF, mp_conn_send_bytes(rr, "x", 1));

    /* freeing the message closes the last copies: no duplicate lingers */
    mp_args_free(got);
    ASSERT_EQ(0, read(pfd[0], buf, 1));
    mp_buf in = MP_BUF_INIT;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(x, &in, 0));
    mp_buf_free(&in);
    ASSERT_ERR(MP_EPIPE, mp_conn_send_bytes(w, "x", 1));

    /* an empty list */
    ASSERT_OK(mp_args_new(&m));
    ASSERT_OK(mp_conn_send(a, m));
    mp_args_free(m);
    ASSERT_OK(mp_conn_recv(b, &got));
    ASSERT_EQ(0, mp_args_count(got));
    mp_args_free(got);

    /* pointers never travel, and nothing of the message is sent */
    static int local;
    ASSERT_OK(mp_args_of(&m, "ip", 1, &local));
    ASSERT_ERR(MP_EINVAL, mp_conn_send(a, m));
    mp_args_free(m);
    ASSERT_EQ(0, mp_conn_poll(b, 0));

    /* bytes that are not an mp_args */
    SEND_STR(a, "garbage, not a list");
    got = NULL;
    ASSERT_ERR(MP_EBADMSG, mp_conn_recv(b, &got));
    ASSERT_TRUE(got == NULL);

    close(pfd[0]);
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
    ASSERT_OK(mp_conn_close(x));
    ASSERT_OK(mp_conn_close(w));
}

MP_TEST(descriptors_need_a_unix_socket)
{
    mp_conn *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args *m;
    ASSERT_OK(mp_args_of(&m, "if", 1, STDERR_FILENO));
    ASSERT_ERR(MP_EINVAL, mp_conn_send(w, m));
    mp_args_free(m);
    mp_conn *x, *y;
    ASSERT_OK(mp_pipe(&x, &y, true));
    ASSERT_OK(mp_args_new(&m));
    ASSERT_OK(mp_args_add_conn(m, y));
    ASSERT_ERR(MP_EINVAL, mp_conn_send(w, m));
    mp_args_free(m);
    /* nothing was half sent: the next message arrives alone */
    ASSERT_EQ(0, mp_conn_poll(r, 0));
    ASSERT_OK(mp_args_of(&m, "i", 5));
    ASSERT_OK(mp_conn_send(w, m));
    mp_args_free(m);
    mp_args *got;
    ASSERT_OK(mp_conn_recv(r, &got));
    ASSERT_EQ(1, mp_args_count(got));
    ASSERT_EQ(5, mp_args_int(got, 0));
    mp_args_free(got);
    ASSERT_EQ(0, mp_conn_poll(r, 0));

    /* nor over TCP */
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, "tcp:127.0.0.1:0", NULL, 0, 0));
    mp_conn *c, *s;
    ASSERT_OK(mp_client(&c, mp_listener_address(l), NULL, 0));
    ASSERT_OK(mp_listener_accept(l, &s, 10));
    ASSERT_OK(mp_args_of(&m, "f", STDERR_FILENO));
    ASSERT_ERR(MP_EINVAL, mp_conn_send(c, m));
    mp_args_free(m);
    ASSERT_OK(mp_args_of(&m, "s", "plain"));
    ASSERT_OK(mp_conn_send(c, m)); /* plain values do travel */
    mp_args_free(m);
    ASSERT_OK(mp_conn_recv(s, &got));
    ASSERT_STREQ("plain", mp_args_str(got, 0));
    mp_args_free(got);
    ASSERT_OK(mp_conn_close(c));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));

    ASSERT_OK(mp_conn_close(x));
    ASSERT_OK(mp_conn_close(y));
    ASSERT_OK(mp_conn_close(r));
    ASSERT_OK(mp_conn_close(w));
}

/* test_missing_fd_transfer: a typed message naming descriptors that did
 * not come with it is malformed; descriptors that came with a message read
 * as plain bytes are not leaked (the harness checks). */
MP_TEST(typed_message_without_its_descriptors)
{
    mp_conn *a, *b, *x, *y;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_OK(mp_pipe(&x, &y, true));
    mp_args *m;
    ASSERT_OK(mp_args_of(&m, "if", 1, STDERR_FILENO));
    ASSERT_OK(mp_args_add_conn(m, y));
    /* the bytes of the message, its descriptors dropped by read(2) */
    ASSERT_OK(mp_conn_send(a, m));
    uint8_t raw[4096];
    ssize_t n = read(mp_conn_fileno(b), raw, sizeof raw);
    ASSERT_GT(n, 4);
    ASSERT_FALSE(fd_ready(mp_conn_fileno(b)));
    /* replayed without them */
    write_all(mp_conn_fileno(a), raw, (size_t)n);
    mp_args *got = NULL;
    ASSERT_ERR(MP_EBADMSG, mp_conn_recv(b, &got));
    ASSERT_TRUE(got == NULL);

    /* a typed message read as bytes: its descriptors are closed */
    ASSERT_OK(mp_conn_send(a, m));
    mp_buf in = MP_BUF_INIT;
    ASSERT_OK(mp_conn_recv_bytes(b, &in, 0));
    ASSERT_EQ(n - 4, in.len);
    mp_buf_free(&in);
    char buf[8];
    size_t len;
    ASSERT_OK(mp_conn_send(a, m));
    ASSERT_ERR(MP_EMSGSIZE, mp_conn_recv_bytes_into(b, buf, sizeof buf, &len));
    mp_args_free(m);
    ASSERT_OK(mp_conn_close(y));
    /* every copy of y is gone, so x sees end of file */
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(x, &in, 0));
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
    ASSERT_OK(mp_conn_close(x));
}

/* args: (conn).  Receives (int, double, str, bytes 1 MiB, fd, write-only
 * conn), checks them, writes "foo" through the fd and "from child" through
 * the conn, and answers (int 1, str "done", fd: a pipe's read end holding
 * "child pipe").  Then waits for "quit". */
static int t_typed(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    mp_args *m;
    if (mp_conn_recv(c, &m) != 0)
        return 10;
    size_t blen = 0;
    const uint8_t *bytes;
    if (mp_args_count(m) != 6 || mp_args_int(m, 0) != 42 || mp_args_double(m, 1) != 2.5 ||
        strcmp(mp_args_str(m, 2), "hello") != 0)
        return 11;
    bytes = mp_args_bytes(m, 3, &blen);
    if (blen != MIB || !check_fill(bytes, blen, 4))
        return 12;
    int fd = mp_args_fd(m, 4);
    if (write(fd, "foo", 3) != 3)
        return 13;
    mp_conn *w = mp_args_conn(m, 5);
    if (mp_conn_readable(w) || !mp_conn_writable(w))
        return 14;
    if (mp_conn_send_bytes(w, "from child", 10) != 0)
        return 15;
    mp_args_free(m);

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0 || write(pfd[1], "child pipe", 10) != 10)
        return 16;
    close(pfd[1]);
    mp_args *reply;
    if (mp_args_of(&reply, "isf", 1, "done", pfd[0]) != 0)
        return 17;
    close(pfd[0]);
    if (mp_conn_send(c, reply) != 0)
        return 18;
    mp_args_free(reply);
    if (mp_conn_recv(c, &m) != 0 || strcmp(mp_args_str(m, 0), "quit") != 0)
        return 19;
    mp_args_free(m);
    return 0;
}

MP_TEST(typed_messages_with_a_child, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    mp_args *args;
    ASSERT_OK(mp_args_new(&args));
    ASSERT_OK(mp_args_add_conn(args, b));
    mp_process *p;
    p = mp_test_start(ctx, t_typed, args);
    mp_args_free(args);
    ASSERT_OK(mp_conn_close(b));

    /* a file at a descriptor number above 256 (test_large_fd_transfer) */
    char path[] = "/tmp/mp-test-conn-XXXXXX";
    int tmp = mkostemp(path, O_CLOEXEC);
    ASSERT_GE(tmp, 0);
    unlink(path);
    int fd = fcntl(tmp, F_DUPFD_CLOEXEC, 300);
    ASSERT_GE(fd, 300);
    close(tmp);
    mp_conn *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    void *big = malloc(MIB);
    ASSERT_TRUE(big != NULL);
    fill(big, MIB, 4);
    mp_args *m;
    ASSERT_OK(mp_args_new(&m));
    ASSERT_OK(mp_args_add_int(m, 42));
    ASSERT_OK(mp_args_add_double(m, 2.5));
    ASSERT_OK(mp_args_add_str(m, "hello"));
    ASSERT_OK(mp_args_add_bytes(m, big, MIB));
    ASSERT_OK(mp_args_add_fd(m, fd));
    ASSERT_OK(mp_args_add_conn(m, w));
    free(big);
    ASSERT_OK(mp_conn_send(a, m));
    mp_args_free(m);
    ASSERT_OK(mp_conn_close(w));

    mp_args *reply;
    ASSERT_OK(mp_conn_recv(a, &reply));
    ASSERT_EQ(3, mp_args_count(reply));
    ASSERT_EQ(1, mp_args_int(reply, 0));
    ASSERT_STREQ("done", mp_args_str(reply, 1));
    char buf[16];
    read_exact(mp_args_fd(reply, 2), buf, 10);
    ASSERT_MEMEQ("child pipe", buf, 10);
    mp_args_free(reply);
    EXPECT_STR(r, "from child");
    ASSERT_EQ(3, pread(fd, buf, sizeof buf, 0));
    ASSERT_MEMEQ("foo", buf, 3);

    ASSERT_OK(mp_args_of(&m, "s", "quit"));
    ASSERT_OK(mp_conn_send(a, m));
    mp_args_free(m);
    ASSERT_EQ(0, mp_test_join(p, 60));
    close(fd);
    ASSERT_OK(mp_conn_close(r));
    ASSERT_OK(mp_conn_close(a));
}

MP_TEST(from_fd)
{
    mp_conn *c = (mp_conn *)1;
    ASSERT_ERR(MP_EBADF, mp_conn_from_fd(&c, -1, true, true));
    int pfd[2];
    ASSERT_EQ(0, pipe2(pfd, O_CLOEXEC));
    int gone = pfd[1];
    close(gone);
    ASSERT_ERR(MP_EBADF, mp_conn_from_fd(&c, gone, false, true));
    int sv[2];
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_ERR(MP_EBADF, mp_conn_from_fd(&c, sv[0], false, false));
    if (fcntl(sv[0], F_GETFD) >= 0) /* whether a refused fd is kept is not specified */
        close(sv[0]);
    close(sv[1]);

    mp_conn *r;
    ASSERT_OK(mp_conn_from_fd(&r, pfd[0], true, false));
    ASSERT_EQ(pfd[0], mp_conn_fileno(r));
    ASSERT_TRUE(mp_conn_readable(r));
    ASSERT_FALSE(mp_conn_writable(r));
    ASSERT_ERR(MP_EBADF, mp_conn_send_bytes(r, "x", 1));
    ASSERT_EQ(1, mp_conn_poll(r, 0)); /* its write end is closed: EOF */
    mp_buf in = MP_BUF_INIT;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(r, &in, 0));
    mp_buf_free(&in);
    ASSERT_OK(mp_conn_close(r)); /* owns and closes the fd */
    ASSERT_EQ(-1, fcntl(pfd[0], F_GETFD));
}

/* ---- Listener / Client -------------------------------------------------- */

/* Connect, talk both ways, and check the accepted end (test_issue16955). */
static void talk(mp_listener *l, const char *addr)
{
    mp_conn *c, *s;
    ASSERT_OK(mp_client(&c, addr, NULL, 0));
    ASSERT_OK(mp_listener_accept(l, &s, 10));
    ASSERT_TRUE(mp_conn_readable(c) && mp_conn_writable(c));
    ASSERT_TRUE(mp_conn_readable(s) && mp_conn_writable(s));
    SEND_STR(c, "hello");
    EXPECT_STR(s, "hello");
    SEND_STR(s, "hi there");
    ASSERT_EQ(1, mp_conn_poll(c, 1));
    EXPECT_STR(c, "hi there");
    static uint8_t big[16385];
    fill(big, sizeof big, 2);
    ASSERT_OK(mp_conn_send_bytes(s, big, sizeof big));
    EXPECT_MSG(c, big, sizeof big);
    ASSERT_OK(mp_conn_send_bytes(c, "", 0));
    EXPECT_MSG(s, "", 0);
    ASSERT_OK(mp_conn_close(c));
    mp_buf in = MP_BUF_INIT;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(s, &in, 0));
    mp_buf_free(&in);
    ASSERT_OK(mp_conn_close(s));
}

static char *temp_dir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/mp-test-conn-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    return dir;
}

MP_TEST(listener_unix_path)
{
    char *dir = temp_dir();
    char path[128], addr[160];
    snprintf(path, sizeof path, "%s/sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, addr, NULL, 0, 0));
    ASSERT_STREQ(addr, mp_listener_address(l));
    ASSERT_GE(mp_listener_fileno(l), 0);
    struct stat st;
    ASSERT_EQ(0, stat(path, &st));
    ASSERT_TRUE(S_ISSOCK(st.st_mode));
    talk(l, addr);
    talk(l, path); /* the bare path names it too */

    /* accepted connections outlive the listener */
    mp_conn *c, *s;
    ASSERT_OK(mp_client(&c, addr, NULL, 0));
    ASSERT_OK(mp_listener_accept(l, &s, 10));
    ASSERT_OK(mp_listener_close(l));
    ASSERT_EQ(-1, stat(path, &st)); /* removed at close */
    ASSERT_EQ(ENOENT, errno);
    SEND_STR(s, "after close");
    EXPECT_STR(c, "after close");
    ASSERT_OK(mp_conn_close(c));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_ERR(-ENOENT, mp_client(&c, addr, NULL, 0));

    /* "/path" alone: reported with the unix: prefix */
    ASSERT_OK(mp_listener_new(&l, path, NULL, 0, 0));
    ASSERT_STREQ(addr, mp_listener_address(l));
    talk(l, addr);
    ASSERT_OK(mp_listener_close(l));
    ASSERT_EQ(-1, stat(path, &st));
    ASSERT_EQ(0, rmdir(dir));
}

static bool in_proc_net_unix(const char *name)
{
    FILE *f = fopen("/proc/net/unix", "r");
    ASSERT_TRUE(f != NULL);
    char line[512];
    bool found = false;
    size_t n = strlen(name);
    while (!found && fgets(line, sizeof line, f)) {
        char *p = strstr(line, name);
        found = p != NULL && (p[n] == '\n' || p[n] == '\0');
    }
    fclose(f);
    return found;
}

MP_TEST(listener_abstract_name)
{
    char name[64], addr[80];
    snprintf(name, sizeof name, "@mp-test-conn-%d-%ld", (int)getpid(), (long)mp_monotonic());
    snprintf(addr, sizeof addr, "unix:%s", name);
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, addr, NULL, 0, 0));
    ASSERT_STREQ(addr, mp_listener_address(l));
    ASSERT_TRUE(in_proc_net_unix(name));
    talk(l, addr);
    mp_listener *l2;
    ASSERT_ERR(MP_EADDRINUSE, mp_listener_new(&l2, addr, NULL, 0, 0));
    ASSERT_OK(mp_listener_close(l));
    ASSERT_FALSE(in_proc_net_unix(name));
    mp_conn *c;
    ASSERT_ERR(-ECONNREFUSED, mp_client(&c, addr, NULL, 0));
}

static int port_of(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    ASSERT_TRUE(colon != NULL);
    return atoi(colon + 1);
}

MP_TEST(listener_tcp)
{
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, "tcp:127.0.0.1:0", NULL, 0, 0));
    const char *addr = mp_listener_address(l);
    ASSERT_TRUE(strncmp(addr, "tcp:127.0.0.1:", 14) == 0);
    int port = port_of(addr);
    ASSERT_GT(port, 0);
    ASSERT_LT(port, 65536);
    talk(l, addr);
    char bare[64];
    snprintf(bare, sizeof bare, "127.0.0.1:%d", port);
    talk(l, bare);

    /* the same port again */
    mp_listener *l2;
    char again[64];
    snprintf(again, sizeof again, "tcp:127.0.0.1:%d", port);
    ASSERT_ERR(MP_EADDRINUSE, mp_listener_new(&l2, again, NULL, 0, 0));
    ASSERT_OK(mp_listener_close(l));
    mp_conn *c;
    ASSERT_ERR(-ECONNREFUSED, mp_client(&c, again, NULL, 0));

    /* "HOST:PORT" without the prefix listens too */
    ASSERT_OK(mp_listener_new(&l, "127.0.0.1:0", NULL, 0, 0));
    ASSERT_TRUE(strncmp(mp_listener_address(l), "tcp:127.0.0.1:", 14) == 0);
    talk(l, mp_listener_address(l));
    ASSERT_OK(mp_listener_close(l));

    /* IPv6, where the machine has it */
    int s6 = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool v6 = s6 >= 0 && bind(s6, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (s6 >= 0)
        close(s6);
    if (v6) {
        ASSERT_OK(mp_listener_new(&l, "tcp:[::1]:0", NULL, 0, 0));
        ASSERT_TRUE(strncmp(mp_listener_address(l), "tcp:[::1]:", 10) == 0);
        ASSERT_GT(port_of(mp_listener_address(l)), 0);
        talk(l, mp_listener_address(l));
        ASSERT_OK(mp_listener_close(l));
    } else {
        printf("# no IPv6 loopback here: [::1] not tried\n");
    }
}

MP_TEST(listener_default_address)
{
    mp_listener *l, *l2;
    ASSERT_OK(mp_listener_new(&l, NULL, NULL, 0, 0));
    ASSERT_OK(mp_listener_new(&l2, NULL, NULL, 0, 0));
    const char *addr = mp_listener_address(l);
    ASSERT_TRUE(strncmp(addr, "unix:/", 6) == 0);
    ASSERT_TRUE(strcmp(addr, mp_listener_address(l2)) != 0);
    char path[256], dir[256];
    snprintf(path, sizeof path, "%s", addr + 5);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    struct stat st;
    ASSERT_EQ(0, stat(path, &st));
    ASSERT_TRUE(S_ISSOCK(st.st_mode));
    ASSERT_EQ(0, stat(dir, &st));
    ASSERT_TRUE(S_ISDIR(st.st_mode));
    ASSERT_EQ(0700, st.st_mode & 0777); /* private */
    ASSERT_EQ(getuid(), st.st_uid);
    talk(l, addr);
    ASSERT_OK(mp_listener_close(l));
    ASSERT_EQ(-1, stat(path, &st));
    ASSERT_EQ(-1, stat(dir, &st)); /* the directory is gone too */
    ASSERT_OK(mp_listener_close(l2));
}

MP_TEST(listener_address_in_use)
{
    char *dir = temp_dir();
    char addr[160];
    snprintf(addr, sizeof addr, "unix:%s/sock", dir);
    mp_listener *l, *l2;
    ASSERT_OK(mp_listener_new(&l, addr, NULL, 0, 0));
    ASSERT_ERR(MP_EADDRINUSE, mp_listener_new(&l2, addr, NULL, 0, 0));
    ASSERT_ERR(MP_EADDRINUSE, mp_listener_new(&l2, addr, "key", 3, 0));
    talk(l, addr); /* the refusal left the first one alone */
    ASSERT_OK(mp_listener_close(l));
    ASSERT_EQ(0, rmdir(dir));
}

MP_TEST(bad_addresses)
{
    static const char *const bad[] = {"tcp:127.0.0.1:notaport", "tcp:127.0.0.1:70000",
                                      "tcp:127.0.0.1:-1", ""};
    mp_listener *l;
    mp_conn *c;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int r = mp_listener_new(&l, bad[i], NULL, 0, 0);
        if (r != MP_EINVAL)
            MP__FAIL("mp_listener_new(\"%s\"): %d (%s), want MP_EINVAL", bad[i], r, mp_errname(r));
        r = mp_client(&c, bad[i], NULL, 0);
        if (r != MP_EINVAL)
            MP__FAIL("mp_client(\"%s\"): %d (%s), want MP_EINVAL", bad[i], r, mp_errname(r));
    }
    ASSERT_ERR(-ENOENT, mp_client(&c, "unix:/nonexistent-mp-test/sock", NULL, 0));
}

MP_TEST(client_before_accept)
{
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, NULL, 0, 0));
    mp_conn *c, *s;
    ASSERT_OK(mp_client(&c, mp_listener_address(l), NULL, 0));
    SEND_STR(c, "early");
    ASSERT_OK(mp_conn_close(c));
    sleep_s(0.2);
    ASSERT_OK(mp_listener_accept(l, &s, 10));
    EXPECT_STR(s, "early");
    mp_buf in = MP_BUF_INIT;
    ASSERT_ERR(MP_EOF, mp_conn_recv_bytes(s, &in, 0));
    mp_buf_free(&in);
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));
}

MP_TEST(accept_timeout)
{
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, NULL, 0, 0));
    mp_conn *s;
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_listener_accept(l, &s, 0));
    ASSERT_LT(mp_monotonic() - t0, 1.0);
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_listener_accept(l, &s, 0.2));
    double took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 190);
    ASSERT_LT(took, 5.0);

    /* a listener's descriptor works with mp_wait; then accept is immediate */
    mp_waitable w = {.kind = MP_WAIT_FD, .fd = mp_listener_fileno(l)};
    ASSERT_EQ(0, mp_wait(&w, 1, 0));
    mp_conn *c;
    ASSERT_OK(mp_client(&c, mp_listener_address(l), NULL, 0));
    ASSERT_EQ(1, mp_wait(&w, 1, 10));
    ASSERT_TRUE(w.ready);
    ASSERT_OK(mp_listener_accept(l, &s, 0));
    ASSERT_OK(mp_conn_close(c));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));
}

/* args: (str address, bytes key (empty: none), int connect only).  Connects,
 * sends "hello from child", and (unless connect only) expects "welcome". */
static int t_client(const mp_args *a)
{
    size_t klen;
    const void *key = mp_args_bytes(a, 1, &klen);
    mp_conn *c;
    int r = mp_client(&c, mp_args_str(a, 0), klen ? key : NULL, klen);
    if (r != 0)
        return r == MP_EAUTH ? 30 : 31;
    if (mp_conn_send_bytes(c, "hello from child", 16) != 0)
        return 32;
    if (!mp_args_int(a, 2)) {
        mp_buf in = MP_BUF_INIT;
        if (mp_conn_recv_bytes(c, &in, 0) != 0 || in.len != 7 || memcmp(in.data, "welcome", 7))
            return 33;
        mp_buf_free(&in);
    }
    mp_conn_close(c);
    return 0;
}

MP_TEST(listener_client_with_a_child, .variants = MP_START_METHODS, .timeout_s = 60)
{
    static const char *const families[] = {NULL, "tcp:127.0.0.1:0"};
    for (size_t f = 0; f < 2; f++) {
        for (int keyed = 0; keyed < 2; keyed++) {
            mp_listener *l;
            ASSERT_OK(mp_listener_new(&l, families[f], keyed ? "sesame" : NULL, keyed ? 6 : 0, 0));
            mp_args *a;
            ASSERT_OK(mp_args_of(&a, "sbi", mp_listener_address(l), "sesame",
                                 (size_t)(keyed ? 6 : 0), 0));
            mp_process *p;
            p = mp_test_start(ctx, t_client, a);
            mp_args_free(a);
            mp_conn *s;
            ASSERT_OK(mp_listener_accept(l, &s, 30));
            EXPECT_STR(s, "hello from child");
            SEND_STR(s, "welcome");
            ASSERT_EQ(0, mp_test_join(p, 60));
            ASSERT_OK(mp_conn_close(s));
            ASSERT_OK(mp_listener_close(l));
        }
        /* test_issue14725: the child connects, sends and is gone before
         * the accept */
        mp_listener *l;
        ASSERT_OK(mp_listener_new(&l, families[f], NULL, 0, 0));
        mp_args *a;
        ASSERT_OK(mp_args_of(&a, "sbi", mp_listener_address(l), "", (size_t)0, 1));
        mp_process *p;
        p = mp_test_start(ctx, t_client, a);
        mp_args_free(a);
        ASSERT_EQ(0, mp_test_join(p, 60));
        mp_conn *s;
        ASSERT_OK(mp_listener_accept(l, &s, 30));
        EXPECT_STR(s, "hello from child");
        ASSERT_OK(mp_conn_close(s));
        ASSERT_OK(mp_listener_close(l));
    }
}

/* ---- authkey ------------------------------------------------------------ */

typedef struct client_job {
    pthread_t tid;
    const char *addr;
    const void *key;
    size_t klen;
    int rc;
    bool talk;
    bool keep; /* hand the connection over in conn */
    mp_conn *conn;
} client_job;

static void *client_main(void *arg)
{
    client_job *j = arg;
    mp_conn *c;
    j->rc = mp_client(&c, j->addr, j->key, j->klen);
    if (j->rc != 0)
        return NULL;
    if (j->keep) {
        j->conn = c;
        return NULL;
    }
    if (j->talk) {
        mp_buf in = MP_BUF_INIT;
        if (mp_conn_send_bytes(c, "hi", 2) != 0)
            j->rc = -90001;
        else if (mp_conn_recv_bytes(c, &in, 0) != 0 || in.len != 2 || memcmp(in.data, "ho", 2))
            j->rc = -90002;
        mp_buf_free(&in);
    }
    (void)mp_conn_close(c);
    return NULL;
}

static void client_start_keep(client_job *j, const char *addr, const void *key, size_t klen,
                              bool talk, bool keep)
{
    *j = (client_job){
        .addr = addr, .key = key, .klen = klen, .rc = -12345, .talk = talk, .keep = keep};
    ASSERT_EQ(0, pthread_create(&j->tid, NULL, client_main, j));
}

static void client_start(client_job *j, const char *addr, const void *key, size_t klen, bool t)
{
    client_start_keep(j, addr, key, klen, t, false);
}

static int client_join(client_job *j)
{
    ASSERT_EQ(0, pthread_join(j->tid, NULL));
    return j->rc;
}

MP_TEST(authkey_right)
{
    static const struct {
        const char *key;
        size_t len;
    } keys[] = {{"secret", 6}, {"\0\1\2\0", 4}, {"k", 1}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        for (int tcp = 0; tcp < 2; tcp++) {
            mp_listener *l;
            ASSERT_OK(mp_listener_new(&l, tcp ? "tcp:127.0.0.1:0" : NULL, keys[i].key, keys[i].len,
                                      0));
            client_job j;
            client_start(&j, mp_listener_address(l), keys[i].key, keys[i].len, true);
            mp_conn *s;
            ASSERT_OK(mp_listener_accept(l, &s, 30));
            EXPECT_STR(s, "hi");
            SEND_STR(s, "ho");
            ASSERT_OK(client_join(&j));
            ASSERT_OK(mp_conn_close(s));
            ASSERT_OK(mp_listener_close(l));
        }
    }
    /* a 1024-byte key */
    static uint8_t longkey[1024];
    fill(longkey, sizeof longkey, 11);
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, longkey, sizeof longkey, 0));
    client_job j;
    client_start(&j, mp_listener_address(l), longkey, sizeof longkey, false);
    mp_conn *s;
    ASSERT_OK(mp_listener_accept(l, &s, 30));
    ASSERT_OK(client_join(&j));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));
}

MP_TEST(authkey_wrong)
{
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, "secret", 6, 0));
    client_job j;
    mp_conn *s = NULL;
    for (int i = 0; i < 2; i++) {
        client_start(&j, mp_listener_address(l), i ? "secreT" : "wrong", i ? 6 : 5, true);
        ASSERT_ERR(MP_EAUTH, mp_listener_accept(l, &s, 30));
        ASSERT_ERR(MP_EAUTH, client_join(&j));
    }
    /* the listener is still usable */
    client_start(&j, mp_listener_address(l), "secret", 6, true);
    ASSERT_OK(mp_listener_accept(l, &s, 30));
    EXPECT_STR(s, "hi");
    SEND_STR(s, "ho");
    ASSERT_OK(client_join(&j));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));
}

typedef struct accept_job {
    pthread_t tid;
    mp_listener *l;
    mp_conn *s;
    int rc;
} accept_job;

static void *accept_main(void *arg)
{
    accept_job *j = arg;
    j->rc = mp_listener_accept(j->l, &j->s, 30);
    return NULL;
}

/* One side with a key, the other without: the keyed side notices. */
MP_TEST(authkey_on_one_side_only)
{
    /* the listener has a key; a plain client answers nonsense
     * (test_deliver_challenge_auth_failure) */
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, "secret", 6, 0));
    accept_job aj = {.l = l, .rc = -12345};
    ASSERT_EQ(0, pthread_create(&aj.tid, NULL, accept_main, &aj));
    mp_conn *c, *s;
    ASSERT_OK(mp_client(&c, mp_listener_address(l), NULL, 0));
    mp_buf in = MP_BUF_INIT;
    ASSERT_OK(mp_conn_recv_bytes(c, &in, 256)); /* the challenge */
    ASSERT_GE(in.len, 11 + 20);
    ASSERT_MEMEQ("#CHALLENGE#", in.data, 11);
    SEND_STR(c, "something bogus");
    ASSERT_OK(mp_conn_recv_bytes(c, &in, 256));
    ASSERT_EQ(9, in.len);
    ASSERT_MEMEQ("#FAILURE#", in.data, 9);
    ASSERT_EQ(0, pthread_join(aj.tid, NULL));
    ASSERT_ERR(MP_EAUTH, aj.rc);
    ASSERT_OK(mp_conn_close(c));
    ASSERT_OK(mp_listener_close(l));

    /* the client has a key; the plain listener's first message is no
     * challenge (test_answer_challenge_auth_failure) */
    ASSERT_OK(mp_listener_new(&l, NULL, NULL, 0, 0));
    client_job j;
    client_start(&j, mp_listener_address(l), "secret", 6, false);
    ASSERT_OK(mp_listener_accept(l, &s, 30));
    SEND_STR(s, "not a challenge at all, but long enough");
    ASSERT_ERR(MP_EAUTH, client_join(&j));
    ASSERT_OK(mp_conn_close(s));

    /* a listener that hangs up inside the handshake */
    client_start(&j, mp_listener_address(l), "secret", 6, false);
    ASSERT_OK(mp_listener_accept(l, &s, 30));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_ERR(MP_EAUTH, client_join(&j));
    ASSERT_OK(mp_listener_close(l));
    mp_buf_free(&in);
}

MP_TEST(authkey_empty_is_refused)
{
    mp_listener *l;
    ASSERT_ERR(MP_EINVAL, mp_listener_new(&l, NULL, "", 0, 0));
    ASSERT_ERR(MP_EINVAL, mp_listener_new(&l, NULL, "x", 0, 0));
    ASSERT_OK(mp_listener_new(&l, NULL, NULL, 0, 0));
    mp_conn *c, *s;
    ASSERT_ERR(MP_EINVAL, mp_client(&c, mp_listener_address(l), "", 0));
    ASSERT_ERR(MP_EINVAL, mp_client(&c, mp_listener_address(l), "x", 0));
    /* refused before connecting */
    ASSERT_ERR(MP_ETIMEDOUT, mp_listener_accept(l, &s, 0.2));
    ASSERT_OK(mp_listener_close(l));
}

/* A peer that connects to a keyed listener and never answers holds accept
 * no longer than its timeout; the listener stays usable. */
MP_TEST(accept_timeout_bounds_a_stalled_handshake)
{
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, "secret", 6, 0));
    mp_conn *mute, *s;
    ASSERT_OK(mp_client(&mute, mp_listener_address(l), NULL, 0)); /* no handshake */
    double t0 = mp_monotonic();
    int r = mp_listener_accept(l, &s, 0.5);
    double took = mp_monotonic() - t0;
    if (r != MP_ETIMEDOUT && r != MP_EAUTH)
        MP__FAIL("a stalled handshake: %d (%s)", r, mp_errname(r));
    ASSERT_GE(took * 1000, 400);
    ASSERT_LT(took, 10.0);
    ASSERT_OK(mp_conn_close(mute));

    /* a good client next; the handshake's time limit is lifted once it is
     * done: a message that comes after the accept's timeout still arrives */
    client_job j;
    client_start_keep(&j, mp_listener_address(l), "secret", 6, false, true);
    ASSERT_OK(mp_listener_accept(l, &s, 1.0));
    ASSERT_OK(client_join(&j));
    sender snd;
    sender_start(&snd, j.conn, "later", 5, 1.5);
    EXPECT_STR(s, "later");
    ASSERT_OK(sender_join(&snd));
    ASSERT_OK(mp_conn_close(j.conn));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));
}

/* A peer that sends one byte every @period_ms until told to stop: the
 * first bytes of a 256-byte handshake reply, which never completes in time. */
typedef struct trickler {
    pthread_t tid;
    int fd;
    int period_ms;
    _Atomic bool stop;
    size_t sent;
} trickler;

static void *trickle_main(void *arg)
{
    trickler *t = arg;
    static const uint8_t reply[4] = {0, 0, 1, 0}; /* a frame of 256 bytes */
    while (!atomic_load(&t->stop)) {
        uint8_t b = t->sent < sizeof reply ? reply[t->sent] : (uint8_t)t->sent;
        if (send(t->fd, &b, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
            t->sent++;
        struct timespec ts = {0, (long)t->period_ms * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void trickle_start(trickler *t, int fd, int period_ms)
{
    t->fd = fd;
    t->period_ms = period_ms;
    t->sent = 0;
    atomic_store(&t->stop, false);
    ASSERT_EQ(0, pthread_create(&t->tid, NULL, trickle_main, t));
}

static void trickle_stop(trickler *t)
{
    atomic_store(&t->stop, true);
    ASSERT_EQ(0, pthread_join(t->tid, NULL));
}

/* One deadline bounds the whole accept: a peer trickling a byte every
 * 200 ms (each read well within the timeout) cannot stretch a 0.5 s accept,
 * which a per-read socket timeout would let it do for ~260 reads. */
MP_TEST(accept_timeout_bounds_a_trickling_handshake, .timeout_s = 30)
{
    mp_listener *l;
    ASSERT_OK(mp_listener_new(&l, NULL, "secret", 6, 0));
    mp_conn *slow, *s;
    ASSERT_OK(mp_client(&slow, mp_listener_address(l), NULL, 0)); /* no handshake */
    trickler t;
    trickle_start(&t, mp_conn_fileno(slow), 200);
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_listener_accept(l, &s, 0.5));
    double took = mp_monotonic() - t0;
    trickle_stop(&t);
    ASSERT_GE(took * 1000, 400);
    ASSERT_LT(took, 3.0);
    /* the listener dropped it: the challenge, then end of file */
    uint8_t buf[256];
    size_t got = 0;
    for (;;) {
        ASSERT_TRUE(fd_ready(mp_conn_fileno(slow)) || mp_conn_poll(slow, 10) == 1);
        ssize_t r = read(mp_conn_fileno(slow), buf, sizeof buf);
        if (r <= 0) {
            ASSERT_TRUE(r == 0 || errno == ECONNRESET);
            break;
        }
        got += (size_t)r;
    }
    ASSERT_EQ(got, 4 + 11 + 8 + 40); /* "#CHALLENGE#{sha256}" + 40 bytes */
    ASSERT_OK(mp_conn_close(slow));

    /* still usable; a timeout of 0 takes a waiting client and still gives
     * its handshake the time it needs */
    client_job j;
    client_start_keep(&j, mp_listener_address(l), "secret", 6, false, true);
    mp_waitable w = {.kind = MP_WAIT_FD, .fd = mp_listener_fileno(l)};
    ASSERT_EQ(1, mp_wait(&w, 1, 10));
    ASSERT_OK(mp_listener_accept(l, &s, 0));
    ASSERT_OK(client_join(&j));
    ASSERT_OK(mp_conn_send_bytes(j.conn, "hi", 2));
    EXPECT_STR(s, "hi");
    ASSERT_OK(mp_conn_close(j.conn));
    ASSERT_OK(mp_conn_close(s));
    ASSERT_OK(mp_listener_close(l));
}

/* ---- the handshake, against a hand-written peer ------------------------- */

static const EVP_MD *digest(const char *name)
{
    if (strcmp(name, "md5") == 0)
        return EVP_md5();
    if (strcmp(name, "sha1") == 0)
        return EVP_sha1();
    if (strcmp(name, "sha256") == 0)
        return EVP_sha256();
    if (strcmp(name, "sha384") == 0)
        return EVP_sha384();
    if (strcmp(name, "sha3_256") == 0)
        return EVP_sha3_256();
    if (strcmp(name, "sha3_384") == 0)
        return EVP_sha3_384();
    MP__FAIL("no digest %s", name);
}

static size_t hmac(const char *name, const void *key, size_t klen, const void *msg, size_t n,
                   uint8_t *out)
{
    unsigned len = 0;
    ASSERT_TRUE(HMAC(digest(name), key, (int)klen, msg, n, out, &len) != NULL);
    return len;
}

static const char KEY[] = "the shared key";
#define KEYLEN (sizeof KEY - 1)

MP_TEST(auth_answer_legacy_challenge)
{
    mp_conn *c;
    int peer;
    raw_pair(&c, &peer);
    uint8_t chal[31] = "#CHALLENGE#";
    fill(chal + 11, 20, 21);
    put_frame(peer, chal, sizeof chal);
    put_frame(peer, "#WELCOME#", 9);
    ASSERT_OK(mp__auth_answer(c, KEY, KEYLEN));
    uint8_t reply[256], want[64];
    size_t n = get_frame(peer, reply, sizeof reply);
    ASSERT_EQ(16, n); /* raw HMAC-MD5, no prefix */
    ASSERT_EQ(16, hmac("md5", KEY, KEYLEN, chal + 11, 20, want));
    ASSERT_MEMEQ(want, reply, 16);
    ASSERT_FALSE(fd_ready(peer)); /* one reply, nothing else */
    ASSERT_OK(mp_conn_close(c));
    close(peer);
}

MP_TEST(auth_answer_named_digests)
{
    static const char *const names[] = {"sha256", "md5", "sha384", "sha3_256", "sha3_384"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        mp_conn *c;
        int peer;
        raw_pair(&c, &peer);
        uint8_t chal[128];
        int pre = snprintf((char *)chal, sizeof chal, "#CHALLENGE#{%s}", names[i]);
        fill(chal + pre, 40, (unsigned)i);
        size_t clen = (size_t)pre + 40;
        put_frame(peer, chal, clen);
        put_frame(peer, "#WELCOME#", 9);
        ASSERT_OK(mp__auth_answer(c, KEY, KEYLEN));
        uint8_t reply[256], want[128];
        size_t n = get_frame(peer, reply, sizeof reply);
        /* "{name}" + HMAC-name over the whole payload after #CHALLENGE#,
         * the "{name}" prefix included */
        size_t plen = (size_t)pre - 11;
        size_t mlen = hmac(names[i], KEY, KEYLEN, chal + 11, clen - 11, want);
        ASSERT_EQ(plen + mlen, n);
        ASSERT_MEMEQ(chal + 11, reply, plen);
        ASSERT_MEMEQ(want, reply + plen, mlen);
        ASSERT_OK(mp_conn_close(c));
        close(peer);
    }
}

/* The responder refuses: returns @want after the peer wrote @frames (and
 * closed its writing side, so that a wrong reading meets EOF, not a hang). */
static int answer_to(const void *chal, size_t n, const void *second, size_t n2)
{
    mp_conn *c;
    int peer;
    raw_pair(&c, &peer);
    put_frame(peer, chal, n);
    if (second)
        put_frame(peer, second, n2);
    shutdown(peer, SHUT_WR);
    int r = mp__auth_answer(c, KEY, KEYLEN);
    ASSERT_OK(mp_conn_close(c));
    close(peer);
    return r;
}

MP_TEST(auth_answer_refusals)
{
    uint8_t m[400];
    /* unknown or unsupported digest */
    int pre = snprintf((char *)m, sizeof m, "#CHALLENGE#{sha1}");
    fill(m + pre, 40, 1);
    ASSERT_ERR(MP_EAUTH, answer_to(m, (size_t)pre + 40, "#WELCOME#", 9));
    pre = snprintf((char *)m, sizeof m, "#CHALLENGE#{nosuch}");
    fill(m + pre, 40, 1);
    ASSERT_ERR(MP_EAUTH, answer_to(m, (size_t)pre + 40, "#WELCOME#", 9));
    /* no closing brace */
    pre = snprintf((char *)m, sizeof m, "#CHALLENGE#{sha256");
    fill(m + pre, 40, 1);
    m[pre] = 'x';
    for (int i = 0; i < 40; i++)
        if (m[pre + i] == '}')
            m[pre + i] = 'y';
    ASSERT_ERR(MP_EAUTH, answer_to(m, (size_t)pre + 40, "#WELCOME#", 9));
    /* not a challenge */
    memcpy(m, "#CHALLENGX#", 11);
    fill(m + 11, 20, 2);
    ASSERT_ERR(MP_EAUTH, answer_to(m, 31, "#WELCOME#", 9));
    /* too short */
    memcpy(m, "#CHALLENGE#", 11);
    ASSERT_ERR(MP_EAUTH, answer_to(m, 11 + 10, "#WELCOME#", 9));
    ASSERT_ERR(MP_EAUTH, answer_to(m, 11, "#WELCOME#", 9));
    /* a right answer, refused by the peer */
    fill(m + 11, 20, 3);
    ASSERT_ERR(MP_EAUTH, answer_to(m, 31, "#FAILURE#", 9));
    ASSERT_ERR(MP_EAUTH, answer_to(m, 31, "#WELCOME#!", 10));
    /* no verdict at all: the peer is gone */
    int r = answer_to(m, 31, NULL, 0);
    ASSERT_TRUE(r == MP_EOF || r == MP_EAUTH);
    /* more than 256 bytes */
    fill(m + 11, 289, 4);
    r = answer_to(m, 300, "#WELCOME#", 9);
    if (r != MP_EAUTH && r != MP_EMSGSIZE)
        MP__FAIL("a 300-byte challenge: %d (%s)", r, mp_errname(r));
    /* nothing at all */
    mp_conn *c;
    int peer;
    raw_pair(&c, &peer);
    close(peer);
    r = mp__auth_answer(c, KEY, KEYLEN);
    ASSERT_TRUE(r == MP_EOF || r == MP_EAUTH);
    ASSERT_OK(mp_conn_close(c));
}

/* As Python 3.12+ (answer_challenge: "challenge too short"): what follows
 * "#CHALLENGE#" must be at least 20 bytes, 16 included; nothing is sent in
 * reply to a short one. */
MP_TEST(auth_answer_refuses_a_short_challenge)
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 19};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        uint8_t m[11 + 20] = "#CHALLENGE#";
        fill(m + 11, lens[i], 7);
        mp_conn *c;
        int peer;
        raw_pair(&c, &peer);
        put_frame(peer, m, 11 + lens[i]);
        put_frame(peer, "#WELCOME#", 9);
        ASSERT_ERR(MP_EAUTH, mp__auth_answer(c, KEY, KEYLEN));
        ASSERT_FALSE(fd_ready(peer)); /* no reply went out */
        ASSERT_OK(mp_conn_close(c));
        close(peer);
    }
    /* 20 bytes is the legacy form, answered */
    uint8_t m[31] = "#CHALLENGE#";
    fill(m + 11, 20, 7);
    ASSERT_OK(answer_to(m, 31, "#WELCOME#", 9));
}

typedef struct auth_job {
    pthread_t tid;
    mp_conn *c;
    const void *key;
    size_t klen;
    bool deliver;
    int rc;
} auth_job;

static void *auth_main(void *arg)
{
    auth_job *j = arg;
    j->rc = j->deliver ? mp__auth_deliver(j->c, j->key, j->klen)
                       : mp__auth_answer(j->c, j->key, j->klen);
    return NULL;
}

static void auth_start(auth_job *j, mp_conn *c, const void *key, size_t klen, bool deliver)
{
    *j = (auth_job){.c = c, .key = key, .klen = klen, .deliver = deliver, .rc = -12345};
    ASSERT_EQ(0, pthread_create(&j->tid, NULL, auth_main, j));
}

static int auth_join(auth_job *j)
{
    ASSERT_EQ(0, pthread_join(j->tid, NULL));
    return j->rc;
}

enum reply_kind {
    R_RAW_MD5,      /* 16-byte HMAC-MD5 over the whole payload (a 3.11 peer) */
    R_NAMED,        /* "{name}" + HMAC-name over the whole payload */
    R_NAMED_NOPRE,  /* "{name}" + HMAC over the random part only */
    R_RAW_MD5_NOPRE,
    R_LITERAL,      /* the bytes given */
};

static const struct deliver_case {
    const char *what;
    enum reply_kind kind;
    const char *name;
    const char *key;
    int cut; /* bytes taken off the MAC; -1: its last byte changed */
    const char *literal;
    size_t litlen;
    bool ok;
} deliver_cases[] = {
    {"{sha256} reply", R_NAMED, "sha256", KEY, 0, NULL, 0, true},
    {"legacy 16-byte MD5 reply", R_RAW_MD5, "md5", KEY, 0, NULL, 0, true},
    {"{md5} reply", R_NAMED, "md5", KEY, 0, NULL, 0, true},
    {"{sha384} reply", R_NAMED, "sha384", KEY, 0, NULL, 0, true},
    {"{sha3_256} reply", R_NAMED, "sha3_256", KEY, 0, NULL, 0, true},
    {"{sha3_384} reply", R_NAMED, "sha3_384", KEY, 0, NULL, 0, true},
    {"{sha1} reply", R_NAMED, "sha1", KEY, 0, NULL, 0, false},
    {"{sha256} reply, wrong key", R_NAMED, "sha256", "another key", 0, NULL, 0, false},
    {"MD5 reply, wrong key", R_RAW_MD5, "md5", "another key", 0, NULL, 0, false},
    {"{sha256} reply, MAC one byte short", R_NAMED, "sha256", KEY, 1, NULL, 0, false},
    {"{sha256} reply, last MAC byte wrong", R_NAMED, "sha256", KEY, -1, NULL, 0, false},
    {"MD5 reply, last MAC byte wrong", R_RAW_MD5, "md5", KEY, -1, NULL, 0, false},
    {"{sha256} MAC without the prefix", R_NAMED_NOPRE, "sha256", KEY, 0, NULL, 0, false},
    {"MD5 MAC without the prefix", R_RAW_MD5_NOPRE, "md5", KEY, 0, NULL, 0, false},
    {"an empty reply", R_LITERAL, NULL, NULL, 0, "", 0, false},
    {"something bogus", R_LITERAL, NULL, NULL, 0, "something bogus", 15, false},
    {"{sha256} alone", R_LITERAL, NULL, NULL, 0, "{sha256}", 8, false},
    {"#WELCOME#", R_LITERAL, NULL, NULL, 0, "#WELCOME#", 9, false},
};

MP_TEST(auth_deliver_replies)
{
    uint8_t first_random[40];
    for (size_t i = 0; i < sizeof deliver_cases / sizeof deliver_cases[0]; i++) {
        const struct deliver_case *dc = &deliver_cases[i];
        mp_conn *c;
        int peer;
        raw_pair(&c, &peer);
        auth_job j;
        auth_start(&j, c, KEY, KEYLEN, true);

        uint8_t chal[256];
        size_t n = get_frame(peer, chal, sizeof chal);
        ASSERT_EQ(59, n); /* 3.12+'s challenge: "#CHALLENGE#{sha256}" + 40 bytes */
        ASSERT_MEMEQ("#CHALLENGE#{sha256}", chal, 19);
        if (i == 0)
            memcpy(first_random, chal + 19, 40);
        else if (memcmp(first_random, chal + 19, 40) == 0)
            MP__FAIL("two challenges with the same random part");
        const uint8_t *m = chal + 11; /* the payload the MAC covers */
        size_t mlen = n - 11;

        uint8_t reply[256];
        size_t rlen = 0;
        switch (dc->kind) {
        case R_RAW_MD5:
            rlen = hmac("md5", dc->key, strlen(dc->key), m, mlen, reply);
            break;
        case R_RAW_MD5_NOPRE:
            rlen = hmac("md5", dc->key, strlen(dc->key), chal + 19, 40, reply);
            break;
        case R_NAMED:
        case R_NAMED_NOPRE: {
            int pre = snprintf((char *)reply, sizeof reply, "{%s}", dc->name);
            rlen = (size_t)pre;
            if (dc->kind == R_NAMED)
                rlen += hmac(dc->name, dc->key, strlen(dc->key), m, mlen, reply + pre);
            else
                rlen += hmac(dc->name, dc->key, strlen(dc->key), chal + 19, 40, reply + pre);
            if (dc->cut > 0)
                rlen -= (size_t)dc->cut;
            break;
        }
        case R_LITERAL:
            memcpy(reply, dc->literal, dc->litlen);
            rlen = dc->litlen;
            break;
        }
        if (dc->cut < 0)
            reply[rlen - 1] ^= 0x01;
        put_frame(peer, reply, rlen);
        uint8_t verdict[64];
        size_t vlen = get_frame(peer, verdict, sizeof verdict);
        int rc = auth_join(&j);
        const char *want = dc->ok ? "#WELCOME#" : "#FAILURE#";
        if (vlen != 9 || memcmp(verdict, want, 9) != 0)
            MP__FAIL("%s: the peer got \"%.*s\", want %s", dc->what, (int)vlen, verdict, want);
        if (rc != (dc->ok ? 0 : MP_EAUTH))
            MP__FAIL("%s: mp__auth_deliver returned %d (%s)", dc->what, rc, mp_errname(rc));
        ASSERT_FALSE(fd_ready(peer));
        ASSERT_OK(mp_conn_close(c));
        close(peer);
    }
}

MP_TEST(auth_deliver_refuses_an_oversized_reply)
{
    mp_conn *c;
    int peer;
    raw_pair(&c, &peer);
    auth_job j;
    auth_start(&j, c, KEY, KEYLEN, true);
    uint8_t chal[256];
    ASSERT_EQ(59, get_frame(peer, chal, sizeof chal));
    uint8_t big[300];
    fill(big, sizeof big, 8);
    put_frame(peer, big, sizeof big);
    int rc = auth_join(&j);
    if (rc != MP_EAUTH && rc != MP_EMSGSIZE)
        MP__FAIL("a 300-byte reply: %d (%s)", rc, mp_errname(rc));
    ASSERT_OK(mp_conn_close(c));
    close(peer);

    /* and a peer that goes away */
    raw_pair(&c, &peer);
    auth_start(&j, c, KEY, KEYLEN, true);
    ASSERT_EQ(59, get_frame(peer, chal, sizeof chal));
    close(peer);
    rc = auth_join(&j);
    ASSERT_TRUE(rc == MP_EOF || rc == MP_EAUTH);
    ASSERT_OK(mp_conn_close(c));
}

/* The library's two roles against each other, both orders of keys. */
MP_TEST(auth_roles_together)
{
    for (int wrong = 0; wrong < 2; wrong++) {
        mp_conn *a, *b;
        ASSERT_OK(mp_pipe(&a, &b, true));
        auth_job j;
        auth_start(&j, a, KEY, KEYLEN, true);
        int r = mp__auth_answer(b, wrong ? "nope" : KEY, wrong ? 4 : KEYLEN);
        ASSERT_ERR(wrong ? MP_EAUTH : 0, r);
        ASSERT_ERR(wrong ? MP_EAUTH : 0, auth_join(&j));
        if (!wrong) {
            /* the stream is in step afterwards */
            SEND_STR(a, "after");
            EXPECT_STR(b, "after");
        }
        ASSERT_OK(mp_conn_close(a));
        ASSERT_OK(mp_conn_close(b));
    }
}

/* ---- mp_wait ------------------------------------------------------------ */

MP_TEST(wait_timeout_and_ready_flags)
{
    mp_conn *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    mp_waitable w[2] = {{.kind = MP_WAIT_CONN, .conn = a}, {.kind = MP_WAIT_CONN, .conn = b}};
    w[0].ready = w[1].ready = true; /* out only: overwritten */
    double t0 = mp_monotonic();
    ASSERT_EQ(0, mp_wait(w, 2, 0.3));
    double took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 290);
    ASSERT_LT(took, 5.0);
    ASSERT_FALSE(w[0].ready || w[1].ready);
    t0 = mp_monotonic();
    ASSERT_EQ(0, mp_wait(w, 2, 0));
    ASSERT_LT(mp_monotonic() - t0, 1.0);

    SEND_STR(b, "x");
    t0 = mp_monotonic();
    ASSERT_EQ(1, mp_wait(w, 2, 20));
    ASSERT_LT(mp_monotonic() - t0, 2.0);
    ASSERT_TRUE(w[0].ready);
    ASSERT_FALSE(w[1].ready);
    ASSERT_EQ(1, mp_wait(w, 2, 0)); /* level-triggered */
    EXPECT_STR(a, "x");
    ASSERT_EQ(0, mp_wait(w, 2, 0));
    ASSERT_FALSE(w[0].ready);

    /* an empty list just sleeps */
    t0 = mp_monotonic();
    ASSERT_EQ(0, mp_wait(NULL, 0, 0.2));
    took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 190);
    ASSERT_LT(took, 5.0);

    /* end of file is ready */
    ASSERT_OK(mp_conn_close(b));
    ASSERT_EQ(1, mp_wait(w, 1, 10));
    ASSERT_TRUE(w[0].ready);
    ASSERT_OK(mp_conn_close(a));
}

/* args: (conn).  Ends when a message comes. */
static int t_gate(const mp_args *a)
{
    mp_buf in = MP_BUF_INIT;
    int r = mp_conn_recv_bytes(mp_args_conn(a, 0), &in, 0);
    mp_buf_free(&in);
    return r == 0 ? 0 : 1;
}

static void expect_ready(const mp_waitable *w, size_t n, const char *want)
{
    for (size_t i = 0; i < n; i++)
        if (w[i].ready != (want[i] == '1'))
            MP__FAIL("item %zu: ready=%d, want %s", i, w[i].ready, want);
}

MP_TEST(wait_mixed_items, .variants = MP_START_METHODS, .timeout_s = 60)
{
    mp_conn *x, *y, *ga, *gb;
    ASSERT_OK(mp_pipe(&x, &y, true));
    ASSERT_OK(mp_pipe(&ga, &gb, true));
    int pfd[2];
    ASSERT_EQ(0, pipe2(pfd, O_CLOEXEC));
    mp_args *args;
    ASSERT_OK(mp_args_new(&args));
    ASSERT_OK(mp_args_add_conn(args, gb));
    mp_process *p;
    p = mp_test_start(ctx, t_gate, args);
    mp_args_free(args);
    ASSERT_OK(mp_conn_close(gb));

    mp_waitable w[3] = {
        {.kind = MP_WAIT_CONN, .conn = x},
        {.kind = MP_WAIT_PROCESS, .process = p},
        {.kind = MP_WAIT_FD, .fd = pfd[0]},
    };
    double t0 = mp_monotonic();
    ASSERT_EQ(0, mp_wait(w, 3, 0.2));
    ASSERT_GE((mp_monotonic() - t0) * 1000, 190);
    expect_ready(w, 3, "000");

    /* the process ends */
    SEND_STR(ga, "go");
    t0 = mp_monotonic();
    ASSERT_EQ(1, mp_wait(w, 3, 30));
    ASSERT_LT(mp_monotonic() - t0, 20.0);
    expect_ready(w, 3, "010");
    t0 = mp_monotonic();
    ASSERT_EQ(1, mp_wait(w, 3, 30)); /* still: level-triggered, at once */
    ASSERT_LT(mp_monotonic() - t0, 1.0);
    expect_ready(w, 3, "010");

    SEND_STR(y, "m");
    t0 = mp_monotonic();
    ASSERT_EQ(2, mp_wait(w, 3, 30));
    ASSERT_LT(mp_monotonic() - t0, 1.0);
    expect_ready(w, 3, "110");
    write_all(pfd[1], "z", 1);
    ASSERT_EQ(3, mp_wait(w, 3, 30));
    expect_ready(w, 3, "111");

    EXPECT_STR(x, "m");
    char ch;
    read_exact(pfd[0], &ch, 1);
    ASSERT_EQ(1, mp_wait(w, 3, 0));
    expect_ready(w, 3, "010");
    /* an fd at end of file is ready */
    close(pfd[1]);
    ASSERT_EQ(2, mp_wait(w, 3, 0));
    expect_ready(w, 3, "011");

    ASSERT_EQ(0, mp_test_join(p, 60));
    close(pfd[0]);
    ASSERT_OK(mp_conn_close(x));
    ASSERT_OK(mp_conn_close(y));
    ASSERT_OK(mp_conn_close(ga));
}

static int t_nothing(const mp_args *a)
{
    (void)a;
    return 0;
}

MP_TEST(wait_bad_items)
{
    mp_waitable w = {.kind = MP_WAIT_CONN, .conn = NULL};
    ASSERT_ERR(MP_EINVAL, mp_wait(&w, 1, 0));
    mp_process *p;
    ASSERT_OK(mp_process_new(&p, NULL, t_nothing, NULL));
    w = (mp_waitable){.kind = MP_WAIT_PROCESS, .process = p}; /* never started */
    ASSERT_ERR(MP_EINVAL, mp_wait(&w, 1, 0));
    ASSERT_OK(mp_process_close(p));
    w = (mp_waitable){.kind = MP_WAIT_FD, .fd = -1};
    ASSERT_ERR(MP_EINVAL, mp_wait(&w, 1, 0));
    w = (mp_waitable){.kind = (int)42, .fd = 0};
    ASSERT_ERR(MP_EINVAL, mp_wait(&w, 1, 0));
}

/* More items than fit on the stack: the same idle end many times, and one
 * ready item last. */
MP_TEST(wait_many_items)
{
    enum { N = 150 };
    mp_conn *a, *b, *x, *y;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_OK(mp_pipe(&x, &y, true));
    static mp_waitable w[N];
    for (size_t i = 0; i < N - 1; i++)
        w[i] = (mp_waitable){.kind = MP_WAIT_CONN, .conn = a};
    w[N - 1] = (mp_waitable){.kind = MP_WAIT_CONN, .conn = x};
    ASSERT_EQ(0, mp_wait(w, N, 0.05));
    SEND_STR(y, "ready");
    ASSERT_EQ(1, mp_wait(w, N, 10));
    for (size_t i = 0; i < N - 1; i++)
        ASSERT_FALSE(w[i].ready);
    ASSERT_TRUE(w[N - 1].ready);
    SEND_STR(b, "all");
    ASSERT_EQ(N, mp_wait(w, N, 10));
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(b));
    ASSERT_OK(mp_conn_close(x));
    ASSERT_OK(mp_conn_close(y));
}
