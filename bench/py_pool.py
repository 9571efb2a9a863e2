"""Pool in Python's multiprocessing: the same measurements as bench_pool.c.
Prints one JSON line per benchmark on stdout.

    python3.11 bench/py_pool.py [-n N_MAP] [-c N_CHUNK1] [-r REPEATS]
                                [-a N_APPLY] [-u N_CPU_ITEMS]

Every pool is Pool(2) of the fork context.

  py_pool_map_default  pool.map(square, range(N)), default chunksize; one
                       sample is one whole map, reported per item
  py_pool_map_chunk1   the same with chunksize=1 (fewer items: Python needs
                       tens of microseconds for each)
  py_pool_apply_rtt    pool.apply_async(square, (i,)).get(), with this
                       process, the pool's threads and its workers pinned
                       to one CPU (as bench_pool.c does: a round trip then
                       does not depend on how fast the VM wakes an idle CPU)
  py_pool_apply_rtt_free  the same, placement left to the scheduler
  py_pool_cpu_1w,      a CPU-bound map on Pool(1) and Pool(2); each item is
  py_pool_cpu_2w       about 1 ms of Python arithmetic (calibrated at start,
                       as bench_pool.c calibrates its C items to 1 ms)
"""
import multiprocessing
import os
import time

MASK = (1 << 64) - 1


def square(x):
    return x * x


def burn(item):
    """xorshift64* rounds, as bench_pool.c does (kept to 64 bits)."""
    x, rounds = item
    x |= 1
    for _ in range(rounds):
        x ^= x >> 12
        x = (x ^ (x << 25)) & MASK
        x ^= x >> 27
        x = (x * 0x2545F4914F6CDD1D) & MASK
    return x


def quantile(s, q):
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return float(s[-1])
    frac = pos - i
    return s[i] * (1 - frac) + s[i + 1] * frac


def report(name, samples, per=1):
    """Samples in ns, each of @per operations: the line of one operation."""
    import json
    s = sorted(samples)
    d = per * 1e3
    print(json.dumps({
        "name": name, "n": len(s),
        "median_us": quantile(s, 0.5) / d, "p10_us": quantile(s, 0.1) / d,
        "p90_us": quantile(s, 0.9) / d, "mean_us": sum(s) / len(s) / d,
        "min_us": s[0] / d, "per": per}), flush=True)


def map_bench(ctx, name, n, chunksize, reps):
    out = []
    with ctx.Pool(2) as pool:
        for r in range(reps + 1):  # the first map warms up
            t0 = time.perf_counter_ns()
            got = pool.map(square, range(n), chunksize)
            t = time.perf_counter_ns() - t0
            if r > 0:
                out.append(t)
            assert got[-1] == (n - 1) * (n - 1) and len(got) == n
    report(name, out, n)


def apply_bench(ctx, name, n, cpu):
    """@cpu: pin this process and so the pool's threads and workers to it
    (None: leave placement to the scheduler)."""
    saved = os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        apply_loop(ctx, name, n)
    finally:
        os.sched_setaffinity(0, saved)


def apply_loop(ctx, name, n):
    out = []
    with ctx.Pool(2) as pool:
        for i in range(n + n // 10):  # the first tenth warms up
            v = i % 1000
            t0 = time.perf_counter_ns()
            got = pool.apply_async(square, (v,)).get()
            t = time.perf_counter_ns() - t0
            if i >= n // 10:
                out.append(t)
            assert got == v * v
    report(name, out)


def calibrate():
    """Rounds of burn() that take about 1 ms here (fastest of a few)."""
    rounds, best = 2000, None
    for i in range(5):
        t0 = time.perf_counter_ns()
        burn((i, rounds))
        t = time.perf_counter_ns() - t0
        best = t if best is None or t < best else best
    return max(1, rounds * 1_000_000 // max(best, 1))


def cpu_bench(ctx, name, workers, n, reps, rounds):
    items = [(i, rounds) for i in range(n)]
    out = []
    with ctx.Pool(workers) as pool:
        pool.map(burn, items[:workers])  # warm up
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            got = pool.map(burn, items)
            out.append(time.perf_counter_ns() - t0)
    assert got[3] == burn(items[3])
    report(name, out, n)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("-c", type=int, default=100_000)
    ap.add_argument("-r", type=int, default=5)
    ap.add_argument("-a", type=int, default=5000)
    ap.add_argument("-u", type=int, default=200)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    map_bench(ctx, "py_pool_map_default", args.n, None, args.r)
    apply_bench(ctx, "py_pool_apply_rtt", args.a, min(os.sched_getaffinity(0)))
    apply_bench(ctx, "py_pool_apply_rtt_free", args.a, None)
    rounds = calibrate()
    reps = min(args.r, 3)
    cpu_bench(ctx, "py_pool_cpu_1w", 1, args.u, reps, rounds)
    cpu_bench(ctx, "py_pool_cpu_2w", 2, args.u, reps, rounds)
    map_bench(ctx, "py_pool_map_chunk1", args.c, 1, min(args.r, 3))


if __name__ == "__main__":
    main()
