#!/usr/bin/env bash
# The GPU checks in one script, for a machine with an NVIDIA GPU: build with the GPU
# backends, run the parity tests (tests/gpu.rs), then time `cooc train` on the CPU and on
# CUDA at sizes m and l, interleaved, and check that both write the same model.
#
# Prints a markdown report (the GPU named) for bench/RESULTS.md. The "similarity/top-K" phase
# is the kernel: on CUDA the upload, the tiled counting and compaction on the GPU, and the
# host-side selection; "compute" adds the basket build and index, as on the CPU.
#
# usage: bench/gpu.sh [RUNS] [SIZES]     default: 3 m,l
#        (COOC_GPU_BACKEND=cpu runs the script's own logic on a CPU-only machine)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
SIZES=${2:-m,l}
WORK=${COOC_BENCH_DIR:-bench/out}
mkdir -p "$WORK"

command -v nvidia-smi >/dev/null || { echo "bench/gpu.sh: no nvidia-smi: not a GPU machine" >&2; exit 2; }
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)

cargo build --release --features nccl --bin cooc >&2
BIN=target/release/cooc

echo "## GPU: $gpu"
echo
echo "Date: $(date -u +%Y-%m-%dT%H:%MZ). Host: $(nproc) CPUs. Build: \`cargo build --release --features nccl\`."
echo
echo "### Parity: \`cargo test --release --features nccl --test tests gpu::\`"
echo
echo '```'
cargo test --release --features nccl --test tests gpu:: -- --nocapture 2>&1 | grep -E '^test |test result|skipped' || true
echo '```'

for size in ${SIZES//,/ }; do
  data="$WORK/data-$size"
  [ -f "$data/orders.csv" ] || "$BIN" gen --size "$size" --out "$data" >/dev/null 2>&1
  cat "$data/orders.csv" >/dev/null
  log="$WORK/gpu-$size.log"
  : >"$log"
  for r in $(seq "$RUNS"); do
    for side in first second; do
      backend=cpu; [ $side = second ] && backend=${COOC_GPU_BACKEND:-cuda}
      RUST_LOG=warn "$BIN" train --orders "$data/orders.csv" --backend "$backend" \
        --out "$WORK/gpu-$size-$side.cooc" 2>"$WORK/gpu.err" >/dev/null \
        || { cat "$WORK/gpu.err" >&2; exit 1; }
      line=$(grep -o 'in [0-9.]*s (read [^)]*)' "$WORK/gpu.err" | tr -d '(),s' | awk '{print $2, $4, $6, $8}')
      echo "$backend-$side $line" >>"$log"
    done
  done
  same=$("$BIN" inspect "$WORK/gpu-$size-first.cooc" --json | grep -o '"identity_crc32": "[0-9a-f]*"')
  other=$("$BIN" inspect "$WORK/gpu-$size-second.cooc" --json | grep -o '"identity_crc32": "[0-9a-f]*"')
  echo
  echo "### Size $size: \`cooc train --orders orders.csv --backend cpu|cuda\`, $RUNS interleaved runs"
  echo
  echo "| backend | total (in-process) | read | compute (count + top-K) | similarity/top-K (kernel) |"
  echo "|---|---|---|---|---|"
  python3 - "$log" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    b, whole, read, count, topk = line.split()
    rows.setdefault(b, []).append((float(whole), float(read), float(count) + float(topk), float(topk)))
def cell(v):
    return f"{statistics.median(v):.3f}s ({min(v):.3f}-{max(v):.3f})"
for b, rs in rows.items():
    cols = list(zip(*rs))
    print(f"| {b} | " + " | ".join(cell(c) for c in cols) + " |")
PY
  echo
  if [ "$same" = "$other" ]; then
    echo "Same model on both backends: $same."
  else
    echo "**The models differ**: first (cpu) $same, second $other."
  fi
done
