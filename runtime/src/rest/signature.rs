//! The worker-to-worker credential: a follower signs each write it forwards to the leader with
//! HMAC-SHA256 over the method, path and query, a timestamp and the body, keyed by
//! `rest.auth.worker_secret`. The leader admits a `forward=false` request only with a valid
//! signature younger than [`MAX_AGE_SECS`].
//!
//! Why a configured shared secret rather than Kafka Connect's KIP-507 session key (which the
//! leader generates and distributes through the config topic): KIP-507 makes the key readable
//! by anyone who can consume the config topic, so the REST credential would only be as strong as
//! the Kafka ACLs; it also needs a leader to exist before the first signed request and extra
//! config-topic records. A secret given to every worker (a Kubernetes Secret, `${file:...}`)
//! works from the first request, does not depend on Kafka ACLs, and rotates with a rolling
//! restart. A captured request can be replayed only unchanged and only within the window.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::request::Parts;
use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// Header carrying the signing time, seconds since the epoch.
pub(crate) const TIMESTAMP_HEADER: &str = "x-sluice-worker-timestamp";
/// Header carrying the base64 HMAC.
pub(crate) const SIGNATURE_HEADER: &str = "x-sluice-worker-signature";
/// How old (or how far in the future, for clock skew) a signature may be.
const MAX_AGE_SECS: u64 = 300;
/// Shortest accepted `worker_secret`.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// The shared key of the workers of one cluster.
pub(crate) struct WorkerKey(Vec<u8>);

impl WorkerKey {
    pub(crate) fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    fn mac(&self, method: &str, path_and_query: &str, timestamp: u64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(method.as_bytes());
        mac.update(b"\n");
        mac.update(path_and_query.as_bytes());
        mac.update(b"\n");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(body);
        mac
    }

    /// The (timestamp, signature) header values for a request.
    pub(crate) fn sign(&self, method: &str, path_and_query: &str, body: &[u8]) -> (String, String) {
        let now = now_secs();
        let tag = self
            .mac(method, path_and_query, now, body)
            .finalize()
            .into_bytes();
        (
            now.to_string(),
            base64::engine::general_purpose::STANDARD.encode(tag),
        )
    }

    /// Checks a received request's signature; the error says why it is refused.
    pub(crate) fn verify(&self, parts: &Parts, body: &[u8]) -> Result<(), &'static str> {
        let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(timestamp), Some(signature)) =
            (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER))
        else {
            return Err("it carries no worker signature");
        };
        let timestamp: u64 = timestamp
            .parse()
            .map_err(|_| "malformed worker timestamp")?;
        if now_secs().abs_diff(timestamp) > MAX_AGE_SECS {
            return Err("the worker signature has expired");
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .map_err(|_| "malformed worker signature")?;
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        self.mac(parts.method.as_str(), path_and_query, timestamp, body)
            .verify_slice(&signature)
            .map_err(|_| "invalid worker signature")
    }
}

/// Whether a request says it was forwarded by a worker.
pub(crate) fn claims_forwarded(request: &Request) -> bool {
    request.headers().contains_key(SIGNATURE_HEADER)
        || request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "forward=false"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str, timestamp: &str, signature: &str) -> Parts {
        let (parts, ()) = axum::http::Request::builder()
            .method("PUT")
            .uri(path)
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signature)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn a_signature_covers_path_body_and_key() {
        let key = WorkerKey::new("a-worker-secret-of-32-characters!");
        let path = "/connectors/a/config?forward=false";
        let (ts, sig) = key.sign("PUT", path, b"{}");
        assert_eq!(key.verify(&parts(path, &ts, &sig), b"{}"), Ok(()));
        assert_eq!(
            key.verify(&parts(path, &ts, &sig), b"{\"x\":1}"),
            Err("invalid worker signature")
        );
        assert_eq!(
            key.verify(
                &parts("/connectors/b/config?forward=false", &ts, &sig),
                b"{}"
            ),
            Err("invalid worker signature")
        );
        let other = WorkerKey::new("another-secret-of-32-characters!!");
        assert_eq!(
            other.verify(&parts(path, &ts, &sig), b"{}"),
            Err("invalid worker signature")
        );
        let old = (now_secs() - MAX_AGE_SECS - 10).to_string();
        assert_eq!(
            key.verify(&parts(path, &old, &sig), b"{}"),
            Err("the worker signature has expired")
        );
    }
}
