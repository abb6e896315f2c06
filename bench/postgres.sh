#!/usr/bin/env bash
# Training from PostgreSQL against the two paths it replaces, at one size: `cooc train
# --postgres`, `psql \copy` to a file then `cooc train --orders`, and `cooc train --orders`
# on the CSV `cooc gen` writes (from the page cache). RUNS rounds, the three interleaved,
# `--threads 2`; prints each run's seconds and peak RSS, the medians, and whether the three
# models are identical (`cooc export`).
#   bench/postgres.sh URL DIR [RUNS]
# URL: a database loaded with `cooc gen --size S --postgres URL`; DIR: the same size written
# with `cooc gen --size S --out DIR`. Needs psql and GNU time; builds cooc (release) first.
set -euo pipefail
url=${1:?URL of a database loaded by cooc gen --postgres}
dir=${2:?DIR holding the same size from cooc gen --out}
runs=${3:-3}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin cooc
cooc=$PWD/target/release/cooc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
timed() { # NAME CMD...: appends "seconds kb" to $work/NAME
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null 2>"$work/err" || {
    cat "$work/err" >&2
    exit 1
  }
  cat "$work/t" >>"$work/$name"
}
for r in $(seq "$runs"); do
  timed postgres "$cooc" train --postgres "$url" --out "$work/pg.cooc" --threads 2
  timed csv "$cooc" train --orders "$dir/orders.csv" --out "$work/csv.cooc" --threads 2
  timed two-step bash -c 'psql "$1" -qc "\\copy orders TO '"'"'$2/dump.csv'"'"' (FORMAT csv, HEADER)" &&
    "$3" train --orders "$2/dump.csv" --out "$2/two.cooc" --threads 2' _ "$url" "$work" "$cooc"
  rm -f "$work/dump.csv"
  echo "round $r done" >&2
done
for name in postgres two-step csv; do
  python3 - "$name" "$work/$name" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[2])]
secs = [float(r[0]) for r in rows]
kb = [int(r[1]) for r in rows]
print(f"{sys.argv[1]:9} median {statistics.median(secs):.2f} s ({', '.join(f'{s:.2f}' for s in secs)}), "
      f"peak RSS median {statistics.median(kb) / 1024:.0f} MB")
PY
done
"$cooc" export "$work/pg.cooc" --format csv >"$work/pg.csv"
same=yes
for m in csv two; do
  "$cooc" export "$work/$m.cooc" --format csv >"$work/$m.csv"
  cmp -s "$work/pg.csv" "$work/$m.csv" || same=no
done
echo "models identical: $same ($(wc -l <"$work/pg.csv") exported lines)"
