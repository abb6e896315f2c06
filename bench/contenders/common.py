"""What the training contenders share: the command line, reading orders.csv into the binary
customer x book CSR (pandas + scipy, as a user would), writing neighbour lists in the
`book_id,rank,neighbour_id,score` format of `cooc export`, and reporting the timings as one
JSON line on stderr (read: CSV -> columns, matrix: columns -> CSR, compute: the rest)."""

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp


def parse_args(doc):
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("orders")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out")
    return ap.parse_args()


def read_csr(path, dtype):
    """(book ids, binary customer x book CSR, {read, matrix} seconds)."""
    t0 = time.perf_counter()
    df = pd.read_csv(path, usecols=["book_id", "customer_id"],
                     dtype={"book_id": np.int64, "customer_id": np.int64})
    t1 = time.perf_counter()
    books, item = np.unique(df["book_id"].to_numpy(), return_inverse=True)
    _, user = np.unique(df["customer_id"].to_numpy(), return_inverse=True)
    x = sp.csr_matrix((np.ones(len(item), dtype=dtype), (user, item)),
                      shape=(int(user.max()) + 1, len(books)))
    x.sum_duplicates()
    x.data[:] = 1  # binary: a book bought twice by one customer counts once
    t2 = time.perf_counter()
    return books, x, {"read": t1 - t0, "matrix": t2 - t1}


def ranked(js, scores, k):
    """The top k of (js, scores) with score > 0, by score descending then book."""
    keep = scores > 0
    js, scores = js[keep], scores[keep]
    order = np.lexsort((js, -scores))[:k]
    return js[order], scores[order]


def write(path, books, lists):
    """lists[i] = (neighbour indices, scores) in rank order, for book i."""
    if not path:
        return
    with open(path, "w") as f:
        f.write("book_id,rank,neighbour_id,score\n")
        for i, (js, ss) in enumerate(lists):
            for r, (j, s) in enumerate(zip(js, ss), start=1):
                f.write(f"{books[i]},{r},{books[j]},{float(np.float32(s))!r}\n")


def report(times):
    print(json.dumps(times), file=sys.stderr)
