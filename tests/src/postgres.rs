//! Real PostgreSQL clusters with `wal_level=logical` for tests: initdb into a temp dir, run the
//! server as the `postgres` user, and let it die with the test process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A throwaway cluster.
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    bin: PathBuf,
    wal_level: String,
    child: Mutex<Option<u32>>,
}

static SHARED: OnceLock<Postgres> = OnceLock::new();

/// The cluster shared by the tests of this process (each test uses its own database).
pub fn shared() -> &'static Postgres {
    SHARED.get_or_init(|| Postgres::start("logical"))
}

fn bin_dir() -> PathBuf {
    let find = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    };
    if let Some(dir) = find() {
        return dir;
    }
    // Installs the Debian packages when missing (the script knows how).
    let script = crate::repo_root().join("scripts/postgres.sh");
    let status = Command::new("bash")
        .arg(script)
        .args(["install", "/tmp"])
        .status()
        .expect("run postgres.sh");
    assert!(status.success(), "installing PostgreSQL failed");
    find().expect("PostgreSQL binaries after install")
}

fn postgres_ids() -> (u32, u32) {
    let out = Command::new("id")
        .arg("-u")
        .arg("postgres")
        .output()
        .expect("id -u postgres");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postgres uid");
    let out = Command::new("id")
        .arg("-g")
        .arg("postgres")
        .output()
        .expect("id -g postgres");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("postgres gid");
    (uid, gid)
}

impl Postgres {
    /// initdb + start a new cluster with this `wal_level`.
    pub fn start(wal_level: &str) -> Self {
        let bin = bin_dir();
        let dir = crate::service_dir("sluice-test-pg");
        let data = dir.join("data");
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success());
        let status = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb");
        assert!(status.success(), "initdb failed");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\nwal_level = {wal_level}\n\
             max_replication_slots = 20\nmax_wal_senders = 20\nmax_connections = 200\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba");
        let pg = Self {
            port,
            data,
            bin,
            wal_level: wal_level.to_owned(),
            child: Mutex::new(None),
        };
        pg.run();
        pg
    }

    /// Starts the server process (again), dying with this test process.
    fn run(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        let (bin, data) = (self.bin.join("postgres"), self.data.clone());
        std::thread::spawn(move || {
            let mut command = Command::new(bin);
            command
                .arg("-D")
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            as_postgres_dying_with_parent(&mut command);
            let child: std::io::Result<Child> = command.spawn();
            let _ = tx.send(child.as_ref().map(Child::id).map_err(|e| e.to_string()));
            if let Ok(mut child) = child {
                let _ = child.wait();
            }
            loop {
                std::thread::park();
            }
        });
        let pid = rx.recv().expect("postgres thread").expect("start postgres");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        crate::wait_for(
            "postgres to accept connections",
            Duration::from_secs(60),
            || {
                Command::new(self.bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                    .status()
                    .ok()
                    .filter(|s| s.success())
            },
        );
    }

    /// Stops the server (fast shutdown) and starts it again on the same port.
    pub fn restart(&self, down_for: Duration) {
        if let Some(pid) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            #[allow(unsafe_code)]
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(pid as i32, libc::SIGINT);
            }
            crate::wait_for("postgres to stop", Duration::from_secs(60), || {
                #[allow(unsafe_code)]
                // SAFETY: signal 0 only checks that the process exists.
                let alive = unsafe { libc::kill(pid as i32, 0) } == 0 && !is_zombie(pid);
                (!alive).then_some(())
            });
        }
        std::thread::sleep(down_for);
        self.run();
    }

    pub fn wal_level(&self) -> &str {
        &self.wal_level
    }

    /// URL of a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL through psql (fails the test on error); returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(database),
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql failed: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A new empty database with a unique name.
    pub fn database(&self, prefix: &str) -> String {
        let name = crate::unique(prefix).replace('-', "_");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    f.write_all(text.as_bytes()).expect("write postgresql.conf");
}

#[allow(unsafe_code)]
fn as_postgres_dying_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let (uid, gid) = postgres_ids();
    // SAFETY: only async-signal-safe calls between fork and exec. The death signal is set after
    // the user change, which would clear it.
    unsafe {
        command.pre_exec(move || {
            if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
