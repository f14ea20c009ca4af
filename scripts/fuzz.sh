#!/usr/bin/env bash
# Fuzzes config parsing, the converters, pgoutput and column texts, S3 archives, WASM batches,
# REST auth input and member metadata for a bounded time: `scripts/fuzz.sh [seconds]` (per
# target, default 60). Stable toolchain, no cargo-fuzz (see fuzz/src/lib.rs). Saved inputs under
# fuzz/regressions/ are replayed first; a crash, an input past the memory cap or the per-input
# time limit is saved under fuzz/crashes/ and fails the run. Address space is capped too
# (`ulimit -v`), should the allocator's cap be bypassed (C code).
source "$(dirname "$0")/lib.sh"
ensure_cargo
ensure_build_deps
seconds="${1:-60}"
cd "$SLUICE_ROOT/fuzz"
# The main workspace's lock file, so the fuzz build uses the same dependency versions.
cp "$SLUICE_ROOT/Cargo.lock" Cargo.lock
log "building the fuzz targets"
cargo build --quiet --bins
targets=(config converters pgoutput s3-archive wasm-batch auth member-metadata)
for target in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/debug/fuzz-$target"
  shopt -s nullglob
  saved=(regressions/"$target"-*)
  shopt -u nullglob
  if [ ${#saved[@]} -gt 0 ]; then
    (ulimit -v 8388608; "$bin" --replay "${saved[@]}")
  fi
  log "fuzzing $target for ${seconds}s"
  (ulimit -v 8388608; "$bin" "$seconds")
done
