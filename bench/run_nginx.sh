#!/usr/bin/env bash
# Signaling through nginx with the shipped config (deploy/nginx/parley.conf, TLS, least_conn) in front of 1 and
# then 2 server processes started with the shipped unit's command line (deploy/systemd/parley@.service).
# Placement: every server process on core 0, nginx (one worker) and the load generator on core 1. This machine
# has two cores, so the two processes share one: the ratio shows what spreading a call's peers over processes
# costs through nginx, not what a second core adds (see docs/performance.md).
#   bash bench/run_nginx.sh [burst|paced|all]
# Needs the project's .venv (bench/requirements.txt), PostgreSQL, Redis, nginx and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"
PY=.venv/bin/python
NGINX="${NGINX:-/usr/sbin/nginx}"
work="$(mktemp -d /tmp/parley-nginx-bench.XXXXXX)"
HTTP_PORT="${HTTP_PORT:-8480}" HTTPS_PORT="${HTTPS_PORT:-8443}" FIRST_PORT="${FIRST_PORT:-8201}"

export DJANGO_DEBUG=false DJANGO_SECRET_KEY="bench-only-$(head -c 24 /dev/urandom | base64)" \
       DJANGO_ALLOWED_HOSTS=127.0.0.1 DJANGO_BEHIND_PROXY=true DJANGO_LOG_LEVEL=WARNING \
       REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/4}" \
       DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/parley_deploy_bench}"
db="${DATABASE_URL##*/}"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" >/dev/null
$PY manage.py migrate --noinput -v0

# A certificate for 127.0.0.1, trusted by the loader (Python's ssl reads SSL_CERT_FILE).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/privkey.pem" -out "$work/fullchain.pem" 2>/dev/null
export SSL_CERT_FILE="$work/fullchain.pem"

# The shipped unit's ExecStart, with this checkout's virtualenv and the port as instance name.
unit_command() {  # port
  sed -n '/^ExecStart=/,/[^\\]$/p' deploy/systemd/parley@.service | sed 's/^ExecStart=//; s/\\$//' | tr '\n' ' ' \
    | sed "s#/srv/parley/venv/bin/#.venv/bin/#g; s#%i#$1#g"
}

# The shipped site config with this machine's ports, certificate and upstream servers.
render_nginx() {  # ports...
  local servers=""
  for port in "$@"; do servers+="    server 127.0.0.1:$port max_fails=1 fail_timeout=5s;\n"; done
  sed -e "s#listen 80;#listen 127.0.0.1:$HTTP_PORT;#; /listen \[::\]/d" \
      -e "s#listen 443 ssl http2;#listen 127.0.0.1:$HTTPS_PORT ssl http2;#" \
      -e "s#/etc/letsencrypt/live/parley.example.com/fullchain.pem#$work/fullchain.pem#" \
      -e "s#/etc/letsencrypt/live/parley.example.com/privkey.pem#$work/privkey.pem#" \
      -e "/^    server 127.0.0.1:8002 /d" -e "s#^    server 127.0.0.1:8001 .*#$servers#" \
      deploy/nginx/parley.conf >"$work/parley.conf"
  cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 8192; }
worker_rlimit_nofile 16384;
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $work/client_body; proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
    include $work/parley.conf;
}
EOF
}

pids=()
stop_all() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
trap stop_all EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
              echo "nothing listens on $1" >&2; exit 2; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {  # processes mode
  local n="$1" load_mode="$2" ports=() server_args=()
  redis-cli -u "$REDIS_URL" flushdb >/dev/null
  for i in $(seq 0 $((n - 1))); do
    port=$((FIRST_PORT + i)); ports+=("$port")
    # shellcheck disable=SC2046
    taskset -c 0 $(unit_command "$port") >"$work/server-$port.log" 2>&1 &
    pids+=($!); server_args+=(--server-pid "$!")
  done
  for port in "${ports[@]}"; do wait_port "$port"; done
  render_nginx "${ports[@]}"
  taskset -c 1 "$NGINX" -p "$work" -c "$work/nginx.conf" -e "$work/error.log" -g "daemon off;" &
  pids+=($!); wait_port "$HTTPS_PORT"
  local worker; worker="$(pgrep -P "${pids[-1]}" | head -1)"
  local before; before="$(cpu_ticks "$worker")"
  local args=(--django --url "wss://127.0.0.1:$HTTPS_PORT" --rooms 500 "${server_args[@]}" --json)
  if [[ $load_mode == burst ]]; then args+=(--rounds 60); else args+=(--mode paced --interval 1 --rounds 1000 --duration 30); fi
  echo "\$ taskset -c 1 $PY bench/signal_load.py ${args[*]}   # $n process(es)" >&2
  taskset -c 1 $PY bench/signal_load.py "${args[@]}" >"$work/result-$n-$load_mode.json"
  local after; after="$(cpu_ticks "$worker")"
  $PY - "$work/result-$n-$load_mode.json" "$((after - before))" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])
nginx_us = 1e6 * int(sys.argv[2]) / int(sys.argv[3]) / max(s["frames_relayed"], 1)
servers = sum(x["cpu_us_per_frame"] or 0 for x in s["servers"])
s["nginx_cpu_us_per_frame"] = round(nginx_us, 1)
open(sys.argv[1], "w").write(json.dumps(s))
print(f"{len(s['servers'])} process(es), {s['mode']}: relayed {s['frames_relayed']} of {s['frames_sent']}, "
      f"{s['relayed_fps']} frames/s, lost {s['lost']}, p50 {s['latency_p50_ms']} ms, p99 {s['latency_p99_ms']} ms; "
      f"server CPU {servers:.1f} us/frame ({', '.join(str(x['cpu_us_per_frame']) for x in s['servers'])}), "
      f"nginx {nginx_us:.1f} us/frame, loader {s['loader_cpu_pct']} %, others {s['others_cpu_pct']} %")
EOF
  stop_all
}

for load_mode in burst paced; do
  [[ $mode == all || $mode == "$load_mode" ]] || continue
  run 1 "$load_mode"
  run 2 "$load_mode"
  $PY - "$work/result-1-$load_mode.json" "$work/result-2-$load_mode.json" <<'EOF'
import json, sys
one, two = (json.load(open(path)) for path in sys.argv[1:])
print(f"scaling, {one['mode']}: 2 processes relay {two['relayed_fps'] / one['relayed_fps']:.2f}x the frames/s of 1")
EOF
done
echo "results and logs: $work" >&2
