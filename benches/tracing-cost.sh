#!/usr/bin/env bash
# Borrow throughput at 64 clients on a fresh 3-node cluster, three ways: span export off,
# export on (every request traced, to benches/otlp-sink.py), and export on with 1 %
# sampling. Prints one line per run: mode, ops/s, p50, p99 (licensectl bench --json).
#
#   [MODES=off,every,ratio] benches/tracing-cost.sh [RUNS] [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
LICENSECTL=${LICENSECTL:-$TARGET/debug/licensectl}
RUNS=${1:-3}
DURATION=${2:-10s}
SINK_PORT=43180
OUT=$(mktemp -d -t licensed-tracing-cost.XXXXXX)

# The stopped nodes take a moment to exit and free their ports.
wait_ports_free() {
    for _ in $(seq 100); do
        ss -ltn | grep -qE ':2202[23] |:2203[23] |:2204[23] ' || return 0
        sleep 0.1
    done
}

run_mode() {
    local mode=$1
    shift
    local sink_pid=""
    if [[ $mode != off ]]; then
        python3 benches/otlp-sink.py "$SINK_PORT" >"$OUT/sink-$mode.log" 2>&1 &
        sink_pid=$!
    fi
    for run in $(seq "$RUNS"); do
        wait_ports_free
        env "$@" benches/start-licensed.sh "$OUT/$mode-$run" >/dev/null
        "$LICENSECTL" bench --url http://127.0.0.1:22022 --url http://127.0.0.1:22032 \
            --url http://127.0.0.1:22042 --op borrow --clients 64 --duration "$DURATION" \
            --warmup 2s --json >"$OUT/$mode-$run.json"
        benches/start-licensed.sh stop "$OUT/$mode-$run"
        wait_ports_free
        python3 - "$mode" "$OUT/$mode-$run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
lat = r.get("latency_ms") or r.get("latency") or {}
print(f"{sys.argv[1]:>12}  {r['throughput']:>9.0f} ops/s  errors {r['errors']}  "
      f"p50 {lat.get('p50', float('nan')):.2f} ms  p99 {lat.get('p99', float('nan')):.2f} ms")
PY
    done
    if [[ -n $sink_pid ]]; then
        kill "$sink_pid"
        wait "$sink_pid" 2>/dev/null || true
        cat "$OUT/sink-$mode.log"
    fi
}

wants() { [[ ${MODES:-all} == all || ${MODES:-all} == *$1* ]]; }
if wants off; then run_mode off OTEL_SDK_DISABLED=true; fi
if wants every; then run_mode every OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT; fi
if wants ratio; then
    run_mode ratio-1% OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK_PORT \
        OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.01
fi
echo "outputs in $OUT"
