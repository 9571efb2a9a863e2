#!/usr/bin/env python3
"""Every prototype in a man page's SYNOPSIS must be declared, word for
word (spacing aside), in include/multiproc.h.

    check_synopsis.py HEADER PAGE...
"""
import re
import sys


def squash(s):
    return re.sub(r"\s+", "", s)


def roff_text(line):
    """The text of one .B/.BI/.RB/.IR line, fonts dropped."""
    m = re.match(r"\.(?:B|BI|IB|RB|BR|IR|RI)\s+(.*)", line.strip())
    if not m:
        return None
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', m.group(1))
    return "".join(a or b for a, b in parts).replace("\\-", "-")


def main():
    header = open(sys.argv[1], encoding="utf-8").read()
    header = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    header = squash(header.replace("MP_MUST_CHECK", ""))
    bad = 0
    for page in sys.argv[2:]:
        text = open(page, encoding="utf-8").read()
        syn = re.search(r"^\.SH SYNOPSIS\n(.*?)^\.SH", text, re.S | re.M)
        if not syn:
            continue
        decl = ""
        for line in syn.group(1).splitlines():
            t = roff_text(line)
            if t is None or t.startswith("#include") or not t.strip():
                continue
            decl += t
            if decl.rstrip().endswith(";"):
                if squash(decl) not in header:
                    print(f"{page}: not declared in the header: {decl}")
                    bad += 1
                decl = ""
            elif not decl.rstrip().endswith((",", "(")):
                decl = ""  # prose, not a prototype
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
