//! `sluice-bench`: Sluice against the raw baseline, same machine, same run, printing the ratio.
//!
//!   scripts/bench.sh cdc [--rows N] [--output json]
//!   scripts/bench.sh cluster [--runs N] [--output json]
//!   scripts/bench.sh wasm [--records N] [--runs N] [--schemas] [--output json]
//!   scripts/bench.sh s3 [--records N] [--value-size B] [--format json|parquet|bytes] [--output json]
//!
//! `cdc`: N rows are inserted (transactions of 10,000) into a table with two logical replication
//! slots on the same publication. `pg_recvlogical` decodes one slot to /dev/null (the walsender's
//! decoding speed, the physical limit); Sluice streams the other into a topic (JSON with schemas,
//! idempotent acks=all producer) and is timed until the topic holds all N events. Rates are
//! printed both for streaming (first to last event in the topic) and including start-up.
//!
//! `s3`: see [`s3`]: archive MB/s against raw consume and raw PUT of the same bytes.
//!
//! `wasm`: see [`wasm`]: records/s through a WASM transform against the built-in equivalent.

mod s3;

mod cluster;
mod wasm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use rdkafka::ClientConfig;
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
        #[arg(long, default_value_t = 3)]
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

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

pub(crate) fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

fn run(command: &mut Command) -> Result<String> {
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

fn psql(url: &str, sql: &str) -> Result<String> {
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

fn pg_bin(tool: &str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(tool)))
        .filter(|p| p.exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .with_context(|| format!("{tool} not found under /usr/lib/postgresql"))
}

fn topic_size(consumer: &BaseConsumer, topic: &str) -> u64 {
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

fn cdc(rows: u64, output: Output) -> Result<()> {
    let work = std::env::temp_dir().join(format!("sluice-bench-cdc-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
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
    progress("starting a broker (memory engine) and PostgreSQL");
    let (_broker, bootstrap) =
        Service::start("scripts/broker.sh", &work.join("broker"), &["memory"])?;
    let (_postgres, url) = Service::start("scripts/postgres.sh", &work.join("pg"), &[])?;

    psql(
        &url,
        "CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), created timestamptz DEFAULT now())",
    )?;
    psql(&url, "CREATE PUBLICATION bench_pub FOR TABLE bench")?;
    psql(
        &url,
        "SELECT pg_create_logical_replication_slot('raw_slot', 'pgoutput'), pg_create_logical_replication_slot('sluice_slot', 'pgoutput'), pg_create_logical_replication_slot('sluice_plain', 'pgoutput')",
    )?;
    progress(&format!("inserting {rows} rows in transactions of 10,000"));
    let mut script = String::new();
    let mut start = 0;
    while start < rows {
        let end = (start + 10_000).min(rows) - 1;
        script.push_str(&format!(
            "INSERT INTO bench (id, name, amount) SELECT g, 'customer-' || g, (g % 100000) / 100.0 FROM generate_series({start}, {end}) g;\n"
        ));
        start = end + 1;
    }
    std::fs::write(work.join("load.sql"), script)?;
    run(Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &url, "-f"])
        .arg(work.join("load.sql")))?;
    let end_lsn = psql(&url, "SELECT pg_current_wal_lsn()")?;

    progress("baseline: pg_recvlogical decoding the changes to /dev/null");
    let started = Instant::now();
    run(Command::new(pg_bin("pg_recvlogical")?)
        .args([
            "-d",
            &url,
            "--slot",
            "raw_slot",
            "--start",
            "--endpos",
            &end_lsn,
            "--no-loop",
        ])
        .args([
            "-o",
            "proto_version=1",
            "-o",
            "publication_names=bench_pub",
            "-f",
            "/dev/null",
        ]))?;
    let baseline = started.elapsed();

    std::fs::write(
        work.join("worker.yaml"),
        format!(
            "bootstrap_servers: {bootstrap}\noffsets_file: {}\noffset_flush_interval: 1s\nproducer: {{compression.type: lz4}}\nrest: {{listen: \"127.0.0.1:0\"}}\n",
            work.join("offsets.json").display()
        ),
    )?;
    let with_schemas =
        stream_with_sluice(&work, &sluice, &bootstrap, &url, "sluice_slot", true, rows)?;
    let plain = stream_with_sluice(
        &work,
        &sluice,
        &bootstrap,
        &url,
        "sluice_plain",
        false,
        rows,
    )?;

    let raw_rate = rows as f64 / baseline.as_secs_f64();
    let report = |run: &Run| {
        serde_json::json!({
            "seconds_incl_startup": run.total.as_secs_f64(),
            "rows_per_second_incl_startup": run.rate_incl_startup(rows),
            "rows_per_second_streaming": run.streaming_rate(rows),
            "ratio_incl_startup": run.rate_incl_startup(rows) / raw_rate,
            "ratio_streaming": run.streaming_rate(rows) / raw_rate,
        })
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "bench": "cdc", "rows": rows,
                "pg_recvlogical": {"seconds": baseline.as_secs_f64(), "rows_per_second": raw_rate},
                "sluice_json_schemas": report(&with_schemas),
                "sluice_json_plain": report(&plain),
            })
        ),
        Output::Text => {
            println!(
                "cdc benchmark, {rows} rows inserted in transactions of 10,000 (same WAL for all)"
            );
            println!(
                "  pg_recvlogical (decode to /dev/null):  {raw_rate:>9.0} rows/s  ({:.2} s)",
                baseline.as_secs_f64()
            );
            for (name, run) in [
                ("sluice, JSON with schemas (Debezium):", &with_schemas),
                ("sluice, JSON without schemas:", &plain),
            ] {
                println!(
                    "  {name:<38} {:>9.0} rows/s streaming, ratio {:.2} (target >= 0.80); {:.0} rows/s incl. {:.2} s start-up, ratio {:.2}",
                    run.streaming_rate(rows),
                    run.streaming_rate(rows) / raw_rate,
                    run.rate_incl_startup(rows),
                    run.startup.as_secs_f64(),
                    run.rate_incl_startup(rows) / raw_rate
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// One timed Sluice run.
struct Run {
    /// From process start to the last event in the topic.
    total: Duration,
    /// From process start to the first event in the topic.
    startup: Duration,
    /// Events already in the topic when the first one was seen.
    first_seen: u64,
}

impl Run {
    fn rate_incl_startup(&self, rows: u64) -> f64 {
        rows as f64 / self.total.as_secs_f64()
    }

    /// Rows per second between the first and the last event reaching the topic.
    fn streaming_rate(&self, rows: u64) -> f64 {
        (rows - self.first_seen) as f64 / (self.total - self.startup).as_secs_f64()
    }
}

/// Runs `sluice run` with postgres-cdc on `slot` until the topic holds `rows` events.
fn stream_with_sluice(
    work: &Path,
    sluice: &Path,
    bootstrap: &str,
    url: &str,
    slot: &str,
    schemas: bool,
    rows: u64,
) -> Result<Run> {
    progress(&format!(
        "sluice: postgres-cdc -> topic (JSON, schemas {schemas}), until the topic holds every row"
    ));
    let pipeline = work.join(format!("{slot}.yaml"));
    std::fs::write(
        &pipeline,
        format!(
            "name: {slot}\nconnector: postgres-cdc\nconfig:\n  url: {url}\n  slot: {slot}\n  publication: bench_pub\n  \
             tables: [public.bench]\n  topic_prefix: {slot}\n  snapshot_mode: never\n\
             key_converter: {{type: json, schemas: {schemas}}}\nvalue_converter: {{type: json, schemas: {schemas}}}\n"
        ),
    )?;
    let topic = format!("{slot}.public.bench");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let log = work.join(format!("{slot}.log"));
    let started = Instant::now();
    let mut child = Command::new(sluice)
        .arg("run")
        .arg(work.join("worker.yaml"))
        .arg(&pipeline)
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut last_report = Instant::now();
    let mut first: Option<(Duration, u64)> = None;
    let total = loop {
        let n = topic_size(&consumer, &topic);
        if n > 0 && first.is_none() {
            first = Some((started.elapsed(), n));
        }
        if n >= rows {
            break started.elapsed();
        }
        if let Some(status) = child.try_wait()? {
            bail!("sluice exited early ({status}); see {}", log.display());
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            progress(&format!("{n} / {rows} events in the topic"));
            last_report = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("gave up after 15 minutes with {n} of {rows} events");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let (startup, first_seen) = first.unwrap_or((total, 0));
    Ok(Run {
        total,
        startup,
        first_seen,
    })
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
            let sluice = std::env::current_exe()?
                .parent()
                .context("exe dir")?
                .join("sluice");
            let options = wasm::Options {
                records,
                runs: runs.max(1),
                schemas,
            };
            let result = wasm::bench(&options, cli.output, &sluice, &work);
            let _ = std::fs::remove_dir_all(&work);
            result
        }
        Bench::Cdc { rows } => cdc(rows, cli.output),
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
            let sluice = std::env::current_exe()?
                .parent()
                .context("exe dir")?
                .join("sluice");
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
