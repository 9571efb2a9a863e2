"""Seeds for fuzz_pickle: what Python itself pickles, with protocols 2-5.

    python3.11 tests/fuzz/gen_pickle_corpus.py tests/fuzz/corpus/pickle
    python3.12 ...   python3.13 ...   (each adds what it writes differently)

Each file is one flag byte (bit 0: decode with MP_PY_INERT) and a pickle,
named by its content's hash, so running it again (or under another
version) adds only new files.  The values: every supported type, nested
and shared containers, the protocol 2/3 forms of bytes, sets and
bytearrays, big ints, and what only MP_PY_INERT reads (an exception, a
manager's Token, an object whose __reduce__ would run a command) .
"""
import hashlib
import os
import pickle
import random
import sys
from multiprocessing.managers import Token


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def values():
    rng = random.Random(5)
    shared = [1, "s"]
    out = [
        None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31, 2**63,
        -2**63 - 1, 2**200, -(2**1000), 0.0, -0.0, 1.5, float("inf"), float("nan"),
        "", "a", "h\u00e9llo \u20ac \U0001f600", "\ud800", "x" * 300,
        b"", b"\x00\xff", bytes(range(256)), bytearray(), bytearray(b"xy"),
        (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1], list(range(1200)),
        {}, {"job": 3}, {1: "a", 2.5: None, (1, "t"): [b"v"], frozenset([1]): {}},
        set(), {1, 2, 3}, frozenset(), frozenset({"a", (1, 2)}), set(range(1100)),
        [shared, shared, (shared,)], {"k": shared, "l": [shared]},
        [[[[[[[[[[1]]]]]]]]]], ((((((),),),),),),
        {str(i): i for i in range(50)},
        [rng.random() for _ in range(20)],
    ]
    return out


def inert_values():
    return [KeyError("x"), ValueError("bad", 3),
            Token("dict", ("127.0.0.1", 5000), "7f0a"), RunsCode(),
            [1, KeyError("y")]]


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    seeds = [(0, v) for v in values()] + [(1, v) for v in inert_values()]
    loop = []
    loop.append(loop)
    seeds.append((0, loop))
    added = 0
    for flag, v in seeds:
        for proto in (2, 3, 4, 5):
            data = bytes([flag]) + pickle.dumps(v, proto)
            name = hashlib.sha1(data).hexdigest()[:16]
            path = os.path.join(outdir, name)
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
                added += 1
    print("python %d.%d: %d new seeds" % (sys.version_info[:2] + (added,)))


if __name__ == "__main__":
    main()
