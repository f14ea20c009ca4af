//! `cluster`: how fast a distributed worker becomes ready, and how fast work moves when a worker
//! leaves, against the broker's own group protocol driven by plain rdkafka consumers (the raw
//! baseline: the same JoinGroup/SyncGroup round trips without Sluice).
//!
//! 1. start-up: process start -> REST answers, and -> joined (`/health` 200), median of runs;
//!    baseline: an rdkafka consumer subscribing until it holds its first assignment.
//! 2. rebalance: three workers run a 6-task connector; one stops (SIGTERM) or dies (SIGKILL);
//!    time until all 6 tasks are RUNNING on the others. Baseline: three consumers in one group
//!    on a 6-partition topic; one closes; time until the other two own all 6 partitions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

use crate::{Output, Service, progress};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18083)
}

struct Worker {
    child: Child,
    url: String,
}

impl Worker {
    fn start(bin: &Path, dir: &Path, bootstrap: &str, group: &str, name: &str) -> Result<Self> {
        let port = free_port();
        let file = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            format!(
                "bootstrap_servers: {bootstrap}\ncluster:\n  group_id: {group}\n  config_topic: {group}-configs\n  \
                 offsets_topic: {group}-offsets\n  status_topic: {group}-status\n  heartbeat_interval: 1s\n  \
                 session_timeout: 6s\n  scheduled_rebalance_max_delay: 0s\nrest:\n  listen: 127.0.0.1:{port}\n"
            ),
        )?;
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .arg("worker")
            .arg(&file)
            .env("SLUICE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start sluice worker")?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    fn id(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    fn signal(&mut self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(http: &reqwest::blocking::Client, url: &str) -> Option<(u16, Value)> {
    let r = http.get(url).timeout(Duration::from_secs(5)).send().ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().unwrap_or(Value::Null)))
}

fn wait<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("gave up waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn consumer(bootstrap: &str, group: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("log_level", "3")
        .create()?)
}

/// Baseline start-up: a consumer subscribes and polls until it holds an assignment.
fn raw_join(bootstrap: &str, topic: &str) -> Result<Duration> {
    let started = Instant::now();
    let c = consumer(bootstrap, &format!("raw-join-{}", std::process::id()))?;
    c.subscribe(&[topic])?;
    wait("a raw consumer assignment", Duration::from_secs(60), || {
        let _ = c.poll(Duration::from_millis(20));
        c.assignment().ok().filter(|a| a.count() > 0).map(|_| ())
    })?;
    Ok(started.elapsed())
}

/// Baseline rebalance: three consumers, one closes, until two own all partitions.
fn raw_leave(bootstrap: &str, topic: &str, partitions: usize) -> Result<Duration> {
    let group = format!("raw-leave-{}-{}", std::process::id(), partitions);
    let owned: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    let stop: Arc<Vec<Mutex<bool>>> = Arc::new((0..3).map(|_| Mutex::new(false)).collect());
    let mut threads = Vec::new();
    for i in 0..3 {
        let (owned, stop) = (owned.clone(), stop.clone());
        let c = consumer(bootstrap, &group)?;
        c.subscribe(&[topic])?;
        threads.push(std::thread::spawn(move || {
            loop {
                if *stop[i].lock().unwrap_or_else(|e| e.into_inner()) {
                    c.unsubscribe();
                    owned[i].store(0, Ordering::SeqCst);
                    return;
                }
                let _ = c.poll(Duration::from_millis(10));
                let n = c.assignment().map(|a| a.count()).unwrap_or(0);
                owned[i].store(n, Ordering::SeqCst);
            }
        }));
    }
    wait(
        "three raw consumers to share the topic",
        Duration::from_secs(60),
        || {
            let counts: Vec<usize> = owned.iter().map(|o| o.load(Ordering::SeqCst)).collect();
            (counts.iter().sum::<usize>() == partitions && counts.iter().all(|c| *c > 0))
                .then_some(())
        },
    )?;
    let started = Instant::now();
    *stop[0].lock().unwrap_or_else(|e| e.into_inner()) = true;
    wait(
        "two raw consumers to own everything",
        Duration::from_secs(60),
        || {
            (owned[1].load(Ordering::SeqCst) + owned[2].load(Ordering::SeqCst) == partitions)
                .then_some(())
        },
    )?;
    let took = started.elapsed();
    for s in stop.iter() {
        *s.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(took)
}

fn running_elsewhere(
    http: &reqwest::blocking::Client,
    via: &str,
    name: &str,
    gone: &str,
) -> Option<()> {
    let (_, s) = get(http, &format!("{via}/connectors/{name}/status"))?;
    let tasks = s["tasks"].as_array()?;
    (tasks.len() == 6
        && tasks
            .iter()
            .all(|t| t["state"] == "RUNNING" && t["worker_id"] != json!(gone)))
    .then_some(())
}

pub(crate) fn cluster(runs: usize, output: Output) -> Result<()> {
    let dir = tempfile_dir()?;
    let (_broker, bootstrap) = Service::start("scripts/broker.sh", &dir.join("broker"), &[])?;
    let bin = crate::sluice_binary()?;
    let http = reqwest::blocking::Client::new();
    let topic = format!("bench-cluster-{}", std::process::id());
    create_topic(&bootstrap, &topic, 6)?;

    // 1. start-up, each run a fresh worker joining a fresh group.
    let (mut rest_ready, mut joined, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        progress(&format!("start-up run {}/{runs}", run + 1));
        let group = format!("bench-start-{}-{run}", std::process::id());
        let started = Instant::now();
        let w = Worker::start(&bin, &dir, &bootstrap, &group, &format!("start-{run}"))?;
        wait("REST", Duration::from_secs(60), || {
            get(&http, &format!("{}/", w.url)).map(|_| ())
        })?;
        rest_ready.push(started.elapsed());
        wait("joined", Duration::from_secs(60), || {
            get(&http, &format!("{}/health", w.url))
                .filter(|(c, _)| *c == 200)
                .map(|_| ())
        })?;
        joined.push(started.elapsed());
        drop(w);
        raw.push(raw_join(&bootstrap, &topic)?);
    }

    // 2. rebalance when a worker leaves: graceful, then crash.
    let group = format!("bench-leave-{}", std::process::id());
    let mut workers: Vec<Worker> = (0..4)
        .map(|i| Worker::start(&bin, &dir, &bootstrap, &group, &format!("leave-{i}")))
        .collect::<Result<_>>()?;
    for w in &workers {
        wait("workers to join", Duration::from_secs(60), || {
            get(&http, &format!("{}/health", w.url))
                .filter(|(c, _)| *c == 200)
                .map(|_| ())
        })?;
    }
    let name = "bench-gen";
    let created = http
        .post(format!("{}/connectors", workers[0].url))
        .json(&json!({"name": name, "config": {"connector.class": "datagen", "tasks.max": "6", "topic": topic, "rate": "100"}}))
        .send()?;
    if !created.status().is_success() {
        bail!(
            "creating the benchmark connector failed: {}",
            created.text()?
        );
    }
    wait("6 tasks RUNNING", Duration::from_secs(90), || {
        running_elsewhere(&http, &workers[0].url, name, "")
    })?;
    progress("rebalance: a worker stops (SIGTERM)");
    let mut leaver = workers.remove(3);
    let gone = leaver.id();
    let started = Instant::now();
    leaver.signal("-TERM");
    wait("tasks to move", Duration::from_secs(120), || {
        running_elsewhere(&http, &workers[0].url, name, &gone)
    })?;
    let graceful = started.elapsed();
    progress("rebalance: a worker dies (SIGKILL)");
    let mut victim = workers.remove(2);
    let gone = victim.id();
    let started = Instant::now();
    victim.signal("-KILL");
    wait("tasks to move", Duration::from_secs(120), || {
        running_elsewhere(&http, &workers[0].url, name, &gone)
    })?;
    let crash = started.elapsed();
    drop(workers);
    progress("baseline: raw consumer group, one member leaves");
    let raw_leave = raw_leave(&bootstrap, &topic, 6)?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (rest_ready, joined, raw) = (median(rest_ready), median(joined), median(raw));
    let result = json!({
        "runs": runs,
        "startup_rest_ready_ms": ms(rest_ready),
        "startup_joined_ms": ms(joined),
        "raw_consumer_join_ms": ms(raw),
        "startup_join_ratio": ms(joined) / ms(raw),
        "rebalance_graceful_leave_ms": ms(graceful),
        "rebalance_crash_ms": ms(crash),
        "raw_consumer_leave_ms": ms(raw_leave),
        "rebalance_graceful_ratio": ms(graceful) / ms(raw_leave),
        "session_timeout_ms": 6000,
        "scheduled_rebalance_max_delay_ms": 0,
    });
    match output {
        Output::Json => println!("{result}"),
        Output::Text => {
            println!(
                "cluster benchmark (median of {runs} start-ups; nisshi broker on this machine)"
            );
            println!(
                "  start -> REST answering        {:>8.0} ms",
                ms(rest_ready)
            );
            println!("  start -> joined (/health 200)  {:>8.0} ms", ms(joined));
            println!(
                "  raw rdkafka consumer join      {:>8.0} ms   ratio {:.2}",
                ms(raw),
                ms(joined) / ms(raw)
            );
            println!(
                "  worker leaves (SIGTERM) -> 6 tasks RUNNING elsewhere {:>8.0} ms",
                ms(graceful)
            );
            println!(
                "  raw consumer leaves -> partitions owned by the rest {:>8.0} ms   ratio {:.2}",
                ms(raw_leave),
                ms(graceful) / ms(raw_leave)
            );
            println!(
                "  worker dies (SIGKILL) -> tasks moved {:>8.0} ms (bounded by session timeout 6000 ms + delay 0 ms)",
                ms(crash)
            );
        }
    }
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sluice-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = runtime.block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}
