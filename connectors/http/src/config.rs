//! Configuration of `http-sink`: the field spec (validated by the runtime, every error naming its
//! field) and the typed struct the task parses it into.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
pub use sluice_connector_api::Secret;
use sluice_connector_api::{ConfigSpec, FieldKind, Validator};

use crate::template::UrlTemplate;

pub(crate) const DEFAULT_BATCH_MAX_RECORDS: i64 = 500;
pub(crate) const DEFAULT_BATCH_MAX_BYTES: i64 = 1024 * 1024;
pub(crate) const DEFAULT_LINGER_MS: i64 = 0;
pub(crate) const DEFAULT_MAX_IN_FLIGHT: i64 = 4;
pub(crate) const DEFAULT_RETRY_BACKOFF_MS: i64 = 100;
pub(crate) const DEFAULT_RETRY_MAX_BACKOFF_MS: i64 = 10_000;
pub(crate) const DEFAULT_REQUEST_TIMEOUT_MS: i64 = 30_000;

/// The HTTP method of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Post,
    Put,
    Patch,
}

impl Method {
    pub(crate) fn as_reqwest(self) -> reqwest::Method {
        match self {
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Patch => reqwest::Method::PATCH,
        }
    }
}

/// How records become request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchFormat {
    /// One record per request; the body is the value (strings and bytes as they are, other
    /// values as JSON).
    Single,
    /// A JSON array of values per request.
    JsonArray,
    /// One value per line (strings as they are, other values as JSON).
    Ndjson,
}

/// How requests authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    None,
    /// `Authorization: Basic` from `auth_username` and `auth_password`.
    Basic,
    /// `Authorization: Bearer <auth_token>`.
    Bearer,
    /// Any header: `auth_header_name: auth_header_value`.
    Header,
}

/// Configuration of `http-sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct HttpSinkConfig {
    /// Topics to read.
    pub topics: Vec<String>,
    /// URL template: `${topic}`, `${partition}` and `${key}` are replaced (percent-encoded).
    pub url: String,
    pub method: Method,
    pub batch_format: BatchFormat,
    /// Most records in one request (`single` sends one).
    pub batch_max_records: usize,
    /// Most body bytes in one request; a single larger record is still sent alone.
    pub batch_max_bytes: usize,
    /// How long a partial batch waits for more records (ms); 0 sends it at once.
    pub linger: u64,
    /// Headers sent with every request.
    pub headers: BTreeMap<String, serde_json::Value>,
    /// Send each record's headers as HTTP headers (`single` only).
    pub forward_headers: bool,
    /// Prefix of forwarded header names.
    pub forward_headers_prefix: String,
    pub auth_type: AuthType,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    pub auth_token: Option<Secret>,
    pub auth_header_name: Option<String>,
    pub auth_header_value: Option<Secret>,
    /// PEM file of CA certificates trusted in addition to the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub tls_insecure_skip_verify: bool,
    /// PEM client certificate (chain) for mutual TLS, with `tls_client_key_file`.
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub tls_client_key_file: Option<PathBuf>,
    /// First wait before a retry (ms); doubles after each failure.
    pub retry_backoff: u64,
    /// Longest wait between retries (ms).
    pub retry_max_backoff: u64,
    /// Attempts per request before the task fails; 0 retries until the task is stopped.
    pub retry_max_attempts: u32,
    /// Timeout of one request, connection included (ms).
    pub request_timeout: u64,
    /// Requests in flight at once per task; records with the same key share one lane.
    pub max_in_flight: usize,
}

fn url_check() -> Validator {
    Validator::Custom(Arc::new(|v| match v.as_str() {
        Some(s) => UrlTemplate::parse(s).map(drop).map_err(|e| e.to_string()),
        None => Err(format!("expected a URL, got {v}")),
    }))
}

pub(crate) fn sink_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("topics", FieldKind::List, "Topics to read.")
        .check(Validator::NonEmpty)
        .required(
            "url",
            FieldKind::String,
            "URL records are sent to (http:// or https://). `${topic}`, `${partition}` and `${key}` are replaced by the record's, percent-encoded; a batch holds records with the same URL.",
        )
        .check(url_check())
        .optional(
            "method",
            FieldKind::String,
            "post",
            "HTTP method: `post`, `put` or `patch`.",
        )
        .check(Validator::one_of(["post", "put", "patch"]))
        .optional(
            "batch_format",
            FieldKind::String,
            "single",
            "`single`: one record per request, the body is the value (strings and bytes as they are, other values as JSON); `json_array`: a JSON array of values; `ndjson`: one value per line (strings as they are, other values as JSON).",
        )
        .check(Validator::one_of(["single", "json_array", "ndjson"]))
        .optional(
            "batch_max_records",
            FieldKind::Int,
            DEFAULT_BATCH_MAX_RECORDS,
            "Most records in one request (`json_array`, `ndjson`).",
        )
        .check(Validator::range(1, 100_000))
        .optional(
            "batch_max_bytes",
            FieldKind::Int,
            DEFAULT_BATCH_MAX_BYTES,
            "Most body bytes in one request; a record larger than this is sent alone.",
        )
        .check(Validator::range(1, 1024 * 1024 * 1024))
        .optional(
            "linger",
            FieldKind::Duration,
            DEFAULT_LINGER_MS,
            "How long a partial batch waits for more records; 0 sends what is there at once.",
        )
        .optional(
            "headers",
            FieldKind::Map,
            serde_json::json!({}),
            "Headers sent with every request, e.g. `{X-Source: sluice}`; a `Content-Type` here replaces the default (`application/json`, `application/x-ndjson`, or `text/plain`/`application/octet-stream` for `single` string/bytes values).",
        )
        .optional(
            "forward_headers",
            FieldKind::Bool,
            false,
            "Send each record's headers as HTTP headers (`batch_format: single` only).",
        )
        .optional(
            "forward_headers_prefix",
            FieldKind::String,
            "",
            "Prefix added to the names of forwarded record headers.",
        )
        .optional(
            "auth_type",
            FieldKind::String,
            "none",
            "`none`, `basic` (`auth_username`, `auth_password`), `bearer` (`auth_token`) or `header` (`auth_header_name`, `auth_header_value`).",
        )
        .check(Validator::one_of(["none", "basic", "bearer", "header"]))
        .maybe("auth_username", FieldKind::String, "User name of `basic` auth.")
        .maybe("auth_password", FieldKind::String, "Password of `basic` auth.")
        .secret()
        .maybe("auth_token", FieldKind::String, "Token of `bearer` auth.")
        .secret()
        .maybe(
            "auth_header_name",
            FieldKind::String,
            "Header name of `header` auth, e.g. `X-Api-Key`.",
        )
        .maybe(
            "auth_header_value",
            FieldKind::String,
            "Header value of `header` auth.",
        )
        .secret()
        .maybe(
            "tls_ca_file",
            FieldKind::String,
            "PEM file of CA certificates trusted in addition to the system's.",
        )
        .optional(
            "tls_insecure_skip_verify",
            FieldKind::Bool,
            false,
            "Accept any server certificate and host name (testing only).",
        )
        .maybe(
            "tls_client_cert_file",
            FieldKind::String,
            "PEM client certificate (chain) for mutual TLS, with `tls_client_key_file`.",
        )
        .maybe(
            "tls_client_key_file",
            FieldKind::String,
            "PEM private key of `tls_client_cert_file`.",
        )
        .optional(
            "retry_backoff",
            FieldKind::Duration,
            DEFAULT_RETRY_BACKOFF_MS,
            "First wait before retrying a request that failed with 408, 429, 5xx, a timeout or a connection error; doubles after each failure. A `Retry-After` answer (seconds or HTTP date) is honoured instead, up to 5 minutes.",
        )
        .optional(
            "retry_max_backoff",
            FieldKind::Duration,
            DEFAULT_RETRY_MAX_BACKOFF_MS,
            "Longest wait between retries.",
        )
        .optional(
            "retry_max_attempts",
            FieldKind::Int,
            0,
            "Attempts per request before the task fails; 0 retries until the task is stopped (as Kafka Connect retries a retriable put).",
        )
        .check(Validator::range(0, 1_000_000))
        .optional(
            "request_timeout",
            FieldKind::Duration,
            DEFAULT_REQUEST_TIMEOUT_MS,
            "Timeout of one request, connecting included; a timeout is retried.",
        )
        .optional(
            "max_in_flight",
            FieldKind::Int,
            DEFAULT_MAX_IN_FLIGHT,
            "Requests in flight at once per task. Records are spread over this many lanes by key; a lane sends one request at a time, so records with the same key keep their order.",
        )
        .check(Validator::range(1, 256))
}

impl HttpSinkConfig {
    /// Checks that the fields fit together; errors name the fields.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut need = |field: &str, present: bool, why: &str| {
            if !present {
                problems.push(format!("config.{field}: required {why}"));
            }
        };
        match self.auth_type {
            AuthType::None => {}
            AuthType::Basic => {
                need(
                    "auth_username",
                    self.auth_username.is_some(),
                    "with auth_type basic",
                );
                need(
                    "auth_password",
                    self.auth_password.is_some(),
                    "with auth_type basic",
                );
            }
            AuthType::Bearer => {
                need(
                    "auth_token",
                    self.auth_token.is_some(),
                    "with auth_type bearer",
                );
            }
            AuthType::Header => {
                need(
                    "auth_header_name",
                    self.auth_header_name.is_some(),
                    "with auth_type header",
                );
                need(
                    "auth_header_value",
                    self.auth_header_value.is_some(),
                    "with auth_type header",
                );
            }
        }
        need(
            "tls_client_key_file",
            self.tls_client_cert_file.is_none() || self.tls_client_key_file.is_some(),
            "with tls_client_cert_file",
        );
        need(
            "tls_client_cert_file",
            self.tls_client_key_file.is_none() || self.tls_client_cert_file.is_some(),
            "with tls_client_key_file",
        );
        if self.forward_headers && self.batch_format != BatchFormat::Single {
            problems.push(
                "config.forward_headers: record headers can only be forwarded with batch_format single (a batch holds many records)".to_owned(),
            );
        }
        if let Some(name) = &self.auth_header_name
            && reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            problems.push(format!(
                "config.auth_header_name: `{name}` is not a valid header name"
            ));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(format!(
                    "config.headers: `{name}` is not a valid header name"
                ));
            }
            let text = header_text(value);
            if reqwest::header::HeaderValue::from_str(&text).is_err() {
                problems.push(format!("config.headers.{name}: not a valid header value"));
            }
        }
        if self.retry_max_backoff < self.retry_backoff {
            problems.push(format!(
                "config.retry_max_backoff: expected at least retry_backoff ({} ms), got {} ms",
                self.retry_backoff, self.retry_max_backoff
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// A configured header value as text (YAML may give numbers or booleans).
pub(crate) fn header_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(input: serde_json::Value) -> Result<HttpSinkConfig, Vec<String>> {
        let config = sink_spec()
            .validate(input.as_object().unwrap())
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let parsed: HttpSinkConfig = config.parse().map_err(|e| vec![e.to_string()])?;
        parsed.check().map_err(|e| vec![e])?;
        Ok(parsed)
    }

    #[test]
    fn defaults_fill_in() {
        let config = validate(json!({"topics": ["t"], "url": "http://127.0.0.1:8080/in"})).unwrap();
        assert_eq!(config.method, Method::Post);
        assert_eq!(config.batch_format, BatchFormat::Single);
        assert_eq!(config.max_in_flight, 4);
        assert_eq!(config.retry_max_attempts, 0);
        assert_eq!(config.request_timeout, 30_000);
        assert_eq!(config.auth_type, AuthType::None);
    }

    #[test]
    fn bad_fields_are_named() {
        let errors = validate(json!({
            "topics": ["t"],
            "url": "ftp://example.com/${topic}",
            "batch_format": "xml",
            "method": "get",
            "max_in_flight": 0,
            "linger": "soon",
        }))
        .unwrap_err();
        let fields: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            ["url", "method", "batch_format", "linger", "max_in_flight"]
        );
        assert!(errors[0].contains("http:// or https://"), "{errors:?}");
        assert!(
            errors[2].contains("single, json_array, ndjson"),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_placeholders_and_bad_urls_are_refused() {
        let errors = validate(json!({"topics": ["t"], "url": "http://h/${offset}"})).unwrap_err();
        assert!(errors[0].starts_with("url: "), "{errors:?}");
        assert!(errors[0].contains("${offset}"), "{errors:?}");
        let errors = validate(json!({"topics": ["t"], "url": "not a url"})).unwrap_err();
        assert!(errors[0].starts_with("url: "), "{errors:?}");
    }

    #[test]
    fn fields_that_belong_together_are_checked() {
        let error = validate(json!({"topics": ["t"], "url": "http://h/", "auth_type": "basic", "auth_username": "u"}))
            .unwrap_err();
        assert_eq!(
            error,
            ["config.auth_password: required with auth_type basic"]
        );
        let error = validate(json!({"topics": ["t"], "url": "http://h/", "auth_type": "bearer"}))
            .unwrap_err();
        assert_eq!(error, ["config.auth_token: required with auth_type bearer"]);
        let error = validate(json!({"topics": ["t"], "url": "http://h/", "forward_headers": true, "batch_format": "ndjson"}))
            .unwrap_err();
        assert!(error[0].starts_with("config.forward_headers:"), "{error:?}");
        let error =
            validate(json!({"topics": ["t"], "url": "http://h/", "tls_client_cert_file": "c.pem"}))
                .unwrap_err();
        assert_eq!(
            error,
            ["config.tls_client_key_file: required with tls_client_cert_file"]
        );
        let error =
            validate(json!({"topics": ["t"], "url": "http://h/", "headers": {"bad name": "x"}}))
                .unwrap_err();
        assert!(
            error[0].contains("`bad name` is not a valid header name"),
            "{error:?}"
        );
    }

    #[test]
    fn secrets_are_masked_and_never_printed() {
        let input = json!({"topics": ["t"], "url": "http://h/", "auth_type": "bearer", "auth_token": "s3cr3t"});
        let config = validate(input.clone()).unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let masked = sink_spec().mask(input.as_object().unwrap());
        assert_eq!(masked["auth_token"], json!(sluice_connector_api::MASK));
    }
}
