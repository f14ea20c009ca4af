//! Topic routing: RegexRouter and TimestampRouter. Neither looks at keys or values, so they work
//! the same on records with and without schemas.

use regex::Regex;

use super::props::Props;
use super::timestamp::{JavaFormat, format_millis};
use super::{Transform, TransformError, TransformRecord};

/// Renames topics that match `regex` (whole name) to `replacement`, which may use `$1`, `${name}`.
struct RegexRouter {
    regex: Regex,
    /// The replacement in the regex crate's syntax.
    replacement: String,
}

impl Transform for RegexRouter {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        if self.regex.is_match(&record.topic) {
            record.topic = self
                .regex
                .replace(&record.topic, self.replacement.as_str())
                .into_owned();
        }
        Ok(Some(record))
    }
}

/// Java's `Matcher.replaceFirst` syntax (`$1`, `${name}`, `\$` for a dollar) in the regex crate's
/// (`${1}`, `${name}`, `$$`): Java reads `$1x` as group 1 then `x`, the regex crate as a group
/// named `1x`.
fn java_replacement(replacement: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => return Err("ends with an unescaped `\\`".to_owned()),
            },
            '$' => match chars.peek() {
                Some('{') => {
                    let mut name = String::new();
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err("has an unclosed `${`".to_owned()),
                        }
                    }
                    out.push_str(&format!("${{{name}}}"));
                }
                Some(d) if d.is_ascii_digit() => {
                    let d = *d;
                    chars.next();
                    out.push_str(&format!("${{{d}}}"));
                }
                _ => return Err("has a `$` not followed by a group number or `{name}`".to_owned()),
            },
            other => out.push(other),
        }
    }
    Ok(out)
}

pub(crate) fn regex_router(p: &Props, _: super::part::Side) -> Option<Box<dyn Transform>> {
    let regex = p.full_match_regex("regex");
    let replacement = p.required("replacement").and_then(|r| {
        java_replacement(&r)
            .map_err(|e| p.error("replacement", format!("invalid replacement `{r}`: it {e}")))
            .ok()
    });
    Some(Box::new(RegexRouter {
        regex: regex?,
        replacement: replacement?,
    }))
}

/// Sets the topic from the record's timestamp: `topic.format` with `${topic}` and `${timestamp}`.
struct TimestampRouter {
    topic_format: String,
    timestamp_format: JavaFormat,
}

impl Transform for TimestampRouter {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        let Some(timestamp) = record.timestamp else {
            return Err(TransformError::record(
                "TimestampRouter",
                format!("the record (topic `{}`) has no timestamp", record.topic),
            ));
        };
        let formatted = format_millis(&self.timestamp_format, timestamp)
            .map_err(|e| TransformError::record("TimestampRouter", e))?;
        record.topic = self
            .topic_format
            .replace("${topic}", &record.topic)
            .replace("${timestamp}", &formatted);
        Ok(Some(record))
    }
}

pub(crate) fn timestamp_router(p: &Props, _: super::part::Side) -> Option<Box<dyn Transform>> {
    let topic_format = p.string_or("topic.format", "${topic}-${timestamp}");
    let timestamp_format = JavaFormat::from_prop(p, "timestamp.format", Some("yyyyMMdd"));
    Some(Box::new(TimestampRouter {
        topic_format,
        timestamp_format: timestamp_format?,
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Schema, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};

    #[test]
    fn regex_router_renames_whole_matches_with_java_groups() {
        let chain = chain(json!({
            "type": "org.apache.kafka.connect.transforms.RegexRouter",
            "regex": "(\\w+)\\.(\\w+)", "replacement": "$2_$1x",
        }));
        let mut r = record(Some(Arc::new(Schema::string())), Value::from("v"));
        r.topic = "db.orders".into();
        let out = apply(&chain, r);
        assert_eq!(out.topic, "orders_dbx");
        assert_eq!(out.value, Value::from("v"));
        let mut r = record(None, map(&[("a", Value::from(1i32))]));
        r.topic = "db.orders.extra".into(); // `\w+\.\w+` does not match the whole name
        assert_eq!(apply(&chain, r).topic, "db.orders.extra");
    }

    #[test]
    fn regex_router_config_errors_name_the_field() {
        let errors =
            config_errors(json!({"type": "RegexRouter", "regex": "(", "replacement": "$"}));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["transforms.t.regex", "transforms.t.replacement"]);
        assert!(
            errors[0].message.starts_with("invalid regex `(`"),
            "{}",
            errors[0].message
        );
        let errors = config_errors(json!({"type": "RegexRouter"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.regex: missing required field"
        );
        assert_eq!(
            errors[1].to_string(),
            "transforms.t.replacement: missing required field"
        );
    }

    #[test]
    fn timestamp_router_formats_the_record_time_in_utc() {
        let chain = chain(json!({"type": "TimestampRouter"}));
        let mut r = record(Some(Arc::new(Schema::int32())), Value::from(1i32));
        r.timestamp = Some(1_700_000_000_000); // 2023-11-14T22:13:20Z
        assert_eq!(apply(&chain, r).topic, "orders-20231114");
        let chain = super::super::testing::chain(json!({
            "type": "TimestampRouter",
            "topic.format": "${timestamp}/${topic}",
            "timestamp.format": "yyyy-MM-dd'T'HH",
        }));
        let mut r = record(None, map(&[]));
        r.timestamp = Some(1_700_000_000_000);
        assert_eq!(apply(&chain, r.clone()).topic, "2023-11-14T22/orders");
        r.timestamp = None;
        assert_eq!(
            apply_err(&chain, r),
            "TimestampRouter: the record (topic `orders`) has no timestamp"
        );
        let errors = config_errors(json!({"type": "TimestampRouter", "timestamp.format": "yyyyQ"}));
        assert_eq!(errors[0].field, "transforms.t.timestamp.format");
    }
}
