/*
 * process_info.c: what a process knows about itself and its relatives.
 *
 *     current_process().name        'MainProcess', then 'Process-1', ...
 *     parent_process()              None in the main program
 *     Process-1 starting a child    'Process-1:1'
 *     active_children()             started, not yet ended children
 *     p.pid, p.is_alive(), p.sentinel (readable once the process ended)
 *     join(timeout), close()        and their errors in the wrong state
 *
 * Names are counted per creating process, in creation order, so the first
 * mp_process_new() of this program is Process-1 and the first process
 * Process-1 creates is Process-1:1.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <errno.h>
#include <poll.h>
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

static bool name_is(const mp_process *p, const char *name)
{
    return p != NULL && strcmp(mp_process_name(p), name) == 0;
}

/* ---- names and relatives: the main program -> Process-1 -> Process-1:1 --- */

/* The grandchild.  args: (int pid of Process-1) */
static int grandchild(const mp_args *args)
{
    mp_process *me = mp_current_process(), *parent = mp_parent_process();
    printf("  grandchild: I am %s, pid %d; my parent is %s, pid %d\n", mp_process_name(me),
           (int)mp_process_pid(me), parent ? mp_process_name(parent) : "(none)",
           parent ? (int)mp_process_pid(parent) : 0);
    fflush(stdout);
    if (!name_is(me, "Process-1:1") || !name_is(parent, "Process-1"))
        return 1;
    return mp_process_pid(parent) == (pid_t)mp_args_int(args, 0) ? 0 : 2;
}

/* Process-1.  args: (int pid of the main program) */
static int child(const mp_args *args)
{
    mp_process *me = mp_current_process(), *parent = mp_parent_process();
    printf("  child: I am %s, pid %d; my parent is %s, pid %d\n", mp_process_name(me),
           (int)mp_process_pid(me), parent ? mp_process_name(parent) : "(none)",
           parent ? (int)mp_process_pid(parent) : 0);
    fflush(stdout);
    if (!name_is(me, "Process-1") || !name_is(parent, "MainProcess"))
        return 1;
    if (mp_process_pid(parent) != (pid_t)mp_args_int(args, 0) || !mp_process_is_alive(parent))
        return 2;
    if (mp_process_pid(me) != getpid())
        return 3;

    /* Process-1 starts a child of its own. */
    mp_args *a;
    mp_process *p;
    int code;
    CHECK(mp_args_of(&a, "i", (int)getpid()));
    CHECK(mp_process_new(&p, NULL, grandchild, a));
    mp_args_free(a);
    if (!name_is(p, "Process-1:1"))
        return 4;
    CHECK(mp_process_start(p));
    CHECK(mp_process_join(p, 30.0));
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));
    return code == 0 ? 0 : 10 + code;
}

/* A child that sleeps.  args: (double seconds) */
static int sleeper(const mp_args *args)
{
    sleep_s(mp_args_double(args, 0));
    return 0;
}

/* A child that checks the name it was given. */
static int named(const mp_args *args)
{
    (void)args;
    return name_is(mp_current_process(), "worker-A") ? 0 : 1;
}

static mp_process *new_sleeper(double seconds)
{
    mp_args *a;
    mp_process *p;
    CHECK(mp_args_of(&a, "d", seconds));
    CHECK(mp_process_new(&p, NULL, sleeper, a));
    mp_args_free(a);
    return p;
}

static int join_code(mp_process *p)
{
    int code;
    CHECK(mp_process_join(p, 30.0));
    CHECK(mp_process_exitcode(p, &code));
    return code;
}

int main(void)
{
    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    char line[128];
    mp_process *me = mp_current_process();
    int code;

    printf("this process:\n");
    snprintf(line, sizeof line, "current_process() = %s, pid %d", mp_process_name(me),
             (int)mp_process_pid(me));
    expect(name_is(me, "MainProcess") && mp_process_pid(me) == getpid(), line);
    expect(mp_process_is_alive(me), "it is alive");
    expect(mp_parent_process() == NULL, "parent_process() = NULL in the main program");
    size_t keylen;
    expect(mp_process_authkey(me, &keylen) != NULL && keylen == 32, "authkey: 32 random bytes");

    printf("names and relatives:\n");
    mp_args *a;
    mp_process *p1;
    CHECK(mp_args_of(&a, "i", (int)getpid()));
    CHECK(mp_process_new(&p1, NULL, child, a));
    mp_args_free(a);
    snprintf(line, sizeof line, "the first process is %s", mp_process_name(p1));
    expect(name_is(p1, "Process-1"), line);
    CHECK(mp_process_start(p1));
    code = join_code(p1);
    CHECK(mp_process_close(p1));
    snprintf(line, sizeof line, "Process-1 and Process-1:1 agree (exit code %d)", code);
    expect(code == 0, line);

    mp_process *pn;
    CHECK(mp_process_new(&pn, NULL, named, NULL));
    snprintf(line, sizeof line, "the next one is %s", mp_process_name(pn));
    expect(name_is(pn, "Process-2"), line);
    CHECK(mp_process_set_name(pn, "worker-A"));
    CHECK(mp_process_start(pn));
    code = join_code(pn);
    CHECK(mp_process_close(pn));
    expect(code == 0, "renamed worker-A, and it knows its name");

    printf("states, pid, active_children:\n");
    mp_process *s1 = new_sleeper(0.3), *s2 = new_sleeper(0.3);
    expect(mp_process_pid(s1) == 0 && !mp_process_is_alive(s1), "before start: pid 0, not alive");
    expect(mp_process_join(s1, 0) == MP_EINVAL, "join before start = MP_EINVAL");
    expect(mp_process_sentinel(s1) == MP_EINVAL, "sentinel before start = MP_EINVAL");
    expect(mp_process_exitcode(s1, &code) == MP_EAGAIN, "exitcode before start = MP_EAGAIN");
    expect(mp_active_children(NULL, 0) == 0, "active_children() = 0");

    CHECK(mp_process_start(s1));
    CHECK(mp_process_start(s2));
    mp_process *kids[4];
    size_t n = mp_active_children(kids, 4);
    snprintf(line, sizeof line, "two started: active_children() = %zu", n);
    expect(n == 2 && ((kids[0] == s1 && kids[1] == s2) || (kids[0] == s2 && kids[1] == s1)), line);
    expect(mp_process_pid(s1) > 0 && mp_process_is_alive(s1), "running: a pid, alive");
    expect(mp_process_start(s1) == MP_EALREADY, "start again = MP_EALREADY");
    expect(mp_process_join(s1, 0.01) == MP_ETIMEDOUT, "join(0.01) while it runs = MP_ETIMEDOUT");
    expect(mp_process_exitcode(s1, &code) == MP_EAGAIN, "exitcode while it runs = MP_EAGAIN");
    expect(mp_process_close(s1) == MP_EBUSY, "close while it runs = MP_EBUSY");

    printf("the sentinel (a pidfd) with poll():\n");
    int fd = mp_process_sentinel(s1);
    expect(fd >= 0, "sentinel is a descriptor");
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, 0);
    while (r < 0 && errno == EINTR);
    expect(r == 0, "not readable while the process runs");
    double t0 = mp_monotonic();
    do
        r = poll(&pfd, 1, 10000);
    while (r < 0 && errno == EINTR);
    snprintf(line, sizeof line, "readable once it ended (after %.2f s)", mp_monotonic() - t0);
    expect(r == 1 && (pfd.revents & POLLIN), line);
    expect(!mp_process_is_alive(s1), "and then it is not alive");
    expect(mp_process_join(s1, 0) == 0, "join(0) returns at once");

    code = join_code(s2);
    n = mp_active_children(NULL, 0);
    snprintf(line, sizeof line, "both ended: active_children() = %zu", n);
    expect(n == 0, line);
    expect(mp_process_exitcode(s1, &code) == 0 && code == 0, "exitcode = 0");
    expect(mp_process_join(s1, MP_FOREVER) == 0, "a second join is harmless");
    CHECK(mp_process_close(s1));
    CHECK(mp_process_close(s2));

    if (failures) {
        fprintf(stderr, "process_info: %d check(s) failed\n", failures);
        return 1;
    }
    printf("process_info: OK\n");
    return 0;
}
