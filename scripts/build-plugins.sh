#!/usr/bin/env bash
# Builds the example plugins (plugins/examples) to WebAssembly components and copies them to
# <out> (default: $PLUGINS_OUT or target/plugins under CARGO_TARGET_DIR's parent).
# Usage: scripts/build-plugins.sh [out-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_wasm_target
target_dir="${SLUICE_GUEST_TARGET_DIR:-$SLUICE_CACHE/guest-target}"
out="${1:-${PLUGINS_OUT:-$target_dir/plugins}}"
CARGO_TARGET_DIR="$target_dir" cargo build --quiet --manifest-path plugins/examples/Cargo.toml \
    --target wasm32-wasip2 --release
mkdir -p "$out/blocking"
for wasm in "$target_dir"/wasm32-wasip2/release/*.wasm; do
    name="$(basename "$wasm" .wasm)"
    name="${name//_/-}"
    # Plugins that block on load stay out of the plugins directory itself.
    case "$name" in
        blocking-*) cp "$wasm" "$out/blocking/$name.wasm" ;;
        *) cp "$wasm" "$out/$name.wasm" ;;
    esac
done
echo "$out"
