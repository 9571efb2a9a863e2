"""Lock, Event, Semaphore, Condition, Barrier and a 100 MB shared array in
Python's multiprocessing (fork context): the same measurements as
bench_sync.c.  Prints one JSON line per benchmark on stdout.

    python3.11 bench/py_sync.py [-u SAMPLES] [-b BATCH] [-c ROUNDS] [-k OPS]
                                [-n ROUND_TRIPS] [-B TURNS_PER_SAMPLE]
                                [-A ARRAY_SAMPLES] [-M ARRAY_MIB] [--array shm|ctypes]
                                [-a same|split|free]
                                [uncontended|contended|pingpong|sem|cond|barrier|array ...]

  py_lock_uncontended  Lock().acquire() + release() in one process; each
                       sample times a batch and reports one pair
  py_lock_contended    this process and a forked child, pinned to two CPUs,
                       each doing acquire / counter.value += 1 / release on
                       one Lock (the counter a RawValue): wall time over the
                       operations of both, per round of K each
  py_event_pingpong    one round trip: A sets e1 and waits for e2 (then
                       clears it), B waits for e1, clears it and sets e2;
                       both processes pinned as bench_sync pins them (-a)
  py_sem_pingpong      one round trip on two Semaphore(0): A releases s1 and
                       acquires s2, B acquires s1 and releases s2; pinned as
                       the Event's; both values checked 0 at the end
  py_cond_pingpong     one round trip through Condition(Lock()) and a
                       RawValue('i') turn word: each side, per turn, `with
                       cond: cond.wait_for(mine); turn.value = other;
                       cond.notify()`; one of A's turns is a round trip;
                       pinned as the Event's; batches of -B turns, the
                       average of one per sample (as bench_sync's)
  py_barrier2          one pass of Barrier(2), both processes looping on
                       wait(); pinned as the Event's; batches of -B passes
  py_array100m         one operation: create a 100 MiB (-M) shared buffer of
                       doubles and fill it with i mod 1024 (the filling
                       included, as bench_sync's), a forked child sums it
                       with sum() over memoryview.cast('d') into a
                       RawValue('d') made once beforehand, join, check the
                       sum, free the buffer.  The buffer: --array shm
                       (default) shared_memory.SharedMemory(create=True) +
                       close + unlink, the child using the inherited object;
                       --array ctypes Array('d', n, lock=False), which zeroes
                       its memory first and was some 30% slower here.  The
                       fill: one block of 1024 doubles, then memoryview slice
                       copies doubling (memcpy), the fastest stdlib way
  py_array100m_sum     the same with the buffer made and filled before the
                       clock starts and freed after it stops
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


def sem_ponger(s1, s2, total, cpu):
    pin(cpu)
    acq, rel = s1.acquire, s2.release
    for _ in range(total):
        acq()
        rel()


def sem_pingpong(ctx, n, cpu_a, cpu_b):
    warm = n // 10 + 1
    total = n + warm
    s1, s2 = ctx.Semaphore(0), ctx.Semaphore(0)
    saved = os.sched_getaffinity(0)
    pin(cpu_a)
    p = ctx.Process(target=sem_ponger, args=(s1, s2, total, cpu_b))
    p.start()
    out = []
    rel, acq = s1.release, s2.acquire
    now = time.perf_counter_ns
    for i in range(total):
        t0 = now()
        rel()
        acq()
        t1 = now()
        if i >= warm:
            out.append(t1 - t0)
    p.join()
    os.sched_setaffinity(0, saved)
    if p.exitcode != 0 or s1.get_value() != 0 or s2.get_value() != 0:
        raise SystemExit(f"py_sync: sem ponger exited with {p.exitcode}")
    report("py_sem_pingpong", out)


def turns(cond, turn, me, count):
    """@count turns of one side: with the lock held, wait for the turn word
    to say it is ours, hand the turn over, notify one waiter."""
    mine = lambda: turn.value == me  # noqa: E731  (made once, not per turn)
    other = 1 - me
    wait_for, notify = cond.wait_for, cond.notify
    for _ in range(count):
        with cond:
            wait_for(mine)
            turn.value = other
            notify()


def cond_ponger(cond, turn, total, cpu):
    pin(cpu)
    turns(cond, turn, 1, total)


def cond_pingpong(ctx, n, batch, cpu_a, cpu_b):
    samples = max(n // batch, 1)
    warm = samples // 10 + 1
    total = (samples + warm) * batch
    cond = ctx.Condition(ctx.Lock())  # a Lock, as bench_sync's (the default is an RLock)
    turn = ctx.RawValue("i", 0)
    saved = os.sched_getaffinity(0)
    pin(cpu_a)
    p = ctx.Process(target=cond_ponger, args=(cond, turn, total, cpu_b))
    p.start()
    out = []
    now = time.perf_counter_ns
    for i in range(samples + warm):
        t0 = now()
        turns(cond, turn, 0, batch)
        t1 = now()
        if i >= warm:
            out.append(t1 - t0)
    p.join()
    os.sched_setaffinity(0, saved)
    if p.exitcode != 0 or turn.value != 0:
        raise SystemExit(f"py_sync: cond ponger exited with {p.exitcode}, turn {turn.value}")
    report("py_cond_pingpong", out, per=batch)


def barrier_party(b, total, cpu):
    pin(cpu)
    wait = b.wait
    for _ in range(total):
        wait()


def barrier2(ctx, n, batch, cpu_a, cpu_b):
    samples = max(n // batch, 1)
    warm = samples // 10 + 1
    total = (samples + warm) * batch
    b = ctx.Barrier(2)
    saved = os.sched_getaffinity(0)
    pin(cpu_a)
    p = ctx.Process(target=barrier_party, args=(b, total, cpu_b))
    p.start()
    out = []
    wait, rng = b.wait, range(batch)
    now = time.perf_counter_ns
    for i in range(samples + warm):
        t0 = now()
        for _ in rng:
            wait()
        t1 = now()
        if i >= warm:
            out.append(t1 - t0)
    p.join()
    os.sched_setaffinity(0, saved)
    if p.exitcode != 0 or b.broken or b.n_waiting != 0:
        raise SystemExit(f"py_sync: barrier party exited with {p.exitcode}")
    report("py_barrier2", out, per=batch)


# ---- 100 MB shared array ------------------------------------------------

BLOCK = 1024  # element i is i % 1024, as bench_sync's: the sum is exact


def fill(buf):
    """Fill the byte memoryview @buf with doubles i % 1024: one block of 1024
    made by hand, then copied over and over, doubling (slice assignment of
    memoryviews is a memcpy: Python's fastest ordinary way to fill)."""
    pat = memoryview(bytearray(8 * BLOCK)).cast("d")
    for i in range(BLOCK):
        pat[i] = float(i)
    size = len(buf)
    step = min(8 * BLOCK, size)
    buf[:step] = pat.cast("B")[:step]
    while step < size:
        m = min(step, size - step)
        buf[step:step + m] = buf[:m]
        step += m
    pat.release()


def expected_sum(n):
    return float((n // BLOCK) * (BLOCK - 1) * BLOCK // 2)


def shm_summer(shm, result):
    doubles = shm.buf.cast("d")
    result.value = sum(doubles)
    doubles.release()


def array_summer(arr, result):
    doubles = memoryview(arr).cast("B").cast("d")
    result.value = sum(doubles)
    doubles.release()


class ShmArray:
    """multiprocessing.shared_memory.SharedMemory: shm_open + ftruncate +
    mmap; the forked child gets the object (and its mapping) as is."""
    summer = staticmethod(shm_summer)

    def __init__(self, ctx, nbytes):
        from multiprocessing import shared_memory
        self.obj = shared_memory.SharedMemory(create=True, size=nbytes)
        fill(self.obj.buf)

    def free(self):
        self.obj.close()
        self.obj.unlink()


class CtypesArray:
    """Array('d', n, lock=False): a ctypes array in multiprocessing's shared
    heap (an mmap of a temporary file), zeroed by ctypes.memset."""
    summer = staticmethod(array_summer)

    def __init__(self, ctx, nbytes):
        self.obj = ctx.Array("d", nbytes // 8, lock=False)
        buf = memoryview(self.obj).cast("B")
        fill(buf)
        buf.release()

    def free(self):
        del self.obj


def array_sum(ctx, kind, mb, samples, sum_only):
    """One operation: make the array and fill it, a forked child sums it
    into a RawValue('d'), join, check the sum, free the array; sum_only:
    the array is made before the clock starts and freed after it stops."""
    nbytes = mb * 1024 * 1024
    expect = expected_sum(nbytes // 8)
    result = ctx.RawValue("d", 0.0)
    cls = ShmArray if kind == "shm" else CtypesArray
    out = []
    now = time.perf_counter_ns
    for i in range(samples + 1):  # the first warms up
        result.value = 0.0
        arr = cls(ctx, nbytes) if sum_only else None
        t0 = now()
        if not sum_only:
            arr = cls(ctx, nbytes)
        p = ctx.Process(target=cls.summer, args=(arr.obj, result))
        p.start()
        p.join()
        if p.exitcode != 0 or result.value != expect:
            raise SystemExit(f"py_sync: array sum {result.value}, expected {expect}, "
                             f"exit code {p.exitcode}")
        if not sum_only:
            arr.free()
        t1 = now()
        if sum_only:
            arr.free()
        del arr
        if i >= 1:
            out.append(t1 - t0)
    suffix = "_sum" if sum_only else ""
    report(f"py_array100m{suffix}", out, array=kind)


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
    ap.add_argument("-B", type=int, default=100,
                    help="cond turns / barrier passes per sample (a batch)")
    ap.add_argument("-A", type=int, default=10, help="array samples")
    ap.add_argument("-M", type=int, default=100, help="array size in MiB")
    ap.add_argument("--array", choices=["shm", "ctypes"], default="shm",
                    help="shared_memory.SharedMemory (default: the faster here) "
                         "or Array('d', n, lock=False)")
    ap.add_argument("which", nargs="*",
                    help="uncontended, contended, pingpong, sem, cond, barrier, array "
                         "(default: all)")
    args = ap.parse_args()
    groups = ["uncontended", "contended", "pingpong", "sem", "cond", "barrier", "array"]
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
    if "sem" in which:
        sem_pingpong(ctx, args.n, *placement(args.a))
    if "cond" in which:
        cond_pingpong(ctx, args.n, args.B, *placement(args.a))
    if "barrier" in which:
        barrier2(ctx, args.n, args.B, *placement(args.a))
    if "array" in which:
        array_sum(ctx, args.array, args.M, args.A, False)
        array_sum(ctx, args.array, args.M, args.A, True)


if __name__ == "__main__":
    main()
