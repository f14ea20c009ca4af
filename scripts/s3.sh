#!/usr/bin/env bash
# Starts or stops a local S3-compatible server (s3s-fs) on a free loopback port.
#   scripts/s3.sh start DIR [BUCKET...]   prints the endpoint once it answers
#   scripts/s3.sh stop DIR
# DIR keeps the objects (DIR/data/<bucket>/<key>), pid, log, endpoint and credentials
# (DIR/credentials: access key and secret key, one per line; the secret is never printed).
# Buckets given (default: sluice) are created as directories.
source "$(dirname "$0")/lib.sh"

cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR [BUCKET...]" >&2; exit 2; }

case "$cmd" in
  start)
    ensure_python
    bin="$("$SLUICE_ROOT/scripts/install-s3.sh")"
    mkdir -p "$dir/data"
    dir="$(cd "$dir" && pwd)"
    shift 2
    buckets=("$@"); [ ${#buckets[@]} -gt 0 ] || buckets=(sluice)
    for b in "${buckets[@]}"; do mkdir -p "$dir/data/$b"; done
    if [ ! -f "$dir/credentials" ]; then
      (umask 077
       printf 'sluice\n%s\n' "$(python3 -c 'import secrets; print(secrets.token_hex(16))')" >"$dir/credentials")
    fi
    access="$(sed -n 1p "$dir/credentials")"; secret="$(sed -n 2p "$dir/credentials")"
    port="$(free_port)"
    "$bin" --host 127.0.0.1 --port "$port" --access-key "$access" --secret-key "$secret" \
      "$dir/data" >"$dir/s3.log" 2>&1 &
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
    ;;
  stop)
    if [ -f "$dir/s3.pid" ]; then
      pid="$(cat "$dir/s3.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/s3.pid"
    fi
    ;;
  *) echo "usage: $0 start|stop DIR [BUCKET...]" >&2; exit 2 ;;
esac
