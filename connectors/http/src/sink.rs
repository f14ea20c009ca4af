//! `http-sink`: sends records to an HTTP endpoint.
//!
//! `put` turns each record into its URL and body bytes and hands it to one of `max_in_flight`
//! *lanes*, chosen by the record's key (keyless records by partition). A lane batches what it
//! receives per URL and sends one request at a time, so records with the same key reach the
//! server in the order they were consumed while the lanes work side by side. Full lane queues
//! make `put` wait: memory stays bounded and the runtime stops consuming.
//!
//! A request answered 2xx acknowledges its records. 408, 429, 5xx, timeouts and connection errors
//! are retried with exponential backoff (or after `Retry-After`), until `retry_max_attempts` or
//! until the task stops. Any other status rejects the request's records: a batch is then sent
//! again record by record so only the records the server refuses are reported, one by one, to the
//! runtime's errant-record reporter (the dead-letter topic under `errors.tolerance: all`; a task
//! failure under `none`). 401, 403 and 407 fail the task: every record would fail alike.
//!
//! Offsets: `flush` reports, per partition, the first offset not yet acknowledged or reported,
//! so a committed offset never passes a record the server has not accepted. A crash anywhere
//! re-delivers records (the server may see duplicates), never loses one.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, ErrantRecordReporter, Result, SinkConnector,
    SinkPlugin, SinkRecord, SinkTask, SinkTaskContext, TopicPartition, Value,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::body;
use crate::config::{AuthType, BatchFormat, HttpSinkConfig, header_text, sink_spec};
use crate::error::Error;
use crate::retry::{Answer, Backoff, answer, retry_after};
use crate::template::{UrlTemplate, display_url};

/// Records queued per lane beyond those being sent, as a multiple of `batch_max_records`.
const QUEUED_BATCHES_PER_LANE: usize = 2;
/// Most characters of a response body quoted in an error.
const BODY_EXCERPT_CHARS: usize = 300;
/// Retries logged at debug level before they are logged as warnings.
const QUIET_RETRIES: u32 = 3;

pub struct HttpSinkPlugin;

impl SinkPlugin for HttpSinkPlugin {
    fn name(&self) -> &str {
        "http-sink"
    }
    fn doc(&self) -> &str {
        "Sends records to an HTTP endpoint (POST, PUT or PATCH; one per request, or batched as a JSON array or NDJSON), with per-key ordering over `max_in_flight` parallel requests. Retries 408, 429, 5xx, timeouts and connection errors with backoff (honouring Retry-After); records the server rejects (other 4xx) go to the dead-letter topic one by one. Offsets are committed only once the server accepted (2xx) or the DLQ took every record before them."
    }
    fn spec(&self) -> ConfigSpec {
        sink_spec()
    }
    fn connector(&self) -> Box<dyn SinkConnector> {
        Box::new(HttpSinkConnector::default())
    }
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(HttpSinkTask::default())
    }
}

#[derive(Default)]
struct HttpSinkConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SinkConnector for HttpSinkConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        let parsed: HttpSinkConfig = config.parse()?;
        parsed.check().map_err(ConnectorError::config)?;
        self.config = config.clone();
        Ok(())
    }

    /// Tasks share one consumer group; each sends the partitions it is assigned.
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        Ok((0..max_tasks.max(1)).map(|_| self.config.clone()).collect())
    }
}

/// Per partition, the offsets handed to lanes and not yet acknowledged or reported.
#[derive(Default)]
struct Progress {
    pending: HashMap<TopicPartition, BTreeSet<i64>>,
}

/// State the task shares with its lanes.
struct Shared {
    progress: Mutex<Progress>,
    /// The first error that fails the task; taken by `put` or `flush`.
    failure: Mutex<Option<ConnectorError>>,
    /// Cancelled when the task fails or stops: lanes stop sending.
    stop: CancellationToken,
    /// Woken whenever records were acknowledged (for `close`, which waits for them).
    progressed: tokio::sync::Notify,
}

impl Shared {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn done(&self, items: &[Item]) {
        let mut progress = self.progress();
        for item in items {
            if let Some(set) = progress.pending.get_mut(&item.tp) {
                set.remove(&item.record.offset);
            }
        }
        drop(progress);
        self.progressed.notify_waiters();
    }

    /// Whether every record of `partitions` handed to the lanes was acknowledged or reported.
    fn settled(&self, partitions: &[TopicPartition]) -> bool {
        let progress = self.progress();
        partitions
            .iter()
            .all(|tp| progress.pending.get(tp).is_none_or(BTreeSet::is_empty))
    }

    /// Records the first failure and stops every lane; its records stay pending.
    fn fail(&self, error: ConnectorError) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            warn!(error = %error, "http-sink task failing");
            *failure = Some(error);
        }
        drop(failure);
        self.stop.cancel();
    }

    /// The failure to return once lanes stopped: the recorded one, or stopping.
    fn stopped_error(&self) -> ConnectorError {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| Error::Stopping.into())
    }
}

/// One record on its way: where it goes, its body bytes, and the record itself (for forwarded
/// headers and the dead-letter copy).
struct Item {
    tp: TopicPartition,
    url: String,
    element: Vec<u8>,
    record: SinkRecord,
}

/// What every lane needs to send requests.
struct Sender {
    client: reqwest::Client,
    method: reqwest::Method,
    format: BatchFormat,
    /// The config's `headers` set `Content-Type`: keep theirs.
    fixed_content_type: bool,
    forward_headers: Option<String>,
    backoff: (Duration, Duration),
    max_attempts: u32,
    batch_max_records: usize,
    batch_max_bytes: usize,
    linger: Duration,
    reporter: Option<Arc<dyn ErrantRecordReporter>>,
    shared: Arc<Shared>,
}

/// How sending one request ended, retries included.
enum Sent {
    Accepted,
    Rejected(Error),
    Failed(ConnectorError),
    Stopped,
}

/// Records of one lane waiting for the same URL.
struct Batch {
    items: Vec<Item>,
    bytes: usize,
    /// When the first record arrived (for `linger`).
    since: Instant,
}

impl Sender {
    fn location(item: &Item) -> String {
        format!("{} offset {}", item.tp, item.record.offset)
    }

    /// Sends one lane's records until the lane is closed or the task stops.
    async fn run_lane(self: Arc<Self>, mut rx: mpsc::Receiver<Item>) {
        let stop = self.shared.stop.clone();
        let mut open: Vec<Batch> = Vec::new();
        loop {
            let deadline = open.iter().map(|b| b.since + self.linger).min();
            let item = tokio::select! {
                biased;
                // Failed or stopping: what is still here was never acknowledged; it stays
                // pending and is delivered again after a restart.
                _ = stop.cancelled() => return,
                item = rx.recv() => item,
                // A partial batch waited `linger` for more records.
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let now = Instant::now();
                    while let Some(i) = open.iter().position(|b| b.since + self.linger <= now) {
                        let batch = open.remove(i);
                        if !self.deliver(batch.items).await {
                            return;
                        }
                    }
                    continue;
                }
            };
            let Some(item) = item else {
                // The task closed the lane: send what is left.
                for batch in open.drain(..) {
                    if !self.deliver(batch.items).await {
                        return;
                    }
                }
                return;
            };
            // Take whatever else is queued before sending, so batches fill up.
            let mut next = Some(item);
            while let Some(item) = next.take().or_else(|| rx.try_recv().ok()) {
                if let Some(full) = self.add(&mut open, item)
                    && !self.deliver(full).await
                {
                    return;
                }
            }
            if self.linger.is_zero() {
                for batch in std::mem::take(&mut open) {
                    if !self.deliver(batch.items).await {
                        return;
                    }
                }
            }
        }
    }

    /// Adds a record to its URL's batch; returns a batch that is ready to send.
    fn add(&self, open: &mut Vec<Batch>, item: Item) -> Option<Vec<Item>> {
        let i = match open.iter().position(|b| b.items[0].url == item.url) {
            Some(i) => i,
            None => {
                open.push(Batch {
                    items: Vec::new(),
                    bytes: 0,
                    since: Instant::now(),
                });
                open.len() - 1
            }
        };
        let batch = &mut open[i];
        let count = batch.items.len();
        let grown = body::body_len(self.format, count + 1, batch.bytes + item.element.len());
        // Too big with this record: the batch goes as it is and the record starts the next.
        if count > 0 && grown > self.batch_max_bytes {
            let full = std::mem::take(&mut batch.items);
            batch.bytes = item.element.len();
            batch.since = Instant::now();
            batch.items.push(item);
            return Some(full);
        }
        batch.bytes += item.element.len();
        batch.items.push(item);
        if batch.items.len() >= self.batch_max_records {
            return Some(open.remove(i).items);
        }
        None
    }

    /// Delivers a batch: accepted, or rejected records reported one by one. `false` when the
    /// lane must stop (the task failed or is stopping).
    async fn deliver(&self, items: Vec<Item>) -> bool {
        if items.is_empty() {
            return true;
        }
        match self.send(&items).await {
            Sent::Accepted => {
                self.shared.done(&items);
                true
            }
            Sent::Stopped => false,
            Sent::Failed(e) => {
                self.shared.fail(e);
                false
            }
            Sent::Rejected(e) if items.len() == 1 => self.reject(&items[0], e).await,
            Sent::Rejected(e) => {
                // Which records did the server refuse? Ask again one at a time, so the good
                // ones are delivered and only the refused ones are reported.
                debug!(records = items.len(), error = %e, "batch rejected; sending its records one by one");
                for item in items {
                    let one = [item];
                    let carry_on = match self.send(&one).await {
                        Sent::Accepted => {
                            self.shared.done(&one);
                            true
                        }
                        Sent::Rejected(e) => self.reject(&one[0], e).await,
                        Sent::Stopped => false,
                        Sent::Failed(e) => {
                            self.shared.fail(e);
                            false
                        }
                    };
                    if !carry_on {
                        return false;
                    }
                }
                true
            }
        }
    }

    /// Hands a refused record to the runtime's error policy; only once that took it does the
    /// record count as done.
    async fn reject(&self, item: &Item, error: Error) -> bool {
        let error = ConnectorError::from(error);
        let Some(reporter) = &self.reporter else {
            self.shared.fail(error);
            return false;
        };
        match reporter.report(&item.record, error).await {
            Ok(()) => {
                debug!(location = %Sender::location(item), "rejected record reported");
                self.shared.done(std::slice::from_ref(item));
                true
            }
            Err(e) => {
                self.shared.fail(e);
                false
            }
        }
    }

    /// Sends one request for `items` (one URL), retrying what is retriable.
    async fn send(&self, items: &[Item]) -> Sent {
        let stop = &self.shared.stop;
        let first = &items[0];
        let url = &first.url;
        let shown = display_url(url);
        let body = body::body(self.format, items.iter().map(|i| i.element.as_slice()));
        let mut headers = HeaderMap::new();
        if !self.fixed_content_type {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(body::content_type(self.format, &first.record.value)),
            );
        }
        if let Some(prefix) = &self.forward_headers {
            forward(&mut headers, prefix, &first.record);
        }
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let request = self
                .client
                .request(self.method.clone(), url.as_str())
                .headers(headers.clone())
                .body(body.clone());
            let response = tokio::select! {
                biased;
                _ = stop.cancelled() => return Sent::Stopped,
                response = request.send() => response,
            };
            let (reason, asked) = match response {
                Ok(response) => {
                    let status = response.status();
                    let verdict = answer(status.as_u16());
                    if verdict == Answer::Accepted {
                        // Read to the end so the connection is reused.
                        let _ = response.bytes().await;
                        return Sent::Accepted;
                    }
                    let asked = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, SystemTime::now()));
                    let text = excerpt(response.bytes().await.unwrap_or_default().as_ref());
                    match verdict {
                        Answer::Rejected => {
                            let location = match items {
                                [one] => Sender::location(one),
                                _ => format!("a batch of {} records", items.len()),
                            };
                            return Sent::Rejected(Error::Rejected {
                                status: status.as_u16(),
                                method: self.method.to_string(),
                                url: shown,
                                location,
                                body: text,
                            });
                        }
                        Answer::Unauthorized => {
                            return Sent::Failed(
                                Error::Unauthorized {
                                    status: status.as_u16(),
                                    method: self.method.to_string(),
                                    url: shown,
                                    body: text,
                                }
                                .into(),
                            );
                        }
                        Answer::Retry | Answer::Accepted => {
                            (format!("HTTP {status}: {text}"), asked)
                        }
                    }
                }
                // A URL that does not make a request: no retry will change that.
                Err(e) if e.is_builder() => {
                    return Sent::Rejected(Error::Unsendable {
                        url: shown,
                        location: Sender::location(first),
                        detail: e.without_url().to_string(),
                    });
                }
                // Timeouts, refused or reset connections, TLS handshakes: maybe next time.
                Err(e) => (error_chain(&e.without_url()), None),
            };
            if self.max_attempts > 0 && attempt >= self.max_attempts {
                return Sent::Failed(
                    Error::GaveUp {
                        method: self.method.to_string(),
                        url: shown,
                        attempts: attempt,
                        last: reason,
                    }
                    .into(),
                );
            }
            let wait = backoff.next_wait();
            let wait = asked.unwrap_or(wait);
            if attempt > QUIET_RETRIES {
                warn!(method = %self.method, url = %shown, attempt, ?wait, reason = %reason, "request failed; retrying");
            } else {
                debug!(method = %self.method, url = %shown, attempt, ?wait, reason = %reason, "request failed; retrying");
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Sent::Stopped,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// A response body as quoted in errors: its first characters, lossy UTF-8.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut out: String = text.chars().take(BODY_EXCERPT_CHARS).collect();
    if text.chars().count() > BODY_EXCERPT_CHARS {
        out.push_str("...");
    }
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

/// An error with its causes (reqwest's own message is terse: "error sending request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Adds a record's headers (those that make valid HTTP headers) under `prefix`.
fn forward(headers: &mut HeaderMap, prefix: &str, record: &SinkRecord) {
    for h in &record.headers {
        let name = HeaderName::from_bytes(format!("{prefix}{}", h.key).as_bytes());
        let value = HeaderValue::from_bytes(h.value.as_deref().unwrap_or_default());
        match (name, value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => debug!(header = %h.key, "record header is not a valid HTTP header; not forwarded"),
        }
    }
}

/// The lane of a record: by key, so one key is always sent by one lane in order; keyless records
/// by partition.
fn lane_of(record: &SinkRecord, lanes: usize) -> usize {
    if lanes == 1 {
        return 0;
    }
    let mut hasher = DefaultHasher::new();
    match &record.key {
        Value::Null => {
            record.topic.hash(&mut hasher);
            record.partition.hash(&mut hasher);
        }
        Value::String(s) => s.hash(&mut hasher),
        Value::Bytes(b) => b.hash(&mut hasher),
        other => match other.as_i64() {
            Some(n) => n.hash(&mut hasher),
            None => other.to_plain_json().to_string().hash(&mut hasher),
        },
    }
    (hasher.finish() % lanes as u64) as usize
}

/// The HTTP client: timeouts, TLS, and the headers every request carries (auth included, marked
/// sensitive so they are never logged).
fn client(config: &HttpSinkConfig) -> Result<reqwest::Client, Error> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        // Checked by the config.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&header_text(value)),
        ) {
            headers.insert(name, value);
        }
    }
    let secret_header = |text: String| {
        HeaderValue::from_str(&text)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| Error::Url("an auth value is not a valid HTTP header value".to_owned()))
    };
    match config.auth_type {
        AuthType::None => {}
        AuthType::Basic => {
            let user = config.auth_username.as_deref().unwrap_or_default();
            let password = config
                .auth_password
                .as_ref()
                .map(|p| p.expose())
                .unwrap_or_default();
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            headers.insert(
                header::AUTHORIZATION,
                secret_header(format!("Basic {encoded}"))?,
            );
        }
        AuthType::Bearer => {
            let token = config
                .auth_token
                .as_ref()
                .map(|t| t.expose())
                .unwrap_or_default();
            headers.insert(
                header::AUTHORIZATION,
                secret_header(format!("Bearer {token}"))?,
            );
        }
        AuthType::Header => {
            let name = config.auth_header_name.as_deref().unwrap_or_default();
            let value = config
                .auth_header_value
                .as_ref()
                .map(|v| v.expose().to_owned())
                .unwrap_or_default();
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::Url(format!(
                    "config.auth_header_name: `{name}` is not a valid header name"
                ))
            })?;
            headers.insert(name, secret_header(value)?);
        }
    }
    let timeout = Duration::from_millis(config.request_timeout.max(1));
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(config.max_in_flight)
        .tls_danger_accept_invalid_certs(config.tls_insecure_skip_verify)
        .tls_danger_accept_invalid_hostnames(config.tls_insecure_skip_verify);
    let read = |field: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Error::Tls {
            field,
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    };
    if let Some(path) = &config.tls_ca_file {
        let pem = read("tls_ca_file", path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Tls {
            field: "tls_ca_file",
            path: path.display().to_string(),
            detail: error_chain(&e),
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&config.tls_client_cert_file, &config.tls_client_key_file) {
        let mut pem = read("tls_client_cert_file", cert)?;
        pem.push(b'\n');
        pem.extend(read("tls_client_key_file", key)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| Error::Tls {
            field: "tls_client_cert_file",
            path: cert.display().to_string(),
            detail: error_chain(&e),
        })?;
        builder = builder.identity(identity);
    }
    builder.build().map_err(Error::Client)
}

/// A lane: its queue and the task sending from it.
struct Lane {
    tx: mpsc::Sender<Item>,
    handle: JoinHandle<()>,
}

struct Running {
    template: UrlTemplate,
    format: BatchFormat,
    lanes: Vec<Lane>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct HttpSinkTask {
    running: Option<Running>,
}

#[async_trait]
impl SinkTask for HttpSinkTask {
    async fn start(&mut self, ctx: SinkTaskContext, config: &ConnectorConfig) -> Result<()> {
        let config: HttpSinkConfig = config.parse()?;
        config.check().map_err(ConnectorError::config)?;
        let template = UrlTemplate::parse(&config.url)?;
        let client = client(&config)?;
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress::default()),
            failure: Mutex::new(None),
            stop: ctx.cancel.child_token(),
            progressed: tokio::sync::Notify::new(),
        });
        let batch_max_records = match config.batch_format {
            BatchFormat::Single => 1,
            _ => config.batch_max_records.max(1),
        };
        let sender = Arc::new(Sender {
            client,
            method: config.method.as_reqwest(),
            format: config.batch_format,
            fixed_content_type: config
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type")),
            forward_headers: config
                .forward_headers
                .then(|| config.forward_headers_prefix.clone()),
            backoff: (
                Duration::from_millis(config.retry_backoff),
                Duration::from_millis(config.retry_max_backoff),
            ),
            max_attempts: config.retry_max_attempts,
            batch_max_records,
            batch_max_bytes: config.batch_max_bytes,
            linger: Duration::from_millis(config.linger),
            reporter: ctx.errant_records.clone(),
            shared: shared.clone(),
        });
        let lanes = (0..config.max_in_flight.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(batch_max_records * QUEUED_BATCHES_PER_LANE);
                let handle = tokio::spawn(sender.clone().run_lane(rx));
                Lane { tx, handle }
            })
            .collect();
        info!(connector = %ctx.connector, task = ctx.task_id, url = %display_url(&config.url), method = %config.method.as_reqwest(), format = ?config.batch_format, lanes = config.max_in_flight, "http-sink task started");
        self.running = Some(Running {
            template,
            format: config.batch_format,
            lanes,
            shared,
        });
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        let Some(running) = self.running.as_ref() else {
            return Err(ConnectorError::fatal("http-sink task used before start"));
        };
        let shared = &running.shared;
        if shared.stop.is_cancelled() {
            return Err(shared.stopped_error());
        }
        // Pending before any lane can acknowledge them.
        {
            let mut progress = shared.progress();
            for record in &records {
                progress
                    .pending
                    .entry(record.topic_partition())
                    .or_default()
                    .insert(record.offset);
            }
        }
        for record in records {
            let item = Item {
                tp: record.topic_partition(),
                url: running.template.render(&record),
                element: body::element(running.format, &record.value),
                record,
            };
            let lane = &running.lanes[lane_of(&item.record, running.lanes.len())];
            tokio::select! {
                biased;
                // Failed or stopping: records not sent stay pending, never committed.
                _ = shared.stop.cancelled() => return Err(shared.stopped_error()),
                sent = lane.tx.send(item) => {
                    if sent.is_err() {
                        return Err(Error::LaneGone.into());
                    }
                }
            }
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let Some(running) = self.running.as_ref() else {
            return Err(ConnectorError::fatal("http-sink task used before start"));
        };
        let shared = &running.shared;
        if let Some(e) = shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(e);
        }
        let progress = shared.progress();
        // Records pending under a partition the runtime did not consume from (a transform
        // renamed their topic) cannot be matched to the consumed partition: commit nothing
        // until they are done.
        let foreign = progress
            .pending
            .iter()
            .any(|(tp, set)| !set.is_empty() && !offsets.contains_key(tp));
        if foreign {
            debug!("records of renamed topics in flight; offsets not advanced");
            return Ok(HashMap::new());
        }
        Ok(offsets
            .iter()
            .map(|(tp, next)| {
                let first = progress.pending.get(tp).and_then(|set| set.first());
                (tp.clone(), first.copied().unwrap_or(*next))
            })
            .collect())
    }

    /// Waits until the records of revoked partitions already handed to the lanes were sent
    /// (or reported), so that nothing of them reaches the endpoint after their next owner
    /// started sending: a key's values arrive in order across a rebalance. Lanes retry as
    /// configured; when the task fails or stops meanwhile, what was not sent stays uncommitted.
    async fn close(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let Some(running) = self.running.as_ref() else {
            return Ok(());
        };
        let shared = &running.shared;
        loop {
            let progressed = shared.progressed.notified();
            if shared.settled(partitions) || shared.stop.is_cancelled() {
                break;
            }
            // `notified` catches `notify_waiters` from its creation on: none is missed between
            // the check and the wait.
            tokio::select! {
                _ = progressed => {}
                _ = shared.stop.cancelled() => {}
            }
        }
        let mut progress = shared.progress();
        for tp in partitions {
            progress.pending.remove(tp);
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(running) = self.running.take() {
            running.shared.stop.cancel();
            for lane in running.lanes {
                drop(lane.tx);
                let _ = lane.handle.await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Value, partition: i32) -> SinkRecord {
        SinkRecord {
            topic: "t".into(),
            partition,
            offset: 0,
            key_schema: None,
            key,
            value_schema: None,
            value: Value::Null,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    #[test]
    fn a_key_always_takes_the_same_lane() {
        let a = lane_of(&record(Value::String("a".into()), 0), 8);
        assert_eq!(a, lane_of(&record(Value::String("a".into()), 5), 8));
        let spread: BTreeSet<usize> = (0..100)
            .map(|i| lane_of(&record(Value::String(format!("k{i}")), 0), 8))
            .collect();
        assert_eq!(spread.len(), 8, "keys spread over every lane");
        assert_eq!(lane_of(&record(Value::Null, 3), 1), 0);
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(b"  bad record \n"), "bad record");
        assert_eq!(excerpt(b""), "(empty body)");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).len(), BODY_EXCERPT_CHARS + 3);
    }
}
