//! Reading config files: YAML parsing with line/column errors, config providers, and telling a
//! worker file from a pipeline file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value as Json;
use sluice_connector_api::{FieldError, Registry};

use super::pipeline::{Pipeline, validate_pipeline};
use super::provider::resolve_providers;
use super::worker::{WorkerConfig, validate_worker};

/// One problem in one config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    /// Dotted path of the field, empty for problems with the whole file.
    pub field: String,
    pub message: String,
}

impl Problem {
    fn of(path: &Path, error: FieldError) -> Self {
        Self { file: path.display().to_string(), field: error.field, message: error.message }
    }

    fn whole(path: &Path, message: impl Into<String>) -> Self {
        Self { file: path.display().to_string(), field: String::new(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// Which kind of file this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Worker,
    Pipeline,
}

/// A parsed config file with providers resolved.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub kind: FileKind,
    pub value: serde_json::Map<String, Json>,
}

/// Parses a YAML file into JSON values; errors carry the line and column.
pub fn load_yaml(path: &Path) -> Result<Json, Problem> {
    let text = std::fs::read_to_string(path).map_err(|e| Problem::whole(path, format!("cannot read file: {e}")))?;
    parse_yaml(path, &text)
}

fn parse_yaml(path: &Path, text: &str) -> Result<Json, Problem> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        let at = e.location().map(|l| format!(" at line {} column {}", l.line(), l.column())).unwrap_or_default();
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        Problem::whole(path, format!("invalid YAML{at}: {message}"))
    })?;
    serde_json::to_value(yaml).map_err(|e| Problem::whole(path, format!("unsupported YAML (keys must be strings): {e}")))
}

impl ConfigFile {
    /// Reads a file, resolves providers, and works out whether it is a worker or a pipeline file.
    pub fn load(path: &Path) -> Result<Self, Vec<Problem>> {
        let value = load_yaml(path).map_err(|p| vec![p])?;
        Self::from_value(path, value)
    }

    pub fn from_value(path: &Path, mut value: Json) -> Result<Self, Vec<Problem>> {
        let problems: Vec<Problem> = resolve_providers(&mut value).into_iter().map(|e| Problem::of(path, e)).collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let Json::Object(map) = value else {
            return Err(vec![Problem::whole(path, "expected a map of settings at the top level")]);
        };
        let kind = if map.contains_key("connector") {
            FileKind::Pipeline
        } else if map.contains_key("bootstrap_servers") {
            FileKind::Worker
        } else {
            return Err(vec![Problem::whole(
                path,
                "cannot tell the kind of file: a pipeline file has `connector`, a worker file has `bootstrap_servers`",
            )]);
        };
        Ok(Self { path: path.to_owned(), kind, value: map })
    }

    pub fn worker(&self) -> Result<WorkerConfig, Vec<Problem>> {
        validate_worker(&self.value).map_err(|errors| self.problems(errors))
    }

    pub fn pipeline(&self, registry: &Registry) -> Result<Pipeline, Vec<Problem>> {
        validate_pipeline(&self.value, registry).map_err(|errors| self.problems(errors))
    }

    /// Every problem of this file, whatever its kind.
    pub fn check(&self, registry: &Registry) -> Vec<Problem> {
        match self.kind {
            FileKind::Worker => self.worker().err(),
            FileKind::Pipeline => self.pipeline(registry).err(),
        }
        .unwrap_or_default()
    }

    fn problems(&self, errors: Vec<FieldError>) -> Vec<Problem> {
        errors.into_iter().map(|e| Problem::of(&self.path, e)).collect()
    }
}

/// Loads a file that must be of `kind`.
pub(crate) fn load_kind(path: &Path, kind: FileKind) -> Result<ConfigFile, Vec<Problem>> {
    let file = ConfigFile::load(path)?;
    if file.kind != kind {
        let expected = match kind {
            FileKind::Worker => "a worker file (with `bootstrap_servers`)",
            FileKind::Pipeline => "a pipeline file (with `connector`)",
        };
        return Err(vec![Problem::whole(path, format!("expected {expected}"))]);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let err = parse_yaml(Path::new("p.yaml"), "name: a\nconfig: [unclosed\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML at line"), "{}", err.message);
        assert_eq!(err.file, "p.yaml");
    }

    #[test]
    fn kind_comes_from_the_keys() {
        let value = serde_json::json!({"name": "x", "connector": "datagen"});
        assert_eq!(ConfigFile::from_value(Path::new("p"), value).unwrap().kind, FileKind::Pipeline);
        let unknown = ConfigFile::from_value(Path::new("q"), serde_json::json!({"x": 1})).unwrap_err();
        assert!(unknown[0].message.contains("cannot tell the kind of file"));
    }
}
