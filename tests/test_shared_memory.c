/*
 * Named shared memory and the resource tracker: PYTHON-SEMANTICS sections
 * 15 (SharedMemory: names, create/attach/close/unlink, errors, across
 * processes) and 18 (the tracker removes what a program leaves behind, even
 * when all of it is SIGKILLed), and interoperation with Python's
 * multiprocessing.shared_memory in both directions.
 */
#include "mp_test.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

/* A name no other test (or parallel run) uses. */
static const char *unique_name(const char *tag)
{
    static char names[8][64];
    static int next;
    char *n = names[next++ % 8];
    snprintf(n, sizeof names[0], "mp_test_%d_%s", (int)getpid(), tag);
    return n;
}

static bool shm_exists(const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "/dev/shm/%.4000s", name);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Wait up to @timeout seconds until none of @names is in /dev/shm. */
static bool wait_all_gone(char names[][64], int n, double timeout)
{
    double until = mp_monotonic() + timeout;
    for (;;) {
        bool any = false;
        for (int i = 0; i < n; i++)
            any = any || shm_exists(names[i]);
        if (!any)
            return true;
        if (mp_monotonic() > until)
            return false;
        usleep(20000);
    }
}

/* The pid of a process whose parent is @ppid and whose name is @comm; 0. */
struct named_child {
    pid_t ppid;
    const char *comm;
    pid_t found;
};

static bool is_named_child(pid_t pid, pid_t ppid, char state, const char *comm, void *arg)
{
    struct named_child *c = arg;
    if (ppid != c->ppid || strcmp(comm, c->comm) != 0 || state == 'Z')
        return false;
    c->found = pid;
    return true;
}

static pid_t find_child_named(pid_t ppid, const char *comm)
{
    struct named_child c = {ppid, comm, 0};
    mp_test_each_process(is_named_child, &c);
    return c.found;
}

/* The resource tracker started by @ppid, once it has set itself up. */
static pid_t find_tracker(pid_t ppid)
{
    double until = mp_monotonic() + 20;
    pid_t t;
    while ((t = find_child_named(ppid, "mp-tracker")) == 0 && mp_monotonic() < until)
        usleep(10000);
    return t;
}

/* ---- the segment itself ------------------------------------------------- */

/* test_shared_memory_basics */
MP_TEST(create_attach_close_unlink)
{
    const char *name = unique_name("basics");
    mp_shm *s, *t;
    ASSERT_OK(mp_shm_new(&s, name, 512, MP_SHM_CREATE));
    ASSERT_STREQ(name, mp_shm_name(s));
    ASSERT_EQ(512, mp_shm_size(s));
    ASSERT_TRUE(shm_exists(name));
    unsigned char *b = mp_shm_buf(s);
    for (int i = 0; i < 512; i++)
        ASSERT_EQ(0, b[i]); /* a new segment is zeroed */
    b[0] = 42;
    b[511] = 7;

    /* Attaching discovers the size; a smaller size is fine, a larger one not
     * (Python ignores it; the header makes it an error). */
    ASSERT_OK(mp_shm_new(&t, name, 0, 0));
    ASSERT_EQ(512, mp_shm_size(t));
    ASSERT_NE(mp_shm_buf(s), mp_shm_buf(t));
    ASSERT_EQ(42, ((unsigned char *)mp_shm_buf(t))[0]);
    ASSERT_EQ(7, ((unsigned char *)mp_shm_buf(t))[511]);
    ((unsigned char *)mp_shm_buf(t))[1] = 43;
    ASSERT_EQ(43, b[1]);
    ASSERT_OK(mp_shm_close(t));
    ASSERT_OK(mp_shm_new(&t, name, 20, 0));
    ASSERT_EQ(512, mp_shm_size(t));
    ASSERT_OK(mp_shm_close(t));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&t, name, 513, 0));
    ASSERT_TRUE(t == NULL);

    /* The name is taken. */
    ASSERT_ERR(MP_EEXIST, mp_shm_new(&t, name, 512, MP_SHM_CREATE));
    ASSERT_ERR(MP_EEXIST, mp_shm_new(&t, name, 512, MP_SHM_CREATE | MP_SHM_NOTRACK));

    /* Closing the creator's handle leaves the segment; unlink removes the
     * name while the memory stays mapped; a second unlink finds nothing. */
    ASSERT_OK(mp_shm_new(&t, name, 0, 0));
    ASSERT_OK(mp_shm_close(s));
    ASSERT_TRUE(shm_exists(name));
    ASSERT_EQ(42, ((unsigned char *)mp_shm_buf(t))[0]);
    ASSERT_OK(mp_shm_unlink(t));
    ASSERT_FALSE(shm_exists(name));
    ASSERT_EQ(43, ((unsigned char *)mp_shm_buf(t))[1]);
    ASSERT_ERR(MP_ENOENT, mp_shm_unlink(t));
    ASSERT_ERR(MP_ENOENT, mp_shm_new(&s, name, 0, 0));
    ASSERT_TRUE(s == NULL);
    ASSERT_OK(mp_shm_close(t));
    ASSERT_OK(mp_shm_close(NULL));
}

static bool is_random_name(const char *n)
{
    if (strlen(n) != 12 || strncmp(n, "psm_", 4) != 0)
        return false;
    for (int i = 4; i < 12; i++)
        if (!isxdigit((unsigned char)n[i]))
            return false;
    return true;
}

MP_TEST(random_names)
{
    mp_shm *s[8];
    for (int i = 0; i < 8; i++) {
        ASSERT_OK(mp_shm_new(&s[i], NULL, 100, MP_SHM_CREATE));
        ASSERT_TRUE(is_random_name(mp_shm_name(s[i])));
        ASSERT_EQ(100, mp_shm_size(s[i]));
        for (int j = 0; j < i; j++)
            ASSERT_TRUE(strcmp(mp_shm_name(s[i]), mp_shm_name(s[j])) != 0);
    }
    /* Python's mode: 0600, and the file is /dev/shm/<name>. */
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", mp_shm_name(s[0]));
    struct stat st;
    ASSERT_EQ(0, stat(path, &st));
    ASSERT_EQ(0600, st.st_mode & 0777);
    ASSERT_EQ(100, st.st_size);
    for (int i = 0; i < 8; i++) {
        ASSERT_OK(mp_shm_unlink(s[i]));
        ASSERT_OK(mp_shm_close(s[i]));
    }
}

/* test_invalid_shared_memory_cration and the name rules */
MP_TEST(bad_arguments)
{
    mp_shm *s = (mp_shm *)1;
    const char *name = unique_name("bad");
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, name, 0, MP_SHM_CREATE)); /* size 0 */
    ASSERT_TRUE(s == NULL);
    ASSERT_FALSE(shm_exists(name));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, NULL, 0, MP_SHM_CREATE));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, NULL, 10, 0)); /* attach needs a name */
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, name, 10, MP_SHM_CREATE | 4));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(NULL, name, 10, MP_SHM_CREATE));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, "", 10, MP_SHM_CREATE));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, "a/b", 10, MP_SHM_CREATE));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, "/leading", 10, MP_SHM_CREATE));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, "..", 0, 0));
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, ".", 10, MP_SHM_CREATE));
    ASSERT_ERR(MP_ENOENT, mp_shm_new(&s, name, 0, 0));
    ASSERT_ERR(MP_ENOENT, mp_shm_new(&s, name, 10, MP_SHM_NOTRACK));
    ASSERT_FALSE(shm_exists(name));

    /* 250 characters is the limit. */
    char longest[252];
    int k = snprintf(longest, sizeof longest, "mp_test_%d_", (int)getpid());
    memset(longest + k, 'x', 250 - (size_t)k);
    longest[250] = '\0';
    ASSERT_OK(mp_shm_new(&s, longest, 10, MP_SHM_CREATE));
    ASSERT_STREQ(longest, mp_shm_name(s));
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
    longest[250] = 'x';
    longest[251] = '\0';
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, longest, 10, MP_SHM_CREATE));

    /* A segment whose creator has not sized it yet has nothing to map. */
    char path[80];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_ERR(MP_EINVAL, mp_shm_new(&s, name, 0, 0));
    close(fd);
    ASSERT_EQ(0, shm_unlink(path));

    ASSERT_TRUE(mp_shm_buf(NULL) == NULL);
    ASSERT_EQ(0, mp_shm_size(NULL));
    ASSERT_TRUE(mp_shm_name(NULL) == NULL);
    ASSERT_ERR(MP_EINVAL, mp_shm_unlink(NULL));
}

/* ---- across processes --------------------------------------------------- */

/* test_shared_memory_across_processes: args (name). */
static int t_attach_and_write(const mp_args *a)
{
    mp_shm *s;
    if (mp_shm_new(&s, mp_args_str(a, 0), 0, 0) != 0)
        return 10;
    char *b = mp_shm_buf(s);
    if (mp_shm_size(s) != 4096 || memcmp(b, "from the parent", 15) != 0)
        return 11;
    memcpy(b + 100, "howdy", 5);
    b[4095] = 'z';
    return mp_shm_close(s) == 0 ? 0 : 12;
}

MP_TEST(child_writes_parent_reads, .variants = MP_START_METHODS)
{
    mp_shm *s;
    ASSERT_OK(mp_shm_new(&s, NULL, 4096, MP_SHM_CREATE));
    char *b = mp_shm_buf(s);
    memcpy(b, "from the parent", 15);
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "s", mp_shm_name(s)));
    ASSERT_EQ(0, mp_test_run(ctx, t_attach_and_write, a));
    ASSERT_MEMEQ("howdy", b + 100, 5);
    ASSERT_EQ('z', b[4095]);
    mp_args_free(a);
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
}

/* A child creates a tracked segment and ends without unlinking it; args
 * (report fd, go fd).  It reports the name and keeps the segment mapped
 * until the parent has attached (a segment nobody maps looks leaked to the
 * harness, when tests run in parallel), then ends. */
static int t_create_and_leave(const mp_args *a)
{
    mp_shm *s;
    if (mp_shm_new(&s, NULL, 64, MP_SHM_CREATE) != 0)
        return 20;
    memcpy(mp_shm_buf(s), "left by the child", 17);
    mp_test_say(mp_args_fd(a, 0), "%s", mp_shm_name(s));
    char go;
    if (read(mp_args_fd(a, 1), &go, 1) != 1)
        return 21;
    return mp_shm_close(s) == 0 ? 0 : 22;
}

/* The child uses its parent's tracker (inherited or passed under every
 * method): its segment outlives it and goes when the program ends. */
MP_TEST(tracker_shared_with_children, .variants = MP_START_METHODS)
{
    mp_shm *s, *t;
    ASSERT_OK(mp_shm_new(&s, NULL, 64, MP_SHM_CREATE)); /* starts the tracker */
    int rep[2], go[2];
    ASSERT_EQ(0, pipe2(rep, O_CLOEXEC));
    ASSERT_EQ(0, pipe2(go, O_CLOEXEC));
    mp_args *a;
    ASSERT_OK(mp_args_of(&a, "ff", rep[1], go[0]));
    mp_process *p = mp_test_start(ctx, t_create_and_leave, a);
    mp_args_free(a);
    char names[2][64];
    snprintf(names[0], sizeof names[0], "%s", mp_test_read_line(rep[0]));
    snprintf(names[1], sizeof names[1], "%s", mp_shm_name(s));
    ASSERT_TRUE(is_random_name(names[0]));
    ASSERT_OK(mp_shm_new(&t, names[0], 0, 0));
    ASSERT_EQ(1, write(go[1], "g", 1));
    ASSERT_EQ(0, mp_test_join(p, 60));
    for (int i = 0; i < 2; i++) {
        close(rep[i]);
        close(go[i]);
    }
    ASSERT_TRUE(shm_exists(names[0])); /* the child is gone, the program runs: kept */
    ASSERT_MEMEQ("left by the child", mp_shm_buf(t), 17);
    /* The program ends: exit handling waits for the tracker's clean-up.
     * (Still mapped here: see tracker_cleans_up_after_group_sigkill.) */
    mp__exit_cleanup();
    ASSERT_FALSE(shm_exists(names[0]));
    ASSERT_FALSE(shm_exists(names[1]));
    ASSERT_OK(mp_shm_close(t));
    ASSERT_OK(mp_shm_close(s));
    ASSERT_EQ(-1, waitpid(-1, NULL, WNOHANG)); /* the tracker is gone too */
    ASSERT_EQ(ECHILD, errno);
}

/* A program (a forked helper) that ends normally without unlinking: its
 * tracked segment is gone when it has exited, the MP_SHM_NOTRACK one stays. */
MP_TEST(notrack_survives_the_program)
{
    char names[2][64];
    snprintf(names[0], sizeof names[0], "%s", unique_name("tracked"));
    snprintf(names[1], sizeof names[1], "%s", unique_name("untracked"));
    int ready[2], go[2];
    ASSERT_EQ(0, pipe2(ready, O_CLOEXEC));
    ASSERT_EQ(0, pipe2(go, O_CLOEXEC));
    fflush(stdout);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        mp_shm *s, *t;
        if (mp_shm_new(&s, names[0], 10, MP_SHM_CREATE) != 0 ||
            mp_shm_new(&t, names[1], 10, MP_SHM_CREATE | MP_SHM_NOTRACK) != 0)
            _exit(1);
        memcpy(mp_shm_buf(t), "kept", 4);
        mp_test_say(ready[1], "ready");
        char c;
        if (read(go[0], &c, 1) != 1) /* until the test has attached */
            _exit(2);
        mp_shm_close(s);
        mp_shm_close(t);
        exit(0); /* exit handling: the tracker cleans up, and is waited for */
    }
    close(ready[1]);
    ASSERT_STREQ("ready", mp_test_read_line(ready[0]));
    close(ready[0]);
    mp_shm *x, *t; /* mapped here, so the harness never sees them unused */
    ASSERT_OK(mp_shm_new(&x, names[0], 0, 0));
    ASSERT_OK(mp_shm_new(&t, names[1], 0, 0));
    ASSERT_EQ(1, write(go[1], "g", 1));
    close(go[0]);
    close(go[1]);
    int st;
    ASSERT_EQ(pid, waitpid(pid, &st, 0));
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_FALSE(shm_exists(names[0]));
    ASSERT_TRUE(shm_exists(names[1]));
    ASSERT_OK(mp_shm_close(x));
    ASSERT_OK(mp_shm_unlink(t));
    ASSERT_OK(mp_shm_close(t));
}

/* ---- the tracker and SIGKILL -------------------------------------------- */

/* Grandchild: args (report fd).  Creates a segment, reports, waits. */
static int t_grandchild(const mp_args *a)
{
    mp_shm *s;
    if (mp_shm_new(&s, NULL, 4096, MP_SHM_CREATE) != 0)
        return 30;
    mp_test_say(mp_args_fd(a, 0), "G %s", mp_shm_name(s));
    for (;;)
        pause();
}

/* Child: args (report fd, method).  Creates a segment, starts the
 * grandchild, reports, waits. */
static int t_child(const mp_args *a)
{
    mp_shm *s;
    if (mp_shm_new(&s, NULL, 4096, MP_SHM_CREATE) != 0)
        return 31;
    mp_args *b;
    mp_process *g;
    if (mp_args_of(&b, "f", mp_args_fd(a, 0)) != 0 ||
        mp_process_new(&g, mp_get_context(mp_args_str(a, 1)), t_grandchild, b) != 0 ||
        mp_process_start(g) != 0)
        return 32;
    mp_args_free(b);
    mp_test_say(mp_args_fd(a, 0), "C %s", mp_shm_name(s));
    for (;;)
        pause();
}

/* In a helper program: start t_child under @method, report @s's name, and
 * wait to be killed. */
static _Noreturn void start_child_and_wait(int report, const char *method, mp_shm *s)
{
    mp_args *a;
    mp_process *c;
    if (mp_args_of(&a, "fs", report, method) != 0 ||
        mp_process_new(&c, mp_get_context(method), t_child, a) != 0 || mp_process_start(c) != 0)
        _exit(41);
    mp_args_free(a);
    mp_test_say(report, "H %s", mp_shm_name(s));
    for (;;)
        pause();
}

/* The helper program's main process, in a process group of its own.  Also
 * unlinks one tracked segment and makes a new one of the same name with
 * MP_SHM_NOTRACK: the tracker must leave that one alone. */
static _Noreturn void helper_program(int report, const char *method, const char *reused)
{
    setpgid(0, 0);
    mp_shm *s, *u;
    if (mp_shm_new(&s, NULL, 4096, MP_SHM_CREATE) != 0 ||
        mp_shm_new(&u, reused, 10, MP_SHM_CREATE) != 0 || mp_shm_unlink(u) != 0 ||
        mp_shm_close(u) != 0 || mp_shm_new(&u, reused, 10, MP_SHM_CREATE | MP_SHM_NOTRACK) != 0)
        _exit(40);
    start_child_and_wait(report, method, s);
}

/* Run @program(report, @method, @arg) in a forked child, a program of its
 * own: this test process has no tracker, so the program starts its own.
 * Returns the child's pid; *@report is the read end of the pipe the
 * program's processes report on. */
static pid_t fork_program(void (*program)(int report, const char *method, const char *arg),
                          const char *method, const char *arg, int *report)
{
    int fds[2];
    pid_t h = mp_test_fork_pipe(fds);
    if (h == 0) {
        close(fds[0]);
        program(fds[1], method, arg);
        _exit(98); /* the programs never return */
    }
    close(fds[1]);
    *report = fds[0];
    return h;
}

/* Read the "X name" lines of a program's three processes from @report
 * (then close it) and map each segment named.  Segments wait for the
 * tracker unused: when tests run in parallel, another runner's leak check
 * would take them.  Mapped here, they are in use until removed (unlink
 * works on a mapped segment). */
static void map_reported(int report, char names[3][64], mp_shm *m[3])
{
    for (int i = 0; i < 3; i++) {
        const char *l = mp_test_read_line(report);
        ASSERT_TRUE(strlen(l) > 2 && l[1] == ' ');
        snprintf(names[i], sizeof names[i], "%s", l + 2);
        ASSERT_TRUE(is_random_name(names[i]));
        ASSERT_OK(mp_shm_new(&m[i], names[i], 0, 0));
    }
    close(report);
}

MP_TEST(tracker_cleans_up_after_group_sigkill, .variants = MP_START_METHODS, .timeout_s = 90)
{
    /* Everything of the helper's tree is reparented here when it dies. */
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
    char reused[64];
    snprintf(reused, sizeof reused, "%s", unique_name("reused"));
    int report;
    pid_t h = fork_program(helper_program, method, reused, &report);
    setpgid(h, h);
    char names[3][64];
    mp_shm *m[3];
    map_reported(report, names, m);
    mp_shm *r; /* mapped here, so the harness never sees it unused */
    ASSERT_OK(mp_shm_new(&r, reused, 0, 0));

    /* The tracker is detached from the helper (this subreaper adopted it),
     * outside its process group. */
    pid_t t = find_tracker(getpid());
    ASSERT_GT(t, 0);
    ASSERT_EQ(t, getsid(t));
    ASSERT_EQ(t, getpgid(t));
    int tfd = (int)syscall(SYS_pidfd_open, t, 0);
    ASSERT_GE(tfd, 0);

    /* kill -9 the whole program: main process, child, grandchild (and a
     * fork server).  No exit handler runs anywhere. */
    ASSERT_EQ(0, kill(-h, SIGKILL));
    ASSERT_TRUE(wait_all_gone(names, 3, 20));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(mp_shm_close(m[i]));
    struct pollfd p = {.fd = tfd, .events = POLLIN};
    ASSERT_EQ(1, poll(&p, 1, 20000)); /* and then it ends */
    close(tfd);
    /* What was unlinked is never touched again, even under the same name. */
    ASSERT_TRUE(shm_exists(reused));
    ASSERT_OK(mp_shm_unlink(r));
    ASSERT_OK(mp_shm_close(r));
    mp_test_reap_orphans(20);
}

/* The pids of @root and of every process descending from it, found as a
 * supervisor or test runner finds a program's processes: by walking the
 * parent pids in /proc/<pid>/stat until nothing new turns up. */
struct tree {
    pid_t *pids;
    int n, cap;
};

/* Add @pid when its parent is in the tree and it is not yet. */
static bool tree_grow(pid_t pid, pid_t ppid, char state, const char *comm, void *arg)
{
    struct tree *t = arg;
    bool parent_in = false;
    (void)state;
    (void)comm;
    for (int i = 0; i < t->n; i++) {
        if (t->pids[i] == pid)
            return false;
        parent_in = parent_in || t->pids[i] == ppid;
    }
    if (!parent_in)
        return false;
    ASSERT_LT(t->n, t->cap);
    t->pids[t->n++] = pid;
    return true;
}

static int process_tree(pid_t root, pid_t *out, int cap)
{
    struct tree t = {out, 1, cap};
    out[0] = root;
    while (mp_test_each_process(tree_grow, &t) > 0)
        ; /* until nothing new turns up */
    return t.n;
}

/* The helper program for tracker_outlives_tree_sigkill: main process
 * (same process group as the test), child, grandchild, each with a tracked
 * segment, and one MP_SHM_NOTRACK segment. */
static _Noreturn void tree_program(int report, const char *method, const char *untracked)
{
    mp_shm *s, *u;
    if (mp_shm_new(&s, NULL, 4096, MP_SHM_CREATE) != 0 ||
        mp_shm_new(&u, untracked, 10, MP_SHM_CREATE | MP_SHM_NOTRACK) != 0)
        _exit(40);
    start_child_and_wait(report, method, s);
}

/* Issue 13: SIGKILL every process of the program's tree, found by parent
 * pids.  The tracker is no descendant of it, so it survives and removes the
 * tracked segments; the MP_SHM_NOTRACK one stays. */
MP_TEST(tracker_outlives_tree_sigkill, .variants = MP_START_METHODS, .timeout_s = 90)
{
    /* Everything of the helper's tree is reparented here when it dies,
     * and so is its detached tracker. */
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
    char untracked[64];
    snprintf(untracked, sizeof untracked, "%s", unique_name("untracked"));
    int report;
    pid_t h = fork_program(tree_program, method, untracked, &report);
    char names[3][64];
    mp_shm *m[3];
    map_reported(report, names, m);
    mp_shm *u;
    ASSERT_OK(mp_shm_new(&u, untracked, 0, 0));

    pid_t tree[64];
    int n = process_tree(h, tree, 64);
    ASSERT_GE(n, 3); /* main, child, grandchild (and a fork server) */
    for (int i = 0; i < n; i++)
        ASSERT_EQ(0, kill(tree[i], SIGKILL));
    ASSERT_TRUE(wait_all_gone(names, 3, 10));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(mp_shm_close(m[i]));
    ASSERT_TRUE(shm_exists(untracked));
    ASSERT_OK(mp_shm_unlink(u));
    ASSERT_OK(mp_shm_close(u));
    mp_test_reap_orphans(20); /* the tree, and the tracker once it has cleaned up */
}

/* Create and unlink named segments "<prefix><0..3>" for ever; one in four
 * is left created and unlinked at the next round, so that a kill finds
 * segments registered as well as segments being made.  MP_ENOENT from an
 * unlink is no failure here: another test runner on the machine may take
 * a new segment it sees nobody use yet for a leak of its own test. */
static _Noreturn void churn(const char *prefix)
{
    mp_shm *held = NULL;
    for (unsigned i = 0;; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s%u", prefix, i % 4);
        mp_shm *s;
        int err = mp_shm_new(&s, name, 4096, MP_SHM_CREATE);
        if (err == MP_EEXIST)
            continue; /* the one held */
        if (err == 0 && held != NULL && ((err = mp_shm_unlink(held)) == 0 || err == MP_ENOENT))
            err = mp_shm_close(held);
        held = NULL;
        if (err == 0 && i % 4 == 3)
            held = s;
        else if (err == 0 && ((err = mp_shm_unlink(s)) == 0 || err == MP_ENOENT))
            err = mp_shm_close(s);
        if (err != 0) {
            printf("churn %s: %s\n", name, mp_errname(err));
            fflush(stdout);
            _exit(50);
        }
    }
}

/* Child of the churn program: args (report fd, prefix). */
static int t_churn(const mp_args *a)
{
    mp_test_say(mp_args_fd(a, 0), "C");
    churn(mp_args_str(a, 1));
}

/* The churn program: its tracker, a child of @method, and both churning
 * segments named @prefix "m<k>" and @prefix "c<k>". */
static _Noreturn void churn_program(int report, const char *method, const char *prefix)
{
    char mine[64], child[64];
    snprintf(mine, sizeof mine, "%.50sm", prefix);
    snprintf(child, sizeof child, "%.50sc", prefix);
    mp_shm *s;
    mp_args *a;
    mp_process *c;
    /* the tracker first: the child shares it */
    if (mp_shm_new(&s, mine, 10, MP_SHM_CREATE) != 0 || mp_shm_unlink(s) != 0 ||
        mp_shm_close(s) != 0)
        _exit(40);
    if (mp_args_of(&a, "fs", report, child) != 0 ||
        mp_process_new(&c, mp_get_context(method), t_churn, a) != 0 || mp_process_start(c) != 0)
        _exit(41);
    mp_test_say(report, "M");
    churn(mine);
}

/* The /dev/shm names starting with @prefix, up to @cap of them (64 chars). */
static int shm_names(const char *prefix, char (*out)[64], int cap)
{
    int n = 0;
    DIR *d = opendir("/dev/shm");
    ASSERT_TRUE(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && n < cap)
            snprintf(out[n++], sizeof out[0], "%.63s", e->d_name);
    closedir(d);
    return n;
}

/* Issue 14, item 2: a program SIGKILLed at a random instant of creating or
 * unlinking segments -- inside mp_shm_new between the segment's creation
 * and its registration included -- leaves none behind: its whole tree,
 * found by parent pids, is killed, and the tracker removes every segment of
 * the program, and every temporary name of a creation it cut short. */
MP_TEST(tracker_loses_no_segment_killed_anywhere, .variants = MP_START_METHODS, .timeout_s = 240)
{
    enum { ROUNDS = 60 };
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1)); /* the tree and its tracker */
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s", unique_name("churn_"));
    unsigned seed = (unsigned)getpid() ^ (unsigned)((uint64_t)(mp_monotonic() * 1e6) & 0xffffffffu);
    printf("seed %u\n", seed);
    int caught = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int report;
        pid_t h = fork_program(churn_program, method, prefix, &report);
        for (int i = 0; i < 2; i++) {
            const char *l = mp_test_read_line(report);
            ASSERT_TRUE(strcmp(l, "M") == 0 || strcmp(l, "C") == 0);
        }
        close(report);
        /* both churn now: kill the tree within the next 20 ms */
        struct timespec ts = {0, (long)(rand_r(&seed) % 20000) * 1000};
        nanosleep(&ts, NULL);
        pid_t tree[64];
        int n = process_tree(h, tree, 64);
        if (n < 2) {
            int st = 0;
            MP__FAIL("round %d: the program's tree is %d process(es); main: %d, status %#x", round,
                     n, (int)waitpid(h, &st, WNOHANG), st);
        }
        for (int i = 0; i < n; i++)
            ASSERT_EQ(0, kill(tree[i], SIGKILL));
        /* What is there now is the program's (its temporary names among
         * those of whatever else runs): all must go. */
        char left[32][64], tmps[64][64];
        int nl = shm_names(prefix, left, 32);
        int nt = shm_names("mp-new-", tmps, 64);
        caught += nl > 0 || nt > 0;
        double until = mp_monotonic() + 20;
        while ((nl = shm_names(prefix, left, 32)) > 0 || !wait_all_gone(tmps, nt, 0)) {
            if (mp_monotonic() > until) {
                for (int i = 0; i < nl; i++)
                    printf("round %d: %s left\n", round, left[i]);
                MP__FAIL("round %d: %d segments of the program left", round, nl + nt);
            }
            usleep(20000);
        }
        mp_test_reap_orphans(20); /* the tree, and the tracker once it has cleaned up */
    }
    printf("%d of %d kills left segments to the tracker\n", caught, ROUNDS);
}

/* ---- the tracker process ------------------------------------------------ */

/* It runs in a session of its own and holds its socket and /dev/null,
 * nothing else of the program (no pipe a child would wait to see closed). */
/* The descriptors in /proc/PID/fd @dir: sockets, and what is neither a
 * socket nor /dev/null (stderr aside when MULTIPROC_LOG keeps it). */
static void count_tracker_fds(const char *dir, int *sockets, int *others)
{
    *sockets = *others = 0;
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[400], target[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n < 0)
            continue; /* closed meanwhile */
        target[n] = '\0';
        if (strncmp(target, "socket:", 7) == 0)
            ++*sockets;
        else if (strcmp(e->d_name, "2") == 0 && mp__log_level >= MP_LOG_WARNING)
            continue; /* MULTIPROC_LOG asks for its warnings: it keeps stderr */
        else if (strcmp(target, "/dev/null") != 0) {
            printf("tracker fd %s -> %s\n", e->d_name, target);
            ++*others;
        }
    }
    closedir(d);
}

MP_TEST(tracker_holds_nothing_of_the_program)
{
    int inheritable[2];
    ASSERT_EQ(0, pipe(inheritable)); /* no CLOEXEC, deliberately */
    mp_shm *s;
    ASSERT_OK(mp_shm_new(&s, NULL, 10, MP_SHM_CREATE));
    pid_t t = mp__tracker_pid();
    ASSERT_GT(t, 0);
    ASSERT_EQ(t, getsid(t));
    ASSERT_EQ(0, find_child_named(getpid(), "mp-tracker")); /* detached */
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)t);
    /* Just after its hello the tracker may still hold the pidfd of itself it
     * sent (it closes it right after): look again for a little while. */
    int sockets = 0, others = 0;
    for (int tries = 0; tries < 100 && (tries == 0 || others > 0); tries++) {
        if (tries > 0)
            usleep(20 * 1000);
        count_tracker_fds(dir, &sockets, &others);
    }
    ASSERT_EQ(1, sockets);
    ASSERT_EQ(0, others);
    close(inheritable[0]);
    close(inheritable[1]);
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
}

/* Python's test_resource_tracker_sigkill: a killed tracker is replaced on
 * the next registration; the new one tracks from then on. */
MP_TEST(tracker_relaunched_after_kill)
{
    mp_shm *s1, *s2;
    ASSERT_OK(mp_shm_new(&s1, NULL, 10, MP_SHM_CREATE));
    pid_t t1 = mp__tracker_pid();
    ASSERT_GT(t1, 0);
    int tfd = (int)syscall(SYS_pidfd_open, t1, 0);
    ASSERT_GE(tfd, 0);
    ASSERT_EQ(0, kill(t1, SIGKILL));
    struct pollfd p = {.fd = tfd, .events = POLLIN};
    ASSERT_EQ(1, poll(&p, 1, 10000));
    close(tfd);
    ASSERT_OK(mp_shm_new(&s2, NULL, 10, MP_SHM_CREATE));
    pid_t t2 = mp__tracker_pid();
    ASSERT_GT(t2, 0);
    ASSERT_NE(t1, t2);
    char names[2][64];
    snprintf(names[0], sizeof names[0], "%s", mp_shm_name(s1));
    snprintf(names[1], sizeof names[1], "%s", mp_shm_name(s2));
    ASSERT_OK(mp_shm_unlink(s1)); /* the dead tracker's registration was lost */
    ASSERT_OK(mp_shm_close(s1));
    mp__exit_cleanup(); /* the new tracker removes s2 */
    ASSERT_FALSE(shm_exists(names[1]));
    ASSERT_OK(mp_shm_close(s2));
    ASSERT_EQ(-1, waitpid(-1, NULL, WNOHANG));
}

/* ---- Python ------------------------------------------------------------- */

static const char *find_python(void)
{
    static char found[4096];
    static const char *const fixed[] = {
        "/root/.pyenv/versions/3.11.7/bin/python3",
    };
    for (size_t i = 0; i < MP__ARRAY_LEN(fixed); i++)
        if (access(fixed[i], X_OK) == 0)
            return fixed[i];
    const char *path = getenv("PATH");
    while (path != NULL && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(found, sizeof found, "%.*s/python3", (int)len, path);
        if (len > 0 && access(found, X_OK) == 0)
            return found;
        path = end ? end + 1 : NULL;
    }
    return NULL;
}

/* A running python3 -c: its stdin, and its stdout and stderr together. */
typedef struct pyproc {
    pid_t pid;
    int in, out;
} pyproc;

static void py_start(pyproc *pp, const char *py, const char *script, const char *arg)
{
    int in[2], out[2];
    ASSERT_EQ(0, pipe2(in, O_CLOEXEC));
    ASSERT_EQ(0, pipe2(out, O_CLOEXEC));
    fflush(stdout);
    pp->pid = fork();
    ASSERT_GE(pp->pid, 0);
    if (pp->pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(out[1], STDERR_FILENO);
        execl(py, "python3", "-c", script, arg, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    pp->in = in[1];
    pp->out = out[0];
}

/* Close its stdin, collect the rest of its output into @rest; its status. */
static int py_finish(pyproc *pp, char *rest, size_t cap)
{
    close(pp->in);
    size_t n = 0;
    ssize_t r;
    while ((r = read(pp->out, rest + n, cap - 1 - n)) > 0 || (r < 0 && errno == EINTR))
        n += r > 0 ? (size_t)r : 0;
    rest[n] = '\0';
    close(pp->out);
    int st;
    ASSERT_EQ(pp->pid, waitpid(pp->pid, &st, 0));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Before 3.13 attaching registers the segment with Python's own tracker,
 * which would remove it when the script ends: unregister it there. */
#define PY_PRELUDE                                                                      \
    "import sys\n"                                                                      \
    "from multiprocessing import shared_memory, resource_tracker\n"                     \
    "def open_shm(**kw):\n"                                                             \
    "    try:\n"                                                                        \
    "        return shared_memory.SharedMemory(track=False, **kw)\n"                    \
    "    except TypeError:\n"                                                           \
    "        shm = shared_memory.SharedMemory(**kw)\n"                                  \
    "        resource_tracker.unregister(shm._name, 'shared_memory')\n"                 \
    "        return shm\n"

static const char py_attach[] = PY_PRELUDE
    "shm = open_shm(name=sys.argv[1])\n"
    "print(shm.name, shm.size, bytes(shm.buf[:12]).decode())\n"
    "shm.buf[:15] = b'Python was here'\n"
    "shm.close()\n";

/* It keeps the segment mapped until C has attached (closes its stdin). */
static const char py_create[] = PY_PRELUDE
    "shm = open_shm(create=True, size=100)\n"
    "shm.buf[:17] = b'written by Python'\n"
    "shm.buf[99] = 0x5a\n"
    "print(shm.name, flush=True)\n"
    "sys.stdin.read()\n"
    "shm.close()\n";

/* Python's own tracker outlives the script a moment: it comes back to this
 * subreaper, and is reaped here. */
static void python_done(void)
{
    mp__exit_cleanup();
    mp_test_reap_orphans(20);
}

MP_TEST(python_attaches_c_segment, .timeout_s = 60)
{
    const char *py = find_python();
    if (py == NULL)
        MP_TEST_SKIP("no python3 found: Python interop not tested");
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
    mp_shm *s;
    ASSERT_OK(mp_shm_new(&s, NULL, 64, MP_SHM_CREATE));
    char *b = mp_shm_buf(s);
    memcpy(b, "hello from C", 12);
    b[63] = 'e';
    char out[4096], want[512];
    pyproc pp;
    py_start(&pp, py, py_attach, mp_shm_name(s));
    ASSERT_EQ(0, py_finish(&pp, out, sizeof out));
    snprintf(want, sizeof want, "%s 64 hello from C\n", mp_shm_name(s));
    ASSERT_STREQ(want, out); /* and nothing on stderr: no warning */
    ASSERT_MEMEQ("Python was here", b, 15);
    ASSERT_EQ(0, b[15]);
    ASSERT_EQ('e', b[63]);
    ASSERT_TRUE(shm_exists(mp_shm_name(s))); /* Python did not remove it */
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
    python_done();
}

MP_TEST(c_attaches_python_segment, .timeout_s = 60)
{
    const char *py = find_python();
    if (py == NULL)
        MP_TEST_SKIP("no python3 found: Python interop not tested");
    ASSERT_EQ(0, prctl(PR_SET_CHILD_SUBREAPER, 1));
    pyproc pp;
    py_start(&pp, py, py_create, "");
    char name[64], rest[4096];
    snprintf(name, sizeof name, "%s", mp_test_read_line(pp.out));
    ASSERT_TRUE(is_random_name(name)); /* Python's names are ours */
    mp_shm *s;
    ASSERT_OK(mp_shm_new(&s, name, 0, 0));
    ASSERT_EQ(0, py_finish(&pp, rest, sizeof rest));
    ASSERT_STREQ("", rest); /* no warning from Python's tracker */
    ASSERT_EQ(100, mp_shm_size(s));
    ASSERT_MEMEQ("written by Python", mp_shm_buf(s), 17);
    ASSERT_EQ(0x5a, ((unsigned char *)mp_shm_buf(s))[99]);
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
    ASSERT_FALSE(shm_exists(name));
    python_done();
}

/* Issue 16: a program's own fork() after this process started the tracker
 * runs the tracker's fork hooks (registered when it started): the child
 * keeps the tracker's socket, but the tracker is not one it waits for. */
MP_TEST(forked_child_does_not_own_the_tracker)
{
    mp_shm *s;
    ASSERT_OK(mp_shm_new(&s, NULL, 10, MP_SHM_CREATE));
    ASSERT_GT(mp__tracker_pid(), 0);
    fflush(stdout);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0)
        _exit(mp__tracker_pid() == 0 && mp__tracker_fd() >= 0 ? 0 : 1);
    int st;
    ASSERT_EQ(pid, waitpid(pid, &st, 0));
    ASSERT_TRUE(WIFEXITED(st));
    ASSERT_EQ(0, WEXITSTATUS(st));
    ASSERT_GT(mp__tracker_pid(), 0); /* still the parent's */
    ASSERT_OK(mp_shm_unlink(s));
    ASSERT_OK(mp_shm_close(s));
}
