//! The real `sluice` binary as a child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

static BIN: OnceLock<PathBuf> = OnceLock::new();

/// Path of the `sluice` binary next to this test executable, built (or brought up to date)
/// once per test process with the same cargo, profile and target directory.
pub fn sluice_bin() -> &'static Path {
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        // <target>/<profile>/deps/integration-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("profile dir")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "sluice", "--bin", "sluice"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        // Cargo's per-package variables for this test crate are watched by some build scripts
        // (ring's): passed on, they would make this build recompile those crates every run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || key.starts_with("CARGO_BIN_")
                || matches!(
                    &*key,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                build.env_remove(&*key);
            }
        }
        let status = build
            .current_dir(crate::repo_root())
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build -p sluice failed");
        profile_dir.join("sluice")
    })
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running `sluice run` process; killed when dropped.
pub struct Sluice {
    child: Child,
    pub log: PathBuf,
}

impl Sluice {
    /// Starts `sluice run <worker> <pipelines...>`, logging to `<dir>/sluice-<n>.log`.
    pub fn run(dir: &Path, worker: &Path, pipelines: &[&Path]) -> Self {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let log = dir.join(format!(
            "sluice-{}.log",
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(sluice_bin())
            .arg("run")
            .arg(worker)
            .args(pipelines)
            .env(
                "SLUICE_LOG",
                "info,librdkafka=warn,rdkafka=warn,pg_walstream::connection=warn",
            )
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start sluice");
        Self { child, log }
    }

    /// Starts `sluice worker <worker>` (distributed mode), logging to `<dir>/<name>.log`.
    pub fn worker(dir: &Path, name: &str, worker: &Path) -> Self {
        Self::worker_with_env(dir, name, worker, &[])
    }

    /// [`worker`](Self::worker) with extra environment variables.
    pub fn worker_with_env(dir: &Path, name: &str, worker: &Path, env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(sluice_bin())
            .arg("worker")
            .arg(worker)
            .envs(env.iter().copied())
            .env("SLUICE_LOG", "info,librdkafka=warn,rdkafka=warn")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start sluice worker");
        Self { child, log }
    }

    /// SIGKILL: no flush, no commit, as in a crash.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        #[allow(unsafe_code)]
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Waits (bounded) for the process to exit by itself; returns its success.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> bool {
        let status = crate::wait_for("sluice to exit", limit, || {
            self.child.try_wait().ok().flatten()
        });
        status.success()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
