#!/usr/bin/env python3
"""Contender: the reference guide's method on a Bookstore orders.csv.

pandas reads the CSV, scipy builds the binary customer x book CSR, scikit-learn's
`cosine_similarity` computes the dense book x book matrix, and `np.argpartition` picks the
top K per book. The dense matrix is n_books^2 float64 (80 GB at 100,000 books), which is why
the guide stops at 200 books; bench/run.sh runs this only where it fits. Writes
`book_id,rank,neighbour_id,score` like `cooc export` and prints the timings as one JSON line
on stderr: read (CSV -> columns), matrix (columns -> CSR), compute (similarity + top-K).

Usage: guide_sklearn.py ORDERS.csv [--k 10] [--out FILE]
"""

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics.pairwise import cosine_similarity


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("orders")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out")
    a = ap.parse_args()

    t0 = time.perf_counter()
    df = pd.read_csv(a.orders, usecols=["book_id", "customer_id"],
                     dtype={"book_id": np.int64, "customer_id": np.int64})
    t1 = time.perf_counter()
    books, item = np.unique(df["book_id"].to_numpy(), return_inverse=True)
    _, user = np.unique(df["customer_id"].to_numpy(), return_inverse=True)
    x = sp.csr_matrix((np.ones(len(item)), (user, item)), shape=(int(user.max()) + 1, len(books)))
    x.sum_duplicates()
    x.data[:] = 1.0  # binary: a book bought twice by one customer counts once
    t2 = time.perf_counter()
    sim = cosine_similarity(x.T)  # dense n_books x n_books
    np.fill_diagonal(sim, 0.0)
    k = min(a.k, len(books) - 1)
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k > 0 else np.empty((len(books), 0), int)
    t3 = time.perf_counter()

    if a.out:
        with open(a.out, "w") as f:
            f.write("book_id,rank,neighbour_id,score\n")
            for i in range(len(books)):
                js = top[i]
                ss = sim[i, js]
                # argpartition leaves ties at the K-th place arbitrary; order like cooc.
                keep = ss > 0
                js, ss = js[keep], ss[keep]
                order = np.lexsort((js, -ss))
                for r, o in enumerate(order, start=1):
                    f.write(f"{books[i]},{r},{books[js[o]]},{float(np.float32(ss[o]))!r}\n")
    print(json.dumps({"read": t1 - t0, "matrix": t2 - t1, "compute": t3 - t2}), file=sys.stderr)


if __name__ == "__main__":
    main()
