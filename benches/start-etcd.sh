#!/usr/bin/env bash
# Starts a 3-member etcd 3.4 cluster on loopback, the counterpart of a 3-node licensed
# cluster for `cargo bench --bench compare`.
#
#   benches/start-etcd.sh [DIR]        start; DIR gets the data dirs, logs and pid files
#                                      (default: a new temporary directory)
#   benches/start-etcd.sh stop [DIR]   stop the members started in DIR
#                                      (default: the directory of the last start)
#
# Environment:
#   ETCD               etcd binary (default: etcd on PATH; Debian package etcd-server)
#   ETCD_CLIENT_PORTS  three client ports (default: "2379 22379 32379")
#   ETCD_PEER_PORTS    three peer ports (default: "2380 22380 32380")
#   ETCD_WAIT_SECS     how long to wait for a healthy cluster (default: 30)
#
# Prints the client URLs (comma-separated, for --etcd) and the member PIDs.
set -euo pipefail

ETCD=${ETCD:-etcd}
read -r -a CLIENT_PORTS <<<"${ETCD_CLIENT_PORTS:-2379 22379 32379}"
read -r -a PEER_PORTS <<<"${ETCD_PEER_PORTS:-2380 22380 32380}"
WAIT_SECS=${ETCD_WAIT_SECS:-30}
HOST=127.0.0.1
# Remembers the directory of the last start, so that `stop` needs no argument.
LAST_DIR_FILE="${TMPDIR:-/tmp}/licensed-bench-etcd.last"

die() {
    echo "start-etcd: $*" >&2
    exit 1
}

stop_cluster() {
    local dir=${1:-}
    if [[ -z "$dir" ]]; then
        [[ -f "$LAST_DIR_FILE" ]] || die "no directory given and no earlier start recorded"
        dir=$(cat "$LAST_DIR_FILE")
    fi
    local stopped=0 pidfile pid
    for pidfile in "$dir"/etcd*.pid; do
        [[ -f "$pidfile" ]] || continue
        pid=$(cat "$pidfile")
        # Only a pid that still runs etcd: the number may have been reused since.
        if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q etcd; then
            kill "$pid"
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            stopped=$((stopped + 1))
        fi
        rm -f "$pidfile"
    done
    echo "stopped $stopped etcd member(s) of $dir"
}

if [[ "${1:-}" == "stop" ]]; then
    stop_cluster "${2:-}"
    exit 0
fi

command -v "$ETCD" >/dev/null || die "$ETCD not found (Debian: apt-get install etcd-server)"
command -v curl >/dev/null || die "curl not found"
[[ ${#CLIENT_PORTS[@]} -eq 3 && ${#PEER_PORTS[@]} -eq 3 ]] || die "give three client and three peer ports"

DIR=${1:-$(mktemp -d -t licensed-bench-etcd.XXXXXX)}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
for i in 0 1 2; do
    [[ ! -f "$DIR/etcd$((i + 1)).pid" ]] || die "$DIR already has a running cluster: stop it first"
done

cluster=""
for i in 0 1 2; do
    cluster+="${cluster:+,}etcd$((i + 1))=http://$HOST:${PEER_PORTS[$i]}"
done
token="licensed-bench-$$-$(date +%s)"

pids=()
for i in 0 1 2; do
    name="etcd$((i + 1))"
    client="http://$HOST:${CLIENT_PORTS[$i]}"
    peer="http://$HOST:${PEER_PORTS[$i]}"
    "$ETCD" \
        --name "$name" \
        --data-dir "$DIR/$name.data" \
        --listen-client-urls "$client" \
        --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" \
        --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$cluster" \
        --initial-cluster-state new \
        --initial-cluster-token "$token" \
        --logger zap \
        >"$DIR/$name.log" 2>&1 &
    pids+=($!)
    echo $! >"$DIR/$name.pid"
done
echo "$DIR" >"$LAST_DIR_FILE"

# Healthy means every member answers and agrees there is a leader.
deadline=$((SECONDS + WAIT_SECS))
for i in 0 1 2; do
    url="http://$HOST:${CLIENT_PORTS[$i]}/health"
    until curl -s --max-time 2 "$url" | grep -q '"health":"true"'; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            tail -n 20 "$DIR/etcd$((i + 1)).log" >&2 || true
            stop_cluster "$DIR" >&2
            die "etcd$((i + 1)) exited; its log is $DIR/etcd$((i + 1)).log"
        fi
        if ((SECONDS >= deadline)); then
            stop_cluster "$DIR" >&2
            die "no healthy cluster after ${WAIT_SECS}s; logs are in $DIR"
        fi
        sleep 0.2
    done
done

urls=""
for i in 0 1 2; do
    urls+="${urls:+,}http://$HOST:${CLIENT_PORTS[$i]}"
done
echo "etcd cluster healthy in $DIR"
echo "client URLs: $urls"
echo "PIDs: ${pids[*]}"
echo "stop with: $0 stop $DIR"
