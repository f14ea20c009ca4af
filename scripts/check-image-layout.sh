#!/usr/bin/env bash
# Checks the container image's runtime layout without a Docker engine: assembles it with
# scripts/image-layout.sh from the debug build of `sluice` (built when absent), then, inside the
# tree, runs `sluice --version`, validates the default worker file and the example pipelines with
# an empty environment (as in a fresh container), and checks that the binary needs no shared
# library beyond those the Dockerfile's runtime stage installs. About a second when warm.
source "$(dirname "$0")/lib.sh"
binary="$(sluice_debug_binary)"
command -v readelf >/dev/null 2>&1 || {
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binutils >&2
}
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
SLUICE_LAYOUT_LINK=1 "$SLUICE_ROOT/scripts/image-layout.sh" "$tree" "$binary" >/dev/null
fail() { log "image layout: $*"; exit 1; }

version="$(grep -m1 '^version' "$SLUICE_ROOT/Cargo.toml" | cut -d'"' -f2)"
out="$(env -i PATH=/usr/bin:/bin "$tree/usr/local/bin/sluice" --version)" \
  || fail "usr/local/bin/sluice --version failed"
[ "$out" = "sluice $version" ] || fail "sluice --version printed '$out', expected 'sluice $version'"

(cd "$tree" && env -i PATH=/usr/bin:/bin ./usr/local/bin/sluice validate \
  etc/sluice/worker.yaml etc/sluice/pipelines/*.yaml >/dev/null) \
  || fail "the image's worker file or example pipelines do not validate"
for dir in usr/local/lib/sluice/plugins var/lib/sluice; do
  [ -d "$tree/$dir" ] || fail "$dir is missing"
done

# Libraries of debian:bookworm-slim itself (libc6, libgcc-s1) plus the packages the Dockerfile's
# runtime stage installs (libpq5, libssl3, zlib1g). A new one means the Dockerfile needs another package.
allowed=" libc.so.6 libm.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libpq.so.5 libssl.so.3 libcrypto.so.3 libz.so.1 "
while read -r lib; do
  case "$allowed" in
    *" $lib "*) ;;
    *) fail "sluice needs $lib, which the Dockerfile's runtime stage does not install" ;;
  esac
done < <(readelf -d "$tree/usr/local/bin/sluice" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
log "image layout ok: $out; worker file and example pipelines validate; shared libraries covered"
