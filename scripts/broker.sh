#!/usr/bin/env bash
# Starts or stops a local nisshi broker (Kafka protocol) on a free loopback port.
#   scripts/broker.sh start DIR [memory|sqlite]   prints the bootstrap address once it answers
#   scripts/broker.sh stop DIR
# DIR keeps the broker's data, pid and log. sqlite (the default) survives restarts.
source "$(dirname "$0")/lib.sh"

cmd="${1:-}"; dir="${2:-}"; engine="${3:-sqlite}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [memory|sqlite]" >&2; exit 2; }

case "$cmd" in
  start)
    ensure_python
    bin="$("$SLUICE_ROOT/scripts/install-broker.sh")"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    port="$(free_port)"
    case "$engine" in
      memory) storage="memory://nisshi/" ;;
      sqlite) storage="sqlite://nisshi.db" ;;
      *) echo "unknown engine $engine (expected memory or sqlite)" >&2; exit 2 ;;
    esac
    (cd "$dir" && exec "$bin" broker --listener-url "tcp://127.0.0.1:$port" \
       --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$storage" --silent \
       >"$dir/broker.log" 2>&1) &
    echo $! >"$dir/broker.pid"
    echo "127.0.0.1:$port" >"$dir/bootstrap"
    python3 "$SLUICE_ROOT/scripts/wait_kafka.py" "127.0.0.1:$port" 30 || {
      log "broker did not answer; its log:"; tail -20 "$dir/broker.log" >&2; exit 1; }
    echo "127.0.0.1:$port"
    ;;
  stop)
    if [ -f "$dir/broker.pid" ]; then
      pid="$(cat "$dir/broker.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/broker.pid"
    fi
    ;;
  *) echo "usage: $0 start|stop DIR [memory|sqlite]" >&2; exit 2 ;;
esac
