/*
 * sing_dance.c: two processes at once (the seed's "唱歌/跳舞" example).
 *
 *     def sing():
 *         print(os.getpid()); print(os.getppid())
 *         for i in range(3):
 *             time.sleep(1); print("singing...")
 *
 *     def dance(): ... the same with "dancing..."
 *
 *     if __name__ == '__main__':
 *         process1 = multiprocessing.Process(target=sing)
 *         process2 = multiprocessing.Process(target=dance)
 *         process1.start(); process2.start()
 *
 * Both children report the same parent pid: the main program's.  Here the
 * main program passes its pid along and each child checks it, returning a
 * non-zero exit code on a mismatch; the parent joins both and checks their
 * exit codes.  (Sleeps are 0.2 s instead of 1 s to keep the demo short.)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <stdio.h>
#include <stdlib.h>
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

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* What both children do: show who they are, then repeat @what 3 times.
 * args: (int parent_pid) */
static int perform(const mp_args *args, const char *what)
{
    pid_t expected_parent = (pid_t)mp_args_int(args, 0);
    pid_t pid = getpid(), ppid = getppid();

    printf("%s: pid %d, ppid %d\n", what, (int)pid, (int)ppid);
    fflush(stdout);
    for (int i = 0; i < 3; i++) {
        sleep_s(0.2);
        printf("%s...\n", what);
        fflush(stdout); /* one line at a time, as the two processes interleave */
    }
    if (ppid != expected_parent) {
        fprintf(stderr, "%s: my parent is %d, expected %d\n", what, (int)ppid,
                (int)expected_parent);
        return 2;
    }
    return 0;
}

static int sing(const mp_args *args)
{
    return perform(args, "singing");
}

static int dance(const mp_args *args)
{
    return perform(args, "dancing");
}

int main(void)
{
    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    pid_t me = getpid();
    mp_args *args;
    mp_process *p1, *p2;

    printf("main: pid %d\n", (int)me);
    CHECK(mp_args_of(&args, "i", (int)me));
    CHECK(mp_process_new(&p1, NULL, sing, args));  /* Process(target=sing) */
    CHECK(mp_process_new(&p2, NULL, dance, args)); /* Process(target=dance) */
    mp_args_free(args);

    double t0 = mp_monotonic();
    CHECK(mp_process_start(p1));
    CHECK(mp_process_start(p2));

    /* Both run at the same time; the parent waits for both. */
    int code1, code2;
    CHECK(mp_process_join(p1, MP_FOREVER));
    CHECK(mp_process_join(p2, MP_FOREVER));
    double elapsed = mp_monotonic() - t0;
    CHECK(mp_process_exitcode(p1, &code1));
    CHECK(mp_process_exitcode(p2, &code2));
    printf("main: %s exited with %d, %s exited with %d, after %.2f s\n",
           mp_process_name(p1), code1, mp_process_name(p2), code2, elapsed);
    CHECK(mp_process_close(p1));
    CHECK(mp_process_close(p2));

    if (code1 != 0 || code2 != 0) {
        fprintf(stderr, "sing_dance: a child failed\n");
        return 1;
    }
    printf("sing_dance: OK\n");
    return 0;
}
