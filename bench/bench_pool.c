/*
 * bench_pool.c: Pool, against Python's Pool (py_pool.py) and a bare futex
 * ping-pong.  Every pool has 2 workers under the fork context.
 *
 *   mp_pool_map_default
 *       mp_pool_map over N trivial items (int64 -> its square) with the
 *       default chunksize (Python's ceil(n / (4 x workers))); one sample
 *       is one whole map, reported per item;
 *   mp_pool_map_shared
 *       the same map with items and results in buffers of
 *       mp_pool_shared_alloc (used in place: nothing copied in or out);
 *   mp_pool_map_chunk1
 *       the same with chunksize 1 (every item is a task of its own).  It
 *       runs last: a map whose progress stands still for 10 s is reported
 *       on stderr and its benchmark left out, so that a pool that hangs
 *       does not hang the whole run;
 *   mp_pool_apply_rtt, raw_futex_rtt_2proc
 *       one apply_async round trip: build the argument list, submit a task
 *       that squares it, wait for the result (mp_async_get), free both;
 *       against a ping-pong between two processes on two 32-bit words in
 *       MAP_SHARED memory, with FUTEX_WAKE and FUTEX_WAIT only (no
 *       spinning).  Everything is pinned to one CPU (the pool's thread and
 *       workers inherit the parent's affinity): a round trip is then a
 *       matter of wake-ups and context switches, and does not depend on how
 *       fast the (virtual) machine wakes an idle CPU, which on a VM swings
 *       between some 4 and 50 us from one wake-up to the next;
 *   mp_pool_apply_rtt_free, raw_futex_rtt_2proc_free
 *       the same, placement left to the scheduler;
 *   mp_pool_cpu_1w, mp_pool_cpu_2w
 *       a CPU-bound map (each item about 1 ms of integer arithmetic,
 *       calibrated at start) on a pool of 1 worker and on one of 2:
 *       the per-item times show the speed-up.
 *
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_pool [-n N_MAP] [-c N_CHUNK1] [-r REPEATS] [-a N_APPLY]
 *                   [-u N_CPU_ITEMS] [map|chunk1|apply|futex|cpu ...]
 * (naming some benchmarks runs only those)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"

#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 2

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_pool: %s: %s\n", what, err < 0 ? mp_strerror(err) : strerror(err));
    exit(1);
}

static void check(const char *what, int err)
{
    if (err < 0)
        die(what, err);
}

/* Samples of @per operations each (ns): the JSON line of one operation. */
static void report_per(const char *name, uint64_t *s, size_t n, double per)
{
    double sum = 0;
    qsort(s, n, sizeof *s, bench_cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)s[i];
    double d = per * 1e3;
    printf("{\"name\": \"%s\", \"n\": %zu, \"median_us\": %.6f, \"p10_us\": %.6f, "
           "\"p90_us\": %.6f, \"mean_us\": %.6f, \"min_us\": %.6f, \"per\": %.0f}\n",
           name, n, bench_quantile(s, n, 0.5) / d, bench_quantile(s, n, 0.1) / d,
           bench_quantile(s, n, 0.9) / d, sum / (double)n / d, (double)s[0] / d, per);
    fflush(stdout);
}

static mp_pool *pool_of(int workers)
{
    mp_pool *p;
    mp_pool_opts o = {.ctx = mp_get_context("fork"), .processes = workers};
    check("mp_pool_new", mp_pool_new(&p, &o));
    return p;
}

static void pool_done(mp_pool *p)
{
    check("mp_pool_close", mp_pool_close(p));
    check("mp_pool_join", mp_pool_join(p, 60));
    mp_pool_free(p);
}

/* ---- map of trivial items --------------------------------------------------- */

static int square(const void *item, void *result)
{
    int64_t v = *(const int64_t *)item;
    *(int64_t *)result = v * v;
    return 0;
}

/* A map whose progress stands still this long is taken for a hung pool:
 * it is reported on stderr and its benchmark left out (the other rows
 * still come). */
#define STALL_LIMIT 10.0

/* Wait for a map; MP_ETIMEDOUT if it stopped making progress. */
static int map_wait(mp_async *a, size_t *done, size_t *total)
{
    size_t last = SIZE_MAX;
    double still = 0;
    for (;;) {
        int err = mp_async_get(a, 1.0, NULL, NULL);
        if (err != MP_ETIMEDOUT)
            return err;
        (void)mp_async_progress(a, done, total);
        still = *done == last ? still + 1.0 : 0;
        last = *done;
        if (still >= STALL_LIMIT)
            return MP_ETIMEDOUT;
    }
}

/* @reps timed maps of @n items on a fresh pool (after one untimed warm-up
 * map).  False if a map hung. */
static bool map_bench(const char *name, size_t n, size_t chunksize, size_t reps, bool shared)
{
    mp_pool *p = pool_of(WORKERS);
    int64_t *items, *results;
    if (shared) {
        check("mp_pool_shared_alloc", mp_pool_shared_alloc(p, n * sizeof *items, (void **)&items));
        check("mp_pool_shared_alloc",
              mp_pool_shared_alloc(p, n * sizeof *results, (void **)&results));
    } else {
        items = malloc(n * sizeof *items);
        results = malloc(n * sizeof *results);
    }
    uint64_t *s = calloc(reps, sizeof *s);
    if (items == NULL || results == NULL || s == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < n; i++)
        items[i] = (int64_t)i;
    bool ok = true;
    for (size_t r = 0; r <= reps && ok; r++) {
        memset(results, 0xff, n * sizeof *results);
        mp_async *a;
        uint64_t t0 = bench_now_ns();
        check("mp_pool_map_async", mp_pool_map_async(p, square, items, n, sizeof *items, results,
                                                     sizeof *results, chunksize, &a));
        size_t done = 0, total = 0;
        int err = map_wait(a, &done, &total);
        uint64_t t = bench_now_ns() - t0;
        if (err == MP_ETIMEDOUT) {
            fprintf(stderr,
                    "bench_pool: %s: the map of %zu items (chunksize %zu) hung: %zu of %zu "
                    "done, no progress for %.0f s; left out\n",
                    name, n, chunksize, done, total, STALL_LIMIT);
            ok = false;
            mp_pool_terminate(p);
        }
        mp_async_free(a);
        if (!ok)
            break;
        check("mp_pool_map", err);
        if (r > 0)
            s[r - 1] = t;
        for (size_t i = 0; i < n; i++)
            if (results[i] != (int64_t)i * (int64_t)i) {
                fprintf(stderr, "bench_pool: %s: results[%zu] = %lld\n", name, i,
                        (long long)results[i]);
                exit(1);
            }
    }
    if (shared) {
        mp_pool_shared_free(p, items);
        mp_pool_shared_free(p, results);
    } else {
        free(items);
        free(results);
    }
    if (ok) {
        pool_done(p);
        report_per(name, s, reps, (double)n);
    } else {
        mp_pool_free(p);
    }
    free(s);
    return ok;
}

/* ---- CPU placement -------------------------------------------------------------- */

/* The first CPU this process may use. */
static int first_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        die("sched_getaffinity", errno);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            return c;
    return -1;
}

/* Pin this process (and what it forks from now on) to @cpu, saving its
 * affinity in @saved; @cpu < 0: leave it alone. */
static void pin(int cpu, cpu_set_t *saved)
{
    if (sched_getaffinity(0, sizeof *saved, saved) < 0)
        die("sched_getaffinity", errno);
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0)
        die("sched_setaffinity", errno);
}

static void unpin(const cpu_set_t *saved)
{
    if (sched_setaffinity(0, sizeof *saved, saved) < 0)
        die("sched_setaffinity", errno);
}

/* ---- apply_async round trip -------------------------------------------------- */

static int square_task(const mp_args *a, mp_buf *out)
{
    int64_t v = mp_args_int(a, 0);
    v *= v;
    return mp_buf_append(out, &v, sizeof v);
}

static void apply_bench(const char *name, size_t n, int cpu)
{
    cpu_set_t saved;
    pin(cpu, &saved); /* the pool's thread and workers inherit it */
    mp_pool *p = pool_of(WORKERS);
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    mp_buf out = MP_BUF_INIT;
    for (size_t i = 0; i < n + n / 10; i++) { /* the first tenth warms up */
        int64_t v = (int64_t)(i % 1000), got;
        uint64_t t0 = bench_now_ns();
        mp_args *a;
        mp_async *r;
        check("mp_args_of", mp_args_of(&a, "i", v));
        check("mp_pool_apply_async", mp_pool_apply_async(p, square_task, a, NULL, NULL, &r));
        check("mp_async_get", mp_async_get(r, MP_FOREVER, &out, NULL));
        mp_async_free(r);
        mp_args_free(a);
        uint64_t t = bench_now_ns() - t0;
        if (i >= n / 10)
            s[i - n / 10] = t;
        if (out.len != sizeof got || (memcpy(&got, out.data, sizeof got), got != v * v))
            die("apply result", MP_EBADMSG);
    }
    mp_buf_free(&out);
    pool_done(p);
    unpin(&saved);
    bench_report(name, s, n);
    free(s);
}

/* ---- bare futex ping-pong ------------------------------------------------------ */

static void futex_wait(_Atomic uint32_t *w, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ping carries the round number to the child, pong echoes it back. */
static void futex_bench(const char *name, size_t n, int cpu)
{
    cpu_set_t saved;
    pin(cpu, &saved);
    _Atomic uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                               -1, 0);
    if (w == MAP_FAILED)
        die("mmap", errno);
    _Atomic uint32_t *ping = &w[0], *pong = &w[16]; /* separate cache lines */
    uint64_t *s = calloc(n, sizeof *s);
    if (s == NULL)
        die("calloc", ENOMEM);
    size_t total = n + n / 10;
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        for (uint32_t seen = 0; seen < total;) {
            uint32_t v;
            while ((v = atomic_load(ping)) == seen)
                futex_wait(ping, seen);
            seen = v;
            atomic_store(pong, v);
            futex_wake(pong);
        }
        _exit(0);
    }
    for (uint32_t i = 1; i <= total; i++) {
        uint64_t t0 = bench_now_ns();
        atomic_store(ping, i);
        futex_wake(ping);
        uint32_t v;
        while ((v = atomic_load(pong)) != i)
            futex_wait(pong, v);
        if (i > n / 10)
            s[i - 1 - n / 10] = bench_now_ns() - t0;
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("ping-pong child", EIO);
    munmap(w, 4096);
    unpin(&saved);
    bench_report(name, s, n);
    free(s);
}

/* ---- CPU-bound map ---------------------------------------------------------------- */

typedef struct burn_item {
    uint64_t seed, rounds;
} burn_item;

/* xorshift64*, a dependent chain the compiler cannot shorten. */
static uint64_t burn(uint64_t x, uint64_t rounds)
{
    x |= 1;
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x *= 0x2545f4914f6cdd1dULL;
    }
    return x;
}

static int burn_item_fn(const void *item, void *result)
{
    const burn_item *b = item;
    *(uint64_t *)result = burn(b->seed, b->rounds);
    return 0;
}

/* Rounds that take about 1 ms here (the fastest of a few tries). */
static uint64_t calibrate(void)
{
    uint64_t rounds = 1 << 16, best = UINT64_MAX;
    volatile uint64_t sink = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t t0 = bench_now_ns();
        sink += burn((uint64_t)i, rounds);
        uint64_t t = bench_now_ns() - t0;
        if (t < best)
            best = t;
    }
    (void)sink;
    return best ? rounds * 1000000 / best : rounds;
}

static void cpu_bench(const char *name, int workers, size_t n, size_t reps, uint64_t rounds)
{
    burn_item *items = malloc(n * sizeof *items);
    uint64_t *results = malloc(n * sizeof *results), *s = calloc(reps, sizeof *s);
    if (items == NULL || results == NULL || s == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < n; i++)
        items[i] = (burn_item){.seed = i, .rounds = rounds};
    mp_pool *p = pool_of(workers);
    for (size_t r = 0; r <= reps; r++) { /* the first map warms up */
        uint64_t t0 = bench_now_ns();
        check("mp_pool_map", mp_pool_map(p, burn_item_fn, items, r == 0 ? (size_t)workers : n,
                                         sizeof *items, results, sizeof *results, 0, NULL));
        if (r > 0)
            s[r - 1] = bench_now_ns() - t0;
    }
    for (size_t i = 0; i < n; i += n / 7 + 1)
        if (results[i] != burn(i, rounds))
            die("cpu map result", MP_EBADMSG);
    pool_done(p);
    report_per(name, s, reps, (double)n);
    free(items);
    free(results);
    free(s);
}

static size_t count(const char *s)
{
    long v = s ? strtol(s, NULL, 10) : 0;
    if (v <= 0) {
        fprintf(stderr, "bench_pool: a positive count is needed\n");
        exit(2);
    }
    return (size_t)v;
}

static bool wanted(char **which, int nwhich, const char *name)
{
    if (nwhich == 0)
        return true;
    for (int i = 0; i < nwhich; i++)
        if (strcmp(which[i], name) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    size_t n = 1000000, nc1 = 1000000, reps = 7, napply = 20000, ncpu = 200;
    char *which[8];
    int nwhich = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0)
            n = count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-c") == 0)
            nc1 = count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-r") == 0)
            reps = count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-a") == 0)
            napply = count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-u") == 0)
            ncpu = count(i + 1 < argc ? argv[++i] : NULL);
        else if (argv[i][0] != '-' && nwhich < 8 &&
                 (strcmp(argv[i], "map") == 0 || strcmp(argv[i], "chunk1") == 0 ||
                  strcmp(argv[i], "apply") == 0 || strcmp(argv[i], "futex") == 0 ||
                  strcmp(argv[i], "cpu") == 0))
            which[nwhich++] = argv[i];
        else {
            fprintf(stderr,
                    "usage: %s [-n N_MAP] [-c N_CHUNK1] [-r REPEATS] [-a N_APPLY] "
                    "[-u N_CPU_ITEMS] [map|chunk1|apply|futex|cpu ...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (wanted(which, nwhich, "map")) {
        map_bench("mp_pool_map_default", n, 0, reps, false);
        map_bench("mp_pool_map_shared", n, 0, reps, true);
    }
    /* pinned to one CPU, then left to the scheduler */
    if (wanted(which, nwhich, "apply"))
        apply_bench("mp_pool_apply_rtt", napply, first_cpu());
    if (wanted(which, nwhich, "futex"))
        futex_bench("raw_futex_rtt_2proc", napply, first_cpu());
    if (wanted(which, nwhich, "apply"))
        apply_bench("mp_pool_apply_rtt_free", napply, -1);
    if (wanted(which, nwhich, "futex"))
        futex_bench("raw_futex_rtt_2proc_free", napply, -1);
    if (wanted(which, nwhich, "cpu")) {
        uint64_t rounds = calibrate();
        size_t r = reps < 3 ? reps : 3;
        cpu_bench("mp_pool_cpu_1w", 1, ncpu, r, rounds);
        cpu_bench("mp_pool_cpu_2w", 2, ncpu, r, rounds);
    }
    /* last: on a pool that hangs it costs MAP_LIMIT, and the rest is out */
    if (wanted(which, nwhich, "chunk1"))
        map_bench("mp_pool_map_chunk1", nc1, 1, reps, false);
    return 0;
}
