#!/usr/bin/env bash
# What one Prometheus scrape of /metrics costs on a node holding LICENSES licenses
# (default 10 000; a pool of more than 1 000 gets per-feature series only, up to 1 000
# per-license ones too): starts one node, borrows a seat of up to 2 000 licenses, then
# times 50 scrapes.
#
#   [LICENSES=N] benches/scrape-cost.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
LICENSED=${LICENSED:-$TARGET/debug/licensed}
DIR=${1:-$(mktemp -d -t licensed-scrape-cost.XXXXXX)}
export LICENSES=${LICENSES:-10000}
mkdir -p "$DIR"
python3 - "$DIR/pool.json" <<'PY'
import json, os, sys
features = ["MVTec_HALCON", "MVTec_HDevelop"]
pool = [{"feature": features[i % 2], "uuid": f"lic{i:05d}", "version": "26.05",
         "edition": "Steady", "modules": "fc", "count": 5} for i in range(int(os.environ["LICENSES"]))]
json.dump(pool, open(sys.argv[1], "w"))
PY
"$LICENSED" --listen 127.0.0.1:22052 --raft-listen 127.0.0.1:22053 --data-dir "$DIR/data" \
    --pool "$DIR/pool.json" >"$DIR/node.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do curl -fs http://127.0.0.1:22052/readyz >/dev/null 2>&1 && break; sleep 0.1; done
python3 - <<'PY'
import json, os, urllib.request
features = ["MVTec_HALCON", "MVTec_HDevelop"]
batch = [{"jsonrpc": "2.0", "id": i, "method": "BorrowLicenseV1",
          "params": {"feature": features[i % 2], "uuid": f"lic{i:05d}",
                     "hostId": f"MAC:0A{i:010X}", "validFrom": "2030-01-01T00:00:00Z",
                     "validUntil": "2030-01-02T00:00:00Z"}} for i in range(min(2_000, int(os.environ["LICENSES"])))]
for start in range(0, len(batch), 500):
    body = json.dumps(batch[start:start + 500]).encode()
    req = urllib.request.Request("http://127.0.0.1:22052/licenses", body,
                                 {"Content-Type": "application/json"})
    answers = json.load(urllib.request.urlopen(req, timeout=60))
    assert all("result" in a for a in answers), answers[:3]
PY
for _ in $(seq 50); do
    curl -s -o /dev/null -w "%{time_total} %{size_download}\n" http://127.0.0.1:22052/metrics
done | python3 -c '
import sys, statistics
rows = [line.split() for line in sys.stdin]
times = sorted(float(t) * 1000 for t, _ in rows)
size = int(rows[-1][1])
import os
n = os.environ["LICENSES"]
print(f"/metrics at {n} licenses: {len(times)} scrapes, p50 {statistics.median(times):.1f} ms, "
      f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, max {times[-1]:.1f} ms, {size} bytes")
'
grep -c "^licensed_license_seats{" <(curl -s http://127.0.0.1:22052/metrics) | sed 's/^/licensed_license_seats series: /'
