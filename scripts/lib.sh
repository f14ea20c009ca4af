# Shared settings for Sluice's scripts. Source it; do not run it.
# Everything installed or built is cached outside the clone, so warm runs are fast.
set -euo pipefail

SLUICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLUICE_CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SLUICE_CACHE/target}"

NISSHI_VERSION="0.8.1"
NISSHI_TOOLCHAIN="1.96.0"
NISSHI_ROOT="$SLUICE_CACHE/tools/nisshi-$NISSHI_VERSION"
NISSHI_BIN="$NISSHI_ROOT/bin/nisshi"

# s3s-fs: an S3-compatible server over a directory (0.15+ need a newer rustc than 1.95).
S3S_FS_VERSION="0.14.1"
S3S_FS_ROOT="$SLUICE_CACHE/tools/s3s-fs-$S3S_FS_VERSION"
S3S_FS_BIN="$S3S_FS_ROOT/bin/s3s-fs"

log() { printf '[sluice] %s\n' "$*" >&2; }

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits (up to 30 s) until nothing listens on loopback PORT any more, so a service restarted
# after a kill can bind it again (SO_REUSEADDR, as servers bind: connections in TIME_WAIT do not
# count).
wait_port_free() {
  python3 - "$1" <<'PY' || { log "port $1 is still taken"; return 1; }
import socket, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
    finally:
        s.close()
sys.exit(1)
PY
}

ensure_python() {
  command -v python3 >/dev/null 2>&1 && return
  log "installing python3 (used to wait for services)"
  apt-get update -qq && apt-get install -y -qq python3 >/dev/null
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || { log "cargo is required (rustup toolchain)"; exit 1; }
}

# C libraries the build links (libpq for the Postgres replication connection, OpenSSL for
# librdkafka).
ensure_build_deps() {
  local missing=()
  dpkg -s libpq-dev >/dev/null 2>&1 || missing+=(libpq-dev)
  # librdkafka with TLS and SASL/SCRAM (rdkafka feature `ssl`) links the system OpenSSL.
  dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# The WebAssembly target the example plugins build for.
ensure_wasm_target() {
  ensure_cargo
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 && return
  log "installing the wasm32-wasip2 target (rustup)"
  rustup target add wasm32-wasip2 >&2
}

# The debug build of the `sluice` binary, brought up to date (the integration tests build the
# same one, so this costs nothing extra); prints its path.
sluice_debug_binary() {
  ensure_cargo
  ensure_build_deps
  log "building sluice (debug)"
  (cd "$SLUICE_ROOT" && cargo build --quiet --locked -p sluice --bin sluice >&2)
  echo "$CARGO_TARGET_DIR/debug/sluice"
}
