"""mpi4py.futures: the Python side of bench_mpi.c's rows, on the same ranks.
Prints one JSON line per benchmark on stdout (rank 0).

    mpiexec -n 3 [...] /usr/bin/python3 -m mpi4py.futures bench/py_mpi.py \
        [-n N_MAP] [-r REPEATS] [-u N_CPU_ITEMS] [BENCH ...]

Rank 0 runs this script; mpi4py.futures makes the other ranks (2 of 3)
its workers, each running the items in its own rank process.  Every map is
MPIPoolExecutor().map(fn, items, chunksize=ceil(n / 8)): Python's best
ordinary way, the chunksize Python's Pool would pick for 2 workers
(MPIPoolExecutor's default, 1, sends each item alone); the executor and
its workers are started before the timing, and one untimed map warms up.
Every result is checked after the timing.

  py_mpi_map_trivial  executor.map(square, range(N)), N = 10^6 (-n),
                      consumed into a list; per item, one sample a map
  py_mpi_map_cpu      executor.map(burn, items) of 200 (-u) items, each
                      about 1 ms of Python arithmetic (xorshift64* rounds
                      kept to 64 bits, calibrated on rank 0 at start, as
                      py_pool.py does); one sample is the whole map
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_stats import report  # noqa: E402

MASK = (1 << 64) - 1
WORKERS = 2


def square(x):
    return x * x


def burn(item):
    """xorshift64* rounds, as bench_mpi.c does (kept to 64 bits)."""
    x, rounds = item
    x |= 1
    for _ in range(rounds):
        x ^= x >> 12
        x = (x ^ (x << 25)) & MASK
        x ^= x >> 27
        x = (x * 0x2545F4914F6CDD1D) & MASK
    return x


def calibrate():
    """Rounds of burn() that take about 1 ms here (fastest of a few)."""
    rounds, best = 2000, None
    for i in range(5):
        t0 = time.perf_counter_ns()
        burn((i, rounds))
        t = time.perf_counter_ns() - t0
        best = t if best is None or t < best else best
    return max(1, rounds * 1_000_000 // max(best, 1))


def chunk(n):
    return max(1, -(-n // (4 * WORKERS)))


def map_bench(ex, name, n, reps):
    out = []
    for r in range(reps + 1):  # the first map warms up
        t0 = time.perf_counter_ns()
        got = list(ex.map(square, range(n), chunksize=chunk(n)))
        t = time.perf_counter_ns() - t0
        if r > 0:
            out.append(t)
        assert len(got) == n and all(v == i * i for i, v in enumerate(got))
        del got
    report(name, out, n)


def cpu_bench(ex, name, n, reps, rounds):
    items = [(i, rounds) for i in range(n)]
    list(ex.map(burn, items[:WORKERS], chunksize=1))  # warm up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        got = list(ex.map(burn, items, chunksize=chunk(n)))
        out.append(time.perf_counter_ns() - t0)
    for i in range(0, n, n // 7 + 1):
        assert got[i] == burn(items[i])
    report(name, out)


BENCHES = ("map", "cpu")


def main():
    import argparse
    from mpi4py.futures import MPIPoolExecutor
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1_000_000)
    ap.add_argument("-r", type=int, default=10)
    ap.add_argument("-u", type=int, default=200)
    ap.add_argument("which", nargs="*", metavar="BENCH",
                    help="run only these: " + " ".join(BENCHES))
    args = ap.parse_args()
    for w in args.which:
        if w not in BENCHES:
            ap.error(f"unknown benchmark {w!r}; one of: {' '.join(BENCHES)}")
    want = set(args.which) or set(BENCHES)
    from mpi4py import MPI
    if MPI.COMM_WORLD.Get_size() != WORKERS + 1:
        sys.exit(f"py_mpi.py: {MPI.COMM_WORLD.Get_size()} ranks; run it on "
                 f"{WORKERS + 1} under -m mpi4py.futures")
    with MPIPoolExecutor() as ex:
        ex.bootup()  # every worker up before the timing
        if "map" in want:
            map_bench(ex, "py_mpi_map_trivial", args.n, args.r)
        if "cpu" in want:
            cpu_bench(ex, "py_mpi_map_cpu", args.u, args.r, calibrate())


if __name__ == "__main__":
    main()
