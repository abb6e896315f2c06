#!/usr/bin/env python3
"""cooc against the tools users would pick instead, on the same orders.csv.

Run through bench/run.sh, which builds cooc and installs the Python contenders. For each
size it generates the Bookstore data once, then runs every contender RUNS times,
interleaved (cooc, scipy, implicit, the guide's sklearn method, cooc, ...), under
/usr/bin/time -v; checks that every contender's neighbour lists equal cooc's (up to the
choice among books tied at the K-th place); and writes a markdown section (medians,
min-max, peak RSS, ratios to cooc, all from this one run) and a plot of time and memory
against dataset size.

Exit status: 0, or 1 when any contender's neighbours disagree with cooc's.
"""

import argparse
import csv
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COOC = os.path.join(ROOT, "target", "release", "cooc")
PY = sys.executable
ROWS = {"s": 5_000, "m": 1_000_000, "l": 20_000_000, "xl": 200_000_000}
BOOKS = {"s": 200, "m": 10_000, "l": 100_000, "xl": 1_000_000}
# The guide's dense book x book float64 matrix must fit comfortably in memory.
DENSE_LIMIT_BYTES = 4 << 30
# What scipy's sparse X^T X needs grows with the co-occurring pairs; at xl, from its peak
# at l scaled by the pair updates cooc counts at each size (see sparse_estimate).
MEMORY_GIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
TOL = 2e-6  # implicit computes in float32; the others in float64, all stored as float32


def timed(cmd, err_path):
    """Runs cmd under /usr/bin/time -v; (wall seconds, peak RSS GiB, stderr text)."""
    with open(err_path, "w") as err:
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], stdout=subprocess.DEVNULL, stderr=err)
    text = open(err_path).read()
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{text[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    secs = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return secs, rss / 2**20, text


def cooc_phases(text):
    """(read, compute) seconds from cooc train's summary line."""
    m = re.search(r"trained .* in [\d.]+ ?s \(([^)]*)\)", text)
    phases = {k: float(v) for k, v in re.findall(r"([\w/-]+) ([\d.]+)s", m.group(1))}
    read = phases.pop("read", 0.0)
    phases.pop("write", None)
    return read, sum(phases.values())


def python_phases(text):
    j = json.loads(next(line for line in text.splitlines() if line.startswith("{")))
    return j["read"] + j["matrix"], j["compute"]


def load(path):
    lists = defaultdict(list)
    with open(path) as f:
        for row in csv.DictReader(f):
            lists[row["book_id"]].append((row["neighbour_id"], float(row["score"])))
    return lists


def disagreements(ref, other):
    """Books whose lists differ beyond the choice among ties at the K-th place."""
    bad = []
    for book in set(ref) | set(other):
        a, b = ref.get(book, []), other.get(book, [])
        if len(a) != len(b) or any(abs(x[1] - y[1]) > TOL for x, y in zip(a, b)):
            bad.append(book)
            continue
        if not a:
            continue
        last = a[-1][1]
        # Outside the tie group at the cut, the same books with the same scores.
        inner_a = {n for n, s in a if s > last + TOL}
        inner_b = {n for n, s in b if s > last + TOL}
        if inner_a != inner_b:
            bad.append(book)
    return bad


def noted(work, what, size, value=None):
    """A number kept in the work directory between runs (`value` given: stores it)."""
    path = os.path.join(work, f"{what}-{size}.txt")
    if value is not None:
        open(path, "w").write(f"{value}\n")
        return value
    return float(open(path).read()) if os.path.exists(path) else None


def pair_updates(text):
    """Σ|b|(|b|-1) over the training baskets, from cooc train's log."""
    m = re.search(r'"pair_updates":(\d+)', text)
    return int(m.group(1)) if m else None


def sparse_estimate(work, size):
    """scipy's X^T X peak RSS in GiB at `size` estimated from its measured peak at the largest
    smaller size (this run's or an earlier one's, kept in the work directory), scaled by the
    ratio of the pair updates cooc counted at both; None when there is nothing to scale."""
    order = ["s", "m", "l", "xl"]
    here = noted(work, "pairs", size)
    for smaller in reversed(order[:order.index(size)]):
        peak, there = noted(work, "scipy-peak", smaller), noted(work, "pairs", smaller)
        if peak and here and there:
            return peak * here / there, smaller, peak, here / there
    return None


def contenders(size, work):
    data = os.path.join(work, f"data-{size}", "orders.csv")
    model = os.path.join(work, f"cooc-{size}.cooc")
    c = os.path.join(HERE, "contenders")
    out = [("cooc train", [COOC, "train", "--orders", data, "--out", model], "cooc")]
    skipped = []
    # Only xl is sized by estimate: below it, a fixed overhead dominates the smaller size's
    # peak and scaling it says nothing (every smaller size is measured anyway).
    est = sparse_estimate(work, size) if size == "xl" else None
    if est and est[0] > 0.8 * MEMORY_GIB:
        need, smaller, peak, ratio = est
        skipped.append(("scipy XᵀX + exact top-K", need * 2**30, f"scipy XᵀX is not run at {size}: its peak RSS at {smaller} ({peak:.2f} GiB) "
                       f"times the {ratio:.1f}x co-occurring pair updates is about {need:.0f} GiB, "
                       f"more than this machine's {MEMORY_GIB:.0f} GiB."))
    else:
        out.append(("scipy XᵀX + exact top-K", [PY, f"{c}/scipy_xtx.py", data, "--out", f"{work}/scipy-{size}.csv"], "py"))
    out.append(("implicit CosineRecommender", [PY, f"{c}/implicit_cosine.py", data, "--out", f"{work}/implicit-{size}.csv"], "py"))
    dense = BOOKS[size] ** 2 * 8
    if dense <= DENSE_LIMIT_BYTES:
        out.append(("guide: sklearn dense cosine", [PY, f"{c}/guide_sklearn.py", data, "--out", f"{work}/guide-{size}.csv"], "py"))
    else:
        skipped.append(("guide: sklearn dense cosine", dense, f"The guide's method is not run at {size}: its dense "
                        f"{BOOKS[size]:,}² float64 matrix alone is {dense / 2**30:,.0f} GiB."))
    return out, skipped


def fmt(xs, unit="s"):
    m = statistics.median(xs)
    if len(xs) == 1:
        return f"{m:.2f}{unit}"
    return f"{m:.2f}{unit} ({min(xs):.2f}-{max(xs):.2f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="s,m,l")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(HERE, "out"))
    ap.add_argument("--markdown", required=True, help="write the results section here")
    ap.add_argument("--plot", help="write the PNG plot here")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    sizes = a.sizes.split(",")
    results = {}  # size -> name -> list of (wall, rss, read, compute)
    skipped = {}
    failed = False
    for size in sizes:
        d = os.path.join(a.work, f"data-{size}")
        if not os.path.exists(os.path.join(d, "orders.csv")):
            subprocess.run([COOC, "gen", "--size", size, "--out", d], check=True, stderr=subprocess.DEVNULL)
        with open(os.path.join(d, "orders.csv"), "rb") as f:  # warm the page cache
            while f.read(1 << 24):
                pass
        if noted(a.work, "pairs", size) is None:
            # An untimed first cooc run: its pair count sizes the sparse contender.
            _, _, text = timed([COOC, "train", "--orders", os.path.join(d, "orders.csv"), "--out",
                                os.path.join(a.work, "warm.cooc")], os.path.join(a.work, "stderr.txt"))
            noted(a.work, "pairs", size, pair_updates(text))
        runs, skipped[size] = contenders(size, a.work)
        res = results[size] = defaultdict(list)
        for r in range(a.runs):
            for name, cmd, kind in runs:
                wall, rss, text = timed(cmd, os.path.join(a.work, "stderr.txt"))
                read, compute = cooc_phases(text) if kind == "cooc" else python_phases(text)
                res[name].append((wall, rss, read, compute))
                if kind == "cooc":
                    noted(a.work, "pairs", size, pair_updates(text))
            print(f"bench: size {size}, round {r + 1}/{a.runs} done", file=sys.stderr)
        scipy = res.get("scipy XᵀX + exact top-K")
        if scipy:
            noted(a.work, "scipy-peak", size, statistics.median(x[1] for x in scipy))
        ref_csv = os.path.join(a.work, f"cooc-{size}.csv")
        subprocess.run([COOC, "export", os.path.join(a.work, f"cooc-{size}.cooc"), "--format", "csv", "--out", ref_csv], check=True)
        ref = load(ref_csv)
        agree = {"cooc train": f"reference ({len(ref):,} books)"}
        for name, cmd, _ in runs[1:]:
            other = load(cmd[cmd.index("--out") + 1])
            bad = disagreements(ref, other)
            agree[name] = "all books" if not bad else f"**{len(bad)} books differ**"
            if bad:
                failed = True
                print(f"bench: {name} disagrees with cooc at size {size} on {len(bad)} books, e.g. {sorted(bad)[:5]}", file=sys.stderr)
        res["_agree"] = agree

    lines = []
    w = lines.append
    w(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}.")
    versions = subprocess.run([PY, "-c", "import numpy, scipy, pandas, sklearn, implicit; print(f'numpy {numpy.__version__}, scipy {scipy.__version__}, pandas {pandas.__version__}, scikit-learn {sklearn.__version__}, implicit {implicit.__version__}')"], capture_output=True, text=True).stdout.strip()
    w(f"Contenders: {versions}. Date: {time.strftime('%Y-%m-%d')}. Runs: {a.runs} per contender and size, interleaved.")
    w("")
    w("Whole process and peak RSS from `/usr/bin/time -v`; \"read\" is CSV to columns (and the CSR")
    w("for the Python contenders); \"compute\" is the rest up to the neighbour lists (for cooc:")
    w("building baskets, counting, similarity and top-K). Median (min-max).")
    for size in sizes:
        res = results[size]
        w("")
        w(f"### Size {size}: {BOOKS[size]:,} books, {ROWS[size]:,} order lines")
        w("")
        w("| contender | whole process | read | compute | peak RSS | whole / cooc | compute / cooc | neighbours equal cooc's |")
        w("|---|---|---|---|---|---|---|---|")
        base = res["cooc train"]
        bw = statistics.median(x[0] for x in base)
        bc = statistics.median(x[3] for x in base)
        for name, rows in res.items():
            if name == "_agree":
                continue
            mw = statistics.median(x[0] for x in rows)
            mc = statistics.median(x[3] for x in rows)
            ratio = lambda x, b: f"{x / b:.1f}x" if b > 0 else "n/a"  # below the timer's resolution
            w(f"| {name} | {fmt([x[0] for x in rows])} | {fmt([x[2] for x in rows])} | {fmt([x[3] for x in rows])} | "
              f"{fmt([x[1] for x in rows], ' GiB')} | {ratio(mw, bw)} | {ratio(mc, bc)} | {res['_agree'][name]} |")
        for _, _, why in skipped[size]:
            w("")
            w(why)
    with open(a.markdown, "w") as f:
        f.write("\n".join(lines) + "\n")

    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (t_ax, m_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
        names = list(dict.fromkeys(n for s in sizes for n in results[s] if n != "_agree"))
        for name in names:
            xs = [ROWS[s] for s in sizes if name in results[s]]
            # /usr/bin/time resolves 10 ms: shorter runs are drawn at 10 ms.
            t = [max(0.01, statistics.median(x[0] for x in results[s][name])) for s in sizes if name in results[s]]
            m = [statistics.median(x[1] for x in results[s][name]) for s in sizes if name in results[s]]
            t_ax.plot(xs, t, marker="o", label=name)
            m_ax.plot(xs, m, marker="o", label=name)
        for ax, title, unit in ((t_ax, "whole process time", "seconds"), (m_ax, "peak RSS", "GiB")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("order lines")
            ax.set_ylabel(unit)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
        # Where a contender stops, say why on the plot itself, at its last point (once: the
        # first size it was not run at).
        told = set()
        for size in sizes:
            for name, need, _ in skipped[size]:
                ran = [s for s in sizes if name in results[s]]
                if not ran or ROWS[ran[-1]] > ROWS[size] or name in told:
                    continue
                told.add(name)
                last = ran[-1]
                y = max(0.01, statistics.median(x[0] for x in results[last][name]))
                t_ax.annotate(f"{name.split(':')[0].split(' ')[0]}: not run at {size},\nneeds ~{need / 2**30:,.0f} GiB",
                              xy=(ROWS[last], y), xytext=(8, -4), textcoords="offset points", fontsize=7, va="top")
        t_ax.legend(fontsize=8)
        fig.suptitle(f"Training top-10 cosine neighbours, medians of {a.runs} runs ({time.strftime('%Y-%m-%d')}); times under 10 ms drawn at 10 ms")
        fig.tight_layout()
        fig.savefig(a.plot, dpi=110)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
