"""The pickle codec (mp_py_loads / mp_py_dumps) against a real Python.

    pickle_interop.py --python 3.12 --peer PATH/pickle_peer [--seed N] [--count N]

Runs itself under the interpreter of that version (found as driver.py finds
it; not installed: exit 77), which then:

  1. makes --count random nested values (seeded: None, bool, ints of any
     size, floats, str with any code point, bytes, bytearray, tuples, lists,
     dicts, sets, frozensets, some containers shared), pickles each with
     protocols 2, 3, 4 and 5, and has the C peer decode each and encode it
     again; every one must decode, C's pickle must be protocol 4, load in
     this Python (the C unpickler and the strict pure-Python one) to a value
     of the same types, the same contents and the same sharing of mutable
     containers, and decode in C to a value equal to the first;
  2. loads the values the C peer built with the constructors and compares
     them with what they must be;
  3. has the C peer refuse pickles that would run code here (os.system,
     builtins.eval, a class's __reduce__), a list that contains itself, and
     an exception without MP_PY_INERT; with it, the exception decodes but
     is not written back;
  4. exchanges values with the C peer over multiprocessing.connection with
     an authkey (Python's Listener and C's mp_client, C's mp_listener and
     Python's Client; unix and tcp): C sends a value first, then echoes
     with mp_conn_recv_py/mp_conn_send_py what Python's conn.send wrote,
     which Python's conn.recv must read back the same.

Exit status: 0 pass, 1 fail, 77 skip.
"""
import argparse
import io
import os
import pickle
import pickletools
import random
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
EBADMSG = -4209
EINVAL = -22


class Failure(Exception):
    pass


# ---- random values --------------------------------------------------------

class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.made = []  # finished containers that may be shared

    def text(self):
        r = self.rng
        n = r.choice([0, 1, 3, 10, 40, 300])
        pools = [(32, 127), (128, 0x800), (0x800, 0xD800), (0xE000, 0x10000),
                 (0x10000, 0x110000), (0, 32)]
        out = []
        for _ in range(n):
            lo, hi = r.choice(pools)
            out.append(chr(r.randrange(lo, hi)))
        if r.random() < 0.03:
            out.append("\ud800")  # a lone surrogate: pickle writes it (surrogatepass)
        return "".join(out)

    def integer(self):
        r = self.rng
        bits = r.choice([1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 100, 1000, 3000])
        v = r.getrandbits(bits)
        return -v if r.random() < 0.5 else v

    def floating(self):
        r = self.rng
        c = r.random()
        if c < 0.1:
            return r.choice([0.0, -0.0, float("inf"), float("-inf"), 1e308, 5e-324])
        if c < 0.3:
            return float(r.randrange(-2**70, 2**70))
        return r.uniform(-1e6, 1e6)

    def hashable(self, depth):
        r = self.rng
        k = r.randrange(8)
        if k == 0:
            return None
        if k == 1:
            return r.random() < 0.5
        if k == 2:
            return self.integer()
        if k == 3:
            return self.floating()
        if k == 4:
            return self.text()
        if k == 5:
            return r.randbytes(r.choice([0, 1, 5, 300]))
        if k == 6 and depth < 4:
            return tuple(self.hashable(depth + 1) for _ in range(r.randrange(5)))
        if k == 7 and depth < 4:
            return frozenset(self.hashable(depth + 1) for _ in range(r.randrange(5)))
        return self.text()

    def value(self, depth=0):
        r = self.rng
        if self.made and r.random() < 0.08:
            return r.choice(self.made)  # shared: pickle's memo carries it
        if depth >= 5:
            return self.hashable(depth)
        k = r.randrange(12)
        if k < 4:
            return self.hashable(depth)
        if k == 4:
            v = bytearray(r.randbytes(r.choice([0, 2, 70])))
        elif k == 5:
            v = tuple(self.value(depth + 1) for _ in range(r.randrange(6)))
        elif k in (6, 7):
            v = [self.value(depth + 1) for _ in range(r.choice([0, 1, 2, 5, 12]))]
            if r.random() < 0.02:
                v = v * 300  # more than one APPENDS batch
        elif k in (8, 9):
            v = {self.hashable(depth + 1): self.value(depth + 1)
                 for _ in range(r.choice([0, 1, 3, 9, 20]))}
        elif k == 10:
            v = set(self.hashable(depth + 1) for _ in range(r.randrange(12)))
        else:
            v = frozenset(self.hashable(depth + 1) for _ in range(r.randrange(12)))
        self.made.append(v)
        return v


# ---- comparison -------------------------------------------------------------

def same(a, b, path="v"):
    """Same types and contents (1 is not True, 0.0 is not -0.0), same order
    of dict keys."""
    if type(a) is not type(b):
        raise Failure("%s: type %s != %s" % (path, type(a).__name__, type(b).__name__))
    if isinstance(a, float):
        if struct.pack("<d", a) != struct.pack("<d", b):
            raise Failure("%s: %r != %r" % (path, a, b))
    elif isinstance(a, (tuple, list)):
        if len(a) != len(b):
            raise Failure("%s: len %d != %d" % (path, len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (path, i))
    elif isinstance(a, dict):
        if len(a) != len(b):
            raise Failure("%s: len %d != %d" % (path, len(a), len(b)))
        for i, ((ka, va), (kb, vb)) in enumerate(zip(a.items(), b.items())):
            same(ka, kb, "%s.key%d" % (path, i))
            same(va, vb, "%s[%r]" % (path, ka))
    elif isinstance(a, (set, frozenset)):
        if len(a) != len(b):
            raise Failure("%s: len %d != %d" % (path, len(a), len(b)))
        other = {y: y for y in b}
        for x in a:
            if x not in other:
                raise Failure("%s: %r missing" % (path, x))
            same(x, other[x], "%s{%r}" % (path, x))
    elif a != b:
        raise Failure("%s: %r != %r" % (path, a, b))


def sharing(v):
    """The order in which mutable containers are met, a repeat by its first
    number: equal for two values iff they share the same mutable parts."""
    seen, out = {}, []

    def walk(x):
        if isinstance(x, (list, dict, set, bytearray)):
            if id(x) in seen:
                out.append(seen[id(x)])
                return
            seen[id(x)] = len(seen)
            out.append(seen[id(x)])
        if isinstance(x, (list, tuple)):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for k, y in x.items():
                walk(k)
                walk(y)
    walk(v)
    return out


# ---- the C peer --------------------------------------------------------------

def run_peer(peer, args, records, timeout=300):
    data = b"".join(struct.pack("<I", len(r)) + r for r in records)
    p = subprocess.run([peer] + args, input=data, stdout=subprocess.PIPE,
                       timeout=timeout, check=False)
    if p.returncode != 0:
        raise Failure("pickle_peer %s exited %d" % (" ".join(args), p.returncode))
    return p.stdout


def parse_roundtrip(out, count):
    res, pos = [], 0

    def i32():
        nonlocal pos
        (v,) = struct.unpack_from("<i", out, pos)
        pos += 4
        return v
    for _ in range(count):
        err = i32()
        if err != 0:
            res.append((err, None, None))
            continue
        n = i32()
        if n < 0:
            res.append((0, n, None))
            continue
        data = out[pos:pos + n]
        pos += n
        eq = out[pos]
        pos += 1
        res.append((0, data, eq))
    if pos != len(out):
        raise Failure("pickle_peer wrote %d bytes, %d read" % (len(out), pos))
    return res


def check_c_pickle(data, original, what):
    if data[:2] != b"\x80\x04":
        raise Failure("%s: C wrote %r..., not protocol 4" % (what, data[:4]))
    pickletools.dis(data, out=io.StringIO())  # well-formed, memo consistent
    for loads in (pickle.loads, pickle._loads):  # C and strict pure-Python unpicklers
        back = loads(data)
        same(original, back)
        if sharing(original) != sharing(back):
            raise Failure("%s: sharing of mutable containers differs" % what)


def test_roundtrip(peer, seed, count):
    gen = Gen(seed)
    values = [gen.value() for _ in range(count)]
    records, index = [], []
    for i, v in enumerate(values):
        for proto in (2, 3, 4, 5):
            records.append(pickle.dumps(v, proto))
            index.append((i, proto))
    results = parse_roundtrip(run_peer(peer, ["roundtrip"], records), len(records))
    for (i, proto), (err, data, eq) in zip(index, results):
        what = "value %d (seed %d) protocol %d" % (i, seed, proto)
        if err != 0:
            raise Failure("%s: C refused it: %d" % (what, err))
        if not isinstance(data, bytes):
            raise Failure("%s: C could not write it back: %d" % (what, data))
        if eq != 1:
            raise Failure("%s: C decoded its own pickle to another value" % what)
        try:
            check_c_pickle(data, values[i], what)
        except Failure as e:
            raise Failure("%s: %s" % (what, e)) from None
    print("roundtrip: %d values x 4 protocols ok" % count)


def expected_build():
    shared = [7]
    return [
        None, True, -2**63, -2**71, 2**64 - 1, -2.5, "h\u00e9llo \u20ac", b"\0\1\2",
        bytearray(b"ba"), bytearray(),
        (1, "two", [], None, None),
        {"job": 3, 1: "uno", (b"k", frozenset()): None},
        [set(range(2000)), frozenset({"a", True}), shared, shared, shared],
        ("x" * 200000, b"x" * 100000),
        list(range(30000)),
    ]


def test_build(peer):
    out = subprocess.run([peer, "build"], stdout=subprocess.PIPE, timeout=120,
                         check=True).stdout
    want = expected_build()
    pos = 0
    for i, v in enumerate(want):
        (n,) = struct.unpack_from("<I", out, pos)
        data = out[pos + 4:pos + 4 + n]
        pos += 4 + n
        try:
            check_c_pickle(data, v, "built value %d" % i)
        except Failure as e:
            raise Failure("built value %d: %s" % (i, e)) from None
    if pos != len(out):
        raise Failure("build: %d bytes left over" % (len(out) - pos))
    print("build: %d values ok" % len(want))


class RunsCode:
    """Unpickled by Python, this would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


class Evals:
    def __reduce__(self):
        import builtins
        return (builtins.eval, ("__import__('os').getpid()",))


def test_hostile(peer, tmp):
    marker = os.path.join(tmp, "ran")
    loop = []
    loop.append(loop)
    d = {}
    d["self"] = [d]
    cases = []
    for proto in (2, 3, 4, 5):
        cases += [
            ("os.system p%d" % proto, pickle.dumps(RunsCode(marker), proto), True),
            ("eval p%d" % proto, pickle.dumps(Evals(), proto), True),
            ("os.system in a list p%d" % proto, pickle.dumps([1, RunsCode(marker)], proto), True),
            ("KeyError p%d" % proto, pickle.dumps(KeyError("x"), proto), True),
            ("list in itself p%d" % proto, pickle.dumps(loop, proto), False),
            ("dict in itself p%d" % proto, pickle.dumps(d, proto), False),
        ]
    for flags in ([], ["inert"]):
        records = [c[1] for c in cases]
        results = parse_roundtrip(run_peer(peer, ["roundtrip"] + flags, records), len(records))
        for (what, _, named), (err, data, _) in zip(cases, results):
            if flags and named:
                # kept as an inert object, which C never writes back
                if err != 0 or data != EINVAL:
                    raise Failure("%s (inert): got %r %r, want 0 then EINVAL" % (what, err, data))
            elif err != EBADMSG:
                raise Failure("%s%s: got %r, want MP_EBADMSG" % (what, " (inert)" if flags else "", err))
    if os.path.exists(marker):
        raise Failure("a command in a pickle ran")
    print("hostile: %d pickles refused (or kept inert) ok" % len(cases))


KEY = bytes([0]) + b"pickle key" + bytes([0xFF, 0x80])


def parse_address(text):
    if text.startswith("unix:"):
        return text[5:]
    host, port = text[4:].rsplit(":", 1)
    return (host, int(port))


def exchange(conn, values, marker, what):
    """The C peer's greeting, then each value echoed back as it was sent."""
    from multiprocessing import connection
    if not connection.wait([conn], 60):
        raise Failure("%s: no greeting from C" % what)
    same({"from": "c", "n": [1, 2.5, None]}, conn.recv(), "greeting")
    for i, v in enumerate(values):
        conn.send(v)
        back = conn.recv()
        same(v, back, "%s echo %d" % (what, i))
        if sharing(v) != sharing(back):
            raise Failure("%s echo %d: sharing differs" % (what, i))
    conn.send(RunsCode(marker))         # inert: C names it, never runs it
    if conn.recv() != "object posix.system":
        raise Failure("%s: the os.system object came back otherwise" % what)
    loop = []
    loop.append(loop)
    conn.send(loop)                      # refused: C keeps no cycles
    if conn.recv() != "refused":
        raise Failure("%s: a list in itself was not refused" % what)
    conn.send("end of exchange")


def test_conn(peer, tmp, seed):
    import threading
    from multiprocessing.connection import Client, Listener
    gen = Gen(seed + 1)
    values = [gen.value() for _ in range(60)] + [{"big": b"x" * 300000}]
    marker = os.path.join(tmp, "ran-conn")
    for listener in ("py", "c"):
        for family in ("unix", "tcp"):
            what = "%s listener, %s" % (listener, family)
            if listener == "py":
                addr = os.path.join(tmp, "py.sock") if family == "unix" else ("127.0.0.1", 0)
                lst = Listener(addr, authkey=KEY)
                a = lst.address
                text = "unix:" + a if isinstance(a, str) else "tcp:%s:%d" % a
                proc = subprocess.Popen([peer, "conn-client", text, KEY.hex()])
                got = []
                t = threading.Thread(target=lambda: got.append(lst.accept()), daemon=True)
                t.start()
                t.join(60)
                if not got:
                    proc.kill()
                    raise Failure("%s: C never connected" % what)
                conn = got[0]
            else:
                text = "unix:" + os.path.join(tmp, "c.sock") if family == "unix" else "tcp:127.0.0.1:0"
                proc = subprocess.Popen([peer, "conn-listen", text, KEY.hex()],
                                        stdout=subprocess.PIPE)
                line = proc.stdout.readline().decode().strip()
                conn = Client(parse_address(line), authkey=KEY)
            try:
                exchange(conn, values, marker, what)
                if proc.wait(60) != 0:
                    raise Failure("%s: pickle_peer exited %d" % (what, proc.returncode))
            finally:
                conn.close()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                if listener == "py":
                    lst.close()
    if os.path.exists(marker):
        raise Failure("a command in a pickle ran")
    print("connection: C and Python exchange %d values both ways ok" % len(values))


def inner(args):
    print("python %s" % sys.version.split()[0])
    with tempfile.TemporaryDirectory() as tmp:
        test_roundtrip(args.peer, args.seed, args.count)
        test_build(args.peer)
        test_hostile(args.peer, tmp)
        test_conn(args.peer, tmp, args.seed)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=300)
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
           "--peer", args.peer, "--seed", str(args.seed), "--count", str(args.count)]
    return subprocess.run(cmd, check=False, timeout=600).returncode


if __name__ == "__main__":
    sys.exit(main())
