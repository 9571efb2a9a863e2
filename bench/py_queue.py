"""Queue and SimpleQueue in Python's multiprocessing: the same measurements
as bench_queue.c.  Prints one JSON line per benchmark on stdout.

    python3.11 bench/py_queue.py [-b BATCHES] [-n SMALL_PER_BATCH]
                                 [-m BIG_PER_BATCH] [-a split|same|free]
                                 [small|multi|big ...]

  py_queue8, py_simplequeue8   8-byte bytes objects from one forked producer
                               to this process: put / get on a Queue, on a
                               SimpleQueue
  py_queue8_4p                 the same from four producers (a Queue)
  py_queue1m                   1 MiB bytes objects, one producer (a Queue)

Each sample is one batch: the producers wait for a go message on a pipe,
then put their share; the sample is the time from sending go until this
process has got the batch's last message, divided by the batch's messages.
The first batch warms up and is not counted.  The consumer loop only calls
get(); the last message of each batch is checked.  Placement (-a) as in
bench_queue: "split" (default) pins this process to the first CPU and the
producers (with their feeder threads) to the second.
"""
import multiprocessing
import os
import sys
import time

from bench_stats import report

BIG = 1 << 20


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def placement(how):
    """(consumer CPU, producers' CPU) on the first two CPUs we may use;
    None: anywhere."""
    cpus = sorted(os.sched_getaffinity(0))
    if how == "same":
        return cpus[0], cpus[0]
    if how == "split" and len(cpus) >= 2:
        return cpus[0], cpus[1]
    if how == "split":
        print("py_queue: one CPU only: the two sides cannot run at once", file=sys.stderr)
    return None, None


def producer(q, go, ident, per, size, batches, cpu):
    pin(cpu)
    put = q.put
    seq = 0
    big = bytes(size) if size > 8 else None
    for _ in range(batches):
        go.recv_bytes()
        if big is None:
            for _ in range(per):
                put((ident << 56 | seq).to_bytes(8, "little"))
                seq += 1
        else:
            for _ in range(per):
                put(big)
            seq += per


def bench(ctx, name, q, nprod, per, size, batches, where):
    total = batches + 1
    saved = os.sched_getaffinity(0)
    pin(where[0])
    gos, procs = [], []
    for i in range(nprod):
        r, w = ctx.Pipe(False)
        p = ctx.Process(target=producer, args=(q, r, i, per, size, total, where[1]))
        p.start()
        r.close()
        gos.append(w)
        procs.append(p)
    get = q.get
    rng = range(per * nprod)
    out = []
    for b in range(total):
        t0 = time.perf_counter_ns()
        for w in gos:
            w.send_bytes(b"g")
        for _ in rng:
            m = get()
        t1 = time.perf_counter_ns()
        if size == 8 and nprod == 1:
            assert int.from_bytes(m, "little") == (b + 1) * per - 1, "FIFO"
        else:
            assert len(m) == size
        if b > 0:
            out.append(t1 - t0)
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"{name}: a producer exited with {p.exitcode}"
    for w in gos:
        w.close()
    os.sched_setaffinity(0, saved)
    report(name, out, per=per * nprod, per_sample=per * nprod)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", type=int, default=10)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("-m", type=int, default=200)
    ap.add_argument("-a", default="split", choices=["split", "same", "free"])
    ap.add_argument("which", nargs="*", help="small, multi, big (default: all)")
    args = ap.parse_args()
    groups = {"small", "multi", "big"}
    which = set(args.which or groups)
    if not which <= groups:
        ap.error(f"unknown: {' '.join(sorted(which - groups))}")
    ctx = multiprocessing.get_context("fork")
    where = placement(args.a)
    if "small" in which:
        bench(ctx, "py_queue8", ctx.Queue(), 1, args.n, 8, args.b, where)
        bench(ctx, "py_simplequeue8", ctx.SimpleQueue(), 1, args.n, 8, args.b, where)
    if "multi" in which:
        bench(ctx, "py_queue8_4p", ctx.Queue(), 4, max(1, args.n // 4), 8, args.b, where)
    if "big" in which:
        bench(ctx, "py_queue1m", ctx.Queue(), 1, args.m, BIG, args.b, where)


if __name__ == "__main__":
    main()
