#!/usr/bin/env python3
"""Aggregates run folders (summary.json) into the README's results table: mean ± std over seeds."""
import json
import os
import statistics
import sys


def accuracy(folder):
    with open(os.path.join(folder, "summary.json")) as f:
        s = json.load(f)
    return s["test"]["accuracy"] * 100, s["models"][-1]["params"]


def cell(values):
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main():
    out, teacher0 = sys.argv[1], sys.argv[2]
    teachers = [teacher0] + [os.path.join(out, f"teacher-s{s}") for s in (1, 2)]
    accs = [accuracy(t)[0] for t in teachers if os.path.exists(os.path.join(t, "summary.json"))]
    print("| model | params | scratch | kd | dkd | best gain |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| teacher cnn-small | 421,642 | {cell(accs)} | | | |")
    for student, name in (("mlp", "MLP 784-64-10"), ("cnn", "LeNet-5")):
        row, means, params = [], {}, 0
        for method in ("scratch", "kd", "dkd"):
            vals = []
            for seed in (0, 1, 2):
                d = os.path.join(out, f"{student}-{method}-s{seed}")
                if os.path.exists(os.path.join(d, "summary.json")):
                    a, params = accuracy(d)
                    vals.append(a)
            row.append(cell(vals) if vals else "")
            if vals:
                means[method] = statistics.mean(vals)
        gain = max((means[m] - means["scratch"] for m in ("kd", "dkd") if m in means), default=None) if "scratch" in means else None
        print(f"| {name} | {params:,} | " + " | ".join(row) + f" | {'' if gain is None else f'{gain:+.2f}'} |")


if __name__ == "__main__":
    main()
