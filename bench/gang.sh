#!/usr/bin/env bash
# Gang benchmark: one process with T threads against W local rank processes (QUIC on
# loopback) with T/W threads each, on the same orders file, runs interleaved; medians.
# Checks that every run's artifact has the single process's identity, and reports the
# bytes each rank sent and received and each rank's peak RSS beside the single process's.
#
# usage: bench/gang.sh [SIZE] [RUNS] [WORLD]    (defaults: l, 5, 2; T = all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-l}
RUNS=${2:-5}
WORLD=${3:-2}
THREADS=$(nproc)
PER_RANK=$(( THREADS / WORLD > 0 ? THREADS / WORLD : 1 ))
BIN=target/release/cooc
WORK=${COOC_BENCH_DIR:-bench/out}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench/gang.sh: $TIME is missing (apt-get install time)" >&2; exit 2; }
mkdir -p "$WORK"
data="$WORK/data-$SIZE"
[ -f "$data/orders.csv" ] || "$BIN" gen --size "$SIZE" --out "$data" >/dev/null
cat "$data/orders.csv" >/dev/null
log="$WORK/gang-$SIZE.log"
: >"$log"

identity() { "$BIN" inspect "$1" --json | sed -n 's/.*"identity_crc32": "\(.*\)".*/\1/p'; }

for r in $(seq "$RUNS"); do
  RUST_LOG=warn $TIME -v "$BIN" train --orders "$data/orders.csv" --threads "$THREADS" \
    --out "$WORK/one.cooc" 2>"$WORK/one.err" >/dev/null
  RUST_LOG=warn $TIME -v "$BIN" train --orders "$data/orders.csv" --threads "$PER_RANK" \
    --local-ranks "$WORLD" --out "$WORK/gang.cooc" 2>"$WORK/gang.err" >/dev/null
  want=$(identity "$WORK/one.cooc"); got=$(identity "$WORK/gang.cooc")
  [ "$want" = "$got" ] || { echo "identity differs: one process $want, gang $got" >&2; exit 1; }
  for kind in one gang; do
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/$kind.err")
    echo "$kind $wall" >>"$log"
  done
  awk -F': ' '/Maximum resident set size/ {print "rss one " $2 * 1024}' "$WORK/one.err" >>"$log"
  grep -o 'rank [0-9]*/[0-9]*: sent [0-9]* B, received [0-9]* B, peak RSS [0-9]* MiB' "$WORK/gang.err" | sed 's/^/bytes /' >>"$log"
  echo "run $r/$RUNS done (identity $got)" >&2
done

python3 - "$log" "$SIZE" "$THREADS" "$WORLD" "$PER_RANK" <<'PY'
import statistics, sys, re
log, size, threads, world, per = sys.argv[1:]
def secs(t):
    parts = [float(p) for p in t.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
one, gang, ratios, sent, recv, rss_one, rss = [], [], [], {}, {}, [], {}
for line in open(log):
    f = line.split()
    if f[0] == "one": one.append(secs(f[1]))
    elif f[0] == "gang": gang.append(secs(f[1])); ratios.append(gang[-1] / one[-1])
    elif f[0] == "rss": rss_one.append(int(float(f[2])))
    elif f[0] == "bytes":
        m = re.match(r"bytes rank (\d+)/\d+: sent (\d+) B, received (\d+) B, peak RSS (\d+) MiB", line)
        sent[m[1]] = int(m[2]); recv[m[1]] = int(m[3])
        rss.setdefault(m[1], []).append(int(m[4]) << 20)
def fmt(v): return f"{statistics.median(v):.2f}s ({min(v):.2f}-{max(v):.2f})"
print(f"size {size}, {len(one)} interleaved runs: median (min-max)\n")
print("| run | whole process |")
print("|---|---|")
print(f"| 1 process, {threads} threads | {fmt(one)} |")
print(f"| {world} ranks (QUIC, loopback), {per} thread(s) each | {fmt(gang)} |")
print(f"\nratio gang / one process, per run: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
one_rss = statistics.median(rss_one)
print(f"\npeak RSS, median: 1 process {one_rss / 2**30:.2f} GiB")
for r in sorted(sent):
    mine = statistics.median(rss[r])
    print(f"rank {r}: sent {sent[r]/2**20:.1f} MiB, received {recv[r]/2**20:.1f} MiB, peak RSS {mine / 2**30:.2f} GiB ({mine / one_rss:.0%} of 1 process)")
PY
