#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster with wal_level=logical on a free loopback port.
#   scripts/postgres.sh start DIR     prints a connection URL once the server accepts connections
#   scripts/postgres.sh stop DIR [--kill]   a fast shutdown (--kill: immediate, as in a crash:
#                                           no checkpoint, WAL recovery at the next start)
#   scripts/postgres.sh restart DIR   starts the cluster again on the same port and data
#                                     (stopping it first if it runs); prints the URL
#   scripts/postgres.sh install X     only installs the Debian packages if missing
# The cluster runs as the `postgres` OS user (initdb refuses root); trust auth on loopback only.
source "$(dirname "$0")/lib.sh"

cmd="${1:-}"; dir="${2:-}"
usage="usage: $0 start DIR | stop DIR [--kill] | restart DIR | install X"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "$usage" >&2; exit 2; }

pg_bin() {
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    log "installing PostgreSQL (Debian packages)"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >&2
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  fi
  echo "$bin"
}

# Stops the cluster in $dir: a fast shutdown, or an immediate one (a crash) with --kill.
stop() {
  local mode=fast
  [ "${1:-}" = "--kill" ] && mode=immediate
  if [ -f "$dir/data/postmaster.pid" ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w stop >&2 || true
  fi
}

# Starts the cluster in $data (port $port) and waits until it accepts connections.
launch() {
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start >&2
  for _ in $(seq 100); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  echo "postgres://postgres@127.0.0.1:$port/postgres"
}

case "$cmd" in
  install)
    pg_bin >/dev/null
    ;;
  start)
    ensure_python
    bin="$(pg_bin)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    port="$(free_port)"
    data="$dir/data"
    chown postgres:postgres "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
fsync = on
CONF
    cat >"$data/pg_hba.conf" <<HBA
local all all trust
local replication all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
HBA
    echo "$port" >"$dir/port"
    launch
    ;;
  restart)
    ensure_python
    bin="$(pg_bin)"
    dir="$(cd "$dir" && pwd)"
    [ -f "$dir/port" ] && [ -d "$dir/data" ] || { echo "no cluster was started in $dir" >&2; exit 2; }
    port="$(cat "$dir/port")"
    data="$dir/data"
    stop
    wait_port_free "$port"
    launch
    ;;
  stop)
    bin="$(pg_bin)"
    stop "${3:-}"
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
