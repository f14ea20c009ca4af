//! `wasm`: datagen -> transform -> topic with a WebAssembly transform (the `redact` example
//! plugin) against the equivalent built-in transform (`MaskField$Value` with a replacement), same
//! machine, same run, alternating. Prints records/s of each (streaming: first to last record in
//! the topic), the CPU time sluice spends per record (all threads, same window), and the WASM
//! cost per record relative to the native one by both measures (target: at most 1.3). The CPU
//! measure is the steadier one on a shared machine: another tenant slows the clock, not the
//! work done per record.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;

use crate::{Output, Service, progress, repo, run, run_sluice_until, topic_size};

pub(crate) struct Options {
    pub(crate) records: u64,
    pub(crate) runs: usize,
    pub(crate) schemas: bool,
}

/// Writes the pipeline `name`: `records` datagen records through `transform` to `bench.<name>`.
fn pipeline(
    work: &Path,
    name: &str,
    transform: &str,
    records: u64,
    schemas: bool,
) -> Result<PathBuf> {
    let pipeline = work.join(format!("{name}.yaml"));
    std::fs::write(
        &pipeline,
        format!(
            "name: {name}\nconnector: datagen\nconfig: {{topic: bench.{name}, count: {records}, batch_size: 1000}}\n\
             value_converter: {{type: json, schemas: {schemas}}}\ntransforms:\n  - {transform}\n"
        ),
    )?;
    Ok(pipeline)
}

/// Records per second between the first and the last record reaching the topic, and CPU
/// microseconds per record over the same window.
fn timed(
    work: &Path,
    sluice: &Path,
    bootstrap: &str,
    name: &str,
    transform: &str,
    options: &Options,
) -> Result<(f64, f64)> {
    let topic = format!("bench.{name}");
    let pipeline = pipeline(work, name, transform, options.records, options.schemas)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let timed = run_sluice_until(
        sluice,
        &work.join("worker.yaml"),
        &pipeline,
        &work.join(format!("{name}.log")),
        options.records,
        "records in the topic",
        || topic_size(&consumer, &topic),
    )?;
    timed.first.context("no record seen")?;
    let cpu = timed
        .cpu_per_item(options.records)
        .context("cannot read sluice's CPU time from /proc")?;
    Ok((timed.streaming_rate(options.records), cpu))
}

pub(crate) fn bench(options: &Options, output: Output, sluice: &Path, work: &Path) -> Result<()> {
    progress("building the example plugins");
    let plugins = run(Command::new("bash").arg(repo().join("scripts/build-plugins.sh")))?;
    let plugin = Path::new(plugins.lines().last().context("plugins dir")?).join("redact.wasm");
    progress("starting a broker (memory engine)");
    let (_broker, bootstrap) =
        Service::start("scripts/broker.sh", &work.join("broker"), &["memory"])?;
    std::fs::write(
        work.join("worker.yaml"),
        format!(
            "bootstrap_servers: {bootstrap}\noffsets_file: {}\noffset_flush_interval: 1s\nrest: {{enabled: false}}\n",
            work.join("offsets.json").display()
        ),
    )?;
    let native =
        "{name: mask, type: MaskField$Value, fields: name, replacement: \"***\"}".to_owned();
    let wasm = format!(
        "{{name: mask, type: wasm, plugin: {}, fields: [name], replacement: \"***\"}}",
        plugin.display()
    );
    let (mut native_runs, mut wasm_runs) = (Vec::new(), Vec::new());
    for i in 0..options.runs {
        progress(&format!("run {}/{}: native MaskField", i + 1, options.runs));
        native_runs.push(timed(
            work,
            sluice,
            &bootstrap,
            &format!("native-{i}"),
            &native,
            options,
        )?);
        progress(&format!("run {}/{}: WASM redact", i + 1, options.runs));
        wasm_runs.push(timed(
            work,
            sluice,
            &bootstrap,
            &format!("wasm-{i}"),
            &wasm,
            options,
        )?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rates = |runs: &[(f64, f64)]| runs.iter().map(|r| r.0).collect::<Vec<_>>();
    let cpus = |runs: &[(f64, f64)]| runs.iter().map(|r| r.1).collect::<Vec<_>>();
    let (n, w) = (
        median(&mut rates(&native_runs)),
        median(&mut rates(&wasm_runs)),
    );
    let (n_cpu, w_cpu) = (
        median(&mut cpus(&native_runs)),
        median(&mut cpus(&wasm_runs)),
    );
    // Cost per record is 1/rate, so WASM cost relative to native is native rate / WASM rate.
    let ratio = n / w;
    let cpu_ratio = w_cpu / n_cpu;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"records": options.records, "runs": options.runs, "schemas": options.schemas,
                "native_records_per_s": n, "wasm_records_per_s": w, "wasm_cost_ratio": ratio,
                "native_cpu_us_per_record": n_cpu, "wasm_cpu_us_per_record": w_cpu,
                "wasm_cpu_cost_ratio": cpu_ratio,
                "native_runs": rates(&native_runs), "wasm_runs": rates(&wasm_runs),
                "native_cpu_runs": cpus(&native_runs), "wasm_cpu_runs": cpus(&wasm_runs)})
        ),
        Output::Text => {
            println!(
                "datagen -> transform -> topic, {} records, JSON schemas {}, median of {} runs each",
                options.records, options.schemas, options.runs
            );
            println!("  native MaskField$Value: {n:>10.0} records/s  {n_cpu:>6.2} CPU us/record");
            println!("  WASM redact plugin:     {w:>10.0} records/s  {w_cpu:>6.2} CPU us/record");
            println!(
                "  WASM cost per record / native: {cpu_ratio:.2} by CPU time, {ratio:.2} by records/s (target <= 1.3)"
            );
        }
    }
    Ok(())
}
