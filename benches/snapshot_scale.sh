#!/usr/bin/env bash
# A follower caught up by a large snapshot while the cluster is under load (DESIGN.md,
# "Snapshots at scale"):
#  - start a 3-node cluster with a small --snapshot-every; borrow until the ledger holds
#    about $BORROWS borrows;
#  - stop one follower and keep borrowing until the leader's log is compacted past it, so
#    that only a snapshot can catch it up;
#  - restart it while a borrow load runs; report the snapshot's size on disk, the
#    follower's transfer and install times (from its log), its peak RSS (VmHWM) and the
#    leader's term before and after (unchanged = no election).
# Usage: benches/snapshot_scale.sh [DIR]   (needs target/debug/{licensed,licensectl})
# Environment: BORROWS (default 1000000), SNAPSHOT_EVERY (default 50000), CLIENTS (64),
#   LICENSED, LICENSECTL (binaries; copied into DIR so that a rebuild cannot interfere).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
BORROWS=${BORROWS:-1000000}
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-50000}
CLIENTS=${CLIENTS:-64}
DIR=${1:-$(mktemp -d -t licensed-snapscale.XXXXXX)}
API_PORTS=(22222 22232 22242)
RAFT_PORTS=(22223 22233 22243)
mkdir -p "$DIR/bin"
cp "${LICENSED:-$TARGET/debug/licensed}" "${LICENSECTL:-$TARGET/debug/licensectl}" "$DIR/bin/"
LICENSED=$DIR/bin/licensed
LICENSECTL=$DIR/bin/licensectl
echo "dir: $DIR"

cat >"$DIR/pool.json" <<'POOL'
[{"feature":"MVTec_HALCON","uuid":"bench","version":"26.05","edition":"Steady","modules":"fc","count":100000000}]
POOL
peers=""
for i in 0 1 2; do peers+="${peers:+,}$((i + 1))=127.0.0.1:${RAFT_PORTS[$i]}"; done

url() { echo "http://127.0.0.1:${API_PORTS[$(($1 - 1))]}"; }
pid_of() { cat "$DIR/node$1.pid"; }
start_node() {
    local id=$1
    RUST_LOG=warn,licensed::raft=info "$LICENSED" --node-id "$id" \
        --listen "127.0.0.1:${API_PORTS[$((id - 1))]}" \
        --raft-listen "127.0.0.1:${RAFT_PORTS[$((id - 1))]}" --data-dir "$DIR/node$id" \
        --pool "$DIR/pool.json" --peers "$peers" --snapshot-every "$SNAPSHOT_EVERY" \
        >>"$DIR/node$id.log" 2>&1 &
    echo $! >"$DIR/node$id.pid"
}
stop_all() {
    for id in 1 2 3; do
        [[ -f "$DIR/node$id.pid" ]] && kill "$(pid_of "$id")" 2>/dev/null || true
    done
    [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null || true
}
trap stop_all EXIT
# metric NODE NAME: a gauge from the node's /metrics (empty if the node does not answer).
metric() {
    curl -s --max-time 5 "$(url "$1")/metrics" | awk -v name="$2" '$1 == name {print $2}' || true
}
leader() {
    for id in 1 2 3; do
        [[ "$(metric "$id" licensed_raft_is_leader)" == 1 ]] && { echo "$id"; return; }
    done
    echo 0
}
newest_snapshot() { ls "$DIR/node$1/snapshots/"*.snap 2>/dev/null | sort | tail -1; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
borrow_load() { # borrow_load DURATION URL... (JSON summary on stdout)
    local duration=$1
    shift
    local urls=()
    for u in "$@"; do urls+=(--url "$u"); done
    "$LICENSECTL" bench "${urls[@]}" --op borrow --clients "$CLIENTS" --warmup 0s \
        --duration "$duration" --json
}

for id in 1 2 3; do start_node "$id"; done
for _ in $(seq 600); do
    [[ "$(leader)" != 0 ]] && break
    sleep 0.2
done
LEADER=$(leader)
[[ "$LEADER" != 0 ]] || { echo "no leader; logs in $DIR" >&2; exit 1; }
echo "leader: node $LEADER"

t0=$(now)
while :; do
    have=$(metric "$LEADER" licensed_borrows_retained)
    have=${have%.*}
    echo "  $(elapsed "$t0") s: ${have:-?} borrows"
    [[ -n "$have" && "$have" -ge "$BORROWS" ]] && break
    borrow_load 30s "$(url "$LEADER")" >"$DIR/fill-$(date +%s).json"
done
echo "filled: $have borrows in $(elapsed "$t0") s"

FOLLOWER=$(( LEADER % 3 + 1 ))
follower_last=$(metric "$FOLLOWER" licensed_raft_last_log_index)
follower_last=${follower_last%.*}
kill "$(pid_of "$FOLLOWER")"
while kill -0 "$(pid_of "$FOLLOWER")" 2>/dev/null; do sleep 0.1; done
echo "stopped follower node $FOLLOWER at log index $follower_last"

# The leader keeps SNAPSHOT_EVERY entries of log behind its snapshot: go on until even
# that lies past the stopped follower.
OTHER=$(( FOLLOWER % 3 + 1 ))
while :; do
    snap=$(newest_snapshot "$LEADER")
    snap_index=$(basename "$snap" | cut -d- -f1 | sed 's/^0*//')
    echo "  leader snapshot at ${snap_index:-0}; needs > $((follower_last + SNAPSHOT_EVERY))"
    [[ -n "$snap_index" && "$snap_index" -gt $((follower_last + SNAPSHOT_EVERY)) ]] && break
    borrow_load 20s "$(url "$LEADER")" "$(url "$OTHER")" >"$DIR/gap-$(date +%s).json"
done

term_before=$(metric "$LEADER" licensed_raft_term)
borrows_before=$(metric "$LEADER" licensed_borrows_retained)
rm -f "$DIR/stop"
(
    while [[ ! -f "$DIR/stop" ]]; do
        borrow_load 10s "$(url "$LEADER")" "$(url "$OTHER")" >>"$DIR/during.jsonl" || true
    done
) &
LOAD_PID=$!
sleep 3
restart=$(now)
start_node "$FOLLOWER"
FPID=$(pid_of "$FOLLOWER")
until grep -q "snapshot installed" "$DIR/node$FOLLOWER.log"; do
    kill -0 "$FPID" 2>/dev/null || { echo "follower died; see $DIR/node$FOLLOWER.log" >&2; exit 1; }
    [[ $(elapsed "$restart" | cut -d. -f1) -lt 900 ]] || { echo "no install in 900 s" >&2; exit 1; }
    sleep 0.5
done
installed_after=$(elapsed "$restart")
# Let the follower catch up on the log after the snapshot, still under load.
sleep 15
touch "$DIR/stop"
wait "$LOAD_PID" 2>/dev/null || true
LOAD_PID=
term_after=$(metric "$LEADER" licensed_raft_term)
leader_after=$(leader)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$FPID/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$FPID/status")

echo
echo "== results =="
echo "borrows in the ledger when the follower restarted: ${borrows_before%.*}"
echo "leader snapshot: $(basename "$snap"), $(stat -c %s "$snap") bytes on disk"
fsnap=$(newest_snapshot "$FOLLOWER")
echo "follower snapshot: $(basename "$fsnap"), $(stat -c %s "$fsnap") bytes on disk"
python3 - "$DIR/node$FOLLOWER.log" <<'PY'
import re, sys
from datetime import datetime
def when(line):
    m = re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+", line)
    return datetime.fromisoformat(m.group(0)[:26]) if m else None
marks = {}
for line in open(sys.argv[1], errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    for key in ("receiving a snapshot", "snapshot received", "snapshot installed"):
        if key in line and key not in marks:
            marks[key] = (when(line), line.strip())
for key, (t, line) in marks.items():
    print(f"follower log: {line}")
a, b, c = (marks.get(k, (None,))[0] for k in ("receiving a snapshot", "snapshot received", "snapshot installed"))
if a and b and c:
    print(f"transfer (first chunk to last): {(b - a).total_seconds():.2f} s; "
          f"install (fsync, decode, swap): {(c - b).total_seconds():.2f} s")
PY
echo "follower restart to snapshot installed: $installed_after s"
echo "follower peak RSS (VmHWM): $((hwm / 1024)) MiB; RSS now $((rss / 1024)) MiB"
echo "leader: node $LEADER before, node $leader_after after; term $term_before before, $term_after after"
python3 - "$DIR/during.jsonl" <<'PY'
import json, sys
text, runs, at = open(sys.argv[1]).read(), [], 0
decoder = json.JSONDecoder()
while True:
    while at < len(text) and text[at].isspace():
        at += 1
    if at >= len(text):
        break
    run, at = decoder.raw_decode(text, at)
    runs.append(run)
print("borrow load during the catch-up, 10 s runs (ops/s, errors, p99 ms, max ms):")
for run in runs:
    lat = run.get("latency_ms", {})
    print(f"  {run.get('throughput')}, {run.get('errors')}, {lat.get('p99')}, {lat.get('max')}")
PY
if [[ "$term_before" == "$term_after" && "$leader_after" == "$LEADER" ]]; then
    echo "no election"
else
    echo "ELECTION: term or leader changed"
fi
