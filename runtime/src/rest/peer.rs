//! The one HTTP client a worker calls other workers with: forwarded REST writes and task configs
//! handed to the leader alike. It trusts `rest.tls.ca_file`, presents this worker's certificate
//! when the API requires client certificates, and signs every request with the worker secret,
//! so a secured cluster admits it wherever one worker calls another.

use std::sync::Arc;

use super::signature::WorkerKey;
use super::tls::{self, TlsError};
use crate::config::RestSettings;

/// Calls to other workers of the cluster, configured once from the `rest` block.
#[derive(Clone)]
pub struct Peers {
    http: reqwest::Client,
    key: Option<Arc<WorkerKey>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// The client `rest` describes (CA trust, client identity, worker secret).
    pub fn new(rest: &RestSettings) -> Result<Self, TlsError> {
        Ok(Self {
            http: tls::forward_client(rest)?,
            key: rest
                .auth
                .worker_secret
                .as_ref()
                .map(|s| Arc::new(WorkerKey::new(s.expose()))),
        })
    }

    /// A request to `base` (another worker's URL) for `path_and_query`, signed when a worker
    /// secret is configured: for that worker only, and usable once. `body` is sent as JSON when
    /// not empty; the signature covers it.
    pub fn request(
        &self,
        method: reqwest::Method,
        base: &str,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method.clone(), format!("{base}{path_and_query}"));
        // The leader admits a forwarded (`forward=false`) request only with this signature.
        if let Some(key) = &self.key {
            for (name, value) in key
                .sign(method.as_str(), base, path_and_query, &body)
                .headers()
            {
                request = request.header(name, value);
            }
        }
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        request
    }
}
