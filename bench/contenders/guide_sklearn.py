#!/usr/bin/env python3
"""Contender: the reference guide's method on a Bookstore orders.csv.

pandas reads the CSV, scipy builds the binary customer x book CSR, scikit-learn's
`cosine_similarity` computes the dense book x book matrix, and `np.argpartition` picks the
top K per book. The dense matrix is n_books^2 float64 (75 GiB at 100,000 books), which is why
the guide stops at 200 books; bench/run.py runs this only where it fits. Writes
`book_id,rank,neighbour_id,score` like `cooc export` and prints the timings as one JSON line
on stderr: read (CSV -> columns), matrix (columns -> CSR), compute (similarity + top-K).

Usage: guide_sklearn.py ORDERS.csv [--k 10] [--out FILE]
"""

import time

import numpy as np
from sklearn.metrics.pairwise import cosine_similarity

import common


def main():
    a = common.parse_args(__doc__)
    books, x, times = common.read_csr(a.orders, np.float64)
    t0 = time.perf_counter()
    sim = cosine_similarity(x.T)  # dense n_books x n_books
    np.fill_diagonal(sim, 0.0)
    k = min(a.k, len(books) - 1)
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    times["compute"] = time.perf_counter() - t0
    # argpartition leaves the order (and ties at the K-th place) arbitrary: rank like cooc.
    common.write(a.out, books, [common.ranked(top[i], sim[i, top[i]], k) for i in range(len(books))])
    common.report(times)


if __name__ == "__main__":
    main()
