#!/usr/bin/env python3
"""Contender: the `implicit` library's CosineRecommender on a Bookstore orders.csv.

What a user would write instead of cooc: pandas reads the CSV, scipy builds the binary
customer x book CSR, `CosineRecommender(K=k+1).fit()` computes the neighbours (its list
includes each item itself, dropped on export). Writes `book_id,rank,neighbour_id,score`
like `cooc export` and prints the timings as one JSON line on stderr:
read (CSV -> columns), matrix (columns -> CSR), compute (fit alone).

Usage: implicit_cosine.py ORDERS.csv [--k 10] [--out FILE]
"""

import time

import numpy as np
from implicit.nearest_neighbours import CosineRecommender

import common


def main():
    a = common.parse_args(__doc__)
    books, x, times = common.read_csr(a.orders, np.float32)
    t0 = time.perf_counter()
    model = CosineRecommender(K=a.k + 1)
    model.fit(x, show_progress=False)
    times["compute"] = time.perf_counter() - t0

    sim = model.similarity.tocsr()
    lists = []
    for i in range(sim.shape[0]):
        lo, hi = sim.indptr[i], sim.indptr[i + 1]
        js, ss = sim.indices[lo:hi], sim.data[lo:hi]
        keep = js != i
        lists.append(common.ranked(js[keep], ss[keep], a.k))
    common.write(a.out, books, lists)
    common.report(times)


if __name__ == "__main__":
    main()
