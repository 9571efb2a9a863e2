/*
 * The test runner: main() of every tests/test_*.c executable.
 *
 *   test_x --list      one "id timeout" line per test (timeout in whole seconds,
 *                      already scaled by MP_TEST_TIMEOUT_MULTIPLIER)
 *   test_x --run ID    run one test; exit status 0 when it passed, 77 when it
 *                      was skipped (CTest's SKIP_RETURN_CODE)
 *   test_x             run them all, TAP output, "N passed, N failed, N skipped"
 *                      last; fails when it lists no test at all
 *
 * Each test runs in a forked child in its own process group; the runner is a
 * child subreaper and waits on a pidfd with the test's timeout, then kills
 * the group.  The child's output goes to a memfd shown on failure (always
 * with MP_TEST_VERBOSE=1).  After the body the child runs the library's exit
 * cleanup and checks that no descriptor and no child is left; the runner
 * then checks that no orphan came back to it and no /dev/shm entry is left.
 * MP_USE_VALGRIND=1 runs each test child under valgrind.
 *
 * Spawned children re-execute this binary and never reach main(), so
 * nothing here runs in them (the registering constructors only link tests
 * into a list).  Until it forks a test, the runner calls no library function.
 */
#include "mp_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_S 30.0
#define ORPHAN_GRACE_S 3.0
#define MAX_FDS 4096
#define MAX_SHM 4096

static mp_test *registered;
static pid_t runner_pid;

void mp_test_register(mp_test *t)
{
    t->next = registered;
    registered = t;
}

/* ---- failing ------------------------------------------------------------ */

static void vsay(int fd, const char *fmt, va_list ap)
{
    char line[4096];
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    (void)!write(fd, line, (size_t)n);
}

/* A line on stderr (in a test child: the captured output). */
static void say(const char *fmt, ...) MP_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(STDERR_FILENO, fmt, ap);
    va_end(ap);
}

void mp_test_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[3800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    say("%s:%d: %s", file, line, msg);
    _exit(1); /* no exit handlers: they could wait on the children left */
}

/* The line that tells the runner why: read back from the test's captured
 * output, so that it survives valgrind's re-execution as well. */
#define SKIP_MARK "MP_TEST_SKIP: "

void mp_test_skip(const char *fmt, ...)
{
    char msg[3800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '#')
            *c = ' '; /* one line, and no second TAP directive */
    fflush(stdout);
    say(SKIP_MARK "%s", msg);
    _exit(MP_TEST_SKIP_STATUS);
}

void mp_test_memeq_fail(const char *file, int line, const char *ea, const char *eb, const void *a,
                        const void *b, size_t n)
{
    if (a == NULL || b == NULL)
        mp_test_fail(file, line, "ASSERT_MEMEQ(%s, %s, %zu): NULL pointer", ea, eb, n);
    const unsigned char *p = a, *q = b;
    size_t i = 0;
    while (p[i] == q[i])
        i++;
    char hp[3 * 16 + 1] = "", hq[3 * 16 + 1] = "";
    for (size_t k = i, j = 0; k < n && j < 16; k++, j++) {
        snprintf(hp + 3 * j, 4, " %02x", p[k]);
        snprintf(hq + 3 * j, 4, " %02x", q[k]);
    }
    mp_test_fail(file, line, "ASSERT_MEMEQ(%s, %s, %zu): first difference at offset %zu:%s vs%s",
                 ea, eb, n, i, hp, hq);
}

/* ---- small helpers ------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool env_true(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static double multiplier(void)
{
    const char *v = getenv("MP_TEST_TIMEOUT_MULTIPLIER");
    double m = v ? strtod(v, NULL) : 1.0;
    return m > 0 ? m : 1.0;
}

int mp_test_each_process(mp_test_proc_fn fn, void *arg)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], st[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, st, sizeof st - 1);
        close(fd);
        if (len <= 0)
            continue;
        st[len] = '\0';
        /* "pid (comm) S ppid ...": comm may hold spaces and parentheses */
        char *open_paren = strchr(st, '('), *close_paren = strrchr(st, ')');
        int parent;
        char state;
        if (!open_paren || !close_paren || sscanf(close_paren + 1, " %c %d", &state, &parent) != 2)
            continue;
        *close_paren = '\0';
        if (fn((pid_t)atoi(e->d_name), (pid_t)parent, state, open_paren + 1, arg))
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

/* The running processes whose parent is @ppid, with their names. */
typedef void (*proc_fn)(pid_t pid, const char *comm, void *arg);
struct child_filter {
    pid_t ppid;
    proc_fn fn;
    void *arg;
};

static bool child_of(pid_t pid, pid_t ppid, char state, const char *comm, void *arg)
{
    const struct child_filter *f = arg;
    (void)state;
    if (ppid != f->ppid)
        return false;
    f->fn(pid, comm, f->arg);
    return true;
}

static int for_each_child(pid_t ppid, proc_fn fn, void *arg)
{
    struct child_filter f = {ppid, fn, arg};
    return mp_test_each_process(child_of, &f);
}

static void comm_of(pid_t pid, char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, cap - 1) : -1;
    if (fd >= 0)
        close(fd);
    out[n > 0 ? n - 1 : 0] = '\0';
}

static void describe_status(int st, char *out, size_t cap)
{
    if (WIFEXITED(st))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(out, cap, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(out, cap, "wait status %#x", st);
}

/* ---- the test child ----------------------------------------------------- */

static int read_fds(int *fds, int cap)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        mp_test_fail(__FILE__, __LINE__, "cannot list /proc/self/fd: %s", strerror(errno));
    int n = 0, self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (isdigit((unsigned char)e->d_name[0]) && atoi(e->d_name) != self && n < cap)
            fds[n++] = atoi(e->d_name);
    closedir(d);
    return n;
}

static void report_child(pid_t pid, const char *comm, void *arg)
{
    (void)arg;
    say("leak: child process %d (%s) is still running after the test", (int)pid, comm);
}

static void check_leaks(const int *before, int nbefore)
{
    static int after[MAX_FDS];
    int nafter = read_fds(after, MAX_FDS), leaks = 0;
    for (int i = 0; i < nafter; i++) {
        bool known = false;
        for (int j = 0; j < nbefore && !known; j++)
            known = before[j] == after[i];
        if (known)
            continue;
        char path[64], target[512];
        snprintf(path, sizeof path, "/proc/self/fd/%d", after[i]);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        say("leak: fd %d (%s) was left open", after[i], target);
        leaks++;
    }
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        char how[128];
        describe_status(st, how, sizeof how);
        say("leak: child process %d was left unreaped (it %s)", (int)pid, how);
        leaks++;
    }
    if (pid == 0)
        leaks += for_each_child(getpid(), report_child, NULL);
    else if (errno != ECHILD)
        say("waitpid: %s", strerror(errno));
    if (leaks)
        mp_test_fail(__FILE__, __LINE__, "%d leak(s) after the test", leaks);
}

/* ---- the proxy variant's objects ---------------------------------------- */

static bool proxy_variant;
static mp_manager *proxy_manager;
static unsigned proxy_names;

bool mp_test_proxied(void)
{
    return proxy_variant;
}

mp_manager *mp_test_manager(void)
{
    if (!proxy_variant)
        return NULL;
    if (proxy_manager == NULL) {
        int r = mp_manager_start(&proxy_manager, mp_get_context("fork"), NULL, NULL, 0);
        if (r < 0)
            mp_test_fail(__FILE__, __LINE__, "mp_manager_start: %s", mp_strerror(r));
    }
    return proxy_manager;
}

/* A fresh name for each object of the test, also in its children. */
static const char *proxy_name(char *buf, size_t cap)
{
    snprintf(buf, cap, "test-object-%d-%u", (int)getpid(), ++proxy_names);
    return buf;
}

int mp_test_queue_new(mp_queue **out, size_t maxsize)
{
    char name[32];
    if (!proxy_variant)
        return mp_queue_new(out, maxsize);
    return mp_manager_queue(mp_test_manager(), proxy_name(name, sizeof name), maxsize, out);
}

int mp_test_lock_new(mp_lock **out)
{
    char name[32];
    if (!proxy_variant)
        return mp_lock_new(out);
    return mp_manager_lock(mp_test_manager(), proxy_name(name, sizeof name), out);
}

int mp_test_event_new(mp_event **out)
{
    char name[32];
    if (!proxy_variant)
        return mp_event_new(out);
    return mp_manager_event(mp_test_manager(), proxy_name(name, sizeof name), out);
}

int mp_test_semaphore_new(mp_semaphore **out, unsigned value)
{
    char name[32];
    if (!proxy_variant)
        return mp_semaphore_new(out, value, false);
    return mp_manager_semaphore(mp_test_manager(), proxy_name(name, sizeof name), value, out);
}

int mp_test_rlock_new(mp_lock **out)
{
    char name[32];
    if (!proxy_variant)
        return mp_rlock_new(out);
    return mp_manager_rlock(mp_test_manager(), proxy_name(name, sizeof name), out);
}

int mp_test_bounded_semaphore_new(mp_semaphore **out, unsigned value)
{
    char name[32];
    if (!proxy_variant)
        return mp_semaphore_new(out, value, true);
    return mp_manager_bounded_semaphore(mp_test_manager(), proxy_name(name, sizeof name), value,
                                        out);
}

/* @lock: NULL, or one made by mp_test_lock_new / mp_test_rlock_new. */
int mp_test_condition_new(mp_condition **out, mp_lock *lock)
{
    char name[32];
    if (!proxy_variant)
        return mp_condition_new(out, lock);
    return mp_manager_condition(mp_test_manager(), proxy_name(name, sizeof name), lock, out);
}

/* No action: a manager's barrier has none (an action is code). */
int mp_test_barrier_new(mp_barrier **out, unsigned parties, double timeout)
{
    char name[32];
    if (!proxy_variant)
        return mp_barrier_new(out, parties, NULL, timeout);
    return mp_manager_barrier(mp_test_manager(), proxy_name(name, sizeof name), parties, timeout,
                              out);
}

int mp_test_value_new(mp_value **out, mp_type type)
{
    char name[32];
    if (!proxy_variant)
        return mp_value_new(out, type, true);
    return mp_manager_value(mp_test_manager(), proxy_name(name, sizeof name), type, out);
}

int mp_test_joinable_queue_new(mp_queue **out, size_t maxsize)
{
    char name[32];
    if (!proxy_variant)
        return mp_joinable_queue_new(out, maxsize);
    return mp_manager_joinable_queue(mp_test_manager(), proxy_name(name, sizeof name), maxsize,
                                     out);
}

int mp_test_array_new(mp_array **out, mp_type type, size_t n, const void *init, bool lock)
{
    char name[32];
    if (!proxy_variant)
        return mp_array_new(out, type, n, init, lock);
    return mp_manager_array(mp_test_manager(), proxy_name(name, sizeof name), type, n, init, out);
}

static _Noreturn void child_run(const mp_test *t, const char *method)
{
    static int before[MAX_FDS];
    mp_context *ctx = NULL;
    proxy_variant = method != NULL && strcmp(method, "proxy") == 0;
    const char *start = proxy_variant ? "fork" : method;
    if (start != NULL && (ctx = mp_get_context(start)) == NULL)
        mp_test_fail(__FILE__, __LINE__, "no context for start method %s", method);
    if (proxy_variant) /* before the body: forked children share it */
        (void)mp_test_manager();
    int nbefore = read_fds(before, MAX_FDS);
    t->fn(ctx, method);
    if (proxy_manager != NULL) {
        int r = mp_manager_shutdown(proxy_manager);
        if (r < 0)
            mp_test_fail(__FILE__, __LINE__, "mp_manager_shutdown: %s", mp_strerror(r));
        mp_manager_free(proxy_manager);
        proxy_manager = NULL;
    }
    mp__exit_cleanup(); /* what atexit would do: daemons terminated, others joined */
    fflush(stdout);
    check_leaks(before, nbefore);
    exit(0); /* atexit handlers and LeakSanitizer run */
}

/* In the forked child: isolate, redirect output, then run (or re-run under
 * valgrind, which comes back through --child). */
static _Noreturn void child_main(const mp_test *t, const char *method, const char *id, int out)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != runner_pid)
        _exit(1); /* the runner died already */
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL); /* glibc refuses its internal ones: fine */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
    dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    close(out);
    setvbuf(stdout, NULL, _IOLBF, 0); /* a crash loses no line, order kept */
    if (env_true("MP_USE_VALGRIND")) {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = '\0';
        char *argv[] = {"valgrind",
                        "--quiet",
                        "--leak-check=full",
                        "--errors-for-leak-kinds=definite",
                        "--error-exitcode=125",
                        "--trace-children=yes",
                        "--child-silent-after-fork=yes",
                        exe,
                        "--child",
                        (char *)id,
                        NULL};
        execvp(argv[0], argv);
        mp_test_fail(__FILE__, __LINE__, "cannot run valgrind: %s", strerror(errno));
    }
    child_run(t, method);
}

/* ---- the runner side ---------------------------------------------------- */

typedef struct shm_set {
    char *names[MAX_SHM];
    int n;
} shm_set;

static void shm_snapshot(shm_set *s)
{
    s->n = 0;
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && s->n < MAX_SHM)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            s->names[s->n++] = strdup(e->d_name);
    if (d != NULL)
        closedir(d);
}

static void shm_clear(shm_set *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->names[i]);
    s->n = 0;
}

/* Does a live process (another test running in parallel) use this entry? */
static bool shm_in_use(const char *name)
{
    char want[512];
    snprintf(want, sizeof want, "/dev/shm/%s", name);
    DIR *d = opendir("/proc");
    struct dirent *e;
    bool used = false;
    while (!used && d != NULL && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[600], target[512];
        snprintf(path, sizeof path, "/proc/%s/fd", e->d_name);
        DIR *fd = opendir(path);
        struct dirent *f;
        while (!used && fd != NULL && (f = readdir(fd)) != NULL) {
            snprintf(path, sizeof path, "/proc/%s/fd/%s", e->d_name, f->d_name);
            ssize_t n = readlink(path, target, sizeof target - 1);
            used = n > 0 && (target[n] = '\0', strcmp(target, want) == 0);
        }
        if (fd != NULL)
            closedir(fd);
        snprintf(path, sizeof path, "/proc/%s/maps", e->d_name);
        FILE *m = fopen(path, "re");
        char line[1024];
        while (!used && m != NULL && fgets(line, sizeof line, m) != NULL) {
            char *p = strstr(line, want);
            used =
                p && (p[strlen(want)] == '\n' || strncmp(p + strlen(want), " (deleted)", 10) == 0);
        }
        if (m != NULL)
            fclose(m);
    }
    if (d != NULL)
        closedir(d);
    return used;
}

/* Whether @name is another test's own: the names tests make are
 * "mp_test_<pid>_..." with the pid of the process that named it, and the
 * soak's (run beside the tests by ctest, some of them leaving a name on
 * purpose to see the soak report it) "soak-<pid>-..."; one whose process
 * still runs outside this test's process group (@test) belongs to a test
 * running beside this one under ctest -j, whose own check judges it. */
static bool another_tests(const char *name, pid_t test)
{
    static const struct {
        const char *prefix;
        char sep;
    } owned[] = {{"mp_test_", '_'}, {"soak-", '-'}};
    const char *num = NULL;
    char sep = 0;
    for (size_t i = 0; i < sizeof owned / sizeof owned[0] && num == NULL; i++) {
        size_t n = strlen(owned[i].prefix);
        if (strncmp(name, owned[i].prefix, n) == 0 && isdigit((unsigned char)name[n])) {
            num = name + n;
            sep = owned[i].sep;
        }
    }
    if (num == NULL)
        return false;
    char *end;
    long pid = strtol(num, &end, 10);
    if (*end != sep || pid <= 0 || pid > INT_MAX)
        return false;
    pid_t g = getpgid((pid_t)pid);
    return g >= 0 && g != test;
}

/* A segment's temporary name while mp_shm_new creates it ("mp-new-...",
 * shared_memory.c): a creator killed there leaves it for its resource
 * tracker, which removes it within seconds; whoever's it is (a test beside
 * this one, or this one), it is a leak only if it stays. */
static bool tracker_removes(const char *name)
{
    if (strncmp(name, "mp-new-", 7) != 0)
        return false;
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    struct stat st;
    for (int i = 0; i < 200 && lstat(path, &st) == 0; i++) { /* 10 s */
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return lstat(path, &st) != 0;
}

/* New /dev/shm entries made since @t0 and used by no live process: left by
 * the test (process @test).  They are reported and removed. */
static int shm_check(const shm_set *before, time_t t0, pid_t test)
{
    shm_set after;
    int leaks = 0;
    shm_snapshot(&after);
    for (int i = 0; i < after.n; i++) {
        if (another_tests(after.names[i], test) || tracker_removes(after.names[i]))
            continue;
        bool known = false;
        for (int j = 0; j < before->n && !known; j++)
            known = strcmp(before->names[j], after.names[i]) == 0;
        char path[512];
        snprintf(path, sizeof path, "/dev/shm/%s", after.names[i]);
        struct stat st;
        if (known || lstat(path, &st) != 0 || st.st_ctime < t0 || shm_in_use(after.names[i]))
            continue;
        if (lstat(path, &st) != 0)
            continue; /* removed by its owner while we looked */
        printf("# leak: /dev/shm/%s was left behind (removed now)\n", after.names[i]);
        unlink(path);
        leaks++;
    }
    shm_clear(&after);
    return leaks;
}

static void kill_child(pid_t pid, const char *comm, void *report)
{
    if (report)
        printf("# leak: process %d (%s) still running after the test: killed\n", (int)pid, comm);
    kill(pid, SIGKILL);
}

/* Reap whatever came back to this subreaper.  Each orphan is a failure:
 * one that ends within the grace period is reported and reaped, one still
 * running then is reported and killed.  Returns how many there were. */
static int collect_orphans(pid_t pgid, double grace)
{
    double until = now() + grace;
    bool killing = false;
    int n = 0;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: nothing left */
        }
        if (si.si_pid != 0) {
            char comm[32];
            comm_of(si.si_pid, comm, sizeof comm);
            /* A resource tracker is detached on purpose (it is no
             * descendant of the program, so this subreaper adopts it): one
             * that has ended on its own is no leak, one still running is. */
            if (!killing && strcmp(comm, "mp-tracker") != 0) {
                printf("# leak: process %d (%s) outlived the test and was reaped by the runner\n",
                       (int)si.si_pid, comm);
                n++;
            }
            waitpid(si.si_pid, NULL, 0);
            continue;
        }
        if (!killing && now() < until) {
            sleep_ms(10);
            continue;
        }
        if (!killing && pgid > 0)
            kill(-pgid, SIGKILL);
        int k = for_each_child(getpid(), kill_child, killing ? NULL : (void *)1);
        n += killing ? 0 : k;
        killing = true;
        sleep_ms(10);
    }
    fflush(stdout);
    return n;
}

/* The reason of the last SKIP_MARK line in the captured output, into @why;
 * false when there is none. */
static bool skip_reason(int fd, char *why, size_t cap)
{
    static char text[1 << 16];
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    /* the end of the output: a skip is the test's last word */
    off_t from = st.st_size > (off_t)sizeof text - 1 ? st.st_size - (off_t)sizeof text + 1 : 0;
    ssize_t n = pread(fd, text, sizeof text - 1, from);
    if (n <= 0)
        return false;
    text[n] = '\0';
    const char *found = NULL;
    for (char *p = text; (p = strstr(p, SKIP_MARK)) != NULL; p++)
        if (p == text || p[-1] == '\n')
            found = p + strlen(SKIP_MARK);
    if (found == NULL)
        return false;
    size_t len = strcspn(found, "\n");
    snprintf(why, cap, "%.*s", (int)len, found);
    return true;
}

/* The test's captured output, as TAP diagnostics. */
static void show_output(int fd)
{
    char buf[8192];
    bool bol = true;
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (bol)
                fputs("# ", stdout);
            putchar(buf[i]);
            bol = buf[i] == '\n';
        }
    }
    if (!bol)
        putchar('\n');
    fflush(stdout);
}

static int output_file(void)
{
    int fd = memfd_create("mp-test-output", MFD_CLOEXEC);
    if (fd < 0)
        fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("test output file");
        exit(2);
    }
    return fd;
}

typedef struct test_id {
    const mp_test *t;
    const char *method; /* NULL for plain tests */
    char id[200];
} test_id;

static double timeout_of(const mp_test *t)
{
    return (t->timeout_s > 0 ? t->timeout_s : DEFAULT_TIMEOUT_S) * multiplier();
}

typedef enum verdict { PASSED, FAILED, SKIPPED } verdict;

/* Run one test in a forked child; print its TAP line and return its verdict. */
static verdict run_test(const test_id *ti, int number)
{
    const mp_test *t = ti->t;
    double timeout = timeout_of(t);
    shm_set shm;
    shm_snapshot(&shm);
    time_t t0 = time(NULL);
    int out = output_file();
    runner_pid = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0)
        child_main(t, ti->method, ti->id, out);
    setpgid(pid, pid); /* also done by the child: no race either way */

    char why[512] = "";
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    double until = now() + timeout;
    bool timed_out = false;
    for (;;) {
        double left = until - now();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int r = pidfd >= 0 ? poll(&p, 1, (int)(left * 1000) + 1) : 1;
        if (r > 0)
            break;
        if (r < 0 && errno != EINTR) {
            perror("poll");
            break;
        }
    }
    if (timed_out) {
        snprintf(why, sizeof why, "timed out after %g s: killed its process group", timeout);
        kill(-pid, SIGKILL);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (pidfd >= 0)
        close(pidfd);

    bool pass = !timed_out, skipped = false;
    char skip_why[512] = "";
    if (pass && WIFEXITED(st) && WEXITSTATUS(st) == MP_TEST_SKIP_STATUS) {
        /* only through MP_TEST_SKIP: a stray exit(77) is no excuse */
        skipped = skip_reason(out, skip_why, sizeof skip_why);
        if (!skipped) {
            pass = false;
            snprintf(why, sizeof why, "exited with status %d without MP_TEST_SKIP",
                     MP_TEST_SKIP_STATUS);
        }
    } else if (pass && t->signal) {
        pass = WIFSIGNALED(st) && WTERMSIG(st) == t->signal;
        if (!pass) {
            char how[128];
            describe_status(st, how, sizeof how);
            snprintf(why, sizeof why, "should have died by signal %d but %s", t->signal, how);
        }
    } else if (pass) {
        pass = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (!pass)
            describe_status(st, why, sizeof why);
    }
    if (why[0])
        printf("# %s: %s\n", ti->id, why);
    fflush(stdout);
    if (!pass)
        kill(-pid, SIGKILL); /* whatever it left in its group */
    if (collect_orphans(pid, pass ? ORPHAN_GRACE_S : 0.5) > 0 && pass) {
        printf("# %s: failed the leak check (orphaned processes)\n", ti->id);
        pass = false;
    }
    if (shm_check(&shm, t0, pid) > 0 && pass) {
        printf("# %s: failed the leak check (/dev/shm)\n", ti->id);
        pass = false;
    }
    shm_clear(&shm);
    if (!pass || env_true("MP_TEST_VERBOSE"))
        show_output(out);
    close(out);
    if (pass && skipped)
        printf("ok %d - %s # SKIP %s\n", number, ti->id, skip_why);
    else
        printf("%s %d - %s\n", pass ? "ok" : "not ok", number, ti->id);
    fflush(stdout);
    return !pass ? FAILED : skipped ? SKIPPED : PASSED;
}

/* ---- main --------------------------------------------------------------- */

/* In the order of the variant bits (MP_TEST_FORK, ...). */
static const char *const methods[] = {"fork", "spawn", "forkserver", "proxy"};
enum { NMETHODS = sizeof methods / sizeof methods[0] };

static int by_line(const void *a, const void *b)
{
    const mp_test *x = *(const mp_test *const *)a, *y = *(const mp_test *const *)b;
    int c = strcmp(x->file, y->file);
    return c ? c : x->line - y->line;
}

/* All test ids, in source order. */
static test_id *list_tests(size_t *count)
{
    size_t nt = 0, n = 0;
    for (mp_test *t = registered; t; t = t->next)
        nt++;
    mp_test **ts = calloc(nt + 1, sizeof *ts);
    test_id *ids = calloc((NMETHODS + 1) * nt + 1, sizeof *ids);
    if (ts == NULL || ids == NULL) {
        perror("calloc");
        exit(2);
    }
    nt = 0;
    for (mp_test *t = registered; t; t = t->next)
        ts[nt++] = t;
    qsort(ts, nt, sizeof *ts, by_line);
    for (size_t i = 0; i < nt; i++) {
        if (ts[i]->variants == 0 || (ts[i]->variants & MP_TEST_PLAIN)) {
            ids[n].t = ts[i];
            snprintf(ids[n].id, sizeof ids[n].id, "%s", ts[i]->name);
            n++;
        }
        for (int m = 0; m < NMETHODS; m++) {
            if (!(ts[i]->variants & (1u << m)))
                continue;
            ids[n].t = ts[i];
            ids[n].method = methods[m];
            snprintf(ids[n].id, sizeof ids[n].id, "%s/%s", ts[i]->name, methods[m]);
            n++;
        }
    }
    free(ts);
    *count = n;
    return ids;
}

static int usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--list | --run ID]\n", prog);
    return 2;
}

int main(int argc, char **argv)
{
    size_t n;
    test_id *ids = list_tests(&n);
    const char *only = NULL;
    bool child = false;
    int status = 0;

    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s %d\n", ids[i].id, (int)(timeout_of(ids[i].t) + 0.999));
        goto out;
    }
    if (argc == 3 && strcmp(argv[1], "--run") == 0)
        only = argv[2];
    else if (argc == 3 && strcmp(argv[1], "--child") == 0) /* under valgrind: isolated already */
        only = argv[2], child = true;
    else if (argc != 1) {
        status = usage(argv[0]);
        goto out;
    }

    size_t pick = n;
    for (size_t i = 0; only && i < n; i++)
        if (strcmp(ids[i].id, only) == 0)
            pick = i;
    if (only && pick == n) {
        fprintf(stderr, "%s: no test %s (see --list)\n", argv[0], only);
        status = 2;
        goto out;
    }
    if (child)
        child_run(ids[pick].t, ids[pick].method);

    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        perror("PR_SET_CHILD_SUBREAPER");
    int counts[3] = {0, 0, 0};
    printf("TAP version 13\n1..%zu\n", only ? (size_t)1 : n);
    for (size_t i = 0; i < n; i++) {
        if (only && i != pick)
            continue;
        counts[run_test(&ids[i], counts[PASSED] + counts[FAILED] + counts[SKIPPED] + 1)]++;
    }
    printf("%d passed, %d failed, %d skipped\n", counts[PASSED], counts[FAILED], counts[SKIPPED]);
    if (n == 0)
        printf("# no tests: a test executable must have some\n");
    /* one skipped test run alone says so to CTest; in a full run skips
     * are no failure */
    status = counts[FAILED] || n == 0 ? 1 : only && counts[SKIPPED] ? MP_TEST_SKIP_STATUS : 0;
out:
    free(ids);
    return status;
}
