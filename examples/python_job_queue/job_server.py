"""job_server.py: a Python manager serving jobs to C workers.

    python3 job_server.py [--address HOST:PORT] [--authkey KEY]
                          [--jobs N] [--workers W]

The remote-manager setup of Python's multiprocessing documentation: a
BaseManager registers two queue.Queue objects, 'get_jobs' and
'get_results', and serves them on a TCP port (port 0: any free one; the
first line printed says which).  Workers anywhere connect with the address
and the authkey; here they are C programs (python_job_queue worker ...,
examples/python_job_queue/python_job_queue.c), but a Python worker doing
the same would be served the same way.

A job is {'id': i, 'start': s, 'count': c}: find, among s .. s+c-1, the
number whose Collatz sequence is the longest.  A result is {'id': i,
'number': n, 'steps': k, 'worker': 'c:PID'}.  The server puts N jobs and
one None per worker (the stop), checks every result against its own
answer, then waits for its standard input to close (the workers have
exited) and checks that the manager holds no object any more: the C
clients gave back every reference they took.  Exit status 0 when all
holds.
"""
import argparse
import queue
import sys
import threading
from multiprocessing.managers import BaseManager


class JobManager(BaseManager):
    pass


def longest_collatz(start, count):
    best, best_steps = start, -1
    for n in range(start, start + count):
        k, steps = n, 0
        while k != 1:
            k = k // 2 if k % 2 == 0 else 3 * k + 1
            steps += 1
        if steps > best_steps:
            best, best_steps = n, steps
    return best, best_steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", default="127.0.0.1:0")
    ap.add_argument("--authkey", default="abracadabra")
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--workers", type=int, default=3)
    args = ap.parse_args()
    host, port = args.address.rsplit(":", 1)

    jobs, results = queue.Queue(), queue.Queue()
    JobManager.register("get_jobs", callable=lambda: jobs)
    JobManager.register("get_results", callable=lambda: results)
    manager = JobManager(address=(host, int(port)), authkey=args.authkey.encode())
    server = manager.get_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("serving jobs on tcp:%s:%d" % server.address, flush=True)

    want = {}
    for i in range(args.jobs):
        job = {"id": i, "start": 1 + 500 * i, "count": 500}
        want[i] = longest_collatz(job["start"], job["count"])
        jobs.put(job)
    for _ in range(args.workers):
        jobs.put(None)

    seen, workers, ok = {}, set(), True
    for _ in range(args.jobs):
        try:
            r = results.get(timeout=60)
        except queue.Empty:
            print("no result for 60 s")
            ok = False
            break
        seen[r["id"]] = seen.get(r["id"], 0) + 1
        workers.add(r["worker"])
        if (r["number"], r["steps"]) != want[r["id"]]:
            print("job %d: got %r, want %r" % (r["id"], (r["number"], r["steps"]), want[r["id"]]))
            ok = False
        if r["id"] < 2:
            print("job %d: %d .. %d: %d takes %d steps (%s)" % (
                r["id"], 1 + 500 * r["id"], 500 * r["id"] + 500, r["number"], r["steps"],
                r["worker"]), flush=True)
    once = all(seen.get(i) == 1 for i in range(args.jobs))
    ok = ok and once
    print("%d jobs done by %d C workers, each once, every result right %s" % (
        args.jobs, len(workers), "ok" if ok else "FAILED"), flush=True)

    sys.stdin.read()  # closed once the workers have exited
    left = len(server.id_to_refcount)
    print("objects the manager still holds after the workers left: %d %s" % (
        left, "ok" if left == 0 else "FAILED"), flush=True)
    server.stop_event.set()
    return 0 if ok and left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
