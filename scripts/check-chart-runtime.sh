#!/usr/bin/env bash
# Runs what the chart renders against the real runtime, as far as it can be without Kubernetes:
# renders helm/sluice with ci/pipelines-values.yaml, starts a broker (memory engine) and one
# `sluice worker` from the rendered worker file with the environment the kubelet would give the
# pod (chart Secret decoded, pod IP 127.0.0.1), waits for GET /health (the readiness probe) to
# answer 200, then runs the pipelines hook Job's own shell script with the Job's environment
# (SLUICE_URL pointed at the worker instead of the Service's DNS name) and checks that every
# pipeline of the values became a connector, that a secret is not returned, and that a second run
# (an upgrade) succeeds too. About 6 s, mostly the worker group's first join.
source "$(dirname "$0")/lib.sh"
ensure_python
tools="$("$SLUICE_ROOT/scripts/install-helm.sh")"
python="$(dirname "$tools")/venv/bin/python"
sluice="$(sluice_debug_binary)"
chart="$SLUICE_ROOT/helm/sluice"
values="$chart/ci/pipelines-values.yaml"
work="$(mktemp -d)"
worker_pid=""
cleanup() {
  local status=$?
  # A throwaway worker on a memory broker: no clean stop needed (the http-sink's retries to an
  # unreachable endpoint would hold a SIGTERM stop for seconds).
  if [ -n "$worker_pid" ]; then kill -9 "$worker_pid" 2>/dev/null || true; wait "$worker_pid" 2>/dev/null || true; fi
  "$SLUICE_ROOT/scripts/broker.sh" stop "$work/broker" || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
fail() { log "chart runtime check FAILED: $*"; exit 1; }
load_env() { while IFS='=' read -r k v; do export "$k=$v"; done <"$1"; }

bootstrap="$("$SLUICE_ROOT/scripts/broker.sh" start "$work/broker" memory)"
port="$(free_port)"
"$tools/helm" template sluice-ci "$chart" --namespace sluice -f "$values" \
  --set "worker.bootstrap_servers=$bootstrap" --set "containerPort=$port" >"$work/rendered.yaml"
"$python" "$SLUICE_ROOT/scripts/check_chart_manifests.py" "$work/rendered.yaml" "$work/files"
# The pod listens on all interfaces; here only loopback.
sed -i "s/listen: 0.0.0.0:/listen: 127.0.0.1:/" "$work/files/worker.yaml"
mkdir -p "$work/bin" && ln -s "$sluice" "$work/bin/sluice"

(load_env "$work/files/pod.env"; cd "$work" && exec "$sluice" worker "$work/files/worker.yaml") \
  >"$work/worker.log" 2>&1 &
worker_pid=$!
url="http://127.0.0.1:$port"
"$python" - "$url/health" <<'PY' || { tail -20 "$work/worker.log" >&2; fail "GET /health never answered 200"; }
import sys, time, urllib.request
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
PY

# What the probes run when REST TLS is on (here over http): the worker is ready and live.
for probe in "" --live; do
  "$sluice" connectors --url "$url" health $probe >/dev/null || fail "sluice connectors health $probe failed"
done

apply() {
  (load_env "$work/files/job.env"; export SLUICE_URL="$url" PATH="$work/bin:$PATH"
   exec /bin/sh -c "$(sed "s|/etc/sluice/apply/|$work/files/|g" "$work/files/apply.sh")")
}
apply >"$work/apply1.txt" 2>&1 || { cat "$work/apply1.txt" >&2; fail "the Job's script failed"; }
apply >"$work/apply2.txt" 2>&1 || { cat "$work/apply2.txt" >&2; fail "the Job's script failed on a second run (upgrade)"; }

# The values give a REST token: the chart turns authentication on, and the Job's token works.
if "$sluice" connectors --url "$url" list >/dev/null 2>&1; then
  fail "the worker answered without a token"
fi
(load_env "$work/files/job.env"
 "$sluice" connectors --url "$url" --output json list >"$work/list.json"
 "$sluice" connectors --url "$url" --output json config orders-http >"$work/config.json") \
  || fail "the Job's token was refused"
"$python" - "$values" "$work/list.json" "$work/config.json" <<'PY' || fail "connectors do not match the values"
import json, sys, yaml
wanted = sorted(p["name"] for p in yaml.safe_load(open(sys.argv[1]))["pipelines"])
listed = json.load(open(sys.argv[2]))
names = sorted(listed if isinstance(listed, list) else listed.keys())
if names != wanted:
    sys.exit(f"connectors {names}, expected {wanted}")
config = open(sys.argv[3]).read()
if "sink-secret" in config:
    sys.exit("the REST API returned the pipeline secret")
PY
log "chart runtime ok: worker from the rendered file got ready; hook Job script created $(grep -c '^created ' "$work/apply1.txt") connector(s), then applied again"
