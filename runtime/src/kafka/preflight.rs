//! A first connection to Kafka when `security.protocol` asks for TLS or SASL, so a worker whose
//! credentials or certificates are wrong stops with librdkafka's reason ("SASL authentication
//! error: ...") instead of timing out later in some other client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::WorkerConfig;

/// How long the first metadata request may take.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for librdkafka's reason after a failed request.
const REASON_WAIT: Duration = Duration::from_secs(5);

/// Why the worker cannot talk to Kafka securely.
#[derive(Debug, thiserror::Error)]
pub enum SecurityFailure {
    #[error(
        "cannot authenticate to Kafka at {bootstrap} (security.protocol {protocol}): {reason}; \
         check kafka.sasl.mechanism, kafka.sasl.username and kafka.sasl.password"
    )]
    Authentication {
        bootstrap: String,
        protocol: String,
        reason: String,
    },
    #[error(
        "TLS with Kafka at {bootstrap} failed: {reason}; check kafka.ssl.ca.location and the \
         broker's certificate"
    )]
    Tls { bootstrap: String, reason: String },
    #[error("distributed mode's group membership cannot use these Kafka settings: {0}")]
    MembershipUnsupported(String),
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
}

/// The worker's `security.protocol`, upper-cased (`PLAINTEXT` when unset).
fn protocol(worker: &WorkerConfig) -> String {
    worker
        .kafka
        .get("security.protocol")
        .and_then(|v| v.as_str())
        .unwrap_or("plaintext")
        .to_ascii_uppercase()
}

/// Distributed mode's group membership (`cluster::protocol`) speaks the Kafka protocol itself:
/// its TLS and SASL settings must be ones it supports (PLAIN, SCRAM-SHA-256/512; certificates
/// from files), checked before anything starts.
pub(crate) fn check_membership(worker: &WorkerConfig) -> Result<(), SecurityFailure> {
    crate::cluster::KafkaSecurity::from_settings(&worker.kafka)
        .map(drop)
        .map_err(|e| SecurityFailure::MembershipUnsupported(e.to_string()))
}

type Seen = Arc<Mutex<Option<(RDKafkaErrorCode, String)>>>;

fn lock(seen: &Seen) -> std::sync::MutexGuard<'_, Option<(RDKafkaErrorCode, String)>> {
    seen.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remembers the first authentication or TLS error librdkafka reports.
struct Watch(Seen);

impl rdkafka::consumer::ConsumerContext for Watch {}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if let Some(
            code @ (RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL),
        ) = code
        {
            lock(&self.0).get_or_insert_with(|| (code, reason.to_owned()));
        }
    }
}

/// Connects once when the worker's `kafka` settings use TLS or SASL; a plaintext worker
/// skips the check (its behaviour is unchanged).
pub(crate) async fn check(worker: &WorkerConfig) -> Result<(), SecurityFailure> {
    let protocol = protocol(worker);
    if protocol == "PLAINTEXT" {
        return Ok(());
    }
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &worker.bootstrap_servers);
    for (key, value) in worker.client_settings(&worker.kafka) {
        config.set(key, value);
    }
    let seen = Arc::new(Mutex::new(None));
    let consumer: BaseConsumer<Watch> = config.create_with_context(Watch(Arc::clone(&seen)))?;
    let watched = Arc::clone(&seen);
    let fetched = tokio::task::spawn_blocking(move || {
        let fetched = consumer.fetch_metadata(None, PREFLIGHT_TIMEOUT).map(|_| ());
        // librdkafka queues the reason (an error event) separately: serve the queue a little
        // so it reaches the context.
        if fetched.is_err() {
            let until = Instant::now() + REASON_WAIT;
            while Instant::now() < until && lock(&watched).is_none() {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        }
        fetched
    })
    .await
    .map_err(|_| KafkaError::Canceled)?;
    let failure = lock(&seen).take();
    match failure {
        Some((RDKafkaErrorCode::SSL, reason)) => Err(SecurityFailure::Tls {
            bootstrap: worker.bootstrap_servers.clone(),
            reason,
        }),
        Some((_, reason)) => Err(SecurityFailure::Authentication {
            bootstrap: worker.bootstrap_servers.clone(),
            protocol,
            reason,
        }),
        // Not a security failure: an unreachable broker is handled (and retried) as before.
        None => {
            if let Err(e) = fetched {
                tracing::warn!(error = %e, "Kafka did not answer the first metadata request");
            }
            Ok(())
        }
    }
}
