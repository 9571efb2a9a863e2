"""Connections in Python's multiprocessing: the same measurements as
bench_conn.c.  Prints one JSON line per benchmark on stdout.

    python3.11 bench/py_conn.py [-n N] [-m N_1MIB] [-c N_CONNECT]

  py_rtt8, py_rtt1m   send_bytes + recv_bytes round trip over Pipe() with a
                      forked child that echoes (8 bytes, 1 MiB)
  py_connect_auth     Client(address, authkey=...) + close, to a Listener on
                      an abstract unix socket served by a forked child
"""
import multiprocessing
import os
import time
from multiprocessing.connection import Client, Listener

KEY = b"benchmark key"


def echo(conn):
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass


def serve(address, ready):
    with Listener(address, authkey=KEY, backlog=64) as l:
        ready.send(True)
        while True:
            try:
                l.accept().close()
            except Exception:
                pass


def quantile(s, q):
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return float(s[-1])
    frac = pos - i
    return s[i] * (1 - frac) + s[i + 1] * frac


def report(name, samples):
    import json
    s = sorted(samples)
    print(json.dumps({
        "name": name, "n": len(s),
        "median_us": quantile(s, 0.5) / 1e3, "p10_us": quantile(s, 0.1) / 1e3,
        "p90_us": quantile(s, 0.9) / 1e3, "mean_us": sum(s) / len(s) / 1e3,
        "min_us": s[0] / 1e3}), flush=True)


def rtt(ctx, name, size, n):
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    b.close()
    msg = bytes(size)
    out = []
    for i in range(n + n // 10):
        t0 = time.perf_counter_ns()
        a.send_bytes(msg)
        got = a.recv_bytes()
        t1 = time.perf_counter_ns()
        if i >= n // 10:
            out.append(t1 - t0)
    assert len(got) == size
    a.close()
    p.terminate()  # a forked echo holds a copy of our end: it never sees EOF
    p.join()
    report(name, out)


def connect(ctx, n):
    address = "\0mp-pybench-%d" % os.getpid()
    r, w = ctx.Pipe(False)
    p = ctx.Process(target=serve, args=(address, w))
    p.start()
    r.recv()
    out = []
    for i in range(n + n // 10):
        t0 = time.perf_counter_ns()
        Client(address, authkey=KEY).close()
        t1 = time.perf_counter_ns()
        if i >= n // 10:
            out.append(t1 - t0)
    p.terminate()
    p.join()
    report("py_connect_auth", out)


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("-m", type=int, default=300)
    ap.add_argument("-c", type=int, default=2000)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    rtt(ctx, "py_rtt8", 8, args.n)
    rtt(ctx, "py_rtt1m", 1 << 20, args.m)
    connect(ctx, args.c)


if __name__ == "__main__":
    main()
