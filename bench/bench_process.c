/*
 * bench_process.c: the cost of starting and joining one process.
 *
 * Each benchmark times one complete start + join of a child that does
 * nothing, many times over, and prints one JSON line per benchmark:
 *
 *   {"name": "mp_fork", "n": 2000, "median_us": ..., "p10_us": ..., "p90_us": ...,
 *    "mean_us": ..., "min_us": ...}
 *
 *   mp_fork, mp_spawn, mp_forkserver
 *       mp_process_new + mp_process_start + mp_process_join of a target that
 *       returns 0 at once, under each start method (mp_process_close, which
 *       only frees the object, is outside the timed part);
 *   raw_fork_wait
 *       fork() + _exit(0) in the child + waitpid(): the kernel's bare cost of
 *       a forked child, the floor for the fork method;
 *   raw_fork_exec
 *       fork() + execv("/proc/self/exe", {argv0, "--noop"}) + waitpid(): the
 *       bare cost of re-executing this program (the dynamic loader, this
 *       program's libraries, a main() that returns at once), the floor for
 *       spawn and forkserver, which both start a fresh copy of the program;
 *   raw_posix_spawn
 *       the same with posix_spawn() (glibc: clone(CLONE_VM|CLONE_VFORK)): no
 *       page tables are copied.  The library's spawn method starts its child
 *       with posix_spawn() of /proc/self/exe too (src/spawn.c; plus a dup2,
 *       a closefrom and a reset signal mask, which this floor leaves out),
 *       so this, not raw_fork_exec, is the floor of mp_spawn and py_spawn;
 *   raw_forkserver
 *       what a fork server must do at the least, per child: a server
 *       process, started once before timing as a fresh execution of this
 *       program (as the library's is: same binary, same libraries mapped,
 *       so a fork of it costs what a fork of the library's server does),
 *       holds one end of an already-connected unix stream socketpair; the
 *       client writes a 4-byte request on the other end, the server reads
 *       it, fork()s a child that _exit(0)s, waitpid()s it and writes the
 *       4-byte wait status back, which the client reads and checks.  Timed
 *       in the client from the request to the status: the floor of
 *       mp_forkserver and py_forkserver.  (Per start, the library makes a
 *       new socketpair and passes one end to its server over its control
 *       socket with SCM_RIGHTS, sends the child its start-up data over it,
 *       and gets back the pid with a pidfd, then the status: no new
 *       connection(), but a new channel per child.  Python's forkserver
 *       connect()s anew to its server's unix socket for every start.)
 *
 * The benchmarks run in interleaved rounds (each round runs a slice of every
 * benchmark) so that a slow patch of the machine hits them all alike; the
 * first iterations of each (warm-up, and the fork server's own start) are
 * not counted.
 *
 * usage: bench_process [-n N] [-s N_EXEC] [-r ROUNDS] [-w WARMUP] [NAME...]
 *   -n  iterations of the fork benchmarks, raw_forkserver's too (default 2000)
 *   -s  iterations of the exec-based ones: spawn, forkserver, raw exec (default 500)
 *   -r  rounds (default 5)
 *   -w  warm-up iterations per benchmark (default 20)
 *   NAME...  only these benchmarks
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"
#include "bench_util.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define now_ns bench_now_ns

/* ---- the measured operations: each returns the ns of one start + join ---- */

static int noop(const mp_args *args)
{
    (void)args;
    return 0;
}

static uint64_t mp_once(mp_context *ctx)
{
    mp_process *p;
    int err, code;
    uint64_t t0 = now_ns();
    if ((err = mp_process_new(&p, ctx, noop, NULL)) < 0)
        die("mp_process_new", err);
    if ((err = mp_process_start(p)) < 0)
        die("mp_process_start", err);
    if ((err = mp_process_join(p, MP_FOREVER)) < 0)
        die("mp_process_join", err);
    uint64_t t1 = now_ns();
    if ((err = mp_process_exitcode(p, &code)) < 0)
        die("mp_process_exitcode", err);
    if (code != 0)
        die("child exit code", EIO);
    if ((err = mp_process_close(p)) < 0)
        die("mp_process_close", err);
    return t1 - t0;
}

static void reap(pid_t pid)
{
    int status;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        die("waitpid", errno);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("raw child failed", EIO);
}

static uint64_t raw_fork_wait_once(void)
{
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0)
        _exit(0);
    reap(pid);
    return now_ns() - t0;
}

static char *noop_argv[] = {"bench_process", "--noop", NULL};

static uint64_t raw_fork_exec_once(void)
{
    uint64_t t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        execve("/proc/self/exe", noop_argv, environ);
        _exit(127);
    }
    reap(pid);
    return now_ns() - t0;
}

static uint64_t raw_posix_spawn_once(void)
{
    uint64_t t0 = now_ns();
    pid_t pid;
    int err = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, noop_argv, environ);
    if (err != 0)
        die("posix_spawn", err);
    reap(pid);
    return now_ns() - t0;
}

/* ---- the fork server floor -------------------------------------------------- */

#define FS_FD 3 /* the server's end of the socketpair */

static char *fs_argv[] = {"bench_process", "--fork-server-floor", NULL};
static int fs_sock = -1;
static pid_t fs_pid;

/* The server (the re-executed program): one child per request, until EOF. */
static int fork_server_floor(void)
{
    uint32_t req;
    while (xfer(FS_FD, &req, sizeof req, false) == 0) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0)
            _exit(0);
        int status;
        while (waitpid(pid, &status, 0) < 0)
            if (errno != EINTR)
                return 1;
        uint32_t st = (uint32_t)status;
        if (xfer(FS_FD, &st, sizeof st, true) < 0)
            return 1;
    }
    return 0;
}

static void fs_start(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", errno);
    posix_spawn_file_actions_t fa;
    int err = posix_spawn_file_actions_init(&fa);
    if (err == 0)
        err = posix_spawn_file_actions_adddup2(&fa, sv[1], FS_FD); /* clears CLOEXEC */
    if (err == 0)
        err = posix_spawn(&fs_pid, "/proc/self/exe", &fa, NULL, fs_argv, environ);
    if (err != 0)
        die("posix_spawn fork server", err);
    posix_spawn_file_actions_destroy(&fa);
    close(sv[1]);
    fs_sock = sv[0];
}

static void fs_stop(void)
{
    if (fs_sock < 0)
        return;
    close(fs_sock); /* the server reads EOF and exits */
    fs_sock = -1;
    reap(fs_pid);
}

static uint64_t raw_forkserver_once(void)
{
    if (fs_sock < 0)
        fs_start(); /* in the warm-up, outside the timed part */
    uint32_t req = 1, st = 0;
    uint64_t t0 = now_ns();
    if (xfer(fs_sock, &req, sizeof req, true) < 0 || xfer(fs_sock, &st, sizeof st, false) < 0)
        die("fork server floor", EIO);
    uint64_t t = now_ns() - t0;
    if (!WIFEXITED((int)st) || WEXITSTATUS((int)st) != 0)
        die("fork server floor child", EIO);
    return t;
}

/* ---- the table of benchmarks ------------------------------------------------ */

struct bench {
    const char *name;
    const char *method; /* for the mp_* ones */
    uint64_t (*raw)(void);
    bool exec_based;    /* fewer iterations */
    bool selected;
    uint64_t *samples;
    size_t n;
};

static struct bench benches[] = {
    {"mp_fork", "fork", NULL, false, false, NULL, 0},
    {"mp_spawn", "spawn", NULL, true, false, NULL, 0},
    {"mp_forkserver", "forkserver", NULL, true, false, NULL, 0},
    {"raw_fork_wait", NULL, raw_fork_wait_once, false, false, NULL, 0},
    {"raw_fork_exec", NULL, raw_fork_exec_once, true, false, NULL, 0},
    {"raw_posix_spawn", NULL, raw_posix_spawn_once, true, false, NULL, 0},
    {"raw_forkserver", NULL, raw_forkserver_once, false, false, NULL, 0},
};
#define N_BENCHES (sizeof benches / sizeof benches[0])

static uint64_t run_once(struct bench *b)
{
    return b->raw ? b->raw() : mp_once(mp_get_context(b->method));
}

static void report(const struct bench *b)
{
    bench_report(b->name, b->samples, b->n);
}

static size_t parse_count(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s ? s : "", &end, 10);
    if (s == NULL || *s == '\0' || *end != '\0' || errno != 0 || v == 0 || v > 10000000) {
        fprintf(stderr, "bench_process: %s needs a positive count\n", opt);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    /* The re-executed child of raw_fork_exec / raw_posix_spawn. */
    if (argc == 2 && strcmp(argv[1], "--noop") == 0)
        return 0;
    /* The server of raw_forkserver. */
    if (argc == 2 && strcmp(argv[1], "--fork-server-floor") == 0)
        return fork_server_floor();

    size_t n_fork = 2000, n_exec = 500, rounds = 5, warmup = 20;
    bool any_selected = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-n") == 0)
            n_fork = parse_count(i + 1 < argc ? argv[++i] : NULL, a);
        else if (strcmp(a, "-s") == 0)
            n_exec = parse_count(i + 1 < argc ? argv[++i] : NULL, a);
        else if (strcmp(a, "-r") == 0)
            rounds = parse_count(i + 1 < argc ? argv[++i] : NULL, a);
        else if (strcmp(a, "-w") == 0)
            warmup = parse_count(i + 1 < argc ? argv[++i] : NULL, a);
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("usage: %s [-n N] [-s N_EXEC] [-r ROUNDS] [-w WARMUP] [NAME...]\n", argv[0]);
            return 0;
        } else {
            bool found = false;
            for (size_t b = 0; b < N_BENCHES; b++)
                if (strcmp(benches[b].name, a) == 0)
                    benches[b].selected = found = true;
            if (!found) {
                fprintf(stderr, "bench_process: unknown benchmark or option '%s'\n", a);
                return 2;
            }
            any_selected = true;
        }
    }

    for (size_t b = 0; b < N_BENCHES; b++) {
        struct bench *be = &benches[b];
        if (!any_selected)
            be->selected = true;
        if (!be->selected)
            continue;
        size_t total = be->exec_based ? n_exec : n_fork;
        be->samples = calloc(total, sizeof *be->samples);
        if (be->samples == NULL)
            die("calloc", ENOMEM);
        /* Warm-up: page in the code paths, start the fork server. */
        for (size_t i = 0; i < warmup; i++)
            (void)run_once(be);
    }

    for (size_t r = 0; r < rounds; r++) {
        for (size_t b = 0; b < N_BENCHES; b++) {
            struct bench *be = &benches[b];
            if (!be->selected)
                continue;
            size_t total = be->exec_based ? n_exec : n_fork;
            size_t upto = total * (r + 1) / rounds; /* this round's share */
            while (be->n < upto)
                be->samples[be->n++] = run_once(be);
        }
    }

    fs_stop();
    for (size_t b = 0; b < N_BENCHES; b++) {
        if (benches[b].selected)
            report(&benches[b]);
        free(benches[b].samples);
    }
    return 0;
}
