#!/usr/bin/env bash
# Benchmarks: Sluice against the raw baseline on this machine, in one run, printing the ratio.
#   scripts/bench.sh cdc [--rows N] [--output json]
#   scripts/bench.sh cluster [--runs N] [--output json]
#   scripts/bench.sh wasm [--records N] [--runs N] [--schemas] [--output json]
#   scripts/bench.sh s3 [--records N] [--value-size B] [--format json|parquet|bytes] [--output json]
#   scripts/bench.sh pgsink [--rows N] [--runs N] [--batch-size N] [--output json]
source "$(dirname "$0")/lib.sh"
ensure_cargo
ensure_python
ensure_build_deps
"$SLUICE_ROOT/scripts/install-broker.sh" >/dev/null
"$SLUICE_ROOT/scripts/install-s3.sh" >/dev/null
cd "$SLUICE_ROOT"
log "building release binaries"
cargo build --release --quiet -p sluice -p sluice-bench --bins
exec "$CARGO_TARGET_DIR/release/sluice-bench" "$@"
