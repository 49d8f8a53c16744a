#!/usr/bin/env bash
# Measures the baseline relays as RESULTS.md reports them: server pinned to core 0, loader to core 1,
# 1,000 connections (500 rooms), a fresh server process for each run.
#
#   bash bench/run_baselines.sh              # both relays, both modes
#   bash bench/run_baselines.sh node paced   # one relay (python | node), one mode (burst | paced)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-.venv/bin/python}
PORT=${PORT:-8001}
ROOMS=${ROOMS:-500}
BURST_ROUNDS=${BURST_ROUNDS:-60}
PACED_SECONDS=${PACED_SECONDS:-30}
server_pid=""

stop_server() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap stop_server EXIT

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

start_server() {  # relay name: python | node
    if port_open; then
        echo "port $PORT is already in use" >&2
        exit 1
    fi
    case "$1" in
        python) taskset -c 0 "$PYTHON" baseline_relay.py --port "$PORT" >/dev/null & ;;
        node) taskset -c 0 node node-relay/node_relay.js --port "$PORT" >/dev/null & ;;
    esac
    server_pid=$!
    for _ in $(seq 50); do  # up to 5 s for the port to open
        if port_open; then return 0; fi
        sleep 0.1
    done
    echo "the $1 relay did not start listening on port $PORT" >&2
    exit 1
}

load() {  # extra signal_load.py arguments
    taskset -c 1 "$PYTHON" signal_load.py --plain --url "ws://127.0.0.1:$PORT" --rooms "$ROOMS" \
        --server-pid "$server_pid" "$@"
}

relays=(python node)
modes=(burst paced)
if [[ $# -ge 1 ]]; then relays=("$1"); fi
if [[ $# -ge 2 ]]; then modes=("$2"); fi

for relay in "${relays[@]}"; do
    for mode in "${modes[@]}"; do
        echo "== $relay relay, $mode"
        start_server "$relay"
        if [[ $mode == burst ]]; then
            load --mode burst --rounds "$BURST_ROUNDS"
        else
            load --mode paced --interval 1 --rounds 1000 --duration "$PACED_SECONDS"
        fi
        stop_server
        echo
    done
done
