"""Python's Manager().dict(): the same measurements as bench_manager.c.
Prints one JSON line per benchmark on stdout.

    python3.11 bench/py_manager.py [-n N_RTT] [-p PROCS] [-m OPS_PER_PROC] [-r ROUNDS]
                                   [-s STARTS]

  py_mgr_dict_rtt      d[k] = v; d[k] on a Manager().dict() proxy, from a
                       forked child (two requests), manager started with
                       the fork context
  py_mgr_dict_op       the same round trips per operation (half of each):
                       the rate Python's proxy gives
  py_mgr_dict_update   d.update() of 1000 keys from a forked child, per key:
                       Python's own batch (sets only)
  py_mgr_dict_set_Np   PROCS forked children at once, each doing M d[k] = i
                       (one request each: Python's proxy has no atomic add;
                       each child its own key); wall time from "go" to the
                       last one done / (PROCS * M), one sample a round
  py_mgr_dict_batch    as mp_mgr_dict_batch, per operation of a batch of
                       1000 from a forked child: the 500 sets of the same
                       500 8-byte keys (bytes) in one update() request and
                       the 500 gets in one get_many() request, a method of
                       a dict type registered on a BaseManager (Python's
                       best way: two requests, not one atomic batch); the
                       values checked
  py_mgr_dict_rtt_pin  py_mgr_dict_rtt with the client and a second
                       manager's server (all its threads: pinned by
                       inheritance while this process starts it; checked)
                       on one CPU, as bench_manager's
  py_mgr_cond_rtt      as mp_mgr_cond_rtt: a SyncManager Condition()
                       ping-pong (notify, then wait, each side holding the
                       lock) between this process and a forked child that
                       got the proxy; one sample per round trip
  py_mgr_barrier_rtt   as mp_mgr_barrier_rtt: a SyncManager Barrier(2), this
                       process and a forked child waiting repeatedly; one
                       sample per pass
  py_mgr_start         one operation: ctx.Manager() (SyncManager, fork
                       context: its server forked), m.dict(), d["k"] = 1,
                       m.shutdown(); -s samples (default 20)
"""
import json
import multiprocessing
import os
import time
from multiprocessing.managers import BaseManager, BaseProxy


def quantile(s, q):
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return float(s[-1])
    frac = pos - i
    return s[i] * (1 - frac) + s[i + 1] * frac


def report(name, samples):
    s = sorted(samples)
    print(json.dumps({
        "name": name, "n": len(s),
        "median_us": quantile(s, 0.5) / 1e3, "p10_us": quantile(s, 0.1) / 1e3,
        "p90_us": quantile(s, 0.9) / 1e3, "mean_us": sum(s) / len(s) / 1e3,
        "min_us": s[0] / 1e3}), flush=True)


def pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def rtt_client(d, n, name="py_mgr_dict_rtt", cpu=None):
    pin(cpu)
    out = []
    now = time.perf_counter_ns
    for i in range(n + n // 10):
        k = "key-000%d" % (i % 8)
        t0 = now()
        d[k] = i
        got = d[k]
        t1 = now()
        assert got == i
        if i >= n // 10:
            out.append(t1 - t0)
    report(name, out)
    if name == "py_mgr_dict_rtt":
        report("py_mgr_dict_op", [x / 2 for x in out])


def update_client(d, n):
    out = []
    now = time.perf_counter_ns
    for r in range(n + n // 10 + 1):
        batch = {"key-%d" % i: r * 1000 + i for i in range(1000)}
        t0 = now()
        d.update(batch)
        t1 = now()
        if r >= n // 10 + 1:
            out.append((t1 - t0) / 1000)
    assert d["key-999"] == (n + n // 10) * 1000 + 999
    report("py_mgr_dict_update", out)


class BatchDict(dict):
    """A dict with one more method: the values of many keys in one call."""

    def get_many(self, keys):
        return list(map(self.__getitem__, keys))


class BatchDictProxy(BaseProxy):
    _exposed_ = ("update", "get_many")

    def update(self, mapping):
        return self._callmethod("update", (mapping,))

    def get_many(self, keys):
        return self._callmethod("get_many", (keys,))


class BatchManager(BaseManager):
    pass


BatchManager.register("BatchDict", BatchDict, proxytype=BatchDictProxy)

BATCH = 1000  # operations per batch, as bench_manager.c's


def batch_client(d, n):
    """As mp_mgr_dict_batch: per batch 500 sets and 500 gets of the same 500
    8-byte keys (b"key-" + 4 bytes of k), the values r * 1000 + k, checked.
    Python's best way: one update() request with the 500 sets, then one
    get_many() request for the 500 values (two requests, not one atomic
    batch); per operation (batch time / 1000)."""
    keys = [b"key-" + k.to_bytes(4, "little") for k in range(BATCH // 2)]
    out = []
    now = time.perf_counter_ns
    update, get_many = d.update, d.get_many
    for r in range(n + n // 10 + 1):  # the first tenth warms up
        vals = [r * BATCH + k for k in range(BATCH // 2)]
        sets = dict(zip(keys, vals))
        t0 = now()
        update(sets)
        got = get_many(keys)
        t1 = now()
        if got != vals:
            raise SystemExit("py_manager: batch: wrong values")
        if r >= n // 10 + 1:
            out.append((t1 - t0) / BATCH)
    report("py_mgr_dict_batch", out)


def mgr_start(ctx, n):
    """One operation: start a SyncManager (its server forked), make a dict
    and set one key in it, shut the server down."""
    out = []
    now = time.perf_counter_ns
    for i in range(n + 1):  # the first warms up
        t0 = now()
        m = ctx.Manager()
        d = m.dict()
        d["k"] = 1
        m.shutdown()
        t1 = now()
        del d
        if i >= 1:
            out.append(t1 - t0)
    report("py_mgr_start", out)


def cond_peer(c, total):
    c.acquire()
    for _ in range(total):
        c.notify()
        c.wait(60)
    c.release()


def cond_rtt(ctx, mgr, n):
    """As bench_manager's cond_rtt: the peer can take the lock only once
    our wait has released it, so each notify finds the other waiting."""
    c = mgr.Condition()
    warm = n // 10
    total = n + warm
    c.acquire()
    p = ctx.Process(target=cond_peer, args=(c, total))
    p.start()
    c.wait(60)  # the peer's first notify
    out = []
    now = time.perf_counter_ns
    t0 = now()
    for i in range(1, total):
        c.notify()
        c.wait(60)
        t1 = now()
        if i > warm:
            out.append(t1 - t0)
        t0 = t1
    c.notify()  # its last wait
    c.release()
    p.join()
    assert p.exitcode == 0
    report("py_mgr_cond_rtt", out)


def barrier_peer(b, total):
    for _ in range(total):
        b.wait(60)


def barrier_rtt(ctx, mgr, n):
    b = mgr.Barrier(2)
    warm = n // 10
    p = ctx.Process(target=barrier_peer, args=(b, n + warm))
    p.start()
    out = []
    now = time.perf_counter_ns
    for i in range(n + warm):
        t0 = now()
        b.wait(60)
        if i >= warm:
            out.append(now() - t0)
    p.join()
    assert p.exitcode == 0
    report("py_mgr_barrier_rtt", out)


def set_client(d, me, ops, ready, go, done):
    k = "count-%d" % me
    d[k] = -1  # the proxy connects on first use: before the clock starts
    ready.put(me)
    go.wait()
    for i in range(ops):
        d[k] = i
    done.put(me)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("-p", type=int, default=4)
    ap.add_argument("-m", type=int, default=2000)
    ap.add_argument("-r", type=int, default=10)
    ap.add_argument("-s", type=int, default=20, help="manager start-ups")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as mgr:
        d = mgr.dict()
        p = ctx.Process(target=rtt_client, args=(d, args.n))
        p.start()
        p.join()
        assert p.exitcode == 0
        du = mgr.dict()  # held here: a dropped proxy frees the object
        p = ctx.Process(target=update_client, args=(du, max(args.n // 20, 1)))
        p.start()
        p.join()
        assert p.exitcode == 0

        samples = []
        for r in range(args.r + 1):  # round 0 warms up
            d2 = mgr.dict()
            ready, done = ctx.SimpleQueue(), ctx.SimpleQueue()
            go = ctx.Event()
            ps = [ctx.Process(target=set_client, args=(d2, i, args.m, ready, go, done))
                  for i in range(args.p)]
            for q in ps:
                q.start()
            for _ in ps:
                ready.get()
            t0 = time.perf_counter_ns()
            go.set()
            for _ in ps:
                done.get()
            t1 = time.perf_counter_ns()
            for q in ps:
                q.join()
                assert q.exitcode == 0
            assert len(d2) == args.p and all(v == args.m - 1 for v in d2.values())
            if r > 0:
                samples.append((t1 - t0) / (args.p * args.m))
        report("py_mgr_dict_set_%dp" % args.p, samples)
        cond_rtt(ctx, mgr, max(args.n // 10, 2))
        barrier_rtt(ctx, mgr, max(args.n // 10, 1))

    with BatchManager(ctx=ctx) as bm:
        d = bm.BatchDict()
        p = ctx.Process(target=batch_client, args=(d, max(args.n // 20, 1)))
        p.start()
        p.join()
        assert p.exitcode == 0

    # The set+get of py_mgr_dict_rtt with the client and the manager's
    # server (all its threads) on one CPU: the server inherits the pin
    # from this process, pinned while it starts it.
    cpu = min(os.sched_getaffinity(0))
    saved = os.sched_getaffinity(0)
    pin(cpu)
    mgr = ctx.Manager()
    os.sched_setaffinity(0, saved)
    assert os.sched_getaffinity(mgr._process.pid) == {cpu}, "the server is not pinned"
    with mgr:
        d = mgr.dict()
        p = ctx.Process(target=rtt_client, args=(d, args.n, "py_mgr_dict_rtt_pin", cpu))
        p.start()
        p.join()
        assert p.exitcode == 0

    mgr_start(ctx, args.s)


if __name__ == "__main__":
    main()
