//! Typed configuration specs. A [`ConfigSpec`] validates a whole config map at once, reporting every
//! bad field by name with what was expected, fills in defaults, and normalises the forms users write
//! (YAML types, or Kafka Connect's all-string REST maps) into one shape that typed config structs
//! deserialize from.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::error::{ConnectorError, Result};

/// The text secrets are replaced with wherever a config is shown.
pub const MASK: &str = "[hidden]";

/// Parts of a key that name a credential.
const SENSITIVE: &[&str] = &[
    "authorization",
    "auth",
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "cookie",
    "credential",
    "signature",
    "session",
];

/// Whether an entry of a free-form map (`FieldKind::Map`, such as http-sink's `headers`) holds a
/// credential by its key (`Authorization`, `X-Api-Key`, `sasl.password`...): its value is then
/// masked like a secret field's.
pub fn sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|part| key.contains(part))
}

/// A free-form map with the values of [`sensitive_key`] entries replaced by [`MASK`].
pub fn mask_entries(map: &Map<String, Json>) -> Map<String, Json> {
    map.iter()
        .map(|(k, v)| {
            let shown = if sensitive_key(k) && !v.is_null() {
                Json::String(MASK.to_owned())
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// What a field holds. Durations are normalised to whole milliseconds (YAML may say `5s`, `250ms`
/// or a number of milliseconds).
#[derive(Debug, Clone)]
pub enum FieldKind {
    String,
    Int,
    Float,
    Bool,
    Duration,
    /// A list of strings: a YAML list, or a comma separated string.
    List,
    /// A free-form map of scalars (passed through).
    Map,
    /// A nested object with its own spec.
    Object(ConfigSpec),
}

impl FieldKind {
    fn expected(&self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Int => "an integer",
            Self::Float => "a number",
            Self::Bool => "true or false",
            Self::Duration => "a duration such as 500ms, 5s or 1m (or milliseconds)",
            Self::List => "a list of strings",
            Self::Map => "a map of keys to values",
            Self::Object(_) => "a map",
        }
    }
}

/// A custom check: `Err` says what was expected.
pub type CheckFn = Arc<dyn Fn(&Json) -> std::result::Result<(), String> + Send + Sync>;

/// An extra check on a field's (normalised) value.
#[derive(Clone)]
pub enum Validator {
    /// Integer or float within an inclusive range.
    Range { min: Option<f64>, max: Option<f64> },
    /// A string that must be one of these.
    OneOf(Vec<String>),
    /// A string or list that must not be empty.
    NonEmpty,
    /// Any other check; the error text says what was expected.
    Custom(CheckFn),
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Range { min, max } => write!(f, "Range({min:?}..={max:?})"),
            Self::OneOf(v) => write!(f, "OneOf({v:?})"),
            Self::NonEmpty => f.write_str("NonEmpty"),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl Validator {
    pub fn min(min: i64) -> Self {
        Self::Range {
            min: Some(min as f64),
            max: None,
        }
    }

    pub fn range(min: i64, max: i64) -> Self {
        Self::Range {
            min: Some(min as f64),
            max: Some(max as f64),
        }
    }

    pub fn one_of<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Self {
        Self::OneOf(values.into_iter().map(Into::into).collect())
    }

    fn check(&self, value: &Json) -> std::result::Result<(), String> {
        match self {
            Self::Range { min, max } => {
                let Some(n) = value.as_f64() else {
                    return Ok(());
                };
                let show = |b: f64| {
                    if b.fract() == 0.0 {
                        format!("{}", b as i64)
                    } else {
                        b.to_string()
                    }
                };
                match (min, max) {
                    (Some(lo), Some(hi)) if n < *lo || n > *hi => Err(format!(
                        "expected a value from {} to {}, got {value}",
                        show(*lo),
                        show(*hi)
                    )),
                    (Some(lo), None) if n < *lo => {
                        Err(format!("expected at least {}, got {value}", show(*lo)))
                    }
                    (None, Some(hi)) if n > *hi => {
                        Err(format!("expected at most {}, got {value}", show(*hi)))
                    }
                    _ => Ok(()),
                }
            }
            Self::OneOf(options) => match value.as_str() {
                Some(s) if options.iter().any(|o| o == s) => Ok(()),
                _ => Err(format!(
                    "expected one of {}, got {value}",
                    options.join(", ")
                )),
            },
            Self::NonEmpty => {
                let empty = match value {
                    Json::String(s) => s.trim().is_empty(),
                    Json::Array(a) => a.is_empty(),
                    _ => false,
                };
                if empty {
                    Err("expected a non-empty value".to_owned())
                } else {
                    Ok(())
                }
            }
            Self::Custom(check) => check(value),
        }
    }
}

/// One configuration field.
#[derive(Debug, Clone)]
pub struct ConfigField {
    pub name: String,
    pub kind: FieldKind,
    pub required: bool,
    pub default: Option<Json>,
    pub doc: String,
    /// Secret values are never shown: REST, logs and validation output print [`MASK`].
    pub secret: bool,
    /// A path on the worker's file system (a string, or a list of them): a config received
    /// through the REST API may only name paths under the worker's `allowed_paths`.
    pub local_path: bool,
    pub validators: Vec<Validator>,
}

impl ConfigField {
    fn new(name: &str, kind: FieldKind, doc: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            required: false,
            default: None,
            doc: doc.to_owned(),
            secret: false,
            local_path: false,
            validators: Vec::new(),
        }
    }
}

/// A connector's (or a config file's) declared fields.
#[derive(Debug, Clone, Default)]
pub struct ConfigSpec {
    pub fields: Vec<ConfigField>,
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path from the root of what was validated, e.g. `config.topic`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error one level deeper, e.g. under `config`.
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl ConfigSpec {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, field: ConfigField) -> Self {
        self.fields.push(field);
        self
    }

    /// A field that must be given.
    pub fn required(self, name: &str, kind: FieldKind, doc: &str) -> Self {
        let mut field = ConfigField::new(name, kind, doc);
        field.required = true;
        self.push(field)
    }

    /// A field with a default.
    pub fn optional(
        self,
        name: &str,
        kind: FieldKind,
        default: impl Into<Json>,
        doc: &str,
    ) -> Self {
        let mut field = ConfigField::new(name, kind, doc);
        field.default = Some(default.into());
        self.push(field)
    }

    /// A field that may be absent (no default).
    pub fn maybe(self, name: &str, kind: FieldKind, doc: &str) -> Self {
        self.push(ConfigField::new(name, kind, doc))
    }

    /// Marks the last added field secret.
    pub fn secret(mut self) -> Self {
        if let Some(f) = self.fields.last_mut() {
            f.secret = true;
        }
        self
    }

    /// Marks the last added field a path on the worker's file system (see
    /// [`ConfigField::local_path`]).
    pub fn local_path(mut self) -> Self {
        if let Some(f) = self.fields.last_mut() {
            f.local_path = true;
        }
        self
    }

    /// Adds a validator to the last added field.
    pub fn check(mut self, validator: Validator) -> Self {
        if let Some(f) = self.fields.last_mut() {
            f.validators.push(validator);
        }
        self
    }

    pub fn field(&self, name: &str) -> Option<&ConfigField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Validates `input` against the spec. On success returns the normalised config with defaults
    /// filled in; on failure every problem found, each naming its field.
    pub fn validate(
        &self,
        input: &Map<String, Json>,
    ) -> std::result::Result<ConnectorConfig, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut out = Map::new();
        for key in input.keys() {
            if self.field(key).is_none() {
                let known: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
                errors.push(FieldError::new(
                    key.clone(),
                    format!("unknown field; expected one of: {}", known.join(", ")),
                ));
            }
        }
        for field in &self.fields {
            let given = input.get(&field.name).filter(|v| !v.is_null());
            let value = match (given, &field.default) {
                (Some(v), _) => v,
                (None, Some(default)) => default,
                (None, None) if field.required => {
                    errors.push(FieldError::new(
                        field.name.clone(),
                        format!(
                            "missing required field; expected {} ({})",
                            field.kind.expected(),
                            field.doc
                        ),
                    ));
                    continue;
                }
                (None, None) => continue,
            };
            // A secret's value never appears in an error message.
            let hide = |message: String| {
                if field.secret {
                    format!("invalid value ({MASK}); expected {}", field.kind.expected())
                } else {
                    message
                }
            };
            match normalise(&field.kind, value) {
                Ok(normalised) => {
                    let failed: Vec<String> = field
                        .validators
                        .iter()
                        .filter_map(|v| v.check(&normalised).err())
                        .map(hide)
                        .collect();
                    if failed.is_empty() {
                        out.insert(field.name.clone(), normalised);
                    } else {
                        errors.extend(
                            failed
                                .into_iter()
                                .map(|m| FieldError::new(field.name.clone(), m)),
                        );
                    }
                }
                Err(nested) => errors.extend(nested.into_iter().map(|mut e| {
                    e.message = hide(e.message);
                    e.under(&field.name)
                })),
            }
        }
        if errors.is_empty() {
            Ok(ConnectorConfig(out))
        } else {
            Err(errors)
        }
    }

    /// A copy of `config` with every secret field (at any depth) replaced by [`MASK`].
    pub fn mask(&self, config: &Map<String, Json>) -> Map<String, Json> {
        let mut out = config.clone();
        for field in &self.fields {
            let Some(value) = out.get_mut(&field.name) else {
                continue;
            };
            if field.secret {
                *value = Json::String(MASK.to_owned());
            } else if let (FieldKind::Object(spec), Json::Object(inner)) = (&field.kind, &*value) {
                *value = Json::Object(spec.mask(inner));
            } else if let (FieldKind::Map, Json::Object(inner)) = (&field.kind, &*value) {
                *value = Json::Object(mask_entries(inner));
            }
        }
        out
    }
}

fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => format!("boolean {b}"),
        Json::Number(n) => format!("number {n}"),
        Json::String(s) => format!("string \"{s}\""),
        Json::Array(_) => "a list".to_owned(),
        Json::Object(_) => "a map".to_owned(),
    }
}

fn normalise(kind: &FieldKind, value: &Json) -> std::result::Result<Json, Vec<FieldError>> {
    let wrong = || {
        vec![FieldError::new(
            "",
            format!("expected {}, got {}", kind.expected(), describe(value)),
        )]
    };
    let text = value.as_str().map(str::trim);
    match kind {
        FieldKind::String => match value {
            Json::String(s) => Ok(Json::String(s.clone())),
            _ => Err(wrong()),
        },
        FieldKind::Int => match (value.as_i64(), text.and_then(|t| t.parse::<i64>().ok())) {
            (Some(n), _) | (None, Some(n)) => Ok(Json::from(n)),
            _ => Err(wrong()),
        },
        FieldKind::Float => match (value.as_f64(), text.and_then(|t| t.parse::<f64>().ok())) {
            (Some(n), _) | (None, Some(n)) => Ok(Json::from(n)),
            _ => Err(wrong()),
        },
        FieldKind::Bool => match (value, text) {
            (Json::Bool(b), _) => Ok(Json::Bool(*b)),
            (_, Some("true")) => Ok(Json::Bool(true)),
            (_, Some("false")) => Ok(Json::Bool(false)),
            _ => Err(wrong()),
        },
        FieldKind::Duration => {
            let ms = match (value.as_u64(), text) {
                (Some(ms), _) => Some(ms),
                (None, Some(t)) => t.parse::<u64>().ok().or_else(|| {
                    humantime::parse_duration(t)
                        .ok()
                        .map(|d| d.as_millis() as u64)
                }),
                _ => None,
            };
            ms.map(Json::from).ok_or_else(wrong)
        }
        FieldKind::List => match value {
            Json::Array(items) => items
                .iter()
                .map(|i| match i {
                    Json::String(s) => Ok(Json::String(s.clone())),
                    Json::Number(n) => Ok(Json::String(n.to_string())),
                    _ => Err(wrong()),
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Json::Array),
            Json::String(s) => Ok(Json::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Json::String(p.to_owned()))
                    .collect(),
            )),
            _ => Err(wrong()),
        },
        FieldKind::Map => match value {
            Json::Object(map) => Ok(Json::Object(map.clone())),
            _ => Err(wrong()),
        },
        FieldKind::Object(spec) => match value {
            Json::Object(map) => spec.validate(map).map(|c| Json::Object(c.0)),
            _ => Err(wrong()),
        },
    }
}

/// A validated, normalised configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorConfig(pub Map<String, Json>);

impl ConnectorConfig {
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.0.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Json::as_str)
    }

    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.0.get(key).and_then(Json::as_i64)
    }

    /// A duration field (normalised to milliseconds by the spec).
    pub fn get_duration(&self, key: &str) -> Option<Duration> {
        self.0
            .get(key)
            .and_then(Json::as_u64)
            .map(Duration::from_millis)
    }

    pub fn set(&mut self, key: &str, value: impl Into<Json>) {
        self.0.insert(key.to_owned(), value.into());
    }

    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Self {
        self.set(key, value);
        self
    }

    /// Deserializes the config into a typed struct. Durations arrive as milliseconds.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(Json::Object(self.0.clone())).map_err(|e| {
            ConnectorError::with_source(crate::ErrorKind::Config, format!("invalid config: {e}"), e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ConfigSpec {
        ConfigSpec::new()
            .required("topic", FieldKind::String, "topic to write to")
            .check(Validator::NonEmpty)
            .optional("batch_size", FieldKind::Int, 100, "records per poll")
            .check(Validator::range(1, 10_000))
            .optional("interval", FieldKind::Duration, "1s", "poll interval")
            .optional("format", FieldKind::String, "json", "output format")
            .check(Validator::one_of(["json", "text"]))
            .maybe("password", FieldKind::String, "a password")
            .secret()
    }

    #[test]
    fn reports_every_bad_field_at_once() {
        let input = json!({"batch_size": "lots", "interval": "soon", "format": "xml", "colour": 1});
        let errors = spec().validate(input.as_object().unwrap()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["colour", "topic", "batch_size", "interval", "format"]
        );
        assert_eq!(
            errors[2].message,
            "expected an integer, got string \"lots\""
        );
        assert_eq!(errors[4].message, "expected one of json, text, got \"xml\"");
        assert!(
            errors[0]
                .message
                .starts_with("unknown field; expected one of: topic, batch_size")
        );
    }

    #[test]
    fn normalises_strings_and_fills_defaults() {
        let input =
            json!({"topic": "t", "batch_size": "20", "interval": "250ms", "password": "pw"});
        let config = spec().validate(input.as_object().unwrap()).unwrap();
        assert_eq!(config.get_i64("batch_size"), Some(20));
        assert_eq!(
            config.get_duration("interval"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(config.get_str("format"), Some("json"));
        let masked = spec().mask(&config.0);
        let bad_secret = spec()
            .validate(
                json!({"topic": "t", "password": 12345})
                    .as_object()
                    .unwrap(),
            )
            .unwrap_err();
        assert_eq!(
            bad_secret[0].message,
            "invalid value ([hidden]); expected a string"
        );
        assert_eq!(masked["password"], json!(MASK));
        assert_eq!(masked["topic"], json!("t"));
    }

    #[test]
    fn nested_objects_report_dotted_paths() {
        let inner = ConfigSpec::new().required("type", FieldKind::String, "converter type");
        let outer = ConfigSpec::new().maybe("converter", FieldKind::Object(inner), "a converter");
        let errors = outer
            .validate(json!({"converter": {"typ": "x"}}).as_object().unwrap())
            .unwrap_err();
        assert_eq!(errors[0].field, "converter.typ");
        assert_eq!(errors[1].field, "converter.type");
    }

    #[test]
    fn range_errors_say_the_bounds() {
        let errors = spec()
            .validate(json!({"topic": "t", "batch_size": 0}).as_object().unwrap())
            .unwrap_err();
        assert_eq!(errors[0].message, "expected a value from 1 to 10000, got 0");
    }
}
