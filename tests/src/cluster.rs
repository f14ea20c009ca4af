//! A cluster of real `sluice worker` processes on the test broker, and a small client for their
//! REST API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{Sluice, bootstrap, unique};

/// One worker process and its REST URL.
pub struct Worker {
    pub name: String,
    pub url: String,
    pub process: Option<Sluice>,
    file: PathBuf,
    dir: PathBuf,
}

impl Worker {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// How often the task `connector`-`task` was started by this worker.
    pub fn task_starts(&self, connector: &str, task: u32) -> usize {
        let needle = format!("task{{connector={connector} task={task}}}");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&needle) && l.contains("task starting"))
            .count()
    }

    /// The worker id status records carry (host:port).
    pub fn id(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn kill_hard(&mut self) {
        if let Some(p) = self.process.take() {
            p.kill_hard();
        }
    }

    pub fn terminate(&mut self) -> bool {
        self.process.take().is_some_and(Sluice::terminate)
    }

    /// Starts the process again with the same file (same REST URL).
    pub fn restart(&mut self) {
        self.process = Some(Sluice::worker(&self.dir, &self.name, &self.file));
    }
}

/// Workers sharing one group and internal topics (unique per test).
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub group: String,
    pub workers: Vec<Worker>,
    pub settings: String,
    /// Extra top-level lines of the worker file, for workers added from now on.
    pub worker_extra: String,
    /// The workers' `offset_flush_interval` (short by default: tests wait less).
    pub offset_flush_interval: String,
}

impl Cluster {
    /// Starts `n` workers. `settings` are extra lines for the `cluster:` block.
    pub fn start(n: usize, settings: &str) -> Self {
        let mut cluster = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            group: unique("cluster"),
            workers: Vec::new(),
            settings: settings.to_owned(),
            worker_extra: String::new(),
            offset_flush_interval: "200ms".into(),
        };
        for _ in 0..n {
            cluster.add_worker();
        }
        cluster
    }

    /// Starts one more worker; returns its index.
    pub fn add_worker(&mut self) -> usize {
        let index = self.workers.len();
        let name = format!("worker-{index}");
        let port = crate::free_port();
        let file = self.dir.path().join(format!("{name}.yaml"));
        let group = &self.group;
        // Tests name files in the cluster's directory through the REST API.
        let allowed = if self.worker_extra.contains("allowed_paths:") {
            String::new()
        } else {
            format!("allowed_paths: [{}]\n", self.dir.path().display())
        };
        std::fs::write(
            &file,
            format!(
                "bootstrap_servers: {}\ndata_dir: {}\n{allowed}offset_flush_interval: {}\nshutdown_timeout: 20s\n\
                 cluster:\n  group_id: {group}\n  config_topic: {group}-configs\n  offsets_topic: {group}-offsets\n  \
                 status_topic: {group}-status\n  offsets_partitions: 5\n  heartbeat_interval: 1s\n  session_timeout: 6s\n  \
                 scheduled_rebalance_max_delay: 3s\n{}\nrest:\n  listen: 127.0.0.1:{port}\n{}\n",
                bootstrap(),
                self.dir.path().join(format!("{name}-data")).display(),
                self.offset_flush_interval,
                self.settings
                    .lines()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.worker_extra,
            ),
        )
        .expect("write worker file");
        let process = Sluice::worker(self.dir.path(), &name, &file);
        self.workers.push(Worker {
            name,
            url: format!("http://127.0.0.1:{port}"),
            process: Some(process),
            file,
            dir: self.dir.path().to_path_buf(),
        });
        index
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until every live worker answers `/health` as joined.
    pub async fn wait_healthy(&self) {
        for worker in self.workers.iter().filter(|w| w.process.is_some()) {
            let url = format!("{}/health", worker.url);
            wait_async("a worker to join", Duration::from_secs(90), || async {
                let r = reqwest::get(&url).await.ok()?;
                r.status().is_success().then_some(())
            })
            .await;
        }
    }

    /// Index of the live worker that leads the group (read off `/metrics`).
    pub async fn leader(&self) -> usize {
        wait_async("a leader", Duration::from_secs(60), || async {
            for (i, w) in self.workers.iter().enumerate() {
                if w.process.is_none() {
                    continue;
                }
                let text = reqwest::get(format!("{}/metrics", w.url))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                if leads(&text) {
                    return Some(i);
                }
            }
            None
        })
        .await
    }

    /// Waits until `connector` reports `tasks` tasks, all RUNNING, and returns its status.
    pub async fn wait_running(&self, via: usize, connector: &str, tasks: usize) -> Value {
        let url = format!("{}/connectors/{connector}/status", self.workers[via].url);
        wait_async(
            &format!("{connector} RUNNING with {tasks} tasks"),
            Duration::from_secs(90),
            || async {
                let status: Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
                let list = status["tasks"].as_array()?;
                let ok = status["connector"]["state"] == "RUNNING"
                    && list.len() == tasks
                    && list.iter().all(|t| t["state"] == "RUNNING");
                ok.then_some(status)
            },
        )
        .await
    }
}

/// Whether a worker's `/metrics` text says it leads its group.
pub fn leads(metrics: &str) -> bool {
    metrics
        .lines()
        .any(|l| l.starts_with("sluice_worker_is_leader{") && l.ends_with(" 1"))
}

/// Polls an async check every 200 ms until it returns `Some`, or panics after `limit`. A bound
/// on waiting, not a timing assertion.
pub async fn wait_async<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every task of connector `name` at the REST API `url` is RUNNING and was never restarted
/// (a task's status shows `restarts` only once it was).
pub async fn assert_never_restarted(url: &str, name: &str) {
    let (code, status) = call(
        reqwest::Method::GET,
        &format!("{url}/connectors/{name}/status"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{status}");
    let tasks = status["tasks"].as_array().expect("tasks");
    assert!(!tasks.is_empty(), "{status}");
    for task in tasks {
        assert_eq!(task["state"], "RUNNING", "{status}");
        assert!(task["restarts"].is_null(), "{status}");
    }
}

/// A REST call; returns the status code and the JSON body (Null when empty).
pub async fn call(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("REST request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| json!(text))
    };
    (status, body)
}

impl Drop for Cluster {
    /// A failed test keeps the workers' files and logs under `$TMPDIR/sluice-failed-<group>`.
    fn drop(&mut self) {
        for worker in &mut self.workers {
            worker.kill_hard();
        }
        if std::thread::panicking() {
            let keep = std::env::temp_dir().join(format!("sluice-failed-{}", self.group));
            if std::fs::create_dir_all(&keep).is_ok()
                && let Ok(entries) = std::fs::read_dir(self.dir.path())
            {
                for entry in entries.flatten() {
                    let _ = std::fs::copy(entry.path(), keep.join(entry.file_name()));
                }
                eprintln!("worker logs kept in {}", keep.display());
            }
        }
    }
}
