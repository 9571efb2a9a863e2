/*
 * joinable_work_queue.c: a work queue on a JoinableQueue, as in Python's
 * documentation of task_done() and join():
 *
 *     def worker(tasks, results):
 *         while True:
 *             item = tasks.get()
 *             if item is None:
 *                 break
 *             results.put((item, item * item, os.getpid()))
 *             tasks.task_done()
 *
 *     if __name__ == '__main__':
 *         tasks, results = JoinableQueue(), Queue()
 *         for i in range(20):
 *             tasks.put(i)
 *         workers = [Process(target=worker, args=(tasks, results))
 *                    for _ in range(4)]
 *         for w in workers: w.start()
 *         tasks.join()            # blocks until every task is task_done
 *         for w in workers: tasks.put(None)
 *         for w in workers: w.join()
 *
 * join() returns once task_done() has been called for every item put, so
 * the parent knows all the work is done while the workers are still
 * running; the None sentinels (here empty messages) then stop them.  The
 * parent checks the results: every task done exactly once, with the right
 * square.  It also shows task_done() called once too often failing with
 * MP_EINVAL (Python: ValueError), and join() with a timeout failing with
 * MP_ETIMEDOUT while tasks are pending.
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

#define NTASKS 20
#define NWORKERS 4

/* What a worker sends back for one task. */
typedef struct result {
    int32_t item;
    int32_t square;
    int32_t pid;
} result;

static int failures;

static void expect(bool ok, const char *what)
{
    printf("  %-60s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        failures++;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* def worker(tasks, results), args: (tasks, results) */
static int worker(const mp_args *args)
{
    mp_queue *tasks = mp_args_queue(args, 0), *results = mp_args_queue(args, 1);
    for (;;) {
        int32_t item;
        size_t len;
        CHECK(mp_queue_get_into(tasks, &item, sizeof item, &len, MP_FOREVER));
        if (len == 0)
            break; /* None: no more work */
        if (len != sizeof item)
            return 1;
        sleep_s(0.01); /* the work */
        result r = {item, item * item, (int32_t)getpid()};
        CHECK(mp_queue_put(results, &r, sizeof r, MP_FOREVER));
        CHECK(mp_queue_task_done(tasks));
    }
    return 0;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    mp_queue *tasks, *results;
    CHECK(mp_joinable_queue_new(&tasks, 0));
    CHECK(mp_queue_new(&results, 0));

    for (int32_t i = 0; i < NTASKS; i++)
        CHECK(mp_queue_put(tasks, &i, sizeof i, MP_FOREVER));
    printf("put %d tasks\n", NTASKS);
    /* Nobody has called task_done yet: join() with a timeout gives up. */
    int r = mp_queue_join(tasks, 0.05);
    printf("join(timeout=0.05) before any worker runs: %s\n", mp_errname(r));
    expect(r == MP_ETIMEDOUT, "join times out while tasks are pending");

    mp_process *w[NWORKERS];
    for (int i = 0; i < NWORKERS; i++) {
        mp_args *args;
        CHECK(mp_args_new(&args));
        CHECK(mp_args_add_queue(args, tasks));
        CHECK(mp_args_add_queue(args, results));
        CHECK(mp_process_new(&w[i], NULL, worker, args));
        mp_args_free(args);
        CHECK(mp_process_start(w[i]));
    }
    printf("started %d workers\n", NWORKERS);

    double t0 = mp_monotonic();
    CHECK(mp_queue_join(tasks, MP_FOREVER)); /* tasks.join() */
    printf("tasks.join() returned after %.2f s: all %d tasks done\n", mp_monotonic() - t0,
           NTASKS);
    size_t pending;
    CHECK(mp_queue_qsize(tasks, &pending));
    expect(pending == 0, "the task queue is empty once join returns");
    int alive = 0;
    for (int i = 0; i < NWORKERS; i++)
        alive += mp_process_is_alive(w[i]);
    printf("workers still running, waiting for more work: %d\n", alive);

    /* Every task's result is already in the results queue. */
    int seen[NTASKS] = {0}, by_worker[NWORKERS] = {0}, bad = 0, n = 0;
    long sum = 0;
    result res;
    size_t len;
    while ((r = mp_queue_get_into(results, &res, sizeof res, &len, 0)) == 0) {
        n++;
        if (len != sizeof res || res.item < 0 || res.item >= NTASKS ||
            res.square != res.item * res.item) {
            bad++;
            continue;
        }
        seen[res.item]++;
        sum += res.square;
        for (int i = 0; i < NWORKERS; i++)
            if (mp_process_pid(w[i]) == (pid_t)res.pid)
                by_worker[i]++;
    }
    int once = 0;
    for (int i = 0; i < NTASKS; i++)
        once += seen[i] == 1;
    printf("results: %d, sum of squares %ld; tasks per worker:", n, sum);
    for (int i = 0; i < NWORKERS; i++)
        printf(" %d", by_worker[i]);
    printf("\n");
    expect(r == MP_EEMPTY && n == NTASKS && bad == 0 && once == NTASKS,
           "every task done exactly once, every square right");
    expect(sum == (long)(NTASKS - 1) * NTASKS * (2 * NTASKS - 1) / 6,
           "the sum of squares is 0 + 1 + 4 + ... + 361 = 2470");

    for (int i = 0; i < NWORKERS; i++)
        CHECK(mp_queue_put(tasks, "", 0, MP_FOREVER)); /* tasks.put(None) */
    int codes = 0;
    for (int i = 0; i < NWORKERS; i++) {
        int code;
        CHECK(mp_process_join(w[i], MP_FOREVER));
        CHECK(mp_process_exitcode(w[i], &code));
        CHECK(mp_process_close(w[i]));
        codes += code != 0;
    }
    expect(codes == 0, "the sentinels stopped every worker, all exited with 0");

    /* The workers took the sentinels without calling task_done for them:
     * join() would wait for them.  Mark them done; then one task_done more
     * than messages were put is refused. */
    CHECK(mp_queue_qsize(tasks, &pending));
    r = mp_queue_join(tasks, 0);
    printf("%d sentinels taken, not task_done: join(timeout=0) = %s\n", NWORKERS,
           mp_errname(r));
    expect(pending == 0 && r == MP_ETIMEDOUT, "join waits for the sentinels too");
    for (int i = 0; i < NWORKERS; i++)
        CHECK(mp_queue_task_done(tasks));
    CHECK(mp_queue_join(tasks, 0));
    r = mp_queue_task_done(tasks);
    printf("task_done() once too often: %s (Python: ValueError)\n", mp_errname(r));
    expect(r == MP_EINVAL, "task_done called too often is refused");

    mp_queue_free(tasks);
    mp_queue_free(results);
    if (failures) {
        printf("joinable_work_queue: %d check(s) FAILED\n", failures);
        return 1;
    }
    printf("joinable_work_queue: OK\n");
    return 0;
}
