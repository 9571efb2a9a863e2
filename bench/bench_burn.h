/*
 * The CPU-bound item of the pool benchmarks (bench_pool.c, bench_mpi.c):
 * rounds of xorshift64*, a dependent chain the compiler cannot shorten or
 * fold away, how many rounds take about 1 ms here, and the timed map of
 * such items.  Include after multiproc.h, bench_stats.h (bench_now_ns)
 * and bench_util.h (check, die).
 */
#ifndef BENCH_BURN_H
#define BENCH_BURN_H

#include <stdint.h>

typedef struct burn_item {
    uint64_t seed, rounds;
} burn_item;

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

/* An mp_map_fn: one burn_item into its uint64_t result. */
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

/* @reps timed maps of @n items of @rounds each on @p into @s (ns), after
 * one untimed map of @warm items; a sample of the results is checked. */
static void burn_map_timed(mp_pool *p, size_t warm, size_t n, size_t reps, uint64_t rounds,
                           uint64_t *s)
{
    burn_item *items = malloc(n * sizeof *items);
    uint64_t *results = malloc(n * sizeof *results);
    if (items == NULL || results == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < n; i++)
        items[i] = (burn_item){.seed = i, .rounds = rounds};
    for (size_t r = 0; r <= reps; r++) {
        uint64_t t0 = bench_now_ns();
        check("mp_pool_map", mp_pool_map(p, burn_item_fn, items, r == 0 ? warm : n,
                                         sizeof *items, results, sizeof *results, 0, NULL));
        if (r > 0)
            s[r - 1] = bench_now_ns() - t0;
    }
    for (size_t i = 0; i < n; i += n / 7 + 1)
        if (results[i] != burn(i, rounds))
            die("cpu map result", MP_EBADMSG);
    free(items);
    free(results);
}

#endif
