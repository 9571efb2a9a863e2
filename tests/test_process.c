/*
 * Processes under every start method: PYTHON-SEMANTICS sections 1-3
 * (lifecycle, exit codes, join timeout, terminate/kill, close, sentinel,
 * names, nested children, daemon rules, active_children, parent_process).
 */
#include "mp_test.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* A pipe the children report through: args item 0 is its write end. */
typedef struct report {
    int rd, wr;
} report;

static void report_open(report *r)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        abort();
    r->rd = fds[0];
    r->wr = fds[1];
}

static void report_close(report *r)
{
    if (r->rd >= 0)
        close(r->rd);
    if (r->wr >= 0)
        close(r->wr);
    r->rd = r->wr = -1;
}

/* In a child: write one line to the report pipe passed as args item @i. */
static void say(const mp_args *a, size_t i, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mp_test_vsay(mp_args_fd(a, i), fmt, ap);
    va_end(ap);
}

/* In the parent: read everything until EOF (all writers closed). */
static char *slurp(int fd)
{
    static char buf[8192];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return buf;
}

static mp_args *args_with_report(const report *r)
{
    mp_args *a;
    if (mp_args_new(&a) != 0 || mp_args_add_fd(a, r->wr) != 0)
        abort();
    return a;
}

static int run_one(mp_context *ctx, mp_target_fn fn, const mp_args *a, int *code)
{
    mp_process *p;
    int err = mp_process_new(&p, ctx, fn, a);
    if (err == 0)
        err = mp_process_start(p);
    if (err == 0)
        err = mp_process_join(p, 60);
    if (err == 0)
        err = mp_process_exitcode(p, code);
    if (p && mp_process_close(p) != 0)
        err = MP_EBUSY;
    return err;
}

static bool listed(mp_process *p)
{
    mp_process *kids[64];
    size_t n = mp_active_children(kids, 64);
    for (size_t i = 0; i < n && i < 64; i++)
        if (kids[i] == p)
            return true;
    return false;
}

/* ---- targets ------------------------------------------------------------ */

static int t_return_arg(const mp_args *a)
{
    return (int)mp_args_int(a, 0);
}

static int t_exit_arg(const mp_args *a)
{
    exit((int)mp_args_int(a, 0));
}

static int t_underscore_exit(const mp_args *a)
{
    _exit((int)mp_args_int(a, 0));
}

static int t_abort(const mp_args *a)
{
    (void)a;
    signal(SIGABRT, SIG_DFL);
    abort();
}

static int t_sleep(const mp_args *a)
{
    double s = mp_args_count(a) ? mp_args_double(a, 0) : 100.0;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 0;
}

/* Reports what the child sees: its args, name, pid, authkey, parent. */
static int t_describe(const mp_args *a)
{
    mp_process *me = mp_current_process();
    mp_process *parent = mp_parent_process();
    size_t klen;
    const unsigned char *key = mp_process_authkey(me, &klen);
    char comm[32] = "";
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, comm, sizeof comm - 1);
        comm[n > 0 ? n - 1 : 0] = '\0';
        close(fd);
    }
    say(a, 0, "str=%s int=%lld double=%.3f", mp_args_str(a, 1), (long long)mp_args_int(a, 2),
        mp_args_double(a, 3));
    size_t blen;
    const char *b = mp_args_bytes(a, 4, &blen);
    say(a, 0, "bytes=%zu:%.*s", blen, (int)blen, b);
    say(a, 0, "name=%s", mp_process_name(me));
    say(a, 0, "comm=%s", comm);
    say(a, 0, "pid=%d getpid=%d", (int)mp_process_pid(me), (int)getpid());
    say(a, 0, "alive=%d daemon=%d", mp_process_is_alive(me), mp_process_daemon(me));
    say(a, 0, "key=%zu:%02x%02x%02x%02x", klen, key[0], key[1], key[2], key[3]);
    say(a, 0, "parent=%d:%s:%d", parent ? (int)mp_process_pid(parent) : -1,
        parent ? mp_process_name(parent) : "-", parent ? mp_process_is_alive(parent) : -1);
    const char *m = mp_get_start_method(true);
    say(a, 0, "method=%s", m ? m : "none");
    int fl = fcntl(STDIN_FILENO, F_GETFL);
    char stdin_path[64] = "";
    ssize_t k = readlink("/proc/self/fd/0", stdin_path, sizeof stdin_path - 1);
    stdin_path[k > 0 ? k : 0] = '\0';
    say(a, 0, "stdin=%s:%d", stdin_path, fl >= 0);
    if (mp_args_count(a) > 5) { /* a gate: stay alive until the parent writes */
        char c;
        while (read(mp_args_fd(a, 5), &c, 1) < 0 && errno == EINTR)
            ;
    }
    return 0;
}

/* ---- tests -------------------------------------------------------------- */

MP_TEST(current_process_is_main)
{
    mp_process *me = mp_current_process();
    ASSERT_TRUE(me != NULL);
    ASSERT_STREQ("MainProcess", mp_process_name(me));
    ASSERT_EQ(getpid(), mp_process_pid(me));
    ASSERT_TRUE(mp_process_is_alive(me));
    ASSERT_FALSE(mp_process_daemon(me));
    size_t klen = 0;
    ASSERT_TRUE(mp_process_authkey(me, &klen) != NULL);
    ASSERT_EQ(32, klen);
    int code;
    ASSERT_ERR(MP_EAGAIN, mp_process_exitcode(me, &code));
    ASSERT_ERR(MP_EINVAL, mp_process_join(me, 0));
    ASSERT_ERR(MP_EINVAL, mp_process_close(me));
    ASSERT_TRUE(mp_parent_process() == NULL);
    ASSERT_EQ(0, mp_active_children(NULL, 0));
}

MP_TEST(lifecycle, .variants = MP_START_METHODS)
{
    report r;
    report_open(&r);
    mp_args *a = args_with_report(&r);
    ASSERT_OK(mp_args_add_str(a, "bob"));
    ASSERT_OK(mp_args_add_int(a, -1234567890123LL));
    ASSERT_OK(mp_args_add_double(a, 2.5));
    ASSERT_OK(mp_args_add_bytes(a, "xyz", 3));
    int gate[2];
    ASSERT_EQ(0, pipe2(gate, O_CLOEXEC));
    ASSERT_OK(mp_args_add_fd(a, gate[0]));
    close(gate[0]);
    mp_process *p;
    ASSERT_OK(mp_process_new(&p, ctx, t_describe, a));
    mp_args_free(a); /* the process keeps its own copy */

    /* before start */
    ASSERT_FALSE(mp_process_is_alive(p));
    ASSERT_EQ(0, mp_process_pid(p));
    int code = 12345;
    ASSERT_ERR(MP_EAGAIN, mp_process_exitcode(p, &code));
    ASSERT_ERR(MP_EINVAL, mp_process_sentinel(p));
    ASSERT_ERR(MP_EINVAL, mp_process_join(p, 0));
    ASSERT_ERR(MP_EINVAL, mp_process_terminate(p));
    ASSERT_FALSE(listed(p));
    ASSERT_FALSE(mp_process_daemon(p));
    size_t klen, mlen;
    const void *key = mp_process_authkey(p, &klen);
    const void *mykey = mp_process_authkey(mp_current_process(), &mlen);
    ASSERT_EQ(mlen, klen);
    ASSERT_MEMEQ(mykey, key, klen);
    ASSERT_TRUE(strncmp(mp_process_name(p), "Process-", 8) == 0);

    ASSERT_OK(mp_process_start(p));
    ASSERT_GT(mp_process_pid(p), 0);
    ASSERT_TRUE(listed(p));
    ASSERT_ERR(MP_EALREADY, mp_process_start(p));
    ASSERT_ERR(MP_EALREADY, mp_process_set_daemon(p, true));
    ASSERT_TRUE(mp_process_is_alive(p));
    ASSERT_EQ(1, write(gate[1], "x", 1)); /* now it may end */
    close(gate[1]);
    close(r.wr);
    r.wr = -1;
    char *out = slurp(r.rd);
    ASSERT_OK(mp_process_join(p, 30));
    ASSERT_OK(mp_process_exitcode(p, &code));
    ASSERT_EQ(0, code);
    ASSERT_FALSE(mp_process_is_alive(p));
    ASSERT_FALSE(listed(p));
    ASSERT_OK(mp_process_join(p, 0)); /* a second join is harmless */

    char expect[256];
    ASSERT_TRUE(strstr(out, "str=bob int=-1234567890123 double=2.500\n") != NULL);
    ASSERT_TRUE(strstr(out, "bytes=3:xyz\n") != NULL);
    snprintf(expect, sizeof expect, "name=%s\n", mp_process_name(p));
    ASSERT_TRUE(strstr(out, expect) != NULL);
    snprintf(expect, sizeof expect, "comm=%.15s\n", mp_process_name(p));
    ASSERT_TRUE(strstr(out, expect) != NULL);
    snprintf(expect, sizeof expect, "pid=%d getpid=%d\n", (int)mp_process_pid(p),
             (int)mp_process_pid(p));
    ASSERT_TRUE(strstr(out, expect) != NULL);
    ASSERT_TRUE(strstr(out, "alive=1 daemon=0\n") != NULL);
    const unsigned char *k = key;
    snprintf(expect, sizeof expect, "key=32:%02x%02x%02x%02x\n", k[0], k[1], k[2], k[3]);
    ASSERT_TRUE(strstr(out, expect) != NULL);
    snprintf(expect, sizeof expect, "parent=%d:MainProcess:1\n", (int)getpid());
    ASSERT_TRUE(strstr(out, expect) != NULL);
    ASSERT_TRUE(strstr(out, "stdin=/dev/null:1\n") != NULL);
    ASSERT_OK(mp_process_close(p));
    report_close(&r);
}

/* As Python: a child reports the method it was started with, whatever this
 * process chose. */
MP_TEST(child_reports_context_method, .variants = MP_START_METHODS)
{
    ASSERT_OK(mp_set_start_method(strcmp(method, "spawn") == 0 ? "fork" : "spawn", false));
    report r;
    report_open(&r);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "fsldb", r.wr, "s", (int64_t)1, 1.0, "b", (size_t)1));
    int code;
    ASSERT_OK(run_one(ctx, t_describe, a, &code));
    ASSERT_EQ(0, code);
    mp_args_free(a); /* its copy of the write end, too */
    close(r.wr);
    r.wr = -1;
    char want[64];
    snprintf(want, sizeof want, "method=%s\n", method);
    ASSERT_TRUE(strstr(slurp(r.rd), want) != NULL);
    report_close(&r);
}

MP_TEST(exit_codes, .variants = MP_START_METHODS)
{
    static const struct {
        mp_target_fn fn;
        int64_t arg;
        int want;
    } cases[] = {
        {t_return_arg, 0, 0},        {t_return_arg, 7, 7},       {t_return_arg, 255, 255},
        {t_return_arg, 256, 0},      {t_return_arg, -1, 255},    {t_exit_arg, 3, 3},
        {t_exit_arg, 1, 1},          {t_underscore_exit, 5, 5},  {t_abort, 0, -SIGABRT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mp_args *a;
        ASSERT_OK(mp_args_of(&a, "l", cases[i].arg));
        int code = 12345;
        ASSERT_OK(run_one(ctx, cases[i].fn, a, &code));
        ASSERT_EQ(cases[i].want, code);
        mp_args_free(a);
    }
}

MP_TEST(join_timeout_terminate_kill, .variants = MP_START_METHODS)
{
    mp_process *p = mp_test_start(ctx, t_sleep, NULL);
    double t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_process_join(p, 0));
    ASSERT_LT((mp_monotonic() - t0) * 1000, 1000);
    t0 = mp_monotonic();
    ASSERT_ERR(MP_ETIMEDOUT, mp_process_join(p, 0.2));
    double took = mp_monotonic() - t0;
    ASSERT_GE(took * 1000, 190);
    ASSERT_LT(took * 1000, 5000);
    ASSERT_TRUE(mp_process_is_alive(p));
    ASSERT_ERR(MP_EBUSY, mp_process_close(p));
    int code;
    ASSERT_ERR(MP_EAGAIN, mp_process_exitcode(p, &code));

    ASSERT_OK(mp_process_terminate(p));
    ASSERT_OK(mp_process_join(p, 10));
    ASSERT_OK(mp_process_exitcode(p, &code));
    ASSERT_EQ(-SIGTERM, code);
    ASSERT_FALSE(mp_process_is_alive(p));
    ASSERT_FALSE(listed(p));
    ASSERT_OK(mp_process_join(p, MP_FOREVER));
    ASSERT_OK(mp_process_terminate(p)); /* ended: nothing happens */
    ASSERT_OK(mp_process_kill(p));
    ASSERT_OK(mp_process_close(p));

    ASSERT_OK(mp_process_new(&p, ctx, t_sleep, NULL));
    ASSERT_OK(mp_process_start(p));
    ASSERT_OK(mp_process_kill(p));
    ASSERT_OK(mp_process_join(p, 10));
    ASSERT_OK(mp_process_exitcode(p, &code));
    ASSERT_EQ(-SIGKILL, code);
    ASSERT_OK(mp_process_close(p));
}

MP_TEST(sentinel, .variants = MP_START_METHODS)
{
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "d", 0.3));
    mp_process *p;
    ASSERT_OK(mp_process_new(&p, ctx, t_sleep, a));
    ASSERT_ERR(MP_EINVAL, mp_process_sentinel(p));
    ASSERT_OK(mp_process_start(p));
    int s = mp_process_sentinel(p);
    ASSERT_GE(s, 3);
    /* a pidfd (README), of the child: readlink and fdinfo say so */
    char path[64], target[64], info[1024];
    snprintf(path, sizeof path, "/proc/self/fd/%d", s);
    ssize_t n = readlink(path, target, sizeof target - 1);
    ASSERT_GT(n, 0);
    target[n] = '\0';
    ASSERT_STREQ("anon_inode:[pidfd]", target);
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", s);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(f, 0);
    n = read(f, info, sizeof info - 1);
    close(f);
    ASSERT_GT(n, 0);
    info[n] = '\0';
    const char *pid_line = strstr(info, "\nPid:");
    ASSERT_TRUE(pid_line != NULL);
    ASSERT_EQ(mp_process_pid(p), atoi(pid_line + 5));
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    ASSERT_EQ(0, poll(&pfd, 1, 0));
    ASSERT_EQ(1, poll(&pfd, 1, 10000));
    ASSERT_EQ(0, mp_test_join(p, 10));
    mp_args_free(a);
}

MP_TEST(bad_input)
{
    mp_process *p = (mp_process *)1;
    ASSERT_ERR(MP_EINVAL, mp_process_new(&p, NULL, NULL, NULL));
    ASSERT_TRUE(p == NULL);
    ASSERT_TRUE(mp_get_context("threads") == NULL);
    ASSERT_ERR(MP_EINVAL, mp_process_join(NULL, 0));
    ASSERT_OK(mp_process_close(NULL));
    ASSERT_ERR(MP_EINVAL, mp_process_set_authkey(mp_current_process(), "", 0));
}

/* 7 when argument 0 holds argument 1's count of bytes, byte i being i*7+1. */
static int t_check_bytes(const mp_args *a)
{
    size_t n;
    const uint8_t *b = mp_args_bytes(a, 0, &n);
    if (b == NULL && n != 0)
        return 2;
    if (n != (size_t)mp_args_int(a, 1))
        return 3;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (uint8_t)(i * 7 + 1))
            return 4;
    return 7;
}

/* The forkserver reads a small prep before it forks and leaves a big one
 * to the child (popen_forkserver.c): both ways, and either side of where
 * the one ends and the other begins, the child gets its arguments whole. */
MP_TEST(argument_sizes, .variants = MP_START_METHODS)
{
    static const size_t sizes[] = {0, 1, 64 * 1024 - 400, 64 * 1024, 64 * 1024 + 1, 3 << 20};
    uint8_t *buf = malloc(sizes[(sizeof sizes / sizeof sizes[0]) - 1]);
    ASSERT_TRUE(buf != NULL);
    for (size_t i = 0; i < sizes[(sizeof sizes / sizeof sizes[0]) - 1]; i++)
        buf[i] = (uint8_t)(i * 7 + 1);
    for (size_t k = 0; k < (sizeof sizes / sizeof sizes[0]); k++) {
        mp_args *a;
        ASSERT_OK(mp_args_new(&a));
        ASSERT_OK(mp_args_add_bytes(a, buf, sizes[k]));
        ASSERT_OK(mp_args_add_int(a, (int64_t)sizes[k]));
        ASSERT_EQ(7, mp_test_run(ctx, t_check_bytes, a));
        mp_args_free(a);
    }
    free(buf);
}

static int t_read_ptr(const mp_args *a)
{
    return *(int *)mp_args_ptr(a, 0);
}

MP_TEST(pointer_argument, .variants = MP_START_METHODS)
{
    static int value = 42;
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "p", &value));
    mp_process *p;
    ASSERT_OK(mp_process_new(&p, ctx, t_read_ptr, a));
    if (strcmp(method, "fork") == 0) {
        ASSERT_OK(mp_process_start(p));
        ASSERT_OK(mp_process_join(p, 10));
        int code;
        ASSERT_OK(mp_process_exitcode(p, &code));
        ASSERT_EQ(42, code);
    } else {
        ASSERT_ERR(MP_EINVAL, mp_process_start(p));
        /* nothing changed: not started, not listed */
        ASSERT_EQ(0, mp_process_pid(p));
        ASSERT_FALSE(mp_process_is_alive(p));
        ASSERT_FALSE(listed(p));
        ASSERT_ERR(MP_EINVAL, mp_process_join(p, 0));
    }
    ASSERT_OK(mp_process_close(p));
    mp_args_free(a);
}

static int t_set_name_then_describe(const mp_args *a)
{
    say(a, 0, "%s", mp_process_name(mp_current_process()));
    return 0;
}

MP_TEST(names, .variants = MP_START_METHODS)
{
    mp_process *p1, *p2;
    ASSERT_OK(mp_process_new(&p1, ctx, t_return_arg, NULL));
    ASSERT_OK(mp_process_new(&p2, ctx, t_return_arg, NULL));
    int n1, n2;
    ASSERT_EQ(1, sscanf(mp_process_name(p1), "Process-%d", &n1));
    ASSERT_EQ(1, sscanf(mp_process_name(p2), "Process-%d", &n2));
    ASSERT_EQ(n1 + 1, n2);
    ASSERT_OK(mp_process_close(p1));
    ASSERT_OK(mp_process_close(p2));

    report r;
    report_open(&r);
    mp_args *a = args_with_report(&r);
    mp_process *p;
    ASSERT_OK(mp_process_new(&p, ctx, t_set_name_then_describe, a));
    ASSERT_OK(mp_process_set_name(p, "a-rather-long-worker-name"));
    ASSERT_STREQ("a-rather-long-worker-name", mp_process_name(p));
    ASSERT_OK(mp_process_start(p));
    ASSERT_OK(mp_process_join(p, 30));
    mp_args_free(a);
    close(r.wr);
    r.wr = -1;
    ASSERT_STREQ("a-rather-long-worker-name\n", slurp(r.rd));
    ASSERT_OK(mp_process_close(p));
    report_close(&r);
}

/* test_recursion: each process reports its id, then starts and joins two
 * children, depth <= 2; reports arrive in DFS order. */
static int t_recurse(const mp_args *a)
{
    const char *id = mp_args_str(a, 1);
    const char *method = mp_args_str(a, 2);
    say(a, 0, "[%s] %s", id, mp_process_name(mp_current_process()));
    if (strlen(id) >= 2)
        return 0;
    for (int i = 0; i < 2; i++) {
        char sub[8];
        snprintf(sub, sizeof sub, "%s%d", id, i);
        mp_args *b;
        if (mp_args_of(&b, "fss", mp_args_fd(a, 0), sub, method) != 0)
            return 10;
        int code = -1;
        int err = run_one(mp_get_context(method), t_recurse, b, &code);
        mp_args_free(b);
        if (err != 0 || code != 0)
            return 11;
    }
    return 0;
}

MP_TEST(recursion, .variants = MP_START_METHODS, .timeout_s = 60)
{
    report r;
    report_open(&r);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "fss", r.wr, "", method));
    /* the top level is the test process itself */
    ASSERT_OK(t_recurse(a));
    mp_args_free(a);
    close(r.wr);
    r.wr = -1;
    const char *want = "[] MainProcess\n"
                       "[0] Process-1\n"
                       "[00] Process-1:1\n"
                       "[01] Process-1:2\n"
                       "[1] Process-2\n"
                       "[10] Process-2:1\n"
                       "[11] Process-2:2\n";
    ASSERT_STREQ(want, slurp(r.rd));
    report_close(&r);
}

static int t_daemon_tries_child(const mp_args *a)
{
    mp_process *p;
    if (!mp_process_daemon(mp_current_process()))
        return 20;
    if (mp_process_new(&p, NULL, t_return_arg, NULL) != 0)
        return 21;
    if (!mp_process_daemon(p)) /* the default is inherited */
        return 22;
    int err = mp_process_start(p);
    mp_process_close(p) == 0 ? (void)0 : _exit(23);
    return err == MP_EPERM ? 0 : 24;
}

MP_TEST(daemon_may_not_have_children, .variants = MP_START_METHODS)
{
    mp_process *p;
    ASSERT_OK(mp_process_new(&p, ctx, t_daemon_tries_child, NULL));
    ASSERT_FALSE(mp_process_daemon(p));
    ASSERT_OK(mp_process_set_daemon(p, true));
    ASSERT_TRUE(mp_process_daemon(p));
    ASSERT_OK(mp_process_start(p));
    ASSERT_EQ(0, mp_test_join(p, 30));
}

/* A process that starts a daemon (forever) and a non-daemon (short) child,
 * reports both pids and returns: at its exit the daemon is terminated and
 * the other joined. */
static int t_short_writer(const mp_args *a)
{
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    say(a, 0, "short child done");
    return 0;
}

static int t_exit_with_children(const mp_args *a)
{
    mp_context *ctx = mp_get_context(mp_args_str(a, 1));
    mp_process *d, *n;
    if (mp_process_new(&d, ctx, t_sleep, NULL) != 0 || mp_process_set_daemon(d, true) != 0 ||
        mp_process_start(d) != 0)
        return 30;
    mp_args *b;
    if (mp_args_of(&b, "f", mp_args_fd(a, 0)) != 0)
        return 31;
    if (mp_process_new(&n, ctx, t_short_writer, b) != 0 || mp_process_start(n) != 0)
        return 32;
    mp_args_free(b);
    say(a, 0, "daemon %d", (int)mp_process_pid(d));
    return 0; /* exit handling does the rest */
}

MP_TEST(exit_terminates_daemons_joins_others, .variants = MP_START_METHODS)
{
    report r;
    report_open(&r);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "fs", r.wr, method));
    int code;
    ASSERT_OK(run_one(ctx, t_exit_with_children, a, &code));
    ASSERT_EQ(0, code);
    /* The child returned only after its non-daemon child finished... */
    mp_args_free(a);
    close(r.wr);
    r.wr = -1;
    char *out = slurp(r.rd);
    ASSERT_TRUE(strstr(out, "short child done\n") != NULL);
    int dpid = 0;
    const char *l = strstr(out, "daemon ");
    ASSERT_TRUE(l != NULL);
    ASSERT_EQ(1, sscanf(l, "daemon %d", &dpid));
    /* ... and its daemon was terminated and reaped by it. */
    ASSERT_EQ(-1, kill(dpid, 0));
    ASSERT_EQ(ESRCH, errno);
    report_close(&r);
}

/* A daemonic child dies with its parent even when the parent is SIGKILLed,
 * whether the parent started it from its main thread or another thread. */

/* The daemon: says it runs its target (args: the write end), then waits. */
static int t_daemon(const mp_args *a)
{
    say(a, 0, "in target");
    while (pause() < 0)
        ;
    return 0;
}

/* Starts the daemon and ends only once the daemon runs its target, past
 * its set-up (a PR_SET_PDEATHSIG tied to this thread would be armed). */
static void *start_daemon_thread(void *arg)
{
    const mp_args *a = arg;
    mp_process *d;
    mp_args *da;
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || mp_args_of(&da, "f", ready[1]) != 0)
        return (void *)1;
    close(ready[1]);
    mp_context *ctx = mp_get_context(mp_args_str(a, 1));
    if (mp_process_new(&d, ctx, t_daemon, da) != 0 || mp_process_set_daemon(d, true) != 0 ||
        mp_process_start(d) != 0)
        return (void *)1;
    mp_args_free(da); /* the daemon alone holds the write end now */
    char c;
    if (read(ready[0], &c, 1) != 1)
        return (void *)1;
    close(ready[0]);
    say(a, 0, "%d", (int)mp_process_pid(d));
    return NULL;
}

static int t_parent_of_daemon(const mp_args *a)
{
    if (mp_args_int(a, 2)) {
        pthread_t t;
        void *res = (void *)1;
        if (pthread_create(&t, NULL, start_daemon_thread, (void *)a) != 0 ||
            pthread_join(t, &res) != 0 || res != NULL)
            return 40;
    } else if (start_daemon_thread((void *)a) != NULL) {
        return 41;
    }
    say(a, 0, "started"); /* and the starting thread, if any, has ended */
    for (;;)
        pause();
}

/* The end of a test whose killed child @p left processes reparented to us
 * (a subreaper): stop our own fork server, then collect them all, then
 * free what the test made. */
static void end_with_orphans(mp_process *p, mp_args *a, report *r)
{
    mp__exit_cleanup();
    mp_test_reap_orphans(10);
    ASSERT_OK(mp_process_close(p));
    mp_args_free(a);
    report_close(r);
}

static void daemon_dies_with_parent(mp_context *ctx, const char *method, int from_thread)
{
    /* the daemon is reparented to us when its parent dies: reap it here */
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
    report r;
    report_open(&r);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "fsi", r.wr, method, from_thread));
    mp_process *p = mp_test_start(ctx, t_parent_of_daemon, a);
    int dpid = atoi(mp_test_read_line(r.rd));
    ASSERT_GT(dpid, 0);
    int dfd = (int)syscall(SYS_pidfd_open, dpid, 0);
    ASSERT_GE(dfd, 0);
    ASSERT_STREQ("started", mp_test_read_line(r.rd));
    /* The daemon lives on while its parent does, after the thread that
     * started it has ended too (PR_SET_PDEATHSIG fires when the thread
     * that forked ends, not the process). */
    struct pollfd pfd = {.fd = dfd, .events = POLLIN};
    ASSERT_EQ(0, poll(&pfd, 1, 500));
    ASSERT_OK(mp_process_kill(p));
    ASSERT_OK(mp_process_join(p, 10));
    ASSERT_EQ(1, poll(&pfd, 1, 10000)); /* the daemon is gone */
    close(dfd);
    /* what is reparented to us: the daemon, the dead parent's fork server */
    end_with_orphans(p, a, &r);
}

MP_TEST(daemon_dies_with_killed_parent, .variants = MP_START_METHODS)
{
    daemon_dies_with_parent(ctx, method, 0);
}

MP_TEST(daemon_from_thread_dies_with_killed_parent, .variants = MP_START_METHODS)
{
    daemon_dies_with_parent(ctx, method, 1);
}

/* test_parent_process: a grandchild sees its parent alive, then joins it
 * after the parent is terminated. */
static int t_grandchild(const mp_args *a)
{
    mp_process *parent = mp_parent_process();
    if (parent == NULL)
        return 50;
    say(a, 0, "alive=%d", mp_process_is_alive(parent));
    if (mp_process_join(parent, 30) != 0)
        return 51;
    say(a, 0, "after=%d", mp_process_is_alive(parent));
    return 0;
}

static int t_middle(const mp_args *a)
{
    mp_process *g;
    mp_args *b;
    if (mp_args_of(&b, "f", mp_args_fd(a, 0)) != 0)
        return 60;
    if (mp_process_new(&g, mp_get_context(mp_args_str(a, 1)), t_grandchild, b) != 0 ||
        mp_process_start(g) != 0)
        return 61;
    mp_args_free(b);
    say(a, 0, "grandchild=%d", (int)mp_process_pid(g));
    for (;;)
        pause();
}

MP_TEST(parent_process_join, .variants = MP_START_METHODS)
{
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
    report r;
    report_open(&r);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "fs", r.wr, method));
    mp_process *p = mp_test_start(ctx, t_middle, a);
    /* two lines from two processes, in either order (mp_test_read_line's buffer is
     * static: copy) */
    char l1[64], l2[64];
    strncpy(l1, mp_test_read_line(r.rd), sizeof l1 - 1);
    l1[sizeof l1 - 1] = '\0';
    strncpy(l2, mp_test_read_line(r.rd), sizeof l2 - 1);
    l2[sizeof l2 - 1] = '\0';
    const char *gl = strncmp(l1, "grandchild=", 11) == 0 ? l1 : l2;
    const char *al = gl == l1 ? l2 : l1;
    int g = atoi(gl + 11);
    ASSERT_GT(g, 0);
    ASSERT_STREQ("alive=1", al);
    int gfd = (int)syscall(SYS_pidfd_open, g, 0);
    ASSERT_GE(gfd, 0);
    ASSERT_OK(mp_process_terminate(p));
    ASSERT_OK(mp_process_join(p, 10));
    ASSERT_STREQ("after=0", mp_test_read_line(r.rd));
    /* then it ends (reaped by us once reparented, or by a fork server) */
    struct pollfd pfd = {.fd = gfd, .events = POLLIN};
    ASSERT_EQ(1, poll(&pfd, 1, 10000));
    close(gfd);
    /* what else is reparented to us: the dead parent's fork server */
    end_with_orphans(p, a, &r);
}

MP_TEST(active_children, .variants = MP_START_METHODS)
{
    mp_process *p[3];
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(mp_process_new(&p[i], ctx, t_sleep, NULL));
        ASSERT_FALSE(listed(p[i]));
    }
    for (int i = 0; i < 3; i++)
        ASSERT_OK(mp_process_start(p[i]));
    mp_process *kids[8];
    ASSERT_EQ(3, mp_active_children(kids, 8));
    ASSERT_EQ(3, mp_active_children(NULL, 0));
    ASSERT_OK(mp_process_kill(p[1]));
    /* the ended child leaves the list on its own, reaped */
    double until = mp_monotonic() + 10;
    while (mp_active_children(NULL, 0) != 2 && mp_monotonic() < until)
        usleep(5000);
    ASSERT_EQ(2, mp_active_children(kids, 8));
    ASSERT_TRUE(kids[0] == p[0] || kids[1] == p[0]);
    ASSERT_TRUE(kids[0] == p[2] || kids[1] == p[2]);
    int code;
    ASSERT_OK(mp_process_exitcode(p[1], &code));
    ASSERT_EQ(-SIGKILL, code);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(mp_process_terminate(p[i]));
        ASSERT_OK(mp_process_join(p[i], 10));
        ASSERT_OK(mp_process_close(p[i]));
    }
    ASSERT_EQ(0, mp_active_children(NULL, 0));
}

MP_TEST(many_processes, .variants = MP_START_METHODS, .timeout_s = 120)
{
    enum { N = 40 };
    mp_process *p[N];
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "d", 0.01));
    for (int i = 0; i < N; i++) {
        ASSERT_OK(mp_process_new(&p[i], ctx, t_sleep, a));
        ASSERT_OK(mp_process_start(p[i]));
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(0, mp_test_join(p[i], 60));
    }
    /* and terminated right after start: every one gets -SIGTERM */
    for (int i = 0; i < N; i++) {
        ASSERT_OK(mp_process_new(&p[i], ctx, t_sleep, NULL));
        ASSERT_OK(mp_process_start(p[i]));
        usleep(1000);
        ASSERT_OK(mp_process_terminate(p[i]));
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(-SIGTERM, mp_test_join(p[i], 60));
    }
    mp_args_free(a);
}

/* test_poll_eintr: a signal with a handler arrives during join. */
static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig)
{
    (void)sig;
    got_usr1 = 1;
}

static int t_signal_parent_then_sleep(const mp_args *a)
{
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    kill((pid_t)mp_args_int(a, 0), SIGUSR1);
    ts.tv_nsec = 300 * 1000000L;
    nanosleep(&ts, NULL);
    return 0;
}

MP_TEST(join_survives_signals, .variants = MP_START_METHODS)
{
    struct sigaction sa = {.sa_handler = on_usr1};
    ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "l", (int64_t)getpid()));
    int code = -1;
    ASSERT_OK(run_one(ctx, t_signal_parent_then_sleep, a, &code));
    ASSERT_EQ(0, code);
    ASSERT_TRUE(got_usr1);
    mp_args_free(a);
}

/* TestCloseFds: an inheritable descriptor reaches a fork child only. */
static int t_check_fd(const mp_args *a)
{
    return fcntl((int)mp_args_int(a, 0), F_GETFD) >= 0 ? 1 : 2;
}

MP_TEST(spawn_children_get_only_their_fds, .variants = MP_START_METHODS)
{
    int fd = fcntl(STDERR_FILENO, F_DUPFD, 50); /* inheritable, not passed */
    ASSERT_GE(fd, 50);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "i", fd));
    int code = -1;
    ASSERT_OK(run_one(ctx, t_check_fd, a, &code));
    ASSERT_EQ(strcmp(method, "fork") == 0 ? 1 : 2, code);
    close(fd);
    mp_args_free(a);
}

/* Reports "<fd> pid=<pid> <target>" for each descriptor in /proc/self/fd
 * but the directory's own (pid: a pidfd's process, from fdinfo; else 0),
 * then "end".  Args: (report fd, ...). */
static int t_list_fds(const mp_args *a)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 70;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        char path[300], target[256], info[512];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n < 0)
            return 71;
        target[n] = '\0';
        int pid = 0;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t len = fd >= 0 ? read(fd, info, sizeof info - 1) : -1;
        if (fd >= 0)
            close(fd);
        const char *p = len > 0 ? (info[len] = '\0', strstr(info, "\nPid:")) : NULL;
        if (p != NULL)
            pid = atoi(p + 5);
        say(a, 0, "%s pid=%d %s", e->d_name, pid, target);
    }
    closedir(d);
    say(a, 0, "end");
    return 0;
}

/* What /proc/self/fd/@fd points to. */
static const char *fd_target(int fd, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, buf, cap - 1);
    ASSERT_GT(n, 0);
    buf[n] = '\0';
    return buf;
}

/* Issue 14, item 7: a spawn or forkserver child holds exactly stdin
 * (/dev/null), its parent's stdout and stderr, the descriptors passed in
 * its arguments, a pidfd of its parent and, when its parent had one, the
 * resource tracker's socket (docs/guide/02-start-methods.md) -- not a
 * descriptor the parent left inheritable, nor one of the start-up. */
static void child_fds(mp_context *ctx, bool with_tracker)
{
    mp_shm *shm = NULL;
    if (with_tracker)
        ASSERT_OK(mp_shm_new(&shm, NULL, 10, MP_SHM_CREATE)); /* starts the tracker */
    int stray = fcntl(STDERR_FILENO, F_DUPFD, 50); /* inheritable, not passed */
    ASSERT_GE(stray, 50);
    int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(zero, 0);
    report r;
    report_open(&r);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "ff", r.wr, zero));
    int code = -1;
    ASSERT_OK(run_one(ctx, t_list_fds, a, &code));
    ASSERT_EQ(0, code);
    mp_args_free(a); /* its copy of the write end */
    close(r.wr);
    r.wr = -1;
    char *out = strdup(slurp(r.rd));
    printf("the child's descriptors:\n%s", out);

    /* What each expected descriptor points to, as the parent sees it. */
    enum { STDOUT, STDERR, REPORT, ZERO, TRACKER, N };
    char want[N][256];
    fd_target(STDOUT_FILENO, want[STDOUT], sizeof want[0]);
    fd_target(STDERR_FILENO, want[STDERR], sizeof want[0]);
    fd_target(r.rd, want[REPORT], sizeof want[0]); /* the pipe: same inode */
    fd_target(zero, want[ZERO], sizeof want[0]);
    if (with_tracker)
        fd_target(mp__tracker_fd(), want[TRACKER], sizeof want[0]);
    report_close(&r);
    int seen[N] = {0}, stdin_null = 0, parent_pidfd = 0, others = 0;
    bool ended = false;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strcmp(line, "end") == 0) {
            ended = true;
            continue;
        }
        int fd, pid;
        char target[256];
        ASSERT_EQ(3, sscanf(line, "%d pid=%d %255[^\n]", &fd, &pid, target));
        if (fd == 0 && strcmp(target, "/dev/null") == 0) {
            stdin_null++;
        } else if (fd == 1 && strcmp(target, want[STDOUT]) == 0) {
            seen[STDOUT]++;
        } else if (fd == 2 && strcmp(target, want[STDERR]) == 0) {
            seen[STDERR]++;
        } else if (fd > 2 && strcmp(target, "anon_inode:[pidfd]") == 0 && pid == getpid()) {
            parent_pidfd++;
        } else {
            bool known = false;
            for (int k = REPORT; k < N && !known; k++) {
                if (fd > 2 && (k != TRACKER || with_tracker) && strcmp(target, want[k]) == 0) {
                    seen[k]++;
                    known = true;
                }
            }
            if (!known) {
                printf("unexpected: %s\n", line);
                others++;
            }
        }
    }
    ASSERT_TRUE(ended);
    ASSERT_EQ(1, stdin_null);
    ASSERT_EQ(1, seen[STDOUT]);
    ASSERT_EQ(1, seen[STDERR]);
    ASSERT_EQ(1, seen[REPORT]);
    ASSERT_EQ(1, seen[ZERO]);
    ASSERT_EQ(with_tracker ? 1 : 0, seen[TRACKER]);
    ASSERT_EQ(1, parent_pidfd);
    ASSERT_EQ(0, others);
    free(out);
    close(zero);
    close(stray);
    if (shm != NULL) {
        ASSERT_OK(mp_shm_unlink(shm));
        ASSERT_OK(mp_shm_close(shm));
    }
}

MP_TEST(spawned_child_holds_exactly_its_fds, .variants = MP_TEST_SPAWN | MP_TEST_FORKSERVER)
{
    child_fds(ctx, false);
}

MP_TEST(spawned_child_holds_exactly_its_fds_and_tracker,
        .variants = MP_TEST_SPAWN | MP_TEST_FORKSERVER)
{
    child_fds(ctx, true);
}

/* Issue 14, item 8: a reused pid is never mistaken for the child.  Runs as
 * pid 1 of a pid namespace of its own, where nothing else takes pids: a
 * child ends and is reaped (by join; under forkserver by its server, before
 * the parent has heard of it), a decoy process is made to get its pid
 * (ns_last_pid), and then the child's object must not see the decoy: not
 * alive, terminate and kill reach nobody, join gives the child's exit
 * code, active_children lists nothing. */
static _Noreturn void reuse_world(const char *method)
{
    mp_args *a;
    mp_process *p;
    ASSERT_OK(mp_args_of(&a, "i", 7));
    ASSERT_OK(mp_process_new(&p, mp_get_context(method), t_return_arg, a));
    ASSERT_OK(mp_process_start(p));
    mp_args_free(a);
    pid_t old = mp_process_pid(p);
    ASSERT_GT(old, 1);
    struct pollfd pfd = {.fd = mp_process_sentinel(p), .events = POLLIN};
    ASSERT_EQ(1, poll(&pfd, 1, 10000));
    if (strcmp(method, "forkserver") != 0)
        ASSERT_OK(mp_process_join(p, 10)); /* we are its reaper */
    /* until its pid is free (its reaper has reaped it) */
    double until = mp_monotonic() + 10;
    while (kill(old, 0) == 0) {
        ASSERT_TRUE(mp_monotonic() < until);
        usleep(1000);
    }
    ASSERT_EQ(ESRCH, errno);
    int f = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
    ASSERT_GE(f, 0);
    char num[16];
    int len = snprintf(num, sizeof num, "%d", (int)old - 1);
    ASSERT_EQ(len, write(f, num, (size_t)len));
    close(f);
    pid_t decoy = fork();
    ASSERT_GE(decoy, 0);
    if (decoy == 0) {
        for (;;)
            pause();
    }
    ASSERT_EQ(old, decoy); /* the child's pid is the decoy's now */
    int dfd = (int)syscall(SYS_pidfd_open, decoy, 0);
    ASSERT_GE(dfd, 0);

    /* signals first: under forkserver the parent has not yet read the
     * status, only the sentinel can tell */
    ASSERT_OK(mp_process_terminate(p));
    ASSERT_OK(mp_process_kill(p));
    ASSERT_FALSE(mp_process_is_alive(p));
    ASSERT_OK(mp_process_join(p, 10));
    int code = -1;
    ASSERT_OK(mp_process_exitcode(p, &code));
    ASSERT_EQ(7, code);
    ASSERT_EQ(0, mp_active_children(NULL, 0));
    struct pollfd dp = {.fd = dfd, .events = POLLIN};
    ASSERT_EQ(0, poll(&dp, 1, 300)); /* no signal reached the decoy */
    ASSERT_OK(mp_process_close(p));
    ASSERT_EQ(0, kill(decoy, SIGKILL));
    int st;
    ASSERT_EQ(decoy, waitpid(decoy, &st, 0));
    ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    close(dfd);
    mp__exit_cleanup();
    _exit(0);
}

MP_TEST(reused_pid_never_mistaken_for_the_child, .variants = MP_START_METHODS)
{
    fflush(stdout);
    pid_t h = fork();
    ASSERT_GE(h, 0);
    if (h == 0) {
        /* the next child is pid 1 of a new pid namespace */
        if (unshare(CLONE_NEWPID) != 0)
            _exit(77);
        pid_t w = fork();
        if (w < 0)
            _exit(78);
        if (w == 0)
            reuse_world(method);
        int st;
        while (waitpid(w, &st, 0) < 0 && errno == EINTR)
            ;
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st));
    }
    int st;
    ASSERT_EQ(h, waitpid(h, &st, 0));
    ASSERT_TRUE(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        MP_TEST_SKIP("no pid namespace (unshare: not permitted here)");
    ASSERT_EQ(0, WEXITSTATUS(st));
}

/* Issue 14, item 8: a spawned child never runs main(), tested directly.
 * tests/lib/spawn_probe.c is a program whose main() appends "main <pid>"
 * to a file and whose child's target appends "target <pid>"; it starts one
 * child by @method.  The file must hold exactly one of each, main's by the
 * probe itself (the fork server, a fresh run of the program too, must not
 * have run main() either). */
MP_TEST(spawned_child_never_runs_main, .variants = MP_TEST_SPAWN | MP_TEST_FORKSERVER,
        .timeout_s = 60)
{
    char marks[] = "/tmp/mp-marks-XXXXXX";
    int mf = mkstemp(marks);
    ASSERT_GE(mf, 0);
    int out[2];
    ASSERT_EQ(0, pipe2(out, O_CLOEXEC));
    ASSERT_EQ(0, setenv("SPAWN_PROBE_MARKS", marks, 1));
    fflush(stdout);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        execl(MP_SPAWN_PROBE_PATH, "spawn_probe", method, (char *)NULL);
        _exit(127);
    }
    ASSERT_EQ(0, unsetenv("SPAWN_PROBE_MARKS"));
    close(out[1]);
    char *text = strdup(slurp(out[0]));
    close(out[0]);
    int st;
    ASSERT_EQ(pid, waitpid(pid, &st, 0));
    printf("probe: %s", text);
    char *m = strdup(slurp(mf));
    close(mf);
    ASSERT_EQ(0, unlink(marks));
    printf("marks:\n%s", m);
    int mains = 0, mains_elsewhere = 0, targets = 0, others = 0;
    for (char *line = strtok(m, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        int who;
        if (sscanf(line, "main %d", &who) == 1)
            ++*(who == pid ? &mains : &mains_elsewhere);
        else if (sscanf(line, "target %d", &who) == 1 && who != pid)
            targets++;
        else
            others++;
    }
    free(m);
    ASSERT_EQ(0, mains_elsewhere);
    ASSERT_EQ(1, mains);
    ASSERT_EQ(1, targets);
    ASSERT_EQ(0, others);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_TRUE(strstr(text, "start=ok\nexitcode=7\n") != NULL); /* the target ran */
    free(text);
}

/* Descriptors passed in args work under every method. */
static int t_write_fd(const mp_args *a)
{
    say(a, 0, "through the fd");
    return 0;
}

MP_TEST(fd_argument, .variants = MP_START_METHODS)
{
    report r;
    report_open(&r);
    mp_args *a = args_with_report(&r);
    close(r.wr); /* the args hold their own duplicate */
    r.wr = -1;
    int code = -1;
    ASSERT_OK(run_one(ctx, t_write_fd, a, &code));
    ASSERT_EQ(0, code);
    mp_args_free(a);
    ASSERT_STREQ("through the fd\n", slurp(r.rd));
    report_close(&r);
}

/* Processes started concurrently from several threads. */
struct thread_job {
    mp_context *ctx;
    int base, bad;
};

static void *thread_starter(void *arg)
{
    struct thread_job *j = arg;
    for (int i = 0; i < 5; i++) {
        mp_args *a;
        int code = -1;
        if (mp_args_of(&a, "i", j->base + i) != 0 || run_one(j->ctx, t_return_arg, a, &code) != 0 ||
            code != j->base + i)
            j->bad++;
        mp_args_free(a);
    }
    return NULL;
}

MP_TEST(multithreaded_parent, .variants = MP_START_METHODS, .timeout_s = 60)
{
    enum { T = 4 };
    pthread_t t[T];
    struct thread_job jobs[T];
    for (int i = 0; i < T; i++) {
        jobs[i] = (struct thread_job){ctx, 10 * (i + 1), 0};
        ASSERT_EQ(0, pthread_create(&t[i], NULL, thread_starter, &jobs[i]));
    }
    for (int i = 0; i < T; i++) {
        ASSERT_EQ(0, pthread_join(t[i], NULL));
        ASSERT_EQ(0, jobs[i].bad);
    }
}

/* test_forkserver_sigkill: a killed fork server is replaced transparently. */
static int t_report_ppid(const mp_args *a)
{
    say(a, 0, "%d", (int)getppid());
    return 0;
}

static int server_of_one_child(mp_context *fs)
{
    report r;
    report_open(&r);
    mp_args *a = args_with_report(&r);
    int code = -1;
    int err = run_one(fs, t_report_ppid, a, &code);
    mp_args_free(a);
    close(r.wr);
    r.wr = -1;
    int server = err == 0 && code == 0 ? atoi(mp_test_read_line(r.rd)) : -1;
    report_close(&r);
    return server;
}

/* A killed fork server is replaced; Ctrl-C (SIGINT) leaves it alone. */
MP_TEST(forkserver_restarts_after_kill)
{
    mp_context *fs = mp_get_context("forkserver");
    int s1 = server_of_one_child(fs);
    ASSERT_GT(s1, 0);
    ASSERT_NE(getpid(), s1);
    ASSERT_EQ(0, kill(s1, SIGKILL));
    int s2 = server_of_one_child(fs); /* whether or not it is gone yet */
    ASSERT_GT(s2, 0);
    ASSERT_NE(s1, s2);
    ASSERT_EQ(0, kill(s2, SIGINT));
    usleep(50000);
    ASSERT_EQ(s2, server_of_one_child(fs));
    ASSERT_EQ(0, kill(s2, SIGTERM));
    int s3 = server_of_one_child(fs);
    ASSERT_GT(s3, 0);
    ASSERT_NE(s2, s3);
}

struct unread_start {
    mp_context *ctx;
    int err, code;
};

static void *start_unread(void *arg)
{
    struct unread_start *us = arg;
    mp_args *a = NULL;
    us->err = mp_args_of(&a, "i", 42);
    if (us->err == 0)
        us->err = run_one(us->ctx, t_return_arg, a, &us->code);
    mp_args_free(a);
    return NULL;
}

/* A fork server killed while a request waits unread (its prep, with the
 * descriptors that go with it, queued inside a channel that is itself in
 * flight on the control socket): the start goes to a new server, the child
 * gets its arguments whole, and no descriptor is left behind. */
MP_TEST(forkserver_killed_with_a_request_unread, .timeout_s = 60)
{
    mp_context *fs = mp_get_context("forkserver");
    int s1 = server_of_one_child(fs);
    ASSERT_GT(s1, 0);
    ASSERT_EQ(0, kill(s1, SIGSTOP)); /* it reads nothing more */
    struct unread_start us = {fs, -1, -1};
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, start_unread, &us));
    usleep(200000); /* the request is sent: the start waits for a pid */
    ASSERT_EQ(0, kill(s1, SIGKILL));
    ASSERT_EQ(0, pthread_join(t, NULL));
    ASSERT_OK(us.err);
    ASSERT_EQ(42, us.code);
    int s2 = server_of_one_child(fs);
    ASSERT_GT(s2, 0);
    ASSERT_NE(s1, s2);
}

/* A spawned child whose target cannot be resolved says so and exits 126. */
MP_TEST(unresolvable_target_exits_cleanly)
{
    mp_process *p;
    ASSERT_OK(mp_process_new(&p, NULL, t_return_arg, NULL));
    mp_buf body = MP_BUF_INIT, ref = MP_BUF_INIT;
    mp__fdvec fds = {.n = 0};
    ASSERT_OK(mp__prep_encode(p, &body, &fds));
    /* find this function's build id inside the body and corrupt it */
    ASSERT_OK(mp__funcref_encode((const void *)t_return_arg, &ref));
    mp__reader rr;
    mp__reader_init(&rr, ref.data, ref.len);
    ASSERT_TRUE(mp__get_str(&rr) != NULL);
    size_t idlen;
    const unsigned char *id = mp__get_blob(&rr, &idlen);
    ASSERT_TRUE(id != NULL);
    ASSERT_GT(idlen, 0);
    unsigned char *hit = memmem(body.data, body.len, id, idlen);
    ASSERT_TRUE(hit != NULL);
    hit[0] ^= 0xff;

    int errp[2];
    ASSERT_EQ(0, pipe2(errp, O_CLOEXEC));
    int saved = dup(STDERR_FILENO);
    dup2(errp[1], STDERR_FILENO);
    int sock, pidfd;
    pid_t pid;
    int err = mp__spawn_exec(&sock, &pid, &pidfd);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(errp[1]);
    ASSERT_OK(err);
    ASSERT_OK(mp__prep_send(sock, MP__ROLE_PROCESS, &body, &fds));
    close(sock);
    int st;
    ASSERT_EQ(pid, waitpid(pid, &st, 0));
    close(pidfd);
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(MP_EXIT_BOOTSTRAP, WEXITSTATUS(st));
    char *msg = slurp(errp[0]);
    close(errp[0]);
    ASSERT_TRUE(strstr(msg, "cannot find the target function") != NULL);
    ASSERT_TRUE(strstr(msg, "changed") != NULL);
    ASSERT_TRUE(strchr(msg, '\n') == msg + strlen(msg) - 1); /* one line */
    mp_buf_free(&body);
    mp_buf_free(&ref);
    ASSERT_OK(mp_process_close(p));
}

/* Targets in shared libraries: one linked in, one dlopen()ed by the parent
 * only (a spawned child loads it itself), static functions included. */
#include <dlfcn.h>

int mp_testlib_target(const mp_args *args);
void *mp_testlib_static_target(void);

MP_TEST(target_in_shared_library, .variants = MP_START_METHODS)
{
    int code = -1;
    ASSERT_OK(run_one(ctx, mp_testlib_target, NULL, &code));
    ASSERT_EQ(42, code);
    ASSERT_OK(run_one(ctx, (mp_target_fn)mp_testlib_static_target(), NULL, &code));
    ASSERT_EQ(43, code);
}

MP_TEST(target_in_dlopened_library, .variants = MP_START_METHODS)
{
    void *h = dlopen(MP_TESTLIB_DL_PATH, RTLD_NOW | RTLD_LOCAL);
    ASSERT_TRUE(h != NULL);
    mp_target_fn fn = (mp_target_fn)dlsym(h, "mp_testlib_target");
    void *(*get_static)(void) = (void *(*)(void))dlsym(h, "mp_testlib_static_target");
    ASSERT_TRUE(fn != NULL && get_static != NULL);
    int code = -1;
    ASSERT_OK(run_one(ctx, fn, NULL, &code));
    ASSERT_EQ(42, code);
    ASSERT_OK(run_one(ctx, (mp_target_fn)get_static(), NULL, &code));
    ASSERT_EQ(43, code);
    dlclose(h);
}

static int t_static_in_exe(const mp_args *a)
{
    (void)a;
    return 77;
}

MP_TEST(static_target_in_executable, .variants = MP_START_METHODS)
{
    int code = -1;
    ASSERT_OK(run_one(ctx, t_static_in_exe, NULL, &code));
    ASSERT_EQ(77, code);
}

/* Issue 13: once a sentinel is readable the child is over in every view:
 * is_alive is false, the exit code is known and active_children leaves it
 * out; and is_alive false means the sentinel is readable. */
MP_TEST(sentinel_agrees_with_is_alive, .variants = MP_START_METHODS, .timeout_s = 120)
{
    enum { BATCH = 10, ROUNDS = 20 }; /* 200 short children */
    for (int round = 0; round < ROUNDS; round++) {
        mp_process *p[BATCH];
        bool done[BATCH] = {false};
        for (int i = 0; i < BATCH; i++) {
            mp_args *a;
            ASSERT_OK(mp_args_of(&a, "i", (round * BATCH + i) % 7));
            ASSERT_OK(mp_process_new(&p[i], ctx, t_return_arg, a));
            ASSERT_OK(mp_process_start(p[i]));
            mp_args_free(a);
        }
        for (int left = BATCH; left > 0;) {
            struct pollfd pfd[BATCH];
            int idx[BATCH], n = 0;
            for (int i = 0; i < BATCH; i++) {
                if (done[i])
                    continue;
                int s = mp_process_sentinel(p[i]);
                ASSERT_GE(s, 3);
                pfd[n] = (struct pollfd){.fd = s, .events = POLLIN};
                idx[n++] = i;
            }
            ASSERT_GT(poll(pfd, (nfds_t)n, 30000), 0);
            for (int k = 0; k < n; k++) {
                int i = idx[k], code;
                if (!(pfd[k].revents & POLLIN)) {
                    /* not readable a moment ago: if it has ended since, the
                     * sentinel must say so now */
                    if (!mp_process_is_alive(p[i])) {
                        struct pollfd one = {.fd = pfd[k].fd, .events = POLLIN};
                        ASSERT_EQ(1, poll(&one, 1, 0));
                    }
                    continue;
                }
                /* ask in both orders: the first question is the one that
                 * finds the status missing */
                if (i % 2) {
                    ASSERT_FALSE(mp_process_is_alive(p[i]));
                    ASSERT_FALSE(listed(p[i]));
                } else {
                    ASSERT_FALSE(listed(p[i]));
                    ASSERT_FALSE(mp_process_is_alive(p[i]));
                }
                ASSERT_OK(mp_process_exitcode(p[i], &code));
                ASSERT_EQ((round * BATCH + i) % 7, code);
                done[i] = true;
                left--;
            }
        }
        for (int i = 0; i < BATCH; i++) {
            ASSERT_OK(mp_process_join(p[i], 0));
            ASSERT_OK(mp_process_close(p[i]));
        }
    }
    ASSERT_EQ(0, mp_active_children(NULL, 0));
}

/* Issue 13: an ended child nobody joined is reaped when the next process
 * starts (Python's _cleanup), and still reports its exit code.  Forkserver
 * children are the server's to reap. */
MP_TEST(unjoined_child_reaped_at_next_start, .variants = MP_START_METHODS, .timeout_s = 60)
{
    bool ours = strcmp(method, "forkserver") != 0;
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "i", 7));
    mp_process *first, *second;
    ASSERT_OK(mp_process_new(&first, ctx, t_return_arg, a));
    ASSERT_OK(mp_process_start(first));
    pid_t pid = mp_process_pid(first);
    struct pollfd pfd = {.fd = mp_process_sentinel(first), .events = POLLIN};
    ASSERT_EQ(1, poll(&pfd, 1, 30000));
    siginfo_t si;
    if (ours) {
        /* ended, not yet reaped: a zombie of ours */
        memset(&si, 0, sizeof si);
        ASSERT_EQ(0, waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT));
        ASSERT_EQ(pid, si.si_pid);
    }
    ASSERT_OK(mp_process_new(&second, ctx, t_return_arg, a));
    ASSERT_OK(mp_process_start(second));
    if (ours) {
        /* reaped by the start: no longer a child of ours at all */
        memset(&si, 0, sizeof si);
        ASSERT_EQ(-1, waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT));
        ASSERT_EQ(ECHILD, errno);
        char path[64], stat[256] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) { /* gone, or (pid reused) someone else's, not a zombie */
            ssize_t n = read(fd, stat, sizeof stat - 1);
            close(fd);
            stat[n > 0 ? n : 0] = '\0';
            const char *rp = strrchr(stat, ')');
            ASSERT_TRUE(rp == NULL || rp[1] != ' ' || rp[2] != 'Z');
        }
    }
    ASSERT_FALSE(listed(first) && ours);
    int code = -1;
    ASSERT_OK(mp_process_exitcode(first, &code));
    ASSERT_EQ(7, code);
    ASSERT_FALSE(mp_process_is_alive(first));
    ASSERT_OK(mp_process_join(first, 0));
    ASSERT_OK(mp_process_exitcode(first, &code));
    ASSERT_EQ(7, code);
    ASSERT_OK(mp_process_close(first));
    ASSERT_OK(mp_process_join(second, 30));
    ASSERT_OK(mp_process_exitcode(second, &code));
    ASSERT_EQ(7, code);
    ASSERT_OK(mp_process_close(second));
    mp_args_free(a);
}

/* The reaping at start and a join in another thread race for the same
 * child: whichever reaps it, the exit code is the child's, not 255. */
struct joiner {
    mp_process *p;
    int err;
    bool done;
};

static void *join_thread(void *arg)
{
    struct joiner *j = arg;
    j->err = mp_process_join(j->p, 60);
    __atomic_store_n(&j->done, true, __ATOMIC_RELEASE);
    return NULL;
}

MP_TEST(join_races_reaping_at_start, .variants = MP_START_METHODS, .timeout_s = 90)
{
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "d", 0.2));
    mp_args *b;
    ASSERT_OK(mp_args_of(&b, "i", 3));
    for (int round = 0; round < 5; round++) {
        struct joiner j = {.err = 1};
        ASSERT_OK(mp_process_new(&j.p, ctx, t_sleep, a));
        ASSERT_OK(mp_process_start(j.p));
        pthread_t t;
        ASSERT_EQ(0, pthread_create(&t, NULL, join_thread, &j));
        double until = mp_monotonic() + 30;
        while (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE) && mp_monotonic() < until) {
            mp_process *q;
            int code;
            ASSERT_OK(mp_process_new(&q, ctx, t_return_arg, b));
            ASSERT_OK(mp_process_start(q));
            ASSERT_OK(mp_process_join(q, 30));
            ASSERT_OK(mp_process_exitcode(q, &code));
            ASSERT_EQ(3, code);
            ASSERT_OK(mp_process_close(q));
        }
        ASSERT_EQ(0, pthread_join(t, NULL));
        ASSERT_OK(j.err);
        int code = -1;
        ASSERT_OK(mp_process_exitcode(j.p, &code));
        ASSERT_EQ(0, code);
        ASSERT_OK(mp_process_close(j.p));
    }
    mp_args_free(a);
    mp_args_free(b);
}

/* Issue 13: the forkserver child has died (its sentinel is readable) but the
 * stopped server has not relayed the status yet: is_alive waits for it
 * rather than answer "alive", and the exit code is the child's. */
static int t_nap_then_5(const mp_args *a)
{
    (void)a;
    struct timespec ts = {0, 300 * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    return 5;
}

static void *continue_later(void *arg)
{
    struct timespec ts = {0, 400 * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    kill((pid_t)(intptr_t)arg, SIGCONT);
    return NULL;
}

MP_TEST(forkserver_is_alive_waits_for_status, .timeout_s = 60)
{
    mp_context *fs = mp_get_context("forkserver");
    int server = server_of_one_child(fs);
    ASSERT_GT(server, 0);
    mp_process *p = mp_test_start(fs, t_nap_then_5, NULL);
    ASSERT_EQ(0, kill(server, SIGSTOP));
    pthread_t t;
    ASSERT_EQ(0, pthread_create(&t, NULL, continue_later, (void *)(intptr_t)server));
    struct pollfd pfd = {.fd = mp_process_sentinel(p), .events = POLLIN};
    ASSERT_EQ(1, poll(&pfd, 1, 30000));
    ASSERT_FALSE(mp_process_is_alive(p));
    int code = -1;
    ASSERT_OK(mp_process_exitcode(p, &code));
    ASSERT_EQ(5, code);
    ASSERT_EQ(0, pthread_join(t, NULL));
    ASSERT_OK(mp_process_close(p));
}
