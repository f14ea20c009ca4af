#!/usr/bin/env bash
# Assembles the container image's runtime filesystem under <out-dir>: exactly what the Dockerfile
# copies into its runtime stage, so the layout can be built and checked without a Docker engine
# (scripts/check-image-layout.sh runs it in the tests).
#   usr/local/bin/sluice             the binary (default: the release build under CARGO_TARGET_DIR)
#   etc/sluice/worker.yaml           the default worker file (configs/image/worker.yaml)
#   etc/sluice/pipelines/*.yaml      the example pipeline files (configs/pipelines)
#   usr/local/lib/sluice/plugins/    plugins_dir of the default worker file (*.wasm of [plugins-dir])
#   var/lib/sluice/                  the data dir (SLUICE_DATA_DIR); the image makes it the user's
# SLUICE_LAYOUT_LINK=1 hard-links the binary instead of copying it (same file system only).
# Usage: scripts/image-layout.sh <out-dir> [sluice-binary] [plugins-dir]
source "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] && [ $# -le 3 ] || {
  echo "usage: scripts/image-layout.sh <out-dir> [sluice-binary] [plugins-dir]" >&2
  exit 2
}
out="$1"
binary="${2:-$CARGO_TARGET_DIR/release/sluice}"
plugins="${3:-}"
[ -x "$binary" ] || { log "no sluice binary at $binary (cargo build --release -p sluice)"; exit 1; }
if [ -n "$plugins" ] && [ ! -d "$plugins" ]; then
  log "plugins dir $plugins does not exist"; exit 1
fi

install -d -m 0755 "$out/usr/local/bin" "$out/etc/sluice/pipelines" \
  "$out/usr/local/lib/sluice/plugins" "$out/var/lib/sluice"
rm -f "$out/usr/local/bin/sluice"
if [ "${SLUICE_LAYOUT_LINK:-0}" = 1 ] && ln "$binary" "$out/usr/local/bin/sluice" 2>/dev/null; then
  :
else
  install -m 0755 "$binary" "$out/usr/local/bin/sluice"
fi
install -m 0644 "$SLUICE_ROOT/configs/image/worker.yaml" "$out/etc/sluice/worker.yaml"
install -m 0644 "$SLUICE_ROOT"/configs/pipelines/*.yaml "$out/etc/sluice/pipelines/"
if [ -n "$plugins" ]; then
  shopt -s nullglob
  for wasm in "$plugins"/*.wasm; do
    install -m 0644 "$wasm" "$out/usr/local/lib/sluice/plugins/"
  done
fi
echo "$out"
