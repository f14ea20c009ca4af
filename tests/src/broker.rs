//! One real nisshi broker per test process.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

static BOOTSTRAP: OnceLock<String> = OnceLock::new();

/// The bootstrap address of the test broker: `SLUICE_TEST_BOOTSTRAP` if set, otherwise a nisshi
/// started for this process (installed by `scripts/install-broker.sh` if missing).
pub fn bootstrap() -> &'static str {
    BOOTSTRAP.get_or_init(|| {
        let address = std::env::var("SLUICE_TEST_BOOTSTRAP").unwrap_or_else(|_| start());
        wait_ready(&address);
        address
    })
}

fn nisshi_path() -> PathBuf {
    let script = crate::repo_root().join("scripts/install-broker.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run install-broker.sh");
    assert!(out.status.success(), "scripts/install-broker.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

/// Starts nisshi from a thread that lives as long as the process, so the parent-death signal
/// (tied to the spawning thread) fires only when the test process ends.
fn start() -> String {
    let bin = nisshi_path();
    let port = crate::free_port();
    let address = format!("127.0.0.1:{port}");
    let dir = crate::service_dir("sluice-test-broker");
    let (tx, rx) = std::sync::mpsc::channel();
    let url = format!("tcp://{address}");
    std::thread::spawn(move || {
        let mut command = Command::new(bin);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://nisshi.db", "--silent"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut command);
        let child = command.spawn();
        let _ = tx.send(child.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if let Ok(mut child) = child {
            let _ = child.wait();
        }
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("broker thread").expect("start nisshi");
    address
}

#[allow(unsafe_code)]
pub(crate) fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn wait_ready(address: &str) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("log_level", "0")
        .create()
        .expect("metadata client");
    crate::wait_for(
        &format!("the broker at {address} to answer"),
        Duration::from_secs(60),
        || {
            consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .ok()
                .map(|_| ())
        },
    );
}
