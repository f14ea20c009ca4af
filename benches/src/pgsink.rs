//! `pgsink`: N rows of a Postgres table are captured once by postgres-cdc into a topic (Debezium
//! envelopes, JSON with schemas: what the sink reads in a CDC pipeline; not timed). Then, in the
//! same database, the baseline `\copy`s the same rows (exported to CSV beforehand) into an empty
//! copy of the table, and Sluice's postgres-sink upserts the topic into another empty copy,
//! timed from start until the table holds N rows. Runs are interleaved `runs` times; medians
//! are reported, with the ratio Sluice / COPY.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::{Output, Service, Timed, progress, psql, run, run_sluice_until, topic_size};

const TABLE: &str = "(id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), \
    created timestamptz, flag bool, tags text[], doc jsonb)";

pub(crate) fn bench(rows: u64, runs: usize, batch_size: u64, output: Output) -> Result<()> {
    let work = std::env::temp_dir().join(format!("sluice-bench-pgsink-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = bench_in(&work, rows, runs, batch_size, output);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn bench_in(work: &Path, rows: u64, runs: usize, batch_size: u64, output: Output) -> Result<()> {
    let sluice = crate::sluice_binary()?;
    progress("starting a broker (memory engine) and PostgreSQL");
    let (_broker, bootstrap) =
        Service::start("scripts/broker.sh", &work.join("broker"), &["memory"])?;
    let (_postgres, url) = Service::start("scripts/postgres.sh", &work.join("pg"), &[])?;
    psql(&url, &format!("CREATE TABLE source {TABLE}"))?;
    progress(&format!("inserting {rows} rows"));
    psql(
        &url,
        &format!(
            "INSERT INTO source SELECT g, 'customer-' || g, (g % 100000) / 100.0, \
             timestamptz '2024-01-01 00:00:00+00' + g * interval '1.5 second', g % 2 = 0, \
             ARRAY['t' || (g % 10), 'all'], jsonb_build_object('n', g, 'k', 'v') \
             FROM generate_series(1, {rows}) g"
        ),
    )?;
    let csv = work.join("rows.csv");
    psql(
        &url,
        &format!("\\copy source TO '{}' WITH (FORMAT csv)", csv.display()),
    )?;
    std::fs::write(
        work.join("worker.yaml"),
        format!(
            "bootstrap_servers: {bootstrap}\noffsets_file: {}\noffset_flush_interval: 1s\nrest: {{listen: \"127.0.0.1:0\"}}\n",
            work.join("offsets.json").display()
        ),
    )?;

    progress("postgres-cdc: snapshot of the table into the topic (not timed)");
    let topic = "bench.public.source";
    let cdc = work.join("cdc.yaml");
    std::fs::write(
        &cdc,
        format!(
            "name: bench_cdc\nconnector: postgres-cdc\nconfig:\n  url: {url}\n  slot: bench\n  publication: bench_pub\n  \
             tables: [public.source]\n  topic_prefix: bench\n  snapshot_mode: initial_only\n\
             key_converter: {{type: json, schemas: true}}\nvalue_converter: {{type: json, schemas: true}}\n"
        ),
    )?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    run_sluice_until(
        &sluice,
        &work.join("worker.yaml"),
        &cdc,
        &work.join("cdc.log"),
        rows,
        "events in the topic",
        || topic_size(&consumer, topic),
    )?;

    let mut baseline = Vec::new();
    let mut sink = Vec::new();
    for i in 0..runs {
        progress(&format!(
            "round {}/{runs}: \\copy of the CSV into an empty table",
            i + 1
        ));
        let copy_table = format!("copy_{i}");
        psql(&url, &format!("CREATE TABLE {copy_table} {TABLE}"))?;
        let started = Instant::now();
        psql(
            &url,
            &format!(
                "\\copy {copy_table} FROM '{}' WITH (FORMAT csv)",
                csv.display()
            ),
        )?;
        baseline.push(started.elapsed());
        psql(&url, &format!("DROP TABLE {copy_table}"))?;

        progress(&format!(
            "round {}/{runs}: sluice postgres-sink (upsert, batch_size {batch_size}) until the table holds every row",
            i + 1
        ));
        let table = format!("sink_{i}");
        psql(&url, &format!("CREATE TABLE {table} {TABLE}"))?;
        sink.push(sink_run(
            work, &sluice, &url, topic, &table, rows, batch_size,
        )?);
        let expected = psql(
            &url,
            "SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM source s",
        )?;
        let got = psql(
            &url,
            &format!("SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM {table} s"),
        )?;
        if got != expected {
            bail!("{table} does not hold the same rows as the source table");
        }
        psql(&url, &format!("DROP TABLE {table}"))?;
        let copy_rate = rows as f64 / baseline[i].as_secs_f64();
        progress(&format!(
            "round {}: COPY {copy_rate:.0} rows/s, postgres-sink {:.0} rows/s ({:.2})",
            i + 1,
            sink[i].streaming_rate(rows),
            sink[i].streaming_rate(rows) / copy_rate
        ));
    }

    let copy_rate = median(baseline.iter().map(|d| rows as f64 / d.as_secs_f64()));
    let streaming = median(sink.iter().map(|r| r.streaming_rate(rows)));
    let incl_startup = median(sink.iter().map(|r| rows as f64 / r.total().as_secs_f64()));
    let startup = median(sink.iter().map(|r| r.startup().as_secs_f64()));
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "bench": "pgsink", "rows": rows, "runs": runs, "batch_size": batch_size,
                "copy": {"rows_per_second": copy_rate},
                "sluice_postgres_sink": {
                    "rows_per_second_streaming": streaming,
                    "rows_per_second_incl_startup": incl_startup,
                    "startup_seconds": startup,
                    "ratio_streaming": streaming / copy_rate,
                    "ratio_incl_startup": incl_startup / copy_rate,
                },
            })
        ),
        Output::Text => {
            println!(
                "pgsink benchmark, {rows} rows (bigint key, text, numeric, timestamptz, bool, text[], jsonb), median of {runs} rounds"
            );
            println!("  psql \\copy of the same rows (CSV):       {copy_rate:>9.0} rows/s");
            println!(
                "  sluice postgres-sink (CDC events, upsert): {streaming:>9.0} rows/s streaming, ratio {:.2}; {incl_startup:.0} rows/s incl. {startup:.2} s start-up, ratio {:.2}",
                streaming / copy_rate,
                incl_startup / copy_rate
            );
        }
    }
    Ok(())
}

/// Runs `sluice run` with postgres-sink from `topic` into `table` until it holds `rows` rows.
fn sink_run(
    work: &Path,
    sluice: &Path,
    url: &str,
    topic: &str,
    table: &str,
    rows: u64,
    batch_size: u64,
) -> Result<Timed> {
    let pipeline = work.join(format!("{table}.yaml"));
    std::fs::write(
        &pipeline,
        format!(
            "name: bench_{table}\nconnector: postgres-sink\nconfig:\n  topics: [{topic}]\n  url: {url}\n  \
             table_name_format: {table}\n  insert_mode: upsert\n  batch_size: {batch_size}\n\
             key_converter: {{type: json, schemas: true}}\nvalue_converter: {{type: json, schemas: true}}\n"
        ),
    )?;
    // A count costs a psql process: ask at most every 200 ms.
    let mut last = (Instant::now() - Duration::from_secs(1), 0u64);
    run_sluice_until(
        sluice,
        &work.join("worker.yaml"),
        &pipeline,
        &work.join(format!("{table}.log")),
        rows,
        "rows in the table",
        || {
            if last.0.elapsed() >= Duration::from_millis(200) {
                let n = run(Command::new("psql").args([
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-d",
                    url,
                    "-c",
                    &format!("SELECT count(*) FROM {table}"),
                ]))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(last.1);
                last = (Instant::now(), n);
            }
            last.1
        },
    )
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
