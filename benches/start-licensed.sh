#!/usr/bin/env bash
# Starts a 3-node licensed cluster on loopback for `cargo bench --bench compare`, the
# counterpart of benches/start-etcd.sh.
#
#   benches/start-licensed.sh [DIR]        start; DIR gets the data dirs, logs, pid files
#                                          (default: a new temporary directory)
#   benches/start-licensed.sh stop [DIR]   stop the nodes started in DIR
#
# Environment:
#   LICENSED   the licensed binary (default: target/debug/licensed, or $CARGO_TARGET_DIR/debug/licensed)
#   LICENSED_EXTRA_ARGS   extra flags for every node (e.g. election timeouts)
#
# The nodes authenticate each other with a cluster secret (HMAC on every peer request),
# as a production cluster without peer certificates does, so its cost is measured.
# The pool has one license with a huge count (borrows never conflict) and one with 5
# seats. Prints the client URLs (comma-separated, for --licensed) and the node PIDs.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
LICENSED=${LICENSED:-$TARGET/debug/licensed}
LAST_DIR_FILE="${TMPDIR:-/tmp}/licensed-bench-licensed.last"
API_PORTS=(22022 22032 22042)
RAFT_PORTS=(22023 22033 22043)

stop_cluster() {
    local dir=${1:-}
    if [[ -z "$dir" ]]; then
        [[ -f "$LAST_DIR_FILE" ]] || { echo "start-licensed: no directory given" >&2; exit 1; }
        dir=$(cat "$LAST_DIR_FILE")
    fi
    for pidfile in "$dir"/node*.pid; do
        [[ -f "$pidfile" ]] || continue
        pid=$(cat "$pidfile")
        if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q licensed; then
            kill "$pid" || true
            # Wait for it to let go of its ports, so a cluster started next can bind them.
            for _ in $(seq 100); do [[ -e "/proc/$pid" ]] || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
}

if [[ "${1:-}" == "stop" ]]; then
    stop_cluster "${2:-}"
    exit 0
fi

[[ -x "$LICENSED" ]] || { echo "start-licensed: no binary at $LICENSED (cargo build --bin licensed)" >&2; exit 1; }
DIR=${1:-$(mktemp -d -t licensed-bench.XXXXXX)}
mkdir -p "$DIR"
echo "$DIR" >"$LAST_DIR_FILE"
cat >"$DIR/pool.json" <<'POOL'
[{"feature":"MVTec_HALCON","uuid":"bench","version":"26.05","edition":"Steady","modules":"fc","count":100000000},
 {"feature":"MVTec_HDevelop","uuid":"five","version":"26.05","edition":"Progress","modules":"f","count":5}]
POOL
[[ -s "$DIR/cluster.secret" ]] || od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$DIR/cluster.secret"
peers=""
for i in 0 1 2; do peers+="${peers:+,}$((i + 1))=127.0.0.1:${RAFT_PORTS[$i]}"; done
for i in 0 1 2; do
    id=$((i + 1))
    # shellcheck disable=SC2086
    RUST_LOG=warn "$LICENSED" --node-id "$id" --listen "127.0.0.1:${API_PORTS[$i]}" \
        --raft-listen "127.0.0.1:${RAFT_PORTS[$i]}" --data-dir "$DIR/node$id" \
        --pool "$DIR/pool.json" --peers "$peers" --cluster-secret-file "$DIR/cluster.secret" \
        ${LICENSED_EXTRA_ARGS:-} \
        >"$DIR/node$id.log" 2>&1 &
    echo $! >"$DIR/node$id.pid"
done
for _ in $(seq 600); do
    ready=0
    for i in 0 1 2; do
        curl -fs "http://127.0.0.1:${API_PORTS[$i]}/readyz" >/dev/null 2>&1 && ready=$((ready + 1))
    done
    [[ $ready -eq 3 ]] && break
    sleep 0.1
done
[[ $ready -eq 3 ]] || { echo "start-licensed: not ready; logs in $DIR" >&2; stop_cluster "$DIR"; exit 1; }
echo "http://127.0.0.1:${API_PORTS[0]},http://127.0.0.1:${API_PORTS[1]},http://127.0.0.1:${API_PORTS[2]}"
echo "pids: $(cat "$DIR"/node*.pid | tr '\n' ' ')"
echo "dir: $DIR"
