#!/usr/bin/env bash
# The whole benchmark suite in one command. Training: cooc against scipy (X^T X + exact
# top-K), the `implicit` library's CosineRecommender and the reference guide's dense
# scikit-learn cosine, on the same generated orders.csv at each size, every contender's
# neighbours checked against cooc's (bench/run.py). Then serving against the axum ceiling and
# a FastAPI predictor (bench/serve.sh), 1 process against 2 and 4 ranks at sizes m and l
# (bench/gang.sh), and the collectives against one QUIC stream and TCP. Writes the section of
# bench/RESULTS.md between the bench/run.sh markers, and bench/results.png.
#
# usage: bench/run.sh [RUNS] [SIZES]      default: 3 s,m,l   (about 20 minutes on 2 cores);
#                                         SIZES may add xl: 9.6 GB of orders.csv under
#                                         bench/out, about 5 more minutes per run; scipy is
#                                         then skipped where its estimated peak exceeds memory
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
if ! $smoke; then
  command -v wrk >/dev/null || { echo "bench/run.sh: the serving benchmark needs wrk (apt-get install wrk)" >&2; exit 2; }
  [ -x /usr/bin/time ] || { echo "bench/run.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
fi
if $smoke; then
  bench/.venv/bin/python bench/run.py --runs "$RUNS" --sizes "$SIZES" --markdown "$md" --plot bench/out/results.png
  cat "$md"
  exit 0
fi
bench/.venv/bin/python bench/run.py --runs "$RUNS" --sizes "$SIZES" --markdown "$md" --plot bench/results.png
# The rest of the suite, each in its own interleaved run: serving, the gang, the transport.
{
  echo
  echo "### Serving: \`bench/serve.sh 5 10 m\`"
  echo
  bench/serve.sh 5 10 m 2>/dev/null
  for a in "m $RUNS 2" "m $RUNS 4" "l $RUNS 2" "l $RUNS 4"; do
    echo
    echo "### The gang: \`bench/gang.sh $a\`"
    echo
    bench/gang.sh $a 2>/dev/null | sed 's/^rank /- rank /'
  done
  echo
  echo "### Collectives: \`cargo bench --bench collectives -- 256 5\`"
  echo
  echo '```'
  cargo bench -q --bench collectives -- 256 5 2>/dev/null
  echo '```'
} >>"$md"
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
