//! `cdc`: N rows are inserted (transactions of 10,000) into a table with one logical replication
//! slot per measured run on the same publication, so every run decodes the same WAL.
//! `pg_recvlogical` decodes a slot to /dev/null (the walsender's decoding speed, the physical
//! limit); Sluice streams another into a topic (JSON with and without schemas, idempotent
//! acks=all producer) and is timed until the topic holds all N events. Runs are interleaved
//! (baseline, with schemas, without) `runs` times and medians are reported, since one run on a
//! shared 2-core machine swings by +-10%. Rates are printed both for streaming (first to last
//! event in the topic) and including start-up.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::{Output, Service, Timed, pg_bin, progress, psql, run, run_sluice_until, topic_size};

pub(crate) fn bench(rows: u64, runs: usize, compression: &str, output: Output) -> Result<()> {
    let work = std::env::temp_dir().join(format!("sluice-bench-cdc-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench_in(&work, rows, runs, compression, output);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench_in(work: &Path, rows: u64, runs: usize, compression: &str, output: Output) -> Result<()> {
    let sluice = crate::sluice_binary()?;
    progress("starting a broker (memory engine) and PostgreSQL");
    let (_broker, bootstrap) =
        Service::start("scripts/broker.sh", &work.join("broker"), &["memory"])?;
    let (_postgres, url) = Service::start("scripts/postgres.sh", &work.join("pg"), &[])?;

    psql(
        &url,
        "CREATE TABLE bench (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), created timestamptz DEFAULT now())",
    )?;
    psql(&url, "CREATE PUBLICATION bench_pub FOR TABLE bench")?;
    let slots: Vec<String> = (0..runs)
        .flat_map(|i| {
            [
                format!("raw_{i}"),
                format!("schemas_{i}"),
                format!("plain_{i}"),
            ]
        })
        .collect();
    let create: Vec<String> = slots
        .iter()
        .map(|s| format!("pg_create_logical_replication_slot('{s}', 'pgoutput')"))
        .collect();
    psql(&url, &format!("SELECT {}", create.join(", ")))?;
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
    std::fs::write(
        work.join("worker.yaml"),
        format!(
            "bootstrap_servers: {bootstrap}\noffsets_file: {}\noffset_flush_interval: 1s\nproducer: {{compression.type: {compression}}}\nrest: {{listen: \"127.0.0.1:0\"}}\n",
            work.join("offsets.json").display()
        ),
    )?;

    let mut baseline = Vec::new();
    let mut with_schemas = Vec::new();
    let mut plain = Vec::new();
    for i in 0..runs {
        progress(&format!(
            "round {}/{runs}: pg_recvlogical decoding the changes to /dev/null",
            i + 1
        ));
        baseline.push(recvlogical(&url, &format!("raw_{i}"), &end_lsn)?);
        let sluice_run = |slot: &str, schemas| {
            stream_with_sluice(work, &sluice, &bootstrap, &url, slot, schemas, rows)
        };
        with_schemas.push(sluice_run(&format!("schemas_{i}"), true)?);
        plain.push(sluice_run(&format!("plain_{i}"), false)?);
        let raw = rows as f64 / baseline[i].as_secs_f64();
        progress(&format!(
            "round {}: pg_recvlogical {raw:.0} rows/s, with schemas {:.0} ({:.2}), without {:.0} ({:.2})",
            i + 1,
            with_schemas[i].streaming_rate(rows),
            with_schemas[i].streaming_rate(rows) / raw,
            plain[i].streaming_rate(rows),
            plain[i].streaming_rate(rows) / raw,
        ));
    }

    let raw_rate = median(baseline.iter().map(|d| rows as f64 / d.as_secs_f64()));
    let summary = |runs: &[Timed]| Summary {
        streaming: median(runs.iter().map(|r| r.streaming_rate(rows))),
        incl_startup: median(runs.iter().map(|r| rows as f64 / r.total().as_secs_f64())),
        startup: median(runs.iter().map(|r| r.startup().as_secs_f64())),
    };
    let with_schemas = summary(&with_schemas);
    let plain = summary(&plain);
    let report = |s: &Summary| {
        serde_json::json!({
            "rows_per_second_streaming": s.streaming,
            "rows_per_second_incl_startup": s.incl_startup,
            "startup_seconds": s.startup,
            "ratio_streaming": s.streaming / raw_rate,
            "ratio_incl_startup": s.incl_startup / raw_rate,
        })
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "bench": "cdc", "rows": rows, "runs": runs, "compression": compression,
                "pg_recvlogical": {"rows_per_second": raw_rate},
                "sluice_json_schemas": report(&with_schemas),
                "sluice_json_plain": report(&plain),
            })
        ),
        Output::Text => {
            println!(
                "cdc benchmark, {rows} rows inserted in transactions of 10,000 (same WAL for all), producer compression {compression}, median of {runs} rounds"
            );
            println!("  pg_recvlogical (decode to /dev/null):  {raw_rate:>9.0} rows/s");
            for (name, s) in [
                ("sluice, JSON with schemas (Debezium):", &with_schemas),
                ("sluice, JSON without schemas:", &plain),
            ] {
                println!(
                    "  {name:<38} {:>9.0} rows/s streaming, ratio {:.2} (target >= 0.80); {:.0} rows/s incl. {:.2} s start-up, ratio {:.2}",
                    s.streaming,
                    s.streaming / raw_rate,
                    s.incl_startup,
                    s.startup,
                    s.incl_startup / raw_rate
                );
            }
        }
    }
    Ok(())
}

/// Time for `pg_recvlogical` to decode `slot` up to `end_lsn` into /dev/null.
fn recvlogical(url: &str, slot: &str, end_lsn: &str) -> Result<Duration> {
    let started = Instant::now();
    run(Command::new(pg_bin("pg_recvlogical")?)
        .args(["-d", url, "--slot", slot, "--start", "--endpos", end_lsn])
        .args(["--no-loop", "-o", "proto_version=1"])
        .args(["-o", "publication_names=bench_pub", "-f", "/dev/null"]))?;
    Ok(started.elapsed())
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Medians over the runs of one Sluice configuration.
struct Summary {
    streaming: f64,
    incl_startup: f64,
    startup: f64,
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
) -> Result<Timed> {
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
    run_sluice_until(
        sluice,
        &work.join("worker.yaml"),
        &pipeline,
        &work.join(format!("{slot}.log")),
        rows,
        "events in the topic",
        || topic_size(&consumer, &topic),
    )
}
