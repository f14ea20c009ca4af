//! The worker file: how to reach Kafka, where offsets go, default converters.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_connector_api::{ConfigSpec, FieldError, FieldKind, Secret, Validator};

use super::provider::{DEFAULT_MAX_FILE_BYTES, ProviderPolicy};
use crate::convert::ConverterConfig;

const DEFAULT_OFFSETS_FILE: &str = "./data/offsets.json";
const DEFAULT_DATA_DIR: &str = "./data";
const DEFAULT_OFFSET_FLUSH_INTERVAL_MS: u64 = 5_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_MAX_IN_FLIGHT: i64 = 10_000;
const DEFAULT_SINK_BATCH: i64 = 1_000;
const DEFAULT_MAX_BODY_BYTES: i64 = 2 * 1024 * 1024;

/// A worker's configuration (`configs/worker.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct WorkerConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Standalone mode: where source offsets are kept.
    pub offsets_file: PathBuf,
    /// Where tasks keep their working files (e.g. the CDC transaction spool), one directory per
    /// connector and task below it.
    pub data_dir: PathBuf,
    /// How often source offsets are written and sink offsets committed (milliseconds).
    pub offset_flush_interval: u64,
    /// How long a stop may take to flush and commit before tasks are abandoned (milliseconds).
    pub shutdown_timeout: u64,
    /// Most records a source task has sent but not yet had acknowledged.
    pub max_in_flight_records: usize,
    /// Most records handed to a sink task in one `put`.
    pub sink_batch_size: usize,
    /// Default key converter.
    pub key_converter: ConverterConfig,
    /// Default value converter.
    pub value_converter: ConverterConfig,
    /// librdkafka settings passed through to every client, e.g. `security.protocol`.
    pub kafka: BTreeMap<String, Json>,
    /// librdkafka settings for source producers only, e.g. `compression.type: lz4`.
    pub producer: BTreeMap<String, Json>,
    /// librdkafka settings for sink consumers only, e.g. `fetch.min.bytes`.
    pub consumer: BTreeMap<String, Json>,
    /// Distributed mode: the worker group and its internal topics.
    pub cluster: ClusterSettings,
    /// The REST API.
    pub rest: RestSettings,
    /// A directory of WebAssembly plugins (`*.wasm`), each registered at start under its file
    /// name without `.wasm`.
    pub plugins_dir: Option<PathBuf>,
    /// Automatic restarts of failed tasks.
    pub task_restart: RestartSettings,
    /// What `${env:...}`/`${file:...}` in connector configs given through the REST API may read.
    pub config_providers: ProviderPolicy,
    /// Directories connector configs given through the REST API may name paths under (file
    /// connectors' `file`, WASM `plugin` and `read_only_dirs`); unset: `data_dir` and
    /// `plugins_dir`.
    pub allowed_paths: Option<Vec<PathBuf>>,
}

/// Automatic restarts of failed tasks (`task_restart`). Durations in ms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RestartSettings {
    pub enabled: bool,
    pub initial_backoff: u64,
    pub max_backoff: u64,
    pub max_restarts: u32,
    pub reset_after: u64,
}

impl RestartSettings {
    /// The wait before restart number `n` (1-based): doubling from the initial backoff, capped.
    pub fn backoff(&self, n: u32) -> std::time::Duration {
        let factor = 1u64 << n.saturating_sub(1).min(32);
        std::time::Duration::from_millis(
            self.initial_backoff
                .saturating_mul(factor)
                .min(self.max_backoff),
        )
    }
}

/// Spec of the `task_restart` block.
pub fn restart_spec() -> ConfigSpec {
    ConfigSpec::new()
        .optional("enabled", FieldKind::Bool, true, "Restart a failed task by itself (a failure caused by a record under errors.tolerance none, or by a config mistake, is not restarted: it would fail the same way).")
        .optional("initial_backoff", FieldKind::Duration, 1_000, "Wait before the first automatic restart; doubled for each further one.")
        .check(Validator::min(1))
        .optional("max_backoff", FieldKind::Duration, 60_000, "Longest wait between automatic restarts.")
        .check(Validator::min(1))
        .optional("max_restarts", FieldKind::Int, 10, "Crash-loop limit: after this many restarts in a row the task stays FAILED with the reason.")
        .check(Validator::range(0, 1_000_000))
        .optional("reset_after", FieldKind::Duration, 600_000, "A task that ran this long since its last restart starts counting its restarts from zero again.")
        .check(Validator::min(1))
}

/// Spec of the `config_providers` block.
pub fn providers_spec() -> ConfigSpec {
    ConfigSpec::new()
        .optional("enabled", FieldKind::List, json!(["env", "file"]), "Config providers connector configs given through the REST API may use: `env`, `file`; a reference to another is refused.")
        .check(Validator::Custom(std::sync::Arc::new(|value: &Json| {
            let known = ["env", "file"];
            match value.as_array() {
                Some(items) if items.iter().all(|i| i.as_str().is_some_and(|p| known.contains(&p))) => Ok(()),
                _ => Err("a list of env and file".to_owned()),
            }
        })))
        .optional("env", FieldKind::Object(env_provider_spec()), json!({}), "The `${env:NAME}` provider.")
        .optional("file", FieldKind::Object(file_provider_spec()), json!({}), "The `${file:path:key}` provider.")
}

/// Spec of the `config_providers.env` block.
pub fn env_provider_spec() -> ConfigSpec {
    ConfigSpec::new().maybe(
        "allowed_names",
        FieldKind::List,
        "Environment variables `${env:...}` may read: names, or prefixes ending in `*` (`HTTP_SINK_*`); unset means any. Set it so a REST client cannot read the worker's other variables.",
    )
}

/// Spec of the `config_providers.file` block.
pub fn file_provider_spec() -> ConfigSpec {
    ConfigSpec::new()
        .maybe("allowed_paths", FieldKind::List, "Directories (or files) `${file:...}` may read under (Kafka Connect's `allowed.paths`); symbolic links and `..` are resolved first. Unset means any path.")
        .optional("max_bytes", FieldKind::Int, DEFAULT_MAX_FILE_BYTES as i64, "Largest file `${file:...}` reads, in bytes; only regular files are read.")
        .check(Validator::range(1, 64 << 20))
}

/// Distributed mode (`sluice worker`): the group and its internal topics. Durations in ms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ClusterSettings {
    pub group_id: String,
    pub config_topic: String,
    pub offsets_topic: String,
    pub status_topic: String,
    pub offsets_partitions: i32,
    pub status_partitions: i32,
    pub replication_factor: i32,
    pub session_timeout: u64,
    pub heartbeat_interval: u64,
    pub rebalance_timeout: u64,
    pub scheduled_rebalance_max_delay: u64,
}

/// The REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RestSettings {
    pub enabled: bool,
    pub listen: String,
    pub advertised_url: Option<String>,
    /// Serve a non-loopback listener without authentication (refused unless set).
    pub allow_unauthenticated: bool,
    /// Host names accepted besides loopback ones when a loopback API has no authentication.
    pub allowed_hosts: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Who may call the API.
    pub auth: AuthSettings,
    /// HTTPS, and client certificates when `client_ca_file` is set.
    pub tls: Option<TlsSettings>,
}

/// REST authentication: bearer tokens and HTTP basic users, each with a role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct AuthSettings {
    /// Lines `<role>:<token>` (role `admin` or `read`); re-read when the file changes.
    pub tokens_file: Option<PathBuf>,
    /// Name of an environment variable holding `<role>:<token>` entries (comma or newline
    /// separated).
    pub tokens_env: Option<String>,
    /// htpasswd-style lines `<user>:<bcrypt hash>[:<role>]`; re-read when the file changes.
    pub basic_file: Option<PathBuf>,
    /// Serve `/metrics` without credentials.
    pub metrics_public: bool,
    /// Shared secret workers sign forwarded requests with (HMAC-SHA256).
    pub worker_secret: Option<Secret>,
}

/// HTTPS for the REST API (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// CA certificates client certificates must chain to; clients without one are refused.
    pub client_ca_file: Option<PathBuf>,
    /// CA certificates trusted for other workers' REST certificates (forwarded requests), in
    /// addition to the system's.
    pub ca_file: Option<PathBuf>,
}

impl AuthSettings {
    /// Whether any credential is configured.
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.tokens_env.is_some() || self.basic_file.is_some()
    }
}

/// Spec of the `cluster` block.
pub fn cluster_spec() -> ConfigSpec {
    ConfigSpec::new()
        .optional("group_id", FieldKind::String, "sluice-cluster", "Workers with the same group id form one cluster.")
        .check(Validator::NonEmpty)
        .optional("config_topic", FieldKind::String, "sluice-configs", "Compacted topic (1 partition) holding connector and task configs.")
        .check(Validator::NonEmpty)
        .optional("offsets_topic", FieldKind::String, "sluice-offsets", "Compacted topic holding source offsets.")
        .check(Validator::NonEmpty)
        .optional("status_topic", FieldKind::String, "sluice-status", "Compacted topic holding connector and task states.")
        .check(Validator::NonEmpty)
        .optional("offsets_partitions", FieldKind::Int, 25, "Partitions of the offsets topic when it is created.")
        .check(Validator::range(1, 10_000))
        .optional("status_partitions", FieldKind::Int, 5, "Partitions of the status topic when it is created.")
        .check(Validator::range(1, 10_000))
        .optional("replication_factor", FieldKind::Int, -1, "Replication factor of created internal topics; -1 takes the broker's default.")
        .check(Validator::range(-1, 32))
        .optional("session_timeout", FieldKind::Duration, 10_000, "A worker silent this long leaves the group.")
        .check(Validator::min(1000))
        .optional("heartbeat_interval", FieldKind::Duration, 3_000, "How often a worker tells the coordinator it is alive.")
        .check(Validator::min(100))
        .optional("rebalance_timeout", FieldKind::Duration, 60_000, "How long a rebalance waits for every worker to rejoin.")
        .check(Validator::min(1000))
        .optional("scheduled_rebalance_max_delay", FieldKind::Duration, 5_000, "How long a departed worker's connectors and tasks wait for it to come back before they move.")
}

/// Spec of the `rest` block.
pub fn rest_spec() -> ConfigSpec {
    ConfigSpec::new()
        .optional("enabled", FieldKind::Bool, true, "Serve the REST API.")
        .optional("listen", FieldKind::String, "127.0.0.1:8083", "Address the REST API listens on, host:port. Loopback by default; another address needs `auth` or `allow_unauthenticated: true`.")
        .check(Validator::NonEmpty)
        .maybe("advertised_url", FieldKind::String, "URL other workers and clients use to reach this worker; http(s)://<host>:<port> of `listen` when unset.")
        .optional("allow_unauthenticated", FieldKind::Bool, false, "Serve a non-loopback `listen` address without authentication; without it such a worker refuses to start.")
        .optional("allowed_hosts", FieldKind::List, json!([]), "Without `auth` on a loopback `listen`, requests must name this worker by a loopback name or address (or `advertised_url`'s host) in their Host header, against DNS rebinding from a browser; further host names accepted.")
        .optional("max_body_bytes", FieldKind::Int, DEFAULT_MAX_BODY_BYTES, "Largest request body accepted, in bytes; larger requests get 413.")
        .check(Validator::range(1024, 1 << 30))
        .optional("auth", FieldKind::Object(auth_spec()), json!({}), "Who may call the API: bearer tokens and basic users with a role (`admin` may write, `read` may only GET).")
        .maybe("tls", FieldKind::Object(tls_spec()), "Serve HTTPS (rustls); with `client_ca_file`, require client certificates (mTLS).")
}

/// Spec of the `rest.auth` block.
pub fn auth_spec() -> ConfigSpec {
    ConfigSpec::new()
        .maybe("tokens_file", FieldKind::String, "File of `<role>:<token>` lines (role `admin` or `read`, `#` comments); re-read when it changes, so tokens rotate without a restart.")
        .maybe("tokens_env", FieldKind::String, "Name of an environment variable holding `<role>:<token>` entries, comma or newline separated.")
        .maybe("basic_file", FieldKind::String, "htpasswd-style file of `<user>:<bcrypt hash>[:<role>]` lines (`htpasswd -nbB user password`); role `read` when omitted; re-read when it changes.")
        .optional("metrics_public", FieldKind::Bool, true, "Serve `/metrics` without credentials (`/health` is always open, for probes).")
        .maybe("worker_secret", FieldKind::String, "Shared secret (at least 32 characters) workers sign forwarded writes with; required in distributed mode when tokens or users are set. Use `${file:...}` or `${env:...}`.")
        .secret()
}

/// Spec of the `rest.tls` block.
pub fn tls_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("cert_file", FieldKind::String, "PEM certificate chain of this worker.")
        .check(Validator::NonEmpty)
        .required("key_file", FieldKind::String, "PEM private key of `cert_file`.")
        .check(Validator::NonEmpty)
        .maybe("client_ca_file", FieldKind::String, "PEM CA certificates that client certificates must chain to; set it to require client certificates (mTLS). Workers then present their own `cert_file` when forwarding.")
        .maybe("ca_file", FieldKind::String, "PEM CA certificates trusted for other workers' certificates when forwarding, in addition to the system's.")
}

/// Spec of a `key_converter`/`value_converter` block.
pub fn converter_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("type", FieldKind::String, "Converter: json, string or bytes.")
        .check(Validator::one_of(["json", "string", "bytes"]))
        .optional("schemas", FieldKind::Bool, true, "json: write and expect Kafka Connect's {schema, payload} envelope.")
        .optional(
            "decimal_format",
            FieldKind::String,
            "base64",
            "json: Decimal payloads as base64 of the unscaled bytes (Kafka Connect's default) or as numbers.",
        )
        .check(Validator::one_of(["base64", "numeric"]))
}

pub fn worker_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required(
            "bootstrap_servers",
            FieldKind::String,
            "Kafka bootstrap servers, host:port[,host:port...].",
        )
        .check(Validator::NonEmpty)
        .optional(
            "offsets_file",
            FieldKind::String,
            DEFAULT_OFFSETS_FILE,
            "Standalone mode: where source offsets are kept.",
        )
        .optional(
            "data_dir",
            FieldKind::String,
            DEFAULT_DATA_DIR,
            "Where tasks keep their working files (the CDC transaction spool), a directory per connector and task below it.",
        )
        .optional(
            "offset_flush_interval",
            FieldKind::Duration,
            DEFAULT_OFFSET_FLUSH_INTERVAL_MS,
            "How often source offsets are written and sink offsets committed.",
        )
        .check(Validator::min(1))
        .optional(
            "shutdown_timeout",
            FieldKind::Duration,
            DEFAULT_SHUTDOWN_TIMEOUT_MS,
            "How long a stop may take to flush and commit.",
        )
        .optional(
            "max_in_flight_records",
            FieldKind::Int,
            DEFAULT_MAX_IN_FLIGHT,
            "Most records a source task has sent but not had acknowledged.",
        )
        .check(Validator::range(1, 10_000_000))
        .optional(
            "sink_batch_size",
            FieldKind::Int,
            DEFAULT_SINK_BATCH,
            "Most records handed to a sink task in one put.",
        )
        .check(Validator::range(1, 1_000_000))
        .optional(
            "key_converter",
            FieldKind::Object(converter_spec()),
            json!({"type": "string"}),
            "Default key converter.",
        )
        .optional(
            "value_converter",
            FieldKind::Object(converter_spec()),
            json!({"type": "json", "schemas": true}),
            "Default value converter.",
        )
        .maybe(
            "plugins_dir",
            FieldKind::String,
            "Directory of WebAssembly plugins (*.wasm), registered at start under their file names without .wasm.",
        )
        .optional(
            "kafka",
            FieldKind::Map,
            json!({}),
            "librdkafka settings passed through to every client.",
        )
        .optional(
            "producer",
            FieldKind::Map,
            json!({}),
            "librdkafka settings for source producers only.",
        )
        .optional(
            "consumer",
            FieldKind::Map,
            json!({}),
            "librdkafka settings for sink consumers only.",
        )
        .optional(
            "cluster",
            FieldKind::Object(cluster_spec()),
            json!({}),
            "Distributed mode (`sluice worker`): group and internal topics.",
        )
        .optional(
            "task_restart",
            FieldKind::Object(restart_spec()),
            json!({}),
            "Automatic restarts of failed tasks, with exponential backoff and a crash-loop limit.",
        )
        .optional(
            "rest",
            FieldKind::Object(rest_spec()),
            json!({}),
            "The Kafka Connect compatible REST API.",
        )
        .optional(
            "config_providers",
            FieldKind::Object(providers_spec()),
            json!({}),
            "What `${env:...}` and `${file:...}` in connector configs given through the REST API may read (files the operator wrote may use every provider).",
        )
        .maybe(
            "allowed_paths",
            FieldKind::List,
            "Directories that connector configs given through the REST API (create, config, validate) may name paths under: the file connectors' `file`, a WASM plugin's `plugin` and `read_only_dirs`. Symbolic links and `..` are resolved first. Unset: `data_dir` and `plugins_dir`. Pipeline files given to `sluice run` are not checked.",
        )
}

pub(crate) fn validate_worker(value: &Map<String, Json>) -> Result<WorkerConfig, Vec<FieldError>> {
    let config = worker_spec().validate(value)?;
    let mut errors = Vec::new();
    for block in ["kafka", "producer", "consumer"] {
        if let Some(Json::Object(settings)) = config.get(block) {
            for (k, v) in settings {
                if v.is_object() || v.is_array() || v.is_null() {
                    errors.push(FieldError::new(
                        format!("{block}.{k}"),
                        "expected a single librdkafka value (string, number or boolean)",
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    config
        .parse()
        .map_err(|e| vec![FieldError::new("", e.to_string())])
}

impl RestSettings {
    /// The URL others reach this worker at, from the settings alone.
    pub fn url(&self) -> String {
        let port = self.listen.rsplit_once(':').map_or("8083", |(_, p)| p);
        self.url_with_port(port)
    }

    /// The URL others reach this worker at, once its listener is bound to `bound`.
    pub fn url_for(&self, bound: std::net::SocketAddr) -> String {
        self.url_with_port(&bound.port().to_string())
    }

    fn url_with_port(&self, port: &str) -> String {
        if let Some(url) = &self.advertised_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = self
            .listen
            .rsplit_once(':')
            .map_or(self.listen.as_str(), |(h, _)| h);
        let host = if host == "0.0.0.0" || host == "[::]" || host.is_empty() {
            hostname()
        } else {
            host.to_owned()
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{host}:{port}")
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl WorkerConfig {
    /// librdkafka passthrough settings as strings: the common ones, then `specific` on top.
    pub(crate) fn client_settings<'a>(
        &'a self,
        specific: &'a BTreeMap<String, Json>,
    ) -> impl Iterator<Item = (&'a str, String)> {
        self.kafka.iter().chain(specific).map(|(k, v)| {
            let text = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.as_str(), text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_mistakes_are_named() {
        let ok = validate_worker(json!({"bootstrap_servers": "h:1"}).as_object().unwrap()).unwrap();
        assert_eq!(ok.offset_flush_interval, DEFAULT_OFFSET_FLUSH_INTERVAL_MS);
        assert_eq!(ok.value_converter.kind, crate::convert::ConverterKind::Json);
        let bad = json!({"bootstrap_servers": "h:1", "value_converter": {"type": "avro"}, "kafka": {"x": [1]}});
        let errors = validate_worker(bad.as_object().unwrap()).unwrap_err();
        assert_eq!(errors[0].field, "value_converter.type");
        assert!(
            errors[0]
                .message
                .contains("expected one of json, string, bytes")
        );
    }
}
