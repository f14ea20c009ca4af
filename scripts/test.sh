#!/usr/bin/env bash
# The test command: installs what is missing (the nisshi broker, the s3s-fs server, a Python venv
# with a third-party Kafka Connect REST client, the wasm32-wasip2 target and the example plugins;
# all cached under ~/.cache/sluice),
# then checks the Helm chart and the container image's layout and runs every test of the workspace.
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
