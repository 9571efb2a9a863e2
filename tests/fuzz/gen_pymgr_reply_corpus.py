"""Seeds for fuzz_pymgr_reply: replies a Python manager server sends.

    python3.11 tests/fuzz/gen_pymgr_reply_corpus.py tests/fuzz/corpus/pymgr_reply
    python3.12 ...   python3.13 ...   (each adds what it writes differently)

Each file is one reply's pickle as Server.serve_client / handle_request
send it (Connection.send: the default protocol), named by its content's
hash: #RETURN of plain values and of dict views (rebuild_as_list) and of a
proxy (RebuildProxy), #PROXY with a Token, #ERROR with exceptions,
#TRACEBACK, and hostile ones that name os.system where a token or a value
belongs.
"""
import hashlib
import os
import queue
import sys
from multiprocessing import reduction
from multiprocessing.managers import DictProxy, RebuildProxy, Token, AutoProxy


class Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def replies():
    token = Token("dict", ("127.0.0.1", 50000), "7f0a2b3c")
    unix = Token("list", "/tmp/pymp-x/listener-y", "7f0a2b40")
    d = {"a": 1, "b": [1, 2.5, None], "c": {"x": b"y"}}
    return [
        ("#RETURN", None),
        ("#RETURN", d),
        ("#RETURN", ("7f0a2b3c", ("__getitem__", "__setitem__", "keys"))),
        ("#RETURN", d.keys()),
        ("#RETURN", d.items()),
        ("#RETURN", Call(RebuildProxy, DictProxy, token, "pickle", {})),
        ("#RETURN", Call(RebuildProxy, AutoProxy, unix, "pickle", {"exposed": ("get", "put")})),
        ("#PROXY", (("child", "get_depth"), token)),
        ("#ERROR", KeyError("missing")),
        ("#ERROR", queue.Empty()),
        ("#ERROR", ValueError("bad", 3)),
        ("#TRACEBACK", "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"),
        ("#UNSERIALIZABLE", "TypeError: cannot pickle"),
        ("#RETURN", Call(os.system, "true")),
        ("#PROXY", (("get",), Call(os.system, "true"))),
        ("#RETURN", Call(RebuildProxy, os.system, token, "pickle", {})),
        Call(os.system, "true"),
    ]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for r in replies():
        data = bytes(reduction.ForkingPickler.dumps(r))
        name = hashlib.sha256(data).hexdigest()[:16]
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
