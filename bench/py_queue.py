"""Queue, SimpleQueue and JoinableQueue in Python's multiprocessing: the
same measurements as bench_queue.c (the same message sizes, counts, batches
and CPU placement).  Prints one JSON line per result on stdout.

    python3 bench/py_queue.py [-b BATCHES] [-n SMALL_PER_BATCH]
                              [-m BIG_PER_BATCH] [-a split|same|free]
                              [small|multi|join|bounded|big|scale ...]

One operation is one message, put by a producer and got by a consumer; a
result is the time of one message (a batch's wall time divided by its
messages; one sample per batch, so the spread is that of batch averages).

  py_queue8, py_simplequeue8   8-byte bytes objects from one forked producer
                               to this process: put / get on a Queue, on a
                               SimpleQueue
  py_queue8_4p                 the same from four producers (a Queue)
  py_queue8_4x4                four producer processes to four consumer
                               processes (children; this process only times),
                               a Queue: after its share of a batch each
                               producer puts an end marker (b""); a batch ends
                               when the consumers have got all four (each one
                               got tells this process with a byte on a pipe).
                               Markers are not counted as messages.  The
                               consumers count what they get (the counts must
                               add up at the end); unlike bench_queue's they
                               do not check each producer's order, so that
                               Python is not slowed by checks
  py_jqueue8                   a JoinableQueue: this process puts a batch of
                               N 8-byte messages, one consumer child gets each
                               and calls task_done, this process calls join();
                               the time from the first put until join returns,
                               per message
  py_bqueue8                   Queue(maxsize=64), 8-byte messages, 1 -> 1 as
                               py_queue8 (the backpressure row; bench_queue's
                               mp_bqueue8 and a Boost.Interprocess
                               message_queue of 64 x 8 B are its peers)
  py_queue1m                   1 MiB bytes objects, one producer (a Queue)
  scale_queue_py_SIZE          SIZE-byte bytes objects, one producer (a Queue),
                               for SIZE = 8, 64, ... 4194304 as in bench_queue;
                               messages per batch: scale_count

Each 1 -> 1 and 4 -> 1 sample is one batch: the producers wait for a go
message on a pipe, then put their share; the sample is the time from
sending go until this process has got the batch's last message, divided by
the batch's messages.  The first batch warms up and is not counted.  The
consumer loop only calls get(); the last message of each batch is checked
(bench_queue checks every message: that flatters Python, not multiproc).
Producers of messages bigger than 8 bytes put the same bytes object each
time (a Queue pickles each put anyway).  Placement (-a) as in bench_queue:
"split" (default) pins the consumers to the first CPU and the producers
(with their feeder threads) to the second.
"""
import multiprocessing
import os
import sys
import time

from bench_stats import report

BIG = 1 << 20
MiB = 1 << 20
BOUND = 64
SCALE_SIZES = (8, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


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


def scale_count(size, nsmall):
    """Messages per batch at @size: 32 MiB worth, at least 16, at most half
    of -n, scaled by -n against its default (bench_queue.c: scale_count)."""
    want = 32 * MiB / size * (nsmall / 100000)
    n = nsmall // 2 if want > nsmall // 2 else int(want)
    return max(n, 16)


def producer(q, go, ident, per, size, batches, cpu, marks):
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
        if marks:
            put(b"")


def consumer(q, wfd, res, cpu):
    """A consumer of the 4x4 run: gets until None; b"" is an end marker."""
    pin(cpu)
    get = q.get
    n = 0
    while True:
        m = get()
        if m:
            n += 1
        elif m is None:
            break
        else:
            os.write(wfd, b"e")
    res.put(n)


def bench(ctx, name, q, nprod, per, size, batches, where, ncons=0):
    total = batches + 1
    saved = os.sched_getaffinity(0)
    pin(where[0])
    gos, procs, cons = [], [], []
    for i in range(nprod):
        r, w = ctx.Pipe(False)
        p = ctx.Process(target=producer,
                        args=(q, r, i, per, size, total, where[1], ncons > 0))
        p.start()
        r.close()
        gos.append(w)
        procs.append(p)
    if ncons:
        rfd, wfd = os.pipe()
        res = ctx.SimpleQueue()
        for _ in range(ncons):
            p = ctx.Process(target=consumer, args=(q, wfd, res, where[0]))
            p.start()
            cons.append(p)
        os.close(wfd)
    get = q.get
    rng = range(per * nprod)
    out = []
    ends = 0
    for b in range(total):
        t0 = time.perf_counter_ns()
        for w in gos:
            w.send_bytes(b"g")
        if ncons:
            want = (b + 1) * nprod
            while ends < want:
                ends += len(os.read(rfd, 64))
        else:
            for _ in rng:
                m = get()
        t1 = time.perf_counter_ns()
        if ncons:
            pass
        elif size == 8 and nprod == 1:
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
    if ncons:
        for _ in cons:
            q.put(None)
        got = sum(res.get() for _ in cons)
        for p in cons:
            p.join()
            assert p.exitcode == 0, f"{name}: a consumer exited with {p.exitcode}"
        os.close(rfd)
        assert got == per * nprod * total, f"{name}: {got} messages got of {per * nprod * total}"
    os.sched_setaffinity(0, saved)
    report(name, out, per=per * nprod, per_sample=per * nprod)


def join_consumer(q, n, cpu):
    pin(cpu)
    get = q.get
    done = q.task_done
    m = None
    for _ in range(n):
        m = get()
        done()
    assert int.from_bytes(m, "little") == n - 1, "FIFO"


def bench_join(ctx, name, per, batches, where):
    """py_jqueue8: this process is the producer (on the producers' CPU)."""
    total = batches + 1
    saved = os.sched_getaffinity(0)
    pin(where[1])
    q = ctx.JoinableQueue()
    p = ctx.Process(target=join_consumer, args=(q, per * total, where[0]))
    p.start()
    put = q.put
    seq = 0
    out = []
    for b in range(total):
        t0 = time.perf_counter_ns()
        for _ in range(per):
            put(seq.to_bytes(8, "little"))
            seq += 1
        q.join()
        t1 = time.perf_counter_ns()
        if b > 0:
            out.append(t1 - t0)
    p.join()
    assert p.exitcode == 0, f"{name}: the consumer exited with {p.exitcode}"
    os.sched_setaffinity(0, saved)
    report(name, out, per=per, per_sample=per)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-b", type=int, default=10)
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("-m", type=int, default=200)
    ap.add_argument("-a", default="split", choices=["split", "same", "free"])
    ap.add_argument("which", nargs="*",
                    help="small, multi, join, bounded, big, scale (default: all)")
    args = ap.parse_args()
    groups = {"small", "multi", "join", "bounded", "big", "scale"}
    which = set(args.which or groups)
    if not which <= groups:
        ap.error(f"unknown: {' '.join(sorted(which - groups))}")
    ctx = multiprocessing.get_context("fork")
    where = placement(args.a)
    n, b = args.n, args.b
    if "small" in which:
        bench(ctx, "py_queue8", ctx.Queue(), 1, n, 8, b, where)
        bench(ctx, "py_simplequeue8", ctx.SimpleQueue(), 1, n, 8, b, where)
    if "multi" in which:
        bench(ctx, "py_queue8_4p", ctx.Queue(), 4, max(1, n // 4), 8, b, where)
        bench(ctx, "py_queue8_4x4", ctx.Queue(), 4, max(1, n // 4), 8, b, where, ncons=4)
    if "join" in which:
        bench_join(ctx, "py_jqueue8", n, b, where)
    if "bounded" in which:
        bench(ctx, "py_bqueue8", ctx.Queue(maxsize=BOUND), 1, n, 8, b, where)
    if "big" in which:
        bench(ctx, "py_queue1m", ctx.Queue(), 1, args.m, BIG, b, where)
    if "scale" in which:
        for size in SCALE_SIZES:
            bench(ctx, f"scale_queue_py_{size}", ctx.Queue(), 1, scale_count(size, n), size,
                  b, where)


if __name__ == "__main__":
    main()
