//! URL templates: `http://host/ingest/${topic}/${partition}?key=${key}`.

use std::fmt::Write as _;

use sluice_connector_api::{SinkRecord, Value};

use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    Partition,
    Key,
}

/// A parsed `url`: literal text and placeholders.
#[derive(Debug, Clone)]
pub(crate) struct UrlTemplate {
    parts: Vec<Part>,
}

impl UrlTemplate {
    /// Parses a template; the error says what was expected (the caller names the field).
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let Some(len) = rest[start..].find('}') else {
                return Err(Error::Url(format!(
                    "unclosed `${{` in `{text}`; expected ${{topic}}, ${{partition}} or ${{key}}"
                )));
            };
            let name = &rest[start + 2..start + len];
            parts.push(match name {
                "topic" => Part::Topic,
                "partition" => Part::Partition,
                "key" => Part::Key,
                other => {
                    return Err(Error::Url(format!(
                        "unknown placeholder `${{{other}}}`; expected ${{topic}}, ${{partition}} or ${{key}}"
                    )));
                }
            });
            rest = &rest[start + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        let template = Self { parts };
        let sample = template.render_with("topic", 0, "key");
        let url = reqwest::Url::parse(&sample).map_err(|e| {
            Error::Url(format!(
                "expected an http:// or https:// URL, got `{text}` ({e})"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Url(format!(
                "expected an http:// or https:// URL with a host, got `{text}`"
            )));
        }
        Ok(template)
    }

    /// Whether every record goes to the same URL.
    pub(crate) fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The URL of one record.
    pub(crate) fn render(&self, record: &SinkRecord) -> String {
        if self.is_static() {
            return self.render_with("", 0, "");
        }
        self.render_with(&record.topic, record.partition, &key_text(&record.key))
    }

    fn render_with(&self, topic: &str, partition: i32, key: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Topic => encode_into(&mut out, topic),
                Part::Partition => {
                    let _ = write!(out, "{partition}");
                }
                Part::Key => encode_into(&mut out, key),
            }
        }
        out
    }
}

/// A key as URL text: strings as they are, bytes as UTF-8 (lossy), null as empty, the rest as
/// plain JSON.
fn key_text(key: &Value) -> String {
    match key {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => match other.as_i64() {
            Some(n) => n.to_string(),
            None => other.to_plain_json().to_string(),
        },
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a value stays one path
/// segment or query value whatever it holds.
fn encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A URL as it may appear in logs and errors: no user info, no query, no fragment.
pub(crate) fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, partition: i32, key: Value) -> SinkRecord {
        SinkRecord {
            topic: topic.into(),
            partition,
            offset: 0,
            key_schema: None,
            key,
            value_schema: None,
            value: Value::Null,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    #[test]
    fn placeholders_are_replaced_and_encoded() {
        let t = UrlTemplate::parse("http://h:8080/in/${topic}/${partition}?key=${key}").unwrap();
        assert!(!t.is_static());
        assert_eq!(
            t.render(&record("orders", 3, Value::String("a b/c?d".into()))),
            "http://h:8080/in/orders/3?key=a%20b%2Fc%3Fd"
        );
        assert_eq!(
            t.render(&record("t", 0, Value::Int64(42))),
            "http://h:8080/in/t/0?key=42"
        );
        assert_eq!(
            t.render(&record("t", 0, Value::Null)),
            "http://h:8080/in/t/0?key="
        );
        let fixed = UrlTemplate::parse("https://example.com/ingest").unwrap();
        assert!(fixed.is_static());
        assert_eq!(
            fixed.render(&record("t", 1, Value::Null)),
            "https://example.com/ingest"
        );
    }

    #[test]
    fn bad_templates_say_what_was_expected() {
        let e = UrlTemplate::parse("http://h/${offset}").unwrap_err();
        assert!(
            e.to_string().contains("unknown placeholder `${offset}`"),
            "{e}"
        );
        let e = UrlTemplate::parse("http://h/${topic").unwrap_err();
        assert!(e.to_string().contains("unclosed"), "{e}");
        let e = UrlTemplate::parse("ftp://h/x").unwrap_err();
        assert!(e.to_string().contains("http:// or https://"), "{e}");
        assert!(UrlTemplate::parse("h/x").is_err());
        assert!(UrlTemplate::parse("${topic}").is_err());
    }

    #[test]
    fn displayed_urls_carry_no_credentials() {
        assert_eq!(
            display_url("https://user:pw@example.com/in?api_key=s3cr3t#x"),
            "https://example.com/in"
        );
    }
}
