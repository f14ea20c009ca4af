#!/usr/bin/env bash
# Starts or stops a local S3-compatible server (s3s-fs) on a free loopback port.
#   scripts/s3.sh start DIR [BUCKET...]   prints the endpoint once it answers
#   scripts/s3.sh stop DIR [--kill]       SIGTERM (--kill: SIGKILL, as in a crash)
#   scripts/s3.sh restart DIR             starts it again on the same port, data and credentials
#                                         (stopping it first if it runs); prints the endpoint
# DIR keeps the objects (DIR/data/<bucket>/<key>), pid, log, endpoint and credentials
# (DIR/credentials: access key and secret key, one per line; the secret is never printed).
# Buckets given (default: sluice) are created as directories.
source "$(dirname "$0")/lib.sh"

cmd="${1:-}"; dir="${2:-}"
usage="usage: $0 start DIR [BUCKET...] | stop DIR [--kill] | restart DIR"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "$usage" >&2; exit 2; }

# Stops the server of $dir: SIGTERM and up to 5 s to exit, or SIGKILL at once with --kill.
stop() {
  [ -f "$dir/s3.pid" ] || return 0
  local pid
  pid="$(cat "$dir/s3.pid")"
  if [ "${1:-}" = "--kill" ]; then
    kill -9 "$pid" 2>/dev/null || true
  else
    kill "$pid" 2>/dev/null || true
  fi
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/s3.pid"
}

# Runs the server of $dir on $port with the credentials in $dir/credentials.
launch() {
  local bin access secret
  bin="$("$SLUICE_ROOT/scripts/install-s3.sh")"
  access="$(sed -n 1p "$dir/credentials")"; secret="$(sed -n 2p "$dir/credentials")"
  "$bin" --host 127.0.0.1 --port "$port" --access-key "$access" --secret-key "$secret" \
    "$dir/data" >>"$dir/s3.log" 2>&1 &
  echo $! >"$dir/s3.pid"
  echo "http://127.0.0.1:$port" >"$dir/endpoint"
  python3 - "$port" <<'PY' || { log "s3s-fs did not answer; its log:"; tail -20 "$dir/s3.log" >&2; exit 1; }
import socket, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
  echo "http://127.0.0.1:$port"
}

case "$cmd" in
  start)
    ensure_python
    mkdir -p "$dir/data"
    dir="$(cd "$dir" && pwd)"
    shift 2
    buckets=("$@"); [ ${#buckets[@]} -gt 0 ] || buckets=(sluice)
    for b in "${buckets[@]}"; do mkdir -p "$dir/data/$b"; done
    if [ ! -f "$dir/credentials" ]; then
      (umask 077
       printf 'sluice\n%s\n' "$(python3 -c 'import secrets; print(secrets.token_hex(16))')" >"$dir/credentials")
    fi
    : >"$dir/s3.log"
    port="$(free_port)"
    launch
    ;;
  restart)
    ensure_python
    dir="$(cd "$dir" && pwd)"
    [ -f "$dir/endpoint" ] && [ -f "$dir/credentials" ] || { echo "no server was started in $dir" >&2; exit 2; }
    stop
    port="$(sed 's/.*://' "$dir/endpoint")"
    wait_port_free "$port"
    echo "--- restarted $(date -u +%FT%TZ)" >>"$dir/s3.log"
    launch
    ;;
  stop)
    stop "${3:-}"
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
