#!/usr/bin/env bash
# Training benchmark: `cooc gen` and `cooc train` at one size, several runs, medians.
#
# Reports, per command: whole-process wall time and peak RSS (from /usr/bin/time -v), and for
# train the phases cooc logs (read = CSV parsing, compute = counting + similarity/top-K,
# write). The input is read once before timing so every run starts from a warm page cache.
#
# usage: bench/train.sh [SIZE] [RUNS] [THREADS]    (defaults: l, 5, all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-l}
RUNS=${2:-5}
THREADS=${3:-$(nproc)}
BIN=target/release/cooc
WORK=${COOC_BENCH_DIR:-bench/out}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench/train.sh: $TIME is missing (apt-get install time)" >&2; exit 2; }
mkdir -p "$WORK"
data="$WORK/data-$SIZE"
log="$WORK/train-$SIZE.log"
: >"$log"

# gen: timed into a scratch directory, then kept as the training input.
for r in $(seq "$RUNS"); do
  rm -rf "$WORK/gen-scratch"
  $TIME -v "$BIN" gen --size "$SIZE" --threads "$THREADS" --out "$WORK/gen-scratch" 2>"$WORK/gen.err" >/dev/null
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/gen.err")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/gen.err")
  echo "gen $wall $rss" >>"$log"
done
rm -rf "$data"
mv "$WORK/gen-scratch" "$data"
cat "$data/orders.csv" >/dev/null

for r in $(seq "$RUNS"); do
  RUST_LOG=warn $TIME -v "$BIN" train --orders "$data/orders.csv" --threads "$THREADS" \
    --out "$WORK/train-$SIZE.cooc" 2>"$WORK/train.err" >/dev/null
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/train.err")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/train.err")
  phases=$(grep -o '(read [^)]*)' "$WORK/train.err" | tr -d '(),s' | awk '{print $2, $4, $6, $8}')
  echo "train $wall $rss $phases" >>"$log"
  echo "run $r/$RUNS done" >&2
done

python3 - "$log" "$SIZE" "$THREADS" <<'EOF'
import statistics, sys
log, size, threads = sys.argv[1], sys.argv[2], sys.argv[3]
def secs(t):
    parts = [float(p) for p in t.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
def fmt(v, unit="s"):
    return f"{statistics.median(v):.2f}{unit} ({min(v):.2f}-{max(v):.2f})"
gen, train = [], []
for line in open(log):
    f = line.split()
    (gen if f[0] == "gen" else train).append(f[1:])
print(f"size {size}, {threads} thread(s), {len(train)} runs: median (min-max)\n")
print("| command | whole process | read (CSV) | compute (count + top-K) | write | peak RSS |")
print("|---|---|---|---|---|---|")
gw = [secs(g[0]) for g in gen]
gr = [int(g[1]) / 2**20 for g in gen]
print(f"| cooc gen --size {size} | {fmt(gw)} | | | | {fmt(gr, ' GiB')} |")
tw = [secs(t[0]) for t in train]
tr = [int(t[1]) / 2**20 for t in train]
rd = [float(t[2]) for t in train]
cp = [float(t[3]) + float(t[4]) for t in train]
wr = [float(t[5]) for t in train]
print(f"| cooc train (K=10, cosine) | {fmt(tw)} | {fmt(rd)} | {fmt(cp)} | {fmt(wr)} | {fmt(tr, ' GiB')} |")
EOF
