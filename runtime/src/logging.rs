//! Log output (text for people, JSON for log pipelines) and log levels changed at runtime through
//! the REST API (`/admin/loggers`, as in Kafka Connect). Loggers are `tracing` targets
//! (`sluice::task`, `sluice_connector_http`, `rdkafka`...); `root` is the default level. Setting a
//! logger's level also sets it for every logger below it, as Kafka Connect does.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter `{filter}`: {reason}")]
    Filter { filter: String, reason: String },
    #[error("unknown log level `{0}`: expected one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF")]
    Level(String),
    #[error("cannot change the log filter: {0}")]
    Reload(String),
    #[error("logging was set up already")]
    AlreadySet,
}

/// A logger's level as `/admin/loggers` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoggerLevel {
    pub level: String,
    /// When the level was last changed through the API (ms since the epoch); absent for levels
    /// from the command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<i64>,
}

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The levels in force and a way to change them.
pub struct LogLevels {
    reload: Reload,
    state: Mutex<Levels>,
}

#[derive(Debug, Clone, Default)]
struct Levels {
    root: LoggerLevel,
    /// Per target, most general first.
    targets: BTreeMap<String, LoggerLevel>,
}

impl Default for LoggerLevel {
    fn default() -> Self {
        Self {
            level: "INFO".into(),
            last_modified: None,
        }
    }
}

static LEVELS: OnceLock<LogLevels> = OnceLock::new();

/// Sets up the process's logging with `filter` (`info`, `sluice=debug,rdkafka=warn`...).
pub fn init(format: LogFormat, filter: &str) -> Result<(), LoggingError> {
    let levels = Levels::parse(filter)?;
    let env = levels.filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr);
    let reload: Reload = match format {
        LogFormat::Text => {
            let builder = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
        LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |f| handle.reload(f).map_err(|e| e.to_string()))
        }
    };
    LEVELS
        .set(LogLevels {
            reload,
            state: Mutex::new(levels),
        })
        .map_err(|_| LoggingError::AlreadySet)
}

/// The process's log levels, once [`init`] ran.
pub fn levels() -> Option<&'static LogLevels> {
    LEVELS.get()
}

impl LogLevels {
    /// Every logger with a level of its own, and `root`.
    pub fn list(&self) -> BTreeMap<String, LoggerLevel> {
        let state = self.lock();
        let mut all = state.targets.clone();
        all.insert("root".into(), state.root.clone());
        all
    }

    /// The level in force for `logger`: its own, or the nearest logger above it, or root's.
    pub fn get(&self, logger: &str) -> LoggerLevel {
        let state = self.lock();
        if logger == "root" {
            return state.root.clone();
        }
        let logger = normalize(logger);
        state
            .targets
            .iter()
            .filter(|(target, _)| is_within(&logger, target))
            .max_by_key(|(target, _)| target.len())
            .map_or_else(|| state.root.clone(), |(_, level)| level.clone())
    }

    /// Sets `logger` (and every logger below it) to `level`; returns the loggers changed.
    pub fn set(&self, logger: &str, level: &str) -> Result<Vec<String>, LoggingError> {
        let level = parse_level(level)?;
        let now = chrono::Utc::now().timestamp_millis();
        let changed = LoggerLevel {
            level: level.to_owned(),
            last_modified: Some(now),
        };
        let mut state = self.lock();
        let mut next = state.clone();
        let mut affected = Vec::new();
        if logger == "root" {
            next.root = changed.clone();
            affected.push("root".to_owned());
            for (target, l) in next.targets.iter_mut() {
                *l = changed.clone();
                affected.push(target.clone());
            }
        } else {
            let logger = normalize(logger);
            for (target, l) in next.targets.iter_mut() {
                if is_within(target, &logger) && *target != logger {
                    *l = changed.clone();
                    affected.push(target.clone());
                }
            }
            next.targets.insert(logger.clone(), changed);
            affected.push(logger);
        }
        (self.reload)(next.filter()?).map_err(LoggingError::Reload)?;
        *state = next;
        affected.sort();
        Ok(affected)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Levels> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Levels {
    /// Reads a filter of comma-separated `level` and `target=level` directives.
    fn parse(filter: &str) -> Result<Self, LoggingError> {
        let mut levels = Levels::default();
        for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match directive.split_once('=') {
                None => {
                    levels.root.level = parse_level(directive)
                        .map_err(|_| LoggingError::Filter {
                            filter: filter.to_owned(),
                            reason: format!("`{directive}` is not a level"),
                        })?
                        .to_owned();
                }
                Some((target, level)) => {
                    let level = parse_level(level).map_err(|_| LoggingError::Filter {
                        filter: filter.to_owned(),
                        reason: format!("`{level}` in `{directive}` is not a level"),
                    })?;
                    levels.targets.insert(
                        normalize(target),
                        LoggerLevel {
                            level: level.to_owned(),
                            last_modified: None,
                        },
                    );
                }
            }
        }
        Ok(levels)
    }

    fn filter(&self) -> Result<EnvFilter, LoggingError> {
        let mut text = self.root.level.to_lowercase();
        for (target, level) in &self.targets {
            text.push_str(&format!(",{target}={}", level.level.to_lowercase()));
        }
        EnvFilter::try_new(&text).map_err(|e| LoggingError::Filter {
            filter: text,
            reason: e.to_string(),
        })
    }
}

/// Kafka Connect's level names, upper case; FATAL is ERROR here.
fn parse_level(level: &str) -> Result<&'static str, LoggingError> {
    Ok(match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "TRACE",
        "DEBUG" => "DEBUG",
        "INFO" => "INFO",
        "WARN" | "WARNING" => "WARN",
        "ERROR" | "FATAL" => "ERROR",
        "OFF" => "OFF",
        _ => return Err(LoggingError::Level(level.to_owned())),
    })
}

/// `sluice.task` (Kafka Connect style) names the target `sluice::task`.
fn normalize(logger: &str) -> String {
    logger.trim().replace('.', "::")
}

/// Whether `target` is `logger` or below it.
fn is_within(target: &str, logger: &str) -> bool {
    target == logger
        || target
            .strip_prefix(logger)
            .is_some_and(|rest| rest.starts_with("::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(filter: &str) -> LogLevels {
        LogLevels {
            reload: Box::new(|_| Ok(())),
            state: Mutex::new(Levels::parse(filter).unwrap()),
        }
    }

    #[test]
    fn a_filter_reads_as_root_and_targets() {
        let l = levels("warn,sluice=debug,rdkafka=error");
        assert_eq!(l.get("root").level, "WARN");
        assert_eq!(l.get("sluice::task::sink").level, "DEBUG");
        assert_eq!(l.get("sluice_connector_http").level, "WARN");
        assert_eq!(l.list().len(), 3);
        assert!(matches!(
            Levels::parse("info,sluice=loud"),
            Err(LoggingError::Filter { .. })
        ));
    }

    #[test]
    fn setting_a_logger_sets_the_loggers_below_it() {
        let l = levels("info,sluice::task=warn,sluice::rest=error,rdkafka=warn");
        let changed = l.set("sluice", "debug").unwrap();
        assert_eq!(changed, vec!["sluice", "sluice::rest", "sluice::task"]);
        assert_eq!(l.get("sluice::task").level, "DEBUG");
        assert_eq!(l.get("rdkafka").level, "WARN");
        assert!(l.get("sluice").last_modified.is_some());
        // Kafka Connect's dotted names work too.
        l.set("sluice.task", "TRACE").unwrap();
        assert_eq!(l.get("sluice::task::source").level, "TRACE");
        assert!(matches!(l.set("x", "LOUD"), Err(LoggingError::Level(_))));
        l.set("root", "error").unwrap();
        assert_eq!(l.get("anything").level, "ERROR");
        assert_eq!(l.get("sluice::task").level, "ERROR");
    }
}
