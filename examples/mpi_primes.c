/*
 * mpi_primes.c: the main demo's prime count (pool_demo.c) spread over MPI
 * ranks with libmultiproc-mpi.  The same mp_pool_map_async call, the same
 * progress bar; only the context differs.  Rank 0 runs main(); the other
 * ranks serve inside mp_mpi_init.  One chunk is booby-trapped: its worker
 * process (on whichever rank got it) kills itself, that chunk alone fails
 * with MP_EWORKER, and the demo recounts it.
 *
 *     mpiexec -n 3 ./mpi_primes
 *
 * Python (mpi4py.futures):
 *     with MPIPoolExecutor() as ex:
 *         counts = list(ex.map(count_primes, chunks))
 */
#include <multiproc/mpi.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define LIMIT 6000000
#define PRIMES_BELOW_LIMIT 412849 /* pi(6 000 000) */
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

/* The map function: one chunk -> its count.  It runs in a worker process
 * on another rank: the same function of the same program. */
static int count_primes(const void *item, void *result)
{
    const chunk *c = item;
    if (c->trap)
        raise(SIGKILL);
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
    fprintf(stderr, "\nmpi_primes: %s: %s\n", what, mp_strerror(err));
    return 1;
}

static int run(void)
{
    static chunk chunks[NCHUNKS];
    static int64_t counts[NCHUNKS];
    for (int i = 0; i < NCHUNKS; i++)
        chunks[i] = (chunk){.lo = (int64_t)i * CHUNK, .hi = (int64_t)(i + 1) * CHUNK};
    chunks[TRAP].trap = 1;

    mp_pool *pool;
    mp_pool_opts opts = {.ctx = mp_mpi_context()}; /* every CPU of every other rank */
    int err = mp_pool_new(&pool, &opts);
    if (err < 0)
        return fail("mp_pool_new", err);
    printf("counting the primes below %d in %d chunks on the other ranks\n", LIMIT, NCHUNKS);
    double t0 = mp_monotonic();
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
    mp_async_free(job);
    printf("\n  on the ranks: %.2f s\n", mp_monotonic() - t0);
    if (err != MP_EWORKER || e.index != TRAP || e.signal != SIGKILL)
        return fail("the trapped chunk was not reported", err < 0 ? err : MP_EINVAL);
    printf("  chunk %zu failed: %s (its worker was killed by signal %d); the other %d "
           "chunks finished\n",
           e.index, mp_errname(e.code), e.signal, NCHUNKS - 1);
    chunks[TRAP].trap = 0;
    int64_t redo = 0;
    err = mp_pool_map(pool, count_primes, &chunks[TRAP], 1, sizeof(chunk), &redo, sizeof redo, 1,
                      NULL);
    if (err < 0)
        return fail("recounting the lost chunk", err);
    counts[TRAP] = redo;
    int64_t total = 0;
    for (int i = 0; i < NCHUNKS; i++)
        total += counts[i];
    printf("  recounted it: %lld primes in all (pi(%d) = %d) %s\n", (long long)total, LIMIT,
           PRIMES_BELOW_LIMIT, total == PRIMES_BELOW_LIMIT ? "ok" : "MISMATCH");
    if (mp_pool_close(pool) < 0 || mp_pool_join(pool, 60) < 0)
        return fail("close/join", MP_EINVAL);
    mp_pool_free(pool);
    return total == PRIMES_BELOW_LIMIT ? 0 : 1;
}

int main(int argc, char **argv)
{
    int err = mp_mpi_init(&argc, &argv); /* ranks > 0 serve in here */
    if (err < 0)
        return fail("mp_mpi_init", err);
    int rc = run();
    if (mp_mpi_finalize() < 0)
        rc = 1;
    return rc;
}
