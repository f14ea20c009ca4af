#!/usr/bin/env bash
# Installs the s3s-fs S3-compatible server into the cache if it is not there yet; prints its path.
source "$(dirname "$0")/lib.sh"
ensure_cargo
if [ -x "$S3S_FS_BIN" ]; then
  echo "$S3S_FS_BIN"
  exit 0
fi
log "building s3s-fs $S3S_FS_VERSION (one time, about 4 minutes on 2 cores)"
CARGO_TARGET_DIR="$SLUICE_CACHE/s3s-fs-build" \
  cargo install --locked "s3s-fs@$S3S_FS_VERSION" --features binary --root "$S3S_FS_ROOT" >&2
rm -rf "$SLUICE_CACHE/s3s-fs-build"
echo "$S3S_FS_BIN"
