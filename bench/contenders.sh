#!/usr/bin/env bash
# cooc against the `implicit` library's CosineRecommender on the same orders.csv, runs
# interleaved, medians and ratios from this one run. Installs the Python contender into
# bench/.venv from the package registry on first use.
#
# "compute" is, for implicit, `fit()` on the customer x book CSR that pandas and scipy built
# before it ("read + matrix"); for cooc, its count and similarity/top-K phases, which include
# building the baskets from rows (the stricter scope). Whole process and peak RSS come from
# /usr/bin/time -v. Before every run, of either tool, the CSV is read once untimed, so each
# starts with it in the page cache (this host drops cached pages on its own between runs:
# a read of 1 s became 5 s within three rounds).
#
# usage: bench/contenders.sh [SIZE] [RUNS]     (defaults: l, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-l}
RUNS=${2:-3}
WORK=${COOC_BENCH_DIR:-bench/out}
BIN=target/release/cooc
mkdir -p "$WORK"
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q implicit==0.7.3 scipy numpy pandas
fi
data="$WORK/data-$SIZE"
[ -f "$data/orders.csv" ] || "$BIN" gen --size "$SIZE" --out "$data" 2>/dev/null
warm() { cat "$data/orders.csv" >/dev/null; }
log="$WORK/contenders-$SIZE.log"
: >"$log"
for r in $(seq "$RUNS"); do
  warm
  RUST_LOG=cooc::train=info /usr/bin/time -v "$BIN" train --orders "$data/orders.csv" \
    --out "$WORK/c-$SIZE.cooc" 2>"$WORK/c.err" >/dev/null
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/c.err")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/c.err")
  ph=$(grep -o '(read [^)]*)' "$WORK/c.err" | tr -d '(),s' | awk '{print $2, $4, $6}')
  echo "cooc $wall $rss $ph" >>"$log"
  warm
  /usr/bin/time -v bench/.venv/bin/python bench/contenders/implicit_cosine.py "$data/orders.csv" \
    --out "$WORK/implicit-$SIZE.csv" 2>"$WORK/i.err" >/dev/null
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/i.err")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/i.err")
  js=$(grep '^{' "$WORK/i.err")
  echo "implicit $wall $rss $js" >>"$log"
  echo "round $r/$RUNS done" >&2
done

python3 - "$log" "$SIZE" <<'EOF'
import json, statistics, sys
log, size = sys.argv[1], sys.argv[2]
def secs(t):
    return sum(float(p) * 60 ** i for i, p in enumerate(reversed(t.split(":"))))
c, im = [], []
for line in open(log):
    f = line.split(None, 3)
    if f[0] == "cooc":
        rd, cnt, topk = map(float, f[3].split())
        c.append((secs(f[1]), int(f[2]) / 2**20, rd, cnt + topk))
    else:
        j = json.loads(f[3])
        im.append((secs(f[1]), int(f[2]) / 2**20, j["read"] + j["matrix"], j["compute"]))
med = lambda rows, i: statistics.median(r[i] for r in rows)
print(f"size {size}, {len(c)} interleaved runs each, medians\n")
print("| tool | whole process | read + matrix | compute | peak RSS |")
print("|---|---|---|---|---|")
print(f"| cooc train | {med(c,0):.2f}s | {med(c,2):.2f}s | {med(c,3):.2f}s (count + top-K) | {med(c,1):.2f} GiB |")
print(f"| implicit 0.7.3 CosineRecommender | {med(im,0):.2f}s | {med(im,2):.2f}s | {med(im,3):.2f}s (fit) | {med(im,1):.2f} GiB |")
print(f"\nimplicit / cooc: whole process {med(im,0)/med(c,0):.1f}x, compute {med(im,3)/med(c,3):.1f}x, peak RSS {med(im,1)/med(c,1):.1f}x")
EOF
