/*
 * os_fork.c: the raw fork() of the seed, next to the same thing done with
 * mp_process.
 *
 *     w = 100
 *     print(f'1. current pid: {os.getpid()}')
 *     pid = os.fork()
 *     if pid == 0:
 *         print(f"2. w={w}, child pid={os.getpid()}, its parent pid={os.getppid()}")
 *     else:
 *         print(f"3. current pid: {os.getpid()}, created a child, pid={pid}")
 *
 * The seed's remarks, in C terms:
 *   - fork() returns twice: 0 in the child, the child's pid in the parent;
 *     the child is a copy of the parent's memory, so it sees w == 100;
 *   - a parent that never waits for its child leaves a zombie until it
 *     exits, so here the parent waitpid()s it;
 *   - stdio buffers are copied too: flush before fork() or buffered output
 *     is printed twice.
 * mp_process does all of this for you (flush, fork, run the target, _exit,
 * reap on join), and the target is a function rather than "the rest of the
 * program after fork()".  Under fork the child still sees the parent's
 * memory (a copy: the same addresses, its own pages); under spawn it is a
 * fresh run of the program that sees only its arguments, with its variables
 * at their initial values and, with address randomisation, at other
 * addresses: the difference the seed's `id(watch)` remark is about.
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
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

/* Part 1: raw fork(), as the seed does it.  0 when all went well. */
static int raw_fork(void)
{
    int w = 100;
    pid_t me = getpid();

    printf("1. current pid: %d\n", (int)me);
    fflush(stdout); /* or the child prints "1." a second time from its copy */
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        /* The child: a copy of the parent from the fork() on. */
        printf("2. w=%d, child pid=%d, its parent pid=%d\n", w, (int)getpid(), (int)getppid());
        fflush(stdout);
        _exit(getppid() == me && w == 100 ? 0 : 1); /* _exit: no atexit handlers */
    }
    printf("3. current pid: %d, created a child, pid=%d\n", (int)me, (int)pid);

    /* Reap the child so it does not stay a zombie. */
    int status;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        perror("waitpid");
        return 1;
    }
    printf("   raw fork: child %d reaped, %s %d\n", (int)pid,
           WIFEXITED(status) ? "exit status" : "killed by signal",
           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* Part 2: the same with mp_process.  The parent's memory is copied under
 * fork, so a global the parent changed at run time is seen changed; a
 * spawned child starts from the program's initial values instead. */
static int w = 0; /* main() sets it to 100 before starting any child */

/* args: (int expected w, int parent pid) */
static int child(const mp_args *args)
{
    int expected_w = (int)mp_args_int(args, 0);
    pid_t parent = (pid_t)mp_args_int(args, 1);
    printf("2. w=%d at %p, child pid=%d, its parent pid=%d\n", w, (void *)&w, (int)getpid(),
           (int)mp_process_pid(mp_parent_process()));
    return w == expected_w && mp_process_pid(mp_parent_process()) == parent ? 0 : 1;
}

static int with_mp_process(const char *method, int expected_w)
{
    mp_args *args;
    mp_process *p;
    int code;
    pid_t me = getpid();

    printf("1. current pid: %d, w=%d at %p, starting a child with %s\n", (int)me, w, (void *)&w,
           method);
    CHECK(mp_args_of(&args, "ii", expected_w, (int)me));
    CHECK(mp_process_new(&p, mp_get_context(method), child, args));
    mp_args_free(args);
    CHECK(mp_process_start(p));
    printf("3. current pid: %d, created a child, pid=%d\n", (int)me, (int)mp_process_pid(p));
    CHECK(mp_process_join(p, MP_FOREVER)); /* join reaps: no zombie */
    CHECK(mp_process_exitcode(p, &code));
    CHECK(mp_process_close(p));
    printf("   %s: child exit code %d\n", method, code);
    return code != 0;
}

int main(void)
{
    int failures = 0;

    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("--- raw fork() ---\n");
    failures += raw_fork();

    w = 100;
    printf("--- mp_process, fork: the child sees the parent's memory ---\n");
    failures += with_mp_process("fork", 100);
    printf("--- mp_process, spawn: a fresh program, w has its initial value ---\n");
    failures += with_mp_process("spawn", 0);

    if (failures) {
        fprintf(stderr, "os_fork: %d part(s) failed\n", failures);
        return 1;
    }
    printf("os_fork: OK\n");
    return 0;
}
