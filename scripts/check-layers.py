#!/usr/bin/env python3
"""Check that calls between the library's source files only point down.

    python3 scripts/check-layers.py [--allow FILE] [--write-allow FILE] OBJECT.o ...

Reads the call graph from the object files (nm: the symbols each one
defines and the ones it leaves undefined) and places each source file in a
layer, from the bottom (docs/ARCHITECTURE.md describes them):

    util < sys < Python values (pyobj, pickle) < reduction
         < process and start methods < connection
         < Python managers' clients (py_manager) < proxy
         < arena and primitives < queues < managers < pool

A file may call a file of its own layer or of a layer below.  An upward
call is an error, unless FILE (--allow) lists it as "caller -> callee":
the known ones, each to be removed; an allowed edge that is gone is
reported so that the list only shrinks.  Exit status 1 on a new upward
call, or on a file the table does not place.
"""
import argparse
import os
import subprocess
import sys

LAYERS = [
    ("util", ["util"]),
    ("sys", ["sys"]),
    ("Python values", ["pyobj", "pickle"]),
    ("reduction", ["reduction"]),
    ("process and start methods", ["process", "context", "popen_fork", "popen_spawn",
                                   "popen_forkserver", "spawn", "forkserver",
                                   "resource_tracker"]),
    ("connection", ["connection"]),
    ("Python managers' clients", ["py_manager"]),
    ("proxy", ["proxy"]),
    ("arena and primitives", ["heap", "synchronize", "sharedctypes", "shared_memory"]),
    ("queues", ["queues"]),
    ("managers", ["managers", "manager_server"]),
    ("pool", ["pool", "pool_worker", "pool_heap"]),
]
LEVEL = {f: i for i, (_, files) in enumerate(LAYERS) for f in files}


def source_name(obj):
    """build/.../process.c.o -> process"""
    base = os.path.basename(obj)
    for suffix in (".c.o", ".o"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def symbols(obj):
    out = subprocess.run(["nm", "-P", obj], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper():          # global: text, data, bss, read-only, weak
            defined.add(name)
    return defined, undefined


def edges(objs):
    owner, needs = {}, {}
    for obj in objs:
        src = source_name(obj)
        defined, undefined = symbols(obj)
        for name in defined:
            owner[name] = src
        needs[src] = undefined
    out = {}
    for src, names in needs.items():
        for name in names:
            dst = owner.get(name)
            if dst and dst != src:
                out.setdefault((src, dst), set()).add(name)
    return out


def read_allow(path):
    allowed = set()
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if "->" in line:
                    a, b = (x.strip() for x in line.split("->", 1))
                    allowed.add((a, b))
    return allowed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--allow", help="the known upward calls, one 'caller -> callee' a line")
    ap.add_argument("--write-allow", help="write the upward calls found to this file")
    ap.add_argument("objects", nargs="+")
    args = ap.parse_args()

    # CTest passes a CMake list ($<TARGET_OBJECTS:...>) as one argument
    objects = [o for arg in args.objects for o in arg.split(";") if o]
    found = edges(objects)
    unplaced = sorted({s for pair in found for s in pair if s not in LEVEL})
    if unplaced:
        print(f"check-layers: no layer for {', '.join(unplaced)}: add it to LAYERS "
              f"(scripts/check-layers.py) and docs/ARCHITECTURE.md", file=sys.stderr)
        return 1
    upward = {pair: names for pair, names in found.items()
              if LEVEL[pair[1]] > LEVEL[pair[0]]}
    if args.write_allow:
        with open(args.write_allow, "w", encoding="utf-8") as f:
            f.write("# Upward calls still to be removed (scripts/check-layers.py).\n"
                    "# The list may only shrink.\n")
            for a, b in sorted(upward):
                f.write(f"{a} -> {b}    # {', '.join(sorted(upward[(a, b)])[:4])}\n")
    allowed = read_allow(args.allow)
    status = 0
    for (a, b), names in sorted(upward.items()):
        if (a, b) not in allowed:
            print(f"check-layers: {a} ({LAYERS[LEVEL[a]][0]}) calls up into {b} "
                  f"({LAYERS[LEVEL[b]][0]}): {', '.join(sorted(names))}", file=sys.stderr)
            status = 1
    for a, b in sorted(allowed - set(upward)):
        print(f"check-layers: {a} -> {b} no longer happens: remove it from {args.allow}",
              file=sys.stderr)
        status = 1
    print(f"check-layers: {len(found)} calls between files, {len(upward)} upward "
          f"({len(upward) - len(set(upward) - allowed)} of them known)")
    return status


if __name__ == "__main__":
    sys.exit(main())
