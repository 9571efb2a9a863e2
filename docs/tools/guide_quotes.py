#!/usr/bin/env python3
"""Keep the guide's quotes of examples/ true.

A quote in docs/guide/*.md is written as

    <!-- quote examples/pipe.c:60-70 -->
    ```c
    ...the lines...
    ```

This script fills each such block with those lines of the real file
(default), or with --check fails when a block differs from the file or the
guide names a mp_*/MP_* identifier that include/multiproc.h does not declare.
"""
import glob
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MARK = re.compile(r"<!-- quote (\S+):(\d+)-(\d+) -->\n```c\n(.*?)```\n", re.S)


def expand(text):
    def repl(m):
        path, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
        body = "".join(lines[a - 1:b])
        return f"<!-- quote {path}:{a}-{b} -->\n```c\n{body}```\n"
    return MARK.sub(repl, text)


def declared():
    names = set()
    for h in ("include/multiproc.h", "include/multiproc/errno.h", "include/multiproc/mpi.h",
              "include/multiproc/py.h"):
        t = open(os.path.join(ROOT, h), encoding="utf-8").read()
        names |= set(re.findall(r"\b((?:mp|MP)_\w+)", t))
        names |= {"MP_" + n for n in re.findall(r"XX\((\w+),", t)}
    return names


def main():
    check = "--check" in sys.argv
    known = declared()
    bad = 0
    for page in sorted(glob.glob(os.path.join(ROOT, "docs", "guide", "*.md"))):
        text = open(page, encoding="utf-8").read()
        new = expand(text)
        rel = os.path.relpath(page, ROOT)
        # Identifiers outside quotes must be the header's (quotes are the
        # examples' own code, which may have local mp_-looking names).
        prose = MARK.sub("", new)
        for ident in sorted(set(re.findall(r"\b((?:mp|MP)_\w+)", prose))):
            if ident not in known and not ident.endswith("_"):
                print(f"{rel}: {ident} is not declared in the header")
                bad += 1
        if new != text:
            if check:
                print(f"{rel}: a quote differs from its example (run docs/tools/guide_quotes.py)")
                bad += 1
            else:
                with open(page, "w", encoding="utf-8") as f:
                    f.write(new)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
