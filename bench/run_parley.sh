#!/usr/bin/env bash
# Measure Parley's signaling the way docs/performance.md reports it: daphne with production settings on core 0,
# the load generator on core 1, PostgreSQL and Redis on this machine.
#   bash bench/run_parley.sh [burst|paced|cross|all] [ROOMS]  # ROOMS pairs (default 500: 1,000 sockets)
#   bash bench/run_parley.sh joins [N]             # N sockets join at once (default 1000 and 4000)
#   bash bench/run_parley.sh storm [N]             # N peers in calls (default 4000), the server restarted
#   SERVER=uvicorn bash bench/run_parley.sh ...    # the optional uvicorn server instead of daphne
#   PYSPY=1 bash bench/run_parley.sh joins 4000    # also py-spy --idle on the server, to /tmp/parley-bench-pyspy-*
#   CONCURRENCY=1000 bash bench/run_parley.sh joins  # handshakes in flight (default 100)
# Needs the project's .venv with bench/requirements.txt installed, and PostgreSQL and Redis answering.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
count="${2:-}"
PY=.venv/bin/python
# 4,000 sockets (and the server's database and Redis connections) need more than the usual 1024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

export DJANGO_DEBUG=false DJANGO_SECRET_KEY="bench-only-$(head -c 24 /dev/urandom | base64)" \
       DJANGO_ALLOWED_HOSTS=127.0.0.1 DJANGO_SECURE_SSL_REDIRECT=false DJANGO_LOG_LEVEL=WARNING \
       REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/6}" \
       DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/parley_bench}"
database="${DATABASE_URL##*/}"

fresh_database() {  # every run starts from empty tables and an empty Redis db
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $database" >/dev/null
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $database" >/dev/null
  $PY manage.py migrate --noinput -v0
  redis-cli -u "$REDIS_URL" flushdb >/dev/null
}
fresh_database

servers=()
server_command() {  # port
  if [[ ${SERVER:-daphne} == uvicorn ]]; then
    echo "taskset -c 0 .venv/bin/uvicorn config.asgi:application --host 127.0.0.1 --port $1 --loop uvloop" \
         "--http httptools --ws websockets-sansio --no-access-log"
  else
    echo "taskset -c 0 .venv/bin/daphne -b 127.0.0.1 -p $1 config.asgi:application"
  fi
}
start_server() {  # port
  # shellcheck disable=SC2046  # the command is words on purpose
  $(server_command "$1") >"/tmp/parley-bench-$1.log" 2>&1 &
  servers+=($!)
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done
  echo "daphne on port $1 did not start" >&2; exit 2
}
stop_servers() { for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; servers=(); }
trap stop_servers EXIT

joins() {  # N
  echo "\$ taskset -c 1 $PY bench/join_load.py joins --url ws://127.0.0.1:8100 --peers $1" \
       "--concurrency ${CONCURRENCY:-100} --server-pid <server>"
  local spy=()
  if [[ -n ${PYSPY:-} ]]; then  # sample the server during the joins: what runs and what waits (--idle)
    .venv/bin/py-spy record --idle --threads --rate 200 --format raw -p "${servers[0]}" \
      -o "/tmp/parley-bench-pyspy-${SERVER:-daphne}-$1.txt" >/dev/null 2>&1 & spy=($!)
    sleep 1
  fi
  taskset -c 1 $PY bench/join_load.py joins --url ws://127.0.0.1:8100 --peers "$1" \
    --concurrency "${CONCURRENCY:-100}" --server-pid "${servers[0]}" || true
  if [[ ${#spy[@]} -gt 0 ]]; then kill -INT "${spy[0]}" 2>/dev/null || true; wait "${spy[0]}" 2>/dev/null || true; fi
}

load() { echo "\$ taskset -c 1 $PY bench/signal_load.py --django $*"; taskset -c 1 $PY bench/signal_load.py --django "$@"; }

if [[ $mode == burst || $mode == all ]]; then
  start_server 8100
  load --url ws://127.0.0.1:8100 --rooms "${count:-500}" --rounds 60 --server-pid "${servers[0]}"
  stop_servers
fi
if [[ $mode == paced || $mode == all ]]; then
  start_server 8100
  load --url ws://127.0.0.1:8100 --rooms "${count:-500}" --mode paced --interval 1 --rounds 1000 --duration 30 \
       --server-pid "${servers[0]}"
  stop_servers
fi
if [[ $mode == cross || $mode == all ]]; then
  start_server 8100
  start_server 8101
  load --url ws://127.0.0.1:8100 --url ws://127.0.0.1:8101 --rooms "${count:-500}" --mode paced --interval 1 --rounds 1000 \
       --duration 30 --server-pid "${servers[0]}" --server-pid "${servers[1]}"
  stop_servers
fi
if [[ $mode == joins ]]; then
  for n in ${count:-1000 4000}; do
    fresh_database
    start_server 8100
    joins "$n"
    stop_servers
  done
fi
if [[ $mode == storm ]]; then
  # The loader starts the server, restarts it (SIGTERM, then the same command on the same port) and stops it.
  fresh_database
  echo "\$ taskset -c 1 $PY bench/join_load.py storm --url ws://127.0.0.1:8100 --peers ${count:-4000}" \
       "--concurrency ${CONCURRENCY:-100} --server-cmd \"$(server_command 8100)\""
  taskset -c 1 $PY bench/join_load.py storm --url ws://127.0.0.1:8100 --peers "${count:-4000}" \
    --concurrency "${CONCURRENCY:-100}" --server-cmd "$(server_command 8100)" --server-log /tmp/parley-bench-8100.log
fi
