"""The Python end of one multiprocessing.connection conversation with the C
library: the mirror of tests/interop/peer.c, with the same arguments.

    peer.py listen  ADDRESS KEY [--auth-fail-first] [--sizes=...] [--alarm=S]
                                [--expect-digest=NAME]
    peer.py connect ADDRESS KEY [--expect-auth-fail] [--sizes=...] [--alarm=S]
                                [--expect-digest=NAME]

ADDRESS is "unix:/path" or "tcp:HOST:PORT"; KEY is "none" or hex.  The
listener prints its address in the same form as the only line on stdout.
Plain stdlib, run by the interpreter under test.

--expect-digest=sha256 (Python 3.12+): both challenges of the handshake, the
one this side answers and the response it verifies, must have named that
digest ("{sha256}..."): a C side that fell back to the legacy HMAC-MD5 form
would still authenticate, so the test checks what Python parsed.
"""
import signal
import sys
from multiprocessing import AuthenticationError
from multiprocessing import connection as mp_connection
from multiprocessing.connection import Client, Listener

DIGESTS_SEEN = []


def record_digests():
    """Wrap 3.12+'s parser of "{digest}payload" messages; False before 3.12."""
    parse = getattr(mp_connection, "_get_digest_name_and_payload", None)
    if parse is None:
        return False

    def recording(message):
        name, payload = parse(message)
        DIGESTS_SEEN.append(name or "legacy")
        return name, payload

    mp_connection._get_digest_name_and_payload = recording
    return True

DIR_TO_LISTENER = 1
DIR_TO_CONNECTOR = 2
ROLE = "Python peer"


def fail(msg):
    sys.stderr.write("peer.py[%s %d.%d]: FAIL: %s\n"
                     % (ROLE, sys.version_info[0], sys.version_info[1], msg))
    sys.exit(1)


def log(msg):
    sys.stderr.write("peer.py[%s %d.%d]: %s\n"
                     % (ROLE, sys.version_info[0], sys.version_info[1], msg))


def pattern(n, direction):
    """Byte j is (131 j + 7 n + 29 direction) mod 251, as in peer.c."""
    c = (7 * n + 29 * direction) % 251
    block = bytes((131 * j + c) % 251 for j in range(251))
    return (block * (n // 251 + 1))[:n]


def send_plan(conn, sizes, direction):
    for n in sizes:
        conn.send_bytes(pattern(n, direction))


def recv_plan(conn, sizes, direction):
    for i, n in enumerate(sizes):
        data = conn.recv_bytes()
        if len(data) != n:
            fail("message %d: received %d bytes, want %d" % (i, len(data), n))
        want = pattern(n, direction)
        if data != want:
            j = next(k for k in range(n) if data[k] != want[k])
            fail("message %d (%d bytes): byte %d is 0x%02x, want 0x%02x"
                 % (i, n, j, data[j], want[j]))


def parse_address(text):
    if text.startswith("unix:"):
        return text[len("unix:"):]
    if text.startswith("tcp:"):
        host, port = text[len("tcp:"):].rsplit(":", 1)
        return (host, int(port))
    fail("bad address %r" % text)


def format_address(address):
    if isinstance(address, tuple):
        return "tcp:%s:%d" % (address[0], address[1])
    return "unix:" + address


def run_listener(address, key, auth_fail_first, sizes):
    listener = Listener(parse_address(address), authkey=key)
    print(format_address(listener.address), flush=True)
    if auth_fail_first:
        try:
            bad = listener.accept()
        except AuthenticationError as e:
            log("wrong key refused: AuthenticationError(%r)" % str(e))
        else:
            bad.close()
            fail("accept() of a client with the wrong key succeeded")
    conn = listener.accept()
    recv_plan(conn, sizes, DIR_TO_LISTENER)
    send_plan(conn, sizes, DIR_TO_CONNECTOR)
    try:
        conn.recv_bytes()
    except EOFError:
        pass
    else:
        fail("recv_bytes() after the client closed returned a message, "
             "want EOFError")
    conn.close()
    listener.close()


def run_connector(address, key, expect_auth_fail, sizes):
    try:
        conn = Client(parse_address(address), authkey=key)
    except AuthenticationError as e:
        if expect_auth_fail:
            log("wrong key refused: AuthenticationError(%r)" % str(e))
            return
        raise
    if expect_auth_fail:
        conn.close()
        fail("Client() with the wrong key succeeded")
    send_plan(conn, sizes, DIR_TO_LISTENER)
    recv_plan(conn, sizes, DIR_TO_CONNECTOR)
    if conn.poll(0):
        fail("more data is waiting after the whole plan")
    conn.close()


def main(argv):
    global ROLE
    if len(argv) < 4 or argv[1] not in ("listen", "connect"):
        sys.stderr.write("usage: peer.py listen|connect ADDRESS KEY [options]\n")
        return 2
    listening = argv[1] == "listen"
    ROLE = "Python listener" if listening else "Python client"
    auth_fail = False
    sizes = [0, 3, 16385, 16 << 20]
    alarm_s = 100
    expect_digest = None
    for opt in argv[4:]:
        if opt == ("--auth-fail-first" if listening else "--expect-auth-fail"):
            auth_fail = True
        elif opt.startswith("--sizes="):
            sizes = [int(s) for s in opt[len("--sizes="):].split(",")]
        elif opt.startswith("--expect-digest="):
            expect_digest = opt[len("--expect-digest="):]
            if not record_digests():
                fail("--expect-digest: this Python has no named-digest handshake")
        elif opt.startswith("--alarm="):
            alarm_s = int(opt[len("--alarm="):])
        else:
            fail("unknown option %r" % opt)
    signal.alarm(alarm_s)
    key = None if argv[3] == "none" else bytes.fromhex(argv[3])
    if auth_fail and key is None:
        fail("a wrong-key run needs a key")
    if listening:
        run_listener(argv[2], key, auth_fail, sizes)
    else:
        run_connector(argv[2], key, auth_fail, sizes)
    if expect_digest is not None:
        # at least the challenge answered and the response verified
        if len(DIGESTS_SEEN) < 2 or set(DIGESTS_SEEN) != {expect_digest}:
            fail("handshake digests %r, want only %r" % (DIGESTS_SEEN, expect_digest))
        log("handshake digests: %s" % ",".join(DIGESTS_SEEN))
    log("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
