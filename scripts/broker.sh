#!/usr/bin/env bash
# Starts or stops a local nisshi broker (Kafka protocol) on a free loopback port.
#   scripts/broker.sh start DIR [memory|sqlite]   prints the bootstrap address once it answers
#   scripts/broker.sh stop DIR [--kill]           SIGTERM (--kill: SIGKILL, as in a crash)
#   scripts/broker.sh restart DIR                 starts it again on the same port and data
#                                                 (stopping it first if it runs); prints the address
# DIR keeps the broker's data, pid and log. sqlite (the default) survives restarts.
source "$(dirname "$0")/lib.sh"

cmd="${1:-}"; dir="${2:-}"
usage="usage: $0 start DIR [memory|sqlite] | stop DIR [--kill] | restart DIR"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "$usage" >&2; exit 2; }

# Stops the broker of $dir: SIGTERM and up to 5 s to exit, or SIGKILL at once with --kill.
stop() {
  [ -f "$dir/broker.pid" ] || return 0
  local pid
  pid="$(cat "$dir/broker.pid")"
  if [ "${1:-}" = "--kill" ]; then
    kill -9 "$pid" 2>/dev/null || true
  else
    kill "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/broker.pid"
}

# Runs the broker of $dir on $port with the engine named in $dir/engine.
launch() {
  local bin storage engine
  bin="$("$SLUICE_ROOT/scripts/install-broker.sh")"
  engine="$(cat "$dir/engine")"
  case "$engine" in
    memory) storage="memory://nisshi/" ;;
    sqlite) storage="sqlite://nisshi.db" ;;
    *) echo "unknown engine $engine (expected memory or sqlite)" >&2; exit 2 ;;
  esac
  (cd "$dir" && exec "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
     --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$storage" --silent \
     >>"$dir/broker.log" 2>&1) &
  echo $! >"$dir/broker.pid"
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  python3 "$SLUICE_ROOT/scripts/wait_kafka.py" "127.0.0.1:$port" 30 || {
    log "broker did not answer; its log:"; tail -20 "$dir/broker.log" >&2; exit 1; }
  echo "127.0.0.1:$port"
}

case "$cmd" in
  start)
    ensure_python
    engine="${3:-sqlite}"
    case "$engine" in memory|sqlite) ;; *) echo "unknown engine $engine (expected memory or sqlite)" >&2; exit 2 ;; esac
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    echo "$engine" >"$dir/engine"
    : >"$dir/broker.log"
    port="$(free_port)"
    launch
    ;;
  restart)
    ensure_python
    dir="$(cd "$dir" && pwd)"
    [ -f "$dir/bootstrap" ] || { echo "no broker was started in $dir" >&2; exit 2; }
    [ -f "$dir/engine" ] || echo sqlite >"$dir/engine"
    stop
    port="$(sed 's/.*://' "$dir/bootstrap")"
    wait_port_free "$port"
    echo "--- restarted $(date -u +%FT%TZ)" >>"$dir/broker.log"
    launch
    ;;
  stop)
    stop "${3:-}"
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
