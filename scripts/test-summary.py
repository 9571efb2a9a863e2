#!/usr/bin/env python3
"""One line of pass/fail counts per start method, from CTest's JUnit file.

    scripts/test-summary.py BUILD/ctest-junit.xml

Test ids ending in /fork, /spawn, /forkserver or /proxy count under that variant,
every other test (runner, fuzz, interop, install, package, ...) under
"other".  Prints e.g.

    tests: fork 170 passed 0 failed 0 skipped · spawn 170 passed 0 failed 0 skipped · ...
    total: 533 passed, 0 failed, 0 skipped

Skipped tests (exit status 77: a missing interpreter or tool) are always
counted, zero included, so that a run that skipped is told apart from one
that passed.

and exits 0: the caller keeps ctest's own exit status (make test does).
"""
import sys
import xml.etree.ElementTree as ET

METHODS = ("fork", "spawn", "forkserver", "proxy")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    path = sys.argv[1]
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"tests: no summary ({path}: {e})")
        return 0
    counts = {m: {"passed": 0, "failed": 0, "skipped": 0} for m in METHODS + ("other",)}
    failed = []
    for case in root.iter("testcase"):
        name = case.get("name", "")
        method = name.rsplit("/", 1)[-1] if "/" in name else "other"
        if method not in counts:
            method = "other"
        status = case.get("status", "")
        if case.find("failure") is not None or case.find("error") is not None or status == "fail":
            kind = "failed"
            failed.append(name)
        elif case.find("skipped") is not None or status in ("notrun", "disabled"):
            kind = "skipped"
        else:
            kind = "passed"
        counts[method][kind] += 1
    parts = []
    for method, c in counts.items():
        if method == "other" or sum(c.values()):
            parts.append(f"{method} {c['passed']} passed {c['failed']} failed "
                         f"{c['skipped']} skipped")
    print("tests: " + " · ".join(parts))
    total = {k: sum(c[k] for c in counts.values()) for k in ("passed", "failed", "skipped")}
    line = (f"total: {total['passed']} passed, {total['failed']} failed, "
            f"{total['skipped']} skipped")
    if failed:
        shown = failed[:20]
        more = f" (+{len(failed) - len(shown)} more)" if len(failed) > len(shown) else ""
        print("failed: " + " ".join(shown) + more)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
