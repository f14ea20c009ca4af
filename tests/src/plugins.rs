//! The example WebAssembly plugins (`plugins/examples`), built once per test process by
//! `scripts/build-plugins.sh` (or taken from `SLUICE_TEST_PLUGINS`, which `scripts/test.sh` sets
//! after building them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The directory holding `redact.wasm`, `counter.wasm`, `log-sink.wasm` and `misbehave.wasm`.
pub fn dir() -> &'static Path {
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("SLUICE_TEST_PLUGINS").map(PathBuf::from)
            && dir.join("redact.wasm").exists()
        {
            return dir;
        }
        let out = Command::new(crate::repo_root().join("scripts/build-plugins.sh"))
            .current_dir(crate::repo_root())
            .output()
            .expect("run scripts/build-plugins.sh");
        assert!(
            out.status.success(),
            "scripts/build-plugins.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(|l| PathBuf::from(l.trim()))
            .expect("build-plugins.sh prints the plugins directory");
        assert!(
            dir.join("redact.wasm").exists(),
            "no redact.wasm in {}",
            dir.display()
        );
        dir
    })
}

/// The path of one example plugin, e.g. `path("redact")`.
pub fn path(name: &str) -> PathBuf {
    dir().join(format!("{name}.wasm"))
}
