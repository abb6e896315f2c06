#!/usr/bin/env python3
"""Contender: scipy sparse X^T X with an exact top-K on a Bookstore orders.csv.

What a user who avoids the dense matrix would write: pandas reads the CSV, scipy builds the
binary customer x book CSR, `X.T @ X` gives the co-occurrence counts, and each row's cosine
scores are ranked exactly (score descending, then book id). Writes
`book_id,rank,neighbour_id,score` like `cooc export` and prints the timings as one JSON line
on stderr: read (CSV -> columns), matrix (columns -> CSR), compute (X^T X + top-K).

Usage: scipy_xtx.py ORDERS.csv [--k 10] [--out FILE]
"""

import time

import numpy as np

import common


def main():
    a = common.parse_args(__doc__)
    books, x, times = common.read_csr(a.orders, np.int32)
    t0 = time.perf_counter()
    c = (x.T @ x).tocsr()
    diag = c.diagonal().astype(np.float64)
    lists = []
    for i in range(len(books)):
        lo, hi = c.indptr[i], c.indptr[i + 1]
        js = c.indices[lo:hi]
        keep = js != i
        js = js[keep]
        score = c.data[lo:hi][keep] / np.sqrt(diag[i] * diag[js])
        if len(js) > a.k:
            part = np.argpartition(-score, a.k - 1)[: a.k]
            sel = score >= score[part].min()  # keep the whole tie group at the K-th place
            js, score = js[sel], score[sel]
        lists.append(common.ranked(js, score, a.k))
    times["compute"] = time.perf_counter() - t0
    common.write(a.out, books, lists)
    common.report(times)


if __name__ == "__main__":
    main()
