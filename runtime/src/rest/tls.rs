//! HTTPS for the REST API (rustls), with client certificates required when `client_ca_file` is
//! set, and the HTTP client a worker forwards writes with (same CA trust, its own certificate
//! as client identity).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::{RestSettings, TlsSettings};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path} holds no {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("rest.tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("rest.tls.client_ca_file: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
    #[error("cannot build the HTTP client for forwarded requests: {0}")]
    Client(#[from] reqwest::Error),
}

fn pem_error(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(path))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "PEM certificate",
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The server side: certificate, key and, with `client_ca_file`, required client certificates.
pub(crate) fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(pem_error(&tls.key_file))?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client other workers are called with: trusts `ca_file` besides the system roots and,
/// when the API requires client certificates, presents this worker's own.
pub(crate) fn forward_client(rest: &RestSettings) -> Result<reqwest::Client, TlsError> {
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = &rest.tls {
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| TlsError::Pem {
                path: ca.clone(),
                message: e.to_string(),
            })?;
            builder = builder.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        if tls.client_ca_file.is_some() {
            let mut pem = Vec::new();
            for path in [&tls.cert_file, &tls.key_file] {
                pem.extend(std::fs::read(path).map_err(|e| TlsError::Pem {
                    path: path.clone(),
                    message: e.to_string(),
                })?);
                pem.push(b'\n');
            }
            builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
        }
    }
    Ok(builder.build()?)
}

/// A listener whose connections are TLS streams. Handshakes run in their own tasks, so a slow
/// or hostile client never holds up others; failed handshakes are dropped (logged at debug).
pub(crate) struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        cancel: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    // Stop accepting when the API shuts down.
                    _ = cancel.cancelled() => return,
                    // The next connection; accept errors (too many files) pause briefly.
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            debug!(error = %e, "REST accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, accepted })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(pair) => pair,
            // The accept loop ended (shutdown): never yield another connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
