"""Lock and Event in Python's multiprocessing: the same measurements as
bench_sync.c.  Prints one JSON line per benchmark on stdout.

    python3.11 bench/py_sync.py [-u SAMPLES] [-b BATCH] [-c ROUNDS] [-k OPS]
                                [-n ROUND_TRIPS] [-a same|split|free]
                                [uncontended|contended|pingpong ...]

  py_lock_uncontended  Lock().acquire() + release() in one process; each
                       sample times a batch and reports one pair
  py_lock_contended    this process and a forked child, pinned to two CPUs,
                       each doing acquire / counter.value += 1 / release on
                       one Lock (the counter a RawValue): wall time over the
                       operations of both, per round of K each
  py_event_pingpong    one round trip: A sets e1 and waits for e2 (then
                       clears it), B waits for e1, clears it and sets e2;
                       both processes pinned as bench_sync pins them (-a)
"""
import multiprocessing
import os
import sys
import time

from bench_stats import report


def uncontended(ctx, n, batch):
    lock = ctx.Lock()
    acq, rel = lock.acquire, lock.release
    rng = range(batch)
    warm = n // 10 + 1
    out = []
    for i in range(n + warm):
        t0 = time.perf_counter_ns()
        for _ in rng:
            acq()
            rel()
        t1 = time.perf_counter_ns()
        if i >= warm:
            out.append(t1 - t0)
    report("py_lock_uncontended", out, per=batch)


def ops(lock, counter, k):
    acq, rel = lock.acquire, lock.release
    for _ in range(k):
        acq()
        counter.value += 1
        rel()


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def placement(how):
    """(parent CPU, child CPU) on the first two CPUs we may use; None: anywhere."""
    cpus = sorted(os.sched_getaffinity(0))
    if how == "same":
        return cpus[0], cpus[0]
    if how == "split" and len(cpus) >= 2:
        return cpus[0], cpus[1]
    if how == "split":
        print("py_sync: one CPU only: two processes cannot run at once", file=sys.stderr)
    return None, None


yield_cpu = os.sched_yield  # the harness waits as bench_sync's does


def contender(lock, counter, go, done, rounds, k, cpu):
    pin(cpu)
    for r in range(1, rounds + 1):
        while go.value != r:
            yield_cpu()
        ops(lock, counter, k)
        done.value = r


def contended(ctx, n, k, cpu_a, cpu_b):
    warm = n // 10 + 1
    rounds = n + warm
    lock = ctx.Lock()
    counter = ctx.RawValue("q", 0)
    go = ctx.RawValue("L", 0)
    done = ctx.RawValue("L", 0)
    saved = os.sched_getaffinity(0)
    pin(cpu_a)
    p = ctx.Process(target=contender, args=(lock, counter, go, done, rounds, k, cpu_b))
    p.start()
    out = []
    for r in range(1, rounds + 1):
        t0 = time.perf_counter_ns()
        go.value = r
        ops(lock, counter, k)
        while done.value != r:
            yield_cpu()
        t1 = time.perf_counter_ns()
        if r > warm:
            out.append(t1 - t0)
    p.join()
    os.sched_setaffinity(0, saved)
    if p.exitcode != 0 or counter.value != 2 * k * rounds:
        raise SystemExit(f"py_sync: contended: exit code {p.exitcode}, "
                         f"counter {counter.value}, expected {2 * k * rounds}")
    report("py_lock_contended", out, per=2 * k)


def ponger(e1, e2, total, cpu):
    pin(cpu)
    for _ in range(total):
        e1.wait()
        e1.clear()
        e2.set()


def pingpong(ctx, n, cpu_a, cpu_b):
    warm = n // 10 + 1
    total = n + warm
    e1, e2 = ctx.Event(), ctx.Event()
    saved = os.sched_getaffinity(0)
    pin(cpu_a)
    p = ctx.Process(target=ponger, args=(e1, e2, total, cpu_b))
    p.start()
    out = []
    set1, wait2, clear2 = e1.set, e2.wait, e2.clear
    for i in range(total):
        t0 = time.perf_counter_ns()
        set1()
        wait2()
        clear2()
        t1 = time.perf_counter_ns()
        if i >= warm:
            out.append(t1 - t0)
    p.join()
    os.sched_setaffinity(0, saved)
    if p.exitcode != 0:
        raise SystemExit(f"py_sync: ponger exited with {p.exitcode}")
    report("py_event_pingpong", out)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-u", type=int, default=1000, help="uncontended samples")
    ap.add_argument("-b", type=int, default=1000, help="acquire+release pairs per sample")
    ap.add_argument("-c", type=int, default=50, help="contended rounds")
    ap.add_argument("-k", type=int, default=2000, help="operations per process per round")
    ap.add_argument("-n", type=int, default=5000, help="ping-pong round trips")
    ap.add_argument("-a", choices=["same", "split", "free"], default="same",
                    help="ping-pong placement: one CPU, two CPUs, unpinned")
    ap.add_argument("which", nargs="*", help="uncontended, contended, pingpong (default: all)")
    args = ap.parse_args()
    groups = ["uncontended", "contended", "pingpong"]
    which = args.which or groups
    if any(w not in groups for w in which):
        ap.error(f"benchmarks are {', '.join(groups)}")
    ctx = multiprocessing.get_context("fork")
    if "uncontended" in which:
        uncontended(ctx, args.u, args.b)
    if "contended" in which:
        contended(ctx, args.c, args.k, *placement("split"))
    if "pingpong" in which:
        pingpong(ctx, args.n, *placement(args.a))


if __name__ == "__main__":
    main()
