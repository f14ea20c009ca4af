//! Kafka Connect's predicates: TopicNameMatches, HasHeaderKey, RecordIsTombstone.

use std::sync::Arc;

use regex::Regex;

use super::props::Props;
use super::{Predicate, TransformRecord};

/// The whole topic name matches `pattern`.
struct TopicNameMatches {
    pattern: Regex,
}

impl Predicate for TopicNameMatches {
    fn test(&self, record: &TransformRecord) -> bool {
        self.pattern.is_match(&record.topic)
    }
}

pub(crate) fn topic_name_matches(p: &Props) -> Option<Arc<dyn Predicate>> {
    let pattern = p.full_match_regex("pattern")?;
    Some(Arc::new(TopicNameMatches { pattern }))
}

/// The record has at least one header with key `name`.
struct HasHeaderKey {
    name: String,
}

impl Predicate for HasHeaderKey {
    fn test(&self, record: &TransformRecord) -> bool {
        record.headers.iter().any(|h| h.key == self.name)
    }
}

pub(crate) fn has_header_key(p: &Props) -> Option<Arc<dyn Predicate>> {
    // Kafka Connect calls it `name`; a pipeline file's list uses `name` for the predicate itself.
    let name = p
        .string("name")
        .or_else(|| p.string("header"))
        .filter(|n| !n.is_empty());
    if name.is_none() {
        p.error(
            "name",
            "missing required field: the header key to look for (`header` in a pipeline file's \
             predicates list, `name` in Kafka Connect's flat form)",
        );
    }
    let name = name?;
    Some(Arc::new(HasHeaderKey { name }))
}

/// The value is null (a tombstone), whatever the key.
struct RecordIsTombstone;

impl Predicate for RecordIsTombstone {
    fn test(&self, record: &TransformRecord) -> bool {
        record.value.is_null()
    }
}

pub(crate) fn record_is_tombstone(_: &Props) -> Option<Arc<dyn Predicate>> {
    Some(Arc::new(RecordIsTombstone))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use serde_json::json;
    use sluice_connector_api::{Header, Schema, Struct, Value};

    use super::super::chain_from_pipeline;
    use super::super::testing::{apply, map, record};

    /// A chain that drops records matching the predicate (negated when `negate`).
    fn filter_with(predicate: serde_json::Value, negate: bool) -> super::super::Chain {
        let mut predicate = predicate;
        predicate["name"] = json!("p");
        let config = json!({
            "transforms": [{"name": "drop", "type": "Filter", "predicate": "p", "negate": negate}],
            "predicates": [predicate],
        });
        chain_from_pipeline(config.as_object().unwrap()).unwrap()
    }

    fn kept(chain: &super::super::Chain, r: super::super::TransformRecord) -> bool {
        chain.apply(r).unwrap().is_some()
    }

    #[test]
    fn topic_name_matches_the_whole_name() {
        let chain = filter_with(
            json!({"type": "TopicNameMatches", "pattern": "ord.*"}),
            false,
        );
        let schema = StdArc::new(Schema::string());
        assert!(!kept(
            &chain,
            record(Some(schema.clone()), Value::from("x"))
        ));
        assert!(!kept(
            &chain,
            record(None, map(&[("a", Value::from(1i32))]))
        ));
        let mut other = record(None, Value::from("x"));
        other.topic = "my-orders".into(); // only a partial match
        assert!(kept(&chain, other));
        let negated = filter_with(
            json!({"type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches", "pattern": "ord.*"}),
            true,
        );
        let r = apply(&negated, record(Some(schema), Value::from("x")));
        assert_eq!(r.value, Value::from("x"));
    }

    #[test]
    fn has_header_key_looks_at_keys_only() {
        let chain = filter_with(json!({"type": "HasHeaderKey", "header": "trace"}), false);
        let mut with = record(None, map(&[]));
        with.headers.push(Header::new("trace", "1"));
        assert!(!kept(&chain, with));
        let mut without = record(
            Some(StdArc::new(Schema::struct_builder().build())),
            Value::Struct(Struct::new()),
        );
        without.headers.push(Header::new("other", "trace"));
        assert!(kept(&chain, without.clone()));
        let negated = filter_with(json!({"type": "HasHeaderKey", "header": "trace"}), true);
        assert!(!kept(&negated, without));
    }

    #[test]
    fn record_is_tombstone_means_a_null_value() {
        let chain = filter_with(json!({"type": "RecordIsTombstone"}), false);
        let tombstone = record(None, Value::Null).with_key(None, Value::from("k"));
        assert!(!kept(&chain, tombstone.clone()));
        let schema_tombstone = record(Some(StdArc::new(Schema::string().optional())), Value::Null);
        assert!(!kept(&chain, schema_tombstone));
        assert!(kept(&chain, record(None, map(&[]))));
        let negated = filter_with(json!({"type": "RecordIsTombstone"}), true);
        assert!(kept(&negated, tombstone));
        assert!(!kept(&negated, record(None, Value::from(0i32))));
    }
}
