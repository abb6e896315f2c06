#!/usr/bin/env python3
"""Contender: a FastAPI predictor like the reference guide's, serving cooc's neighbours.

Loads the neighbour lists (`cooc export --format csv`) and books.csv into dicts at start-up
and answers the same routes and JSON shapes as cooc-serve: `GET /recommend?book_id=&k=`
and `POST /v1/models/recommender:predict`. What it measures is the serving stack (FastAPI,
pydantic, uvicorn), not the model.

Run: NEIGHBOURS=n.csv BOOKS=books.csv uvicorn fastapi_predictor:app --port P [--workers N]
"""

import csv
import os
from collections import defaultdict
from typing import List, Optional

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel


def load():
    titles = {}
    with open(os.environ["BOOKS"], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            titles[int(row["id"])] = (row.get("title"), row.get("author"))
    neighbours = defaultdict(list)
    with open(os.environ["NEIGHBOURS"], newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            neighbours[int(row["book_id"])].append((int(row["neighbour_id"]), float(row["score"])))
    return titles, dict(neighbours)


TITLES, NEIGHBOURS = load()
DEFAULT_K = int(os.environ.get("DEFAULT_K", "5"))
app = FastAPI()


def recommend(book_id: int, k: int):
    out = []
    for nb, score in NEIGHBOURS.get(book_id, [])[:k]:
        title, author = TITLES.get(nb, (None, None))
        out.append({"book_id": nb, "score": score, "title": title, "author": author})
    return out


@app.get("/recommend")
def get_recommend(book_id: int, k: int = Query(DEFAULT_K, ge=1, le=100)):
    if book_id not in NEIGHBOURS and book_id not in TITLES:
        raise HTTPException(status_code=404, detail=f"unknown book_id {book_id}")
    return {"book_id": book_id, "k": k, "recommendations": recommend(book_id, k)}


class Instance(BaseModel):
    book_id: int
    k: Optional[int] = None


class PredictRequest(BaseModel):
    instances: List[Instance]


@app.post("/v1/models/recommender:predict")
def predict(req: PredictRequest):
    preds = []
    for inst in req.instances:
        k = inst.k or DEFAULT_K
        preds.append({"book_id": inst.book_id, "k": k, "recommendations": recommend(inst.book_id, k)})
    return {"predictions": preds}
