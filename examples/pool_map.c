/*
 * pool_map.c: the process pool (进程池部分), the third of the four parts of
 * multiprocessing in the seed notes (creating processes, synchronizing them,
 * pools, sharing data between them).  A Pool keeps a fixed number of worker
 * processes and hands them work; close() stops it from taking new work (the
 * notes: "使其不再接收新的任务"), join() waits for the workers to finish what
 * was given.  The notes name the pool without an example; these are the two
 * classic ones:
 *
 *     from multiprocessing import Pool
 *
 *     def f(x):
 *         return x*x
 *
 *     with Pool(4) as pool:
 *         print(pool.map(f, range(10)))   # [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
 *
 * and apply_async with a callback, then close() and join():
 *
 *     def long_time_task(name):
 *         print('Run task %s (%s)...' % (name, os.getpid()))
 *         start = time.time()
 *         time.sleep(random.random() * 3)
 *         end = time.time()
 *         print('Task %s runs %0.2f seconds.' % (name, (end - start)))
 *         return name * name
 *
 *     print('Parent process %s.' % os.getpid())
 *     p = Pool(4)
 *     for i in range(5):
 *         p.apply_async(long_time_task, args=(i,), callback=on_result)
 *     print('Waiting for all subprocesses done...')
 *     p.close()
 *     p.join()
 *     print('All subprocesses done.')
 *
 * In C, map takes an array of items of a fixed size and fills an array of
 * results; the function returns 0 (non-zero would fail that item).  An
 * apply task takes an argument list and appends its result bytes to an
 * mp_buf.  The callback runs in the parent, on a thread the pool owns.
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

static int failures;

static void expect(bool ok, const char *what)
{
    printf("  %-62s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        failures++;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- part 1: map ---------------------------------------------------------- */

/* def f(x): return x*x   (an item in, a result out) */
static int f(const void *item, void *result)
{
    int64_t x = *(const int64_t *)item;
    *(int64_t *)result = x * x;
    return 0;
}

static void print_list(const int64_t *v, size_t n)
{
    printf("[");
    for (size_t i = 0; i < n; i++)
        printf("%s%lld", i ? ", " : "", (long long)v[i]);
    printf("]\n");
}

static void map_under(const char *method)
{
    mp_pool *pool;
    mp_pool_opts opts = {.ctx = mp_get_context(method), .processes = 4};
    CHECK(mp_pool_new(&pool, &opts));                   /* Pool(4) */
    int64_t items[10], results[10];
    for (int i = 0; i < 10; i++)                        /* range(10) */
        items[i] = i;
    mp_task_error err;
    CHECK(mp_pool_map(pool, f, items, 10, sizeof items[0], results, sizeof results[0], 0,
                      &err));                           /* pool.map(f, range(10)) */
    printf("%-10s ", method);
    print_list(results, 10);
    bool ok = true;
    for (int i = 0; i < 10; i++)
        ok = ok && results[i] == (int64_t)i * i;
    expect(ok, "pool.map(f, range(10)): the squares, in order");
    CHECK(mp_pool_close(pool));                         /* leaving the with-block */
    CHECK(mp_pool_join(pool, MP_FOREVER));
    mp_pool_free(pool);
}

/* ---- part 2: apply_async with a callback, close, join ---------------------------- */

/* def long_time_task(name): ...  It sleeps a made-up "random" time of up
 * to 0.4 s (the seed's up to 3 s, shortened), and returns name * name. */
static int long_time_task(const mp_args *args, mp_buf *result)
{
    int64_t name = mp_args_int(args, 0);
    printf("Run task %lld (%d)...\n", (long long)name, (int)getpid());
    fflush(stdout); /* the worker's stdout may be a file or a pipe */
    double start = now();
    unsigned ms = (unsigned)((name * 7919 + 13) % 400) + 1;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000};
    nanosleep(&ts, NULL);
    printf("Task %lld runs %0.2f seconds.\n", (long long)name, now() - start);
    fflush(stdout);
    int64_t sq = name * name;
    return mp_buf_append(result, &sq, sizeof sq);
}

static double sleep_of(int64_t name)
{
    return (double)((name * 7919 + 13) % 400 + 1) / 1000;
}

/* callback=on_result: runs in the parent, once per task, as each ends. */
static int callbacks;
static int64_t callback_sum;

static void on_result(mp_async *r, void *udata)
{
    int64_t name = (int64_t)(intptr_t)udata, sq = -1;
    mp_buf b = MP_BUF_INIT;
    if (mp_async_get(r, 0, &b, NULL) == 0 && b.len == sizeof sq)
        memcpy(&sq, b.data, sizeof sq);
    mp_buf_free(&b);
    printf("callback: task %lld returned %lld (in the parent, pid %d)\n", (long long)name,
           (long long)sq, (int)getpid());
    __atomic_add_fetch(&callbacks, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&callback_sum, sq, __ATOMIC_SEQ_CST);
}

static void apply_with_callbacks(void)
{
    printf("Parent process %d.\n", (int)getpid());
    mp_pool *p;
    mp_pool_opts opts = {.processes = 4};
    CHECK(mp_pool_new(&p, &opts));                      /* p = Pool(4) */
    double t0 = now(), slept = 0;
    mp_async *handles[5];
    for (int64_t i = 0; i < 5; i++) {
        mp_args *args;                                  /* p.apply_async(long_time_task, */
        CHECK(mp_args_of(&args, "i", i));               /*               args=(i,))     */
        CHECK(mp_pool_apply_async(p, long_time_task, args, on_result, (void *)(intptr_t)i,
                                  &handles[i]));
        mp_args_free(args);
        slept += sleep_of(i);
    }
    printf("Waiting for all subprocesses done...\n");
    CHECK(mp_pool_close(p));                            /* p.close(): no new tasks */
    mp_args *late;
    mp_async *never;
    CHECK(mp_args_of(&late, "i", (int64_t)5));
    int rc = mp_pool_apply_async(p, long_time_task, late, NULL, NULL, &never);
    mp_args_free(late);
    CHECK(mp_pool_join(p, MP_FOREVER));                 /* p.join() */
    double took = now() - t0;
    printf("All subprocesses done.\n");
    expect(rc == MP_EINVAL, "apply_async after close(): MP_EINVAL (Python: ValueError)");
    int ok = 0;
    for (int i = 0; i < 5; i++) {
        mp_buf b = MP_BUF_INIT;
        int64_t sq = -1;
        if (mp_async_get(handles[i], 0, &b, NULL) == 0 && b.len == sizeof sq)
            memcpy(&sq, b.data, sizeof sq);
        ok += sq == (int64_t)i * i;
        mp_buf_free(&b);
        mp_async_free(handles[i]);
    }
    expect(ok == 5, "each AsyncResult.get() is its task's square");
    expect(__atomic_load_n(&callbacks, __ATOMIC_SEQ_CST) == 5 &&
               __atomic_load_n(&callback_sum, __ATOMIC_SEQ_CST) == 0 + 1 + 4 + 9 + 16,
           "the callback ran once for each of the 5 tasks");
    char what[96];
    snprintf(what, sizeof what, "5 tasks sleeping %.2f s in all took %.2f s on 4 workers", slept,
             took);
    expect(took < slept, what);
    mp_pool_free(p);
}

/* ---- part 3: get(timeout) -------------------------------------------------------- */

static int nap(const mp_args *args, mp_buf *result)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)mp_args_int(args, 0) * 1000000};
    nanosleep(&ts, NULL);
    return mp_buf_append(result, "z", 1);
}

static int square_task(const mp_args *args, mp_buf *result)
{
    int64_t x = mp_args_int(args, 0), sq = x * x;
    return mp_buf_append(result, &sq, sizeof sq);
}

static void get_with_timeout(void)
{
    mp_pool *pool;
    CHECK(mp_pool_new(&pool, &(mp_pool_opts){.processes = 2}));
    mp_args *args;
    mp_async *res;
    mp_buf b = MP_BUF_INIT;
    CHECK(mp_args_of(&args, "i", (int64_t)20));         /* pool.apply_async(f, (20,)) */
    CHECK(mp_pool_apply_async(pool, square_task, args, NULL, NULL, &res));
    mp_args_free(args);
    CHECK(mp_async_get(res, 1, &b, NULL));              /* res.get(timeout=1) */
    int64_t v;
    memcpy(&v, b.data, sizeof v);
    printf("%lld\n", (long long)v);
    mp_async_free(res);
    expect(b.len == sizeof v && v == 400, "apply_async(f, (20,)).get(timeout=1) = 400");

    CHECK(mp_args_of(&args, "i", (int64_t)300));        /* a task of 0.3 s */
    CHECK(mp_pool_apply_async(pool, nap, args, NULL, NULL, &res));
    mp_args_free(args);
    int rc = mp_async_get(res, 0.05, &b, NULL);         /* res.get(timeout=0.05) */
    if (rc == MP_ETIMEDOUT)
        printf("We lacked patience and got a multiprocessing.TimeoutError\n");
    expect(rc == MP_ETIMEDOUT, "get(timeout=0.05) on a 0.3 s task: MP_ETIMEDOUT");
    rc = mp_async_get(res, MP_FOREVER, &b, NULL);
    expect(rc == 0 && mp_async_successful(res) == 1,
           "the pool remains available: waiting longer gets the result");
    mp_async_free(res);
    mp_buf_free(&b);
    CHECK(mp_pool_close(pool));
    CHECK(mp_pool_join(pool, MP_FOREVER));
    mp_pool_free(pool);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Part 1: pool.map under each start method. */
    const char *methods[3];
    size_t nm = mp_get_all_start_methods(methods, 3);
    for (size_t i = 0; i < nm && i < 3; i++)
        map_under(methods[i]);

    /* Part 2: apply_async, callback, close, join. */
    apply_with_callbacks();

    /* Part 3: AsyncResult.get with a timeout. */
    get_with_timeout();

    if (failures) {
        printf("pool_map: %d check(s) FAILED\n", failures);
        return 1;
    }
    printf("pool_map: OK\n");
    return 0;
}
