#!/usr/bin/env bash
# The comparative training benchmark: cooc against scipy (X^T X + exact top-K), the
# `implicit` library's CosineRecommender and the reference guide's dense scikit-learn
# cosine, on the same generated orders.csv at each size. Checks every contender's
# neighbours against cooc's, then writes the results section of bench/RESULTS.md (between
# the bench/run.sh markers) and bench/results.png. The other benchmarks (serving, the gang,
# the collectives) have their own scripts, listed in bench/RESULTS.md.
#
# usage: bench/run.sh [RUNS] [SIZES]      default: 3 s,m,l   (size l takes a few minutes)
#        bench/run.sh --smoke             size s, one run, results under bench/out/ only;
#                                         CI runs this so the script keeps working
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=false
if [ "${1:-}" = "--smoke" ]; then smoke=true; RUNS=1; SIZES=s; else RUNS=${1:-3}; SIZES=${2:-s,m,l}; fi

# The smoke run reuses a binary the tests just built (CI); a full run always builds.
if ! $smoke || [ ! -x target/release/cooc ]; then
  cargo build --release --bin cooc >&2
fi
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import sklearn, implicit, matplotlib' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q --disable-pip-version-check \
    numpy==2.4.6 scipy==1.17.1 pandas==3.1.1 scikit-learn==1.8.0 implicit==0.7.3 matplotlib==3.10.8
fi
mkdir -p bench/out
md=bench/out/contenders.md
if $smoke; then
  bench/.venv/bin/python bench/run.py --runs "$RUNS" --sizes "$SIZES" --markdown "$md" --plot bench/out/results.png
  cat "$md"
  exit 0
fi
bench/.venv/bin/python bench/run.py --runs "$RUNS" --sizes "$SIZES" --markdown "$md" --plot bench/results.png
# Replace the section between the markers with this run's.
python3 - "$md" <<'PY'
import sys
new = open(sys.argv[1]).read()
path = "bench/RESULTS.md"
text = open(path).read()
begin, end = "<!-- bench/run.sh: begin -->", "<!-- bench/run.sh: end -->"
head, rest = text.split(begin)
_, tail = rest.split(end)
open(path, "w").write(head + begin + "\n" + new + end + tail)
PY
cat "$md"
