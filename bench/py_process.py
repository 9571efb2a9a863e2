"""The cost of starting and joining one process in Python's multiprocessing.

The same measurement as bench_process.c: one complete
``p = ctx.Process(target=f); p.start(); p.join()`` of a target that returns at
once, many times over, under each start method.  Prints one JSON line per
method (name, n, median_us, p10_us, p90_us, mean_us, min_us) on stdout:
py_fork, py_spawn, py_forkserver.  Their floors, measured by
bench_process.c: raw_fork_wait (fork), raw_posix_spawn (spawn: posix_spawn
of a program whose main returns at once; Python's spawn starts a fresh
interpreter through _posixsubprocess.fork_exec), raw_forkserver (a request
over a connected socket, fork, waitpid, the status back; Python's forkserver
also connect()s anew to its server for every start).

    python3.11 bench/py_process.py [-n N] [-s N_SPAWN] [-f N_FORKSERVER] [-r ROUNDS]
                                   [-w WARMUP] [fork|spawn|forkserver ...]

Only the standard library is imported at module level, and only what the
measurement needs: a spawned child re-imports this file as its __main__
module, as any Python program's would, and should not pay for more.
"""
import multiprocessing
import time


def noop():
    pass


def once(ctx):
    t0 = time.perf_counter_ns()
    p = ctx.Process(target=noop)
    p.start()
    p.join()
    t1 = time.perf_counter_ns()
    if p.exitcode != 0:
        raise SystemExit(f"child exited with {p.exitcode}")
    p.close()
    return t1 - t0


def quantile(s, q):
    """The q-quantile of sorted samples, by linear interpolation."""
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return float(s[-1])
    frac = pos - i
    return s[i] * (1 - frac) + s[i + 1] * frac


def main():
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="iterations under fork")
    ap.add_argument("-s", type=int, default=40, help="iterations under spawn")
    ap.add_argument("-f", type=int, default=150, help="iterations under forkserver")
    ap.add_argument("-r", type=int, default=5, help="interleaved rounds")
    ap.add_argument("-w", type=int, default=3, help="warm-up iterations per method")
    ap.add_argument("methods", nargs="*", default=["fork", "spawn", "forkserver"])
    args = ap.parse_args()
    counts = {"fork": args.n, "spawn": args.s, "forkserver": args.f}

    available = multiprocessing.get_all_start_methods()
    methods = [m for m in args.methods if m in available]
    samples = {m: [] for m in methods}
    ctxs = {m: multiprocessing.get_context(m) for m in methods}
    for m in methods:
        for _ in range(args.w):  # warm-up; starts the fork server
            once(ctxs[m])
    for r in range(args.r):
        for m in methods:
            upto = counts[m] * (r + 1) // args.r
            while len(samples[m]) < upto:
                samples[m].append(once(ctxs[m]))
    for m in methods:
        s = sorted(samples[m])
        print(json.dumps({
            "name": f"py_{m}",
            "n": len(s),
            "median_us": round(quantile(s, 0.5) / 1e3, 2),
            "p10_us": round(quantile(s, 0.1) / 1e3, 2),
            "p90_us": round(quantile(s, 0.9) / 1e3, 2),
            "mean_us": round(sum(s) / len(s) / 1e3, 2),
            "min_us": round(s[0] / 1e3, 2),
            "python": sys.version.split()[0],
        }), flush=True)


if __name__ == "__main__":
    main()
