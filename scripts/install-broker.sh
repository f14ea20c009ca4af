#!/usr/bin/env bash
# Installs the nisshi Kafka-protocol broker into the cache if it is not there yet; prints its path.
# nisshi needs rustc >= 1.96, so that toolchain is installed for it alone (the project itself
# builds with the machine's stable toolchain).
source "$(dirname "$0")/lib.sh"
ensure_cargo
if [ -x "$NISSHI_BIN" ]; then
  echo "$NISSHI_BIN"
  exit 0
fi
if ! rustup run "$NISSHI_TOOLCHAIN" rustc --version >/dev/null 2>&1; then
  log "installing Rust $NISSHI_TOOLCHAIN for the broker build"
  rustup toolchain install "$NISSHI_TOOLCHAIN" --profile minimal >&2
fi
log "building nisshi $NISSHI_VERSION (one time, about 8-13 minutes on 2 cores)"
CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_TARGET_DIR="$SLUICE_CACHE/nisshi-build" \
  cargo "+$NISSHI_TOOLCHAIN" install nisshi --version "=$NISSHI_VERSION" --locked \
  --no-default-features --features libsql,dynostore --root "$NISSHI_ROOT" >&2
rm -rf "$SLUICE_CACHE/nisshi-build"
echo "$NISSHI_BIN"
