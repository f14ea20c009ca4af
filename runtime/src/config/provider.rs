//! Config providers: `${env:NAME}`, `${env:NAME:-default}` and `${file:path:key}` inside string
//! values. A `file:` provider reads `key=value` lines (Java properties style, `#` comments) or,
//! for `.yaml`/`.yml`/`.json` files, a top-level key. `${name}` without a provider prefix is left
//! as it is, for connectors' own templates (http-sink's `${topic}`).
//!
//! Files the operator wrote (the worker file, pipeline files) resolve with every provider. A
//! connector config that came through the REST API resolves under the worker's
//! [`ProviderPolicy`] (`config_providers`): which providers exist, which environment variables
//! `env` may read and under which directories `file` may read (Kafka Connect's KIP-993
//! `allowed.paths`). Every file read is bounded and refuses anything but a regular file, so
//! `${file:/dev/zero:x}` or a FIFO cannot hang or exhaust a worker.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;
use sluice_connector_api::FieldError;

/// Largest file a `${file:...}` reference reads by default.
pub(crate) const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Which config providers a connector config given through the REST API may use
/// (`config_providers` in the worker file). The default keeps every provider open, as before.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ProviderPolicy {
    /// Providers that exist: `env`, `file`.
    pub enabled: Vec<String>,
    /// The `env` provider.
    pub env: EnvPolicy,
    /// The `file` provider.
    pub file: FilePolicy,
}

/// Limits of the `env` provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct EnvPolicy {
    /// Variable names, or prefixes ending in `*`, that may be read; unset means any.
    pub allowed_names: Option<Vec<String>>,
}

/// Limits of the `file` provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FilePolicy {
    /// Directories (or files) whose files may be read; unset means any.
    pub allowed_paths: Option<Vec<PathBuf>>,
    /// Largest file read, in bytes.
    pub max_bytes: u64,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            allowed_paths: None,
            max_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl Default for ProviderPolicy {
    fn default() -> Self {
        Self {
            enabled: vec!["env".to_owned(), "file".to_owned()],
            env: EnvPolicy::default(),
            file: FilePolicy::default(),
        }
    }
}

impl ProviderPolicy {
    fn enabled(&self, provider: &str) -> bool {
        self.enabled.iter().any(|p| p == provider)
    }

    fn check_env(&self, name: &str) -> Result<(), String> {
        if !self.enabled("env") {
            return Err(format!(
                "the env config provider is not enabled (config_providers.enabled); cannot read ${{env:{name}}}"
            ));
        }
        let Some(allowed) = &self.env.allowed_names else {
            return Ok(());
        };
        let admitted = allowed.iter().any(|entry| match entry.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => entry == name,
        });
        if admitted {
            Ok(())
        } else {
            Err(format!(
                "environment variable {name} is not in config_providers.env.allowed_names"
            ))
        }
    }

    /// The file to read for `path`, once the policy admits it: canonical, so `..` and symbolic
    /// links cannot lead out of an allowed directory.
    fn check_file(&self, path: &str) -> Result<PathBuf, String> {
        if !self.enabled("file") {
            return Err(format!(
                "the file config provider is not enabled (config_providers.enabled); cannot read {path}"
            ));
        }
        let canonical =
            std::fs::canonicalize(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let Some(allowed) = &self.file.allowed_paths else {
            return Ok(canonical);
        };
        let admitted = allowed
            .iter()
            .any(|dir| std::fs::canonicalize(dir).is_ok_and(|dir| canonical.starts_with(&dir)));
        if admitted {
            Ok(canonical)
        } else {
            Err(format!(
                "{path} is outside config_providers.file.allowed_paths; the file provider may only read under: {}",
                allowed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// One provider reference that was resolved: where, what the user wrote, what it became. Error
/// messages and task configs show the reference instead of the value.
#[derive(Debug, Clone)]
pub(crate) struct Substitution {
    /// Where it is, `a.b[0]` style.
    pub field: String,
    /// The reference as written, `${env:NAME}`.
    pub reference: String,
    pub value: String,
}

/// Replaces provider references in every string of `value`, with every provider enabled (for
/// files the operator wrote). Problems name the field they are in.
pub fn resolve_providers(value: &mut Json) -> Vec<FieldError> {
    resolve_providers_with(value, &ProviderPolicy::default())
}

/// [`resolve_providers`] under `policy` (connector configs given through the REST API).
pub fn resolve_providers_with(value: &mut Json, policy: &ProviderPolicy) -> Vec<FieldError> {
    resolve_recording(value, policy).0
}

/// Resolves like [`resolve_providers_with`] and also returns each resolved reference.
pub(crate) fn resolve_recording(
    value: &mut Json,
    policy: &ProviderPolicy,
) -> (Vec<FieldError>, Vec<Substitution>) {
    let mut resolver = Resolver {
        policy,
        errors: Vec::new(),
        files: HashMap::new(),
        substitutions: Vec::new(),
        field: String::new(),
    };
    resolver.walk(value, "");
    (resolver.errors, resolver.substitutions)
}

/// Shortest value put back as its reference where it is only part of a longer text (shorter
/// ones would turn up inside unrelated words).
const MIN_EMBEDDED_LEN: usize = 4;

/// `text` with each resolved value put back as its reference. Whole-text matches of any length
/// are replaced; values embedded in a longer text when at least [`MIN_EMBEDDED_LEN`] long, or
/// always when `own` says the substitution belongs to the text's own field.
fn unresolve(
    text: &str,
    substitutions: &[&Substitution],
    own: impl Fn(&Substitution) -> bool,
) -> String {
    if let Some(s) = substitutions.iter().find(|s| s.value == text) {
        return s.reference.clone();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(c) = rest.chars().next() {
        // Longest values first (the list is sorted), so a value inside another is not split.
        for s in substitutions {
            let embedded = s.value.chars().count() >= MIN_EMBEDDED_LEN || own(s);
            if embedded && rest.starts_with(&s.value) {
                out.push_str(&s.reference);
                rest = &rest[s.value.len()..];
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Non-empty substitutions, longest value first.
fn by_length(substitutions: &[Substitution]) -> Vec<&Substitution> {
    let mut sorted: Vec<&Substitution> = substitutions
        .iter()
        .filter(|s| !s.value.is_empty())
        .collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.value.len()));
    sorted
}

/// Error messages with every resolved value put back as the reference the user wrote, so an
/// error never shows a value read from the environment or a file.
pub(crate) fn scrub(errors: &mut [FieldError], substitutions: &[Substitution]) {
    let sorted = by_length(substitutions);
    for error in errors {
        let field = error.field.clone();
        let own = |s: &Substitution| {
            field == s.field
                || field.starts_with(&format!("{}.", s.field))
                || s.field.starts_with(&format!("{field}."))
        };
        error.message = unresolve(&error.message, &sorted, own);
    }
}

/// Every string of `value` (at any depth) with resolved values put back as their references:
/// task configs a connector generated from its resolved config go to the config topic with
/// references only, and each task resolves them when it starts.
pub(crate) fn restore_references(value: &mut Json, substitutions: &[Substitution]) {
    let sorted = by_length(substitutions);
    if sorted.is_empty() {
        return;
    }
    fn walk(value: &mut Json, sorted: &[&Substitution]) {
        match value {
            Json::String(text) => *text = unresolve(text, sorted, |_| false),
            Json::Array(items) => items.iter_mut().for_each(|i| walk(i, sorted)),
            Json::Object(map) => map.values_mut().for_each(|v| walk(v, sorted)),
            _ => {}
        }
    }
    walk(value, &sorted);
}

type FileData = Result<HashMap<String, String>, String>;

struct Resolver<'a> {
    policy: &'a ProviderPolicy,
    errors: Vec<FieldError>,
    files: HashMap<String, FileData>,
    substitutions: Vec<Substitution>,
    /// The field being resolved.
    field: String,
}

impl Resolver<'_> {
    fn walk(&mut self, value: &mut Json, path: &str) {
        match value {
            Json::String(s) if s.contains("${") => {
                self.field = path.trim_start_matches('.').to_owned();
                match self.expand(s) {
                    Ok(expanded) => *s = expanded,
                    Err(message) => self.errors.push(FieldError::new(&self.field, message)),
                }
            }
            Json::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.walk(item, &format!("{path}[{i}]"));
                }
            }
            Json::Object(map) => {
                for (k, v) in map.iter_mut() {
                    self.walk(v, &format!("{path}.{k}"));
                }
            }
            _ => {}
        }
    }

    fn expand(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in \"{text}\""))?;
            let reference = &after[..end];
            let value = self.lookup(reference)?;
            if reference.contains(':') {
                self.substitutions.push(Substitution {
                    field: self.field.clone(),
                    reference: format!("${{{reference}}}"),
                    value: value.clone(),
                });
            }
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&mut self, reference: &str) -> Result<String, String> {
        // Not a provider reference (those are `provider:...`): a connector's own placeholder,
        // such as http-sink's `${topic}` in a URL template, kept for the connector.
        if !reference.contains(':') {
            return Ok(format!("${{{reference}}}"));
        }
        if let Some(var) = reference.strip_prefix("env:") {
            let (name, default) = match var.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (var, None),
            };
            self.policy.check_env(name)?;
            return match (std::env::var(name), default) {
                (Ok(v), _) => Ok(v),
                (Err(_), Some(d)) => Ok(d.to_owned()),
                (Err(_), None) => Err(format!(
                    "environment variable {name} is not set (referenced as ${{env:{var}}})"
                )),
            };
        }
        if let Some(spec) = reference.strip_prefix("file:") {
            let (path, key) = spec
                .rsplit_once(':')
                .ok_or_else(|| format!("expected ${{file:<path>:<key>}}, got ${{{reference}}}"))?;
            let policy = self.policy;
            let data = self
                .files
                .entry(path.to_owned())
                .or_insert_with(|| read_file(path, policy));
            let data = data.as_ref().map_err(Clone::clone)?;
            return data
                .get(key)
                .cloned()
                .ok_or_else(|| format!("key `{key}` not found in {path}"));
        }
        Err(format!(
            "unknown config provider in ${{{reference}}}; expected ${{env:NAME}} or ${{file:path:key}}"
        ))
    }
}

/// Reads a provider file: admitted by the policy, a regular file, at most `max_bytes`. Errors
/// never quote the file's content.
fn read_file(path: &str, policy: &ProviderPolicy) -> FileData {
    let canonical = policy.check_file(path)?;
    let text = read_bounded(&canonical, policy.file.max_bytes)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json") {
        let map: HashMap<String, serde_yaml::Value> =
            serde_yaml::from_str(&text).map_err(|e| match e.location() {
                Some(at) => format!(
                    "cannot parse {path}: expected a map of keys at the top level (line {}, column {})",
                    at.line(),
                    at.column()
                ),
                None => format!("cannot parse {path}: expected a map of keys at the top level"),
            })?;
        return Ok(map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_yaml::Value::String(s) => s,
                    other => serde_yaml::to_string(&other)
                        .unwrap_or_default()
                        .trim_end()
                        .to_owned(),
                };
                (k, text)
            })
            .collect());
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// A regular file's text, refused when larger than `max_bytes`. Opened without blocking (a FIFO
/// would otherwise wait for a writer) and checked on the open handle, so a file swapped for a
/// device or a FIFO after the path was checked is refused too.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.len() > max_bytes {
        return Err(format!("larger than {max_bytes} bytes"));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("larger than {max_bytes} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_env_file_and_defaults_and_names_failures() {
        let dir = tempfile::tempdir().unwrap();
        let props = dir.path().join("secrets.properties");
        std::fs::write(&props, "# creds\ndb.password = s3cret\n").unwrap();
        // SAFETY-free: a variable name unique to this test.
        let home = std::env::var("HOME").unwrap_or_default();
        let mut value = json!({
            "a": "${env:HOME}",
            "b": format!("pw=${{file:{}:db.password}}", props.display()),
            "c": ["${env:SLUICE_TEST_SURELY_UNSET:-fallback}"],
            "d": {"e": "${env:SLUICE_TEST_SURELY_UNSET}"},
            "f": format!("${{file:{}:missing}}", props.display()),
            "g": "http://h/${topic}/${key}",
        });
        let errors = resolve_providers(&mut value);
        assert_eq!(value["a"], json!(home));
        assert_eq!(value["b"], json!("pw=s3cret"));
        assert_eq!(value["c"][0], json!("fallback"));
        assert_eq!(value["g"], json!("http://h/${topic}/${key}"));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["d.e", "f"]);
        assert!(
            errors[0]
                .message
                .contains("SLUICE_TEST_SURELY_UNSET is not set")
        );
    }

    #[test]
    fn a_policy_limits_providers_names_and_paths() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::write(allowed.join("a.properties"), "k=inside\n").unwrap();
        std::fs::write(dir.path().join("b.properties"), "k=outside\n").unwrap();
        let policy = ProviderPolicy {
            enabled: vec!["env".into(), "file".into()],
            env: EnvPolicy {
                allowed_names: Some(vec!["HOME".into(), "SLUICE_TEST_*".into()]),
            },
            file: FilePolicy {
                allowed_paths: Some(vec![allowed.clone()]),
                max_bytes: 64,
            },
        };
        let escape = format!("{}/../b.properties", allowed.display());
        let mut value = json!({
            "a": "${env:HOME}",
            "b": "${env:SLUICE_TEST_SURELY_UNSET:-prefixed}",
            "c": "${env:PATH}",
            "d": format!("${{file:{}/a.properties:k}}", allowed.display()),
            "e": format!("${{file:{escape}:k}}"),
        });
        let errors = resolve_providers_with(&mut value, &policy);
        assert_eq!(value["b"], json!("prefixed"));
        assert_eq!(value["d"], json!("inside"));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["c", "e"]);
        assert!(errors[0].message.contains("allowed_names"), "{errors:?}");
        assert!(
            errors[1]
                .message
                .contains("outside config_providers.file.allowed_paths")
        );
        assert!(!errors[1].message.contains("outside\n"));

        let env_only = ProviderPolicy {
            enabled: vec!["env".into()],
            ..ProviderPolicy::default()
        };
        let mut value = json!({"d": format!("${{file:{}/a.properties:k}}", allowed.display())});
        let errors = resolve_providers_with(&mut value, &env_only);
        assert!(errors[0].message.contains("not enabled"), "{errors:?}");
    }

    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let big = dir.path().join("big.properties");
        std::fs::write(&big, format!("k={}\n", "x".repeat(200))).unwrap();
        let policy = ProviderPolicy {
            file: FilePolicy {
                allowed_paths: None,
                max_bytes: 100,
            },
            ..ProviderPolicy::default()
        };
        let mut value = json!({
            "zero": "${file:/dev/zero:x}",
            "fifo": format!("${{file:{}:x}}", fifo.display()),
            "big": format!("${{file:{}:k}}", big.display()),
        });
        let errors = resolve_providers_with(&mut value, &policy);
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert!(messages[0].contains("not a regular file"), "{messages:?}");
        assert!(messages[1].contains("not a regular file"), "{messages:?}");
        assert!(
            messages[2].contains("larger than 100 bytes"),
            "{messages:?}"
        );
    }

    #[test]
    fn scrubbed_errors_show_the_reference_not_the_value() {
        let mut value = json!({"count": "${env:SLUICE_TEST_SCRUB:-hunter2-secret}", "n": "${env:SLUICE_TEST_SCRUB2:-7}"});
        let (errors, substitutions) = resolve_recording(&mut value, &ProviderPolicy::default());
        assert_eq!(substitutions.len(), 2);
        assert!(errors.is_empty());
        let mut errors = vec![
            FieldError::new(
                "count",
                "expected an integer, got string \"hunter2-secret\"",
            ),
            FieldError::new("other", "mentions hunter2-secret and 7"),
            FieldError::new("n", "must be at least 10, got 7"),
        ];
        scrub(&mut errors, &substitutions);
        assert_eq!(
            errors[0].message,
            "expected an integer, got string \"${env:SLUICE_TEST_SCRUB:-hunter2-secret}\""
        );
        assert_eq!(
            errors[1].message,
            "mentions ${env:SLUICE_TEST_SCRUB:-hunter2-secret} and 7"
        );
        assert_eq!(
            errors[2].message,
            "must be at least 10, got ${env:SLUICE_TEST_SCRUB2:-7}"
        );
    }

    #[test]
    fn task_configs_get_references_back_at_any_depth() {
        let mut props = json!({
            "token": "${env:SLUICE_TEST_RESTORE:-tok-123456}",
            "headers": {"X-Api-Key": "${env:SLUICE_TEST_RESTORE2:-key-abcdef}"},
        });
        let (_, substitutions) = resolve_recording(&mut props, &ProviderPolicy::default());
        let mut task = json!({
            "token": "tok-123456",
            "headers": {"X-Api-Key": "key-abcdef", "X-Other": "plain"},
            "url": "http://h/?k=key-abcdef",
            "list": ["tok-123456"],
            "task_index": 1,
        });
        restore_references(&mut task, &substitutions);
        assert_eq!(
            task,
            json!({
                "token": "${env:SLUICE_TEST_RESTORE:-tok-123456}",
                "headers": {"X-Api-Key": "${env:SLUICE_TEST_RESTORE2:-key-abcdef}", "X-Other": "plain"},
                "url": "http://h/?k=${env:SLUICE_TEST_RESTORE2:-key-abcdef}",
                "list": ["${env:SLUICE_TEST_RESTORE:-tok-123456}"],
                "task_index": 1,
            })
        );
        let mut again = task.clone();
        assert!(resolve_providers(&mut again).is_empty());
        assert_eq!(again["headers"]["X-Api-Key"], json!("key-abcdef"));
    }
}
