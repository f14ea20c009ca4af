//! `sluice-bench`: Sluice against the raw baseline, same machine, same run, printing the ratio.
//!
//!   scripts/bench.sh cdc [--rows N] [--runs N] [--compression lz4|none|..] [--output json]
//!   scripts/bench.sh cluster [--runs N] [--output json]
//!   scripts/bench.sh wasm [--records N] [--runs N] [--schemas] [--output json]
//!   scripts/bench.sh s3 [--records N] [--value-size B] [--format json|parquet|bytes] [--output json]
//!   scripts/bench.sh pgsink [--rows N] [--runs N] [--batch-size N] [--output json]
//!
//! `pgsink`: see [`pgsink`]: CDC events -> postgres-sink rows/s against `\copy` of the same rows.
//!
//! `cdc`: see [`cdc`]: WAL -> topic rows/s against `pg_recvlogical` decoding the same changes.
//!
//! `s3`: see [`s3`]: archive MB/s against raw consume and raw PUT of the same bytes.
//!
//! `wasm`: see [`wasm`]: records/s through a WASM transform against the built-in equivalent.

mod s3;

mod cdc;
mod cluster;
mod pgsink;
mod wasm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rdkafka::consumer::{BaseConsumer, Consumer};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
}

#[derive(Subcommand)]
enum Bench {
    /// Postgres CDC: WAL -> topic, against pg_recvlogical decoding the same changes.
    Cdc {
        /// Enough that each side runs for seconds: shorter runs swing by +-15% here.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Rounds of baseline and Sluice runs, interleaved; medians are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The producer's `compression.type`.
        #[arg(long, default_value = "lz4", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
        compression: String,
    },
    /// Postgres sink: CDC events in a topic -> postgres-sink (upsert), against `\copy` of the
    /// same rows into the same database.
    Pgsink {
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        /// Rounds of baseline and Sluice runs, interleaved; medians are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// postgres-sink's `batch_size` (records per transaction).
        #[arg(long, default_value_t = 1_000)]
        batch_size: u64,
    },
    /// Distributed mode: start-up to REST-ready and rebalance when a worker leaves, against
    /// plain rdkafka consumers in a group on the same broker.
    Cluster {
        /// Start-ups to take the median of.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// S3 archive: topic -> s3-sink, against raw consume and raw S3 PUT of the same bytes.
    S3 {
        /// A multiple of partitions x flush_size, so every file set closes by count.
        #[arg(long, default_value_t = 1_200_000)]
        records: u64,
        #[arg(long, default_value_t = 200)]
        value_size: usize,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value = "json", value_parser = ["json", "parquet", "bytes"])]
        format: String,
        #[arg(long, default_value_t = 100_000)]
        flush_size: u64,
    },
    /// WASM transform: datagen -> redact plugin -> topic, against datagen -> MaskField -> topic.
    Wasm {
        #[arg(long, default_value_t = 500_000)]
        records: u64,
        /// Timed runs of each, alternating; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// JSON with schemas (the WASM result is fitted back to the datagen schema).
        #[arg(long)]
        schemas: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// The `sluice` binary built beside this one (scripts/bench.sh builds both).
pub(crate) fn sluice_binary() -> Result<PathBuf> {
    let sluice = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .join("sluice");
    if !sluice.exists() {
        bail!(
            "{} is missing: run through scripts/bench.sh, which builds it",
            sluice.display()
        );
    }
    Ok(sluice)
}

pub(crate) fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

pub(crate) fn run(command: &mut Command) -> Result<String> {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!("{command:?} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A service started by a project script, stopped when dropped.
pub(crate) struct Service {
    script: &'static str,
    dir: PathBuf,
}

impl Service {
    pub(crate) fn start(
        script: &'static str,
        dir: &Path,
        extra: &[&str],
    ) -> Result<(Self, String)> {
        let address = run(Command::new("bash")
            .arg(repo().join(script))
            .arg("start")
            .arg(dir)
            .args(extra))?;
        Ok((
            Self {
                script,
                dir: dir.to_owned(),
            },
            address,
        ))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join(self.script))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

pub(crate) fn psql(url: &str, sql: &str) -> Result<String> {
    run(Command::new("psql").args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ]))
}

pub(crate) fn pg_bin(tool: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(tool)))
        .filter(|p| p.exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .with_context(|| format!("{tool} not found under /usr/lib/postgresql"))
}

/// When a timed `sluice run` started, first showed progress, and finished.
pub(crate) struct Timed {
    pub(crate) started: Instant,
    /// The first time `done` was above zero, and its value then.
    pub(crate) first: Option<(Instant, u64)>,
    pub(crate) end: Instant,
    /// CPU time sluice had used (all its threads) at the first progress and at the end.
    pub(crate) cpu: Option<(Duration, Duration)>,
}

impl Timed {
    /// From start to the end.
    pub(crate) fn total(&self) -> Duration {
        self.end - self.started
    }

    /// From start to the first progress (the whole run when there was none before the end).
    pub(crate) fn startup(&self) -> Duration {
        self.first.map_or(self.total(), |(at, _)| at - self.started)
    }

    /// Items per second between the first progress and the end.
    pub(crate) fn streaming_rate(&self, target: u64) -> f64 {
        let (at, seen) = self.first.unwrap_or((self.started, 0));
        (target - seen) as f64 / (self.end - at).as_secs_f64().max(1e-3)
    }

    /// CPU microseconds sluice spent per item between the first progress and the end (all
    /// threads; unlike the rate, not skewed by what else the machine runs).
    pub(crate) fn cpu_per_item(&self, target: u64) -> Option<f64> {
        let (at_first, at_end) = self.cpu?;
        let seen = self.first.map_or(0, |(_, n)| n);
        Some((at_end - at_first).as_secs_f64() * 1e6 / (target - seen).max(1) as f64)
    }
}

/// CPU time a process has used so far, summed over its threads (`/proc/<pid>/task/*/schedstat`,
/// nanoseconds on the CPU). `None` where that is not readable (not Linux).
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Runs `sluice run <worker> <pipeline>` (stderr to `log`) until `done()` reaches `target`
/// (`what` names the items in progress lines), then kills it.
pub(crate) fn run_sluice_until(
    sluice: &Path,
    worker: &Path,
    pipeline: &Path,
    log: &Path,
    target: u64,
    what: &str,
    mut done: impl FnMut() -> u64,
) -> Result<Timed> {
    let started = Instant::now();
    let mut child = Command::new(sluice)
        .arg("run")
        .arg(worker)
        .arg(pipeline)
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let mut first = None;
    let mut cpu_at_first = None;
    let mut cpu_at_end = None;
    let mut last_report = Instant::now();
    let outcome = loop {
        let n = done();
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
            cpu_at_first = process_cpu(child.id());
        }
        if n >= target {
            cpu_at_end = process_cpu(child.id());
            break Ok(Instant::now());
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!(
                "sluice exited early ({status}); see {}",
                log.display()
            ));
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            progress(&format!("{n} / {target} {what}"));
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(900) {
            break Err(anyhow::anyhow!(
                "gave up after 15 minutes with {n} of {target} {what}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(Timed {
        started,
        first,
        end: outcome?,
        cpu: cpu_at_first.zip(cpu_at_end),
    })
}

pub(crate) fn topic_size(consumer: &BaseConsumer, topic: &str) -> u64 {
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return 0;
    };
    let Some(t) = metadata.topics().first() else {
        return 0;
    };
    t.partitions()
        .iter()
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(5))
                .ok()
        })
        .map(|(low, high)| (high - low).max(0) as u64)
        .sum()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.bench {
        Bench::Wasm {
            records,
            runs,
            schemas,
        } => {
            let work =
                std::env::temp_dir().join(format!("sluice-bench-wasm-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            let sluice = sluice_binary()?;
            let options = wasm::Options {
                records,
                runs: runs.max(1),
                schemas,
            };
            let result = wasm::bench(&options, cli.output, &sluice, &work);
            let _ = std::fs::remove_dir_all(&work);
            result
        }
        Bench::Cdc {
            rows,
            runs,
            compression,
        } => cdc::bench(rows, runs.max(1), &compression, cli.output),
        Bench::Pgsink {
            rows,
            runs,
            batch_size,
        } => pgsink::bench(rows, runs.max(1), batch_size, cli.output),
        Bench::Cluster { runs } => cluster::cluster(runs, cli.output),
        Bench::S3 {
            records,
            value_size,
            partitions,
            format,
            flush_size,
        } => {
            let work = std::env::temp_dir().join(format!("sluice-bench-s3-{}", std::process::id()));
            std::fs::create_dir_all(&work)?;
            let sluice = sluice_binary()?;
            let options = s3::Options {
                records,
                value_size,
                partitions,
                format,
                flush_size,
            };
            let result = s3::run(&options, cli.output, &sluice, &work);
            let _ = std::fs::remove_dir_all(&work);
            result
        }
    }
}
