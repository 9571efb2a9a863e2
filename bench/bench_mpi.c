/*
 * bench_mpi.c: the Pool on MPI ranks (libmultiproc-mpi), against the local
 * pool doing the same map on this machine, and (py_mpi.py) against
 * Python's mpi4py.futures.MPIPoolExecutor.map on the same ranks.  Run it
 * under mpiexec with 3 ranks (bench/run.py does, with the flags of
 * tests/mpi/run_mpi.sh):
 *
 *   mpiexec -n 3 [...] bench_mpi [-n N_MAP] [-r REPEATS] [-u N_CPU_ITEMS]
 *                                [map|cpu ...]
 *
 * What each side does, with 2 worker processes on every side:
 *
 *   MPI (mpi_*)      rank 0 runs this program; the pool is on
 *                    mp_mpi_context() with processes = 1, so each of the 2
 *                    other ranks runs one local worker process (spawned, as
 *                    libmultiproc-mpi always does) and rank 0 sends it
 *                    chunks of packed items over MPI (shared memory
 *                    transport here, single copy off) and gets packed
 *                    results back.  The ranks, the pool and its workers are
 *                    started before the timing.
 *   local (mpi_local_*)  mp_pool_map on rank 0 itself, a pool of 2 worker
 *                    processes started with spawn (no plain fork in an MPI
 *                    process; the start method costs nothing once the pool
 *                    runs), started before the timing.  The two serving
 *                    ranks sit idle meanwhile (they poll MPI at most every
 *                    5 ms).
 *   Python (py_mpi.py)  the 2 other ranks are mpi4py.futures' workers,
 *                    running the items in the rank processes themselves;
 *                    executor.map with chunksize ceil(n / 8), what Python's
 *                    Pool would pick for 2 workers (MPIPoolExecutor's own
 *                    default, 1, sends every item alone).
 *
 * Both C sides use the default chunksize (0): the local pool's is
 * ceil(n / (4 x workers)); the MPI context's picks from the chunks it
 * keeps in flight.  Every map is preceded by an untimed warm-up map and
 * its results are checked after the timing.
 *
 *   mpi_map_trivial, mpi_local_map_trivial
 *       a map of N (-n, 10^6) trivial items (int64 -> its square); one
 *       sample is one whole map, reported per item (n is the number of
 *       maps, "per_sample" the items in each);
 *   mpi_map_cpu, mpi_local_map_cpu
 *       a CPU-bound map: 200 (-u) items of about 1 ms of integer arithmetic
 *       each (xorshift64* rounds, as bench_pool.c's, calibrated on rank 0
 *       at start); one sample is the whole map's time.
 *
 * At default arguments every result has 10 samples (-r).  Prints one JSON
 * line per benchmark on rank 0 (see bench_stats.h).
 */
#define _GNU_SOURCE
#include <multiproc.h>
#include <multiproc/mpi.h>

#include "bench_stats.h"
#include "bench_util.h"
#include "bench_burn.h"

#include <stdbool.h>
#include <string.h>

#define WORKERS 2 /* worker processes on every side */

static int square(const void *item, void *result)
{
    int64_t v = *(const int64_t *)item;
    *(int64_t *)result = v * v;
    return 0;
}

/* A pool of 2 worker processes: on the other ranks (1 per rank), or here. */
static mp_pool *pool_on(bool mpi)
{
    mp_pool *p;
    mp_pool_opts o = {.ctx = mpi ? mp_mpi_context() : mp_get_context("spawn"),
                      .processes = mpi ? 1 : WORKERS};
    if (o.ctx == NULL)
        die("context", MP_EINVAL);
    check("mp_pool_new", mp_pool_new(&p, &o));
    return p;
}

static void pool_done(mp_pool *p)
{
    check("mp_pool_close", mp_pool_close(p));
    check("mp_pool_join", mp_pool_join(p, 60));
    mp_pool_free(p);
}

static void map_bench(const char *name, bool mpi, size_t n, size_t reps)
{
    int64_t *items = malloc(n * sizeof *items), *results = malloc(n * sizeof *results);
    uint64_t *s = calloc(reps, sizeof *s);
    if (items == NULL || results == NULL || s == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < n; i++)
        items[i] = (int64_t)i;
    mp_pool *p = pool_on(mpi);
    for (size_t r = 0; r <= reps; r++) { /* the first map warms up */
        memset(results, 0xff, n * sizeof *results);
        uint64_t t0 = bench_now_ns();
        check("mp_pool_map",
              mp_pool_map(p, square, items, n, sizeof *items, results, sizeof *results, 0, NULL));
        uint64_t t = bench_now_ns() - t0;
        if (r > 0)
            s[r - 1] = t;
        for (size_t i = 0; i < n; i++)
            if (results[i] != (int64_t)i * (int64_t)i) {
                fprintf(stderr, "bench_mpi: %s: results[%zu] = %lld\n", name, i,
                        (long long)results[i]);
                exit(1);
            }
    }
    pool_done(p);
    bench_report_per(name, s, reps, (double)n);
    free(items);
    free(results);
    free(s);
}

static void cpu_bench(const char *name, bool mpi, size_t n, size_t reps, uint64_t rounds)
{
    uint64_t *s = calloc(reps, sizeof *s);
    if (s == NULL)
        die("malloc", ENOMEM);
    mp_pool *p = pool_on(mpi);
    /* the first map (one item a worker) warms up */
    burn_map_timed(p, (size_t)WORKERS, n, reps, rounds, s);
    pool_done(p);
    bench_report(name, s, reps);
    free(s);
}

int main(int argc, char **argv)
{
    /* every rank first; the others serve rank 0's pools in it */
    check("mp_mpi_init", mp_mpi_init(&argc, &argv));
    size_t n = 1000000, reps = 10, ncpu = 200;
    char *which[4];
    int nwhich = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0)
            n = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-r") == 0)
            reps = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if (strcmp(argv[i], "-u") == 0)
            ncpu = bench_count(i + 1 < argc ? argv[++i] : NULL);
        else if ((strcmp(argv[i], "map") == 0 || strcmp(argv[i], "cpu") == 0) && nwhich < 4)
            which[nwhich++] = argv[i];
        else {
            fprintf(stderr, "usage: mpiexec -n 3 %s [-n N_MAP] [-r REPEATS] [-u N_CPU_ITEMS] "
                    "[map|cpu ...]\n", argv[0]);
            (void)!mp_mpi_finalize();
            return 2;
        }
    }
    if (wanted(which, nwhich, "map")) {
        map_bench("mpi_map_trivial", true, n, reps);
        map_bench("mpi_local_map_trivial", false, n, reps);
    }
    if (wanted(which, nwhich, "cpu")) {
        uint64_t rounds = calibrate();
        cpu_bench("mpi_map_cpu", true, ncpu, reps, rounds);
        cpu_bench("mpi_local_map_cpu", false, ncpu, reps, rounds);
    }
    check("mp_mpi_finalize", mp_mpi_finalize());
    return 0;
}
