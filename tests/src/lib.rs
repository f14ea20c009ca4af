//! Support for Sluice's integration tests: a real broker, the real `sluice` binary, and Kafka
//! clients to put data in and read it back. Nothing here is mocked.
//!
//! - [`broker`] starts one nisshi broker per test process (or uses `SLUICE_TEST_BOOTSTRAP`), and
//!   it dies with the process.
//! - [`Sluice`] runs `sluice run` as a child process, so tests can SIGKILL it.
//! - [`kafka`] creates topics, produces and reads whole topics back.
//! - [`plugins`] builds the example WebAssembly plugins.
//! - [`s3`] starts s3s-fs servers (and stops/restarts them for outages) and reads archives back.

pub mod broker;
pub mod cluster;
pub mod kafka;
pub mod plugins;
pub mod postgres;
mod process;
pub mod s3;

pub use broker::bootstrap;
pub use process::{Sluice, sluice_bin, unique};

use std::path::{Path, PathBuf};

/// A directory for a service a test process starts (a broker's or a database's data), named
/// `<prefix>-<pid>-...` in the temp dir and kept after the process ends (the service dies with
/// it). Directories of earlier test processes that are gone are removed first, so data of large
/// tests does not pile up.
pub(crate) fn service_dir(prefix: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-{}-", std::process::id()))
        .tempdir()
        .expect("temp dir")
        .keep()
}

/// Repository root (for configs and scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Writes a worker file for a test: the test broker, offsets in `dir`, fast flushes.
pub fn write_worker(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("worker.yaml");
    // The REST API on a port of the system's choosing: tests run many workers side by side.
    let rest = if extra.contains("rest:") {
        ""
    } else {
        "rest:\n  listen: 127.0.0.1:0\n"
    };
    let text = format!(
        "bootstrap_servers: {}\noffsets_file: {}\ndata_dir: {}\noffset_flush_interval: 100ms\nshutdown_timeout: 20s\n{rest}{extra}",
        bootstrap(),
        dir.join("offsets.json").display(),
        dir.join("data").display()
    );
    std::fs::write(&path, text).expect("write worker file");
    path
}

/// Serves `app` on `listener` from a thread of its own, with its own runtime, so that it keeps
/// answering whatever the test's runtime is doing.
pub fn serve_on(listener: std::net::TcpListener, app: axum::Router) {
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
}

/// Serves `app` on a free loopback port (see [`serve_on`]); returns its address.
pub fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("local addr");
    serve_on(listener, app);
    addr
}

/// A loopback port that was free a moment ago (for a REST API or a broker).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `limit`.
/// A bound on waiting, not a timing assertion: the tests assert on data.
pub fn wait_for<T>(
    what: &str,
    limit: std::time::Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
