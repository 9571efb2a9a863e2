/*
 * bench_pool.c: Pool, against Python's Pool (py_pool.py) and the bare
 * kernel operations a pool must at least do.  Every pool has 2 workers
 * under the fork context unless a row names another start method; the
 * workers' placement is left to the scheduler unless a row says "pinned".
 * At default arguments every result has at least 10 samples (-r, default
 * 10); a row whose sample times a batch reports the batch average per
 * operation, with n the number of batches ("per" in its JSON line says how
 * many operations a sample holds).  Each timed loop is preceded by an
 * untimed warm-up of the same work, and every result is checked (after the
 * timing, except in the imap rows, whose consumer checks each result as it
 * comes, as py_pool.py's does).
 *
 *   mp_pool_map_default
 *       mp_pool_map over N (-n, 10^6) trivial items (int64 -> its square)
 *       with the default chunksize (Python's ceil(n / (4 x workers))); one
 *       sample is one whole map, reported per item;
 *   mp_pool_map_shared
 *       the same map with items and results in buffers of
 *       mp_pool_shared_alloc (used in place: nothing copied in or out).
 *       Its fair Python baseline is py_pool_map_shm (Python's own best way
 *       for big arrays: a map over slices of a SharedMemory buffer);
 *   mp_pool_map_1k
 *       mp_pool_map over 10^5 (-k) items of 1 KiB each, whose result is
 *       1 KiB too: every byte of the item XOR 0x5a (Python: bytes.translate
 *       with that table); default chunksize; per item;
 *   mp_pool_map_chunk1
 *       mp_pool_map of 10^6 (-c) trivial items with chunksize 1 (every item
 *       is a task of its own; Python maps 10x fewer).  It runs last: a map
 *       whose progress stands still for 10 s is reported on stderr and its
 *       benchmark left out, so that a pool that hangs does not hang the
 *       whole run;
 *   mp_pool_cold_fork, mp_pool_cold_spawn, mp_pool_cold_forkserver
 *       one cold one-shot pool under that start method: mp_pool_new of 2
 *       workers, mp_pool_map of 10 000 trivial items (default chunksize),
 *       mp_pool_close, mp_pool_join, mp_pool_free -- all of it is one
 *       operation (the warm-up also starts the fork server);
 *   mp_imap_first, mp_imap_first_unordered
 *       time from the mp_pool_imap call (which copies the items in) to the
 *       first result out of mp_imap_next: 10^5 (-i) trivial items,
 *       chunksize 100 (IMAP_CHUNK, the same as py_pool.py), ordered and
 *       unordered.  mp_pool_imap copies every item in and queues every
 *       chunk before it returns, so this grows with the item count;
 *       Python's imap feeds its tasks from a thread, lazily;
 *   mp_imap_rate, mp_imap_rate_unordered
 *       the same imaps timed from the call to the last result, per item
 *       (the same samples' ends: one imap gives one sample of each);
 *   mp_apply_async_1000
 *       submit 1000 mp_pool_apply_async of a trivial task (int64 argument
 *       list -> its square), then mp_async_get all 1000 in order (and free
 *       handles and argument lists); per task; 20 batches (2 x -r);
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
 *       a CPU-bound map (each of 200 (-u) items about 1 ms of integer
 *       arithmetic, calibrated at start) on a pool of 1 worker and on one
 *       of 2: the per-item times show the speed-up;
 *   scale_map_mp_<N>, scale_map_floor_<N>  (N = 10^3, 10^4, ... 10^7 (-s))
 *       how the per-item cost of a map grows with N: mp_pool_map of N
 *       trivial items (int64 -> its square), default chunksize, 2 workers
 *       started before the timing; per item.  The floor is what any
 *       2-process parallel map must at least do, with nothing copied: 2
 *       worker processes, already started, wait on a futex; the items are
 *       already in MAP_SHARED memory (written before the clock starts); the
 *       parent bumps a generation word and wakes both (FUTEX_WAKE); each
 *       squares its half into a shared result array, counts itself done,
 *       and the second to finish wakes the parent (FUTEX_WAKE; the parent
 *       sleeps in FUTEX_WAIT), which then reads the results where they are
 *       (checked after the clock stops).  No spinning; the shared pages are
 *       reused from one map to the next (faulted in by the warm-up), as a
 *       pool may.  A map from and to the caller's own memory must also copy
 *       items in and results out; a pool can overlap those copies with the
 *       work (multiproc does), so a floor that did them one after the other
 *       would not be a floor.
 *       N <= 10^5: 5x as many samples (they are short).
 *
 * Prints one JSON line per benchmark (see bench_stats.h).
 *
 * usage: bench_pool [-n N_MAP] [-c N_CHUNK1] [-r REPEATS] [-a N_APPLY]
 *                   [-u N_CPU_ITEMS] [-k N_1K] [-i N_IMAP] [-s MAX_SCALE]
 *                   [map|map1k|chunk1|cold|imap|async|apply|futex|cpu|
 *                    scale|floor ...]
 * (naming some benchmarks runs only those)
 */
#define _GNU_SOURCE
#include <multiproc.h>

#include "bench_stats.h"
#include "bench_util.h"
#include "bench_burn.h"

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

static mp_pool *pool_in(const char *method, int workers)
{
    mp_pool *p;
    mp_context *ctx = mp_get_context(method);
    if (ctx == NULL)
        die(method, MP_EINVAL);
    mp_pool_opts o = {.ctx = ctx, .processes = workers};
    check("mp_pool_new", mp_pool_new(&p, &o));
    return p;
}

static mp_pool *pool_of(int workers)
{
    return pool_in("fork", workers);
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
        bench_report_per(name, s, reps, (double)n);
    } else {
        mp_pool_free(p);
    }
    free(s);
    return ok;
}

/* ---- map of 1 KiB items ------------------------------------------------------- */

#define KIB 1024
#define XOR_BYTE 0x5a

/* Every byte of the item XOR 0x5a: the same transformation as Python's
 * bytes.translate with the table b ^ 0x5a, each side's fastest way. */
static int xor_kib(const void *item, void *result)
{
    const unsigned char *in = item;
    unsigned char *out = result;
    for (size_t k = 0; k < KIB; k++)
        out[k] = in[k] ^ XOR_BYTE;
    return 0;
}

static unsigned char kib_byte(size_t i, size_t k)
{
    return (unsigned char)(i + k);
}

static void map1k_bench(const char *name, size_t n, size_t reps)
{
    unsigned char *items = malloc(n * KIB), *results = malloc(n * KIB);
    uint64_t *s = calloc(reps, sizeof *s);
    if (items == NULL || results == NULL || s == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < KIB; k++)
            items[i * KIB + k] = kib_byte(i, k);
    mp_pool *p = pool_of(WORKERS);
    for (size_t r = 0; r <= reps; r++) { /* the first map warms up */
        memset(results, 0, n * KIB);
        uint64_t t0 = bench_now_ns();
        check("mp_pool_map", mp_pool_map(p, xor_kib, items, n, KIB, results, KIB, 0, NULL));
        uint64_t t = bench_now_ns() - t0;
        if (r > 0)
            s[r - 1] = t;
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < KIB; k++)
                if (results[i * KIB + k] != (kib_byte(i, k) ^ XOR_BYTE))
                    die("1 KiB map result", MP_EBADMSG);
    }
    pool_done(p);
    bench_report_per(name, s, reps, (double)n);
    free(items);
    free(results);
    free(s);
}

/* ---- cold one-shot pool ----------------------------------------------------------- */

#define COLD_ITEMS 10000

/* new + map of COLD_ITEMS + close + join + free under @method, as one
 * operation; a warm-up first (it also starts the fork server). */
static void cold_bench(const char *name, const char *method, size_t reps)
{
    int64_t *items = malloc(COLD_ITEMS * sizeof *items),
            *results = malloc(COLD_ITEMS * sizeof *results);
    uint64_t *s = calloc(reps, sizeof *s);
    if (items == NULL || results == NULL || s == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < COLD_ITEMS; i++)
        items[i] = (int64_t)i;
    for (size_t r = 0; r <= reps; r++) {
        memset(results, 0xff, COLD_ITEMS * sizeof *results);
        uint64_t t0 = bench_now_ns();
        mp_pool *p = pool_in(method, WORKERS);
        check("mp_pool_map", mp_pool_map(p, square, items, COLD_ITEMS, sizeof *items, results,
                                         sizeof *results, 0, NULL));
        pool_done(p);
        uint64_t t = bench_now_ns() - t0;
        if (r > 0)
            s[r - 1] = t;
        for (size_t i = 0; i < COLD_ITEMS; i++)
            if (results[i] != (int64_t)i * (int64_t)i)
                die("cold map result", MP_EBADMSG);
    }
    bench_report(name, s, reps);
    free(items);
    free(results);
    free(s);
}

/* ---- imap ---------------------------------------------------------------------- */

/* The chunksize of the imap rows, the same in py_pool.py. */
#define IMAP_CHUNK 100

/* @reps imaps of @n trivial items, each giving one sample of the time to
 * the first result and one of the time to the last (reported per item). */
static void imap_bench(const char *first_name, const char *rate_name, size_t n, bool ordered,
                       size_t reps)
{
    int64_t *items = malloc(n * sizeof *items);
    uint64_t *first = calloc(reps, sizeof *first), *all = calloc(reps, sizeof *all);
    unsigned char *seen = malloc(n);
    if (items == NULL || first == NULL || all == NULL || seen == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < n; i++)
        items[i] = (int64_t)i;
    mp_pool *p = pool_of(WORKERS);
    for (size_t r = 0; r <= reps; r++) { /* the first imap warms up */
        memset(seen, 0, n);
        uint64_t t0 = bench_now_ns(), t1 = 0;
        mp_imap *it;
        check("mp_pool_imap", mp_pool_imap(p, square, items, n, sizeof *items, sizeof(int64_t),
                                           IMAP_CHUNK, ordered, &it));
        size_t got = 0;
        for (;;) {
            int64_t v;
            size_t idx;
            int err = mp_imap_next(it, &v, &idx, NULL, MP_FOREVER);
            if (err == MP_EOF)
                break;
            check("mp_imap_next", err);
            if (got == 0)
                t1 = bench_now_ns();
            /* the check is a compare and a store: part of the consumer's
             * loop, as Python's is */
            if (idx >= n || seen[idx] || v != (int64_t)idx * (int64_t)idx ||
                (ordered && idx != got))
                die("imap result", MP_EBADMSG);
            seen[idx] = 1;
            got++;
        }
        uint64_t t2 = bench_now_ns();
        mp_imap_free(it);
        if (got != n)
            die("imap count", MP_EBADMSG);
        if (r > 0) {
            first[r - 1] = t1 - t0;
            all[r - 1] = t2 - t0;
        }
    }
    pool_done(p);
    bench_report(first_name, first, reps);
    bench_report_per(rate_name, all, reps, (double)n);
    free(items);
    free(first);
    free(all);
    free(seen);
}

/* ---- apply_async throughput ------------------------------------------------------ */

#define ASYNC_TASKS 1000

static int square_task(const mp_args *a, mp_buf *out);

static void async_bench(const char *name, size_t reps)
{
    mp_async **h = calloc(ASYNC_TASKS, sizeof *h);
    uint64_t *s = calloc(reps, sizeof *s);
    if (h == NULL || s == NULL)
        die("calloc", ENOMEM);
    mp_pool *p = pool_of(WORKERS);
    mp_buf out = MP_BUF_INIT;
    for (size_t r = 0; r <= reps; r++) { /* the first batch warms up */
        uint64_t t0 = bench_now_ns();
        for (size_t i = 0; i < ASYNC_TASKS; i++) {
            mp_args *a;
            check("mp_args_of", mp_args_of(&a, "i", (int64_t)i));
            check("mp_pool_apply_async", mp_pool_apply_async(p, square_task, a, NULL, NULL, &h[i]));
            mp_args_free(a); /* encoded at submission */
        }
        for (size_t i = 0; i < ASYNC_TASKS; i++) {
            int64_t got;
            check("mp_async_get", mp_async_get(h[i], MP_FOREVER, &out, NULL));
            mp_async_free(h[i]);
            if (out.len != sizeof got || (memcpy(&got, out.data, sizeof got),
                                          got != (int64_t)i * (int64_t)i))
                die("apply_async result", MP_EBADMSG);
        }
        uint64_t t = bench_now_ns() - t0;
        if (r > 0)
            s[r - 1] = t;
    }
    mp_buf_free(&out);
    pool_done(p);
    bench_report_per(name, s, reps, ASYNC_TASKS);
    free(h);
    free(s);
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
    pin_saved(cpu, &saved); /* the pool's thread and workers inherit it */
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

/* ping carries the round number to the child, pong echoes it back. */
static void futex_bench(const char *name, size_t n, int cpu)
{
    cpu_set_t saved;
    pin_saved(cpu, &saved);
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
            futex_wake(pong, 1);
        }
        _exit(0);
    }
    for (uint32_t i = 1; i <= total; i++) {
        uint64_t t0 = bench_now_ns();
        atomic_store(ping, i);
        futex_wake(ping, 1);
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

/* ---- map scaling: the pool against the floor of a 2-process map --------------- */

static const size_t scale_sizes[] = {1000, 10000, 100000, 1000000, 10000000};

/* More samples for the short maps. */
static size_t scale_reps(size_t n, size_t reps)
{
    return n <= 100000 ? 5 * reps : reps;
}

static void scale_mp_bench(size_t max_n, size_t reps)
{
    for (size_t k = 0; k < sizeof scale_sizes / sizeof *scale_sizes; k++) {
        size_t n = scale_sizes[k];
        if (n > max_n)
            break;
        char name[64];
        snprintf(name, sizeof name, "scale_map_mp_%zu", n);
        if (!map_bench(name, n, 0, scale_reps(n, reps), false))
            return;
    }
}

/* The floor's shared control block; each word on a cache line of its own. */
typedef struct floor_ctl {
    _Alignas(64) _Atomic uint32_t go; /* generation: bumped to start a map */
    _Alignas(64) _Atomic uint32_t done; /* workers finished with this map */
    _Alignas(64) _Atomic uint64_t n;  /* items of this map; 0: exit */
} floor_ctl;

static _Noreturn void floor_worker(floor_ctl *c, const int64_t *items, int64_t *results, int half)
{
    uint32_t seen = 0;
    for (;;) {
        uint32_t g;
        while ((g = atomic_load(&c->go)) == seen)
            futex_wait(&c->go, seen);
        seen = g;
        size_t n = atomic_load(&c->n);
        if (n == 0)
            _exit(0);
        size_t mid = n / 2, lo = half ? mid : 0, hi = half ? n : mid;
        for (size_t i = lo; i < hi; i++)
            results[i] = items[i] * items[i];
        if (atomic_fetch_add(&c->done, 1) == 1) /* the second to finish */
            futex_wake(&c->done, 1);
    }
}

static void floor_bench(size_t max_n, size_t reps)
{
    size_t cap = 0;
    for (size_t k = 0; k < sizeof scale_sizes / sizeof *scale_sizes; k++)
        if (scale_sizes[k] <= max_n)
            cap = scale_sizes[k];
    if (cap == 0)
        return;
    size_t bytes = cap * sizeof(int64_t);
    floor_ctl *c = mmap(NULL, sizeof *c, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                        -1, 0);
    int64_t *sitems = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int64_t *sresults = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                             -1, 0);
    if (c == MAP_FAILED || sitems == MAP_FAILED || sresults == MAP_FAILED)
        die("mmap", errno);
    int64_t *items = malloc(bytes), *results = malloc(bytes);
    if (items == NULL || results == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < cap; i++)
        items[i] = (int64_t)i;
    fflush(stdout);
    pid_t pid[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pid[w] = fork();
        if (pid[w] < 0)
            die("fork", errno);
        if (pid[w] == 0)
            floor_worker(c, sitems, sresults, w);
    }
    for (size_t k = 0; k < sizeof scale_sizes / sizeof *scale_sizes; k++) {
        size_t n = scale_sizes[k], nrep = scale_reps(n, reps);
        if (n > cap)
            break;
        uint64_t *s = calloc(nrep, sizeof *s);
        if (s == NULL)
            die("calloc", ENOMEM);
        for (size_t r = 0; r <= nrep; r++) { /* the first map warms up */
            memcpy(sitems, items, n * sizeof *items);
            memset(sresults, 0xff, n * sizeof *sresults);
            uint64_t t0 = bench_now_ns();
            atomic_store(&c->done, 0);
            atomic_store(&c->n, n);
            atomic_fetch_add(&c->go, 1);
            futex_wake(&c->go, INT32_MAX);
            uint32_t d;
            while ((d = atomic_load(&c->done)) != WORKERS)
                futex_wait(&c->done, d);
            uint64_t t = bench_now_ns() - t0;
            if (r > 0)
                s[r - 1] = t;
            for (size_t i = 0; i < n; i++)
                if (sresults[i] != (int64_t)i * (int64_t)i)
                    die("floor map result", MP_EBADMSG);
        }
        char name[64];
        snprintf(name, sizeof name, "scale_map_floor_%zu", n);
        bench_report_per(name, s, nrep, (double)n);
        free(s);
    }
    atomic_store(&c->n, 0);
    atomic_fetch_add(&c->go, 1);
    futex_wake(&c->go, INT32_MAX);
    for (int w = 0; w < WORKERS; w++) {
        int st;
        if (waitpid(pid[w], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("floor worker", EIO);
    }
    munmap(c, sizeof *c);
    munmap(sitems, bytes);
    munmap(sresults, bytes);
    free(items);
    free(results);
}

/* ---- CPU-bound map ---------------------------------------------------------------- */

static void cpu_bench(const char *name, int workers, size_t n, size_t reps, uint64_t rounds)
{
    uint64_t *s = calloc(reps, sizeof *s);
    if (s == NULL)
        die("malloc", ENOMEM);
    mp_pool *p = pool_of(workers);
    /* the first map (one item a worker) warms up */
    burn_map_timed(p, (size_t)workers, n, reps, rounds, s);
    pool_done(p);
    bench_report_per(name, s, reps, (double)n);
    free(s);
}

int main(int argc, char **argv)
{
    size_t n = 1000000, nc1 = 1000000, reps = 10, napply = 20000, ncpu = 200, n1k = 100000,
           nimap = 100000, nscale = 10000000;
    static const char *const names[] = {"map",   "map1k", "chunk1", "cold",  "imap", "async",
                                        "apply", "futex", "cpu",    "scale", "floor"};
    char *which[16];
    int nwhich = 0;
    for (int i = 1; i < argc; i++) {
        bool known = false;
        for (size_t k = 0; k < sizeof names / sizeof *names; k++)
            known = known || strcmp(argv[i], names[k]) == 0;
        if (strcmp(argv[i], "-n") == 0)
            n = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-c") == 0)
            nc1 = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-r") == 0)
            reps = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-a") == 0)
            napply = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-u") == 0)
            ncpu = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-k") == 0)
            n1k = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-i") == 0)
            nimap = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-s") == 0)
            nscale = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (known && nwhich < 16)
            which[nwhich++] = argv[i];
        else {
            fprintf(stderr,
                    "usage: %s [-n N_MAP] [-c N_CHUNK1] [-r REPEATS] [-a N_APPLY] "
                    "[-u N_CPU_ITEMS] [-k N_1K] [-i N_IMAP] [-s MAX_SCALE] "
                    "[map|map1k|chunk1|cold|imap|async|apply|futex|cpu|scale|floor ...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (wanted(which, nwhich, "map")) {
        map_bench("mp_pool_map_default", n, 0, reps, false);
        map_bench("mp_pool_map_shared", n, 0, reps, true);
    }
    if (wanted(which, nwhich, "map1k"))
        map1k_bench("mp_pool_map_1k", n1k, reps);
    if (wanted(which, nwhich, "cold")) {
        cold_bench("mp_pool_cold_fork", "fork", reps);
        cold_bench("mp_pool_cold_spawn", "spawn", reps);
        cold_bench("mp_pool_cold_forkserver", "forkserver", reps);
    }
    if (wanted(which, nwhich, "imap")) {
        imap_bench("mp_imap_first", "mp_imap_rate", nimap, true, reps);
        imap_bench("mp_imap_first_unordered", "mp_imap_rate_unordered", nimap, false, reps);
    }
    if (wanted(which, nwhich, "async"))
        async_bench("mp_apply_async_1000", 2 * reps);
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
        cpu_bench("mp_pool_cpu_1w", 1, ncpu, reps, rounds);
        cpu_bench("mp_pool_cpu_2w", 2, ncpu, reps, rounds);
    }
    if (wanted(which, nwhich, "scale"))
        scale_mp_bench(nscale, reps);
    if (wanted(which, nwhich, "floor"))
        floor_bench(nscale, reps);
    /* last: on a pool that hangs it costs STALL_LIMIT, and the rest is out */
    if (wanted(which, nwhich, "chunk1"))
        map_bench("mp_pool_map_chunk1", nc1, 1, reps, false);
    return 0;
}
