//! `s3`: archive a topic to S3 with `s3-sink`, against the two raw halves of the job on the same
//! machine in the same run: consuming the topic (rdkafka, nothing else) and PUTting the same
//! bytes the sink uploaded (aws-sdk-s3, objects of the same sizes, one at a time like one task).
//! All three rates are MB of topic data (keys + values) per second, so the ratio compares like
//! with like; the raw PUT's own throughput in bytes uploaded is printed too.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Output, Service, progress, run_sluice_until};

const BUCKET: &str = "bench";
const MB: f64 = 1_000_000.0;

pub(crate) struct Options {
    pub(crate) records: u64,
    pub(crate) value_size: usize,
    pub(crate) partitions: i32,
    pub(crate) format: String,
    pub(crate) flush_size: u64,
}

fn s3_client(endpoint: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(access, secret, None, None, "bench"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Objects under `prefix` with their sizes.
async fn list(client: &aws_sdk_s3::Client, prefix: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await?;
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| Some((o.key()?.to_owned(), o.size()? as u64))),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

fn committed(consumer: &BaseConsumer, topic: &str, partitions: i32) -> u64 {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    consumer
        .committed_offsets(list, Duration::from_secs(5))
        .map(|l| {
            l.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(o as u64),
                    _ => None,
                })
                .sum()
        })
        .unwrap_or(0)
}

pub(crate) fn run(options: &Options, output: Output, sluice: &Path, work: &Path) -> Result<()> {
    let Options {
        records,
        value_size,
        partitions,
        ..
    } = *options;
    let rt = tokio::runtime::Runtime::new()?;
    progress("starting a broker (memory engine) and an S3 server (s3s-fs)");
    let (_broker, bootstrap) =
        Service::start("scripts/broker.sh", &work.join("broker"), &["memory"])?;
    let s3_dir = work.join("s3");
    let (_s3, endpoint) = Service::start("scripts/s3.sh", &s3_dir, &[BUCKET])?;
    let credentials = std::fs::read_to_string(s3_dir.join("credentials"))?;
    let mut lines = credentials.lines();
    let (access, secret) = (
        lines.next().context("access key")?.to_owned(),
        lines.next().context("secret key")?.to_owned(),
    );
    let client = s3_client(&endpoint, &access, &secret);

    let topic = "bench.s3";
    progress(&format!(
        "producing {records} records of {value_size} bytes over {partitions} partitions"
    ));
    let volume = rt.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .create()?;
        let mut pending = Vec::new();
        let mut volume = 0u64;
        let value = vec![b'x'; value_size];
        for n in 0..records {
            let key = format!("key-{n:012}");
            volume += (key.len() + value.len()) as u64;
            let record = FutureRecord::to(topic)
                .partition((n % partitions as u64) as i32)
                .key(&key)
                .payload(&value);
            pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
            if pending.len() >= 50_000 {
                for d in pending.drain(..) {
                    d.await?.map_err(|(e, _)| e)?;
                }
            }
        }
        for d in pending {
            d.await?.map_err(|(e, _)| e)?;
        }
        anyhow::Ok(volume)
    })?;

    progress("raw consume: rdkafka reads the whole topic");
    let consume = {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "bench-raw")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&list)?;
        let started = Instant::now();
        let (mut n, mut bytes) = (0u64, 0u64);
        while n < records {
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                let m = m?;
                bytes +=
                    (m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len)) as u64;
                n += 1;
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!("raw consume gave up after {n} records");
            }
        }
        let elapsed = started.elapsed();
        if bytes != volume {
            bail!("raw consume read {bytes} bytes, produced {volume}");
        }
        elapsed
    };

    progress(&format!(
        "sluice: s3-sink ({}) until the group has committed every record",
        options.format
    ));
    std::fs::write(
        work.join("worker.yaml"),
        format!(
            "bootstrap_servers: {bootstrap}\noffsets_file: {}\noffset_flush_interval: 200ms\n",
            work.join("offsets.json").display()
        ),
    )?;
    // Sets close by count, so the archive completes when the last record arrives. Only when the
    // counts leave a partial last set does wall-clock rotation close it (and the wait for that
    // boundary is part of the measured time).
    let whole_sets = records % (partitions as u64 * options.flush_size) == 0;
    let schedule = if whole_sets {
        ""
    } else {
        progress(
            "records are not a multiple of partitions x flush_size: the last sets close on a 2 s schedule, which the measurement includes",
        );
        "  rotate_schedule_interval: 2s\n"
    };
    let pipeline = work.join("archive.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: archive\nconnector: s3-sink\nconfig:\n  bucket: {BUCKET}\n  endpoint: {endpoint}\n  path_style: true\n  \
             access_key_id: {access}\n  secret_access_key: {secret}\n  topics: [{topic}]\n  format: {}\n  flush_size: {}\n{}\
             key_converter: {{type: bytes}}\nvalue_converter: {{type: bytes}}\n",
            options.format, options.flush_size, schedule
        ),
    )?;
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "connect-archive")
        .set("enable.auto.commit", "false")
        .create()?;
    let timed = run_sluice_until(
        sluice,
        &work.join("worker.yaml"),
        &pipeline,
        &work.join("sluice.log"),
        records,
        "records archived and committed",
        || committed(&group, topic, partitions),
    )?;
    let (archive, startup) = (timed.total(), timed.startup());
    let first_done = timed.first.map_or(0, |(_, n)| n);

    let objects = rt.block_on(list(&client, "topics/"))?;
    let archived_bytes: u64 = objects.iter().map(|(_, s)| s).sum();
    progress(&format!(
        "raw PUT: {} objects of the same sizes ({:.1} MB), one at a time",
        objects.len(),
        archived_bytes as f64 / MB
    ));
    let put = rt.block_on(async {
        let started = Instant::now();
        for (i, (_, size)) in objects.iter().enumerate() {
            let body = bytes::Bytes::from(vec![b'y'; *size as usize]);
            client
                .put_object()
                .bucket(BUCKET)
                .key(format!("raw/{i:08}"))
                .body(body.into())
                .send()
                .await?;
        }
        anyhow::Ok(started.elapsed())
    })?;

    let rate = |d: Duration| volume as f64 / MB / d.as_secs_f64();
    let consume_rate = rate(consume);
    let put_rate = rate(put);
    let archive_rate = rate(archive);
    let streaming_rate = (records - first_done) as f64 / records as f64 * volume as f64
        / MB
        / (archive - startup).as_secs_f64().max(1e-9);
    let slower = consume_rate.min(put_rate);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "bench": "s3", "records": records, "value_size": value_size, "partitions": partitions,
                "format": options.format, "topic_mb": volume as f64 / MB, "archived_mb": archived_bytes as f64 / MB,
                "objects": objects.len(),
                "raw_consume": {"seconds": consume.as_secs_f64(), "mb_per_second": consume_rate},
                "raw_put": {"seconds": put.as_secs_f64(), "mb_per_second": put_rate,
                            "uploaded_mb_per_second": archived_bytes as f64 / MB / put.as_secs_f64()},
                "archive": {"seconds_incl_startup": archive.as_secs_f64(), "mb_per_second_incl_startup": archive_rate,
                            "mb_per_second_streaming": streaming_rate, "startup_seconds": startup.as_secs_f64()},
                "ratio_to_slower_raw_incl_startup": archive_rate / slower,
                "ratio_to_slower_raw_streaming": streaming_rate / slower,
            })
        ),
        Output::Text => {
            println!(
                "s3 benchmark: {records} records of {value_size} B over {partitions} partitions ({:.1} MB of keys+values), format {}; archive {:.1} MB in {} objects",
                volume as f64 / MB,
                options.format,
                archived_bytes as f64 / MB,
                objects.len()
            );
            println!(
                "  raw consume (rdkafka):            {consume_rate:>8.1} MB/s  ({:.2} s)",
                consume.as_secs_f64()
            );
            println!(
                "  raw S3 PUT of the archive bytes:  {put_rate:>8.1} MB/s of topic data  ({:.2} s, {:.1} MB/s uploaded)",
                put.as_secs_f64(),
                archived_bytes as f64 / MB / put.as_secs_f64()
            );
            println!(
                "  sluice s3-sink:                   {streaming_rate:>8.1} MB/s streaming; {archive_rate:.1} MB/s incl. {:.2} s start-up",
                startup.as_secs_f64()
            );
            println!(
                "  ratio to the slower raw one:      {:.2} streaming, {:.2} incl. start-up (target >= 0.80)",
                streaming_rate / slower,
                archive_rate / slower
            );
        }
    }
    Ok(())
}
