#!/usr/bin/env bash
# The distributed topology as local processes on 127.0.0.1, the same services and settings as
# docker-compose.yml (deploy/cluster.env): a private RabbitMQ broker, one query service (owning the
# embedded index), N ingest workers, the watcher and the gateway. Every process gets the watched
# folder (Library__Root): the gateway writes uploads (POST /api/images, the web page) into it, and
# the watcher ingests them like any other file.
#   scripts/cluster.sh up --watch DIR [--workers N] [--port 8080] [--db DIR] [--state DIR]
#   scripts/cluster.sh down [--state DIR]
#   scripts/cluster.sh status [--state DIR]
# `down` stops exactly what `up` started (pids recorded in the state folder) and the broker.
# `status` shows each process's /healthz: a process that runs but cannot reach the broker says so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:-}; [[ $# -gt 0 ]] && shift
watch=""; workers=2; port=8080; db=""; state="$root/.cache/cluster"
while [[ $# -gt 0 ]]; do
  case $1 in
    --watch) watch=${2:?}; shift 2 ;;
    --workers) workers=${2:?}; shift 2 ;;
    --port) port=${2:?}; shift 2 ;;
    --db) db=${2:?}; shift 2 ;;
    --state) state=${2:?}; shift 2 ;;
    *) echo "cluster: unknown option $1" >&2; exit 2 ;;
  esac
done
bin() { echo "$root/services/ImageSearch.$1/bin/Release/net10.0/ImageSearch.$1.dll"; }
broker() { "$root/scripts/rabbitmq.sh" "$1" --dir "$state/rabbitmq" --name "imagesearch-cluster" "${@:2}"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # name, url, dll, args...
  local name=$1 url=$2 dll=$3; shift 3
  nohup dotnet "$dll" --urls "$url" "$@" >"$state/logs/$name.log" 2>&1 &
  echo "$! $name $url" >>"$state/pids"
  last_pid=$!
}

health() { # url -> one line: the /healthz status and what each failing check says
  curl -sS -m 5 "$1/healthz" 2>/dev/null | python3 -c '
import json, sys
try:
    r = json.load(sys.stdin)
except ValueError:
    print("no answer from /healthz"); sys.exit()
bad = [k + ": " + str(v.get("description") or v.get("status")) for k, v in r.get("checks", {}).items() if v.get("status") != "Healthy"]
print(r.get("status", "?") + ("; " + "; ".join(bad) if bad else ""))'
}

wait_healthy() { # url, name, pid: the process answers (not another one on the same port)
  for _ in $(seq 1 600); do
    kill -0 "$3" 2>/dev/null || { echo "cluster: $2 exited; see $state/logs/$2.log" >&2; tail -20 "$state/logs/$2.log" >&2; return 1; }
    curl -fsS -o /dev/null "$1/healthz/live" 2>/dev/null && kill -0 "$3" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "cluster: $2 did not become healthy; see $state/logs/$2.log" >&2; tail -20 "$state/logs/$2.log" >&2; return 1
}

wait_ready() { # url, name: /healthz says Healthy (its bus connected, every queue it consumes bound)
  for _ in $(seq 1 400); do
    [[ $(health "$1") == Healthy ]] && return 0
    sleep 0.3
  done
  echo "cluster: $2 is not ready: $(health "$1"); see $state/logs/$2.log" >&2; return 1
}

stop_all() {
  if [[ -f "$state/pids" ]]; then
    while read -r pid _; do kill "$pid" 2>/dev/null || true; done <"$state/pids"
    for _ in $(seq 1 100); do
      alive=0
      while read -r pid _; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$state/pids"
      [[ $alive == 0 ]] && break; sleep 0.1
    done
    while read -r pid _; do kill -9 "$pid" 2>/dev/null || true; done <"$state/pids"
    rm -f "$state/pids"
  fi
  [[ -d "$state/rabbitmq" ]] && broker stop >/dev/null 2>&1 || true
}

case $cmd in
  up)
    [[ -n "$watch" ]] || { echo "cluster up: --watch <folder> is required" >&2; exit 2; }
    [[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "cluster up: --workers must be a positive number" >&2; exit 2; }
    [[ -f "$state/pids" ]] && { echo "cluster: already up (state $state); run 'cluster down' first" >&2; exit 1; }
    # Another server on the port would answer the health checks in the gateway's place.
    python3 -c 'import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null \
      || { echo "cluster up: port $port is in use on 127.0.0.1 (another server or cluster?); pick one with --port" >&2; exit 1; }
    mkdir -p "$watch" "$state/logs"; watch=$(cd "$watch" && pwd)
    [[ -n "$db" ]] || db="$(dirname "$watch")/$(basename "$watch").imagesearch-cluster"
    # Callers that already ran setup (the test suite, bench cluster) skip it: a rebuild here would
    # replace binaries that their other processes are running.
    [[ -n "${IMAGESEARCH_SKIP_SETUP:-}" ]] || "$root/scripts/setup.sh" --quiet
    trap 'echo "cluster: start failed, stopping what started" >&2; stop_all' ERR
    # sed reads to the end (head would close the pipe early: SIGPIPE under pipefail is a failure).
    amqp=$(broker start --port 0 | sed -n 1p)
    set -a; . "$root/deploy/cluster.env"; set +a
    mgmt=$(broker url --management | sed "s|http://|http://guest:guest@|")
    export Bus__RabbitMqUrl="$amqp" Bus__ManagementUrl="$mgmt" Library__Root="$watch" Embedding__ModelsDirectory="$root/models" Index__Directory="$db"
    qport=$(free_port)
    start query "http://127.0.0.1:$qport" "$(bin Query)"
    wait_healthy "http://127.0.0.1:$qport" query "$last_pid"
    worker_urls=()
    for i in $(seq 1 "$workers"); do worker_urls+=("http://127.0.0.1:$(free_port)"); start "ingest-$i" "${worker_urls[-1]}" "$(bin Ingest)"; done
    # The watcher announces what it finds as soon as its bus is up. On a new broker the ingest queue
    # exists only once a worker's bus has bound it, and what is published before that is dropped
    # (until the next rescan, 5 minutes later): so the watcher starts once the workers are ready.
    for i in $(seq 1 "$workers"); do wait_ready "${worker_urls[$((i - 1))]}" "ingest-$i"; done
    start watcher "http://127.0.0.1:$(free_port)" "$(bin Watcher)"
    start gateway "http://127.0.0.1:$port" "$(bin Gateway)" --Gateway:QueryServices:0="http://127.0.0.1:$qport"
    wait_healthy "http://127.0.0.1:$port" gateway "$last_pid"
    trap - ERR
    echo "ImageSearch cluster: gateway http://127.0.0.1:$port/, query service :$qport, $workers ingest workers, broker $amqp"
    echo "watching $watch, index in $db; logs in $state/logs; stop with ./imagesearch cluster down" ;;
  down)
    stop_all; echo "cluster: stopped" ;;
  status)
    [[ -f "$state/pids" ]] || { echo "cluster: not running"; exit 3; }
    # Running is not working: each process's health says whether it reached the broker (check "bus").
    while read -r pid name url; do
      if kill -0 "$pid" 2>/dev/null; then echo "$name: running (pid $pid), $(health "$url")"; else echo "$name: exited (pid $pid)"; fi
    done <"$state/pids"
    broker status >/dev/null && echo "rabbitmq: running" || echo "rabbitmq: stopped" ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
