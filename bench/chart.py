#!/usr/bin/python3
"""Draw bench/results.png from bench/results.json (written by bench/run.py).

    /usr/bin/python3 bench/chart.py [--json bench/results.json] [--out bench/results.png]

Needs matplotlib (Debian: python3-matplotlib; scripts/install-deps.sh bench).
bench/run.py calls it after a run, and `run.py --chart-only` redraws the chart
from the stored results without running the benchmarks.

Two panels share the rows of the table, both on log scales, each bar drawn
from 1× (the two sides equal) to the row's ratio:
  left:  Python time / multiproc time (how many times faster than Python)
  right: multiproc time / kernel floor time (1 = the least the work can cost)
A bar is green when the row's goal on that ratio is met, red when missed,
blue when the row has no goal; the goal is drawn as a black tick.
"""
import argparse
import json
import math
import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MET, MISSED, NOGOAL = "#2e8b57", "#d1495b", "#4878a8"


def ratio_label(x, decimals):
    return f"{x:.{decimals}f}×"      # as the table prints it


def axis_label(x, _pos):
    if x >= 1:
        return f"{x:g}×"
    return f"{x:.2g}×"


def limits(values, goals):
    vals = [v for v in values + goals if v is not None and v > 0]
    lo, hi = min(vals + [1.0]), max(vals + [1.0])
    # room on both sides for the value labels
    return 10 ** math.floor(math.log10(lo) - 0.45), 10 ** math.ceil(math.log10(hi) + 0.45)


def panel(ax, rows, key, goal_key, goal_ok, decimals, title, note):
    vals = [r.get(key) for r in rows]
    goals = [r.get(goal_key) for r in rows]
    lo, hi = limits(vals, goals)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    for y, (v, g) in enumerate(zip(vals, goals)):
        if v is None:
            ax.text(1.1, y, "n/a", va="center", ha="left", fontsize=8.5, color="#888888")
            continue
        color = NOGOAL if g is None else (MET if goal_ok(v, g) else MISSED)
        ax.barh(y, v - 1.0, left=1.0, height=0.62, color=color)
        ax.plot([v], [y], marker="o", markersize=5, color=color)  # visible at ≈1× too
        if v >= 1:
            ax.text(max(v, g or 0) * 1.1, y, ratio_label(v, decimals), va="center", ha="left", fontsize=8.5)
        else:
            ax.text(min(v, g or 1) / 1.1, y, ratio_label(v, decimals), va="center", ha="right",
                    fontsize=8.5)
        if g is not None:
            ax.plot([g, g], [y - 0.42, y + 0.42], color="black", linewidth=1.6)
    ax.axvline(1.0, color="#444444", linewidth=1, linestyle="--")
    ax.xaxis.set_major_formatter(FuncFormatter(axis_label))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, p: ""))
    ax.grid(axis="x", which="major", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_title(title, fontsize=11, fontweight="bold")
    ax.set_xlabel(note, fontsize=9)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def draw(data, out):
    rows = data["rows"]
    n = len(rows)
    height = 0.44 * n + 1.2
    fig, (left, right) = plt.subplots(1, 2, sharey=True, figsize=(13, height),
                                      gridspec_kw={"wspace": 0.1})
    fig.subplots_adjust(top=1 - 0.75 / height, bottom=0.7 / height)
    labels = ["\n".join(textwrap.wrap(r["label"], 44)) for r in rows]
    panel(left, rows, "vs_python", "min_vs_python", lambda v, g: v >= g, 1,
          f"vs {data.get('python_header', 'Python 3.11')} multiprocessing",
          "Python time / multiproc time (log scale; > 1: multiproc is faster)")
    panel(right, rows, "vs_kernel", "max_vs_kernel", lambda v, g: v <= g, 2,
          "vs the kernel floor",
          "multiproc time / kernel floor time (log scale; 1: the least the work can cost)")
    left.set_yticks(range(n))
    left.set_yticklabels(labels, fontsize=9)
    left.set_ylim(n - 0.5, -0.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (MET, MISSED, NOGOAL)]
    handles.append(plt.Line2D([0], [0], color="black", linewidth=1.6))
    fig.legend(handles, ["goal met", "goal missed", "no goal", "goal"], loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=9, frameon=False)
    fig.suptitle(f"multiproc benchmarks, ratios of medians — {data.get('machine', '')}",
                 fontsize=10, y=1 - 0.15 / height)
    fig.savefig(out, dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "results.png"))
    args = ap.parse_args()
    with open(args.json, encoding="utf-8") as f:
        data = json.load(f)
    draw(data, args.out)
    print(f"(chart written to {args.out})")


if __name__ == "__main__":
    main()
