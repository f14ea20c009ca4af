#!/usr/bin/env bash
# The quickstart, end to end on this machine: installs what is missing (the nisshi broker),
# builds Sluice, starts a local broker, runs configs/pipelines/quickstart.yaml
# (datagen -> topic quickstart.orders -> JSON-lines file), and checks the file holds exactly the
# generated records, in order per partition.
#   scripts/quickstart.sh [COUNT]      (default 10000 records)
source "$(dirname "$0")/lib.sh"
count="${1:-10000}"
ensure_cargo
ensure_python
ensure_build_deps

work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-quickstart.XXXXXX")"
sluice_pid=""
cleanup() {
  [ -n "$sluice_pid" ] && kill -9 "$sluice_pid" 2>/dev/null || true
  "$SLUICE_ROOT/scripts/broker.sh" stop "$work/broker" || true
}
trap cleanup EXIT

log "building sluice (cargo build, target dir $CARGO_TARGET_DIR)"
cargo build --quiet --manifest-path "$SLUICE_ROOT/Cargo.toml" -p sluice --bin sluice
sluice="$CARGO_TARGET_DIR/debug/sluice"

log "starting a local broker"
bootstrap="$("$SLUICE_ROOT/scripts/broker.sh" start "$work/broker")"
log "broker at $bootstrap"

export SLUICE_BOOTSTRAP_SERVERS="$bootstrap" SLUICE_DATA_DIR="$work/data" QUICKSTART_COUNT="$count"
out="$work/data/quickstart-orders.jsonl"
log "running: sluice run configs/worker.yaml configs/pipelines/quickstart.yaml ($count records)"
(cd "$SLUICE_ROOT" && exec "$sluice" run configs/worker.yaml configs/pipelines/quickstart.yaml) \
  >"$work/sluice.log" 2>&1 &
sluice_pid=$!

lines=0; shown=-1
for _ in $(seq 1200); do
  lines=$( [ -f "$out" ] && wc -l <"$out" || echo 0 )
  if [ "$lines" != "$shown" ]; then log "$lines / $count records in $out"; shown=$lines; fi
  [ "$lines" -ge "$count" ] && break
  kill -0 "$sluice_pid" 2>/dev/null || { log "sluice exited early; its log:"; tail -30 "$work/sluice.log" >&2; exit 1; }
  sleep 0.25
done
[ "$lines" -ge "$count" ] || { log "gave up waiting after 5 minutes; sluice log:"; tail -30 "$work/sluice.log" >&2; exit 1; }
log "stopping sluice (SIGTERM: flush, commit, exit)"
kill -TERM "$sluice_pid"
wait "$sluice_pid" || { log "sluice did not stop cleanly; its log:"; tail -30 "$work/sluice.log" >&2; exit 1; }
sluice_pid=""

python3 "$SLUICE_ROOT/scripts/check_quickstart.py" "$out" "$count"
log "files kept in $work (sluice.log, data/)"
