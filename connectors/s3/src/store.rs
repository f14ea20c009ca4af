//! The bucket, through aws-sdk-s3.
//!
//! Requests retry with the SDK's standard strategy (exponential backoff with full jitter, a
//! client-side retry budget), `max_retries` times after the first attempt with waits from
//! `retry_backoff` up to `retry_max_backoff`: server errors, throttling, timeouts and refused
//! connections. What still fails is classified here: S3 away for now is
//! [`Error::Unavailable`] (retriable: the sink goes back to what is durable and the runtime tries
//! again later, without a task restart); a missing bucket or denied access fails at once with an
//! error that says what to check.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::{RetryConfig, RetryPartition, TokenBucket};
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tracing::warn;

use crate::config::Connection;
use crate::error::{Error, Result};

/// Tokens of the SDK's retry budget (a retry after a timeout or a refused connection costs 10).
const RETRY_BUDGET: usize = 500;
/// Tokens the budget regains per second.
const RETRY_BUDGET_REFILL_PER_SECOND: f32 = 10.0;

/// A bucket and the client that talks to it.
#[derive(Clone)]
pub(crate) struct Store {
    client: Client,
    bucket: String,
    /// Attempts per request (the first and the SDK's retries), for messages.
    attempts: u32,
    /// Reads of an object's body after its headers came (the SDK does not retry those).
    backoff: Duration,
    max_backoff: Duration,
}

impl Store {
    /// Builds the client and checks that the bucket exists and is reachable with these
    /// credentials.
    pub(crate) async fn connect(conn: &Connection) -> Result<Self> {
        let store = Self::client(conn).await?;
        store.check_bucket().await?;
        Ok(store)
    }

    async fn client(conn: &Connection) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(conn.region.clone()));
        if let (Some(id), Some(secret)) = (&conn.access_key_id, &conn.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.expose().to_owned(),
                None,
                None,
                "sluice-config",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(conn.path_style)
            // The SDK's retry budget is per process by default and refills only on successes:
            // one long outage would leave every S3 connector of the worker without retries for a
            // while after it. Each task gets its own budget, which also refills with time.
            .retry_partition(
                RetryPartition::custom(format!("sluice-s3-{}", conn.bucket))
                    .token_bucket(
                        TokenBucket::builder()
                            .capacity(RETRY_BUDGET)
                            .refill_rate(RETRY_BUDGET_REFILL_PER_SECOND)
                            .build(),
                    )
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(conn.max_retries.saturating_add(1))
                    .with_initial_backoff(Duration::from_millis(conn.retry_backoff.max(1)))
                    .with_max_backoff(Duration::from_millis(conn.retry_max_backoff.max(1))),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(endpoint) = &conn.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        let store = Self {
            client: Client::from_conf(builder.build()),
            bucket: conn.bucket.clone(),
            attempts: conn.max_retries.saturating_add(1),
            backoff: Duration::from_millis(conn.retry_backoff.max(1)),
            max_backoff: Duration::from_millis(conn.retry_max_backoff.max(1)),
        };
        Ok(store)
    }

    /// [`connect`](Self::connect) for a task that can wait for S3: a bucket that cannot be
    /// reached now (S3 away) is not an error, only a missing bucket or refused credentials are;
    /// the requests that follow retry as usual.
    /// Also says whether S3 answered.
    pub(crate) async fn connect_patiently(conn: &Connection) -> Result<(Self, bool)> {
        let store = Self::client(conn).await?;
        match store.check_bucket().await {
            Ok(()) => Ok((store, true)),
            Err(Error::Unavailable { detail, .. }) => {
                warn!(bucket = %conn.bucket, error = %detail, "S3 cannot be reached now; starting anyway, records wait for it");
                Ok((store, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether S3 answers again after requests failed for a transient reason (one HeadBucket):
    /// `Unavailable` while it does not.
    pub(crate) async fn probe(&self) -> Result<()> {
        self.check_bucket().await
    }

    async fn check_bucket(&self) -> Result<()> {
        let result = self
            .send("HeadBucket", "", || {
                self.client.head_bucket().bucket(&self.bucket).send()
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // HeadBucket has no body: S3 says 404 / 403 with an empty error code.
            Err(Error::Request { detail, .. }) if detail.contains("HTTP 404") => {
                Err(Error::NoSuchBucket {
                    bucket: self.bucket.clone(),
                })
            }
            Err(Error::Request { detail, .. }) if detail.contains("HTTP 403") => {
                Err(Error::AccessDenied {
                    operation: "HeadBucket",
                    bucket: self.bucket.clone(),
                    detail,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Runs one request (the SDK retries it as configured) and says what a failure means.
    async fn send<T, E, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        attempt: impl FnOnce() -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        attempt()
            .await
            .map_err(|error| self.classify(operation, key, &error))
    }

    fn classify<E>(
        &self,
        operation: &'static str,
        key: &str,
        error: &SdkError<E, HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let unavailable = |detail| Error::Unavailable {
            operation,
            key: key.to_owned(),
            attempts: self.attempts,
            detail,
        };
        match error {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code().unwrap_or_default();
                let message = service.err().message().unwrap_or_default();
                let detail = format!("{code} {message} (HTTP {status})");
                match code {
                    "NoSuchBucket" => Error::NoSuchBucket {
                        bucket: self.bucket.clone(),
                    },
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken" => Error::AccessDenied {
                        operation,
                        bucket: self.bucket.clone(),
                        detail,
                    },
                    "SlowDown"
                    | "InternalError"
                    | "ServiceUnavailable"
                    | "RequestTimeout"
                    | "RequestTimeTooSkewed"
                    | "Throttling" => unavailable(detail),
                    // Server trouble that passes; 501 (not implemented) or 505 do not.
                    _ if matches!(status, 429 | 500 | 502 | 503 | 504) => unavailable(detail),
                    _ => Error::Request {
                        operation,
                        key: key.to_owned(),
                        detail,
                    },
                }
            }
            SdkError::ConstructionFailure(_) => Error::Request {
                operation,
                key: key.to_owned(),
                detail: error_chain(error),
            },
            // Timeouts, refused or reset connections, unreadable responses: transient.
            _ => unavailable(error_chain(error)),
        }
    }

    /// Uploads a whole object in one request.
    pub(crate) async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        self.send("PutObject", key, || {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body.clone()))
                // The CRC32 checksum the SDK adds covers the body; signing it too would hash
                // every archived byte a second time (SHA-256) for no extra safety.
                .customize()
                .disable_payload_signing()
                .send()
        })
        .await
        .map(|_| ())
    }

    pub(crate) async fn create_multipart(&self, key: &str) -> Result<String> {
        let out = self
            .send("CreateMultipartUpload", key, || {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
            })
            .await?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| Error::Request {
                operation: "CreateMultipartUpload",
                key: key.to_owned(),
                detail: "the answer has no upload id".into(),
            })
    }

    /// Uploads one part; returns it for the completion request.
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart> {
        let out = self
            .send("UploadPart", key, || {
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(body.clone()))
                    .customize()
                    .disable_payload_signing()
                    .send()
            })
            .await?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }

    pub(crate) async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<()> {
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        self.send("CompleteMultipartUpload", key, || {
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(upload.clone())
                .send()
        })
        .await
        .map(|_| ())
    }

    /// Best effort: an upload left behind holds no visible object, only storage.
    pub(crate) async fn abort_multipart(&self, key: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(e) = result {
            warn!(key, error = %error_chain(&e), "cannot abort multipart upload");
        }
    }

    /// Every key under `prefix`, in the order S3 lists them (lexicographic).
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .send("ListObjectsV2", prefix, || {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(keys)
    }

    /// A whole object.
    pub(crate) async fn get(&self, key: &str) -> Result<Bytes> {
        let mut wait = self.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let out = self
                .send("GetObject", key, || {
                    self.client
                        .get_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                })
                .await?;
            // The body streams after the headers: a broken connection here is retried too.
            match out.body.collect().await {
                Ok(data) => return Ok(data.into_bytes()),
                Err(e) if attempts < self.attempts => {
                    warn!(key, error = %e, "reading S3 object failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.max_backoff);
                }
                Err(e) => {
                    return Err(Error::Unavailable {
                        operation: "GetObject",
                        key: key.to_owned(),
                        attempts,
                        detail: e.to_string(),
                    });
                }
            }
        }
    }
}

/// The error and its sources on one line (the SDK's top-level message is often just
/// "dispatch failure").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
