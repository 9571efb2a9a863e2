"""Run one interop test: the C library's interop_peer against a real Python
interpreter's multiprocessing.connection (tests/interop/peer.py).

    driver.py --python 3.12 --peer PATH/interop_peer
              --listener c|py --family unix|tcp --auth key|nokey|wrongkey

The listener starts first and prints its address; the driver reads it, then
runs the client (for wrongkey: first a client with a different key, which
both sides must refuse, then one with the right key, which the same
listener must accept).  Every peer must exit 0.  A unix socket must be gone
once its listener has closed.  Peers that are still running at the end
(timeout, failure) are killed; the temporary directory is removed.

Exit status: 0 pass, 1 fail, 77 skip (the interpreter is not installed).
"""
import argparse
import glob
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = bytes([0]) + b"interop key" + bytes([0xFF, 0x80])
WRONG_KEY = KEY[:-1] + bytes([0x81])
SKIP = 77


class Failure(Exception):
    pass


def version_key(path):
    name = os.path.basename(os.path.dirname(os.path.dirname(path)))
    return [int(p) if p.isdigit() else -1 for p in re.split(r"[.]", name)]


def find_python(version):
    """The newest interpreter whose sys.version_info is @version, or None."""
    candidates = []
    env = os.environ.get("MP_INTEROP_PYTHON_" + version.replace(".", "_"))
    if env:
        candidates.append(env)
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")]
    for root in roots:
        if root:
            found = glob.glob(os.path.join(root, "versions", version + ".*",
                                           "bin", "python3"))
            candidates += sorted(found, key=version_key, reverse=True)
    for name in ("python" + version, "python3"):
        path = shutil.which(name)
        if path:
            candidates.append(path)
    for path in candidates:
        try:
            out = subprocess.run(
                [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.decode().strip() == version:
            return path
    return None


class Peers:
    """The peers started so far; kill() ends whichever still run."""

    def __init__(self, deadline):
        self.deadline = deadline
        self.procs = []

    def remaining(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Failure("the test's time is up")
        return left

    def start(self, name, cmd, stdout=None):
        print("driver: start %s: %s" % (name, " ".join(cmd)), flush=True)
        # Own process group, so that kill() reaches anything it started too.
        proc = subprocess.Popen(cmd, stdout=stdout, start_new_session=True)
        proc.name = name
        proc.reported = False
        self.procs.append(proc)
        return proc

    def wait(self, proc):
        try:
            rc = proc.wait(timeout=self.remaining())
        except subprocess.TimeoutExpired:
            raise Failure("%s did not finish in time" % proc.name)
        proc.reported = True
        if rc != 0:
            raise Failure("%s exited with status %d" % (proc.name, rc))
        print("driver: %s exited 0" % proc.name, flush=True)

    def read_line(self, proc):
        """The first line @proc writes on its stdout (a pipe)."""
        data = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not data.endswith(b"\n"):
                if not sel.select(self.remaining()):
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    try:
                        proc.wait(timeout=self.remaining())
                    except subprocess.TimeoutExpired:
                        pass
                    raise Failure("%s printed no address (exit status %s)"
                                  % (proc.name, proc.returncode))
                data += chunk
        return data.decode().strip()

    def kill(self):
        for proc in self.procs:
            if proc.poll() is not None and not proc.reported:
                print("driver: %s had exited with status %d"
                      % (proc.name, proc.returncode), flush=True)
            elif proc.poll() is None:
                print("driver: killing %s (pid %d)" % (proc.name, proc.pid),
                      flush=True)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


def run(args, python, tmp):
    peers = Peers(time.monotonic() + args.timeout)
    alarm = "--alarm=%d" % (args.timeout + 10)
    c_peer = [args.peer]
    py_peer = [python, os.path.join(HERE, "peer.py")]
    if args.listener == "c":
        listen_cmd, connect_cmd = c_peer, py_peer
        listen_name, connect_name = "C listener", "Python %s client" % args.python
    else:
        listen_cmd, connect_cmd = py_peer, c_peer
        listen_name, connect_name = "Python %s listener" % args.python, "C client"

    path = os.path.join(tmp, "sock")
    wanted = "unix:" + path if args.family == "unix" else "tcp:127.0.0.1:0"
    key = "none" if args.auth == "nokey" else KEY.hex()
    # 3.12+ speaks the named-digest handshake ("{sha256}"): the Python peer
    # checks that both directions of it used that form, not the legacy one
    modern = tuple(int(p) for p in args.python.split(".")[:2]) >= (3, 12)
    check = ["--expect-digest=sha256"] if modern and args.auth != "nokey" else []
    listen_check = check if args.listener == "py" else []
    connect_check = check if args.listener == "c" else []
    try:
        extra = ["--auth-fail-first"] if args.auth == "wrongkey" else []
        listener = peers.start(listen_name,
                               listen_cmd + ["listen", wanted, key, alarm] + extra + listen_check,
                               stdout=subprocess.PIPE)
        address = peers.read_line(listener)
        print("driver: %s is at %s" % (listen_name, address), flush=True)
        if args.family == "unix":
            if address != wanted:
                raise Failure("listener address %r, want %r" % (address, wanted))
            if not os.path.exists(path):
                raise Failure("no socket file at %s while listening" % path)
        else:
            m = re.fullmatch(r"tcp:127\.0\.0\.1:(\d+)", address)
            if not m or not 0 < int(m.group(1)) < 65536:
                raise Failure("listener address %r, want tcp:127.0.0.1:PORT "
                              "with the real port" % address)
            if args.listener == "py" and args.auth == "nokey":
                # The C client also takes a bare HOST:PORT.
                address = address[len("tcp:"):]

        if args.auth == "wrongkey":
            bad = peers.start(connect_name + " (wrong key)",
                              connect_cmd + ["connect", address, WRONG_KEY.hex(), alarm,
                                             "--expect-auth-fail"])
            peers.wait(bad)
            if listener.poll() is not None:
                raise Failure("the listener exited (status %d) after refusing a "
                              "wrong key" % listener.returncode)
        client = peers.start(connect_name,
                             connect_cmd + ["connect", address, key, alarm] + connect_check)
        peers.wait(client)
        peers.wait(listener)
        if args.family == "unix" and os.path.lexists(path):
            raise Failure("the socket file %s is left after the listener closed" % path)
    finally:
        peers.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", required=True, help="interpreter version, e.g. 3.12")
    ap.add_argument("--peer", required=True, help="path of interop_peer")
    ap.add_argument("--listener", choices=("c", "py"), required=True)
    ap.add_argument("--family", choices=("unix", "tcp"), required=True)
    ap.add_argument("--auth", choices=("key", "nokey", "wrongkey"), required=True)
    ap.add_argument("--timeout", type=int, default=100, help="seconds for the whole test")
    args = ap.parse_args()

    python = find_python(args.python)
    if python is None:
        print("SKIP: no Python %s interpreter found (pyenv versions/%s.*, "
              "python%s on PATH, or MP_INTEROP_PYTHON_%s)"
              % (args.python, args.python, args.python, args.python.replace(".", "_")),
              flush=True)
        return SKIP
    print("driver: Python %s is %s" % (args.python, python), flush=True)
    if not os.access(args.peer, os.X_OK):
        print("FAIL: %s is not an executable" % args.peer, flush=True)
        return 1

    tmp = tempfile.mkdtemp(prefix="mp-interop-")
    try:
        run(args, python, tmp)
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
