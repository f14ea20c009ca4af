#!/usr/bin/env bash
# Checks the Helm chart (helm/sluice) without a cluster, for every value set in helm/sluice/ci:
#   helm lint --strict (values checked against values.schema.json), helm template,
#   kubernetes-validate --strict (Kubernetes schemas, unknown fields rejected),
#   scripts/check_chart_manifests.py (selectors, ports, ${env:...} references given to the pods;
#   with REST TLS, probes and the pipelines Job over HTTPS trusting the mounted CA),
#   `sluice validate` on the rendered worker file and pipelines (debug build, built when absent).
# Then every file in helm/sluice/ci/invalid must fail `helm lint --strict`, with the text its
# `# expect:` line names in the output, so the schema provably rejects bad values.
# Last, scripts/check-chart-runtime.sh runs a worker from the rendered worker file and the hook
# Job's script against it. Installs helm and kubernetes-validate into ~/.cache/sluice/tools when
# missing. About 8 s when warm.
source "$(dirname "$0")/lib.sh"
ensure_python
tools="$("$SLUICE_ROOT/scripts/install-helm.sh")"
helm="$tools/helm"
python="$(dirname "$tools")/venv/bin/python"   # has PyYAML (a kubernetes-validate dependency)
sluice="$(sluice_debug_binary)"
chart="$SLUICE_ROOT/helm/sluice"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=0
problem() { log "chart check FAILED: $*"; failed=1; }

shopt -s nullglob
sets=("$chart"/ci/*.yaml)
[ ${#sets[@]} -gt 0 ] || { log "no value sets in $chart/ci"; exit 1; }
for values in "${sets[@]}"; do
  name="$(basename "$values" .yaml)"
  out="$work/$name"
  mkdir -p "$out"
  if ! "$helm" lint --strict --quiet "$chart" -f "$values" >"$out/lint.txt" 2>&1; then
    cat "$out/lint.txt" >&2; problem "$name: helm lint --strict"; continue
  fi
  if ! "$helm" template sluice-ci "$chart" --namespace sluice -f "$values" >"$out/rendered.yaml" 2>"$out/template.txt"; then
    cat "$out/template.txt" >&2; problem "$name: helm template"; continue
  fi
  if ! "$tools/kubernetes-validate" --strict --quiet "$out/rendered.yaml" >"$out/validate.txt" 2>&1 \
      || grep -q '^ERROR' "$out/validate.txt"; then
    cat "$out/validate.txt" >&2; problem "$name: kubernetes-validate --strict"; continue
  fi
  if ! "$python" "$SLUICE_ROOT/scripts/check_chart_manifests.py" "$out/rendered.yaml" "$out/files"; then
    problem "$name: rendered manifests"; continue
  fi
  # A *tls* set must render REST TLS (the manifests check above then holds the probes and the Job
  # to HTTPS with the CA).
  if [[ "$name" == *tls* ]] && ! grep -q 'cert_file:' "$out/files/worker.yaml"; then
    problem "$name: the worker file has no rest.tls"; continue
  fi
  files=("$out/files/worker.yaml")
  [ -f "$out/files/pipelines.yaml" ] && files+=("$out/files/pipelines.yaml")
  if ! (set -a; source "$out/files/env"; set +a; "$sluice" validate "${files[@]}") >"$out/sluice.txt" 2>&1; then
    cat "$out/sluice.txt" >&2; problem "$name: sluice validate of the rendered worker file/pipelines"; continue
  fi
  log "chart ok with $name: lint, template ($(grep -c '^kind:' "$out/rendered.yaml") objects), kubernetes-validate, selectors, sluice validate"
done

for values in "$chart"/ci/invalid/*.yaml; do
  name="$(basename "$values" .yaml)"
  expect="$(sed -n 's/^# expect: //p' "$values")"
  [ -n "$expect" ] || { problem "invalid/$name: no '# expect:' line"; continue; }
  if "$helm" lint --strict --quiet "$chart" -f "$values" >"$work/invalid.txt" 2>&1; then
    problem "invalid/$name: helm lint accepted values the schema should reject"
  elif ! grep -qF -- "$expect" "$work/invalid.txt"; then
    cat "$work/invalid.txt" >&2; problem "invalid/$name: lint failed without naming '$expect'"
  else
    log "chart rejects invalid/$name: $expect"
  fi
done
[ "$failed" = 0 ] || exit 1
"$SLUICE_ROOT/scripts/check-chart-runtime.sh"
