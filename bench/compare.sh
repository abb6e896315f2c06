#!/usr/bin/env bash
# Two builds of cooc on the same input, runs interleaved (A B, B A, A B, ...), so that the
# machine's drift falls on both alike: one process with all threads, and W local ranks
# (QUIC on loopback) with THREADS/W threads each. Checks that every artifact has the same
# identity, and reports medians of the whole process and of the phases cooc prints.
#
# usage: bench/compare.sh OLD_BIN NEW_BIN [SIZE] [RUNS] [WORLD]   (defaults: l, 5, 2)
# e.g.:  git worktree add /tmp/before HEAD~3 && (cd /tmp/before && cargo build --release)
#        bench/compare.sh /tmp/before/target/release/cooc target/release/cooc l 5 2
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?usage: bench/compare.sh OLD_BIN NEW_BIN [SIZE] [RUNS] [WORLD]}
NEW=${2:?usage: bench/compare.sh OLD_BIN NEW_BIN [SIZE] [RUNS] [WORLD]}
SIZE=${3:-l}
RUNS=${4:-5}
WORLD=${5:-2}
THREADS=$(nproc)
PER_RANK=$(( THREADS / WORLD > 0 ? THREADS / WORLD : 1 ))
WORK=${COOC_BENCH_DIR:-bench/out}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench/compare.sh: $TIME is missing (apt-get install time)" >&2; exit 2; }
mkdir -p "$WORK"
data="$WORK/data-$SIZE"
[ -f "$data/orders.csv" ] || "$NEW" gen --size "$SIZE" --out "$data" >/dev/null
cat "$data/orders.csv" >/dev/null
log="$WORK/compare-$SIZE.log"
: >"$log"

identity() { "$NEW" inspect "$1" --json | sed -n 's/.*"identity_crc32": "\(.*\)".*/\1/p'; }

# One timed run: label, binary, extra train flags.
run() {
  local label=$1 bin=$2; shift 2
  RUST_LOG=warn $TIME -v "$bin" train --orders "$data/orders.csv" "$@" \
    --out "$WORK/$label.cooc" 2>"$WORK/$label.err" >/dev/null
  local wall rss phases
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/$label.err")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$label.err")
  phases=$(grep -o 'trained .*' "$WORK/$label.err" | sed -n 's/.*(\(read [^)]*\)).*/\1/p' | sed -E 's/([0-9.]+)s/\1/g; s/,//g')
  echo "$label $wall $rss $phases" >>"$log"
}

want=""
for r in $(seq "$RUNS"); do
  # Odd rounds run the old build first, even rounds the new one: neither always follows
  # the other.
  if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
  for b in $order; do
    bin=$OLD; [ "$b" = new ] && bin=$NEW
    run "$b-one" "$bin" --threads "$THREADS"
  done
  for b in $order; do
    bin=$OLD; [ "$b" = new ] && bin=$NEW
    run "$b-gang" "$bin" --threads "$PER_RANK" --local-ranks "$WORLD"
  done
  for kind in old-one new-one old-gang new-gang; do
    got=$(identity "$WORK/$kind.cooc")
    [ -n "$want" ] || want=$got
    [ "$got" = "$want" ] || { echo "identity differs: $kind $got, expected $want" >&2; exit 1; }
  done
  echo "run $r/$RUNS done (identity $want)" >&2
done

python3 - "$log" "$SIZE" "$THREADS" "$WORLD" "$PER_RANK" "$OLD" "$NEW" <<'PY'
import statistics, sys
log, size, threads, world, per, old, new = sys.argv[1:]
def secs(t):
    parts = [float(p) for p in t.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rows = {}
for line in open(log):
    f = line.split()
    label, wall, rss, rest = f[0], secs(f[1]), int(f[2]) / 2**20, f[3:]
    ph = dict(zip(rest[0::2], map(float, rest[1::2])))
    r = rows.setdefault(label, {"whole": [], "rss": [], "read": [], "compute": []})
    r["whole"].append(wall); r["rss"].append(rss)
    r["read"].append(ph.get("read", 0.0))
    r["compute"].append(ph.get("count", 0.0) + ph.get("similarity/top-K", 0.0))
def fmt(v, unit="s"):
    return f"{statistics.median(v):.2f}{unit} ({min(v):.2f}-{max(v):.2f})"
n = len(rows["old-one"]["whole"])
print(f"size {size}, {n} interleaved runs, median (min-max)")
print(f"old: {old}\nnew: {new}\n")
print("| run | build | whole process | read | compute (count + top-K) | peak RSS |")
print("|---|---|---|---|---|---|")
for kind, what in [("one", f"1 process, {threads} threads"), ("gang", f"{world} ranks x {per} thread(s)")]:
    for b in ("old", "new"):
        r = rows[f"{b}-{kind}"]
        print(f"| {what} | {b} | {fmt(r['whole'])} | {fmt(r['read'])} | {fmt(r['compute'])} | {fmt(r['rss'], ' GiB')} |")
for kind in ("one", "gang"):
    o, w = rows[f"old-{kind}"]["whole"], rows[f"new-{kind}"]["whole"]
    ratios = [b / a for a, b in zip(o, w)]
    print(f"\n{kind}: new / old whole-process time per run: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
PY
