/*
 * pool_demo.c: the main demo.  Count the primes below 6 000 000 in chunks,
 * once serially and once on a pool of every CPU, with a progress bar, and
 * print the speed-up.  One chunk is booby-trapped: its worker kills itself
 * with SIGKILL.  Python's Pool would hang there; here that one chunk is
 * reported failed (MP_EWORKER, signal 9), its worker is replaced, every
 * other chunk finishes, and the demo recounts the lost chunk to check the
 * total.
 *
 * Python:
 *     with Pool() as pool:
 *         counts = pool.map(count_primes, chunks)
 */
#include <multiproc.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIMIT 6000000
#define CHUNK 50000
#define NCHUNKS (LIMIT / CHUNK)
#define TRAP 42 /* this chunk's worker dies */

typedef struct chunk {
    int64_t lo, hi;
    int trap;
} chunk;

static int64_t primes_in(int64_t lo, int64_t hi)
{
    int64_t n = 0;
    for (int64_t x = lo < 2 ? 2 : lo; x < hi; x++) {
        int prime = 1;
        for (int64_t d = 2; d * d <= x; d++)
            if (x % d == 0) {
                prime = 0;
                break;
            }
        n += prime;
    }
    return n;
}

/* The map function: one chunk → its count. */
static int count_primes(const void *item, void *result)
{
    const chunk *c = item;
    if (c->trap)
        raise(SIGKILL); /* a crash in the middle of the job */
    *(int64_t *)result = primes_in(c->lo, c->hi);
    return 0;
}

static void bar(size_t done, size_t total)
{
    int width = 40, fill = total ? (int)(done * (size_t)width / total) : width;
    printf("\r  [%.*s%*s] %3zu%%", fill, "########################################", width - fill,
           "", total ? done * 100 / total : 100);
    fflush(stdout);
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "\npool_demo: %s: %s\n", what, mp_strerror(err));
    return 1;
}

int main(void)
{
    static chunk chunks[NCHUNKS];
    static int64_t counts[NCHUNKS];
    for (int i = 0; i < NCHUNKS; i++)
        chunks[i] = (chunk){.lo = (int64_t)i * CHUNK, .hi = (int64_t)(i + 1) * CHUNK};

    printf("counting the primes below %d in %d chunks\n", LIMIT, NCHUNKS);
    double t0 = mp_monotonic();
    int64_t serial = 0;
    for (int i = 0; i < NCHUNKS; i++) {
        serial += primes_in(chunks[i].lo, chunks[i].hi);
        if (i % 8 == 0 || i == NCHUNKS - 1)
            bar((size_t)i + 1, NCHUNKS);
    }
    double t_serial = mp_monotonic() - t0;
    printf("\n  serial: %lld primes in %.2f s\n", (long long)serial, t_serial);

    chunks[TRAP].trap = 1;
    int nproc = mp_cpu_count();
    mp_pool *pool;
    mp_pool_opts opts = {.processes = nproc};
    int err = mp_pool_new(&pool, &opts);
    if (err < 0)
        return fail("mp_pool_new", err);
    t0 = mp_monotonic();
    mp_async *job;
    err = mp_pool_map_async(pool, count_primes, chunks, NCHUNKS, sizeof(chunk), counts,
                            sizeof(int64_t), 1, &job);
    if (err < 0)
        return fail("mp_pool_map_async", err);
    while (mp_async_wait(job, 0.05) == MP_ETIMEDOUT) {
        size_t done, total;
        if (mp_async_progress(job, &done, &total) == 0)
            bar(done, total);
    }
    bar(NCHUNKS, NCHUNKS);
    mp_task_error e = {0};
    err = mp_async_get(job, 0, NULL, &e);
    double t_pool = mp_monotonic() - t0;
    mp_async_free(job);
    printf("\n  pool of %d: %.2f s, speed-up %.2fx\n", nproc, t_pool, t_serial / t_pool);

    /* the trap: exactly that chunk failed, the others are done */
    if (err != MP_EWORKER || e.index != TRAP || e.signal != SIGKILL)
        return fail("the trapped chunk was not reported", err < 0 ? err : MP_EINVAL);
    printf("  chunk %zu failed: %s (its worker was killed by signal %d); the other %d "
           "chunks finished\n",
           e.index, mp_errname(e.code), e.signal, NCHUNKS - 1);
    chunks[TRAP].trap = 0;
    int64_t redo = 0;
    err = mp_pool_map(pool, count_primes, &chunks[TRAP], 1, sizeof(chunk), &redo,
                      sizeof redo, 1, NULL);
    if (err < 0)
        return fail("recounting the lost chunk", err);
    counts[TRAP] = redo;
    int64_t total = 0;
    for (int i = 0; i < NCHUNKS; i++)
        total += counts[i];
    printf("  recounted it on the replaced worker: %lld primes in all (serial: %lld) %s\n",
           (long long)total, (long long)serial, total == serial ? "ok" : "MISMATCH");
    if (mp_pool_close(pool) < 0 || mp_pool_join(pool, 60) < 0)
        return fail("close/join", MP_EINVAL);
    mp_pool_free(pool);
    return total == serial ? 0 : 1;
}
