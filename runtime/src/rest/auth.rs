//! Who may call the REST API: bearer tokens and HTTP basic users, each `admin` (every call) or
//! `read` (GET only). `/health*` is always open for probes, `/metrics` when configured so.
//! Forwarded writes from other workers carry a worker signature instead (see [`super::signature`]).
//!
//! Token and user files are re-read when their modification time or size changes, so a
//! credential rotates by rewriting the file (a Kubernetes Secret volume does exactly that).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tracing::warn;

use super::ApiError;
use super::signature::{self, Verifier};
use crate::config::AuthSettings;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// GET and HEAD only.
    Read,
    /// Every call.
    Admin,
}

impl Role {
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "read" => Some(Self::Read),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} line {line}: {message}")]
    Parse {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("environment variable {0} (rest.auth.tokens_env) is not set")]
    EnvMissing(String),
}

/// Tokens as SHA-256 digests, so comparing them takes the same time whatever they hold.
type Tokens = Vec<([u8; 32], Role)>;
/// User name to (bcrypt hash, role).
type Users = HashMap<String, (String, Role)>;

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn parse_tokens(text: &str, origin: &str) -> Result<Tokens, AuthError> {
    let mut out = Vec::new();
    let entries = text
        .split(['\n', ','])
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    for (i, entry) in entries {
        let parse_error = |message: &str| AuthError::Parse {
            origin: origin.to_owned(),
            line: i + 1,
            message: message.to_owned(),
        };
        let (role, token) = entry
            .split_once(':')
            .ok_or_else(|| parse_error("expected <role>:<token>"))?;
        let role = Role::parse(role).ok_or_else(|| parse_error("role must be admin or read"))?;
        if token.trim().len() < 16 {
            return Err(parse_error("a token must be at least 16 characters"));
        }
        out.push((digest(token.trim()), role));
    }
    Ok(out)
}

fn parse_users(text: &str, origin: &str) -> Result<Users, AuthError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parse_error = |message: &str| AuthError::Parse {
            origin: origin.to_owned(),
            line: i + 1,
            message: message.to_owned(),
        };
        let (user, rest) = line
            .split_once(':')
            .ok_or_else(|| parse_error("expected <user>:<bcrypt hash>[:<role>]"))?;
        // A bcrypt hash ($2b$..) holds no ':', so a further ':' starts the role.
        let (hash, role) = match rest.split_once(':') {
            Some((hash, role)) => (
                hash,
                Role::parse(role).ok_or_else(|| parse_error("role must be admin or read"))?,
            ),
            None => (rest, Role::Read),
        };
        if !hash.starts_with("$2") {
            return Err(parse_error(
                "expected a bcrypt hash ($2a$, $2b$ or $2y$; `htpasswd -nbB <user> <password>`)",
            ));
        }
        out.insert(user.to_owned(), (hash.to_owned(), role));
    }
    Ok(out)
}

/// A file's modification time and size: a change in either means it was rewritten.
type Stamp = Option<(SystemTime, u64)>;
/// The stamp of the last read and what it parsed into.
type Loaded<T> = (Stamp, Arc<T>);

/// A file parsed into `T`, parsed again when it changes.
struct Watched<T> {
    path: PathBuf,
    parse: fn(&str, &str) -> Result<T, AuthError>,
    state: Mutex<Loaded<T>>,
}

impl<T> Watched<T> {
    fn load(path: &Path, parse: fn(&str, &str) -> Result<T, AuthError>) -> Result<Self, AuthError> {
        let read = |source| AuthError::Read {
            path: path.to_owned(),
            source,
        };
        let stamp = std::fs::metadata(path).map_err(read)?;
        let text = std::fs::read_to_string(path).map_err(read)?;
        let value = parse(&text, &path.display().to_string())?;
        Ok(Self {
            path: path.to_owned(),
            parse,
            state: Mutex::new((stamp_of(&stamp), Arc::new(value))),
        })
    }

    /// The current contents; a file that changed but no longer parses keeps the last good ones.
    async fn current(&self) -> Arc<T> {
        let seen = self.lock().0;
        let now = tokio::fs::metadata(&self.path)
            .await
            .ok()
            .and_then(|m| stamp_of(&m));
        if now.is_some() && now != seen {
            match tokio::fs::read_to_string(&self.path).await {
                Ok(text) => match (self.parse)(&text, &self.path.display().to_string()) {
                    Ok(value) => {
                        *self.lock() = (now, Arc::new(value));
                        tracing::info!(file = %self.path.display(), "REST credentials reloaded");
                    }
                    Err(e) => {
                        warn!(error = %e, "REST credentials file changed but cannot be used; keeping the previous credentials");
                        self.lock().0 = now;
                    }
                },
                Err(e) => {
                    warn!(file = %self.path.display(), error = %e, "cannot re-read a REST credentials file")
                }
            }
        }
        Arc::clone(&self.lock().1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded<T>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn stamp_of(metadata: &std::fs::Metadata) -> Stamp {
    Some((metadata.modified().ok()?, metadata.len()))
}

/// The REST API's access rules, shared by every request.
pub(crate) struct Auth {
    metrics_public: bool,
    env_tokens: Tokens,
    tokens_file: Option<Watched<Tokens>>,
    users: Option<Watched<Users>>,
    worker_key: Option<Verifier>,
    max_body_bytes: usize,
}

impl Auth {
    pub(crate) fn load(settings: &AuthSettings, max_body_bytes: usize) -> Result<Self, AuthError> {
        let env_tokens = match &settings.tokens_env {
            Some(var) => {
                let text = std::env::var(var).map_err(|_| AuthError::EnvMissing(var.to_owned()))?;
                parse_tokens(&text, &format!("environment variable {var}"))?
            }
            None => Vec::new(),
        };
        Ok(Self {
            metrics_public: settings.metrics_public,
            env_tokens,
            tokens_file: settings
                .tokens_file
                .as_deref()
                .map(|p| Watched::load(p, parse_tokens))
                .transpose()?,
            users: settings
                .basic_file
                .as_deref()
                .map(|p| Watched::load(p, parse_users))
                .transpose()?,
            worker_key: settings
                .worker_secret
                .as_ref()
                .map(|s| Verifier::new(s.expose())),
            max_body_bytes,
        })
    }

    /// Sets this worker's URL: forwarded requests must have been signed for it.
    pub(crate) fn bind(&self, url: &str) {
        if let Some(key) = &self.worker_key {
            key.bind(url);
        }
    }

    fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.users.is_some() || !self.env_tokens.is_empty()
    }

    async fn token_role(&self, token: &str) -> Option<Role> {
        let wanted = digest(token);
        let file = match &self.tokens_file {
            Some(f) => Some(f.current().await),
            None => None,
        };
        self.env_tokens
            .iter()
            .chain(file.iter().flat_map(|t| t.iter()))
            .find(|(d, _)| bool::from(d.ct_eq(&wanted)))
            .map(|(_, role)| *role)
    }

    async fn basic_role(&self, encoded: &str) -> Option<Role> {
        let users = self.users.as_ref()?.current().await;
        let (user, password) = basic_credentials(encoded)?;
        let (hash, role) = users.get(&user)?.clone();
        // bcrypt is deliberately slow: off the async threads.
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()?
            .ok()?;
        ok.then_some(role)
    }
}

/// How an `Authorization` header authenticates.
enum Credential<'a> {
    Bearer(&'a str),
    Basic(&'a str),
}

/// The scheme and credentials of an `Authorization` header value.
fn credential(value: &str) -> Option<Credential<'_>> {
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Some(Credential::Bearer(token.trim()))
        }
        Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
            Some(Credential::Basic(encoded))
        }
        _ => None,
    }
}

/// The user and password of HTTP basic credentials (base64 of `user:password`).
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Runs what the access rules read from outside on `text`: a tokens file, an htpasswd file, an
/// `Authorization` header, and (line by line) the worker-signature headers and path of a
/// forwarded request. For the fuzzer (`fuzz/`): any input gives an answer, never a panic.
#[doc(hidden)]
pub fn fuzz_untrusted_auth(text: &str) {
    let _ = parse_tokens(text, "fuzz");
    let _ = parse_users(text, "fuzz");
    if let Some(Credential::Basic(encoded)) = credential(text) {
        let _ = basic_credentials(encoded);
    }
    let mut lines = text.split('\n');
    let mut request = axum::http::Request::builder().method("POST");
    for name in [
        signature::TIMESTAMP_HEADER,
        signature::TARGET_HEADER,
        signature::NONCE_HEADER,
        signature::SIGNATURE_HEADER,
    ] {
        if let Some(value) = lines.next() {
            request = request.header(name, value);
        }
    }
    let request = request.uri(lines.next().unwrap_or("/connectors?forward=false"));
    if let Ok(request) = request.body(()) {
        let (parts, ()) = request.into_parts();
        let verifier = Verifier::new("a-worker-secret-of-32-characters!");
        verifier.bind("http://worker:8083");
        let body: Vec<&str> = lines.collect();
        let _ = verifier.verify(&parts, body.join("\n").as_bytes());
    }
}

fn read_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sluice\", Basic realm=\"sluice\""),
    );
    response
}

/// The middleware: lets a request through or answers 401/403 itself.
pub(crate) async fn check(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/health" || path.starts_with("/health/") {
        return next.run(request).await;
    }
    // A request another worker forwarded (or claims to have): only a worker signature admits
    // it, never a user's credentials, so a forged `forward=false` write is refused.
    if let Some(key) = &auth.worker_key
        && signature::claims_forwarded(&request)
    {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, auth.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
                    .into_response();
            }
        };
        if let Err(reason) = key.verify(&parts, &bytes) {
            warn!(method = %parts.method, path = %parts.uri.path(), %reason, "refused a forwarded request");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("forwarded request refused: {reason}"),
            )
            .into_response();
        }
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    if !auth.enabled() || (path == "/metrics" && auth.metrics_public) {
        return next.run(request).await;
    }
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(credential) = credential else {
        return unauthorized(
            "authentication required: send Authorization: Bearer <token> or Basic credentials",
        );
    };
    let role = match self::credential(&credential) {
        Some(Credential::Bearer(token)) => auth.token_role(token).await,
        Some(Credential::Basic(encoded)) => auth.basic_role(encoded).await,
        None => None,
    };
    let Some(role) = role else {
        warn!(method = %request.method(), path, "REST request with invalid credentials");
        return unauthorized("invalid credentials");
    };
    if role == Role::Read && !read_only(request.method()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "this credential may only read (role read); writes need role admin",
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_user_files_parse_and_name_bad_lines() {
        let tokens = parse_tokens(
            "# ops\nadmin:0123456789abcdef0123\n\nread:ffffffffffffffffffff:with-colon",
            "t",
        )
        .unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0], (digest("0123456789abcdef0123"), Role::Admin));
        assert_eq!(
            tokens[1],
            (digest("ffffffffffffffffffff:with-colon"), Role::Read)
        );
        let env = parse_tokens("admin:aaaaaaaaaaaaaaaa,read:bbbbbbbbbbbbbbbb", "env").unwrap();
        assert_eq!(env.len(), 2);
        let err = parse_tokens("admin:short", "t").unwrap_err().to_string();
        assert_eq!(err, "t line 1: a token must be at least 16 characters");
        let err = parse_tokens("root:0123456789abcdef0123", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("role must be admin or read"), "{err}");

        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = parse_users(&format!("alice:{hash}\nbob:{hash}:admin\n"), "u").unwrap();
        assert_eq!(users["alice"].1, Role::Read);
        assert_eq!(users["bob"].1, Role::Admin);
        let err = parse_users("carol:plaintext", "u").unwrap_err().to_string();
        assert!(err.contains("u line 1: expected a bcrypt hash"), "{err}");
    }
}
