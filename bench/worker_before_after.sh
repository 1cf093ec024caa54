#!/usr/bin/env bash
# raftq bench's claim+ack figures with the real worker (raftq.worker.Worker), before and after a
# change to it, back to back and alternating, on fresh clusters: the code of commit BEFORE
# against the code of HEAD (both exported with git archive, so the working tree may change
# meanwhile), plus HEAD's hand-written loop (--worker loop). Run it under the bench lock:
#   flock /tmp/bench.lock bench/worker_before_after.sh BEFORE [REPEATS] [extra raftq bench args]
# JSON results go to bench/results/worker-ab/{before,after,loop}-<i>.json.
set -euo pipefail
before_rev=${1:?usage: worker_before_after.sh BEFORE_COMMIT [REPEATS] [bench args...]}
repeats=${2:-3}
shift $(( $# >= 2 ? 2 : 1 ))
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv/bin/python"
out="$root/bench/results/worker-ab"
old=$(mktemp -d /tmp/raftq-worker-before.XXXXXX)
new=$(mktemp -d /tmp/raftq-worker-after.XXXXXX)
trap 'rm -rf "$old" "$new"' EXIT
mkdir -p "$out"
git -C "$root" archive "$before_rev" | tar -x -C "$old"
git -C "$root" archive HEAD | tar -x -C "$new"
echo "before: $(git -C "$root" rev-parse --short "$before_rev"), after: $(git -C "$root" rev-parse --short HEAD)"
for i in $(seq 1 "$repeats"); do
  # The lock is held by the caller: the runs must not take it again.
  (cd "$old" && PYTHONPATH="$old" "$py" -m raftq bench --no-lock --worker raftq \
     --json "$out/before-$i.json" "$@" >"$out/before-$i.txt")
  (cd "$new" && PYTHONPATH="$new" "$py" -m raftq bench --no-lock --worker raftq \
     --json "$out/after-$i.json" "$@" >"$out/after-$i.txt")
  (cd "$new" && PYTHONPATH="$new" "$py" -m raftq bench --no-lock --worker loop \
     --json "$out/loop-$i.json" "$@" >"$out/loop-$i.txt")
done
"$py" - "$out" "$repeats" <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
keys = ("process_per_s", "mixed_per_s", "enqueue_per_s", "paced_p50_ms", "paced_p99_ms")
for kind in ("before", "after", "loop"):
    rs = [json.load(open(f"{out}/{kind}-{i}.json")) for i in range(1, n + 1)]
    cols = []
    for k in keys:
        vals = [r[k] for r in rs]
        cols.append(f"{k} {statistics.median(vals):,.1f} ({' '.join(f'{v:,.0f}' for v in vals)})")
    elections = [r["elections"] for r in rs]
    print(f"{kind:<7} " + "; ".join(cols) + f"; elections {elections}")
PY
