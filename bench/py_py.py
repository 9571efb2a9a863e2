"""Talking to Python: the Python side of bench_py.c (read its header), and
the Python manager both workers of the job-queue row are served by.
Prints one JSON line per benchmark on stdout.

    python3 bench/py_py.py [-n N] conn
    python3 bench/py_py.py [-j N] [-b BATCHES] [--c-worker BENCH_PY] mgr

The value moved is bench_py.c's dict: {'job': 3, 'args': [1.5, 'x', b'yy'],
'ok': True}.

  py_send_dict (conn; pinned: this process is pinned to its first CPU
  before the child is forked, as bench_py.c)
      conn.send(DICT) over a Pipe() (duplex: a socketpair, as mp_pipe); a
      forked child does conn.send(conn.recv()); this process receives the
      value and checks it equals DICT
  py_pymgr_jobs, mp_pymgr_jobs (mgr)
      this process serves a BaseManager on 127.0.0.1 (any free port) with
      an authkey, registering two queue.Queue objects, 'get_jobs' and
      'get_results' (the remote-manager setup of Python's documentation,
      as examples/python_job_queue/job_server.py), in a thread of its own.
      For each worker in turn it puts N x (BATCHES + 1) jobs (DICT with
      'job' = 0, 1, ...), untimed, then runs the worker as a process of its
      own: `python3 py_py.py worker ...` (Python proxies: q.get(), then
      r.put({'job': j, 'result': 2 * j})) and, with --c-worker,
      `bench_py worker ...` (mp_pyproxy_get / mp_pyproxy_put, the same
      dicts).  The worker times batches of N jobs (the first warms up) and
      prints its line; this process then checks every result.  Same server,
      same N, same jobs for both.
"""
import os
import queue
import subprocess
import sys
import threading
import time

from bench_stats import report

DICT = {"job": 3, "args": [1.5, "x", b"yy"], "ok": True}
KEY = "benchmark key"


def job(i):
    return {"job": i, "args": [1.5, "x", b"yy"], "ok": True}


# ---- the dict over a Pipe ----------------------------------------------------

def dict_echo(conn):
    recv, send = conn.recv, conn.send
    try:
        while True:
            send(recv())
    except EOFError:
        pass


def send_dict(n):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=dict_echo, args=(b,))
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    p.start()
    b.close()
    send, recv = a.send, a.recv
    clock = time.perf_counter_ns
    out = []
    for i in range(n + n // 10):  # the first tenth warms up
        t0 = clock()
        send(DICT)
        same = recv() == DICT
        t1 = clock()
        if i >= n // 10:
            out.append(t1 - t0)
        if not same:
            raise SystemExit("echo values")
    a.close()
    p.terminate()  # a forked echo holds a copy of our end: it never sees EOF
    p.join()
    os.sched_setaffinity(0, saved)
    report("py_send_dict", out)


# ---- a worker of a Python manager's job queue ---------------------------------

def worker(address, key, n, batches):
    from multiprocessing.managers import BaseManager

    class JobManager(BaseManager):
        pass

    JobManager.register("get_jobs")
    JobManager.register("get_results")
    host, port = address.rsplit(":", 1)
    m = JobManager(address=(host, int(port)), authkey=key.encode())
    m.connect()
    jobs, results = m.get_jobs(), m.get_results()
    get, put = jobs.get, results.put
    clock = time.perf_counter_ns
    out = []
    for b in range(batches + 1):  # batch 0 warms up
        t0 = clock()
        for _ in range(n):
            j = get()["job"]
            put({"job": j, "result": 2 * j})
        if b > 0:
            out.append(clock() - t0)
    report("py_pymgr_jobs", out, per=n, per_sample=n)


def serve_jobs(n, batches, c_worker):
    from multiprocessing.managers import BaseManager

    class JobManager(BaseManager):
        pass

    jobs, results = queue.Queue(), queue.Queue()
    JobManager.register("get_jobs", callable=lambda: jobs)
    JobManager.register("get_results", callable=lambda: results)
    server = JobManager(address=("127.0.0.1", 0), authkey=KEY.encode()).get_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = "%s:%d" % server.address
    total = n * (batches + 1)
    workers = [[sys.executable, os.path.abspath(__file__), "worker", address, KEY, str(n),
                str(batches)]]
    if c_worker:
        workers.append([c_worker, "worker", address, KEY, str(n), str(batches)])
    for argv in workers:
        for i in range(total):
            jobs.put(job(i))
        # The worker's JSON line goes straight to our stdout.
        subprocess.run(argv, check=True, timeout=600)
        got = sorted((r["job"], r["result"]) for r in (results.get_nowait()
                                                       for _ in range(results.qsize())))
        if got != [(i, 2 * i) for i in range(total)] or not jobs.empty():
            raise SystemExit(f"py_py: {os.path.basename(argv[0])}'s results are wrong")


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="dict round trips")
    ap.add_argument("-j", type=int, default=2000, help="jobs per batch")
    ap.add_argument("-b", type=int, default=10, help="batches of jobs per worker")
    ap.add_argument("--c-worker", help="bench_py, for the C worker's row")
    ap.add_argument("groups", nargs="*", help="only these: conn mgr (or: worker ADDRESS "
                    "AUTHKEY N BATCHES)")
    args = ap.parse_args()
    if args.groups[:1] == ["worker"]:
        _, address, key, n, batches = args.groups
        worker(address, key, int(n), int(batches))
        return
    every = {"conn", "mgr"}
    groups = set(args.groups) or every
    if not groups <= every:
        ap.error(f"unknown group: {' '.join(sorted(groups - every))}")
    if "conn" in groups:
        send_dict(args.n)
    if "mgr" in groups:
        serve_jobs(args.j, args.b, args.c_worker)


if __name__ == "__main__":
    main()
