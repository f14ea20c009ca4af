//! The worker-to-worker credential: a worker signs each request it sends another worker (a
//! forwarded write, task configs for the leader) with HMAC-SHA256 keyed by
//! `rest.auth.worker_secret`, over the method, the target worker's URL, the path and query, a
//! timestamp, a random nonce and the body. The receiver admits a `forward=false` request only
//! with a valid signature made for its own URL, younger than [`MAX_AGE_SECS`], whose nonce it
//! has not seen yet: a captured request cannot be sent to another worker, or sent again.
//!
//! Why a configured shared secret rather than Kafka Connect's KIP-507 session key (which the
//! leader generates and distributes through the config topic): KIP-507 makes the key readable
//! by anyone who can consume the config topic, so the REST credential would only be as strong as
//! the Kafka ACLs; it also needs a leader to exist before the first signed request and extra
//! config-topic records. A secret given to every worker (a Kubernetes Secret, `${file:...}`)
//! works from the first request, does not depend on Kafka ACLs, and rotates with a rolling
//! restart.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, OnceLock};
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
/// Header carrying the URL of the worker the request was signed for.
pub(crate) const TARGET_HEADER: &str = "x-sluice-worker-target";
/// Header carrying the request's random nonce (base64 of [`NONCE_BYTES`] bytes).
pub(crate) const NONCE_HEADER: &str = "x-sluice-worker-nonce";
/// How old (or how far in the future, for clock skew) a signature may be. Short: a nonce is
/// remembered for twice this long.
const MAX_AGE_SECS: u64 = 60;
/// Random bytes per nonce.
const NONCE_BYTES: usize = 16;
/// Most nonces remembered at once: past this, signed requests are refused until old ones leave
/// the window (far above what forwarding needs: over 800 forwarded requests a second).
const MAX_NONCES: usize = 100_000;
/// Shortest accepted `worker_secret`.
pub(crate) const MIN_SECRET_LEN: usize = 32;

type Nonce = [u8; NONCE_BYTES];

/// The shared key of the workers of one cluster.
pub(crate) struct WorkerKey(Vec<u8>);

/// The signature headers of one request.
pub(crate) struct Signed {
    pub(crate) timestamp: String,
    pub(crate) target: String,
    pub(crate) nonce: String,
    pub(crate) signature: String,
}

impl Signed {
    /// The headers, by name.
    pub(crate) fn headers(self) -> [(&'static str, String); 4] {
        [
            (TIMESTAMP_HEADER, self.timestamp),
            (TARGET_HEADER, self.target),
            (NONCE_HEADER, self.nonce),
            (SIGNATURE_HEADER, self.signature),
        ]
    }
}

/// A worker URL as signed and compared: no trailing slash, ASCII lower case.
pub(crate) fn target_of(url: &str) -> String {
    url.trim_end_matches('/').to_ascii_lowercase()
}

struct Signing<'a> {
    method: &'a str,
    target: &'a str,
    path_and_query: &'a str,
    timestamp: u64,
    nonce: &'a [u8],
    body: &'a [u8],
}

impl WorkerKey {
    pub(crate) fn new(secret: &str) -> Self {
        Self(secret.as_bytes().to_vec())
    }

    fn mac(&self, s: &Signing<'_>) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256>>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        // Every part but the body has no newline (a URL, a number, base64), so the
        // separators keep the parts apart.
        for part in [
            s.method.as_bytes(),
            s.target.as_bytes(),
            s.path_and_query.as_bytes(),
            s.timestamp.to_string().as_bytes(),
            s.nonce,
        ] {
            mac.update(part);
            mac.update(b"\n");
        }
        mac.update(s.body);
        mac
    }

    /// The signature headers for a request to the worker at `target` (its URL).
    pub(crate) fn sign(
        &self,
        method: &str,
        target: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Signed {
        let target = target_of(target);
        let mut nonce: Nonce = [0; NONCE_BYTES];
        // Without randomness no unique nonce: the receiver then refuses the request as a
        // replay of the all-zero one, which is what should happen.
        if let Err(e) = getrandom::fill(&mut nonce) {
            tracing::error!(error = %e, "no randomness for a worker request nonce");
        }
        let timestamp = now_secs();
        let tag = self
            .mac(&Signing {
                method,
                target: &target,
                path_and_query,
                timestamp,
                nonce: &nonce,
                body,
            })
            .finalize()
            .into_bytes();
        let b64 = base64::engine::general_purpose::STANDARD;
        Signed {
            timestamp: timestamp.to_string(),
            target,
            nonce: b64.encode(nonce),
            signature: b64.encode(tag),
        }
    }
}

/// The receiving side: the key, this worker's URL, and the nonces seen within the window.
pub(crate) struct Verifier {
    key: WorkerKey,
    /// This worker's URL, known once its listener is bound.
    own: OnceLock<String>,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    nonces: HashSet<Nonce>,
    /// Nonces in the order they arrived, with the arrival time, to forget them in order.
    order: VecDeque<(u64, Nonce)>,
}

impl Verifier {
    pub(crate) fn new(secret: &str) -> Self {
        Self {
            key: WorkerKey::new(secret),
            own: OnceLock::new(),
            seen: Mutex::default(),
        }
    }

    /// Sets this worker's URL (the one other workers address it by); once.
    pub(crate) fn bind(&self, url: &str) {
        let _ = self.own.set(target_of(url));
    }

    /// Checks a received request's signature; the error says why it is refused.
    pub(crate) fn verify(&self, parts: &Parts, body: &[u8]) -> Result<(), &'static str> {
        self.verify_at(parts, body, now_secs())
    }

    fn verify_at(&self, parts: &Parts, body: &[u8], now: u64) -> Result<(), &'static str> {
        let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(timestamp), Some(signature), Some(target), Some(nonce)) = (
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            header(TARGET_HEADER),
            header(NONCE_HEADER),
        ) else {
            return Err("it carries no worker signature");
        };
        let own = self
            .own
            .get()
            .ok_or("this worker does not know its own URL yet")?;
        if target_of(target) != *own {
            return Err("the worker signature was made for another worker");
        }
        let timestamp: u64 = timestamp
            .parse()
            .map_err(|_| "malformed worker timestamp")?;
        if now.abs_diff(timestamp) > MAX_AGE_SECS {
            return Err("the worker signature has expired");
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let nonce: Nonce = b64
            .decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or("malformed worker nonce")?;
        let signature = b64
            .decode(signature)
            .map_err(|_| "malformed worker signature")?;
        let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        self.key
            .mac(&Signing {
                method: parts.method.as_str(),
                target: own,
                path_and_query,
                timestamp,
                nonce: &nonce,
                body,
            })
            .verify_slice(&signature)
            .map_err(|_| "invalid worker signature")?;
        // Only a valid signature's nonce is remembered: others cannot fill the memory.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.forget_before(now.saturating_sub(2 * MAX_AGE_SECS));
        if seen.nonces.contains(&nonce) {
            return Err("the worker signature was used before (a replayed request)");
        }
        if seen.nonces.len() >= MAX_NONCES {
            return Err("too many signed requests within the signature window; retry later");
        }
        seen.nonces.insert(nonce);
        seen.order.push_back((now, nonce));
        Ok(())
    }
}

impl Seen {
    /// Forgets nonces that arrived before `cutoff`: a signature is accepted for
    /// [`MAX_AGE_SECS`] either side of its timestamp, so by then its nonce cannot pass again.
    fn forget_before(&mut self, cutoff: u64) {
        while let Some(&(arrived, nonce)) = self.order.front() {
            if arrived >= cutoff {
                break;
            }
            self.order.pop_front();
            self.nonces.remove(&nonce);
        }
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

    const SECRET: &str = "a-worker-secret-of-32-characters!";
    const LEADER: &str = "http://10.0.0.1:8083";

    fn parts(path: &str, signed: Signed) -> Parts {
        let mut builder = axum::http::Request::builder().method("PUT").uri(path);
        for (name, value) in signed.headers() {
            builder = builder.header(name, value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn verifier(url: &str) -> Verifier {
        let verifier = Verifier::new(SECRET);
        verifier.bind(url);
        verifier
    }

    #[test]
    fn a_signature_covers_target_path_body_and_key_and_passes_once() {
        let key = WorkerKey::new(SECRET);
        let leader = verifier(LEADER);
        let path = "/connectors/a/config?forward=false";
        let sign = || key.sign("PUT", "HTTP://10.0.0.1:8083/", path, b"{}");
        let captured = parts(path, sign());
        assert_eq!(leader.verify(&captured, b"{}"), Ok(()));
        assert_eq!(
            leader.verify(&captured, b"{}"),
            Err("the worker signature was used before (a replayed request)")
        );
        assert_eq!(
            leader.verify(&parts(path, sign()), b"{\"x\":1}"),
            Err("invalid worker signature")
        );
        assert_eq!(
            leader.verify(&parts("/connectors/b/config?forward=false", sign()), b"{}"),
            Err("invalid worker signature")
        );
        let other_key = Verifier::new("another-secret-of-32-characters!!");
        other_key.bind(LEADER);
        assert_eq!(
            other_key.verify(&parts(path, sign()), b"{}"),
            Err("invalid worker signature")
        );
        // Made for the leader, sent to a follower.
        let follower = verifier("http://10.0.0.2:8083");
        assert_eq!(
            follower.verify(&parts(path, sign()), b"{}"),
            Err("the worker signature was made for another worker")
        );
        // The target header changed to the follower's: the signature no longer matches.
        let mut forged = sign();
        forged.target = target_of("http://10.0.0.2:8083");
        assert_eq!(
            follower.verify(&parts(path, forged), b"{}"),
            Err("invalid worker signature")
        );
        let later = now_secs() + MAX_AGE_SECS + 10;
        assert_eq!(
            leader.verify_at(&parts(path, sign()), b"{}", later),
            Err("the worker signature has expired")
        );
    }

    #[test]
    fn nonces_are_forgotten_in_arrival_order() {
        let mut seen = Seen::default();
        for i in 0..10u8 {
            seen.nonces.insert([i; NONCE_BYTES]);
            seen.order.push_back((u64::from(i), [i; NONCE_BYTES]));
        }
        seen.forget_before(5);
        assert_eq!(seen.nonces.len(), 5);
        assert!(!seen.nonces.contains(&[4; NONCE_BYTES]));
    }
}
