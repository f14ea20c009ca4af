//! `wasm`: datagen -> transform -> topic with a WebAssembly transform (the `redact` example
//! plugin) against the equivalent built-in transform (`MaskField$Value` with a replacement), same
//! machine, same run, alternating. Prints records/s of each (streaming: first to last record in
//! the topic) and the WASM cost per record relative to the native one (target: at most 1.3).

use std::path::Path;
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

/// Records per second between the first and the last record reaching the topic.
fn timed(
    work: &Path,
    sluice: &Path,
    bootstrap: &str,
    name: &str,
    transform: &str,
    options: &Options,
) -> Result<f64> {
    let topic = format!("bench.{name}");
    let pipeline = work.join(format!("{name}.yaml"));
    std::fs::write(
        &pipeline,
        format!(
            "name: {name}\nconnector: datagen\nconfig: {{topic: {topic}, count: {}, batch_size: 1000}}\n\
             value_converter: {{type: json, schemas: {}}}\ntransforms:\n  - {transform}\n",
            options.records, options.schemas
        ),
    )?;
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
    Ok(timed.streaming_rate(options.records))
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
    let (mut native_rates, mut wasm_rates) = (Vec::new(), Vec::new());
    for i in 0..options.runs {
        progress(&format!("run {}/{}: native MaskField", i + 1, options.runs));
        native_rates.push(timed(
            work,
            sluice,
            &bootstrap,
            &format!("native-{i}"),
            &native,
            options,
        )?);
        progress(&format!("run {}/{}: WASM redact", i + 1, options.runs));
        wasm_rates.push(timed(
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
    let (n, w) = (median(&mut native_rates), median(&mut wasm_rates));
    // Cost per record is 1/rate, so WASM cost relative to native is native rate / WASM rate.
    let ratio = n / w;
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"records": options.records, "runs": options.runs, "schemas": options.schemas,
                "native_records_per_s": n, "wasm_records_per_s": w, "wasm_cost_ratio": ratio,
                "native_runs": native_rates, "wasm_runs": wasm_rates})
        ),
        Output::Text => {
            println!(
                "datagen -> transform -> topic, {} records, JSON schemas {}, median of {} runs each",
                options.records, options.schemas, options.runs
            );
            println!("  native MaskField$Value: {n:>10.0} records/s");
            println!("  WASM redact plugin:     {w:>10.0} records/s");
            println!("  WASM cost per record / native: {ratio:.2} (target <= 1.3)");
        }
    }
    Ok(())
}
