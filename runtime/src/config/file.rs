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
    /// 1-based index of the YAML document, for files holding several (`---`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// Dotted path of the field, empty for problems with the whole file.
    pub field: String,
    pub message: String,
}

impl Problem {
    fn of(path: &Path, document: Option<usize>, error: FieldError) -> Self {
        Self {
            file: path.display().to_string(),
            document,
            field: error.field,
            message: error.message,
        }
    }

    pub(crate) fn whole(path: &Path, message: impl Into<String>) -> Self {
        Self {
            file: path.display().to_string(),
            document: None,
            field: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(document) = self.document {
            write!(f, " (document {document})")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Which kind of file this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Worker,
    Pipeline,
}

/// One YAML document of a config file, with providers resolved. A pipeline file may hold several
/// connectors as documents separated by `---`.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// 1-based document index when the file holds more than one.
    pub document: Option<usize>,
    pub kind: FileKind,
    pub value: serde_json::Map<String, Json>,
}

/// Parses every YAML document of a file into JSON values; errors carry the line and column.
pub fn load_yaml(path: &Path) -> Result<Vec<Json>, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::whole(path, format!("cannot read file: {e}")))?;
    parse_yaml(path, &text)
}

fn parse_yaml(path: &Path, text: &str) -> Result<Vec<Json>, Problem> {
    use serde::Deserialize as _;
    let yaml_error = |e: serde_yaml::Error| {
        let at = e
            .location()
            .map(|l| format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or_default();
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        Problem::whole(path, format!("invalid YAML{at}: {message}"))
    };
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let yaml = serde_yaml::Value::deserialize(document).map_err(yaml_error)?;
        if yaml.is_null() {
            continue;
        }
        documents.push(serde_json::to_value(yaml).map_err(|e| {
            Problem::whole(
                path,
                format!("unsupported YAML (keys must be strings): {e}"),
            )
        })?);
    }
    if documents.is_empty() {
        return Err(Problem::whole(path, "the file is empty"));
    }
    Ok(documents)
}

impl ConfigFile {
    /// Reads a file, resolves providers, and works out for each document whether it is a worker
    /// or a pipeline.
    pub fn load(path: &Path) -> Result<Vec<Self>, Vec<Problem>> {
        let documents = load_yaml(path).map_err(|p| vec![p])?;
        let several = documents.len() > 1;
        let mut files = Vec::new();
        let mut problems = Vec::new();
        for (i, value) in documents.into_iter().enumerate() {
            match Self::from_value(path, several.then_some(i + 1), value) {
                Ok(file) => files.push(file),
                Err(p) => problems.extend(p),
            }
        }
        if problems.is_empty() {
            Ok(files)
        } else {
            Err(problems)
        }
    }

    pub fn from_value(
        path: &Path,
        document: Option<usize>,
        mut value: Json,
    ) -> Result<Self, Vec<Problem>> {
        let problems: Vec<Problem> = resolve_providers(&mut value)
            .into_iter()
            .map(|e| Problem::of(path, document, e))
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let whole = |message: &str| Problem {
            document,
            ..Problem::whole(path, message)
        };
        let Json::Object(map) = value else {
            return Err(vec![whole("expected a map of settings at the top level")]);
        };
        let kind = if map.contains_key("connector") {
            FileKind::Pipeline
        } else if map.contains_key("bootstrap_servers") {
            FileKind::Worker
        } else {
            return Err(vec![whole(
                "cannot tell the kind of file: a pipeline has `connector`, a worker file has `bootstrap_servers`",
            )]);
        };
        Ok(Self {
            path: path.to_owned(),
            document,
            kind,
            value: map,
        })
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
        errors
            .into_iter()
            .map(|e| Problem::of(&self.path, self.document, e))
            .collect()
    }
}

/// Loads a file whose documents must all be of `kind`.
pub(crate) fn load_kind(path: &Path, kind: FileKind) -> Result<Vec<ConfigFile>, Vec<Problem>> {
    let files = ConfigFile::load(path)?;
    let expected = match kind {
        FileKind::Worker if files.len() > 1 => Some("a single worker document"),
        FileKind::Worker => Some("a worker file (with `bootstrap_servers`)"),
        FileKind::Pipeline => Some("a pipeline file (with `connector`)"),
    };
    if files.iter().any(|f| f.kind != kind) || (kind == FileKind::Worker && files.len() > 1) {
        return Err(vec![Problem::whole(
            path,
            format!("expected {}", expected.unwrap_or_default()),
        )]);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let docs = parse_yaml(Path::new("p.yaml"), "name: a\n---\nname: b\n").unwrap();
        assert_eq!(docs.len(), 2);
        let err = parse_yaml(Path::new("p.yaml"), "name: a\nconfig: [unclosed\n").unwrap_err();
        assert!(
            err.message.starts_with("invalid YAML at line"),
            "{}",
            err.message
        );
        assert_eq!(err.file, "p.yaml");
    }

    #[test]
    fn kind_comes_from_the_keys() {
        let value = serde_json::json!({"name": "x", "connector": "datagen"});
        assert_eq!(
            ConfigFile::from_value(Path::new("p"), None, value)
                .unwrap()
                .kind,
            FileKind::Pipeline
        );
        let unknown = ConfigFile::from_value(Path::new("q"), Some(2), serde_json::json!({"x": 1}))
            .unwrap_err();
        assert_eq!(
            unknown[0].to_string().split(':').next(),
            Some("q (document 2)")
        );
        assert!(unknown[0].message.contains("cannot tell the kind of file"));
    }
}
