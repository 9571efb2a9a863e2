"""What the Python benchmark scripts can share (the counterpart of
bench_stats.h): quantiles and the JSON line bench/run.py reads.

    {"name": ..., "n": ..., "median_us": ..., "p10_us": ..., "p90_us": ...,
     "mean_us": ..., "min_us": ...}

Standard library only, imported lazily: a spawned child re-imports its
script, and should not pay for more than that script needs.
"""


def quantile(s, q):
    """The q-quantile of sorted samples, by linear interpolation."""
    pos = q * (len(s) - 1)
    i = int(pos)
    if i + 1 >= len(s):
        return float(s[-1])
    frac = pos - i
    return s[i] * (1 - frac) + s[i + 1] * frac


def report(name, samples, per=1, **extra):
    """Print the JSON line of @samples (ns each), each of which timed @per
    operations, as the time of one operation.  @extra: more fields."""
    import json
    s = sorted(samples)
    d = per * 1e3
    line = {
        "name": name, "n": len(s),
        "median_us": quantile(s, 0.5) / d, "p10_us": quantile(s, 0.1) / d,
        "p90_us": quantile(s, 0.9) / d, "mean_us": sum(s) / len(s) / d,
        "min_us": s[0] / d,
    }
    line.update(extra)
    print(json.dumps(line), flush=True)
