#!/usr/bin/python3
"""Draw bench/scaling.png from bench/results.json (written by bench/run.py).

    /usr/bin/python3 bench/scaling.py [--json bench/results.json] [--out bench/scaling.png]

How cost grows, on log-log axes, multiproc against Python and the kernel
floor measured in the same run:
  left:  Pool.map, time per item against the number of items (10^3 .. 10^7);
  right: Queue and Pipe, time per message against the message size
         (8 B .. 4 MiB).
Vertical lines mark the sizes where a curve may bend: the CPU's L1 data and
L2 caches and the socket buffer a Pipe writes through (recorded by run.py
from the machine that ran the benchmarks).
"""
import argparse
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WHO = {"mp": ("multiproc", "#4878a8"), "py": ("Python", "#e07b39"),
       "floor": ("kernel floor", "#555555")}


def series(results, prefix):
    """{who: [(x, median_us), ...]} of the results named prefix_<who>_<x>."""
    out = {}
    pat = re.compile(re.escape(prefix) + r"_(mp|py|floor)_(\d+)$")
    for name, r in results.items():
        m = pat.match(name)
        if m:
            out.setdefault(m.group(1), []).append((int(m.group(2)), r["median_us"]))
    return {k: sorted(v) for k, v in out.items()}


def size_label(x, _pos=None):
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if x >= div:
            return f"{x / div:g} {unit}"
    return f"{x:g} B"


def time_label(us, _pos=None):
    if us < 1:
        return f"{us * 1000:g} ns"
    if us < 1000:
        return f"{us:g} µs"
    return f"{us / 1000:g} ms"


def count_label(x, _pos=None):
    exp = len(str(int(x))) - 1
    return f"10$^{exp}$" if x == 10 ** exp else ""


def plot(ax, data, style, what):
    for who, points in sorted(data.items(), key=lambda kv: list(WHO).index(kv[0])):
        name, color = WHO[who]
        xs, ys = zip(*points)
        ax.plot(xs, ys, color=color, label=f"{what}{name}", **style)


def finish(ax, title, xlabel, xfmt):
    ax.set_xscale("log", base=10 if xfmt is count_label else 2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(xfmt))
    ax.yaxis.set_major_formatter(FuncFormatter(time_label))
    ax.grid(which="major", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_title(title, fontsize=11, fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, frameon=False)


def draw(data, out):
    results = data["results"]
    limits = data.get("limits", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"wspace": 0.22})
    plot(left, series(results, "scale_map"), {"marker": "o"}, "")
    finish(left, "Pool.map of trivial items, 2 workers", "items in one map",
           count_label)
    left.set_ylabel("time per item (median)", fontsize=9)
    plot(right, series(results, "scale_queue"), {"marker": "o"}, "Queue, ")
    plot(right, series(results, "scale_pipe"), {"marker": "s", "linestyle": "--"}, "Pipe, ")
    finish(right, "Queue and Pipe, 1→1, by message size", "message size", size_label)
    right.set_ylabel("time per message (median)", fontsize=9)
    right.xaxis.set_major_locator(plt.LogLocator(base=4))
    for key, text in (("l1d", "L1d"), ("l2", "L2"), ("sock_buf", "socket buffer")):
        x = limits.get(key)
        if x:
            right.axvline(x, color="#999999", linewidth=0.9, linestyle=":")
            right.text(x * 1.08, 0.02, f"{text} {size_label(x)}", rotation=90, fontsize=7.5,
                       color="#666666", transform=right.get_xaxis_transform(), va="bottom")
    fig.suptitle(f"How cost grows — {data.get('machine', '')}", fontsize=10)
    fig.savefig(out, dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "scaling.png"))
    args = ap.parse_args()
    with open(args.json, encoding="utf-8") as f:
        data = json.load(f)
    draw(data, args.out)
    print(f"(chart written to {args.out})")


if __name__ == "__main__":
    main()
