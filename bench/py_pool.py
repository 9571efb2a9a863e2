"""Pool in Python's multiprocessing: the same measurements as bench_pool.c.
Prints one JSON line per benchmark on stdout.

    python3.11 bench/py_pool.py [-n N_MAP] [-c N_CHUNK1] [-r REPEATS]
                                [-a N_APPLY] [-u N_CPU_ITEMS] [-k N_1K]
                                [-i N_IMAP] [-s MAX_SCALE] [BENCH ...]

Every pool is Pool(2) of the fork context unless a row names another start
method; placement is left to the scheduler unless a row says pinned.  At
default arguments every result has at least 10 samples (-r, default 10;
scale_map_py_10000000 has 5).  A row whose sample times a batch reports the
batch average per operation, n being the number of batches.  Each timed loop follows one untimed
warm-up of the same work; every result is checked (outside the timing, or
inside it where bench_pool.c checks inside it too).

  py_pool_map_default  pool.map(square, range(N)), N = 10^6 (-n), default
                       chunksize; one sample is one whole map, per item
  py_pool_map_shm      Python's best practice for big arrays, the fair
                       baseline of mp_pool_map_shared (10^6 int64 items
                       squared into int64 results, both arrays in shared
                       memory, nothing copied in or out): items and results
                       live in two multiprocessing.shared_memory buffers,
                       which the workers attach by name once (initializer);
                       pool.map(square_slice, slices, chunksize=1) over the
                       8 slices (start, stop) that mp's default chunksize
                       makes (ceil(N / 8) items each); each task squares its
                       slice from one buffer into the other.  The per-slice
                       loop is the fastest of those measured on both
                       interpreters (an index loop over memoryview.cast('q')
                       views, ~70-120 ns/item; list comprehensions into
                       array('q'), struct.pack_into and array.frombytes
                       copies were 1.2-4x slower)
  py_pool_map_1k       pool.map over 10^5 (-k) distinct 1 KiB bytes objects,
                       each turned into 1 KiB: every byte XOR 0x5a
                       (bytes.translate with that table); default chunksize;
                       per item
  py_pool_map_chunk1   pool.map(square, range(N), chunksize=1), N = 10^5 (-c;
                       10x fewer items than bench_pool.c)
  py_pool_cold_fork,   one cold one-shot pool of that start method:
  py_pool_cold_spawn,  Pool(2), pool.map(square, range(10000)), close(),
  py_pool_cold_forkserver  join(); all of it is one operation (the warm-up
                       also starts the fork server)
  py_imap_first,       time from the pool.imap call to its first result
  py_imap_first_unordered  (next() of the iterator), 10^5 (-i) trivial
                       items (range), chunksize 100 as in bench_pool.c;
                       ordered and imap_unordered
  py_imap_rate,        the same imaps timed from the call to the last
  py_imap_rate_unordered   result, per item (one imap gives one sample of
                       each); the consumer checks each ordered result,
                       and count and sum of the unordered ones
  py_apply_async_1000  1000 pool.apply_async(square, (i,)), then .get() of
                       all 1000 in order; per task; 20 batches
  py_pool_apply_rtt    pool.apply_async(square, (i,)).get(), with this
                       process, the pool's threads and its workers pinned
                       to one CPU (as bench_pool.c does: a round trip then
                       does not depend on how fast the VM wakes an idle CPU)
  py_pool_apply_rtt_free  the same, placement left to the scheduler
  py_pool_cpu_1w,      a CPU-bound map of 200 (-u) items on Pool(1) and
  py_pool_cpu_2w       Pool(2); each item is about 1 ms of Python arithmetic
                       (calibrated at start, as bench_pool.c calibrates its
                       C items to 1 ms)
  scale_map_py_<N>     pool.map(square, range(N)), default chunksize, the
                       pool started before the timing, per item, for
                       N = 10^3 ... 10^7 (-s); N <= 10^5: 5x as many
                       samples, as bench_pool.c; N = 10^7: min(REPEATS, 5)
                       samples (each map takes seconds)
"""
import multiprocessing
import os
import sys
import time

from bench_stats import report

MASK = (1 << 64) - 1
XOR_TABLE = bytes(b ^ 0x5A for b in range(256))
IMAP_CHUNK = 100      # the same as IMAP_CHUNK of bench_pool.c
COLD_ITEMS = 10000
ASYNC_TASKS = 1000
SCALE_SIZES = (1000, 10000, 100000, 1000000, 10000000)


def square(x):
    return x * x


def xor_kib(b):
    return b.translate(XOR_TABLE)


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


def map_bench(ctx, name, n, chunksize, reps):
    out = []
    with ctx.Pool(2) as pool:
        for r in range(reps + 1):  # the first map warms up
            t0 = time.perf_counter_ns()
            got = pool.map(square, range(n), chunksize)
            t = time.perf_counter_ns() - t0
            if r > 0:
                out.append(t)
            assert len(got) == n and all(v == i * i for i, v in enumerate(got))
            del got
    report(name, out, n)


# ---- map over slices of shared memory --------------------------------------

_shm = {}


def shm_attach(in_name, out_name):
    """Pool initializer: attach both buffers once, keep int64 views."""
    from multiprocessing import shared_memory
    a = shared_memory.SharedMemory(in_name)
    b = shared_memory.SharedMemory(out_name)
    _shm["keep"] = (a, b)
    _shm["in"] = a.buf.cast("q")
    _shm["out"] = b.buf.cast("q")


def square_slice(bounds):
    lo, hi = bounds
    src, dst = _shm["in"], _shm["out"]
    for i in range(lo, hi):
        v = src[i]
        dst[i] = v * v


def shm_bench(ctx, name, n, reps):
    from array import array
    from multiprocessing import shared_memory
    a = shared_memory.SharedMemory(create=True, size=n * 8)
    b = shared_memory.SharedMemory(create=True, size=n * 8)
    try:
        src, dst = a.buf.cast("q"), b.buf.cast("q")
        src[:] = array("q", range(n))
        want = array("q", [i * i for i in range(n)]).tobytes()
        ones = b"\xff" * (n * 8)
        per = -(-n // 8)  # mp's default chunksize: ceil(n / (4 x 2 workers))
        slices = [(lo, min(lo + per, n)) for lo in range(0, n, per)]
        out = []
        with ctx.Pool(2, shm_attach, (a.name, b.name)) as pool:
            for r in range(reps + 1):  # the first map warms up
                b.buf[:n * 8] = ones
                t0 = time.perf_counter_ns()
                pool.map(square_slice, slices, 1)
                t = time.perf_counter_ns() - t0
                if r > 0:
                    out.append(t)
                assert b.buf[:n * 8].tobytes() == want
        src.release()
        dst.release()
        report(name, out, n)
    finally:
        a.close()
        a.unlink()
        b.close()
        b.unlink()


# ---- map of 1 KiB items --------------------------------------------------------

def map1k_bench(ctx, name, n, reps):
    base = bytes(range(256)) * 5
    # distinct objects (pickle would send a repeated object once per chunk);
    # item i byte k is (i + k) & 0xff, as in bench_pool.c
    items = [base[i % 256:i % 256 + 1024] for i in range(n)]
    want = [x.translate(XOR_TABLE) for x in items]
    out = []
    with ctx.Pool(2) as pool:
        for r in range(reps + 1):
            t0 = time.perf_counter_ns()
            got = pool.map(xor_kib, items)
            t = time.perf_counter_ns() - t0
            if r > 0:
                out.append(t)
            assert got == want
            del got
    report(name, out, n)


# ---- cold one-shot pool ------------------------------------------------------------

def cold_bench(method, name, reps):
    ctx = multiprocessing.get_context(method)
    want = [i * i for i in range(COLD_ITEMS)]
    out = []
    for r in range(reps + 1):  # the first also starts the fork server
        t0 = time.perf_counter_ns()
        pool = ctx.Pool(2)
        got = pool.map(square, range(COLD_ITEMS))
        pool.close()
        pool.join()
        t = time.perf_counter_ns() - t0
        if r > 0:
            out.append(t)
        assert got == want
    report(name, out)


# ---- imap ------------------------------------------------------------------------

def imap_bench(ctx, first_name, rate_name, n, ordered, reps):
    firsts, alls = [], []
    want_sum = sum(i * i for i in range(n))
    with ctx.Pool(2) as pool:
        for r in range(reps + 1):  # the first imap warms up
            t0 = time.perf_counter_ns()
            if ordered:
                it = pool.imap(square, range(n), IMAP_CHUNK)
                v = next(it)
                t1 = time.perf_counter_ns()
                assert v == 0
                i = 1
                for v in it:
                    assert v == i * i
                    i += 1
                count = i
            else:
                it = pool.imap_unordered(square, range(n), IMAP_CHUNK)
                total = next(it)
                t1 = time.perf_counter_ns()
                count = 1
                for v in it:
                    total += v
                    count += 1
                assert total == want_sum
            t2 = time.perf_counter_ns()
            assert count == n
            if r > 0:
                firsts.append(t1 - t0)
                alls.append(t2 - t0)
    report(first_name, firsts)
    report(rate_name, alls, n)


# ---- apply_async --------------------------------------------------------------------

def async_bench(ctx, name, reps):
    out = []
    with ctx.Pool(2) as pool:
        for r in range(reps + 1):  # the first batch warms up
            t0 = time.perf_counter_ns()
            handles = [pool.apply_async(square, (i,)) for i in range(ASYNC_TASKS)]
            for i, h in enumerate(handles):
                if h.get() != i * i:
                    raise AssertionError("apply_async result")
            t = time.perf_counter_ns() - t0
            if r > 0:
                out.append(t)
    report(name, out, ASYNC_TASKS)


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
    for i in range(0, n, n // 7 + 1):
        assert got[i] == burn(items[i])
    report(name, out, n)


def scale_bench(ctx, max_n, reps):
    for n in SCALE_SIZES:
        if n > max_n:
            break
        r = 5 * reps if n <= 100000 else reps if n < 10000000 else min(reps, 5)
        map_bench(ctx, f"scale_map_py_{n}", n, None, r)


BENCHES = ("map", "shm", "map1k", "cold", "imap", "async", "apply", "cpu", "scale",
           "chunk1")


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("-c", type=int, default=100_000)
    ap.add_argument("-r", type=int, default=10)
    ap.add_argument("-a", type=int, default=5000)
    ap.add_argument("-u", type=int, default=200)
    ap.add_argument("-k", type=int, default=100_000)
    ap.add_argument("-i", type=int, default=100_000)
    ap.add_argument("-s", type=int, default=10_000_000)
    ap.add_argument("which", nargs="*", metavar="BENCH",
                    help="run only these: " + " ".join(BENCHES))
    args = ap.parse_args()
    for w in args.which:
        if w not in BENCHES:
            ap.error(f"unknown benchmark {w!r}; one of: {' '.join(BENCHES)}")
    want = set(args.which) or set(BENCHES)
    ctx = multiprocessing.get_context("fork")
    r = args.r
    if "map" in want:
        map_bench(ctx, "py_pool_map_default", args.n, None, r)
    if "shm" in want:
        shm_bench(ctx, "py_pool_map_shm", args.n, r)
    if "map1k" in want:
        map1k_bench(ctx, "py_pool_map_1k", args.k, r)
    if "cold" in want:
        for method in ("fork", "spawn", "forkserver"):
            cold_bench(method, f"py_pool_cold_{method}", r)
    if "imap" in want:
        imap_bench(ctx, "py_imap_first", "py_imap_rate", args.i, True, r)
        imap_bench(ctx, "py_imap_first_unordered", "py_imap_rate_unordered", args.i, False, r)
    if "async" in want:
        async_bench(ctx, "py_apply_async_1000", 2 * r)
    if "apply" in want:
        apply_bench(ctx, "py_pool_apply_rtt", args.a, min(os.sched_getaffinity(0)))
        apply_bench(ctx, "py_pool_apply_rtt_free", args.a, None)
    if "cpu" in want:
        rounds = calibrate()
        cpu_bench(ctx, "py_pool_cpu_1w", 1, args.u, r, rounds)
        cpu_bench(ctx, "py_pool_cpu_2w", 2, args.u, r, rounds)
    if "scale" in want:
        scale_bench(ctx, args.s, r)
    if "chunk1" in want:
        map_bench(ctx, "py_pool_map_chunk1", args.c, 1, r)


if __name__ == "__main__":
    main()
