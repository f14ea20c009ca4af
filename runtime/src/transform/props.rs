//! A transform's or predicate's properties, read with Kafka Connect's names. Values may be YAML
//! scalars and lists or Kafka Connect's all-string form (`"a,b"` for lists). Every problem is
//! collected with the property's name, so one validation reports them all.

use std::cell::RefCell;
use std::collections::BTreeSet;

use regex::Regex;
use serde_json::{Map, Value as Json};
use sluice_connector_api::FieldError;

/// Keys of a step that are the chain's, not the transform's.
pub(crate) const RESERVED: &[&str] = &["type", "predicate", "negate"];

pub(crate) struct Props<'a> {
    map: &'a Map<String, Json>,
    /// Every property name the builder asked for, given or not.
    read: RefCell<BTreeSet<String>>,
    errors: RefCell<Vec<FieldError>>,
}

pub(crate) const MISSING: &str = "missing required field";

fn describe(value: &Json) -> String {
    match value {
        Json::Array(_) => "a list".to_owned(),
        Json::Object(_) => "a map".to_owned(),
        other => other.to_string(),
    }
}

impl<'a> Props<'a> {
    pub(crate) fn new(map: &'a Map<String, Json>) -> Self {
        Self {
            map,
            read: RefCell::new(BTreeSet::new()),
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Records a problem with one property.
    pub(crate) fn error(&self, name: &str, message: impl Into<String>) {
        self.errors
            .borrow_mut()
            .push(FieldError::new(name, message.into()));
    }

    fn raw(&self, name: &str) -> Option<&'a Json> {
        self.read.borrow_mut().insert(name.to_owned());
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// An optional scalar as text.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.raw(name)? {
            Json::String(s) => Some(s.clone()),
            v @ (Json::Number(_) | Json::Bool(_)) => Some(v.to_string()),
            other => {
                self.error(name, format!("expected a string, got {}", describe(other)));
                None
            }
        }
    }

    pub(crate) fn string_or(&self, name: &str, default: &str) -> String {
        self.string(name).unwrap_or_else(|| default.to_owned())
    }

    /// A scalar that must be given (and not be empty).
    pub(crate) fn required(&self, name: &str) -> Option<String> {
        let present = self.map.get(name).is_some_and(|v| !v.is_null());
        match self.string(name) {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.error(name, "expected a non-empty value");
                None
            }
            None => {
                if !present {
                    self.error(name, MISSING);
                }
                None
            }
        }
    }

    /// An optional list: a YAML list, or a comma separated string. Items are trimmed.
    pub(crate) fn list(&self, name: &str) -> Option<Vec<String>> {
        let items: Vec<String> = match self.raw(name)? {
            Json::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Json::String(s) => out.push(s.trim().to_owned()),
                        Json::Number(_) | Json::Bool(_) => out.push(item.to_string()),
                        other => {
                            self.error(
                                name,
                                format!("expected a list of strings, got {}", describe(other)),
                            );
                            return None;
                        }
                    }
                }
                out
            }
            Json::String(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            other => {
                self.error(
                    name,
                    format!("expected a list of strings, got {}", describe(other)),
                );
                return None;
            }
        };
        Some(items)
    }

    /// A list that must be given and not be empty.
    pub(crate) fn required_list(&self, name: &str) -> Option<Vec<String>> {
        let present = self.map.get(name).is_some_and(|v| !v.is_null());
        match self.list(name) {
            Some(items) if !items.is_empty() => Some(items),
            Some(_) => {
                self.error(name, "expected a non-empty list");
                None
            }
            None => {
                if !present {
                    self.error(name, MISSING);
                }
                None
            }
        }
    }

    pub(crate) fn bool_or(&self, name: &str, default: bool) -> bool {
        match self.raw(name) {
            None => default,
            Some(Json::Bool(b)) => *b,
            Some(Json::String(s)) if s.trim().eq_ignore_ascii_case("true") => true,
            Some(Json::String(s)) if s.trim().eq_ignore_ascii_case("false") => false,
            Some(other) => {
                self.error(
                    name,
                    format!("expected true or false, got {}", describe(other)),
                );
                default
            }
        }
    }

    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        let value = self.raw(name)?;
        let parsed = value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
        if parsed.is_none() {
            self.error(
                name,
                format!("expected an integer, got {}", describe(value)),
            );
        }
        parsed
    }

    /// One of `options` (case-sensitive, as Kafka Connect's validators); the default when
    /// absent, or a missing-field error when there is no default.
    pub(crate) fn one_of(
        &self,
        name: &str,
        options: &[&str],
        default: Option<&str>,
    ) -> Option<String> {
        let value = match (self.string(name), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                if self.map.get(name).is_none_or(Json::is_null) {
                    self.error(
                        name,
                        format!("{MISSING}; expected one of {}", options.join(", ")),
                    );
                }
                return None;
            }
        };
        if options.contains(&value.as_str()) {
            Some(value)
        } else {
            self.error(
                name,
                format!("expected one of {}, got `{value}`", options.join(", ")),
            );
            None
        }
    }

    /// A required regular expression, compiled to match whole strings as Java's
    /// `Matcher.matches()` does.
    pub(crate) fn full_match_regex(&self, name: &str) -> Option<Regex> {
        let pattern = self.required(name)?;
        match Regex::new(&format!("^(?:{pattern})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                self.error(name, format!("invalid regex `{pattern}`: {e}"));
                None
            }
        }
    }

    /// Properties given but never read: unknown to the transform.
    fn unknown(&self, known_elsewhere: &[&str]) -> Vec<String> {
        let read = self.read.borrow();
        self.map
            .keys()
            .filter(|k| !read.contains(k.as_str()) && !known_elsewhere.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// Every problem, unknown properties included; the builder has read every property it knows.
    pub(crate) fn finish(self, check_unknown: bool) -> Vec<FieldError> {
        let unknown = if check_unknown {
            self.unknown(RESERVED)
        } else {
            Vec::new()
        };
        let read: Vec<String> = self.read.borrow().iter().cloned().collect();
        let mut errors = self.errors.into_inner();
        for key in unknown {
            let message = if read.is_empty() {
                "unknown property; this type takes none".to_owned()
            } else {
                format!("unknown property; expected one of: {}", read.join(", "))
            };
            errors.push(FieldError::new(key, message));
        }
        errors
    }
}
