#!/usr/bin/env bash
# The test command: installs what is missing (the nisshi broker, the s3s-fs server, a Python venv
# with third-party Kafka Connect REST, Kafka and S3 clients, the wasm32-wasip2 target and the
# example plugins; all cached under ~/.cache/sluice),
# then checks the Helm chart and the container image's layout, runs every test of the workspace and
# a 2-minute chaos run (scripts/chaos.sh; SLUICE_CHAOS_MINUTES sets its length, 0 skips it).
# Tests start their own broker; nothing needs to be running.
source "$(dirname "$0")/lib.sh"
ensure_cargo
ensure_python
ensure_build_deps
log "broker: $("$SLUICE_ROOT/scripts/install-broker.sh")"
log "s3 server: $("$SLUICE_ROOT/scripts/install-s3.sh")"
log "python clients: $("$SLUICE_ROOT/scripts/install-pytools.sh")"
cd "$SLUICE_ROOT"
SLUICE_TEST_PLUGINS="$("$SLUICE_ROOT/scripts/build-plugins.sh")"
export SLUICE_TEST_PLUGINS
log "plugins: $SLUICE_TEST_PLUGINS"
"$SLUICE_ROOT/scripts/check-chart.sh"         # lint, render, validate helm/sluice; ~8 s warm
"$SLUICE_ROOT/scripts/check-image-layout.sh"  # the container image's tree runs `sluice --version`
log "plugin SDK unit tests (native, every world)"
cargo test --quiet --locked --manifest-path plugins/sdk/Cargo.toml --features transform,source,sink
log "cargo test --workspace (target dir $CARGO_TARGET_DIR)"
cargo test --workspace --locked "$@"
chaos_minutes="${SLUICE_CHAOS_MINUTES:-2}"
if [ "$chaos_minutes" != 0 ]; then
  log "chaos run: scripts/chaos.sh --minutes $chaos_minutes (workers SIGKILLed, broker, Postgres and S3 restarted)"
  "$SLUICE_ROOT/scripts/chaos.sh" --minutes "$chaos_minutes"
fi
