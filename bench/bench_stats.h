/*
 * bench_stats.h: what every C benchmark program shares: a clock, and the
 * JSON line bench/run.py reads:
 *
 *   {"name": ..., "n": ..., "median_us": ..., "p10_us": ..., "p90_us": ...,
 *    "mean_us": ..., "min_us": ...}
 */
#ifndef BENCH_STATS_H
#define BENCH_STATS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of sorted samples, by linear interpolation. */
static inline double bench_quantile(const uint64_t *s, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    double frac = pos - (double)i;
    if (i + 1 >= n)
        return (double)s[n - 1];
    return (double)s[i] * (1 - frac) + (double)s[i + 1] * frac;
}

/* Sort @s (n samples, ns each) and print its JSON line. */
static inline void bench_report(const char *name, uint64_t *s, size_t n)
{
    double sum = 0;
    qsort(s, n, sizeof *s, bench_cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)s[i];
    printf("{\"name\": \"%s\", \"n\": %zu, \"median_us\": %.3f, \"p10_us\": %.3f, "
           "\"p90_us\": %.3f, \"mean_us\": %.3f, \"min_us\": %.3f}\n",
           name, n, bench_quantile(s, n, 0.5) / 1e3, bench_quantile(s, n, 0.1) / 1e3,
           bench_quantile(s, n, 0.9) / 1e3, sum / (double)n / 1e3, (double)s[0] / 1e3);
    fflush(stdout);
}

/* Samples that each timed @per operations (a batch), reported as the time
 * of one: the cell is then the spread of batch averages.  @per is printed
 * as "per_sample". */
static inline void bench_report_per(const char *name, uint64_t *s, size_t n, double per)
{
    double sum = 0, d = per * 1e3;
    qsort(s, n, sizeof *s, bench_cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)s[i];
    printf("{\"name\": \"%s\", \"n\": %zu, \"per_sample\": %.0f, \"median_us\": %.6f, "
           "\"p10_us\": %.6f, \"p90_us\": %.6f, \"mean_us\": %.6f, \"min_us\": %.6f}\n",
           name, n, per, bench_quantile(s, n, 0.5) / d, bench_quantile(s, n, 0.1) / d,
           bench_quantile(s, n, 0.9) / d, sum / (double)n / d, (double)s[0] / d);
    fflush(stdout);
}

#endif
