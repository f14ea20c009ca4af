#!/usr/bin/env bash
# Chaos run: a 3-worker Sluice cluster runs a Postgres CDC source, an S3 archive and a Postgres
# sink while a writer changes two tables and this script SIGKILLs random workers and restarts the
# broker, Postgres and the S3 server. Then it checks with independent readers (Confluent's Kafka
# client, boto3, psql) that nothing was lost and that the archive holds every offset once.
#   scripts/chaos.sh [--minutes N] [--seed N] [--rate TX_PER_S] [--settle-timeout S]
#                    [--faults worker,broker,postgres,s3] [--output text|json] [--keep]
#     --minutes         how long faults are injected (default 5; decimals allowed)
#     --seed            seed of the fault plan and the writer (default: random; printed)
#     --rate            writer transactions per second (default 5)
#     --settle-timeout  how long to wait for the pipelines to catch up afterwards (default 300 s)
#     --faults          which faults to inject (default all four kinds)
#     --output json     the result as JSON on stdout (progress stays on stderr)
#     --keep            keep the work directory (it is kept anyway when the run fails)
# SLUICE_BIN=<path> runs that sluice binary instead of building the debug one; SLUICE_LOG sets the
# workers' log filter.
# Exits non-zero when a check fails, naming the key, partition or offset.
source "$(dirname "$0")/lib.sh"

minutes=5; seed=""; rate=5; settle_timeout=300; output=text; keep=0; kinds="worker,broker,postgres,s3"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --settle-timeout) settle_timeout="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    --faults) kinds="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^source/{/^source/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "--minutes takes a number" >&2; exit 2; }
[[ "$output" =~ ^(text|json)$ ]] || { echo "--output takes text or json" >&2; exit 2; }
[[ ",$kinds," =~ ^(,(worker|broker|postgres|s3))+,$ ]] || { echo "--faults takes a list of worker, broker, postgres, s3" >&2; exit 2; }
wants() { [[ ",$kinds," == *",$1,"* ]]; }
[ -n "$seed" ] || seed=$(( (RANDOM << 15) | RANDOM ))
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "--seed takes a number" >&2; exit 2; }
ensure_python
duration="$(python3 -c "print(max(10, round(float('$minutes') * 60)))")"

# Everything this run starts, so that the trap can stop it.
work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-chaos.XXXXXX")"
chmod 755 "$work"  # the postgres user creates its cluster below it
writer_pid=""
declare -a wpid=() rest=()
services_started=0
started_at=$SECONDS

say() {
  local t=$(( SECONDS - started_at ))
  printf '[chaos %02d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*" >&2
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -z "$writer_pid" ] || kill -9 "$writer_pid" 2>/dev/null || true
  for pid in "${wpid[@]}"; do
    [ -z "$pid" ] || { kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; } || true
  done
  if [ "$services_started" = 1 ]; then
    "$SLUICE_ROOT/scripts/broker.sh" stop "$work/broker" --kill || true
    "$SLUICE_ROOT/scripts/s3.sh" stop "$work/s3" --kill || true
    "$SLUICE_ROOT/scripts/postgres.sh" stop "$work/pg" --kill >/dev/null 2>&1 || true
  fi
  if [ "$rc" = 0 ] && [ "$keep" = 0 ]; then
    rm -rf "$work"
  else
    log "files kept in $work (worker-N.log, faults.jsonl, writer.log, broker/, s3/, pg/)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- install and build -------------------------------------------------------------------------
"$SLUICE_ROOT/scripts/install-broker.sh" >/dev/null
"$SLUICE_ROOT/scripts/install-s3.sh" >/dev/null
"$SLUICE_ROOT/scripts/postgres.sh" install -
py="$("$SLUICE_ROOT/scripts/install-pytools.sh")"
if [ -n "${SLUICE_BIN:-}" ]; then
  sluice="$SLUICE_BIN"
else
  sluice="$(sluice_debug_binary)"
fi
psql="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql"
helper() { "$py" "$SLUICE_ROOT/scripts/chaos.py" "$@"; }
say "seed $seed, faults for $duration s, work dir $work"

# --- services ----------------------------------------------------------------------------------
services_started=1
bootstrap="$("$SLUICE_ROOT/scripts/broker.sh" start "$work/broker" sqlite)"
endpoint="$("$SLUICE_ROOT/scripts/s3.sh" start "$work/s3" chaos)"
pg_url="$("$SLUICE_ROOT/scripts/postgres.sh" start "$work/pg")"
pg_base="${pg_url%/postgres}"
source_url="$pg_base/chaos_source"; target_url="$pg_base/chaos_target"
"$psql" -X -q -d "$pg_url" -c "CREATE DATABASE chaos_source" -c "CREATE DATABASE chaos_target"
say "broker $bootstrap (sqlite), S3 $endpoint, Postgres $pg_base"
helper setup --psql "$psql" --source "$source_url" --target "$target_url" --bootstrap "$bootstrap"

# --- workers and connectors --------------------------------------------------------------------
start_worker() {
  local i=$1
  echo "--- started $(date -u +%FT%TZ)" >>"$work/worker-$i.log"
  SLUICE_LOG="${SLUICE_LOG:-info,librdkafka=warn,rdkafka=warn,pg_walstream::connection=warn}" \
    "$sluice" worker "$work/worker-$i.yaml" >>"$work/worker-$i.log" 2>&1 &
  wpid[$i]=$!
}
for i in 0 1 2; do
  port="$(free_port)"
  rest[$i]="http://127.0.0.1:$port"
  cat >"$work/worker-$i.yaml" <<YAML
bootstrap_servers: $bootstrap
data_dir: $work/worker-$i-data
offset_flush_interval: 1s
shutdown_timeout: 20s
# A SIGKILLed worker's sink consumers leave their groups within seconds, not librdkafka's 45 s.
consumer:
  session.timeout.ms: "6000"
  heartbeat.interval.ms: "1000"
cluster:
  group_id: chaos
  config_topic: chaos-configs
  offsets_topic: chaos-offsets
  status_topic: chaos-status
  offsets_partitions: 5
  heartbeat_interval: 1s
  session_timeout: 6s
  scheduled_rebalance_max_delay: 3s
rest:
  listen: 127.0.0.1:$port
YAML
  start_worker "$i"
done
helper health "${rest[@]}" --timeout 120
say "3 workers joined: ${rest[*]}"

{ read -r access; read -r secret; } <"$work/s3/credentials"
cat >"$work/pipelines.yaml" <<YAML
name: chaos-cdc
connector: postgres-cdc
config:
  url: $source_url
  slot: chaos_slot
  publication: chaos_pub
  tables: [public.accounts, public.orders]
  topic_prefix: chaos
  heartbeat_interval: 1s
  truncate_events: false
key_converter: {type: json, schemas: true}
value_converter: {type: json, schemas: true}
---
name: chaos-archive
connector: s3-sink
tasks: 2
config:
  topics: [chaos.public.accounts, chaos.public.orders]
  bucket: chaos
  endpoint: $endpoint
  path_style: true
  access_key_id: $access
  secret_access_key: $secret
  topics_dir: archive
  format: json
  flush_size: 50
  rotate_schedule_interval: 2s
key_converter: {type: bytes}
value_converter: {type: bytes}
---
name: chaos-replica
connector: postgres-sink
tasks: 2
config:
  topics: [chaos.public.accounts, chaos.public.orders]
  url: $target_url
  insert_mode: upsert
  delete_enabled: true
  topic_pattern: 'chaos\.public\.(.*)'
  table_name_format: '\${1}'
  batch_size: 200
key_converter: {type: json, schemas: true}
value_converter: {type: json, schemas: true}
YAML
for attempt in $(seq 30); do
  "$sluice" connectors --url "${rest[0]}" apply -f "$work/pipelines.yaml" >"$work/apply.log" 2>&1 && break
  [ "$attempt" = 30 ] && { cat "$work/apply.log" >&2; exit 1; }
  sleep 1
done
helper running --rest "${rest[@]}" --timeout 120
say "connectors running: chaos-cdc (postgres-cdc), chaos-archive (s3-sink, 2 tasks), chaos-replica (postgres-sink, 2 tasks)"

# --- the writer --------------------------------------------------------------------------------
"$py" "$SLUICE_ROOT/scripts/chaos.py" write --psql "$psql" --source "$source_url" --seed "$seed" \
  --rate "$rate" --stats "$work/writer.json" >"$work/writer.log" 2>&1 &
writer_pid=$!

# --- the fault plan ----------------------------------------------------------------------------
RANDOM=$seed
# Sets R to a random integer in [$1, $2] (no subshell, so the seeded sequence advances).
rand() { R=$(( $1 + RANDOM % ($2 - $1 + 1) )); }
plan=()
rand 10 25; t=$R
while wants worker && [ "$t" -lt $((duration - 8)) ]; do plan+=("$t worker"); rand 12 30; t=$((t + R)); done
per_service=$(( duration / 150 )); [ "$per_service" -ge 1 ] || per_service=1
for svc in broker postgres s3; do
  wants "$svc" || continue
  # One fault in each of per_service equal slices of 10%-85% of the run, so they never overlap.
  slice=$(( duration * 75 / 100 / per_service ))
  for k in $(seq 0 $((per_service - 1))); do
    rand 0 $(( slice > 10 ? slice - 10 : 0 )); plan+=("$(( duration / 10 + k * slice + R )) $svc")
  done
done
mapfile -t plan < <(printf '%s\n' "${plan[@]}" | sort -n)
say "fault plan: ${#plan[@]} faults (${plan[*]})"

declare -A down=()      # target -> time it comes back
fault() {  # records one fault as a JSON line
  local action=$1 target=$2 how=$3 t=$((SECONDS - fault_start))
  printf '{"t": %d, "time": "%s", "action": "%s", "target": "%s", "how": "%s"}\n' \
    "$t" "$(date -u +%FT%TZ)" "$action" "$target" "$how" >>"$work/faults.jsonl"
  say "fault: $action $target ($how)"
}
service_dir() { case "$1" in broker) echo "$work/broker" ;; postgres) echo "$work/pg" ;; s3) echo "$work/s3" ;; esac; }
service_script() { case "$1" in broker) echo broker.sh ;; postgres) echo postgres.sh ;; s3) echo s3.sh ;; esac; }

kill_worker() {
  local live=() i victim
  for i in 0 1 2; do [ -z "${down[worker-$i]:-}" ] && live+=("$i"); done
  [ ${#live[@]} -gt 0 ] || return 0
  rand 0 $(( ${#live[@]} - 1 )); victim=${live[$R]}
  kill -9 "${wpid[$victim]}" 2>/dev/null || true
  wait "${wpid[$victim]}" 2>/dev/null || true
  wpid[$victim]=""
  rand 2 10; down[worker-$victim]=$(( SECONDS - fault_start + R ))
  fault kill "worker-$victim" "SIGKILL, back in ${R}s"
}

stop_service() {
  local svc=$1 how flag
  [ -z "${down[$svc]:-}" ] || return 0
  rand 0 2
  if [ "$R" = 0 ]; then
    flag=""; how=$([ "$svc" = postgres ] && echo "pg_ctl stop -m fast" || echo SIGTERM)
  else
    flag="--kill"; how=$([ "$svc" = postgres ] && echo "pg_ctl stop -m immediate" || echo SIGKILL)
  fi
  "$SLUICE_ROOT/scripts/$(service_script "$svc")" stop "$(service_dir "$svc")" $flag >/dev/null 2>&1 || true
  rand 1 8; down[$svc]=$(( SECONDS - fault_start + R ))
  fault stop "$svc" "$how, back in ${R}s"
}

bring_back() {
  local target=$1
  case "$target" in
    worker-*) start_worker "${target#worker-}" ;;
    *) "$SLUICE_ROOT/scripts/$(service_script "$target")" restart "$(service_dir "$target")" >/dev/null 2>>"$work/restarts.log" ;;
  esac
  unset "down[$target]"
  fault restart "$target" "same port and data"
}

progress() {
  local stats="" kafka
  if [ -f "$work/writer.json" ]; then
    stats="$(sed -E 's/.*"transactions": ([0-9]+).*"failed": ([0-9]+).*/\1 tx (\2 failed)/' "$work/writer.json")"
  fi
  kafka="$(timeout 20 "$py" "$SLUICE_ROOT/scripts/chaos.py" progress --bootstrap "$bootstrap" 2>/dev/null || echo "broker unreachable")"
  local gone="${!down[*]}"
  say "$(( SECONDS - fault_start ))/${duration}s: writer ${stats:-starting} | $kafka | down: ${gone:-none}"
}

# --- the run -----------------------------------------------------------------------------------
fault_start=$SECONDS
: >"$work/faults.jsonl"
next=0; last_progress=0
while [ $((SECONDS - fault_start)) -lt "$duration" ]; do
  now=$((SECONDS - fault_start))
  while [ "$next" -lt ${#plan[@]} ] && [ "${plan[$next]%% *}" -le "$now" ]; do
    case "${plan[$next]#* }" in
      worker) kill_worker ;;
      *) stop_service "${plan[$next]#* }" ;;
    esac
    next=$((next + 1))
  done
  for target in "${!down[@]}"; do
    [ "${down[$target]}" -le "$now" ] && bring_back "$target"
  done
  kill -0 "$writer_pid" 2>/dev/null || { say "the writer died; its log:"; tail -20 "$work/writer.log" >&2; exit 1; }
  if [ $((now - last_progress)) -ge 10 ]; then progress; last_progress=$now; fi
  sleep 1
done
for target in "${!down[@]}"; do bring_back "$target"; done

say "faults over; stopping the writer (it writes an end marker last)"
kill -TERM "$writer_pid"
wait "$writer_pid" || true
writer_pid=""
helper health "${rest[@]}" --timeout 120
say "all workers healthy; waiting for the pipelines to settle (up to ${settle_timeout}s), then checking"

set +e
helper verify --psql "$psql" --source "$source_url" --target "$target_url" --bootstrap "$bootstrap" \
  --s3-endpoint "$endpoint" --s3-credentials "$work/s3/credentials" --rest "${rest[@]}" \
  --faults "$work/faults.jsonl" --writer-stats "$work/writer.json" --settle-timeout "$settle_timeout" \
  --output "$output" --minutes "$minutes" --seed "$seed"
rc=$?
set -e
say "done in $((SECONDS - started_at)) s"
exit "$rc"
