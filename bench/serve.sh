#!/usr/bin/env bash
# Serving benchmark: wrk against cooc-serve (/recommend, :predict, and :recommend with a
# basket of 5 books and k = 10), the minimal axum
# "hello" ceiling server (driven with the same request script as /recommend), and a FastAPI
# predictor like the reference guide's serving the same neighbours (uvicorn, one worker per
# core), interleaved round by round in one run so that machine noise hits every contender
# alike. Prints medians (req/s, p50, p99) and each one's ratio to the ceiling.
#
# usage: bench/serve.sh [ROUNDS] [SECONDS] [SIZE]     (defaults: 5 rounds of 10 s, size m)
# needs: wrk, a release build (cargo build --release); installs FastAPI into bench/.venv
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECS=${2:-10}
SIZE=${3:-m}
BIN=target/release
WORK=${COOC_BENCH_DIR:-bench/out}
mkdir -p "$WORK"
command -v wrk >/dev/null || { echo "bench/serve.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }

data="$WORK/data-$SIZE"
store="$WORK/serve-model-$SIZE"
if [ ! -f "$data/orders.csv" ]; then "$BIN/cooc" gen --size "$SIZE" --out "$data" 2>/dev/null; fi
if [ ! -f "$store/CURRENT" ]; then
  RUST_LOG=warn "$BIN/cooc" train --orders "$data/orders.csv" --books "$data/books.csv" --model-dir "$store" 2>/dev/null
fi
books=$(($(wc -l <"$data/books.csv") - 1))

if [ ! -x bench/.venv/bin/uvicorn ]; then
  [ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q --disable-pip-version-check fastapi==0.121.3 uvicorn==0.38.0
fi
"$BIN/cooc" export "$store" --format csv --out "$WORK/serve-neighbours-$SIZE.csv"

pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SP=$(pick_port); HP=$(pick_port); FP=$(pick_port)
MODEL_DIR="$store" LISTEN="127.0.0.1:$SP" RUST_LOG=warn "$BIN/cooc-serve" & SPID=$!
"$BIN/hello" "127.0.0.1:$HP" & HPID=$!
(cd bench/contenders && NEIGHBOURS="../../$WORK/serve-neighbours-$SIZE.csv" BOOKS="../../$data/books.csv" \
  exec ../.venv/bin/uvicorn fastapi_predictor:app --host 127.0.0.1 --port "$FP" \
  --workers "$(nproc)" --log-level warning --no-access-log) & FPID=$!
trap 'kill $SPID $HPID $FPID 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  curl -fs "127.0.0.1:$SP/ready" >/dev/null 2>&1 && curl -fs "127.0.0.1:$HP/" >/dev/null 2>&1 &&
    curl -fs "127.0.0.1:$FP/recommend?book_id=1" >/dev/null 2>&1 && break
  sleep 0.1
done
# Same answers: both serve the same neighbours for the same book.
diff <(curl -fs "127.0.0.1:$SP/recommend?book_id=1&k=5" | python3 -c 'import json,sys; print([r["book_id"] for r in json.load(sys.stdin)["recommendations"]])') \
     <(curl -fs "127.0.0.1:$FP/recommend?book_id=1&k=5" | python3 -c 'import json,sys; print([r["book_id"] for r in json.load(sys.stdin)["recommendations"]])') \
  || { echo "bench/serve.sh: cooc-serve and the FastAPI predictor disagree" >&2; exit 1; }

# run NAME wrk-args... -> appends "rps p50_ms p99_ms" to $WORK/NAME.txt
run() {
  local name=$1; shift
  local out
  out=$(BOOKS=$books wrk -t2 -c64 -d"${SECS}s" --latency "$@")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$rps $p50 $p99" >>"$WORK/$name.txt"
}
rm -f "$WORK"/{hello,recommend,predict,basket,fastapi-recommend,fastapi-predict}.txt
for r in $(seq "$ROUNDS"); do
  # The ceiling gets the identical client workload (same Lua request generator, same
  # paths): on 2 shared cores wrk's own CPU use would otherwise skew the comparison.
  run hello -s bench/recommend.lua "http://127.0.0.1:$HP"
  run recommend -s bench/recommend.lua "http://127.0.0.1:$SP"
  run predict -s bench/predict.lua "http://127.0.0.1:$SP"
  run basket -s bench/basket.lua "http://127.0.0.1:$SP"
  run fastapi-recommend -s bench/recommend.lua "http://127.0.0.1:$FP"
  run fastapi-predict -s bench/predict.lua "http://127.0.0.1:$FP"
  echo "round $r/$ROUNDS done" >&2
done

python3 - "$WORK" <<'EOF'
import statistics, sys
work = sys.argv[1]
def ms(v):
    return float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
rows = {}
for name in ["hello", "recommend", "predict", "basket", "fastapi-recommend", "fastapi-predict"]:
    vals = [l.split() for l in open(f"{work}/{name}.txt")]
    rps = [float(v[0]) for v in vals]
    rows[name] = (statistics.median(rps), min(rps), max(rps),
                  statistics.median(ms(v[1]) for v in vals), statistics.median(ms(v[2]) for v in vals))
ceiling = rows["hello"][0]
hello_rounds = [float(l.split()[0]) for l in open(f"{work}/hello.txt")]
def round_ratio(name):
    own = [float(l.split()[0]) for l in open(f"{work}/{name}.txt")]
    return statistics.median(o / h for o, h in zip(own, hello_rounds))
print("| server | route | req/s median (min-max) | p50 ms | p99 ms | vs hello (median of per-round ratios) |")
print("|---|---|---|---|---|---|")
servers = {"hello": "axum hello (ceiling)", "recommend": "cooc-serve", "predict": "cooc-serve", "basket": "cooc-serve",
           "fastapi-recommend": "FastAPI + uvicorn", "fastapi-predict": "FastAPI + uvicorn"}
routes = {"hello": "GET /recommend?book_id=<random> (constant body)", "recommend": "GET /recommend?book_id=<random>",
          "predict": "POST /v1/models/recommender:predict",
          "basket": "POST /v1/models/recommender:recommend (5 books, k=10)"}
for name in servers:
    route = routes.get(name.removeprefix("fastapi-"))
    med, lo, hi, p50, p99 = rows[name]
    server = servers[name]
    print(f"| {server} | {route} | {med:,.0f} ({lo:,.0f}-{hi:,.0f}) | {p50:.2f} | {p99:.2f} | {round_ratio(name):.0%} |")
def per_round(a, b):
    own = [float(l.split()[0]) for l in open(f"{work}/{a}.txt")]
    other = [float(l.split()[0]) for l in open(f"{work}/{b}.txt")]
    return statistics.median(o / t for o, t in zip(own, other))
print(f"\ncooc-serve :recommend (5 books, k=10) / /recommend (one book): {per_round('basket', 'recommend'):.0%} of the requests/s "
      f"(median of per-round ratios), p99 {rows['basket'][4] / rows['recommend'][4]:.2f}x")
for route in ["recommend", "predict"]:
    print(f"\ncooc-serve / FastAPI, {routes[route].split('?')[0]}: {rows[route][0] / rows['fastapi-' + route][0]:.1f}x requests/s, "
          f"p99 {rows['fastapi-' + route][4] / rows[route][4]:.1f}x lower")
EOF
