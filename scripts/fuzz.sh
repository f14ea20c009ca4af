#!/usr/bin/env bash
# Fuzzes config parsing and the converters for a bounded time: `scripts/fuzz.sh [seconds]`
# (per target, default 60). Stable toolchain, no cargo-fuzz (see fuzz/src/lib.rs). Saved inputs
# under fuzz/regressions/ are replayed first; a new crash is saved under fuzz/crashes/ and fails
# the run.
source "$(dirname "$0")/lib.sh"
ensure_cargo
ensure_build_deps
seconds="${1:-60}"
cd "$SLUICE_ROOT/fuzz"
# The main workspace's lock file, so the fuzz build uses the same dependency versions.
cp "$SLUICE_ROOT/Cargo.lock" Cargo.lock
log "building the fuzz targets"
cargo build --quiet --bins
for target in config converters; do
  bin="$CARGO_TARGET_DIR/debug/fuzz-$target"
  shopt -s nullglob
  saved=(regressions/"$target"-*)
  shopt -u nullglob
  if [ ${#saved[@]} -gt 0 ]; then
    "$bin" --replay "${saved[@]}"
  fi
  log "fuzzing $target for ${seconds}s"
  "$bin" "$seconds"
done
