#!/usr/bin/env python3
"""The exports of libmultiproc.so are exactly the public API.

    check_symbols.py --lib libmultiproc.so --header include/multiproc.h [--header ...] [--nm nm]
    check_symbols.py --glob-test --map src/multiproc.map --cc cc --work DIR [--nm nm]

Fails when the library exports a name that is not public (anything but
mp_<lowercase>..., e.g. an internal mp__ function or a stray helper; with
--map, the names the version script lists under its MULTIPROC_PRIVATE_0 node,
for libmultiproc-mpi, are accepted there and only there), or when a
function the public headers declare is not exported (declared but never
defined, or hidden by mistake).  The declared names are read from the headers:
comments, preprocessor lines, braces and typedefs are dropped and every
remaining `mp_name(` is a declaration.

--glob-test links a scratch library of made-up names with the version script
and checks which ones it exports: a new public function (mp_batch_call) is
exported with no edit to the map, an internal one (mp__helper) is not.
"""
import argparse
import re
import subprocess
import sys
import os

PUBLIC = re.compile(r"^mp_[a-z][A-Za-z0-9_]*$")


def declared_functions(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)         # block comments
    text = re.sub(r"//[^\n]*", " ", text)                       # line comments
    text = re.sub(r"\\\n", " ", text)                           # continuations
    text = re.sub(r"^[ \t]*#[^\n]*", " ", text, flags=re.M)     # preprocessor
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)             # string literals
    text = re.sub(r'extern\s*""\s*\{', " ", text)               # extern "C" {
    while True:                                                 # bodies -> ';'
        text, n = re.subn(r"\{[^{}]*\}", ";", text)
        if n == 0:
            break
    text = text.replace("}", " ")                               # its closing brace
    names = set()
    for stmt in text.split(";"):
        words = stmt.split()
        if not words or words[0] in ("typedef", "static"):
            continue                                            # types, inline functions
        m = re.search(r"\b(mp_[A-Za-z0-9_]+)\s*\(", stmt)
        if m:
            names.add(m.group(1))
    return names


def exported(lib, nm, versions=None):
    out = subprocess.run([nm, "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        kind, name = parts[1], parts[2]
        if kind in ("A",) and name.isupper():
            continue                                            # version node (MULTIPROC_0)
        syms[name.split("@")[0]] = kind
        if versions is not None:
            versions[name.split("@")[0]] = name.split("@")[-1]
    return syms


PRIVATE_NODE = "MULTIPROC_PRIVATE_0"


def private_names(map_path):
    """The names the map lists, one by one, under MULTIPROC_PRIVATE_0."""
    with open(map_path, encoding="utf-8") as f:
        text = re.sub(r"/\*.*?\*/", " ", f.read(), flags=re.S)
    m = re.search(PRIVATE_NODE + r"\s*\{(.*?)\}", text, flags=re.S)
    if not m:
        return set()
    body = m.group(1).split("local:")[0].replace("global:", " ")
    return {n.strip() for n in body.split(";") if n.strip()}


GLOB_CASES = {
    # name: exported?
    "mp_batch_call": True,          # a public function added later
    "mp_a": True,
    "mp_x2_y": True,
    "mp__helper": False,            # internal
    "mp__": False,
    "mp___triple": False,
    "mp_Upper": False,              # not the public naming
    "mp_9": False,
    "mpx_foo": False,
    "helper": False,
    "MP_init": False,
}


def glob_test(args):
    os.makedirs(args.work, exist_ok=True)
    src = os.path.join(args.work, "globlib.c")
    lib = os.path.join(args.work, "libgloblib.so")
    with open(src, "w") as f:
        for name in GLOB_CASES:
            f.write(f"int {name}(void) {{ return 1; }}\n")
        f.write("int mp_public_data = 1;\nint mp__internal_data = 1;\n")
    subprocess.run([args.cc, "-shared", "-fPIC", "-o", lib, src,
                    f"-Wl,--version-script={args.map}"], check=True)
    syms = exported(lib, args.nm)
    expect = dict(GLOB_CASES, mp_public_data=True, mp__internal_data=False)
    wrong = [f"{n} ({'exported' if n in syms else 'hidden'}, "
             f"expected {'exported' if e else 'hidden'})"
             for n, e in expect.items() if (n in syms) != e]
    extra = sorted(set(syms) - set(expect))
    if wrong or extra:
        print("version script glob: " + "; ".join(wrong + [f"{n} exported" for n in extra]))
        return 1
    print(f"version script glob: {len(expect)} names exported/hidden as expected")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib")
    ap.add_argument("--header", action="append")
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--glob-test", action="store_true")
    ap.add_argument("--map")
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--work")
    args = ap.parse_args()
    if args.glob_test:
        if not (args.map and args.work):
            ap.error("--glob-test needs --map and --work")
        return glob_test(args)
    if not (args.lib and args.header):
        ap.error("--lib and --header are needed")

    declared = set()
    for h in args.header:
        declared |= declared_functions(h)
    versions = {}
    syms = exported(args.lib, args.nm, versions)
    private = private_names(args.map) if args.map else set()
    if any("*" in n or "?" in n for n in private):
        sys.exit(f"check_symbols: {PRIVATE_NODE} must list names, not patterns")
    misplaced = sorted(n for n in private if n in syms and versions.get(n) != PRIVATE_NODE)
    syms = {n: k for n, k in syms.items() if n not in private}
    if len(declared) < 50:
        sys.exit(f"check_symbols: only {len(declared)} declarations found in "
                 f"{args.header}: the header parser is broken")

    bad = sorted(n for n in syms if not PUBLIC.match(n))
    undeclared = sorted(n for n in syms if PUBLIC.match(n) and n not in declared)
    missing = sorted(declared - set(syms))
    not_code = sorted(n for n in declared if n in syms and syms[n] not in ("T", "W", "i"))
    ok = True
    if misplaced:
        ok = False
        print(f"private names exported outside {PRIVATE_NODE}: {' '.join(misplaced)}")
    if bad:
        ok = False
        print(f"exported but not public ({len(bad)}): {' '.join(bad)}")
    if missing:
        ok = False
        print(f"declared in the public headers but not exported ({len(missing)}): "
              f"{' '.join(missing)}")
    if not_code:
        ok = False
        print(f"declared as functions but exported as data: {' '.join(not_code)}")
    if undeclared:
        # public-looking names the headers do not declare: exported by the
        # map's glob, but unusable without a declaration
        ok = False
        print(f"exported mp_ names no public header declares ({len(undeclared)}): "
              f"{' '.join(undeclared)}")
    print(f"{len(syms)} exported, {len(declared)} declared in {len(args.header)} headers")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
