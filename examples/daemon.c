/*
 * daemon.c: daemonic and non-daemonic children at exit.
 *
 * Python's rules (multiprocessing.Process.daemon), which multiproc keeps:
 *   - when a process exits normally it terminates its daemonic children
 *     and joins (waits for) its non-daemonic ones;
 *   - a daemonic process may not start children of its own;
 *   - the flag is set before start and is inherited by default.
 * And one beyond Python: a daemonic child also dies when its parent is
 * killed outright, so it is never left behind as an orphan.
 *
 * To watch a process exit, the scenarios run inside a child, "the parent"
 * below, and the main program observes them.  Everyone involved holds the
 * write end of one pipe (passed as a descriptor argument, or inherited by
 * fork): the parent and its children write a few lines into it, and the
 * main program's read reaching end-of-file within a time limit proves that
 * every one of them, the never-ending daemon included, has exited.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        int err_ = (call);                                                           \
        if (err_ < 0) {                                                              \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,      \
                    mp_errname(err_), mp_strerror(err_));                            \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static int failures;

static void expect(bool ok, const char *what)
{
    printf("  %-62s %s\n", what, ok ? "ok" : "FAILED");
    fflush(stdout);
    if (!ok)
        failures++;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* One line into the report pipe (a single write: lines never interleave). */
static void report(int fd, const char *fmt, ...) MP_PRINTF(2, 3);
static void report(int fd, const char *fmt, ...)
{
    char line[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0 && write(fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1) < 0)
        perror("write");
}

/* ---- the children -------------------------------------------------------- */

/* A daemon that would run forever.  args: (fd report) */
static int forever(const mp_args *args)
{
    report(mp_args_fd(args, 0), "daemon %d running\n", (int)getpid());
    while (pause() < 0) /* pause() returns only for a handled signal */
        ;
    return 0;
}

/* A non-daemonic child that takes a while.  args: (fd report) */
static int slow(const mp_args *args)
{
    sleep_s(0.5);
    report(mp_args_fd(args, 0), "non-daemon %d done\n", (int)getpid());
    return 0;
}

/* Start @target(fd) as a child of this process. */
static mp_process *start_child(mp_target_fn target, int fd, bool daemon)
{
    mp_args *args;
    mp_process *p;
    CHECK(mp_args_of(&args, "f", fd));
    CHECK(mp_process_new(&p, NULL, target, args));
    mp_args_free(args);
    CHECK(mp_process_set_daemon(p, daemon));
    CHECK(mp_process_start(p));
    return p;
}

/* Scenario 1, "the parent": starts a daemon and a non-daemon, then simply
 * returns.  Its exit terminates the daemon and waits for the other one.
 * args: (fd report) */
static int parent_exits_normally(const mp_args *args)
{
    int fd = mp_args_fd(args, 0);
    mp_process *d = start_child(forever, fd, true);
    mp_process *n = start_child(slow, fd, false);
    /* Setting the flag after start is refused. */
    if (mp_process_set_daemon(d, false) != MP_EALREADY)
        return 10;
    report(fd, "parent %d started daemon %d (daemon=%d) and non-daemon %d (daemon=%d)\n",
           (int)getpid(), (int)mp_process_pid(d), mp_process_daemon(d),
           (int)mp_process_pid(n), mp_process_daemon(n));
    return 0; /* no join: exit handling does it */
}

/* Scenario 2: a daemon that tries to start a child.  args: none */
static int nothing(const mp_args *args)
{
    (void)args;
    return 0;
}

static int daemon_starts_child(const mp_args *args)
{
    mp_process *p;
    (void)args;
    if (!mp_process_daemon(mp_current_process()))
        return 10;
    CHECK(mp_process_new(&p, NULL, nothing, NULL));
    int err = mp_process_start(p);
    printf("  in the daemon: start a child -> %s\n", mp_errname(err));
    fflush(stdout);
    CHECK(mp_process_close(p));
    return err == MP_EPERM ? 0 : 11;
}

/* Scenario 3, "the parent": starts a daemon, then waits to be killed.
 * args: (fd report) */
static int parent_gets_killed(const mp_args *args)
{
    int fd = mp_args_fd(args, 0);
    mp_process *d = start_child(forever, fd, true);
    report(fd, "parent %d started daemon %d\n", (int)getpid(), (int)mp_process_pid(d));
    while (pause() < 0)
        ;
    return 0;
}

/* ---- the main program -------------------------------------------------- */

/* Read the report pipe until end-of-file (every writer gone) or @timeout. */
static bool drain(int rfd, double timeout, char *out, size_t cap)
{
    double deadline = mp_monotonic() + timeout;
    size_t len = 0;
    for (;;) {
        double left = deadline - mp_monotonic();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = rfd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t k = read(rfd, out + len, cap - 1 - len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            out[len] = '\0';
            return k == 0; /* end of file: all write ends are closed */
        }
        len += (size_t)k;
        if (len == cap - 1)
            break;
    }
    out[len] = '\0';
    return false;
}

/* Start @target with the write end of a new pipe; return the read end. */
static mp_process *start_observed(mp_target_fn target, int *rfd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        perror("pipe2");
        exit(1);
    }
    mp_process *p = start_child(target, fds[1], false);
    close(fds[1]); /* now only the children (and p, until closed) hold it */
    *rfd = fds[0];
    return p;
}

int main(void)
{
    char buf[1024], line[128];
    int code, rfd;

    setvbuf(stdout, NULL, _IOLBF, 0);
    expect(!mp_process_daemon(mp_current_process()), "the main program is not a daemon");

    printf("1. a parent with a daemonic and a non-daemonic child exits normally\n");
    double t0 = mp_monotonic();
    mp_process *parent = start_observed(parent_exits_normally, &rfd);
    CHECK(mp_process_join(parent, 10.0));
    double took = mp_monotonic() - t0;
    CHECK(mp_process_exitcode(parent, &code));
    CHECK(mp_process_close(parent)); /* drops our copy of its arguments (the fd) */
    bool eof = drain(rfd, 5.0, buf, sizeof buf);
    close(rfd);
    printf("%s", buf);
    snprintf(line, sizeof line, "the parent exited with %d", code);
    expect(code == 0, line);
    snprintf(line, sizeof line, "its exit waited for the 0.5 s non-daemon (%.2f s)", took);
    expect(took >= 0.45 && strstr(buf, "non-daemon") && strstr(buf, "done"), line);
    expect(eof, "the daemon that would run forever is gone too");

    printf("2. a daemon may not start children\n");
    mp_process *d;
    CHECK(mp_process_new(&d, NULL, daemon_starts_child, NULL));
    CHECK(mp_process_set_daemon(d, true));
    expect(mp_process_daemon(d), "mp_process_daemon() = true");
    CHECK(mp_process_start(d));
    CHECK(mp_process_join(d, 10.0));
    CHECK(mp_process_exitcode(d, &code));
    CHECK(mp_process_close(d));
    snprintf(line, sizeof line, "it got MP_EPERM (exit code %d)", code);
    expect(code == 0, line);

    printf("3. beyond Python: a daemon dies with its parent even when that is killed\n");
    parent = start_observed(parent_gets_killed, &rfd);
    /* Wait until the daemon runs, then SIGKILL the parent: no exit handling. */
    size_t len = 0;
    buf[0] = '\0';
    while (!strstr(buf, "running")) {
        struct pollfd pfd = {.fd = rfd, .events = POLLIN};
        if (poll(&pfd, 1, 10000) <= 0)
            break;
        ssize_t k = read(rfd, buf + len, sizeof buf - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        buf[len] = '\0';
    }
    printf("%s", buf);
    CHECK(mp_process_kill(parent));
    CHECK(mp_process_join(parent, 10.0));
    CHECK(mp_process_exitcode(parent, &code));
    CHECK(mp_process_close(parent));
    snprintf(line, sizeof line, "the parent was killed (exit code %d)", code);
    expect(code == -SIGKILL, line);
    eof = drain(rfd, 5.0, buf, sizeof buf);
    close(rfd);
    expect(eof, "its daemon died with it");

    if (failures) {
        fprintf(stderr, "daemon: %d check(s) failed\n", failures);
        return 1;
    }
    printf("daemon: OK\n");
    return 0;
}
