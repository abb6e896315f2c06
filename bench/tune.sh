#!/usr/bin/env bash
# `cooc tune` against `cooc train`, and each measure's cost, at one size: runs interleaved,
# medians. Per run: `train --holdout last` (cosine), `tune` (the five default measures),
# and `train --similarity M` for every measure (its similarity/top-K phase, the one that
# differs between measures). Reuses the data of bench/train.sh when present.
#
# usage: bench/tune.sh [SIZE] [RUNS] [THREADS]    (defaults: l, 3, all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-l}
RUNS=${2:-3}
THREADS=${3:-$(nproc)}
BIN=target/release/cooc
WORK=${COOC_BENCH_DIR:-bench/out}
mkdir -p "$WORK"
data="$WORK/data-$SIZE"
[ -f "$data/orders.csv" ] || "$BIN" gen --size "$SIZE" --out "$data" >/dev/null 2>&1
cat "$data/orders.csv" >/dev/null
log="$WORK/tune-$SIZE.log"
: >"$log"
measures="cosine jaccard count lift inclusion llr"
secs() { grep -oE "in [0-9.]+s" "$1" | head -1 | tr -d 'ins '; }
phase() { grep -oE "$2 [0-9.]+s" "$1" | head -1 | awk '{print $NF}' | tr -d s; }
for r in $(seq "$RUNS"); do
  RUST_LOG=warn "$BIN" train --orders "$data/orders.csv" --threads "$THREADS" --holdout last \
    --out "$WORK/tune-train.cooc" 2>"$WORK/t.err" >/dev/null
  echo "train_holdout $(secs "$WORK/t.err")" >>"$log"
  RUST_LOG=warn "$BIN" tune --orders "$data/orders.csv" --threads "$THREADS" \
    2>"$WORK/t.err" >/dev/null
  echo "tune $(secs "$WORK/t.err") topk=$(phase "$WORK/t.err" 'similarity/top-K') eval=$(phase "$WORK/t.err" 'gather/evaluate')" >>"$log"
  for m in $measures; do
    RUST_LOG=warn "$BIN" train --orders "$data/orders.csv" --threads "$THREADS" --similarity "$m" \
      --out "$WORK/tune-$m.cooc" 2>"$WORK/t.err" >/dev/null
    echo "topk_$m $(phase "$WORK/t.err" 'similarity/top-K')" >>"$log"
  done
done
python3 - "$log" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, value, *_ = line.split()
    rows.setdefault(name, []).append(float(value))
med = {k: statistics.median(v) for k, v in rows.items()}
fmt = lambda k: f"{med[k]:.2f}s ({min(rows[k]):.2f}-{max(rows[k]):.2f})"
print(f"| run | median (min-max) | ratio |\n|---|---|---|")
print(f"| train --holdout last | {fmt('train_holdout')} | 1.0x |")
print(f"| tune (5 measures) | {fmt('tune')} | {med['tune'] / med['train_holdout']:.2f}x |")
for m in "cosine jaccard count lift inclusion llr".split():
    k = f"topk_{m}"
    print(f"| top-K phase, {m} | {fmt(k)} | {med[k] / med['topk_cosine']:.2f}x cosine |")
PY
