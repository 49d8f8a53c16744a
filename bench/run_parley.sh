#!/usr/bin/env bash
# Measure Parley's signaling the way docs/performance.md reports it: daphne with production settings on core 0,
# the load generator on core 1, PostgreSQL and Redis on this machine.
#   bash bench/run_parley.sh [burst|paced|cross|all]
#   SERVER=uvicorn bash bench/run_parley.sh ...    # the optional uvicorn server instead of daphne
# Needs the project's .venv with bench/requirements.txt installed, and PostgreSQL and Redis answering.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
PY=.venv/bin/python

export DJANGO_DEBUG=false DJANGO_SECRET_KEY="bench-only-$(head -c 24 /dev/urandom | base64)" \
       DJANGO_ALLOWED_HOSTS=127.0.0.1 DJANGO_SECURE_SSL_REDIRECT=false DJANGO_LOG_LEVEL=WARNING \
       REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/6}" \
       DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/parley_bench}"

psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS parley_bench" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE parley_bench" >/dev/null
$PY manage.py migrate --noinput -v0
redis-cli -u "$REDIS_URL" flushdb >/dev/null

servers=()
start_server() {  # port
  if [[ ${SERVER:-daphne} == uvicorn ]]; then
    taskset -c 0 .venv/bin/uvicorn config.asgi:application --host 127.0.0.1 --port "$1" --loop uvloop \
      --http httptools --ws websockets-sansio --no-access-log >"/tmp/parley-bench-$1.log" 2>&1 &
  else
    taskset -c 0 .venv/bin/daphne -b 127.0.0.1 -p "$1" config.asgi:application >"/tmp/parley-bench-$1.log" 2>&1 &
  fi
  servers+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done
  echo "daphne on port $1 did not start" >&2; exit 2
}
stop_servers() { for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; servers=(); }
trap stop_servers EXIT

load() { echo "\$ taskset -c 1 $PY bench/signal_load.py --django $*"; taskset -c 1 $PY bench/signal_load.py --django "$@"; }

if [[ $mode == burst || $mode == all ]]; then
  start_server 8100
  load --url ws://127.0.0.1:8100 --rooms 500 --rounds 60 --server-pid "${servers[0]}"
  stop_servers
fi
if [[ $mode == paced || $mode == all ]]; then
  start_server 8100
  load --url ws://127.0.0.1:8100 --rooms 500 --mode paced --interval 1 --rounds 1000 --duration 30 \
       --server-pid "${servers[0]}"
  stop_servers
fi
if [[ $mode == cross || $mode == all ]]; then
  start_server 8100
  start_server 8101
  load --url ws://127.0.0.1:8100 --url ws://127.0.0.1:8101 --rooms 500 --mode paced --interval 1 --rounds 1000 \
       --duration 30 --server-pid "${servers[0]}" --server-pid "${servers[1]}"
  stop_servers
fi
