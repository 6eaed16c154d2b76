#!/usr/bin/env bash
# CPU time per operation summed over a running cluster's nodes: the figure that decides
# throughput when clients and nodes share the cores. Reads each node's utime + stime from
# /proc before and after one `licensectl bench` run, divides by the operations done.
#
#   benches/cpu-per-op.sh DIR [OP] [CLIENTS] [DURATION]     (defaults: borrow 64 10s)
#
# DIR is a directory of benches/start-licensed.sh (its node*.pid files). With
# PERF_OUT=FILE the run is also recorded by `perf record -g` on the three nodes
# (`perf report -i FILE --no-children --sort dso,sym`).
#
# Environment: LICENSECTL (default: $CARGO_TARGET_DIR/debug/licensectl), URLS (default:
# the three nodes of start-licensed.sh), WARMUP (default 2s).
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=${1:?usage: benches/cpu-per-op.sh DIR [OP] [CLIENTS] [DURATION]}
OP=${2:-borrow}
CLIENTS=${3:-64}
DURATION=${4:-10s}
TARGET=${CARGO_TARGET_DIR:-target}
LICENSECTL=${LICENSECTL:-$TARGET/debug/licensectl}
URLS=${URLS:-http://127.0.0.1:22022,http://127.0.0.1:22032,http://127.0.0.1:22042}
WARMUP=${WARMUP:-2s}
TICKS=$(getconf CLK_TCK)
URL_ARGS=()
IFS=, read -r -a url_list <<<"$URLS"
for url in "${url_list[@]}"; do URL_ARGS+=(--url "$url"); done

mapfile -t PIDS < <(cat "$DIR"/node*.pid)
[[ ${#PIDS[@]} -gt 0 ]] || { echo "cpu-per-op: no node*.pid in $DIR" >&2; exit 1; }

# utime + stime of a process, in clock ticks (fields 14 and 15; the name in field 2 is
# parenthesised and has no spaces here).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The warm-up runs first, unmeasured, so the counters cover only the measured run.
"$LICENSECTL" bench "${URL_ARGS[@]}" --op "$OP" --clients "$CLIENTS" --duration "$WARMUP" --json >/dev/null
declare -a BEFORE
for i in "${!PIDS[@]}"; do BEFORE[$i]=$(cpu_ticks "${PIDS[$i]}"); done
if [[ -n "${PERF_OUT:-}" ]]; then
    pids=$(IFS=,; echo "${PIDS[*]}")
    perf record -F 999 -g -p "$pids" -o "$PERF_OUT" 2>/dev/null &
    PERF_PID=$!
    sleep 0.5
fi
REPORT=$("$LICENSECTL" bench "${URL_ARGS[@]}" --op "$OP" --clients "$CLIENTS" --duration "$DURATION" --warmup 0s --json)
if [[ -n "${PERF_OUT:-}" ]]; then
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
fi
declare -a AFTER
for i in "${!PIDS[@]}"; do AFTER[$i]=$(cpu_ticks "${PIDS[$i]}"); done

ops=$(python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["ok"] if "ok" in r else r["completed"])' <<<"$REPORT")
throughput=$(python3 -c 'import json,sys; print(round(json.load(sys.stdin)["throughput"], 1))' <<<"$REPORT")
p99=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["latency_ms"]["p99"])' <<<"$REPORT")
total=0
line=""
for i in "${!PIDS[@]}"; do
    ticks=$((AFTER[i] - BEFORE[i]))
    total=$((total + ticks))
    line+=" node$((i + 1)) $(python3 -c "print(round($ticks * 1e6 / $TICKS / max($ops, 1)))") µs"
done
per_op=$(python3 -c "print(round($total * 1e6 / $TICKS / max($ops, 1)))")
echo "$OP, $CLIENTS clients, $DURATION: $ops ok, $throughput ops/s, p99 $p99 ms; CPU per op over the cluster: $per_op µs ($line )"
