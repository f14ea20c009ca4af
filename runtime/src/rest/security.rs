//! The REST API's security settings, loaded and checked before the worker starts, so a missing
//! certificate, an unreadable token file or an open non-loopback listener stops it at once.

use std::sync::Arc;

use tracing::warn;

use super::auth::{Auth, AuthError};
use super::signature::MIN_SECRET_LEN;
use super::tls::{self, TlsError};
use crate::config::RestSettings;

/// Why the REST API cannot be served as configured.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("rest.auth: {0}")]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "rest.listen {0} is not a loopback address and rest.auth sets no tokens_file, tokens_env or basic_file: \
         configure credentials, or set rest.allow_unauthenticated: true to serve the API open"
    )]
    Unauthenticated(String),
    #[error(
        "rest.auth.worker_secret is required in distributed mode when tokens or users are set: \
         workers sign the writes they forward to the leader with it"
    )]
    WorkerSecretMissing,
    #[error("rest.auth.worker_secret must be at least {MIN_SECRET_LEN} characters")]
    WorkerSecretShort,
}

/// Access rules, TLS and the worker-to-worker client of one REST API.
pub struct Security {
    pub(crate) auth: Arc<Auth>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// The client this worker calls other workers with.
    pub peers: super::Peers,
    pub(crate) max_body_bytes: usize,
    /// The DNS rebinding guard of an unauthenticated loopback API.
    pub(crate) hosts: Arc<super::host::HostCheck>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// Loads credentials and certificates; `distributed` workers forward writes, so they need
    /// the worker secret whenever users must authenticate.
    pub fn load(rest: &RestSettings, distributed: bool) -> Result<Self, SecurityError> {
        let auth = &rest.auth;
        if !auth.enabled() && !is_loopback(&rest.listen) {
            if !rest.allow_unauthenticated {
                return Err(SecurityError::Unauthenticated(rest.listen.clone()));
            }
            warn!(listen = %rest.listen, "the REST API is served without authentication on a non-loopback address (rest.allow_unauthenticated)");
        }
        match &auth.worker_secret {
            Some(secret) if secret.expose().len() < MIN_SECRET_LEN => {
                return Err(SecurityError::WorkerSecretShort);
            }
            None if distributed && auth.enabled() => {
                return Err(SecurityError::WorkerSecretMissing);
            }
            _ => {}
        }
        Ok(Self {
            auth: Arc::new(Auth::load(auth, rest.max_body_bytes)?),
            tls: rest.tls.as_ref().map(tls::server_config).transpose()?,
            peers: super::Peers::new(rest)?,
            max_body_bytes: rest.max_body_bytes,
            hosts: Arc::new(super::host::HostCheck::new(rest)),
        })
    }
}

impl Security {
    /// Sets the URL this worker is reached at (known once its listener is bound): forwarded
    /// requests must have been signed for it.
    pub fn bind(&self, url: &str) {
        self.auth.bind(url);
    }
}

/// Whether `listen` (host:port) only accepts connections from this machine.
pub(crate) fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_told_apart() {
        for open in ["127.0.0.1:8083", "[::1]:8083", "localhost:0", "127.0.0.2:1"] {
            assert!(is_loopback(open), "{open}");
        }
        for exposed in [
            "0.0.0.0:8083",
            "[::]:8083",
            "10.0.0.5:8083",
            "sluice:8083",
            ":8083",
        ] {
            assert!(!is_loopback(exposed), "{exposed}");
        }
    }
}
