"""Connections in Python's multiprocessing: the same measurements as
bench_conn.c (read its header for the floors).  Prints one JSON line per
benchmark on stdout.

    python3 bench/py_conn.py [-n N] [-m N_1MIB] [-c N_CONNECT] [-a N_ARGS]
                             [-b BATCHES] [--recv bytes|into]
                             [rtt|pin|args|connect|scale ...]

Every Pipe() here is Python's default, duplex: a socketpair, as mp_pipe.
Children are forked.  Placement as bench_conn.c: "free" leaves both
processes to the scheduler, "pinned" (_pin) pins this process to its first
CPU before the child is forked (both on one CPU), "split" pins the child to
the second CPU and this process to the first.

  py_rtt8, py_rtt1m (free), py_rtt8_pin, py_rtt1m_pin (pinned)
      send_bytes + recv_bytes round trip with a child that echoes the same
      way (8 bytes, 1 MiB)
  py_send_tuple (pinned)
      conn.send((1, 2, 3, "0123456789abcdef")); the child does
      a, b, c, s = conn.recv(); conn.send((a, b, c, s)); this process
      receives the tuple and checks it equals the one sent
  py_connect_auth (free)
      Client(address, authkey=...) + close, to a Listener on an abstract
      unix socket whose (forked) process accepts (both challenges) and
      closes in a loop
  scale_pipe_py_<size> (split), size 8 B ... 4 MiB as bench_conn.c
      one message one way in a stream: the child send_bytes messages of
      <size> bytes without pause, this process receives each, in alternate
      batches with recv_bytes and with recv_bytes_into a preallocated
      bytearray (3.11 reads either into a BytesIO first; which is faster
      depends on size and allocator), and reports the faster way (by
      median; its name in "recv").  A sample is a batch (~16 MiB or 1000
      messages, at least 4), reported per message: the spread of batch
      averages.
"""
import multiprocessing
import os
import time
from multiprocessing.connection import Client, Listener

from bench_stats import report

KEY = b"benchmark key"
TUPLE = (1, 2, 3, "0123456789abcdef")
SCALE_SIZES = (8, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


# ---- placement ------------------------------------------------------------

def first_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], (cpus[1] if len(cpus) > 1 else None)


def start_placed(p, place):
    """Start process @p placed as @place; return what to restore after."""
    saved = os.sched_getaffinity(0)
    first, second = first_cpus()
    if place == "pinned":
        os.sched_setaffinity(0, {first})
    elif place == "split" and second is not None:
        os.sched_setaffinity(0, {second})
    p.start()
    if place == "split" and second is not None:
        os.sched_setaffinity(0, {first})
    return saved


# ---- round trips ------------------------------------------------------------

def echo(conn):
    recv, send = conn.recv_bytes, conn.send_bytes
    try:
        while True:
            send(recv())
    except EOFError:
        pass


def rtt(ctx, name, size, n, place):
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    saved = start_placed(p, place)
    b.close()
    msg = bytes(size)
    send, recv = a.send_bytes, a.recv_bytes
    clock = time.perf_counter_ns
    out = []
    for i in range(n + n // 10):  # the first tenth warms up
        t0 = clock()
        send(msg)
        got = recv()
        t1 = clock()
        if i >= n // 10:
            out.append(t1 - t0)
        if len(got) != size:
            raise SystemExit("echo length")
    a.close()
    p.terminate()  # a forked echo holds a copy of our end: it never sees EOF
    p.join()
    os.sched_setaffinity(0, saved)
    report(name, out)


def tuple_echo(conn):
    recv, send = conn.recv, conn.send
    try:
        while True:
            a, b, c, s = recv()
            send((a, b, c, s))
    except EOFError:
        pass


def send_tuple(ctx, n):
    a, b = ctx.Pipe()
    p = ctx.Process(target=tuple_echo, args=(b,))
    saved = start_placed(p, "pinned")
    b.close()
    send, recv = a.send, a.recv
    clock = time.perf_counter_ns
    out = []
    for i in range(n + n // 10):
        t0 = clock()
        send((1, 2, 3, "0123456789abcdef"))
        if recv() != TUPLE:
            raise SystemExit("echo values")
        t1 = clock()
        if i >= n // 10:
            out.append(t1 - t0)
    a.close()
    p.terminate()
    p.join()
    os.sched_setaffinity(0, saved)
    report("py_send_tuple", out)


# ---- connect ----------------------------------------------------------------

def serve(address, ready):
    with Listener(address, authkey=KEY, backlog=64) as l:
        ready.send(True)
        while True:
            try:
                l.accept().close()
            except Exception:
                pass


def connect(ctx, n):
    address = "\0mp-pybench-%d" % os.getpid()
    r, w = ctx.Pipe(False)
    p = ctx.Process(target=serve, args=(address, w))
    p.start()
    r.recv()
    out = []
    clock = time.perf_counter_ns
    for i in range(n + n // 10):
        t0 = clock()
        Client(address, authkey=KEY).close()
        t1 = clock()
        if i >= n // 10:
            out.append(t1 - t0)
    p.terminate()
    p.join()
    report("py_connect_auth", out)


# ---- a stream one way, by size ----------------------------------------------

def scale_batch(size):
    return max(4, min(1000, (16 << 20) // size))


def stream(conn, size, total):
    msg = bytes(size)
    send = conn.send_bytes
    for _ in range(total):
        send(msg)


def scale(ctx, size, batches, how):
    """Batches alternate between the two ordinary ways to receive (or use
    only @how); the faster by median is reported, and named in "recv"."""
    k, warm = scale_batch(size), 2
    ways = ("recv_bytes", "recv_bytes_into") if how == "best" else (
        "recv_bytes" if how == "bytes" else "recv_bytes_into",)
    a, b = ctx.Pipe()
    total = (batches + warm) * k * len(ways)
    p = ctx.Process(target=stream, args=(b, size, total))
    saved = start_placed(p, "split")
    b.close()
    clock = time.perf_counter_ns
    recv, recv_into, buf = a.recv_bytes, a.recv_bytes_into, bytearray(size)
    out = {w: [] for w in ways}
    t0 = clock()
    for j in range((batches + warm) * len(ways)):
        way = ways[j % len(ways)]
        if way == "recv_bytes":
            for _ in range(k):
                if len(recv()) != size:
                    raise SystemExit("stream length")
        else:
            for _ in range(k):
                if recv_into(buf) != size:
                    raise SystemExit("stream length")
        t1 = clock()
        if j >= warm * len(ways):
            out[way].append(t1 - t0)
        t0 = t1
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"sender exited with {p.exitcode}")
    a.close()
    os.sched_setaffinity(0, saved)
    best = min(ways, key=lambda w: sorted(out[w])[len(out[w]) // 2])
    report(f"scale_pipe_py_{size}", out[best], per=k, recv=best)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="8-byte round trips")
    ap.add_argument("-m", type=int, default=300, help="1 MiB round trips")
    ap.add_argument("-c", type=int, default=2000, help="connections")
    ap.add_argument("-a", type=int, default=None, help="typed round trips (default: as -n)")
    ap.add_argument("-b", type=int, default=20, help="batches per scale_pipe point")
    ap.add_argument("--recv", choices=("best", "bytes", "into"), default="best",
                    help="how scale_pipe_py receives (best: both, alternating batches)")
    ap.add_argument("groups", nargs="*", help="only these: rtt pin args connect scale")
    args = ap.parse_args()
    every = {"rtt", "pin", "args", "connect", "scale"}
    groups = set(args.groups) or every
    if not groups <= every:
        ap.error(f"unknown group: {' '.join(sorted(groups - every))}")
    ctx = multiprocessing.get_context("fork")
    if "rtt" in groups:
        rtt(ctx, "py_rtt8", 8, args.n, "free")
        rtt(ctx, "py_rtt1m", 1 << 20, args.m, "free")
    if "pin" in groups:
        rtt(ctx, "py_rtt8_pin", 8, args.n, "pinned")
        rtt(ctx, "py_rtt1m_pin", 1 << 20, args.m, "pinned")
    if "args" in groups:
        send_tuple(ctx, args.a or args.n)
    if "connect" in groups:
        connect(ctx, args.c)
    if "scale" in groups:
        for size in SCALE_SIZES:
            scale(ctx, size, args.b, args.recv)


if __name__ == "__main__":
    main()
