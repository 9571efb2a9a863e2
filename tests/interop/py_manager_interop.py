"""C clients of Python managers (mp_pymgr_*) against a real Python.

    py_manager_interop.py --python 3.12 --peer PATH/py_manager_peer

Runs itself under the interpreter of that version (found as driver.py finds
it; not installed: exit 77), which then:

  1. the documented remote-manager setup: a BaseManager serving two
     queue.Queue objects (QueueManager.register('get_jobs', callable=...)),
     a C worker (py_manager_peer worker) and a Python worker
     (QueueManager.connect) taking jobs and putting results back; every
     job must be done exactly once and right, the C worker must have done
     some, and the server must hold no object once both have gone;
  2. a SyncManager (tcp, then a unix socket) with a dict holding a list
     proxy: the C peer makes a dict and a list, reads a KeyError, follows
     the list proxy and a #PROXY result, appends to the Python list; the
     server's number_of_objects must be unchanged after it exits and the
     list must hold what C appended;
  3. a wrong authkey: mp_pymgr_connect must fail with MP_EAUTH;
  4. a fake server whose replies name os.system (checked to run in
     Python's own unpickler): the C peer must refuse each and nothing runs.

Exit status: 0 pass, 1 fail, 77 skip.
"""
import argparse
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading

from multiprocessing import connection, get_context
from multiprocessing.managers import BaseManager, RebuildProxy, SyncManager, Token

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
KEY = b"abracadabra"
TIMEOUT = 120


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def c_address(address):
    """Python's manager address as mp_client takes it."""
    if isinstance(address, tuple):
        return "tcp:%s:%d" % address
    return "unix:" + address


def run_peer(peer, *args):
    p = subprocess.run([peer] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    if p.returncode != 0:
        raise Failure("py_manager_peer %s: exit %d\n%s" % (
            args[0], p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout.decode()


# ---- 1. the remote-manager example ------------------------------------------

class QueueManager(BaseManager):
    pass


def python_worker(host, port):
    """The Python worker of the documentation's example."""
    QueueManager.register("get_jobs")
    QueueManager.register("get_results")
    m = QueueManager(address=(host, int(port)), authkey=KEY)
    m.connect()
    jobs, results = m.get_jobs(), m.get_results()
    results.put(("ready", "py"))
    while True:
        job = jobs.get(timeout=60)
        if job is None:
            break
        results.put({"id": job["id"], "sum": sum(job["numbers"]), "by": "py"})
    return 0


def test_remote_queue(peer):
    jobs, results = queue.Queue(), queue.Queue()
    QueueManager.register("get_jobs", callable=lambda: jobs)
    QueueManager.register("get_results", callable=lambda: results)
    m = QueueManager(address=("127.0.0.1", 0), authkey=KEY)
    server = m.get_server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.address
    cw = subprocess.Popen([peer, "worker", c_address(server.address), KEY.decode()],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pw = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--py-worker",
                           host, str(port)])
    try:
        ready = {results.get(timeout=TIMEOUT)[1] for _ in range(2)}
        check(ready == {"c", "py"}, "workers ready: %r" % ready)
        n = 400
        for i in range(n):
            jobs.put({"id": i, "numbers": list(range(i % 50))})
        jobs.put(None)
        jobs.put(None)
        got = [results.get(timeout=TIMEOUT) for _ in range(n)]
        out, err = cw.communicate(timeout=TIMEOUT)
        check(cw.returncode == 0, "C worker: exit %d\n%s" % (cw.returncode, err.decode()))
        check(pw.wait(timeout=TIMEOUT) == 0, "Python worker failed")
    finally:
        for p in (cw, pw):
            if p.poll() is None:
                p.kill()
                p.wait()
    ids = sorted(r["id"] for r in got)
    check(ids == list(range(n)), "each job done exactly once")
    for r in got:
        check(r["sum"] == sum(range(r["id"] % 50)), "job %d: sum %r" % (r["id"], r["sum"]))
    by_c = sum(1 for r in got if r["by"] == "c")
    check(by_c == int(out.decode().strip()), "C worker's count: %s vs %d" % (out, by_c))
    check(by_c > 0, "the C worker did no job")
    check(results.empty(), "a result too many")
    # both workers have gone: every count they held was given back
    check(len(server.id_to_refcount) == 0,
          "server still counts %r" % server.id_to_refcount)
    server.stop_event.set()
    print("remote queue: %d jobs, %d by C" % (n, by_c))


# ---- 2, 3. a SyncManager --------------------------------------------------------

class Node:
    """A method whose result the server returns as a proxy (#PROXY)."""

    def __init__(self, depth=0):
        self.depth = depth

    def child(self):
        return Node(self.depth + 1)

    def get_depth(self):
        return self.depth


class TestManager(SyncManager):
    pass


TestManager.register("Node", Node, method_to_typeid={"child": "NodeRef"})
TestManager.register("NodeRef", None, method_to_typeid={"child": "NodeRef"},
                     create_method=False)


def test_sync(peer, address):
    m = TestManager(address=address, authkey=KEY, ctx=get_context("fork"))
    m.start()
    try:
        pd = m.dict()
        inner = m.list([1, 2])
        pd["inner"] = inner
        before = m._number_of_objects()
        run_peer(peer, "sync", c_address(m.address), KEY.decode(), pd._token.id)
        after = m._number_of_objects()
        check(before == after, "objects before %d, after %d:\n%s" % (
            before, after, m._debug_info()))
        check(list(inner) == [1, 2, "from c"], "inner list %r" % list(inner))
        run_peer(peer, "auth", c_address(m.address), "wrong key")
    finally:
        m.shutdown()
    print("sync manager at %r: ok" % (address,))


# ---- 4. a hostile server ------------------------------------------------------------

class Call:
    """Pickles as a call of @func(*args), which Python's unpickler runs."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def test_hostile(peer, tmp):
    marker = os.path.join(tmp, "ran")
    evil = Call(os.system, "touch " + marker)
    token = Token("x", ("127.0.0.1", 1), "abc")
    replies_once = [
        pickle.dumps(("#RETURN", None)),             # connect: 'dummy'
        pickle.dumps(("#RETURN", evil)),             # create
        pickle.dumps(("#RETURN", ("abc", ("get",)))),  # create
    ]
    calls = [
        pickle.dumps(("#RETURN", evil)),
        pickle.dumps(("#PROXY", (("get",), evil))),
        pickle.dumps(("#RETURN", Call(RebuildProxy, os.system, token, "pickle", {}))),
        pickle.dumps(evil),
    ]
    # the replies are real attacks: Python's own unpickler runs them
    proof = os.path.join(tmp, "proof")
    p = subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"],
                       input=pickle.dumps(Call(os.system, "touch " + proof)), timeout=TIMEOUT,
                       check=False)
    check(p.returncode == 0 and os.path.exists(proof), "the hostile pickle does not run in Python")

    listener = connection.Listener(("127.0.0.1", 0), authkey=KEY)
    errors = []

    def serve():
        try:
            for reply in replies_once:
                with listener.accept() as c:
                    c.recv()
                    c.send_bytes(reply)
            c = listener.accept()  # accept_connection, then the calls
            req = c.recv()
            check(req[1] == "accept_connection", "request %r" % (req,))
            c.send(("#RETURN", None))
            for reply in calls:
                c.recv()
                c.send_bytes(reply)
            with listener.accept() as d:  # the handle's decref
                req = d.recv()
                check(req[1:3] == ("decref", ("abc",)), "request %r" % (req,))
                d.send(("#RETURN", None))
            c.close()
        except Exception as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    run_peer(peer, "hostile", c_address(listener.address), KEY.decode())
    t.join(TIMEOUT)
    listener.close()
    check(not errors, "fake server: %r" % errors)
    check(not os.path.exists(marker), "a hostile reply ran")
    print("hostile server: refused")


def inner(args):
    with tempfile.TemporaryDirectory() as tmp:
        test_remote_queue(args.peer)
        test_sync(args.peer, ("127.0.0.1", 0))
        test_sync(args.peer, os.path.join(tmp, "manager.sock"))
        test_hostile(args.peer, tmp)
    return 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--py-worker":
        return python_worker(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--inner", action="store_true")
    args = ap.parse_args()
    if args.inner:
        try:
            return inner(args)
        except Failure as e:
            print("FAIL: %s" % e)
            return 1
    sys.path.insert(0, HERE)
    from driver import find_python
    py = find_python(args.python)
    if py is None:
        print("SKIP: no python%s found" % args.python)
        return SKIP
    cmd = [py, os.path.abspath(__file__), "--inner", "--python", args.python,
           "--peer", args.peer]
    return subprocess.run(cmd, check=False, timeout=600).returncode


if __name__ == "__main__":
    sys.exit(main())
