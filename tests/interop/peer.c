/*
 * interop_peer: the C end of one multiprocessing.connection conversation with
 * a Python peer (tests/interop/peer.py is its mirror, driver.py runs both).
 *
 *   interop_peer listen  ADDRESS KEY [--auth-fail-first] [options]
 *   interop_peer connect ADDRESS KEY [--expect-auth-fail] [options]
 *
 *   KEY                 "none" (no handshake) or the key's bytes in hex
 *   --sizes=N,N,...     message plan (default 0,3,16385,16777216)
 *   --alarm=SECONDS     die by SIGALRM after this long (default 100), so that
 *                       a peer can never outlive a driver that was killed
 *
 * listen: prints the listener's address (mp_listener_address) as the only
 * line on stdout, accepts one connection (after one that must fail the
 * handshake with MP_EAUTH, with --auth-fail-first), receives the plan's
 * messages, sends the plan's messages back, then expects end of file.
 *
 * connect: mp_client (which must return MP_EAUTH with --expect-auth-fail,
 * and then nothing else happens), sends the plan's messages, receives the
 * plan's messages, checks nothing more is waiting, and closes.
 *
 * Message i of size n in direction d (1: connector to listener, 2: back) has
 * byte j = (131 j + 7 n + 29 d) mod 251, compared byte for byte.  Every call
 * is checked; any mismatch prints one line on stderr and exits 1.
 */
#include <multiproc.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { DIR_TO_LISTENER = 1, DIR_TO_CONNECTOR = 2 };
enum { MAX_SIZES = 32, MAX_KEY = 1024 };

static const double ACCEPT_TIMEOUT = 90.0;
static const char *role = "peer";

static _Noreturn MP_PRINTF(1, 2) void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "interop_peer[%s]: FAIL: ", role);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* @rc must be exactly @want. */
static void expect(int rc, int want, const char *what)
{
    if (rc != want)
        die("%s returned %d (%s: %s), want %d (%s)", what, rc, mp_errname(rc), mp_strerror(rc),
            want, mp_errname(want));
}

static unsigned char pattern(size_t j, size_t n, int dir)
{
    return (unsigned char)((131 * (j % 251) + 7 * (n % 251) + 29 * (size_t)dir) % 251);
}

static void send_plan(mp_conn *c, const size_t *sizes, size_t count, int dir)
{
    for (size_t i = 0; i < count; i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n ? n : 1);
        if (!p)
            die("out of memory for a %zu-byte message", n);
        for (size_t j = 0; j < n; j++)
            p[j] = pattern(j, n, dir);
        char what[64];
        snprintf(what, sizeof what, "mp_conn_send_bytes(%zu bytes)", n);
        expect(mp_conn_send_bytes(c, p, n), 0, what);
        free(p);
    }
}

static void recv_plan(mp_conn *c, const size_t *sizes, size_t count, int dir, mp_buf *b)
{
    for (size_t i = 0; i < count; i++) {
        size_t n = sizes[i];
        char what[64];
        snprintf(what, sizeof what, "mp_conn_recv_bytes(message %zu, %zu bytes)", i, n);
        expect(mp_conn_recv_bytes(c, b, 0), 0, what);
        if (b->len != n)
            die("message %zu: received %zu bytes, want %zu", i, b->len, n);
        const unsigned char *p = b->data;
        for (size_t j = 0; j < n; j++)
            if (p[j] != pattern(j, n, dir))
                die("message %zu (%zu bytes): byte %zu is 0x%02x, want 0x%02x", i, n, j, p[j],
                    pattern(j, n, dir));
    }
}

static size_t parse_sizes(const char *s, size_t *sizes)
{
    size_t count = 0;
    while (*s) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || errno || (*end && *end != ',') || count == MAX_SIZES)
            die("bad --sizes list at \"%s\"", s);
        sizes[count++] = (size_t)v;
        s = *end ? end + 1 : end;
    }
    return count;
}

/* "none" gives NULL; otherwise hex digits, decoded into @key. */
static const void *parse_key(const char *s, unsigned char *key, size_t *len)
{
    *len = 0;
    if (strcmp(s, "none") == 0)
        return NULL;
    size_t n = strlen(s);
    if (n == 0 || n % 2 || n / 2 > MAX_KEY)
        die("bad key \"%s\": want \"none\" or 1..%d bytes in hex", s, MAX_KEY);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            die("bad key \"%s\": not hex", s);
        key[i] = (unsigned char)v;
    }
    *len = n / 2;
    return key;
}

static void run_listener(const char *address, const void *key, size_t keylen, bool auth_fail_first,
                         const size_t *sizes, size_t count)
{
    mp_listener *l = NULL;
    expect(mp_listener_new(&l, address, key, keylen, 0), 0, "mp_listener_new");
    const char *real = mp_listener_address(l);
    if (!real)
        die("mp_listener_address returned NULL");
    if (printf("%s\n", real) < 0 || fflush(stdout) != 0)
        die("cannot write the address on stdout");

    mp_conn *c = NULL;
    if (auth_fail_first) {
        expect(mp_listener_accept(l, &c, ACCEPT_TIMEOUT), MP_EAUTH,
               "mp_listener_accept(a client with the wrong key)");
        c = NULL;
        fprintf(stderr, "interop_peer[%s]: wrong key refused (MP_EAUTH)\n", role);
    }
    expect(mp_listener_accept(l, &c, ACCEPT_TIMEOUT), 0, "mp_listener_accept");
    if (!c)
        die("mp_listener_accept returned 0 without a connection");
    if (!mp_conn_readable(c) || !mp_conn_writable(c))
        die("an accepted connection must be readable and writable");

    mp_buf b = MP_BUF_INIT;
    recv_plan(c, sizes, count, DIR_TO_LISTENER, &b);
    send_plan(c, sizes, count, DIR_TO_CONNECTOR);
    expect(mp_conn_recv_bytes(c, &b, 0), MP_EOF, "mp_conn_recv_bytes after the client closed");
    mp_buf_free(&b);
    expect(mp_conn_close(c), 0, "mp_conn_close");
    expect(mp_listener_close(l), 0, "mp_listener_close");
}

static void run_connector(const char *address, const void *key, size_t keylen,
                          bool expect_auth_fail, const size_t *sizes, size_t count)
{
    mp_conn *c = NULL;
    int rc = mp_client(&c, address, key, keylen);
    if (expect_auth_fail) {
        expect(rc, MP_EAUTH, "mp_client(the wrong key)");
        fprintf(stderr, "interop_peer[%s]: wrong key refused (MP_EAUTH)\n", role);
        return;
    }
    expect(rc, 0, "mp_client");
    if (!c)
        die("mp_client returned 0 without a connection");

    mp_buf b = MP_BUF_INIT;
    send_plan(c, sizes, count, DIR_TO_LISTENER);
    recv_plan(c, sizes, count, DIR_TO_CONNECTOR, &b);
    /* The listener now waits for our end of file: nothing more may come. */
    expect(mp_conn_poll(c, 0), 0, "mp_conn_poll after the whole plan");
    mp_buf_free(&b);
    expect(mp_conn_close(c), 0, "mp_conn_close");
}

int main(int argc, char **argv)
{
    if (argc < 4 || (strcmp(argv[1], "listen") && strcmp(argv[1], "connect"))) {
        fprintf(stderr, "usage: %s listen|connect ADDRESS KEY [--auth-fail-first | "
                        "--expect-auth-fail] [--sizes=N,...] [--alarm=SECONDS]\n",
                argv[0]);
        return 2;
    }
    bool listening = strcmp(argv[1], "listen") == 0;
    role = listening ? "C listener" : "C client";

    bool auth_fail = false;
    size_t sizes[MAX_SIZES];
    size_t count = parse_sizes("0,3,16385,16777216", sizes);
    unsigned alarm_s = 100;
    for (int i = 4; i < argc; i++) {
        if (listening && strcmp(argv[i], "--auth-fail-first") == 0)
            auth_fail = true;
        else if (!listening && strcmp(argv[i], "--expect-auth-fail") == 0)
            auth_fail = true;
        else if (strncmp(argv[i], "--sizes=", 8) == 0)
            count = parse_sizes(argv[i] + 8, sizes);
        else if (strncmp(argv[i], "--alarm=", 8) == 0)
            alarm_s = (unsigned)strtoul(argv[i] + 8, NULL, 10);
        else
            die("unknown option \"%s\"", argv[i]);
    }
    alarm(alarm_s);

    static unsigned char keybuf[MAX_KEY];
    size_t keylen;
    const void *key = parse_key(argv[3], keybuf, &keylen);
    if (auth_fail && !key)
        die("a wrong-key run needs a key");

    if (listening)
        run_listener(argv[2], key, keylen, auth_fail, sizes, count);
    else
        run_connector(argv[2], key, keylen, auth_fail, sizes, count);
    fprintf(stderr, "interop_peer[%s]: ok\n", role);
    return 0;
}
