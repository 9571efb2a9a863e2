/*
 * bench_conn.c: connections, against the bare socket operations.
 *
 * mp_pipe(duplex) is an AF_UNIX SOCK_STREAM socketpair, and every message
 * on it is a 4-byte big-endian length and the bytes, written with one
 * sendmsg and read as header, then body.  So every floor below uses a
 * socketpair too and moves the same bytes, header included, in the fewest
 * system calls a correct implementation can: one write of header + body,
 * and one read loop for exactly that many bytes (the floor knows the
 * length; a reader with a read-ahead buffer would get the same in one read).
 *
 * Placement: "free" leaves both processes to the scheduler; "pinned" (_pin)
 * pins this process to the first CPU it may use before the child is forked,
 * so that both share one CPU (as the Event row of bench_sync.c): a round
 * trip is then two context switches and never waits for an idle CPU to
 * wake; "split" (scale_pipe_*) pins the child to the second CPU and this
 * process to the first, so that sender and receiver run at once.
 *
 *   mp_rtt8, raw_rtt8 (free); mp_rtt8_pin, raw_rtt8_pin (pinned)
 *       one round trip of an 8-byte message between this process and an
 *       echoing child: mp_conn_send_bytes + mp_conn_recv_bytes (into an
 *       mp_buf reused across calls) over mp_pipe, on both sides; the floor
 *       writes the 4-byte header + 8 bytes and reads 12 bytes back, on both
 *       sides, over a bare socketpair;
 *   mp_rtt1m, raw_rtt1m; mp_rtt1m_pin, raw_rtt1m_pin
 *       the same with 1 MiB messages (the floor: 4 + 1 MiB each way);
 *   mp_send_args, raw_send_packed (pinned)
 *       one round trip of a typed message: this process builds an mp_args
 *       of three ints (1, 2, 3) and the 16-byte string "0123456789abcdef"
 *       and mp_conn_sends it; the child mp_conn_recvs it, decodes it into C
 *       values (three int64_t and a char *), builds a new mp_args of them
 *       and sends it back; this process receives it, decodes it and checks
 *       every value.  The floor: the same values as a packed struct
 *       (3 x int64_t + char[16], 40 bytes; a fixed size needs no length
 *       header) written and read exactly over a socketpair, copied out and
 *       checked on each side the same way;
 *   mp_connect_auth, raw_connect_auth, raw_connect (free)
 *       a client connection to a unix-socket listener (abstract name) whose
 *       process (a separate, forked one) accepts in a loop: mp_client with
 *       an authkey + mp_conn_close (the listener: mp_listener_accept, which
 *       runs both challenges, + mp_conn_close), timed in the client from
 *       before socket() to after close().  The floor raw_connect_auth does
 *       what the library's handshake must: socket + connect, accept4 on the
 *       other side, then the six messages of both challenges in the
 *       library's order, sizes and directions (listener -> client: 4 + 59
 *       bytes "#CHALLENGE#{sha256}" + 40 nonce bytes; client -> listener:
 *       4 + 40 bytes "{sha256}" + HMAC-SHA256; listener -> client: 4 + 9
 *       bytes "#WELCOME#"; then the same three the other way), each message
 *       one write and one exact read, the digests fixed bytes compared with
 *       memcmp instead of computed, then close on both sides.  raw_connect,
 *       for reference: socket + connect + close into the listener's backlog,
 *       the listener accepting and closing;
 *   scale_pipe_mp_<size>, scale_pipe_floor_<size> (split), for size in 8,
 *   64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304 bytes
 *       one message one way in a stream: the child sends messages of
 *       <size> bytes without pause (mp_conn_send_bytes; the floor: one
 *       write of the 4-byte header + payload), this process receives each
 *       (mp_conn_recv_bytes into an mp_buf reused across calls; the floor:
 *       an exact read of header + payload into one buffer, header checked).
 *       A sample is the receiving of a batch of messages (at least ~16 MiB
 *       or 1000 messages, at least 4), reported per message: the cells are
 *       the spread of batch averages, n = batches.
 *
 * Each round trip benchmark warms up for a tenth of its count first.
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_conn [-n N] [-m N_1MIB] [-c N_CONNECT] [-a N_ARGS] [-b BATCHES]
 *                   [rtt|pin|args|connect|scale ...]
 *   -n  8-byte round trips (default 20000), -m 1 MiB ones (300),
 *   -c  connections (2000), -a typed round trips (default: as -n),
 *   -b  batches per scale_pipe point (20);  names: only those groups.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"
#include "bench_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG (1u << 20)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        die("calloc", ENOMEM);
    return p;
}

/* ---- CPU placement ------------------------------------------------------- */

typedef enum place { FREE, PINNED, SPLIT } place;

static int cpu_first = -1, cpu_second = -1; /* the first two CPUs we may use */
static cpu_set_t saved_cpus;

static void find_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        if (cpu_first < 0) {
            cpu_first = c;
        } else {
            cpu_second = c;
            break;
        }
    }
    if (cpu_second < 0)
        fprintf(stderr, "bench_conn: one CPU only: the split benchmarks run unpinned\n");
}

/* Before the child is forked: it inherits where this process may run. */
static void place_child(place pl)
{
    if (sched_getaffinity(0, sizeof saved_cpus, &saved_cpus) < 0)
        die("sched_getaffinity", errno);
    if (pl == PINNED)
        pin(cpu_first);
    else if (pl == SPLIT && cpu_second >= 0)
        pin(cpu_second);
}

/* After the fork: this process's own CPU. */
static void place_parent(place pl)
{
    if (pl == SPLIT && cpu_second >= 0)
        pin(cpu_first);
}

static void place_end(void)
{
    if (sched_setaffinity(0, sizeof saved_cpus, &saved_cpus) < 0)
        die("sched_setaffinity", errno);
}

/* ---- bare stream I/O ------------------------------------------------------ */

/* A frame of @size bytes: the 4-byte big-endian header, then zeros. */
static char *frame_new(size_t size)
{
    char *f = xcalloc(1, size + 4);
    uint32_t be = htonl((uint32_t)size);
    memcpy(f, &be, 4);
    return f;
}

static bool frame_ok(const char *f, size_t size)
{
    uint32_t be;
    memcpy(&be, f, 4);
    return ntohl(be) == size;
}

/* fork() a child that runs @fn(fd, arg) on sv[1] and exits. */
static pid_t raw_child(int sv[2], void (*fn)(int, size_t), size_t arg)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", errno);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        close(sv[0]);
        fn(sv[1], arg);
        _exit(0);
    }
    close(sv[1]);
    return pid;
}

static void raw_reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid", errno);
}

/* ---- mp children ---------------------------------------------------------- */

/* Start @fn under fork with a Pipe end as its only argument; *mine gets ours. */
static mp_process *mp_child(mp_conn **mine, int (*fn)(const mp_args *), int64_t extra)
{
    mp_conn *b;
    check("mp_pipe", mp_pipe(mine, &b, true));
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "Pl", b, extra));
    mp_process *p;
    check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), fn, args));
    mp_args_free(args);
    check("mp_process_start", mp_process_start(p));
    mp_conn_close(b);
    return p;
}

static void mp_child_end(mp_conn *mine, mp_process *p)
{
    mp_conn_close(mine);
    /* A forked child holds a copy of our end too: it never sees EOF. */
    check("terminate", mp_process_terminate(p));
    check("join", mp_process_join(p, 60));
    check("close", mp_process_close(p));
}

/* ---- round trips of bytes ------------------------------------------------- */

static int echo(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    mp_buf b = MP_BUF_INIT;
    while (mp_conn_recv_bytes(c, &b, 0) == 0)
        if (mp_conn_send_bytes(c, b.data, b.len) < 0)
            return 1;
    mp_buf_free(&b);
    return 0;
}

static void mp_rtt(const char *name, size_t size, size_t n, place pl)
{
    mp_conn *a;
    place_child(pl);
    mp_process *p = mp_child(&a, echo, 0);
    place_parent(pl);
    char *msg = xcalloc(1, size);
    mp_buf in = MP_BUF_INIT;
    uint64_t *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n + n / 10; i++) { /* the first tenth warms up */
        uint64_t t0 = bench_now_ns();
        check("send", mp_conn_send_bytes(a, msg, size));
        check("recv", mp_conn_recv_bytes(a, &in, 0));
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
        if (in.len != size)
            die("echo length", MP_EBADMSG);
    }
    mp_child_end(a, p);
    place_end();
    bench_report(name, s, n);
    free(s);
    free(msg);
    mp_buf_free(&in);
}

static void raw_echo(int fd, size_t size)
{
    char *f = frame_new(size);
    while (xfer(fd, f, size + 4, false) == 0 && frame_ok(f, size) &&
           xfer(fd, f, size + 4, true) == 0)
        ;
    free(f);
}

static void raw_rtt(const char *name, size_t size, size_t n, place pl)
{
    int sv[2];
    place_child(pl);
    pid_t pid = raw_child(sv, raw_echo, size);
    place_parent(pl);
    char *out = frame_new(size), *in = xcalloc(1, size + 4);
    uint64_t *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        if (xfer(sv[0], out, size + 4, true) < 0 || xfer(sv[0], in, size + 4, false) < 0)
            die("raw echo", EIO);
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
        if (!frame_ok(in, size))
            die("raw echo length", EIO);
    }
    close(sv[0]); /* the child sees EOF and exits */
    raw_reap(pid);
    place_end();
    bench_report(name, s, n);
    free(s);
    free(out);
    free(in);
}

/* ---- round trips of typed messages ---------------------------------------- */

#define A1 1
#define A2 2
#define A3 3
static const char ASTR[] = "0123456789abcdef";

static int args_echo(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    mp_args *in, *out;
    while (mp_conn_recv(c, &in) == 0) {
        if (mp_args_count(in) != 4)
            return 1;
        int64_t x = mp_args_int(in, 0), y = mp_args_int(in, 1), z = mp_args_int(in, 2);
        const char *str = mp_args_str(in, 3);
        if (mp_args_of(&out, "llls", x, y, z, str) < 0 || mp_conn_send(c, out) < 0)
            return 1;
        mp_args_free(out);
        mp_args_free(in);
    }
    return 0;
}

static void mp_send_args(const char *name, size_t n)
{
    mp_conn *c;
    place_child(PINNED);
    mp_process *p = mp_child(&c, args_echo, 0);
    uint64_t *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        mp_args *out, *in;
        check("mp_args_of", mp_args_of(&out, "llls", (int64_t)A1, (int64_t)A2, (int64_t)A3, ASTR));
        check("mp_conn_send", mp_conn_send(c, out));
        mp_args_free(out);
        check("mp_conn_recv", mp_conn_recv(c, &in));
        if (mp_args_count(in) != 4)
            die("echo", MP_EBADMSG);
        int64_t x = mp_args_int(in, 0), y = mp_args_int(in, 1), z = mp_args_int(in, 2);
        const char *str = mp_args_str(in, 3);
        if (x != A1 || y != A2 || z != A3 || strcmp(str, ASTR) != 0)
            die("echo values", MP_EBADMSG);
        mp_args_free(in);
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
    }
    mp_child_end(c, p);
    place_end();
    bench_report(name, s, n);
    free(s);
}

struct packed {
    int64_t a, b, c;
    char s[16];
};
_Static_assert(sizeof(struct packed) == 40, "no padding");

static void packed_echo(int fd, size_t unused)
{
    (void)unused;
    struct packed m;
    while (xfer(fd, &m, sizeof m, false) == 0) {
        /* into C values, and back, as the typed echo does */
        int64_t x = m.a, y = m.b, z = m.c;
        char str[17];
        memcpy(str, m.s, 16);
        str[16] = '\0';
        struct packed r = {x, y, z, {0}};
        memcpy(r.s, str, 16);
        if (xfer(fd, &r, sizeof r, true) < 0)
            break;
    }
}

static void raw_send_packed(const char *name, size_t n)
{
    int sv[2];
    place_child(PINNED);
    pid_t pid = raw_child(sv, packed_echo, 0);
    uint64_t *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        struct packed m = {A1, A2, A3, {0}}, r;
        memcpy(m.s, ASTR, 16);
        if (xfer(sv[0], &m, sizeof m, true) < 0 || xfer(sv[0], &r, sizeof r, false) < 0)
            die("packed echo", EIO);
        if (r.a != A1 || r.b != A2 || r.c != A3 || memcmp(r.s, ASTR, 16) != 0)
            die("packed echo values", EIO);
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
    }
    close(sv[0]);
    raw_reap(pid);
    place_end();
    bench_report(name, s, n);
    free(s);
}

/* ---- connect -------------------------------------------------------------- */

static const char key[] = "benchmark key";

static int serve(const mp_args *a)
{
    mp_listener *l;
    if (mp_listener_new(&l, mp_args_str(a, 0), mp_args_int(a, 1) ? key : NULL,
                        mp_args_int(a, 1) ? sizeof key - 1 : 0, 64) < 0)
        return 1;
    int ready = mp_args_fd(a, 2);
    if (write(ready, "r", 1) != 1)
        return 2;
    for (;;) {
        mp_conn *c;
        if (mp_listener_accept(l, &c, MP_FOREVER) == 0)
            mp_conn_close(c);
    }
}

/* The handshake's six messages as the library sends them, each a whole
 * frame (header + body), with fixed nonces and digests. */
#define CHAL_LEN (11 + 8 + 40) /* "#CHALLENGE#" "{sha256}" nonce */
#define RESP_LEN (8 + 32)      /* "{sha256}" HMAC-SHA256 */
#define WELC_LEN 9             /* "#WELCOME#" */
static char hs_chal[4 + CHAL_LEN], hs_resp[4 + RESP_LEN], hs_welc[4 + WELC_LEN];

static void hs_init(void)
{
    uint32_t be;
    be = htonl(CHAL_LEN);
    memcpy(hs_chal, &be, 4);
    memcpy(hs_chal + 4, "#CHALLENGE#{sha256}", 19);
    memset(hs_chal + 4 + 19, 0x5a, 40);
    be = htonl(RESP_LEN);
    memcpy(hs_resp, &be, 4);
    memcpy(hs_resp + 4, "{sha256}", 8);
    memset(hs_resp + 4 + 8, 0xa5, 32);
    be = htonl(WELC_LEN);
    memcpy(hs_welc, &be, 4);
    memcpy(hs_welc + 4, "#WELCOME#", 9);
}

/* Send @msg; or receive a message of its size and check it is @msg. */
static int hs_send(int fd, const char *msg, size_t n)
{
    return xfer(fd, (void *)msg, n, true);
}

static int hs_expect(int fd, const char *msg, size_t n)
{
    char in[4 + CHAL_LEN];
    if (xfer(fd, in, n, false) < 0)
        return -1;
    return memcmp(in, msg, n) == 0 ? 0 : -1;
}

/* The listener's side: challenge first, then answer. */
static int hs_listener(int fd)
{
    if (hs_send(fd, hs_chal, sizeof hs_chal) < 0 || hs_expect(fd, hs_resp, sizeof hs_resp) < 0 ||
        hs_send(fd, hs_welc, sizeof hs_welc) < 0)
        return -1;
    if (hs_expect(fd, hs_chal, sizeof hs_chal) < 0 || hs_send(fd, hs_resp, sizeof hs_resp) < 0 ||
        hs_expect(fd, hs_welc, sizeof hs_welc) < 0)
        return -1;
    return 0;
}

/* The client's side: answer first, then challenge. */
static int hs_client(int fd)
{
    if (hs_expect(fd, hs_chal, sizeof hs_chal) < 0 || hs_send(fd, hs_resp, sizeof hs_resp) < 0 ||
        hs_expect(fd, hs_welc, sizeof hs_welc) < 0)
        return -1;
    if (hs_send(fd, hs_chal, sizeof hs_chal) < 0 || hs_expect(fd, hs_resp, sizeof hs_resp) < 0 ||
        hs_send(fd, hs_welc, sizeof hs_welc) < 0)
        return -1;
    return 0;
}

static void raw_serve(int lfd, int ready, bool auth)
{
    if (write(ready, "r", 1) != 1)
        _exit(2);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            _exit(1);
        }
        if (auth)
            (void)hs_listener(fd);
        close(fd);
    }
}

typedef enum conn_kind { CONN_MP, CONN_RAW_AUTH, CONN_RAW } conn_kind;

static void connect_bench(const char *name, conn_kind kind, size_t n)
{
    char path[108];
    snprintf(path, sizeof path, "unix:@mp-bench-%d-%s", (int)getpid(), name);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t plen = strlen(path + 5);
    memcpy(un.sun_path, path + 5, plen);
    un.sun_path[0] = '\0';
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    int rp[2];
    if (pipe2(rp, O_CLOEXEC) < 0)
        die("pipe", errno);
    mp_process *p = NULL;
    pid_t pid = -1;
    if (kind == CONN_MP) {
        mp_args *args;
        check("mp_args_of", mp_args_of(&args, "sif", path, 1, rp[1]));
        check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), serve, args));
        mp_args_free(args);
        check("mp_process_start", mp_process_start(p));
    } else {
        /* the library's listener: socket, bind, listen with backlog 64 */
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *)&un, alen) < 0 || listen(lfd, 64) < 0)
            die("listener", errno);
        if ((pid = fork()) < 0)
            die("fork", errno);
        if (pid == 0)
            raw_serve(lfd, rp[1], kind == CONN_RAW_AUTH);
        close(lfd);
    }
    close(rp[1]);
    char c;
    if (read(rp[0], &c, 1) != 1)
        die("server start", EIO);
    close(rp[0]);
    uint64_t *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        if (kind == CONN_MP) {
            mp_conn *conn;
            check("mp_client", mp_client(&conn, path, key, sizeof key - 1));
            mp_conn_close(conn);
        } else {
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0 || connect(fd, (struct sockaddr *)&un, alen) < 0)
                die("connect", errno);
            if (kind == CONN_RAW_AUTH && hs_client(fd) < 0)
                die("handshake", EIO);
            close(fd);
        }
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
    }
    if (p != NULL) {
        check("terminate", mp_process_terminate(p));
        check("join", mp_process_join(p, 60));
        check("close", mp_process_close(p));
    } else {
        if (kill(pid, SIGTERM) < 0)
            die("kill", errno);
        while (waitpid(pid, NULL, 0) < 0)
            if (errno != EINTR)
                die("waitpid", errno);
    }
    bench_report(name, s, n);
    free(s);
}

/* ---- a stream of messages one way, by size -------------------------------- */

static const size_t scale_sizes[] = {8,     64,     256,     1024,    4096,
                                     16384, 65536, 262144, 1048576, 4194304};

/* Messages per batch: ~16 MiB or 1000 messages, whichever is fewer, and at
 * least 4, so that a batch lasts a few ms at any size. */
static size_t scale_batch(size_t size)
{
    size_t k = ((size_t)16 << 20) / size;
    return k > 1000 ? 1000 : k < 4 ? 4 : k;
}

/* The sender: @total messages of @size bytes, without pause. */
static int mp_stream(const mp_args *a)
{
    mp_conn *c = mp_args_conn(a, 0);
    int64_t size = mp_args_int(a, 1), total = mp_args_int(a, 2);
    char *msg = calloc(1, (size_t)size);
    if (msg == NULL)
        return 1;
    for (int64_t i = 0; i < total; i++)
        if (mp_conn_send_bytes(c, msg, (size_t)size) < 0)
            return 1;
    free(msg);
    return 0;
}

static void mp_scale(size_t size, size_t batches)
{
    size_t k = scale_batch(size), warm = 2;
    mp_conn *c, *b;
    check("mp_pipe", mp_pipe(&c, &b, true));
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "Pll", b, (int64_t)size, (int64_t)((batches + warm) * k)));
    mp_process *p;
    place_child(SPLIT);
    check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), mp_stream, args));
    mp_args_free(args);
    check("mp_process_start", mp_process_start(p));
    mp_conn_close(b);
    place_parent(SPLIT);
    mp_buf in = MP_BUF_INIT;
    uint64_t *s = xcalloc(batches, sizeof *s);
    uint64_t t0 = bench_now_ns();
    for (size_t j = 0; j < batches + warm; j++) {
        for (size_t i = 0; i < k; i++) {
            check("recv", mp_conn_recv_bytes(c, &in, 0));
            if (in.len != size)
                die("stream length", MP_EBADMSG);
        }
        uint64_t t1 = bench_now_ns();
        if (j >= warm)
            s[j - warm] = t1 - t0;
        t0 = t1;
    }
    check("join", mp_process_join(p, 60));
    int code;
    check("exitcode", mp_process_exitcode(p, &code));
    if (code != 0)
        die("sender", EIO);
    check("close", mp_process_close(p));
    mp_conn_close(c);
    place_end();
    char name[64];
    snprintf(name, sizeof name, "scale_pipe_mp_%zu", size);
    bench_report_per(name, s, batches, k);
    free(s);
    mp_buf_free(&in);
}

static size_t stream_total; /* for the forked floor sender */

static void raw_stream(int fd, size_t size)
{
    char *f = frame_new(size);
    for (size_t i = 0; i < stream_total; i++)
        if (xfer(fd, f, size + 4, true) < 0)
            _exit(1);
    free(f);
}

static void raw_scale(size_t size, size_t batches)
{
    size_t k = scale_batch(size), warm = 2;
    int sv[2];
    stream_total = (batches + warm) * k;
    place_child(SPLIT);
    pid_t pid = raw_child(sv, raw_stream, size);
    place_parent(SPLIT);
    char *in = xcalloc(1, size + 4);
    uint64_t *s = xcalloc(batches, sizeof *s);
    uint64_t t0 = bench_now_ns();
    for (size_t j = 0; j < batches + warm; j++) {
        for (size_t i = 0; i < k; i++)
            if (xfer(sv[0], in, size + 4, false) < 0 || !frame_ok(in, size))
                die("raw stream", EIO);
        uint64_t t1 = bench_now_ns();
        if (j >= warm)
            s[j - warm] = t1 - t0;
        t0 = t1;
    }
    close(sv[0]);
    raw_reap(pid);
    place_end();
    char name[64];
    snprintf(name, sizeof name, "scale_pipe_floor_%zu", size);
    bench_report_per(name, s, batches, k);
    free(s);
    free(in);
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
    size_t n = 20000, nbig = 300, nconn = 2000, nargs = 0, batches = 20;
    bool rtt = false, pinned = false, args = false, conn = false, scale = false, any = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-n") == 0)
            n = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(a, "-m") == 0)
            nbig = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(a, "-c") == 0)
            nconn = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(a, "-a") == 0)
            nargs = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(a, "-b") == 0)
            batches = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(a, "rtt") == 0)
            rtt = any = true;
        else if (strcmp(a, "pin") == 0)
            pinned = any = true;
        else if (strcmp(a, "args") == 0)
            args = any = true;
        else if (strcmp(a, "connect") == 0)
            conn = any = true;
        else if (strcmp(a, "scale") == 0)
            scale = any = true;
        else {
            fprintf(stderr,
                    "usage: %s [-n N] [-m N_1MIB] [-c N_CONNECT] [-a N_ARGS] [-b BATCHES]"
                    " [rtt|pin|args|connect|scale ...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!any)
        rtt = pinned = args = conn = scale = true;
    if (nargs == 0)
        nargs = n;
    find_cpus();
    hs_init();
    if (rtt) {
        mp_rtt("mp_rtt8", 8, n, FREE);
        raw_rtt("raw_rtt8", 8, n, FREE);
        mp_rtt("mp_rtt1m", BIG, nbig, FREE);
        raw_rtt("raw_rtt1m", BIG, nbig, FREE);
    }
    if (pinned) {
        mp_rtt("mp_rtt8_pin", 8, n, PINNED);
        raw_rtt("raw_rtt8_pin", 8, n, PINNED);
        mp_rtt("mp_rtt1m_pin", BIG, nbig, PINNED);
        raw_rtt("raw_rtt1m_pin", BIG, nbig, PINNED);
    }
    if (args) {
        mp_send_args("mp_send_args", nargs);
        raw_send_packed("raw_send_packed", nargs);
    }
    if (conn) {
        connect_bench("mp_connect_auth", CONN_MP, nconn);
        connect_bench("raw_connect_auth", CONN_RAW_AUTH, nconn);
        connect_bench("raw_connect", CONN_RAW, nconn);
    }
    if (scale) {
        for (size_t i = 0; i < sizeof scale_sizes / sizeof scale_sizes[0]; i++) {
            mp_scale(scale_sizes[i], batches);
            raw_scale(scale_sizes[i], batches);
        }
    }
    return 0;
}
