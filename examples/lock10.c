/*
 * lock10.c: the seed notes' "synchronization between processes" example
 * (进程间同步): ten processes share one Lock, and each prints its line while
 * holding it.
 *
 *     import os, time
 *     import multiprocessing as mp
 *
 *     def f(l, i):
 *         l.acquire()     # 获得锁 (take the lock)
 *         time.sleep(1)
 *         print('pid: {}, num: {}'.format(os.getpid(), i))
 *         l.release()     # 释放锁 (release it)
 *
 *     if __name__ == '__main__':
 *         print('pid: {}'.format(os.getpid()))
 *         lock = mp.Lock()
 *         for num in range(10):
 *             mp.Process(target=f, args=(lock, num,)).start()
 *
 * The lock travels to each child in its argument list, under every start
 * method.  The critical sections run one at a time, so the ten sleeps add
 * up: the whole takes at least ten times one sleep (0.1 s here instead of
 * 1 s to keep the demo short).  The numbers come out in whatever order the
 * children happen to get the lock.
 *
 * To check itself, each child also records, under the lock, its number in a
 * shared Array and whether anyone else was inside the critical section (a
 * shared flag that only a broken lock would find set).  The main program
 * then checks that every number went through exactly once, that nobody ever
 * overlapped, and that it all took at least 10 x 0.1 s.  It runs the seed's
 * program under "fork" (the Linux default), then again, more briefly, under
 * "spawn" and "forkserver".
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include <stdint.h>
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

#define NPROC 10

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* def f(l, i): ...
 * args: (lock l, int i, double sleep, int verbose, value inside, array order)
 * where inside is a raw int32 flag and order an array of NPROC + 1 int32:
 * [0] how many have gone through, [1..] their numbers in order. */
static int f(const mp_args *args)
{
    mp_lock *l = mp_args_lock(args, 0);
    int i = (int)mp_args_int(args, 1);
    double sleep = mp_args_double(args, 2);
    bool verbose = mp_args_int(args, 3) != 0;
    volatile int32_t *inside = mp_value_ptr(mp_args_value(args, 4));
    int32_t *order = mp_array_data(mp_args_array(args, 5));
    int overlapped = 0;

    CHECK(mp_lock_acquire(l, MP_FOREVER));  /* l.acquire() */
    if (*inside != 0)
        overlapped = 1;                     /* someone else is in here too */
    *inside = 1;
    sleep_s(sleep);                         /* time.sleep(1) */
    if (verbose) {
        printf("pid: %d, num: %d\n", (int)getpid(), i);
        fflush(stdout);                     /* while still holding the lock */
    }
    order[1 + order[0]++] = i;
    *inside = 0;
    CHECK(mp_lock_release(l));              /* l.release() */
    return overlapped ? 3 : 0;
}

/* The seed's program under @method: 0 when everything checked out. */
static int run(const char *method, double sleep, bool verbose)
{
    mp_context *ctx = mp_get_context(method);
    mp_lock *lock;
    mp_value *inside;
    mp_array *order;
    mp_process *procs[NPROC];

    if (verbose)
        printf("pid: %d\n", (int)getpid()); /* print('pid: ...'.format(os.getpid())) */
    CHECK(mp_lock_new(&lock));              /* lock = mp.Lock() */
    CHECK(mp_value_new(&inside, MP_INT32, false));
    CHECK(mp_array_new(&order, MP_INT32, NPROC + 1, NULL, false));

    double t0 = mp_monotonic();
    for (int num = 0; num < NPROC; num++) { /* for num in range(10): */
        mp_args *args;
        CHECK(mp_args_new(&args));
        CHECK(mp_args_add_lock(args, lock)); /* args=(lock, num) */
        CHECK(mp_args_add_int(args, num));
        CHECK(mp_args_add_double(args, sleep));
        CHECK(mp_args_add_int(args, verbose));
        CHECK(mp_args_add_value(args, inside));
        CHECK(mp_args_add_array(args, order));
        CHECK(mp_process_new(&procs[num], ctx, f, args));
        mp_args_free(args);
        CHECK(mp_process_start(procs[num])); /* mp.Process(...).start() */
    }

    /* Python joins the children when the main program ends; here we join
     * them explicitly and look at how they did. */
    int bad_exits = 0;
    for (int num = 0; num < NPROC; num++) {
        int code;
        CHECK(mp_process_join(procs[num], MP_FOREVER));
        CHECK(mp_process_exitcode(procs[num], &code));
        if (code != 0) {
            fprintf(stderr, "lock10: child %d exited with %d%s\n", num, code,
                    code == 3 ? " (it found another process inside the lock)" : "");
            bad_exits++;
        }
        CHECK(mp_process_close(procs[num]));
    }
    double elapsed = mp_monotonic() - t0;

    const int32_t *seen = mp_array_data(order);
    int count[NPROC] = {0};
    bool numbers_ok = seen[0] == NPROC;
    for (int k = 0; numbers_ok && k < NPROC; k++) {
        if (seen[1 + k] < 0 || seen[1 + k] >= NPROC || count[seen[1 + k]]++ != 0)
            numbers_ok = false;
    }
    bool serial = elapsed >= NPROC * sleep;
    bool ok = bad_exits == 0 && numbers_ok && serial && !mp_lock_locked(lock);
    printf("%-10s %d processes went through the lock one at a time, each number once, "
           "in %.2f s (>= %.1f s)  %s\n",
           method, NPROC, elapsed, NPROC * sleep, ok ? "ok" : "FAILED");
    if (!numbers_ok)
        fprintf(stderr, "lock10: %d numbers recorded, some missing or repeated\n", seen[0]);
    mp_array_free(order);
    mp_value_free(inside);
    mp_lock_free(lock);
    return ok ? 0 : 1;
}

int main(void)
{
    /* Line-buffered even into a pipe (run_demo.sh), so that each line leaves
     * when printed and the parent's lines keep their place among the children's. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    int failed = run("fork", 0.1, true);
    failed += run("spawn", 0.02, false);
    failed += run("forkserver", 0.02, false);
    if (failed) {
        fprintf(stderr, "lock10: FAILED\n");
        return 1;
    }
    printf("lock10: OK\n");
    return 0;
}
