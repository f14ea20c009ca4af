//! Real S3-compatible servers (s3s-fs) for tests, and an independent reader of archives.
//!
//! [`S3Server::start`] runs s3s-fs on a free loopback port over a temp directory (a bucket is a
//! directory), with credentials it checks (SigV4). It dies with the test process
//! (PR_SET_PDEATHSIG). [`S3Server::stop`] and [`S3Server::restart`] make a real outage: the
//! process is killed and later started again on the same port and data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

pub const ACCESS_KEY: &str = "sluice-test";
pub const SECRET_KEY: &str = "sluice-test-secret-key";

fn s3s_fs_path() -> PathBuf {
    let script = crate::repo_root().join("scripts/install-s3.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run install-s3.sh");
    assert!(out.status.success(), "scripts/install-s3.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

/// One s3s-fs process over a data directory; killed when dropped.
pub struct S3Server {
    port: u16,
    data: PathBuf,
    _dir: tempfile::TempDir,
    pid: Option<i32>,
}

impl S3Server {
    /// Starts a server with the bucket `bucket`.
    pub fn start(bucket: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sluice-test-s3")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join(bucket)).expect("bucket dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = Self {
            port,
            data,
            _dir: dir,
            pid: None,
        };
        server.restart();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// SIGKILLs the server: requests fail with refused connections until [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            #[allow(unsafe_code)]
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            crate::wait_for("s3s-fs to exit", Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", self.port))
                    .is_err()
                    .then_some(())
            });
        }
    }

    /// Starts the server (again) on the same port and data directory.
    pub fn restart(&mut self) {
        let bin = s3s_fs_path();
        let (tx, rx) = std::sync::mpsc::channel();
        let port = self.port.to_string();
        let data = self.data.clone();
        // The spawning thread lives as long as the child, so the parent-death signal only fires
        // when the test process (or this server) ends.
        std::thread::spawn(move || {
            let mut command = Command::new(bin);
            command
                .args(["--host", "127.0.0.1", "--port", &port])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            crate::broker::die_with_parent(&mut command);
            match command.spawn() {
                Ok(mut child) => {
                    let _ = tx.send(Ok(child.id() as i32));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
        let pid = rx.recv().expect("s3s-fs thread").expect("start s3s-fs");
        self.pid = Some(pid);
        crate::wait_for("s3s-fs to listen", Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .map(|_| ())
        });
    }

    /// An S3 client for this server (path-style, the test credentials, no retries hidden).
    pub fn client(&self) -> Client {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .build();
        Client::from_conf(config)
    }

    /// The `config:` lines a pipeline needs to reach this server (YAML, indented two spaces).
    pub fn pipeline_config(&self, bucket: &str) -> String {
        format!(
            "  bucket: {bucket}\n  endpoint: {}\n  path_style: true\n  access_key_id: {ACCESS_KEY}\n  secret_access_key: {SECRET_KEY}\n",
            self.endpoint()
        )
    }

    /// The same settings as a REST connector config's fields (all strings, as Kafka Connect's).
    pub fn rest_config(&self, bucket: &str) -> serde_json::Map<String, serde_json::Value> {
        self.pipeline_config(bucket)
            .lines()
            .filter_map(|l| l.trim().split_once(": "))
            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
            .collect()
    }

    /// Every key under `prefix`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let client = self.client();
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list objects");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        keys
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("read object")
            .into_bytes()
            .to_vec()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One archived record as the test reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Archived {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Decodes an archived object independently of the connector: JSON lines with serde_json
/// (`key_base64`/`value_base64` from the bytes converter), Parquet with the parquet crate.
pub fn read_archived(key: &str, data: Vec<u8>) -> Vec<Archived> {
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| -> Option<Vec<u8>> {
        v.as_str().map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .expect("base64")
        })
    };
    if key.ends_with(".parquet") {
        return read_parquet(data);
    }
    assert!(key.ends_with(".json"), "unexpected object {key}");
    let text = String::from_utf8(data).expect("utf-8 JSON lines");
    text.lines()
        .map(|line| {
            let j: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            Archived {
                topic: j["topic"].as_str().expect("topic").to_owned(),
                partition: j["partition"].as_i64().expect("partition") as i32,
                offset: j["offset"].as_i64().expect("offset"),
                timestamp: j["timestamp"].as_i64(),
                key: b64(&j["key_base64"]),
                value: b64(&j["value_base64"]),
                headers: j["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| (h["key"].as_str().expect("key").to_owned(), b64(&h["value"])))
                    .collect(),
            }
        })
        .collect()
}

fn read_parquet(data: Vec<u8>) -> Vec<Archived> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(data),
    )
    .expect("parquet file")
    .build()
    .expect("parquet reader");
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.expect("row group");
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap_or_else(|| panic!("no {name} column"))
                .clone()
        };
        let (topic, partition, offset, ts, headers, key, value) = (
            col("topic"),
            col("partition"),
            col("offset"),
            col("timestamp"),
            col("headers"),
            col("key"),
            col("value"),
        );
        let topic = topic.as_string::<i32>();
        let partition = partition.as_primitive::<Int32Type>();
        let offset = offset.as_primitive::<Int64Type>();
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let headers = headers.as_list::<i32>();
        let key = key.as_binary::<i32>();
        let value = value.as_binary::<i32>();
        for i in 0..batch.num_rows() {
            let hs = headers.value(i);
            let hs = hs.as_struct();
            let (hk, hv) = (
                hs.column(0).as_string::<i32>(),
                hs.column(1).as_binary::<i32>(),
            );
            out.push(Archived {
                topic: topic.value(i).to_owned(),
                partition: partition.value(i),
                offset: offset.value(i),
                timestamp: (!ts.is_null(i)).then(|| ts.value(i)),
                key: (!key.is_null(i)).then(|| key.value(i).to_vec()),
                value: (!value.is_null(i)).then(|| value.value(i).to_vec()),
                headers: (0..hs.len())
                    .map(|j| {
                        (
                            hk.value(j).to_owned(),
                            (!hv.is_null(j)).then(|| hv.value(j).to_vec()),
                        )
                    })
                    .collect(),
            });
        }
    }
    out
}

/// Reads every object under `<topics_dir>/<topic>/`; returns the keys and all records.
pub async fn read_topic_archive(
    server: &S3Server,
    bucket: &str,
    topics_dir: &str,
    topic: &str,
) -> (Vec<String>, Vec<Archived>) {
    let keys = server.list(bucket, &format!("{topics_dir}/{topic}/")).await;
    let mut records = Vec::new();
    for key in &keys {
        let data = server.get(bucket, key).await;
        records.extend(read_archived(key, data));
    }
    (keys, records)
}
