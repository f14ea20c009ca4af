//! The `sluice` command: thin CLI over the library.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use sluice::config::{ConfigFile, FileKind, Problem};
use sluice_connector_api::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod client;

/// mimalloc: the task loops allocate many small, short-lived objects on several threads, where
/// glibc's allocator spends much of the time (measured with `scripts/bench.sh cdc`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A small, fast, safe connector runtime for Kafka"
)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `sluice=debug,rdkafka=warn` (RUST_LOG also works).
    #[arg(
        long,
        global = true,
        env = "SLUICE_LOG",
        default_value = "info,pg_walstream=warn"
    )]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines in this process (standalone mode) until SIGINT/SIGTERM.
    Run {
        /// The worker file.
        worker: PathBuf,
        /// One or more pipeline files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
    },
    /// Run a distributed worker: it joins the cluster named by the worker file's `cluster`
    /// block, shares connectors and tasks with the other workers, and serves the REST API.
    Worker {
        /// The worker file.
        worker: PathBuf,
    },
    /// Manage connectors on a running worker through its REST API.
    Connectors {
        /// The worker's REST URL.
        #[arg(long, env = "SLUICE_URL", default_value = "http://localhost:8083")]
        url: String,
        /// Bearer token for a worker with `rest.auth` (an `admin` token for changes).
        #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA certificates trusted for an https URL, in addition to the system's.
        #[arg(long, env = "SLUICE_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// PEM file holding a client certificate and its key, for a worker requiring mTLS.
        #[arg(long, env = "SLUICE_CLIENT_CERT")]
        client_cert: Option<PathBuf>,
        /// PEM key of `--client-cert`, when it is in a file of its own.
        #[arg(long, env = "SLUICE_CLIENT_KEY", requires = "client_cert")]
        client_key: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(subcommand)]
        command: client::ConnectorsCommand,
    },
    /// Check worker and pipeline files; print every problem; exit non-zero if there is any.
    Validate {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// A directory of WebAssembly plugins to validate against (as a worker's `plugins_dir`).
        #[arg(long)]
        plugins_dir: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the connector types with their config fields.
    Plugins {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Also list the WebAssembly plugins of this directory (as a worker's `plugins_dir`).
        #[arg(long)]
        plugins_dir: Option<PathBuf>,
    },
    /// Print the configuration reference (Markdown) generated from the config specs.
    Docs,
}

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_tracing(cli.log_format, &cli.log)?;
    let registry = |dir: Option<&Path>| sluice::registry::with_plugins(dir);
    match cli.command {
        Command::Run { worker, pipelines } => run(&worker, &pipelines),
        Command::Worker { worker } => run_worker(&worker),
        Command::Connectors {
            url,
            token,
            ca_file,
            client_cert,
            client_key,
            output,
            command,
        } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let access = client::Access {
                url,
                token,
                ca_file,
                client_cert,
                client_key,
            };
            let text = runtime.block_on(client::run(&access, output == Output::Json, command))?;
            emit(&text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            output,
            plugins_dir,
            files,
        } => Ok(validate(&registry(plugins_dir.as_deref()), output, &files)),
        Command::Plugins {
            output,
            plugins_dir,
        } => {
            plugins(&registry(plugins_dir.as_deref()), output);
            Ok(ExitCode::SUCCESS)
        }
        Command::Docs => {
            emit(&sluice::reference::markdown(&sluice::registry::builtin()));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_tracing(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned());
    let format = match format {
        LogFormat::Text => sluice::logging::LogFormat::Text,
        LogFormat::Json => sluice::logging::LogFormat::Json,
    };
    sluice::logging::init(format, &filter)?;
    Ok(())
}

fn run_worker(worker: &Path) -> anyhow::Result<ExitCode> {
    let worker = sluice::config::load_worker(worker)?;
    let registry = sluice::registry::with_plugins(worker.plugins_dir.as_deref());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        sluice::run_worker(worker, registry, cancel).await
    })?;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn run(worker: &Path, pipelines: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let worker = sluice::config::load_worker(worker)?;
    let registry = &sluice::registry::with_plugins(worker.plugins_dir.as_deref());
    let mut all = Vec::new();
    for path in pipelines {
        all.extend(sluice::config::load_pipelines(path, registry)?);
    }
    let pipelines = all;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        sluice::run_standalone(worker, pipelines, cancel).await
    })?;
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The first SIGINT/SIGTERM stops cleanly; a second one exits at once.
async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    cancel.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    warn!("second signal: exiting without a clean stop");
    std::process::exit(130);
}

fn validate(registry: &Registry, output: Output, files: &[PathBuf]) -> ExitCode {
    let mut results = Vec::new();
    for path in files {
        let (kind, problems) = match ConfigFile::load(path) {
            Ok(docs) => (
                docs.first().map(|d| d.kind),
                docs.iter().flat_map(|d| d.check(registry)).collect(),
            ),
            Err(problems) => (None, problems),
        };
        results.push((path, kind, problems));
    }
    let problems: Vec<&Problem> = results.iter().flat_map(|(_, _, p)| p).collect();
    if output == Output::Json {
        let files: Vec<_> = results
            .iter()
            .map(|(path, kind, problems)| {
                json!({"file": path.display().to_string(), "kind": kind, "valid": problems.is_empty(), "errors": problems})
            })
            .collect();
        emit(&format!(
            "{}\n",
            json!({"valid": problems.is_empty(), "files": files})
        ));
    } else {
        let mut out = String::new();
        for (path, kind, file_problems) in &results {
            if file_problems.is_empty() {
                let kind = match kind {
                    Some(FileKind::Worker) => "worker file",
                    _ => "pipeline file",
                };
                let _ = writeln!(out, "{}: ok ({kind})", path.display());
            }
            for problem in file_problems {
                let _ = writeln!(out, "{problem}");
            }
        }
        emit(&out);
        if !problems.is_empty() {
            let bad_files = results.iter().filter(|(_, _, p)| !p.is_empty()).count();
            eprintln!("{} problem(s) in {bad_files} file(s)", problems.len());
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn plugins(registry: &Registry, output: Output) {
    if output == Output::Json {
        let list: Vec<_> = registry
            .iter()
            .map(|p| {
                let fields: Vec<_> = p
                    .spec()
                    .fields
                    .iter()
                    .map(|f| {
                        json!({"name": f.name, "type": sluice::reference::kind_name(&f.kind), "required": f.required,
                               "default": f.default, "secret": f.secret, "doc": f.doc})
                    })
                    .collect();
                json!({"name": p.name(), "kind": p.kind().as_str(), "doc": p.doc(), "config": fields})
            })
            .collect();
        emit(&format!("{}\n", serde_json::Value::Array(list)));
        return;
    }
    let mut out = String::new();
    for plugin in registry.iter() {
        let _ = writeln!(
            out,
            "{} ({})\n  {}",
            plugin.name(),
            plugin.kind().as_str(),
            plugin.doc()
        );
        for f in &plugin.spec().fields {
            let presence = match (&f.default, f.required) {
                (_, true) => "required".to_owned(),
                (Some(d), _) => format!("default {d}"),
                (None, false) => "optional".to_owned(),
            };
            let secret = if f.secret { " (secret)" } else { "" };
            let _ = writeln!(
                out,
                "    {:<14} {:<9} {:<16} {}{secret}",
                f.name,
                sluice::reference::kind_name(&f.kind),
                presence,
                f.doc
            );
        }
        out.push('\n');
    }
    emit(&out);
}

/// Writes to stdout; a closed pipe (`sluice plugins | head`) is not an error.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}
