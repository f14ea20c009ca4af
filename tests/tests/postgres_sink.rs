//! postgres-sink against a real PostgreSQL and a real broker: a postgres-cdc -> topics ->
//! postgres-sink round trip into a second database under load and SIGKILLs, flat records with
//! upserts and tombstone deletes, auto-create and auto-evolve from record schemas.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use sluice_tests::postgres::{self, Postgres};
use sluice_tests::{Sluice, kafka, unique, wait_for, write_worker};

/// Writes a `postgres-sink` pipeline (JSON keys and values with schemas unless `extra` sets
/// converters) into `dir`.
fn sink_pipeline(dir: &Path, name: &str, topic: &str, url: &str, extra: &str) -> PathBuf {
    let converters = if extra.contains("value_converter") {
        ""
    } else {
        "key_converter: {type: json, schemas: true}\nvalue_converter: {type: json, schemas: true}\n"
    };
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {name}\nconnector: postgres-sink\nconfig:\n  topics: [{topic}]\n  url: {url}\n{extra}{converters}"
        ),
    )
    .expect("write pipeline");
    path
}

/// Every row of `table` as Postgres prints it, in key order.
fn rows(pg: &Postgres, db: &str, table: &str) -> Vec<String> {
    pg.psql(db, &format!("SELECT t::text FROM {table} t ORDER BY id"))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn count(pg: &Postgres, db: &str, table: &str) -> i64 {
    pg.psql(db, &format!("SELECT count(*) FROM {table}"))
        .parse()
        .unwrap_or(0)
}

const ITEMS: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (
  id int8 PRIMARY KEY, small int2, big int8, price numeric(12,2), free numeric, ratio float8,
  f4 float4, flag bool, name text, label varchar(20), data bytea, uid uuid, doc jsonb, doc2 json,
  day date, t time, ts timestamp, tstz timestamptz, tags text[], nums int4[], feeling mood)";

/// Rows `from..=to` with every type, some nulls, quotes, backslashes and non-ASCII text.
/// Timestamps and times carry milliseconds: Kafka Connect's Timestamp and Time logical types
/// (what postgres-cdc writes) hold no more.
fn insert(from: i64, to: i64) -> String {
    format!(
        r#"INSERT INTO items SELECT g, (g % 30000)::int2, g::int8 * 1000000007, round(g * 1.01, 2),
  CASE WHEN g % 5 = 0 THEN NULL ELSE g / 7.0 END, g / 3.0, (g / 4.0)::float4, g % 2 = 0,
  'name ' || g || ' "q" \ é', 'lbl' || (g % 100),
  CASE WHEN g % 6 = 0 THEN NULL ELSE decode(lpad(to_hex(g), 8, '0'), 'hex') END,
  md5(g::text)::uuid, jsonb_build_object('g', g, 'list', jsonb_build_array('a', g, null)),
  ('{{"n": ' || g || ',  "sp": true}}')::json, date '2000-01-01' + g::int4,
  time '00:00' + (g % 80000) * interval '1.001 second',
  timestamp '2020-01-01' + g * interval '61.001 second',
  timestamptz '2020-01-01 00:00:00+00' + g * interval '1.234567 second',
  ARRAY['x' || g, NULL, 'y "z" \'], ARRAY[g::int4, -1], (ARRAY['sad','ok','happy'])[g % 3 + 1]::mood
FROM generate_series({from}, {to}) g"#
    )
}

/// One transaction of load: inserts, updates and deletes of earlier rows, and one key
/// inserted, updated, deleted and inserted again.
fn round(r: i64) -> String {
    let start = r * 200;
    format!(
        "BEGIN;
{};
UPDATE items SET name = 'upd ' || id || ' round {r}', price = price + 1, tags = ARRAY['u'], doc = NULL, flag = NULL
  WHERE id % 7 = {m7} AND id < {start};
DELETE FROM items WHERE id % 11 = {m11} AND id % 3 = 0 AND id < {start} - 100;
INSERT INTO items (id, name) VALUES ({k}, 'tmp');
UPDATE items SET name = 'tmp2', nums = '{{1}}' WHERE id = {k};
DELETE FROM items WHERE id = {k};
INSERT INTO items (id, name, nums) VALUES ({k}, 'final', '{{}}');
COMMIT;",
        insert(start, start + 199),
        m7 = r % 7,
        m11 = r % 11,
        k = 1_000_000 + r,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cdc_round_trip_under_load_and_sigkills_ends_identical() {
    let pg = postgres::shared();
    let source = pg.database("sink_src");
    let target = pg.database("sink_dst");
    pg.psql(&source, ITEMS);
    pg.psql(&target, ITEMS);
    pg.psql(&source, &insert(1, 300));

    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique("rt").replace('-', "_");
    let slot = format!("slot_{}", prefix.trim_start_matches("rt_"));
    let topic = format!("{prefix}.public.items");
    kafka::create_topic(&topic, 2).await;
    let cdc_dir = dir.path().join("cdc");
    std::fs::create_dir_all(&cdc_dir).expect("dir");
    let cdc_worker = write_worker(&cdc_dir, "");
    let cdc_pipeline = cdc_dir.join("cdc.yaml");
    std::fs::write(
        &cdc_pipeline,
        format!(
            "name: {prefix}\nconnector: postgres-cdc\nconfig:\n  url: {}\n  slot: {slot}\n  publication: pub_{slot}\n  \
             tables: [public.items]\n  topic_prefix: {prefix}\n  heartbeat_interval: 500ms\n  truncate_events: false\n\
             key_converter: {{type: json, schemas: true}}\nvalue_converter: {{type: json, schemas: true}}\n",
            pg.url(&source)
        ),
    )
    .expect("write cdc pipeline");
    let cdc = Sluice::run(&cdc_dir, &cdc_worker, &[&cdc_pipeline]);

    let sink_dir = dir.path().join("sink");
    std::fs::create_dir_all(&sink_dir).expect("dir");
    let sink_worker = write_worker(&sink_dir, "");
    let name = format!("{prefix}_sink");
    let sink_pipeline = sink_pipeline(
        &sink_dir,
        &name,
        &topic,
        &pg.url(&target),
        &format!(
            "  topic_pattern: '{prefix}\\.public\\.(.*)'\n  table_name_format: '${{1}}'\n  batch_size: 300\n"
        ),
    );
    let mut sink = Sluice::run(&sink_dir, &sink_worker, &[&sink_pipeline]);

    // The load runs while the sink is killed twice.
    let url = pg.url(&source);
    let writer = std::thread::spawn(move || {
        for r in 2..40 {
            let status = std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    &url,
                    "-c",
                    &round(r),
                ])
                .status()
                .expect("psql");
            assert!(status.success(), "load round {r} failed");
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    for kill in 1..=2 {
        let seen = count(pg, &target, "items");
        wait_for(
            "the sink to write more rows",
            Duration::from_secs(180),
            || (count(pg, &target, "items") > seen + 150).then_some(()),
        );
        std::thread::sleep(Duration::from_millis(100 * kill));
        sink.kill_hard();
        sink = Sluice::run(&sink_dir, &sink_worker, &[&sink_pipeline]);
    }
    writer.join().expect("writer");

    let expected = rows(pg, &source, "items");
    assert!(expected.len() > 4000, "load too small: {}", expected.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut got = rows(pg, &target, "items");
    while got != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        got = rows(pg, &target, "items");
    }
    let group = format!("connect-{name}");
    let caught_up = {
        let (group, topic) = (group.clone(), topic.clone());
        tokio::task::spawn_blocking(move || {
            wait_for(
                "the sink offsets to be committed",
                Duration::from_secs(60),
                || kafka::caught_up(&group, &topic).then_some(()),
            )
        })
    };
    caught_up.await.expect("offsets");
    let sink_log = sink.log_text();
    assert!(sink.terminate());
    assert!(cdc.terminate());
    let first_difference = expected
        .iter()
        .zip(&got)
        .find(|(e, g)| e != g)
        .map(|(e, g)| format!("source: {e}\ntarget: {g}"));
    assert_eq!(
        got.len(),
        expected.len(),
        "row counts differ; first difference: {first_difference:?}\n{sink_log}"
    );
    assert!(
        first_difference.is_none(),
        "rows differ:\n{}",
        first_difference.unwrap_or_default()
    );
    // Spot checks that the comparison covers what it claims.
    let sample = pg.psql(
        &target,
        "SELECT price, free, data, uid, doc2, ts, tstz, tags, nums FROM items WHERE id = 13",
    );
    assert!(sample.contains("\\x0000000d"), "{sample}");
    assert_eq!(
        pg.psql(&target, "SELECT name FROM items WHERE id = 1000005"),
        "final"
    );
}

async fn produce_raw(topic: &str, records: &[(&str, Option<&str>)]) {
    let producer = kafka::producer();
    for (key, value) in records {
        let mut record = FutureRecord::<str, str>::to(topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn flat_records_upsert_and_tombstones_delete() {
    let pg = postgres::shared();
    let db = pg.database("sink_flat");
    pg.psql(&db, "CREATE TABLE flat (id bigint PRIMARY KEY, name text, qty int, seen timestamptz DEFAULT now())");
    let topic = unique("flat");
    kafka::create_topic(&topic, 1).await;
    produce_raw(
        &topic,
        &[
            ("1", Some(r#"{"name": "a", "qty": 1}"#)),
            ("2", Some(r#"{"name": "b", "qty": 2}"#)),
            ("1", Some(r#"{"name": "a2", "qty": 10}"#)),
            ("2", None),
            ("3", Some(r#"{"name": "c", "qty": 3}"#)),
            ("4", Some(r#"{"name": "d", "qty": 4}"#)),
            ("4", None),
            ("4", Some(r#"{"name": "d again", "qty": 44}"#)),
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = write_worker(dir.path(), "");
    let name = unique("flat_sink").replace('-', "_");
    let pipeline = sink_pipeline(
        dir.path(),
        &name,
        &topic,
        &pg.url(&db),
        "  table_name_format: flat\n  primary_key_fields: [id]\n\
         key_converter: {type: json, schemas: false}\nvalue_converter: {type: json, schemas: false}\n",
    );
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let group = format!("connect-{name}");
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(
            "the sink to commit every record",
            Duration::from_secs(120),
            || kafka::caught_up(&group, &t).then_some(()),
        )
    })
    .await
    .expect("caught up");
    let rows = pg.psql(&db, "SELECT id, name, qty FROM flat ORDER BY id");
    assert_eq!(
        rows,
        "1|a2|10\n3|c|3\n4|d again|44",
        "{}",
        sluice.log_text()
    );

    // Redelivery of the same records (a crash before the commit) changes nothing.
    let before = pg.psql(&db, "SELECT id, name, qty, seen FROM flat ORDER BY id");
    produce_raw(
        &topic,
        &[("3", Some(r#"{"name": "c", "qty": 3}"#)), ("2", None)],
    )
    .await;
    let (group, t) = (format!("connect-{name}"), topic.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(
            "the sink to commit the redelivery",
            Duration::from_secs(120),
            || kafka::caught_up(&group, &t).then_some(()),
        )
    })
    .await
    .expect("caught up");
    assert!(sluice.terminate());
    assert_eq!(
        pg.psql(&db, "SELECT id, name, qty FROM flat ORDER BY id"),
        "1|a2|10\n3|c|3\n4|d again|44"
    );
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM flat"),
        before.lines().count().to_string()
    );
}

fn schema_record(id: i64, name: &str, note: Option<&str>) -> (String, String) {
    let key = format!(
        r#"{{"schema": {{"type": "struct", "fields": [{{"field": "id", "type": "int64", "optional": false}}], "optional": false}}, "payload": {{"id": {id}}}}}"#
    );
    let mut fields = vec![
        r#"{"field": "id", "type": "int64", "optional": false}"#.to_owned(),
        r#"{"field": "name", "type": "string", "optional": true}"#.to_owned(),
        r#"{"field": "price", "type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal", "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "8"}}"#.to_owned(),
        r#"{"field": "at", "type": "int64", "optional": true, "name": "org.apache.kafka.connect.data.Timestamp", "version": 1}"#.to_owned(),
        r#"{"field": "tags", "type": "array", "optional": true, "items": {"type": "string", "optional": true}}"#.to_owned(),
    ];
    // 12.34 as Kafka Connect's Decimal: base64 of the unscaled 1234 (0x04d2).
    let mut payload = format!(
        r#""id": {id}, "name": "{name}", "price": "BNI=", "at": 1709214330123, "tags": ["a", "b c"]"#
    );
    if let Some(note) = note {
        fields.push(r#"{"field": "note", "type": "string", "optional": true}"#.to_owned());
        payload.push_str(&format!(r#", "note": "{note}""#));
    }
    let value = format!(
        r#"{{"schema": {{"type": "struct", "fields": [{}], "optional": false}}, "payload": {{{payload}}}}}"#,
        fields.join(", ")
    );
    (key, value)
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_create_and_auto_evolve_follow_the_record_schemas() {
    let pg = postgres::shared();
    let db = pg.database("sink_auto");
    let topic = unique("auto");
    kafka::create_topic(&topic, 1).await;
    let producer = kafka::producer();
    kafka::produce(
        &producer,
        &topic,
        [schema_record(1, "one", None), schema_record(2, "two", None)],
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = write_worker(dir.path(), "");
    let name = unique("auto_sink").replace('-', "_");
    let pipeline = sink_pipeline(
        dir.path(),
        &name,
        &topic,
        &pg.url(&db),
        "  table_name_format: sales.orders\n  auto_create: true\n  auto_evolve: true\n",
    );
    pg.psql(&db, "CREATE SCHEMA sales");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_for("the created table", Duration::from_secs(120), || {
        (pg.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sales' AND tablename = 'orders'",
        ) == "1"
            && count(pg, &db, "sales.orders") == 2)
            .then_some(())
    });
    let columns = "SELECT string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' ORDER BY ordinal_position) \
                   FROM information_schema.columns WHERE table_schema = 'sales' AND table_name = 'orders'";
    assert_eq!(
        pg.psql(&db, columns),
        "id bigint NO, name text YES, price numeric YES, at timestamp without time zone YES, tags ARRAY YES"
    );
    assert_eq!(
        pg.psql(&db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'sales.orders'::regclass AND contype = 'p'"),
        "PRIMARY KEY (id)"
    );
    kafka::produce(
        &producer,
        &topic,
        [
            schema_record(2, "two again", Some("added")),
            schema_record(3, "three", Some("new")),
        ],
    )
    .await;
    wait_for("the evolved rows", Duration::from_secs(120), || {
        (count(pg, &db, "sales.orders") == 3).then_some(())
    });
    assert!(sluice.terminate());
    assert!(pg.psql(&db, columns).ends_with(", note text YES"));
    assert_eq!(
        pg.psql(
            &db,
            "SELECT id, name, price, at, tags, note FROM sales.orders ORDER BY id"
        ),
        "1|one|12.34|2024-02-29 13:45:30.123|{a,\"b c\"}|\n\
         2|two again|12.34|2024-02-29 13:45:30.123|{a,\"b c\"}|added\n\
         3|three|12.34|2024-02-29 13:45:30.123|{a,\"b c\"}|new"
    );
    assert_eq!(
        pg.psql(&db, "SELECT numeric_precision || ',' || numeric_scale FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'price'"),
        "8,2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_values_go_to_the_dead_letter_topic_and_the_rest_is_written() {
    let pg = postgres::shared();
    let db = pg.database("sink_dlq");
    pg.psql(
        &db,
        "CREATE TABLE flat (id bigint PRIMARY KEY, name text, qty int)",
    );
    let topic = unique("dlq_in");
    let dlq = unique("dlq");
    kafka::create_topic(&topic, 1).await;
    kafka::create_topic(&dlq, 1).await;
    produce_raw(
        &topic,
        &[
            ("1", Some(r#"{"name": "ok", "qty": 1}"#)),
            ("2", Some(r#"{"name": "bad", "qty": "many"}"#)),
            ("3", Some(r#"{"name": "fine", "qty": 3}"#)),
            ("4", Some(r#"["not", "a", "row"]"#)),
            ("5", Some(r#"{"name": "last", "qty": 5}"#)),
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = write_worker(dir.path(), "");
    let name = unique("dlq_sink").replace('-', "_");
    let pipeline = sink_pipeline(
        dir.path(),
        &name,
        &topic,
        &pg.url(&db),
        &format!(
            "  table_name_format: flat\n  primary_key_fields: [id]\n\
             errors: {{tolerance: all, dlq_topic: {dlq}}}\n\
             key_converter: {{type: json, schemas: false}}\nvalue_converter: {{type: json, schemas: false}}\n"
        ),
    );
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let (group, t) = (format!("connect-{name}"), topic.clone());
    tokio::task::spawn_blocking(move || {
        wait_for(
            "the sink to commit every record",
            Duration::from_secs(120),
            || kafka::caught_up(&group, &t).then_some(()),
        )
    })
    .await
    .expect("caught up");
    let log = sluice.log_text();
    assert!(sluice.terminate());
    assert_eq!(
        pg.psql(&db, "SELECT id, name, qty FROM flat ORDER BY id"),
        "1|ok|1\n3|fine|3\n5|last|5",
        "{log}"
    );
    let dead = tokio::task::spawn_blocking(move || kafka::read_all(&dlq))
        .await
        .expect("read dlq");
    // Records that are not rows are reported as they are read, refused values once the
    // batch is written: the dead-letter order is not the input order.
    let mut values: Vec<String> = dead.iter().map(kafka::Read::value_text).collect();
    values.sort();
    assert_eq!(
        values,
        [r#"["not","a","row"]"#, r#"{"name":"bad","qty":"many"}"#]
    );
    assert!(
        log.contains("invalid input syntax for type integer"),
        "{log}"
    );
}

/// Issue #19: Postgres goes away for a while (a dedicated server, stopped and started again on
/// the same port) while records keep arriving, and a second sink is created meanwhile. Neither
/// task fails or restarts (the second starts without a connection and writes once Postgres is
/// back), and afterwards both tables hold every key's last value.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_outage_restarts_nothing_and_loses_nothing() {
    const KEYS: i64 = 300;
    let pg = std::sync::Arc::new(Postgres::start("replica"));
    let db = pg.database("sink_outage");
    for table in ["early", "late"] {
        pg.psql(
            &db,
            &format!("CREATE TABLE {table} (id bigint PRIMARY KEY, round int, note text)"),
        );
    }
    let topic = unique("pg-outage");
    kafka::create_topic(&topic, 2).await;
    // Round `r` writes every key once more; the last round decides each row.
    let produce_round = |r: i64| {
        let topic = topic.clone();
        async move {
            let values: Vec<(String, String)> = (0..KEYS)
                .map(|k| {
                    (
                        k.to_string(),
                        format!(r#"{{"round": {r}, "note": "key {k} round {r}"}}"#),
                    )
                })
                .collect();
            let records: Vec<(&str, Option<&str>)> = values
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            produce_raw(&topic, &records).await;
        }
    };
    produce_round(0).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = sluice_tests::free_port();
    let worker = write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let flat = "key_converter: {type: json, schemas: false}\nvalue_converter: {type: json, schemas: false}\nerrors: {retry_delay_max: 2s}\n";
    let early = unique("pg_early").replace('-', "_");
    let pipeline = sink_pipeline(
        dir.path(),
        &early,
        &topic,
        &pg.url(&db),
        &format!(
            "  table_name_format: early\n  primary_key_fields: [id]\n  batch_size: 50\ntasks: 2\n{flat}"
        ),
    );
    let mut sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let (check_pg, check_db) = (pg.clone(), db.clone());
    tokio::task::spawn_blocking(move || {
        wait_for("the first rows", Duration::from_secs(60), || {
            (count(&check_pg, &check_db, "early") > 0).then_some(())
        })
    })
    .await
    .expect("first rows");

    // Postgres away for 40 s: longer than the pool waits for a connection (30 s).
    let pg_port: u16 = pg
        .url(&db)
        .rsplit_once(':')
        .and_then(|(_, tail)| tail.split('/').next()?.parse().ok())
        .expect("port in the URL");
    let restarting = {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || pg.restart(Duration::from_secs(40)))
    };
    tokio::task::spawn_blocking(move || {
        wait_for("Postgres to be down", Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", pg_port))
                .is_err()
                .then_some(())
        })
    })
    .await
    .expect("down");
    let url = format!("http://127.0.0.1:{port}");
    let late = unique("pg_late").replace('-', "_");
    let (code, body) = sluice_tests::cluster::call(
        reqwest::Method::PUT,
        &format!("{url}/connectors/{late}/config"),
        Some(serde_json::json!({
            "connector.class": "postgres-sink",
            "tasks.max": "1",
            "topics": topic,
            "url": pg.url(&db),
            "table_name_format": "late",
            "primary_key_fields": "id",
            "errors.retry.delay.max.ms": "2000",
            "key.converter": "json",
            "key.converter.schemas.enable": "false",
            "value.converter": "json",
            "value.converter.schemas.enable": "false",
        })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    for r in 1..=3 {
        produce_round(r).await;
    }
    for name in [&early, &late] {
        sluice_tests::cluster::assert_never_restarted(&url, name).await;
    }
    restarting.await.expect("Postgres restarted");
    for name in [&early, &late] {
        let (group, t) = (format!("connect-{name}"), topic.clone());
        tokio::task::spawn_blocking(move || {
            wait_for(
                "the sink to commit every record",
                Duration::from_secs(180),
                || kafka::caught_up(&group, &t).then_some(()),
            )
        })
        .await
        .expect("caught up");
        sluice_tests::cluster::assert_never_restarted(&url, name).await;
    }
    assert!(sluice.is_running(), "sluice exited: {}", sluice.log_text());
    assert!(sluice.terminate(), "sluice did not stop cleanly");
    let want: Vec<String> = (0..KEYS)
        .map(|k| format!("{k}|3|key {k} round 3"))
        .collect();
    for table in ["early", "late"] {
        let got = pg.psql(
            &db,
            &format!("SELECT id, round, note FROM {table} ORDER BY id"),
        );
        assert_eq!(got.lines().collect::<Vec<_>>(), want, "{table}");
    }
}
