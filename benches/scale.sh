#!/usr/bin/env bash
# Scale and memory on one node (BENCHMARKS.md targets 5 and 6):
#  - a pool of 10 000 licenses; borrow until about 100 000 borrows are active; time
#    ListLicensesV1 and measure its size;
#  - keep borrowing to about 1 000 000; RSS per stored borrow;
#  - kill -9 and restart: time until /readyz answers 200.
# Usage: benches/scale.sh [DIR]   (needs target/debug/{licensed,licensectl}; RSS via /proc)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
LICENSED=$TARGET/debug/licensed
LICENSECTL=$TARGET/debug/licensectl
DIR=${1:-$(mktemp -d -t licensed-scale.XXXXXX)}
PORT=${SCALE_PORT:-22122}
RAFT=${SCALE_RAFT_PORT:-22123}
URL=http://127.0.0.1:$PORT
mkdir -p "$DIR"

python3 - "$DIR/pool.json" <<'PY'
import json, sys
pool = [{"feature": "MVTec_HALCON", "uuid": f"lic{i:05d}", "version": "26.05",
         "edition": "Steady", "modules": "fc", "count": 200} for i in range(10_000)]
json.dump(pool, open(sys.argv[1], "w"))
PY

start() {
    RUST_LOG=warn "$LICENSED" --listen 127.0.0.1:$PORT --raft-listen 127.0.0.1:$RAFT \
        --data-dir "$DIR/data" --pool "$DIR/pool.json" >>"$DIR/node.log" 2>&1 &
    PID=$!
}
wait_ready() {
    local t0=$1
    until curl -fs "$URL/readyz" >/dev/null 2>&1; do sleep 0.05; done
    python3 -c "import time; print(f'{time.time() - $t0:.2f}')"
}
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
borrows() {
    curl -s "$URL/licenses" -d '{"jsonrpc":"2.0","method":"ListLicensesV1","id":1}' |
        python3 -c "import json,sys; r=json.load(sys.stdin)['result']; print(sum(len(l.get('borrowedIntervals',[])) for l in r))"
}
load_until() {
    local want=$1 have
    while :; do
        have=$(borrows)
        [[ $have -ge $want ]] && { echo "$have"; return; }
        "$LICENSECTL" bench --url "$URL" --op borrow --clients 64 --warmup 0s \
            --duration "$2" --json >"$DIR/bench-$want-$have.json"
    done
}

t0=$(date +%s.%N); start; echo "first start to ready: $(wait_ready "$t0") s"
rss0=$(rss_kib)
n=$(load_until 100000 10s)
echo "active borrows: $n"
for i in 1 2 3; do
    curl -s -o /dev/null -w "ListLicensesV1 ($n borrows, 10000 licenses): %{time_total} s, %{size_download} bytes\n" \
        "$URL/licenses" -d '{"jsonrpc":"2.0","method":"ListLicensesV1","id":1}'
done
n=$(load_until 1000000 60s)
rss=$(rss_kib)
echo "active borrows: $n; RSS $((rss / 1024)) MiB (empty: $((rss0 / 1024)) MiB); $(( (rss - rss0) * 1024 / n )) B per borrow"
echo "data dir: $(du -sh "$DIR/data" | cut -f1)"
for i in 1 2 3; do
    kill -9 $PID; wait $PID 2>/dev/null || true
    t0=$(date +%s.%N); start; echo "restart (kill -9) to ready with $n borrows: $(wait_ready "$t0") s"
done
echo "RSS after restart: $(( $(rss_kib) / 1024 )) MiB"
kill $PID
echo "dir: $DIR"
