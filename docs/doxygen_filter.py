#!/usr/bin/env python3
"""Doxygen INPUT_FILTER for include/*.h.

The header names a parameter inside prose as @name (as the kernel's
kernel-doc does).  Doxygen would read that as an unknown command, so this
filter rewrites @name to Doxygen's own "\\p name" unless name is one of the
Doxygen commands the header really uses.  Only comments are touched, and
the line count never changes, so warnings keep the header's line numbers.
"""
import re
import sys

# The Doxygen commands the headers use.  Anything else after an @ is a
# parameter name (some, like @fn, @name, @p and @c, are also Doxygen
# commands, which is why this list is short and explicit).
COMMANDS = {"return", "file"}
# Not after a word character or a colon: "unix:@name" is an address.
WORD = re.compile(r"(?<![\w:])@([A-Za-z_][A-Za-z_0-9]*)")


def fix(text):
    return WORD.sub(lambda m: m.group(0) if m.group(1) in COMMANDS
                    else "\\p " + m.group(1), text)


def main():
    src = open(sys.argv[1], encoding="utf-8").read()
    out = []
    pos = 0
    # Only inside /* ... */ comments.
    for m in re.finditer(r"/\*.*?\*/", src, re.S):
        out.append(src[pos:m.start()])
        out.append(fix(m.group(0)))
        pos = m.end()
    out.append(src[pos:])
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
