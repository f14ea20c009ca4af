//! Paths on the worker's file system that a connector config received through the REST API
//! names (fields marked [`ConfigField::local_path`]: the file connectors' `file`, a WASM
//! connector's or transform's `plugin` and `read_only_dirs`) must lie under the worker's
//! `allowed_paths`: otherwise anyone who may create connectors could read or write any file the
//! worker can (a file-source of `/etc/sluice/tokens`, a file-sink over a binary) or run any
//! `.wasm` on disk. Pipeline files given to `sluice run` are the operator's and are not checked.
//!
//! A path is judged by where it leads: the longest part of it that exists is resolved
//! (symbolic links and `..` included), and the rest, not existing yet, may hold no `..`.
//!
//! [`ConfigField::local_path`]: sluice_connector_api::ConfigField::local_path

use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value as Json};
use sluice_connector_api::{ConfigSpec, FieldError, Registry};

use super::worker::WorkerConfig;

/// The directories REST-given connector configs may name paths under.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    /// As configured (for messages).
    shown: Vec<PathBuf>,
    /// Resolved like the paths they are compared with.
    resolved: Vec<PathBuf>,
}

impl PathPolicy {
    /// The worker's `allowed_paths`; when unset, its `data_dir` and `plugins_dir`.
    pub fn new(worker: &WorkerConfig) -> Self {
        let shown = match &worker.allowed_paths {
            Some(paths) => paths.clone(),
            None => std::iter::once(worker.data_dir.clone())
                .chain(worker.plugins_dir.clone())
                .collect(),
        };
        Self::from_dirs(shown)
    }

    /// A policy admitting paths under `dirs`.
    pub fn from_dirs(dirs: Vec<PathBuf>) -> Self {
        let resolved = dirs.iter().filter_map(|d| resolve(d).ok()).collect();
        Self {
            shown: dirs,
            resolved,
        }
    }

    /// Checks one path; the error says why it is refused.
    pub fn check(&self, path: &str) -> Result<(), String> {
        if path.contains("${") {
            return Err(format!(
                "{path}: a path given through the REST API cannot use a config provider"
            ));
        }
        let resolved = resolve(Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
        if self.resolved.iter().any(|dir| resolved.starts_with(dir)) {
            return Ok(());
        }
        let allowed: Vec<String> = self.shown.iter().map(|p| p.display().to_string()).collect();
        Err(format!(
            "{path} is outside allowed_paths; connector configs given through the REST API may only name paths under: {}",
            if allowed.is_empty() {
                "(none)".to_owned()
            } else {
                allowed.join(", ")
            }
        ))
    }
}

/// Where `path` leads: its longest existing ancestor canonicalised (relative paths from the
/// working directory, as the connector would open them), then the rest, which may not hold `..`.
fn resolve(path: &Path) -> Result<PathBuf, String> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("no working directory to resolve it against: {e}"))?
            .join(path)
    };
    let mut existing = absolute.as_path();
    // `symlink_metadata`: a dangling link exists, and canonicalising it below fails. A path
    // ending in `..` has no file name: it is resolved as it is (and fails if it does not exist).
    while std::fs::symlink_metadata(existing).is_err() {
        let (Some(parent), Some(_)) = (existing.parent(), existing.file_name()) else {
            break;
        };
        existing = parent;
    }
    let mut resolved = std::fs::canonicalize(existing)
        .map_err(|e| format!("cannot resolve {}: {e}", existing.display()))?;
    let missing = absolute
        .strip_prefix(existing)
        .map_err(|_| "cannot resolve the path".to_owned())?;
    for component in missing.components() {
        match component {
            Component::Normal(name) => resolved.push(name),
            Component::CurDir => {}
            _ => return Err("`..` after a part that does not exist".to_owned()),
        }
    }
    Ok(resolved)
}

/// The local-path fields of `spec`.
fn path_fields(spec: &ConfigSpec) -> Vec<String> {
    spec.fields
        .iter()
        .filter(|f| f.local_path)
        .map(|f| f.name.clone())
        .collect()
}

/// Every refused path in a flat connector config (Kafka Connect's shape, as the REST API takes
/// it), each naming its key. The connector type's spec says which fields are paths; a
/// transform's `plugin` and `read_only_dirs` are paths too. Nothing is loaded on the way: a
/// WASM connector is judged by its resolver's fields.
pub fn check_local_paths(
    flat: &Map<String, Json>,
    registry: &Registry,
    policy: &PathPolicy,
) -> Vec<FieldError> {
    let class = flat
        .get("connector.class")
        .or_else(|| flat.get("connector"))
        .and_then(Json::as_str);
    let connector_fields = class
        .and_then(|c| {
            registry
                .resolver(c)
                .map(|r| r.spec())
                .or_else(|| registry.get(c).map(|p| p.spec()))
        })
        .map(|spec| path_fields(&spec))
        .unwrap_or_default();
    let mut wasm = sluice_wasm::path_field_spec();
    wasm.fields.extend(sluice_wasm::sandbox_spec().fields);
    let transform_fields = path_fields(&wasm);
    let mut errors = Vec::new();
    for (key, value) in flat {
        let field = match key.strip_prefix("transforms.") {
            Some(rest) => match rest.split_once('.') {
                Some((_, field)) => field,
                None => continue,
            },
            None => key.as_str(),
        };
        let fields = if key.starts_with("transforms.") {
            &transform_fields
        } else {
            &connector_fields
        };
        let field = field.replace('.', "_");
        if !fields.contains(&field) {
            continue;
        }
        let paths: Vec<&str> = match value {
            Json::String(s) => vec![s.as_str()],
            Json::Array(items) => items.iter().filter_map(Json::as_str).collect(),
            // Comma-separated lists arrive as strings; other types fail spec validation.
            _ => Vec::new(),
        };
        let paths: Vec<&str> = paths
            .into_iter()
            .flat_map(|p| {
                if value.is_string() && field == sluice_wasm::READ_ONLY_DIRS_FIELD {
                    p.split(',').map(str::trim).collect::<Vec<_>>()
                } else {
                    vec![p]
                }
            })
            .filter(|p| !p.is_empty())
            .collect();
        for path in paths {
            if let Err(message) = policy.check(path) {
                errors.push(FieldError::new(key.clone(), message));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_judged_by_where_they_lead() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("allowed");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(allowed.join("sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("nothing"), allowed.join("dangling")).unwrap();
        let policy = PathPolicy::from_dirs(vec![allowed.clone()]);
        let at = |p: &str| format!("{}/{p}", allowed.display());
        for ok in ["sub/new.jsonl", "new/deeper/file", "sub/../other", "./x"] {
            assert_eq!(policy.check(&at(ok)), Ok(()), "{ok}");
        }
        for refused in [
            "../outside/x",
            "link/x",
            "dangling",
            "missing/../../outside",
            "sub/../../outside/x",
        ] {
            assert!(policy.check(&at(refused)).is_err(), "{refused}");
        }
        assert!(policy.check("/etc/passwd").is_err());
        assert!(
            policy
                .check("${file:/etc/passwd}")
                .unwrap_err()
                .contains("cannot use a config provider")
        );
    }
}
