//! `sluice connectors ...`: drives a running worker's REST API, so pipeline files can be applied
//! to a cluster and connectors inspected from a shell. Output is readable text, or JSON with
//! `--output json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum ConnectorsCommand {
    /// List connectors with their state.
    List,
    /// Show a connector's and its tasks' states.
    Status { name: String },
    /// Show a connector's config (secrets masked).
    Config { name: String },
    /// Create the connectors of a pipeline file (fails for a name that exists).
    Create {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Create or update the connectors of a pipeline file.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Delete a connector.
    Delete { name: String },
    /// Pause a connector and its tasks.
    Pause { name: String },
    /// Resume a paused or stopped connector.
    Resume { name: String },
    /// Stop a connector (no tasks; offsets may then be changed).
    Stop { name: String },
    /// Restart a connector, optionally with its tasks.
    Restart {
        name: String,
        #[arg(long)]
        include_tasks: bool,
        #[arg(long)]
        only_failed: bool,
    },
    /// Show a connector's offsets.
    Offsets { name: String },
    /// Check the worker answers `/health` (joined, config read), or `/health/live` (`--live`);
    /// fails otherwise. For probes where the API needs HTTPS with a private CA or mTLS.
    Health {
        #[arg(long)]
        live: bool,
    },
}

/// How to reach and authenticate to a worker's REST API.
pub struct Access {
    /// `http://` or `https://` URL of a worker.
    pub url: String,
    /// Bearer token (`--token`, `SLUICE_TOKEN`).
    pub token: Option<String>,
    /// CA certificates trusted for an https URL, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A PEM file with a client certificate (and its key, unless `client_key` is given), for
    /// workers requiring mTLS.
    pub client_cert: Option<PathBuf>,
    /// The PEM key of `client_cert`, when it is a file of its own (a Kubernetes TLS Secret).
    pub client_key: Option<PathBuf>,
}

impl Access {
    fn http(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &self.ca_file {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificates", path.display()))?;
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(path) = &self.client_cert {
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            let mut pem = read(path)?;
            if let Some(key) = &self.client_key {
                pem.push(b'\n');
                pem.extend(read(key)?);
            }
            let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!("{} must hold a PEM certificate and its key", path.display())
            })?;
            builder = builder.identity(identity);
        }
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token holds characters an HTTP header cannot carry")?;
            value.set_sensitive(true);
            builder = builder.default_headers(
                [(reqwest::header::AUTHORIZATION, value)]
                    .into_iter()
                    .collect(),
            );
        }
        Ok(builder.build()?)
    }
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Sluice REST API at {}", self.base))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// A call that must succeed; an error answer becomes the command's error.
    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let (status, value) = self.call(method, path, body).await?;
        if status >= 400 {
            let message = value["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            bail!("{message} (HTTP {status})");
        }
        Ok((status, value))
    }
}

/// Pipeline documents of a file as (name, flat config) pairs; `${...}` placeholders are sent
/// as written, so the worker resolves them and the config topic never holds the values.
fn pipeline_documents(
    path: &Path,
) -> anyhow::Result<Vec<(String, serde_json::Map<String, Value>)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(doc)
            .with_context(|| format!("{}: document {} is not valid YAML", path.display(), i + 1))?;
        if value.is_null() {
            continue;
        }
        let map = value
            .as_object()
            .with_context(|| format!("{}: document {} is not a mapping", path.display(), i + 1))?;
        let name = map
            .get("name")
            .and_then(Value::as_str)
            .with_context(|| format!("{}: document {} has no `name`", path.display(), i + 1))?
            .to_owned();
        out.push((name, sluice::config::flat_from_pipeline(map)));
    }
    Ok(out)
}

fn status_text(status: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}): {} on {}",
        status["name"].as_str().unwrap_or_default(),
        status["type"].as_str().unwrap_or_default(),
        status["connector"]["state"].as_str().unwrap_or_default(),
        status["connector"]["worker_id"].as_str().unwrap_or("-"),
    );
    if let Some(trace) = status["connector"]["trace"].as_str() {
        let _ = writeln!(out, "  error: {trace}");
    }
    for task in status["tasks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  task {:<3} {:<11} {}",
            task["id"],
            task["state"].as_str().unwrap_or_default(),
            task["worker_id"].as_str().unwrap_or("-"),
        );
        if let Some(trace) = task["trace"].as_str() {
            let _ = writeln!(out, "           error: {trace}");
        }
    }
    out
}

/// Runs one `sluice connectors` command; returns what to print.
pub async fn run(
    access: &Access,
    json_output: bool,
    command: ConnectorsCommand,
) -> anyhow::Result<String> {
    use reqwest::Method;
    let client = Client {
        base: access.url.trim_end_matches('/').to_owned(),
        http: access.http()?,
    };
    let render = |value: Value, text: String| {
        if json_output {
            format!("{value}\n")
        } else {
            text
        }
    };
    Ok(match command {
        ConnectorsCommand::Health { live } => {
            let path = if live { "/health/live" } else { "/health" };
            let (_, health) = client.ok(Method::GET, path, None).await?;
            render(health, "ok\n".to_owned())
        }
        ConnectorsCommand::List => {
            let (_, all) = client
                .ok(Method::GET, "/connectors?expand=status", None)
                .await?;
            let mut text = String::new();
            if let Some(map) = all.as_object() {
                if map.is_empty() {
                    text.push_str("no connectors\n");
                }
                for (name, entry) in map {
                    let status = &entry["status"];
                    let tasks = status["tasks"].as_array().map_or(0, Vec::len);
                    let running = status["tasks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| t["state"] == "RUNNING")
                        .count();
                    let _ = writeln!(
                        text,
                        "{name:<32} {:<7} {:<10} tasks {running}/{tasks} running",
                        status["type"].as_str().unwrap_or_default(),
                        status["connector"]["state"].as_str().unwrap_or_default(),
                    );
                }
            }
            render(all, text)
        }
        ConnectorsCommand::Status { name } => {
            let (_, status) = client
                .ok(Method::GET, &format!("/connectors/{name}/status"), None)
                .await?;
            let text = status_text(&status);
            render(status, text)
        }
        ConnectorsCommand::Config { name } => {
            let (_, config) = client
                .ok(Method::GET, &format!("/connectors/{name}/config"), None)
                .await?;
            let text = serde_yaml::to_string(&config).unwrap_or_default();
            render(config, text)
        }
        ConnectorsCommand::Create { file } => {
            let mut results = Vec::new();
            let mut text = String::new();
            for (name, config) in pipeline_documents(&file)? {
                client
                    .ok(
                        Method::POST,
                        "/connectors",
                        Some(&json!({"name": name, "config": config})),
                    )
                    .await
                    .with_context(|| format!("creating {name}"))?;
                let _ = writeln!(text, "created {name}");
                results.push(json!({"name": name, "result": "created"}));
            }
            render(json!(results), text)
        }
        ConnectorsCommand::Apply { file } => {
            let mut results = Vec::new();
            let mut text = String::new();
            for (name, config) in pipeline_documents(&file)? {
                let (status, _) = client
                    .ok(
                        Method::PUT,
                        &format!("/connectors/{name}/config"),
                        Some(&Value::Object(config)),
                    )
                    .await
                    .with_context(|| format!("applying {name}"))?;
                let result = if status == 201 { "created" } else { "updated" };
                let _ = writeln!(text, "{result} {name}");
                results.push(json!({"name": name, "result": result}));
            }
            render(json!(results), text)
        }
        ConnectorsCommand::Delete { name } => {
            client
                .ok(Method::DELETE, &format!("/connectors/{name}"), None)
                .await?;
            render(
                json!({"name": name, "result": "deleted"}),
                format!("deleted {name}\n"),
            )
        }
        ConnectorsCommand::Pause { name } => {
            client
                .ok(Method::PUT, &format!("/connectors/{name}/pause"), None)
                .await?;
            render(
                json!({"name": name, "result": "pausing"}),
                format!("pausing {name}\n"),
            )
        }
        ConnectorsCommand::Resume { name } => {
            client
                .ok(Method::PUT, &format!("/connectors/{name}/resume"), None)
                .await?;
            render(
                json!({"name": name, "result": "resuming"}),
                format!("resuming {name}\n"),
            )
        }
        ConnectorsCommand::Stop { name } => {
            client
                .ok(Method::PUT, &format!("/connectors/{name}/stop"), None)
                .await?;
            render(
                json!({"name": name, "result": "stopping"}),
                format!("stopping {name}\n"),
            )
        }
        ConnectorsCommand::Restart {
            name,
            include_tasks,
            only_failed,
        } => {
            let path = format!(
                "/connectors/{name}/restart?includeTasks={include_tasks}&onlyFailed={only_failed}"
            );
            let (_, status) = client.ok(Method::POST, &path, None).await?;
            let text = if status.is_null() {
                format!("restarting {name}\n")
            } else {
                status_text(&status)
            };
            render(
                if status.is_null() {
                    json!({"name": name, "result": "restarting"})
                } else {
                    status
                },
                text,
            )
        }
        ConnectorsCommand::Offsets { name } => {
            let (_, offsets) = client
                .ok(Method::GET, &format!("/connectors/{name}/offsets"), None)
                .await?;
            let mut text = String::new();
            for entry in offsets["offsets"].as_array().into_iter().flatten() {
                let _ = writeln!(text, "{} -> {}", entry["partition"], entry["offset"]);
            }
            if text.is_empty() {
                text.push_str("no offsets\n");
            }
            render(offsets, text)
        }
    })
}
