#!/usr/bin/env python3
"""Contender: the `implicit` library's CosineRecommender on a Bookstore orders.csv.

What a user would write instead of cooc: pandas reads the CSV, scipy builds the binary
customer x book CSR, `CosineRecommender(K=k+1).fit()` computes the neighbours (its list
includes each item itself, dropped on export). Writes `book_id,rank,neighbour_id,score`
like `cooc export` and prints the timings as one JSON line on stderr:
read (CSV -> columns), matrix (columns -> CSR), compute (fit alone).

Usage: implicit_cosine.py ORDERS.csv [--k 10] [--out FILE]
"""

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.nearest_neighbours import CosineRecommender


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("orders")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out")
    a = ap.parse_args()

    t0 = time.perf_counter()
    df = pd.read_csv(a.orders, usecols=["book_id", "customer_id"], dtype={"book_id": np.int64, "customer_id": np.int64})
    t1 = time.perf_counter()
    books, item = np.unique(df["book_id"].to_numpy(), return_inverse=True)
    _, user = np.unique(df["customer_id"].to_numpy(), return_inverse=True)
    x = sp.csr_matrix(
        (np.ones(len(item), dtype=np.float32), (user, item)),
        shape=(int(user.max()) + 1, len(books)),
    )
    x.sum_duplicates()
    x.data[:] = 1.0  # binary: a book bought twice by one customer counts once
    t2 = time.perf_counter()
    model = CosineRecommender(K=a.k + 1)
    model.fit(x, show_progress=False)
    t3 = time.perf_counter()

    sim = model.similarity.tocsr()
    if a.out:
        with open(a.out, "w") as f:
            f.write("book_id,rank,neighbour_id,score\n")
            for i in range(sim.shape[0]):
                lo, hi = sim.indptr[i], sim.indptr[i + 1]
                js, ss = sim.indices[lo:hi], sim.data[lo:hi]
                keep = (js != i) & (ss > 0)
                js, ss = js[keep], ss[keep]
                order = np.lexsort((js, -ss))[: a.k]
                for r, o in enumerate(order, start=1):
                    f.write(f"{books[i]},{r},{books[js[o]]},{float(ss[o])!r}\n")
    print(json.dumps({"read": t1 - t0, "matrix": t2 - t1, "compute": t3 - t2}), file=sys.stderr)


if __name__ == "__main__":
    main()
