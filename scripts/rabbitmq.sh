#!/usr/bin/env bash
# shellcheck disable=SC2015  # 'A && B || C' is used on purpose (C = a fallback value)
# A private, local RabbitMQ broker for tests, the local cluster and benchmarks.
#
#   scripts/rabbitmq.sh install|start|stop|status|restart|url|env|ctl
#       [--dir DIR] [--name NAME] [--port N] [--management-port N]
#
# Each broker lives wholly in DIR (default <repo>/.cache/rabbitmq/NAME, NAME defaults to
# "imagesearch", or to DIR's basename when only --dir is given): config, mnesia (data), logs,
# pid files and its own HOME (so its Erlang cookie is private). It listens on 127.0.0.1 only,
# runs its own epmd on a private port and has a unique node name NAME@localhost, so several
# brokers coexist with each other and with a system-wide RabbitMQ. User guest/guest (loopback
# only, RabbitMQ's default). The management plugin (HTTP API: queue depths) is enabled.
#
#   install  installs rabbitmq-server with apt when missing (root); starts nothing.
#   start    installs rabbitmq-server with apt when missing (root), starts the broker in the
#            background, waits until it is up (rabbitmqctl await_startup), then prints two lines
#            on stdout: the AMQP URL and the management URL. Already running: prints them, exit 0.
#            --port 0 picks a free port (the URL shows it). Ports are remembered in DIR, so a
#            later start/restart without flags reuses them.
#   stop     stops exactly what start started (server pid, then its epmd by pid), waits until
#            the port is closed. No error when not running.
#   restart  stop + start; data (durable queues, persistent messages) is kept.
#   status   exit 0 when running (and accepting connections), 3 when not.
#   url      prints the AMQP URL (add --management for the management URL); exit 3 if DIR was
#            never started.
#   env      prints shell assignments (RABBITMQ_AMQP_URL, RABBITMQ_MANAGEMENT_URL, ports, user…).
#   ctl      runs rabbitmqctl against this broker: ctl [--dir DIR|--name NAME] -- list_queues name messages
#
# Environment: RABBITMQ_START_TIMEOUT (s, default 120), RABBITMQ_STOP_TIMEOUT (s, default 60).
# Progress and timings go to stderr; the node's log is DIR/log/NAME@localhost.log.
set -euo pipefail

prog="rabbitmq.sh"
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RMQ_BIN=/usr/lib/rabbitmq/bin
START_TIMEOUT=${RABBITMQ_START_TIMEOUT:-120}
STOP_TIMEOUT=${RABBITMQ_STOP_TIMEOUT:-60}
MARK=IMAGESEARCH_RABBITMQ_DIR   # env marker set on every process start launches (identity check)
USER_NAME=guest
USER_PASS=guest

say() { echo "$prog: $*" >&2; }
die() { echo "$prog: error: $1" >&2; exit "${2:-1}"; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
usage() {
  sed -n '3,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# Arguments
cmd=${1:-}; [[ $# -gt 0 ]] && shift
case $cmd in install|start|stop|status|restart|url|env|ctl) ;; -h|--help|help) usage ;; *) usage ;; esac
opt_dir="" opt_name="" opt_port="" opt_mgmt="" opt_url_mgmt=0 ctl_args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --) shift; ctl_args=("$@"); break ;;
    --dir) opt_dir=${2:?--dir needs a value}; shift 2 ;;
    --dir=*) opt_dir=${1#*=}; shift ;;
    --name) opt_name=${2:?--name needs a value}; shift 2 ;;
    --name=*) opt_name=${1#*=}; shift ;;
    --port) opt_port=${2:?--port needs a value}; shift 2 ;;
    --port=*) opt_port=${1#*=}; shift ;;
    --management-port) opt_mgmt=${2:?--management-port needs a value}; shift 2 ;;
    --management-port=*) opt_mgmt=${1#*=}; shift ;;
    --management) opt_url_mgmt=1; shift ;;
    -h|--help) usage ;;
    *) die "unknown argument: $1 (see --help)" 2 ;;
  esac
done
for p in "$opt_port" "$opt_mgmt"; do
  [[ -z $p || ( $p =~ ^[0-9]+$ && $p -le 65535 ) ]] || die "invalid port: $p" 2
done
[[ -z $opt_name || $opt_name =~ ^[A-Za-z0-9_-]+$ ]] || die "--name may only contain letters, digits, _ and - (got '$opt_name')" 2

if [[ -n $opt_dir ]]; then
  DIR=$(realpath -m -- "$opt_dir")   # absolute; created by start, not by status/url
else
  DIR="$root/.cache/rabbitmq/${opt_name:-imagesearch}"
fi
STATE="$DIR/state.env"   # remembered name and ports (written by start)

# Node name: --name, else the one DIR already belongs to, else a default.
saved() { [[ -f $STATE ]] && sed -n "s/^$1=//p" "$STATE" | tail -1 || true; }
NAME=$(saved NAME)
if [[ -n $opt_name ]]; then
  [[ -z $NAME || $NAME == "$opt_name" ]] || die "$DIR belongs to broker '$NAME', not '$opt_name'" 2
  NAME=$opt_name
elif [[ -z $NAME ]]; then
  if [[ -n $opt_dir ]]; then NAME=$(basename "$DIR" | tr -c 'A-Za-z0-9_\n-' '-'); else NAME=imagesearch; fi
fi
NODE="$NAME@localhost"
PID_FILE="$DIR/rabbitmq.pid"       # beam.smp pid, written by RabbitMQ itself
LAUNCHER_PID_FILE="$DIR/launcher.pid"
EPMD_PID_FILE="$DIR/epmd.pid"
LOG_DIR="$DIR/log"
NODE_LOG="$LOG_DIR/$NODE.log"
CONSOLE_LOG="$LOG_DIR/console.log"

# ---------------------------------------------------------------------------------------------
# Helpers
port_listening() {  # is something listening on 127.0.0.1/any:$1 ?
  if command -v ss >/dev/null; then
    [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
port_used() {  # any TCP socket (listening or connected) on local port $1 ?
  if command -v ss >/dev/null; then
    ss -Htan 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | grep -qx "$1"
  else
    port_listening "$1"
  fi
}
free_port() {  # a random unused port in 20000-29999 (below the kernel's ephemeral range)
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 10000))
    port_used "$p" || { echo "$p"; return 0; }
  done
  die "could not find a free TCP port"
}
ours() {  # is pid $1 alive and launched by this script for this DIR?
  [[ $1 =~ ^[0-9]+$ ]] && grep -qzxF "$MARK=$DIR" "/proc/$1/environ" 2>/dev/null
}
read_pid() { [[ -f $1 ]] && tr -dc '0-9' < "$1" || true; }
server_pid() { local p; p=$(read_pid "$PID_FILE"); [[ -n $p ]] && ours "$p" && echo "$p" || true; }
launcher_pid() { local p; p=$(read_pid "$LAUNCHER_PID_FILE"); [[ -n $p ]] && ours "$p" && echo "$p" || true; }
epmd_pid() { local p; p=$(read_pid "$EPMD_PID_FILE"); [[ -n $p ]] && ours "$p" && echo "$p" || true; }
our_pids() {  # every live process that carries this DIR's marker (one grep over /proc)
  { grep -lzxF "$MARK=$DIR" /proc/[0-9]*/environ 2>/dev/null || true; } \
    | sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p' | grep -vxF -e "$$" -e "$BASHPID" || true
}
alive() {  # a zombie counts as gone (orphans are reaped by pid 1, sometimes late)
  local st
  st=$( { awk '{ print $3 }' "/proc/$1/stat"; } 2>/dev/null) || return 1
  [[ -n $st && $st != Z ]]
}
wait_gone() {  # wait_gone SECONDS PID... -> 0 when all are gone
  local deadline=$((SECONDS + $1)) p any; shift
  while :; do
    any=0
    for p in "$@"; do alive "$p" && any=1; done
    [[ $any == 0 ]] && return 0
    [[ $SECONDS -ge $deadline ]] && return 1
    sleep 0.2
  done
}

load_ports() { PORT=$(saved PORT); MGMT_PORT=$(saved MGMT_PORT); DIST_PORT=$(saved DIST_PORT); EPMD_PORT=$(saved EPMD_PORT); }
amqp_url() { echo "amqp://$USER_NAME:$USER_PASS@127.0.0.1:$PORT/"; }
mgmt_url() { echo "http://127.0.0.1:$MGMT_PORT/"; }

rabbit_env() {  # the environment every RabbitMQ/Erlang process of this broker runs with
  export HOME="$DIR/home"
  export RABBITMQ_NODENAME="$NODE" RABBITMQ_USE_LONGNAME=false
  export RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf"
  export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
  export RABBITMQ_LOG_BASE="$LOG_DIR"
  export RABBITMQ_PID_FILE="$PID_FILE"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$PORT"
  export RABBITMQ_DIST_PORT="$DIST_PORT"
  export RABBITMQ_CTL_DIST_PORT_MIN=$((DIST_PORT + 10000)) RABBITMQ_CTL_DIST_PORT_MAX=$((DIST_PORT + 10010))
  export ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
  # Erlang schedulers busy-wait for work by default; on a small machine shared with the model that
  # spinning takes CPU from ingestion (RabbitMQ runtime tuning guide); sleep instead. Idle, both
  # settings cost the same (3 ticks in 10 s); under load this was not measured separately.
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:-+sbwt none +sbwtdcpu none +sbwtdio none}"
  # Erlang distribution (server and CLI) on loopback only.
  export ERL_AFLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export LC_ALL=C.UTF-8 LANG=C.UTF-8
  unset RABBITMQ_ERLANG_COOKIE RABBITMQ_SERVER_START_ARGS RABBITMQ_ALLOW_INPUT 2>/dev/null || true
}
ctl() { "$RMQ_BIN/rabbitmqctl" -n "$NODE" "$@"; }

print_urls() { amqp_url; mgmt_url; }

# ---------------------------------------------------------------------------------------------
# Installation (Debian package; root or passwordless sudo)
ensure_installed() {
  [[ -x $RMQ_BIN/rabbitmq-server ]] && return 0
  local sudo=""
  if [[ $(id -u) != 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"
    else die "rabbitmq-server is not installed and this user cannot install it; as root run: apt-get install --no-install-recommends rabbitmq-server"; fi
  fi
  local t0; t0=$(now)
  say "installing rabbitmq-server with apt (once)…"
  # The package's postinst would start a system-wide broker on 0.0.0.0:5672 via invoke-rc.d;
  # without systemd, policy-rc.d decides. Deny it for the duration of the install.
  local policy=/usr/sbin/policy-rc.d made_policy=0 before
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from scripts/rabbitmq.sh: no service starts during install\nexit 101\n' \
      | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"; made_policy=1
    # shellcheck disable=SC2064  # expand now: $sudo and $policy are fixed
    trap "$sudo rm -f $policy" EXIT
  fi
  before=$(pgrep -u rabbitmq -x beam.smp 2>/dev/null || true)
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends
             -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  local out="$root/.cache/rabbitmq/apt.log"; mkdir -p "$(dirname "$out")"
  if ! $sudo "${apt[@]}" install rabbitmq-server >"$out" 2>&1; then
    say "apt-get install failed, running apt-get update and retrying"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 update >>"$out" 2>&1 \
      || { tail -n 20 "$out" >&2; die "apt-get update failed (log: $out)"; }
    $sudo "${apt[@]}" install rabbitmq-server >>"$out" 2>&1 \
      || { tail -n 20 "$out" >&2; die "apt-get install rabbitmq-server failed (log: $out)"; }
  fi
  if [[ $made_policy == 1 ]]; then $sudo rm -f "$policy"; trap - EXIT; fi
  # If a pre-existing policy let the package start a system broker, stop that one again.
  local after; after=$(pgrep -u rabbitmq -x beam.smp 2>/dev/null || true)
  if [[ -n $after && $after != "$before" && -x /etc/init.d/rabbitmq-server ]]; then
    say "the package started a system-wide broker; stopping it"
    $sudo /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
  fi
  [[ -x $RMQ_BIN/rabbitmq-server ]] || die "rabbitmq-server installed but $RMQ_BIN/rabbitmq-server is missing"
  say "installed rabbitmq-server $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null) in $(since "$t0") s"
}

# ---------------------------------------------------------------------------------------------
# Commands
is_running() { [[ -n $(server_pid) ]] && [[ -n ${PORT:-} ]] && port_listening "$PORT"; }

choose_ports() {
  load_ports
  # AMQP: --port N (0 = any free), else remembered, else 5672.
  if [[ -n $opt_port && $opt_port != 0 ]]; then PORT=$opt_port
  elif [[ $opt_port == 0 ]]; then [[ -n $PORT ]] && ! port_used "$PORT" || PORT=$(free_port)
  else PORT=${PORT:-5672}; fi
  # Management: --management-port N (0 = any free), else remembered, else AMQP+10000 if free.
  if [[ -n $opt_mgmt && $opt_mgmt != 0 ]]; then MGMT_PORT=$opt_mgmt
  elif [[ -z $MGMT_PORT || ( $opt_mgmt == 0 && $(port_used "$MGMT_PORT" && echo y) == y ) ]]; then
    MGMT_PORT=""
    if [[ $opt_mgmt != 0 && $((PORT + 10000)) -le 65535 ]] && ! port_used $((PORT + 10000)); then
      MGMT_PORT=$((PORT + 10000))
    fi
    [[ -n $MGMT_PORT ]] || MGMT_PORT=$(free_port)
  fi
  # Internal ports (Erlang distribution, private epmd): remembered if still free, else random.
  [[ -n $DIST_PORT ]] && ! port_used "$DIST_PORT" || DIST_PORT=$(free_port)
  [[ -n $EPMD_PORT ]] && ! port_used "$EPMD_PORT" || EPMD_PORT=$(free_port)
  local p
  for p in "$PORT" "$MGMT_PORT"; do
    ! port_listening "$p" || die "port $p is already in use (by something else); choose another with --port/--management-port (0 = any free)"
  done
  [[ $PORT != "$MGMT_PORT" && $PORT != "$DIST_PORT" && $MGMT_PORT != "$DIST_PORT" && $EPMD_PORT != "$DIST_PORT" \
     && $EPMD_PORT != "$PORT" && $EPMD_PORT != "$MGMT_PORT" ]] || die "port clash: amqp=$PORT management=$MGMT_PORT"
}

write_config() {
  mkdir -p "$DIR/home" "$DIR/mnesia" "$LOG_DIR"
  chmod 700 "$DIR/home"
  cat > "$STATE" <<EOF
NAME=$NAME
PORT=$PORT
MGMT_PORT=$MGMT_PORT
DIST_PORT=$DIST_PORT
EPMD_PORT=$EPMD_PORT
EOF
  cat > "$DIR/rabbitmq.conf" <<EOF
# Generated by scripts/rabbitmq.sh — rewritten on every start.
listeners.tcp.local = 127.0.0.1:$PORT
listeners.ssl = none
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
# guest/guest, accepted from loopback only (the default)
loopback_users.guest = true
log.file.level = info
log.console = false
EOF
  echo '[rabbitmq_management].' > "$DIR/enabled_plugins"
  echo '[].' > "$DIR/advanced.config"
  : > "$DIR/rabbitmq-env.conf"   # keeps /etc/rabbitmq/rabbitmq-env.conf out
  printf 'user=%s\npassword=%s\n' "$USER_NAME" "$USER_PASS" > "$DIR/credentials"
  local cookie="$DIR/home/.erlang.cookie"
  if [[ ! -s $cookie ]]; then
    (umask 077; head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 > "$cookie")
    chmod 400 "$cookie"
  fi
}

fail_start() {
  say "error: $1"
  if [[ -s $NODE_LOG ]]; then echo "---- last lines of $NODE_LOG" >&2; tail -n 30 "$NODE_LOG" >&2; fi
  if [[ -s $CONSOLE_LOG ]]; then echo "---- last lines of $CONSOLE_LOG" >&2; tail -n 30 "$CONSOLE_LOG" >&2; fi
  do_stop quiet || true
  exit 1
}

do_start() {
  local t0; t0=$(now)
  load_ports
  if [[ -n $(server_pid) ]]; then
    rabbit_env
    if [[ -n $PORT ]] && ctl await_startup --timeout "$START_TIMEOUT" >/dev/null 2>&1 && port_listening "$PORT"; then
      say "$NODE already running"
      [[ -z $opt_port || $opt_port == 0 || $opt_port == "$PORT" ]] && [[ -z $opt_mgmt || $opt_mgmt == 0 || $opt_mgmt == "$MGMT_PORT" ]] \
        || say "warning: it listens on $PORT/$MGMT_PORT; use restart to change ports"
      print_urls; return 0
    fi
    say "$NODE is running but not healthy; restarting it"
    do_stop
  fi
  # Leftovers of a crashed run (e.g. an epmd whose server died): clean them up first.
  [[ -z $(our_pids) ]] || do_stop quiet
  ensure_installed
  t0=$(now)   # startup time, not counting a first install
  local cold=1; [[ -d $DIR/mnesia/$NODE ]] && cold=0
  choose_ports
  write_config
  rabbit_env
  local epmd; epmd=$(command -v epmd || compgen -G '/usr/lib/erlang/erts-*/bin/epmd' | head -1 || true)
  [[ -x $epmd ]] || die "epmd not found (is erlang-base installed?)"

  rm -f "$PID_FILE" "$LAUNCHER_PID_FILE" "$EPMD_PID_FILE"
  echo "==== $(date -u +%FT%TZ) start (amqp $PORT, management $MGMT_PORT, dist $DIST_PORT, epmd $EPMD_PORT)" >> "$CONSOLE_LOG"
  # Private epmd, in its own session, fd 9 (the lock) closed; pid recorded.
  env "$MARK=$DIR" setsid "$epmd" -port "$EPMD_PORT" -address 127.0.0.1 \
    </dev/null >>"$CONSOLE_LOG" 2>&1 9>&- &
  echo $! > "$EPMD_PID_FILE"
  local deadline=$((SECONDS + 10))
  until port_listening "$EPMD_PORT"; do
    alive "$(read_pid "$EPMD_PID_FILE")" || fail_start "epmd exited at once (port $EPMD_PORT)"
    [[ $SECONDS -lt $deadline ]] || fail_start "epmd did not open port $EPMD_PORT"
    sleep 0.05
  done
  # The server (its wrapper script turns SIGTERM into a clean shutdown), in its own session.
  env "$MARK=$DIR" setsid "$RMQ_BIN/rabbitmq-server" </dev/null >>"$CONSOLE_LOG" 2>&1 9>&- &
  local lpid=$!
  echo "$lpid" > "$LAUNCHER_PID_FILE"
  say "starting $NODE (amqp 127.0.0.1:$PORT, management 127.0.0.1:$MGMT_PORT, dir $DIR)"

  # Wait (bounded) for the AMQP listener without connecting to it, then confirm with await_startup.
  deadline=$((SECONDS + START_TIMEOUT))
  until port_listening "$PORT" && [[ -n $(server_pid) ]]; do
    # Our own child: check it by pid (its marker appears only once `env` has exec'd).
    alive "$lpid" || fail_start "$NODE exited during startup"
    [[ $SECONDS -lt $deadline ]] || fail_start "$NODE did not open port $PORT within ${START_TIMEOUT}s"
    sleep 0.2
  done
  local left=$((deadline - SECONDS)); [[ $left -ge 5 ]] || left=5
  ctl await_startup --timeout "$left" >>"$CONSOLE_LOG" 2>&1 || fail_start "rabbitmqctl await_startup failed"
  deadline=$((SECONDS + 30))
  until port_listening "$MGMT_PORT"; do
    [[ $SECONDS -lt $deadline ]] || fail_start "management plugin did not open port $MGMT_PORT"
    sleep 0.2
  done
  say "started $NODE in $(since "$t0") s ($([[ $cold == 1 ]] && echo "cold: new data dir" || echo "warm: existing data"))"
  print_urls
}

do_stop() {  # do_stop [quiet]
  local t0 spid lpid epid pids p
  t0=$(now)
  load_ports
  spid=$(server_pid); lpid=$(launcher_pid); epid=$(epmd_pid)
  pids=$(our_pids | tr '\n' ' ')
  if [[ -z $spid && -z $lpid && -z $epid && -z ${pids// /} ]]; then
    [[ ${1:-} == quiet ]] || say "$NODE is not running"
    rm -f "$PID_FILE" "$LAUNCHER_PID_FILE" "$EPMD_PID_FILE"
    return 0
  fi
  # 1. The server: SIGTERM = clean shutdown (queues and messages flushed to disk).
  if [[ -n $spid ]]; then
    # RabbitMQ 3.10's management agent, when removed during shutdown, waits on a 5 s timeout
    # (rabbit_mgmt_db_handler:terminate -> force_event_refresh). Removing it first, while the
    # node is fully up, takes milliseconds and saves those 5 s. Best effort.
    rabbit_env
    timeout 15 "$RMQ_BIN/rabbitmqctl" -n "$NODE" eval \
      'gen_event:delete_handler(rabbit_event, rabbit_mgmt_db_handler, []).' >/dev/null 2>&1 || true
    kill -TERM "$spid" 2>/dev/null || true
    if ! wait_gone "$STOP_TIMEOUT" "$spid"; then
      say "$NODE did not stop within ${STOP_TIMEOUT}s; killing it"
      kill -KILL "$spid" 2>/dev/null || true
      wait_gone 10 "$spid" || true
    fi
  fi
  # 2. Its wrapper script (exits by itself once the server has), or a launch that never got a pid.
  if [[ -n $lpid ]] && ! wait_gone 5 "$lpid"; then
    kill -TERM "$lpid" 2>/dev/null || true
    wait_gone 10 "$lpid" || kill -KILL "$lpid" 2>/dev/null || true
  fi
  # 3. Its private epmd, by pid.
  if [[ -n $epid ]]; then
    kill -TERM "$epid" 2>/dev/null || true
    wait_gone 5 "$epid" || kill -KILL "$epid" 2>/dev/null || true
  fi
  # 4. Anything else still carrying this DIR's marker (erl_child_setup, inet_gethost…).
  pids=$(our_pids | tr '\n' ' ')
  if [[ -n ${pids// /} ]]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    wait_gone 5 $pids || kill -KILL $pids 2>/dev/null || true
  fi
  # 5. Wait (bounded) until the ports are closed.
  local deadline=$((SECONDS + 15))
  for p in ${PORT:-} ${MGMT_PORT:-} ${EPMD_PORT:-}; do
    while port_listening "$p"; do
      [[ $SECONDS -lt $deadline ]] || { say "warning: port $p still open after stop"; break; }
      sleep 0.1
    done
  done
  rm -f "$PID_FILE" "$LAUNCHER_PID_FILE" "$EPMD_PID_FILE"
  [[ ${1:-} == quiet ]] || say "stopped $NODE in $(since "$t0") s"
}

lock() {
  mkdir -p "$DIR" || die "cannot create $DIR"
  exec 9>>"$DIR/.lock"
  flock -w $((START_TIMEOUT + STOP_TIMEOUT + 60)) 9 || die "another $prog is busy with $DIR"
}

case $cmd in
  install) ensure_installed ;;
  start) lock; do_start ;;
  stop) [[ -d $DIR ]] || { say "$NODE is not running (no $DIR)"; exit 0; }; lock; do_stop ;;
  restart)
    lock; t_restart=$(now)
    do_stop; do_start
    say "restarted $NODE in $(since "$t_restart") s" ;;
  status)
    load_ports
    if is_running; then
      echo "running: $NODE (pid $(server_pid)) $(amqp_url) management $(mgmt_url)"
      exit 0
    elif [[ -n $(server_pid) ]]; then
      echo "starting or unhealthy: $NODE (pid $(server_pid)), port ${PORT:-?} not open"
      exit 3
    else
      echo "not running: $NODE ($DIR)"
      exit 3
    fi ;;
  url)
    load_ports
    [[ -n ${PORT:-} ]] || die "no broker was ever started in $DIR" 3
    if [[ $opt_url_mgmt == 1 ]]; then mgmt_url; else amqp_url; fi ;;
  ctl)
    load_ports
    [[ -n ${PORT:-} ]] || die "no broker was ever started in $DIR" 3
    rabbit_env
    exec "$RMQ_BIN/rabbitmqctl" -n "$NODE" "${ctl_args[@]}" ;;
  env)
    load_ports
    [[ -n ${PORT:-} ]] || die "no broker was ever started in $DIR" 3
    cat <<EOF
RABBITMQ_AMQP_URL=$(amqp_url)
RABBITMQ_MANAGEMENT_URL=$(mgmt_url)
RABBITMQ_HOST=127.0.0.1
RABBITMQ_PORT=$PORT
RABBITMQ_MANAGEMENT_PORT=$MGMT_PORT
RABBITMQ_USER=$USER_NAME
RABBITMQ_PASSWORD=$USER_PASS
RABBITMQ_NODE=$NODE
RABBITMQ_DIR=$(printf %q "$DIR")
EOF
    ;;
esac
