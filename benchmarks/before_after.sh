#!/usr/bin/env bash
# Before/after tables on one machine: each benchmark run with this checkout, then with
# the same script against another revision's samebits (a worktree, its own kernel cache).
#   bash benchmarks/before_after.sh REV [bench_ops bench_models ...]   (default: ops, overhead, models)
# Output: /tmp/samebits-bench/<bench>.{after,before}.txt
set -euo pipefail
REV=${1:?usage: before_after.sh REV [bench_name ...]}
shift
BENCHES=${*:-bench_ops bench_overhead bench_models}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=$REPO/.venv/bin/python
OUT=/tmp/samebits-bench
OLD=$OUT/worktree-$REV
mkdir -p "$OUT"
[ -d "$OLD" ] || git -C "$REPO" worktree add --detach "$OLD" "$REV" >/dev/null
warm='import samebits, torch
with samebits.batch_invariant(): torch.exp(torch.ones(4))'
after() { (cd "$REPO" && $PY "$@"); }
before() { (cd "$OLD" && PYTHONPATH=$OLD SAMEBITS_CACHE=$OUT/cache-$REV $PY "$@"); }
after -c "$warm"   # builds each library and the op plan before any timing
before -c "$warm"
for b in $BENCHES; do
    echo "$(date +%T) $b (this checkout)"
    after "$REPO/benchmarks/$b.py" >"$OUT/$b.after.txt" 2>&1
    echo "$(date +%T) $b ($REV)"
    before "$REPO/benchmarks/$b.py" >"$OUT/$b.before.txt" 2>&1
done
echo "tables in $OUT"
