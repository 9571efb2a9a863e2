#!/usr/bin/env python3
"""Compare the library at two commits in one run: is any row slower?

    python3 bench/compare.py --base REV [--build build] [--rounds 2] [--quick]

Builds the library of REV in a scratch worktree with *this* tree's bench
programs (the same measuring code on both sides; they use only the public
API), then runs each C suite of bench/run.py for REV and for this tree's
build in turn, --rounds times, alternating, so that both sides see the same
machine.  For each result it prints the two medians (the median over the
rounds of each run's median) and the ratio this/base; a row more than 10 %
slower is marked.  Only multiproc's own results are compared: the kernel
floors and peers in the same programs do not depend on the library and are
left out, as are the Python suites.

Exit status 0 whatever the ratios: noise decides nothing alone; read them.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run  # noqa: E402  (the suites and their arguments)

C_SUITES = ["bench_process", "bench_conn", "bench_sync", "bench_queue", "bench_pool",
            "bench_manager"]


def sh(*argv, **kw):
    subprocess.run(argv, check=True, **kw)


def build_base(rev, workdir):
    """A worktree of @rev with this tree's bench/, built like make bench."""
    src = os.path.join(workdir, "src")
    sh("git", "-C", ROOT, "worktree", "add", "-q", "--detach", src, rev)
    shutil.rmtree(os.path.join(src, "bench"))
    shutil.copytree(HERE, os.path.join(src, "bench"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.png", "results.*"))
    bld = os.path.join(workdir, "build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    sh("cmake", "-S", src, "-B", bld, *gen, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
       stdout=subprocess.DEVNULL)
    sh("cmake", "--build", bld, "-j", str(os.cpu_count() or 2), "--target",
       *C_SUITES, stdout=subprocess.DEVNULL)
    return src, bld


def own_results(suite, build, quick):
    """{name: median_us} of one run of @suite, multiproc's rows only."""
    argv = suite.argv(build, None, quick)
    out = subprocess.run(argv, check=True, capture_output=True, text=True,
                         timeout=run.SUITE_TIMEOUT).stdout
    res = {}
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        name = r["name"]
        if not (name.startswith("mp_") or "_mp_" in name):
            continue
        res[name] = r["median_us"]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the commit to compare with")
    ap.add_argument("--build", default="build", help="this tree's build directory")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="these suites only (comma-separated)")
    a = ap.parse_args()

    suites = [s for s in run.SUITES if s.name in C_SUITES]
    if a.only:
        suites = [s for s in suites if s.name in a.only.split(",")]
    work = tempfile.mkdtemp(prefix="mp-compare-")
    src = None
    try:
        src, base_build = build_base(a.base, work)
        samples = {}  # (suite, name) -> {"base": [..], "this": [..]}
        for rnd in range(a.rounds):
            for s in suites:
                for side, bld in (("base", base_build), ("this", a.build)):
                    print(f"round {rnd + 1}/{a.rounds} {s.name} {side}", file=sys.stderr)
                    for name, us in own_results(s, bld, a.quick).items():
                        samples.setdefault((s.name, name), {"base": [], "this": []})[side].append(us)
        print(f"| suite | result | {a.base[:10]} µs | this µs | this/base |")
        print("|---|---|---:|---:|---:|")
        ratios = []
        for (suite, name), v in samples.items():
            if not v["base"] or not v["this"]:
                continue
            b, t = statistics.median(v["base"]), statistics.median(v["this"])
            ratio = t / b if b > 0 else float("nan")
            ratios.append(ratio)
            mark = " **slower**" if ratio > 1.10 else ""
            print(f"| {suite} | {name} | {b:.3f} | {t:.3f} | {ratio:.2f}{mark} |")
        if ratios:
            print(f"\ngeometric mean this/base over {len(ratios)} results: "
                  f"{run.geomean(ratios):.3f}")
    finally:
        if src:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", src])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
