#!/usr/bin/env python3
"""Run the benchmarks and print one Markdown table.

    python3 bench/run.py --build BUILD [--out bench/results.md] [--quick]
    python3 bench/run.py --chart-only       # redraw bench/results.png from results.json

Each row is the same work done three ways, measured in the same run:
by multiproc, by Python 3.11's multiprocessing, and by the bare kernel
operation it is built on.  Cells give the median and the p10-p90 spread of
one operation; the ratios compare medians.

Every run also stores the raw results in bench/results.json and draws
bench/results.png from them (bench/chart.py, with matplotlib: each row's
ratio against Python and against the kernel baseline); --chart-only redraws
the chart from the stored JSON, and --from-md rebuilds that JSON from a
results.md table.

Adding a benchmark: add a Suite (a command that prints JSON lines with name,
n, median_us, p10_us, p90_us) if its numbers come from a new program, and a
Row naming the results it compares.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Suite:
    """One program that measures some benchmarks and prints JSON lines."""
    name: str
    # argv, given the build directory, the Python interpreter (None if
    # absent) and whether --quick was asked for; None: skip this suite.
    argv: Callable[[str, Optional[str], bool], Optional[List[str]]]


@dataclass
class Row:
    """One line of the table: the names of the results it compares."""
    label: str
    mp: str                    # multiproc's result
    py: Optional[str]          # Python's result
    kernel: Optional[str]      # the bare kernel operation's result
    kernel_label: str = ""     # what that operation is, for the table
    max_vs_kernel: Optional[float] = None  # goal: multiproc / kernel at most this
    min_vs_python: Optional[float] = None  # goal: Python / multiproc at least this


def c_bench(program, *extra, quick_args=()):
    def argv(build, python, quick):
        exe = os.path.join(build, "bench", program)
        if not os.access(exe, os.X_OK):
            raise SystemExit(f"run.py: {exe} is not built (cmake --build {build})")
        return [exe, *extra, *(quick_args if quick else ())]
    return argv


def py_bench(script, *extra, quick_args=()):
    def argv(build, python, quick):
        if python is None:
            return None
        return [python, os.path.join(HERE, script), *extra, *(quick_args if quick else ())]
    return argv


SUITES = [
    Suite("bench_process", c_bench("bench_process",
                                   quick_args=("-n", "300", "-s", "100", "-r", "3"))),
    Suite("py_process", py_bench("py_process.py",
                                 quick_args=("-n", "60", "-s", "10", "-f", "30", "-r", "2"))),
    Suite("bench_conn", c_bench("bench_conn", quick_args=("-n", "2000", "-m", "30", "-c", "200"))),
    Suite("py_conn", py_bench("py_conn.py", quick_args=("-n", "2000", "-m", "30", "-c", "200"))),
    Suite("bench_sync", c_bench("bench_sync", quick_args=("-u", "300", "-c", "20", "-n", "2000"))),
    Suite("py_sync", py_bench("py_sync.py", quick_args=("-u", "100", "-c", "10", "-n", "1000"))),
    Suite("bench_queue", c_bench("bench_queue", quick_args=("-b", "5", "-n", "20000", "-m", "50"))),
    Suite("py_queue", py_bench("py_queue.py", quick_args=("-b", "5", "-n", "20000", "-m", "50"))),
    Suite("bench_pool", c_bench("bench_pool",
                                quick_args=("-r", "3", "-c", "100000", "-a", "2000", "-u", "64"))),
    Suite("py_pool", py_bench("py_pool.py",
                              quick_args=("-r", "2", "-c", "10000", "-a", "1000", "-u", "64"))),
    Suite("bench_manager", c_bench("bench_manager", quick_args=("-n", "2000", "-m", "2000", "-r", "3"))),
    Suite("py_manager", py_bench("py_manager.py", quick_args=("-n", "2000", "-m", "1000", "-r", "3"))),
]

ROWS = [
    Row("process start+join (fork)", mp="mp_fork", py="py_fork",
        kernel="raw_fork_wait", kernel_label="fork+waitpid",
        max_vs_kernel=1.3, min_vs_python=10),
    Row("process start+join (spawn)", mp="mp_spawn", py="py_spawn",
        kernel="raw_fork_exec", kernel_label="fork+exec self",
        max_vs_kernel=1.5, min_vs_python=10),
    Row("process start+join (forkserver)", mp="mp_forkserver", py="py_forkserver",
        kernel="raw_fork_exec", kernel_label="fork+exec self",
        max_vs_kernel=1.5, min_vs_python=10),
    Row("pipe round trip, 8 B", mp="mp_rtt8", py="py_rtt8",
        kernel="raw_rtt8", kernel_label="socketpair write+read"),
    Row("pipe round trip, 1 MiB", mp="mp_rtt1m", py="py_rtt1m",
        kernel="raw_rtt1m", kernel_label="socketpair write+read"),
    Row("connect + authkey handshake (unix)", mp="mp_connect_auth", py="py_connect_auth",
        kernel="raw_connect", kernel_label="connect+close"),
    Row("Lock acquire+release, uncontended", mp="mp_lock_uncontended",
        py="py_lock_uncontended", kernel="raw_futex_lock_uncontended",
        kernel_label="3-state futex mutex", max_vs_kernel=1.5),
    Row("… same, vs the robust PI mutex Lock is built on", mp="mp_lock_uncontended",
        py=None, kernel="raw_pthread_robust_pi_uncontended",
        kernel_label="robust PI pshared pthread mutex"),
    Row("Lock, 2 processes contending (per op)", mp="mp_lock_contended",
        py="py_lock_contended", kernel="raw_pthread_robust_contended",
        kernel_label="robust pshared pthread mutex", max_vs_kernel=1.25),
    Row("… same, vs the robust PI mutex Lock is built on", mp="mp_lock_contended",
        py=None, kernel="raw_pthread_robust_pi_contended",
        kernel_label="robust PI pshared pthread mutex"),
    Row("Event ping-pong round trip (both on one CPU)", mp="mp_event_pingpong",
        py="py_event_pingpong", kernel="raw_futex_pingpong",
        kernel_label="futex wake/wait on two words", max_vs_kernel=1.2),
    Row("Queue 1→1, 8 B messages (per message)", mp="mp_queue8", py="py_queue8",
        kernel="raw_ring8", kernel_label="bare SPSC shm ring",
        max_vs_kernel=3.33, min_vs_python=50),
    Row("SimpleQueue 1→1, 8 B messages (per message)", mp="mp_simplequeue8",
        py="py_simplequeue8", kernel="raw_ring8", kernel_label="bare SPSC shm ring",
        max_vs_kernel=3.33),
    Row("Queue 4→1, 8 B messages (per message)", mp="mp_queue8_4p", py="py_queue8_4p",
        kernel=None),
    Row("Queue 1→1, 1 MiB messages (per message)", mp="mp_queue1m", py="py_queue1m",
        kernel="raw_copy1m", kernel_label="memcpy in + out of shm, 2 buffers",
        max_vs_kernel=1.25),
    Row("Pool.map, 10⁶ trivial items, default chunksize (per item)", mp="mp_pool_map_default",
        py="py_pool_map_default", kernel=None, min_vs_python=100),
    Row("… same, items and results in mp_pool_shared_alloc buffers (no copies)",
        mp="mp_pool_map_shared", py="py_pool_map_default", kernel=None, min_vs_python=100),
    Row("Pool.map, chunksize 1 (per item; Python maps 10× fewer items)",
        mp="mp_pool_map_chunk1", py="py_pool_map_chunk1", kernel=None, min_vs_python=50),
    Row("Pool.apply_async + get round trip (all on one CPU)", mp="mp_pool_apply_rtt",
        py="py_pool_apply_rtt", kernel="raw_futex_rtt_2proc",
        kernel_label="futex ping-pong, 2 processes", max_vs_kernel=3),
    Row("… same, placement left to the scheduler", mp="mp_pool_apply_rtt_free",
        py="py_pool_apply_rtt_free", kernel="raw_futex_rtt_2proc_free",
        kernel_label="futex ping-pong, 2 processes"),
    Row("Pool.map, CPU-bound ≈1 ms items, 2 workers (per item)", mp="mp_pool_cpu_2w",
        py="py_pool_cpu_2w", kernel="mp_pool_cpu_1w", kernel_label="same map, 1 worker",
        max_vs_kernel=0.55),
    Row("Manager dict set+get from a child (2 requests)", mp="mp_mgr_dict_rtt",
        py="py_mgr_dict_rtt", kernel="raw_sock_rtt16x2",
        kernel_label="socketpair 16 B write + 16 B reply, ×2", max_vs_kernel=1.2),
    Row("Manager dict batch of 1000 set/get from a child (per op; Python: one op a request)",
        mp="mp_mgr_dict_batch", py="py_mgr_dict_op", kernel=None, min_vs_python=20),
    Row("Manager dict batch of 1000 sets (per op; Python: dict.update of 1000)",
        mp="mp_mgr_dict_batch_set", py="py_mgr_dict_update", kernel=None),
    Row("Manager dict, 4 client processes at once (per op; Python: d[k] = v)",
        mp="mp_mgr_dict_add_4p", py="py_mgr_dict_set_4p", kernel=None),
]


def find_python(given=None):
    """Python 3.11, the reference the comparison is made against."""
    cands = [given] if given else ["/root/.pyenv/versions/3.11.7/bin/python3",
                                   shutil.which("python3.11")]
    for cand in cands:
        if cand and os.access(cand, os.X_OK):
            try:
                v = subprocess.run([cand, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=30).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                continue
            if v == "(3, 11)":
                return cand
    return None


def run_suite(suite, build, python, quick):
    argv = suite.argv(build, python, quick)
    if argv is None:
        print(f"[{suite.name}] skipped", file=sys.stderr)
        return {}
    print(f"[{suite.name}] {' '.join(argv)}", file=sys.stderr, flush=True)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run.py: {suite.name} failed with status {proc.returncode}")
    results = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            results[r["name"]] = r
    return results


def fmt_us(us):
    if us < 0.1:
        return f"{us * 1000:.1f} ns"
    if us < 10:
        return f"{us:.2f} µs"
    if us >= 10000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def cell(r):
    if r is None:
        return "n/a"
    return f"{fmt_us(r['median_us'])} ({fmt_us(r['p10_us'])}–{fmt_us(r['p90_us'])})"


def machine_info(python):
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    py = "absent"
    if python:
        py = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                            capture_output=True, text=True).stdout.strip() or python
    return (f"{model}, {usable} of {cores} CPUs, Linux {platform.release()}, "
            f"Python {py}, {when}")


def build_table(rows, results):
    out = [
        "| operation | multiproc | Python 3.11 | kernel baseline | vs Python | vs kernel | goals |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        mp = results.get(row.mp)
        py = results.get(row.py) if row.py else None
        k = results.get(row.kernel) if row.kernel else None
        if mp is None:
            continue
        vs_py = vs_k = kcell = "n/a"
        goals = []
        if py is not None:
            r = py["median_us"] / mp["median_us"]
            vs_py = f"{r:.1f}× faster"
            if row.min_vs_python is not None:
                ok = "met" if r >= row.min_vs_python else "MISSED"
                goals.append(f"≥{row.min_vs_python:g}× faster than Python: {ok}")
        if k is not None:
            r = mp["median_us"] / k["median_us"]
            vs_k = f"{r:.2f}×"
            kcell = f"{row.kernel_label}: {cell(k)}"
            if row.max_vs_kernel is not None:
                ok = "met" if r <= row.max_vs_kernel else "MISSED"
                goals.append(f"≤{row.max_vs_kernel:g}× kernel: {ok}")
        out.append(f"| {row.label} | {cell(mp)} | {cell(py)} | {kcell} | {vs_py} | {vs_k} "
                   f"| {'; '.join(goals) or '–'} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="the CMake build directory")
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"),
                    help="also write the table here (default: bench/results.md)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    ap.add_argument("--python", help="the Python 3.11 interpreter (default: found)")
    ap.add_argument("--readme", help="replace the table between the bench markers of this file")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"),
                    help="the raw results (default: bench/results.json)")
    ap.add_argument("--png", default=os.path.join(HERE, "results.png"),
                    help="the chart (default: bench/results.png)")
    ap.add_argument("--chart-only", action="store_true",
                    help="run nothing: redraw the chart from the results in --json")
    ap.add_argument("--from-md", metavar="MD",
                    help="run nothing: rebuild --json from a results.md table, and the chart")
    args = ap.parse_args()

    if args.chart_only or args.from_md:
        if args.from_md:
            info, results = parse_md(args.from_md)
        else:
            with open(args.json, encoding="utf-8") as f:
                stored = json.load(f)
            info, results = stored["machine"], stored["results"]
        write_json(args.json, info, results)       # rows as ROWS now defines them
        sys.exit(0 if draw_chart(args.json, args.png) else 1)

    python = find_python(args.python)
    if python is None:
        print("run.py: Python 3.11 not found: Python columns are n/a", file=sys.stderr)
    info = machine_info(python)

    results: Dict[str, dict] = {}
    for suite in SUITES:
        results.update(run_suite(suite, args.build, python, args.quick))

    extra = results.get("raw_posix_spawn")
    table = build_table(ROWS, results)
    text = [f"Machine: {info}", "", table, ""]
    text.append("Cells: median (p10–p90) of one operation; ratios compare medians. "
                "vs Python = Python / multiproc; vs kernel = multiproc / kernel baseline.")
    text.append("fork+exec self = fork() + execv(\"/proc/self/exe\") of the benchmark program, "
                "whose main() returns at once, + waitpid().")
    if extra is not None:
        text.append(f"For reference, posix_spawn() of the same program: {cell(extra)}.")
    speedups = [(who, results.get(f"{who}_pool_cpu_1w"), results.get(f"{who}_pool_cpu_2w"))
                for who in ("mp", "py")]
    if all(a and b for _, a, b in speedups[:1]):
        text.append("CPU-bound map (each item ≈1 ms of arithmetic, calibrated at start; "
                    "Python's items are Python arithmetic): 2 workers are "
                    + " and ".join(f"{a['median_us'] / b['median_us']:.2f}× as fast as 1 "
                                   f"({'multiproc' if who == 'mp' else 'Python'})"
                                   for who, a, b in speedups if a and b)
                    + f" on {len(os.sched_getaffinity(0))} usable CPUs.")
    counts = ", ".join(f"{k} n={v['n']}" for k, v in sorted(results.items()))
    text.append(f"Samples: {counts}.")
    text = "\n".join(text) + "\n"
    write_json(args.json, info, results)
    charted = draw_chart(args.json, args.png)
    sys.stderr.flush()
    print(text, end="", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + (chart_link(args.png, args.out) if charted else ""))
        print(f"(written to {args.out})", file=sys.stderr)
    if args.readme:
        update_readme(args.readme, text + (chart_link(args.png, args.readme) if charted else ""))


def row_data(rows, results):
    """The rows of the table as plain data, for results.json and the chart."""
    out = []
    for row in rows:
        mp = results.get(row.mp)
        py = results.get(row.py) if row.py else None
        k = results.get(row.kernel) if row.kernel else None
        if mp is None:
            continue
        out.append({
            "label": row.label, "mp": row.mp, "py": row.py, "kernel": row.kernel,
            "kernel_label": row.kernel_label,
            "vs_python": py["median_us"] / mp["median_us"] if py else None,
            "vs_kernel": mp["median_us"] / k["median_us"] if k else None,
            "min_vs_python": row.min_vs_python, "max_vs_kernel": row.max_vs_kernel,
        })
    return out


def write_json(path, info, results):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"machine": info, "results": results, "rows": row_data(ROWS, results)},
                  f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"(results written to {path})", file=sys.stderr)


def chart_python():
    """An interpreter that has matplotlib: this one, or Debian's."""
    for cand in (sys.executable, "/usr/bin/python3", shutil.which("python3")):
        if cand and subprocess.run([cand, "-c", "import matplotlib"],
                                   capture_output=True).returncode == 0:
            return cand
    return None


def draw_chart(json_path, png_path):
    """bench/results.png from results.json; False if matplotlib is missing."""
    python = chart_python()
    if python is None:
        print("run.py: no matplotlib (scripts/install-deps.sh bench): chart not drawn",
              file=sys.stderr)
        return False
    subprocess.run([python, os.path.join(HERE, "chart.py"), "--json", json_path,
                    "--out", png_path], check=True, stdout=sys.stderr)
    return True


def chart_link(png_path, doc_path):
    """The Markdown image line for the chart, relative to the document."""
    rel = os.path.relpath(png_path, os.path.dirname(os.path.abspath(doc_path)))
    return (f"\n![Each row's ratio against Python and against the kernel baseline, "
            f"log scales]({rel})\n")


UNITS = {"ns": 0.001, "µs": 1.0, "ms": 1000.0}


def printed_range(number, scale=1.0):
    """The interval a rounded printed number stands for: "0.11" is 0.105-0.115."""
    decimals = len(number.split(".")[1]) if "." in number else 0
    half = 0.5 * 10 ** -decimals
    return [(float(number) - half) * scale, (float(number) + half) * scale]


def parse_time(s):
    value, unit = s.split()
    return printed_range(value, UNITS[unit])


def narrow(ranges, ratios):
    """Narrow the medians' intervals with the printed ratios (num / den in
    [lo, hi]), whose digits are often finer than the cells' (0.11 µs vs
    3.28 µs is printed as 30.9×): the ratios of the midpoints then match
    the table."""
    for _ in range(20):
        for num, den, (lo, hi) in ratios:
            if num not in ranges or den not in ranges:
                continue
            n, d = ranges[num], ranges[den]
            nn = [max(n[0], d[0] * lo), min(n[1], d[1] * hi)]
            dd = [max(d[0], n[0] / hi), min(d[1], n[1] / lo)]
            if nn[0] <= nn[1] and dd[0] <= dd[1]:   # else inconsistent: keep
                ranges[num], ranges[den] = nn, dd


def parse_md(path):
    """Machine line and results from a results.md this script wrote."""
    import re
    cell_re = re.compile(r"^(\S+ \S+) \((\S+ \S+)–(\S+ \S+)\)$")
    info, results, counts, medians, ratios = "", {}, {}, {}, []
    unused = list(ROWS)

    def put(name, text):
        m = cell_re.match(text.strip())
        if name and m:
            medians[name] = parse_time(m.group(1))
            results[name] = {"name": name, "p10_us": sum(parse_time(m.group(2))) / 2,
                             "p90_us": sum(parse_time(m.group(3))) / 2}

    def ratio(num, den, text):
        m = re.match(r"^([0-9.]+)×", text)
        if num and den and m:
            ratios.append((num, den, printed_range(m.group(1))))

    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        if line.startswith("Machine: "):
            info = line[len("Machine: "):]
        elif line.startswith("| ") and not line.startswith("| operation"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            row = next((r for r in unused if r.label == cells[0]), None)
            if row is None:
                print(f"run.py: no row is labelled {cells[0]!r}: left out", file=sys.stderr)
                continue
            unused.remove(row)
            put(row.mp, cells[1])
            put(row.py, cells[2])
            if row.kernel and ": " in cells[3]:
                put(row.kernel, cells[3].rsplit(": ", 1)[1])
            ratio(row.py, row.mp, cells[4])
            ratio(row.mp, row.kernel, cells[5])
        elif line.startswith("For reference, posix_spawn() of the same program: "):
            put("raw_posix_spawn", line.split(": ", 1)[1].rstrip("."))
        elif line.startswith("Samples: "):
            for item in line[len("Samples: "):].rstrip(".").split(", "):
                name, _, n = item.partition(" n=")
                counts[name] = int(n)
    narrow(medians, ratios)
    for name in sorted(medians):          # pick values one by one, keeping the rest consistent
        mid = sum(medians[name]) / 2
        medians[name] = [mid, mid]
        narrow(medians, ratios)
    for name, r in results.items():
        r["median_us"] = sum(medians[name]) / 2
        r["n"] = counts.get(name, 0)
    return info, results


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_readme(path, text):
    with open(path) as f:
        doc = f.read()
    a, b = doc.find(BEGIN), doc.find(END)
    if a < 0 or b < a:
        print(f"run.py: no {BEGIN} ... {END} in {path}: not updated", file=sys.stderr)
        return
    doc = doc[:a + len(BEGIN)] + "\n" + text + doc[b:]
    with open(path, "w") as f:
        f.write(doc)
    print(f"(table updated in {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
