#!/usr/bin/env python3
"""Independent reference for cooc's model: scipy sparse X^T X with an exact top-K.

Reads the same inputs as `cooc train` (a Bookstore orders CSV with customer_id baskets, or
one basket per line) and writes `book_id,rank,neighbour_id,score`, the format of
`cooc export --format csv`, so the two can be compared row for row.

Definition (shared with cooc): binary basket x item matrix (an item repeated in a basket
counts once), C = X^T X, c_i = C_ii, N = baskets with at least one item; in float64:
cosine c_ij / sqrt(c_i c_j), jaccard c_ij / (c_i + c_j - c_ij), count c_ij, lift
c_ij N / (c_i c_j), inclusion c_ij / min(c_i, c_j), llr Dunning's G² of the 2x2 table
(k11 = c_ij, k12 = c_i - c_ij, k21 = c_j - c_ij, k22 = N - c_i - c_j + c_ij), for pairs with
c_ij N > c_i c_j only; diagonal excluded, pairs with c_ij < --min-support dropped, top K
with score > 0, ordered by score descending then item key ascending (numerically for
integer keys, by code point for strings).

Usage: reference_scipy.py INPUT [--format orders|baskets] [--k 10]
       [--similarity cosine|jaccard|count|lift|inclusion|llr] [--min-support 1] [--out FILE]
"""

import argparse
import csv
import sys
import time

import numpy as np
import scipy.sparse as sp


def read_baskets(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    comma = "," in text
    baskets = []
    for line in text.splitlines():
        if not line.strip():
            continue
        items = [t.strip() for t in line.split(",")] if comma else line.split()
        baskets.append(items)
    rows, cols = [], []
    for b, items in enumerate(baskets):
        for it in items:
            rows.append(b)
            cols.append(it)
    return rows, cols


def read_orders(path):
    rows, cols = [], []
    customers = {}
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        header = [h.strip().lower() for h in next(r)]
        bi, ci = header.index("book_id"), header.index("customer_id")
        for rec in r:
            if not rec:
                continue
            rows.append(customers.setdefault(rec[ci].strip(), len(customers)))
            cols.append(rec[bi].strip())
    return rows, cols


def as_keys(raw):
    """Integer keys when every key is an integer, else strings."""
    try:
        return [int(k) for k in raw], True
    except ValueError:
        return list(raw), False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("--format", choices=["orders", "baskets"], default="orders")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--similarity", choices=["cosine", "jaccard", "count", "lift", "inclusion", "llr"], default="cosine")
    ap.add_argument("--min-support", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args()

    t0 = time.perf_counter()
    rows, raw_items = (read_baskets if a.format == "baskets" else read_orders)(a.input)
    keys, _ = as_keys(raw_items)
    uniq = sorted(set(keys))
    index = {k: i for i, k in enumerate(uniq)}
    cols = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
    rows = np.asarray(rows, dtype=np.int64)
    n_items = len(uniq)
    t1 = time.perf_counter()

    x = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.int64), (rows, cols)),
        shape=(int(rows.max()) + 1 if len(rows) else 0, n_items),
    )
    x.sum_duplicates()
    x.data[:] = 1  # binary: a repeated item in a basket counts once
    c = (x.T @ x).tocsr()
    c.sort_indices()
    diag = c.diagonal().astype(np.int64)
    n = float(np.count_nonzero(np.diff(x.indptr)))

    def xlnx(v):
        v = np.asarray(v, dtype=np.float64)
        out = np.zeros_like(v)
        pos = v > 0
        out[pos] = v[pos] * np.log(v[pos])
        return out

    out_rows = []
    for i in range(n_items):
        lo, hi = c.indptr[i], c.indptr[i + 1]
        js = c.indices[lo:hi]
        cij = c.data[lo:hi].astype(np.int64)
        keep = (js != i) & (cij >= a.min_support)
        js, cij = js[keep], cij[keep]
        ci, cj, cf = float(diag[i]), diag[js].astype(np.float64), cij.astype(np.float64)
        if a.similarity == "cosine":
            score = cf / np.sqrt(ci * cj)
        elif a.similarity == "jaccard":
            score = cf / (ci + cj - cf)
        elif a.similarity == "count":
            score = cf.copy()
        elif a.similarity == "lift":
            score = cf * n / (ci * cj)
        elif a.similarity == "inclusion":
            score = cf / np.minimum(ci, cj)
        else:
            k11, k12, k21 = cf, ci - cf, cj - cf
            k22 = n - ci - cj + cf
            g2 = 2.0 * (xlnx(k11) + xlnx(k12) + xlnx(k21) + xlnx(k22)
                        - xlnx(k11 + k12) - xlnx(k21 + k22) - xlnx(k11 + k21) - xlnx(k12 + k22)
                        + xlnx(np.full_like(cf, n)))
            score = np.where(cf * n > ci * cj, g2, 0.0)
        pos = score > 0
        js, score = js[pos], score[pos]
        order = np.lexsort((js, -score))[: a.k]
        for rank, o in enumerate(order, start=1):
            out_rows.append((uniq[i], rank, uniq[js[o]], np.float32(score[o])))
    t2 = time.perf_counter()

    f = open(a.out, "w", newline="", encoding="utf-8") if a.out else sys.stdout
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["book_id", "rank", "neighbour_id", "score"])
    for r in out_rows:
        w.writerow([r[0], r[1], r[2], repr(float(r[3]))])
    if a.out:
        f.close()
    print(f"read {t1 - t0:.3f}s compute {t2 - t1:.3f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
