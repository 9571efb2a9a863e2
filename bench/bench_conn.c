/*
 * bench_conn.c: connections, against the bare socket operations.
 *
 *   mp_rtt8, raw_rtt8
 *       one round trip of an 8-byte message between this process and an
 *       echoing child: mp_conn_send_bytes + mp_conn_recv_bytes over mp_pipe
 *       (a socketpair), against write + read of the same 8 bytes on a bare
 *       socketpair;
 *   mp_rtt1m, raw_rtt1m
 *       the same with 1 MiB messages;
 *   mp_connect_auth, raw_connect
 *       mp_client with an authkey to a listener (unix socket) whose process
 *       accepts in a loop: connect + both handshakes + close, against a bare
 *       connect + close on a unix socket.
 *
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_conn [-n N] [-m N_1MIB] [-c N_CONNECT]
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG (1u << 20)

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_conn: %s: %s\n", what, err < 0 ? mp_strerror(err) : strerror(err));
    exit(1);
}

static void check(const char *what, int err)
{
    if (err < 0)
        die(what, err);
}

/* ---- echo over mp_conn ------------------------------------------------ */

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

static void mp_rtt(const char *name, size_t size, size_t n)
{
    mp_conn *a, *b;
    check("mp_pipe", mp_pipe(&a, &b, true));
    mp_args *args;
    check("mp_args_new", mp_args_new(&args));
    check("mp_args_add_conn", mp_args_add_conn(args, b));
    mp_process *p;
    check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), echo, args));
    mp_args_free(args);
    check("mp_process_start", mp_process_start(p));
    mp_conn_close(b);
    char *msg = calloc(1, size);
    mp_buf in = MP_BUF_INIT;
    uint64_t *s = calloc(n, sizeof *s);
    if (msg == NULL || s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < n + n / 10; i++) { /* the first tenth warms up */
        uint64_t t0 = bench_now_ns();
        check("send", mp_conn_send_bytes(a, msg, size));
        check("recv", mp_conn_recv_bytes(a, &in, 0));
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
    }
    if (in.len != size)
        die("echo length", MP_EBADMSG);
    mp_conn_close(a);
    /* a forked echo holds a copy of our end too: it never sees EOF */
    check("terminate", mp_process_terminate(p));
    check("join", mp_process_join(p, 60));
    check("close", mp_process_close(p));
    bench_report(name, s, n);
    free(s);
    free(msg);
    mp_buf_free(&in);
}

/* ---- echo over a bare socketpair -------------------------------------- */

static int xfer(int fd, void *p, size_t n, bool out)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = out ? write(fd, c, n) : read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static void raw_rtt(const char *name, size_t size, size_t n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", errno);
    char *msg = calloc(1, size);
    uint64_t *s = calloc(n, sizeof *s);
    if (msg == NULL || s == NULL)
        die("calloc", ENOMEM);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        close(sv[0]);
        while (xfer(sv[1], msg, size, false) == 0 && xfer(sv[1], msg, size, true) == 0)
            ;
        _exit(0);
    }
    close(sv[1]);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        if (xfer(sv[0], msg, size, true) < 0 || xfer(sv[0], msg, size, false) < 0)
            die("raw echo", EIO);
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
    }
    close(sv[0]);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    bench_report(name, s, n);
    free(s);
    free(msg);
}

/* ---- connect ----------------------------------------------------------- */

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

static void connect_bench(const char *name, bool mp, size_t n)
{
    char path[108];
    snprintf(path, sizeof path, "unix:@mp-bench-%d-%s", (int)getpid(), name);
    int rp[2];
    if (pipe2(rp, O_CLOEXEC) < 0)
        die("pipe", errno);
    mp_args *args;
    check("mp_args_of", mp_args_of(&args, "sif", path, mp ? 1 : 0, rp[1]));
    mp_process *p;
    check("mp_process_new", mp_process_new(&p, mp_get_context("fork"), serve, args));
    mp_args_free(args);
    check("mp_process_start", mp_process_start(p));
    close(rp[1]);
    char c;
    if (read(rp[0], &c, 1) != 1)
        die("server start", EIO);
    close(rp[0]);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t plen = strlen(path + 5);
    memcpy(un.sun_path, path + 5, plen);
    un.sun_path[0] = '\0';
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    for (size_t i = 0; i < n + n / 10; i++) {
        uint64_t t0 = bench_now_ns();
        if (mp) {
            mp_conn *conn;
            check("mp_client", mp_client(&conn, path, key, sizeof key - 1));
            mp_conn_close(conn);
        } else {
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0 || connect(fd, (struct sockaddr *)&un, alen) < 0)
                die("connect", errno);
            close(fd);
        }
        if (i >= n / 10)
            s[i - n / 10] = bench_now_ns() - t0;
    }
    check("terminate", mp_process_terminate(p));
    check("join", mp_process_join(p, 60));
    check("close", mp_process_close(p));
    bench_report(name, s, n);
    free(s);
}

static size_t count(const char *s)
{
    long v = s ? strtol(s, NULL, 10) : 0;
    if (v <= 0) {
        fprintf(stderr, "bench_conn: a positive count is needed\n");
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t n = 20000, nbig = 300, nconn = 2000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0)
            n = count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-m") == 0)
            nbig = count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-c") == 0)
            nconn = count(i + 1 < argc ? argv[++i] : NULL);
        else {
            fprintf(stderr, "usage: %s [-n N] [-m N_1MIB] [-c N_CONNECT]\n", argv[0]);
            return 2;
        }
    }
    mp_rtt("mp_rtt8", 8, n);
    raw_rtt("raw_rtt8", 8, n);
    mp_rtt("mp_rtt1m", BIG, nbig);
    raw_rtt("raw_rtt1m", BIG, nbig);
    connect_bench("mp_connect_auth", true, nconn);
    connect_bench("raw_connect", false, nconn);
    return 0;
}
