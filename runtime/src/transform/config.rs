//! Building a [`Chain`] from configuration: the pipeline file's `transforms:`/`predicates:` lists
//! or Kafka Connect's flat form, with every problem reported under `transforms.<name>.<property>`.
//!
//! Types are named as Kafka Connect names them: the class name
//! (`org.apache.kafka.connect.transforms.InsertField$Value`,
//! `org.apache.kafka.connect.transforms.predicates.TopicNameMatches`,
//! `io.debezium.transforms.ExtractNewRecordState`) or the same without its package
//! (`InsertField$Value`, `TopicNameMatches`). Transforms that work on the key or the value take
//! `$Key` or `$Value`, exactly as in Kafka Connect.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};
use sluice_connector_api::FieldError;

use super::chain::{Filter, Step};
use super::part::Side;
use super::props::{MISSING, Props};
use super::timestamp;
use super::{Chain, Predicate, Transform};
use super::{cast, debezium, field, flatten, headers, insert, mask, predicate, replace, route};

const KAFKA: &str = "org.apache.kafka.connect.transforms";
const KAFKA_PREDICATES: &str = "org.apache.kafka.connect.transforms.predicates";
const DEBEZIUM: &str = "io.debezium.transforms";

type BuildTransform = fn(&Props, Side) -> Option<Box<dyn Transform>>;
type BuildPredicate = fn(&Props) -> Option<Arc<dyn Predicate>>;

/// A transform type: its Kafka Connect name and package, whether it takes `$Key`/`$Value`.
struct TransformType {
    name: &'static str,
    package: &'static str,
    sided: bool,
    build: BuildTransform,
}

fn filter(_: &Props, _: Side) -> Option<Box<dyn Transform>> {
    Some(Box::new(Filter))
}

const TRANSFORMS: &[TransformType] = &[
    TransformType {
        name: "Cast",
        package: KAFKA,
        sided: true,
        build: cast::build,
    },
    TransformType {
        name: "DropHeaders",
        package: KAFKA,
        sided: false,
        build: headers::drop_headers,
    },
    TransformType {
        name: "ExtractField",
        package: KAFKA,
        sided: true,
        build: field::extract_field,
    },
    TransformType {
        name: "ExtractNewRecordState",
        package: DEBEZIUM,
        sided: false,
        build: debezium::build,
    },
    TransformType {
        name: "Filter",
        package: KAFKA,
        sided: false,
        build: filter,
    },
    TransformType {
        name: "Flatten",
        package: KAFKA,
        sided: true,
        build: flatten::build,
    },
    TransformType {
        name: "HeaderFrom",
        package: KAFKA,
        sided: true,
        build: headers::header_from,
    },
    TransformType {
        name: "HoistField",
        package: KAFKA,
        sided: true,
        build: field::hoist_field,
    },
    TransformType {
        name: "InsertField",
        package: KAFKA,
        sided: true,
        build: insert::build,
    },
    TransformType {
        name: "InsertHeader",
        package: KAFKA,
        sided: false,
        build: headers::insert_header,
    },
    TransformType {
        name: "MaskField",
        package: KAFKA,
        sided: true,
        build: mask::build,
    },
    TransformType {
        name: "RegexRouter",
        package: KAFKA,
        sided: false,
        build: route::regex_router,
    },
    TransformType {
        name: "ReplaceField",
        package: KAFKA,
        sided: true,
        build: replace::build,
    },
    TransformType {
        name: "SetSchemaMetadata",
        package: KAFKA,
        sided: true,
        build: field::set_schema_metadata,
    },
    TransformType {
        name: "TimestampConverter",
        package: KAFKA,
        sided: true,
        build: timestamp::build,
    },
    TransformType {
        name: "TimestampRouter",
        package: KAFKA,
        sided: false,
        build: route::timestamp_router,
    },
    TransformType {
        name: "ValueToKey",
        package: KAFKA,
        sided: false,
        build: field::value_to_key,
    },
];

const PREDICATES: &[(&str, BuildPredicate)] = &[
    ("HasHeaderKey", predicate::has_header_key),
    ("RecordIsTombstone", predicate::record_is_tombstone),
    ("TopicNameMatches", predicate::topic_name_matches),
];

/// Every transform type name (short form), as `type:` accepts them.
pub fn transform_names() -> Vec<String> {
    TRANSFORMS
        .iter()
        .flat_map(|t| {
            if t.sided {
                vec![format!("{}$Key", t.name), format!("{}$Value", t.name)]
            } else {
                vec![t.name.to_owned()]
            }
        })
        .collect()
}

/// Every built-in transform's full class name (`org.apache.kafka.connect.transforms.MaskField$Value`),
/// as Kafka Connect lists them.
pub fn transform_classes() -> Vec<String> {
    TRANSFORMS
        .iter()
        .flat_map(|t| {
            let class = format!("{}.{}", t.package, t.name);
            if t.sided {
                vec![format!("{class}$Key"), format!("{class}$Value")]
            } else {
                vec![class]
            }
        })
        .collect()
}

/// Every predicate's full class name.
pub fn predicate_classes() -> Vec<String> {
    PREDICATES
        .iter()
        .map(|(n, _)| format!("{KAFKA_PREDICATES}.{n}"))
        .collect()
}

/// Every predicate type name (short form).
pub fn predicate_names() -> Vec<String> {
    PREDICATES.iter().map(|(n, _)| (*n).to_owned()).collect()
}

fn resolve_transform(type_name: &str) -> Result<(&'static TransformType, Side), String> {
    let (base, suffix) = match type_name.rsplit_once('$') {
        Some((base, suffix)) => (base, Some(suffix)),
        None => (type_name, None),
    };
    let found = TRANSFORMS.iter().find(|t| {
        base == t.name
            || base
                .strip_prefix(t.package)
                .and_then(|rest| rest.strip_prefix('.'))
                == Some(t.name)
    });
    let unknown = || {
        format!(
            "unknown transform `{type_name}`; expected one of: {} (or the Kafka Connect class \
             name, e.g. {KAFKA}.InsertField$Value)",
            transform_names().join(", ")
        )
    };
    let Some(found) = found else {
        return Err(unknown());
    };
    match (found.sided, suffix) {
        (true, Some("Key")) => Ok((found, Side::Key)),
        (true, Some("Value")) => Ok((found, Side::Value)),
        (true, _) => Err(format!(
            "`{type_name}` works on the key or the value: write {0}$Key or {0}$Value",
            found.name
        )),
        (false, None) => Ok((found, Side::Value)),
        (false, Some(_)) => Err(unknown()),
    }
}

fn resolve_predicate(type_name: &str) -> Result<BuildPredicate, String> {
    let short = type_name
        .strip_prefix(KAFKA_PREDICATES)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(type_name);
    PREDICATES
        .iter()
        .find(|(name, _)| *name == short)
        .map(|(_, build)| *build)
        .ok_or_else(|| {
            format!(
                "unknown predicate `{type_name}`; expected one of: {} (or the Kafka Connect \
                 class name, e.g. {KAFKA_PREDICATES}.TopicNameMatches)",
                predicate_names().join(", ")
            )
        })
}

/// One configured transform or predicate: its name, where errors go, and its properties
/// (including `type`, `predicate` and `negate`).
struct Entry {
    name: String,
    path: String,
    props: Map<String, Json>,
}

fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['.', ',']) || name.chars().any(char::is_whitespace) {
        Err(format!(
            "expected a name without `.`, `,` or spaces (the flat form uses it in keys), got `{name}`"
        ))
    } else {
        Ok(())
    }
}

/// Entries of a pipeline file's `transforms:` or `predicates:` list.
fn entries_from_list(
    section: &str,
    value: Option<&Json>,
    errors: &mut Vec<FieldError>,
) -> Vec<Entry> {
    let items = match value {
        None | Some(Json::Null) => return Vec::new(),
        Some(Json::Array(items)) => items,
        Some(_) => {
            errors.push(FieldError::new(
                section,
                format!("expected a list of {section}, each with a name and a type"),
            ));
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Json::Object(props) = item else {
            errors.push(FieldError::new(
                format!("{section}[{i}]"),
                "expected a map with a name, a type and properties",
            ));
            continue;
        };
        let name = match props.get("name") {
            Some(Json::String(name)) => name.clone(),
            None | Some(Json::Null) => {
                errors.push(FieldError::new(format!("{section}[{i}].name"), MISSING));
                continue;
            }
            Some(other) => {
                errors.push(FieldError::new(
                    format!("{section}[{i}].name"),
                    format!("expected a string, got {other}"),
                ));
                continue;
            }
        };
        if let Err(message) = valid_name(&name) {
            errors.push(FieldError::new(format!("{section}[{i}].name"), message));
            continue;
        }
        // The entry's own name is not a property (HasHeaderKey has a `name` property of its own,
        // written `header` in this form).
        let mut props = props.clone();
        props.remove("name");
        entries.push(Entry {
            path: format!("{section}.{name}"),
            name,
            props,
        });
    }
    entries
}

/// Entries of Kafka Connect's flat form: `transforms: "a,b"`, `transforms.a.type: ...`.
fn entries_from_flat(
    section: &str,
    flat: &Map<String, Json>,
    errors: &mut Vec<FieldError>,
) -> Vec<Entry> {
    let names: Vec<String> = match flat.get(section) {
        None | Some(Json::Null) => return Vec::new(),
        Some(Json::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Json::Array(items)) if items.iter().all(Json::is_string) => items
            .iter()
            .filter_map(Json::as_str)
            .map(|s| s.trim().to_owned())
            .collect(),
        Some(_) => {
            errors.push(FieldError::new(
                section,
                format!("expected a comma separated list of {section} names"),
            ));
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for name in names {
        if let Err(message) = valid_name(&name) {
            errors.push(FieldError::new(section, message));
            continue;
        }
        let prefix = format!("{section}.{name}.");
        let props = flat
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|p| (p.to_owned(), v.clone())))
            .collect();
        entries.push(Entry {
            path: format!("{section}.{name}"),
            name,
            props,
        });
    }
    entries
}

/// Builds the chain of a pipeline file (its `transforms:` and `predicates:` lists; other keys
/// are ignored):
///
/// ```yaml
/// transforms:
///   - name: addSource
///     type: InsertField$Value
///     static.field: origin
///     static.value: sluice
///     predicate: isOrders
/// predicates:
///   - name: isOrders
///     type: TopicNameMatches
///     pattern: orders.*
/// ```
pub fn chain_from_pipeline(pipeline: &Map<String, Json>) -> Result<Chain, Vec<FieldError>> {
    let mut errors = Vec::new();
    let predicates = entries_from_list("predicates", pipeline.get("predicates"), &mut errors);
    let transforms = entries_from_list("transforms", pipeline.get("transforms"), &mut errors);
    build(transforms, predicates, errors)
}

/// Builds the chain of a Kafka Connect flat config (`transforms`, `transforms.<name>.type`,
/// `transforms.<name>.<property>`, `transforms.<name>.predicate`, `transforms.<name>.negate`,
/// `predicates`, `predicates.<name>.type`, ...); other keys are ignored, as are properties of
/// names not listed in `transforms`/`predicates` (as Kafka Connect does).
pub fn chain_from_flat(flat: &Map<String, Json>) -> Result<Chain, Vec<FieldError>> {
    let mut errors = Vec::new();
    let predicates = entries_from_flat("predicates", flat, &mut errors);
    let transforms = entries_from_flat("transforms", flat, &mut errors);
    build(transforms, predicates, errors)
}

fn type_of(entry: &Entry, errors: &mut Vec<FieldError>) -> Option<String> {
    match entry.props.get("type") {
        Some(Json::String(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        None | Some(Json::Null) => {
            errors.push(FieldError::new(format!("{}.type", entry.path), MISSING));
            None
        }
        Some(other) => {
            errors.push(FieldError::new(
                format!("{}.type", entry.path),
                format!("expected a type name, got {other}"),
            ));
            None
        }
    }
}

fn under(errors: Vec<FieldError>, path: &str) -> impl Iterator<Item = FieldError> {
    errors.into_iter().map(move |e| e.under(path))
}

fn build(
    transforms: Vec<Entry>,
    predicates: Vec<Entry>,
    mut errors: Vec<FieldError>,
) -> Result<Chain, Vec<FieldError>> {
    // Predicates by name; `None` for one that is defined but failed to build, so steps that
    // use it do not report it again as unknown.
    let mut built: HashMap<String, Option<Arc<dyn Predicate>>> = HashMap::new();
    for entry in &predicates {
        if built.contains_key(&entry.name) {
            errors.push(FieldError::new(
                format!("{}.name", entry.path),
                format!(
                    "the name `{}` is used by more than one predicate",
                    entry.name
                ),
            ));
            continue;
        }
        let predicate = type_of(entry, &mut errors).and_then(|t| match resolve_predicate(&t) {
            Ok(build) => {
                let props = Props::new(&entry.props);
                let predicate = build(&props);
                let problems = props.finish(true);
                let ok = problems.is_empty();
                errors.extend(under(problems, &entry.path));
                predicate.filter(|_| ok)
            }
            Err(message) => {
                errors.push(FieldError::new(format!("{}.type", entry.path), message));
                None
            }
        });
        built.insert(entry.name.clone(), predicate);
    }

    let mut steps = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in &transforms {
        if !seen.insert(entry.name.as_str()) {
            errors.push(FieldError::new(
                format!("{}.name", entry.path),
                format!(
                    "the name `{}` is used by more than one transform",
                    entry.name
                ),
            ));
            continue;
        }
        let props = Props::new(&entry.props);
        let predicate_name = props.string("predicate");
        let negate = props.bool_or("negate", false);
        let predicate = match &predicate_name {
            None => None,
            Some(name) => match built.get(name) {
                Some(p) => p.clone(),
                None => {
                    let mut defined: Vec<&str> = built.keys().map(String::as_str).collect();
                    defined.sort_unstable();
                    props.error(
                        "predicate",
                        if defined.is_empty() {
                            format!("unknown predicate `{name}`; no predicates are defined")
                        } else {
                            format!(
                                "unknown predicate `{name}`; defined: {}",
                                defined.join(", ")
                            )
                        },
                    );
                    None
                }
            },
        };
        if negate && predicate_name.is_none() {
            props.error("negate", "negate needs a predicate");
        }
        let type_name = type_of(entry, &mut errors);
        if let Some(t) = type_name
            .as_deref()
            .filter(|t| super::wasm::is_wasm_type(t))
        {
            // A WASM plugin checks its own properties (its spec); the chain's are read above.
            errors.extend(under(props.finish(false), &entry.path));
            match super::wasm::build(t, &entry.props) {
                Ok(transform) if errors.is_empty() => steps.push(Step {
                    name: entry.name.clone(),
                    transform,
                    predicate,
                    negate,
                }),
                Ok(_) => {}
                Err(problems) => errors.extend(under(problems, &entry.path)),
            }
            continue;
        }
        let mut known_type = false;
        let transform = type_name.and_then(|t| match resolve_transform(&t) {
            Ok((kind, side)) => {
                known_type = true;
                (kind.build)(&props, side)
            }
            Err(message) => {
                errors.push(FieldError::new(format!("{}.type", entry.path), message));
                None
            }
        });
        // Without a known type there is no telling which properties are unknown.
        let problems = props.finish(known_type);
        let ok = problems.is_empty();
        errors.extend(under(problems, &entry.path));
        if let (Some(transform), true) = (transform, ok) {
            steps.push(Step {
                name: entry.name.clone(),
                transform,
                predicate,
                negate,
            });
        }
    }
    if errors.is_empty() {
        Ok(Chain { steps })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_connector_api::Value;

    use super::*;
    use crate::transform::TransformRecord;
    use crate::transform::testing::map;

    fn lines(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn pipeline_form_builds_a_guarded_chain_in_order() {
        let config = json!({
            "transforms": [
                {"name": "addSource", "type": "InsertField$Value", "static.field": "origin",
                 "static.value": "sluice", "predicate": "isOrders"},
                {"name": "route", "type": "RegexRouter", "regex": "(.*)", "replacement": "out-$1"},
                {"name": "dropOthers", "type": "Filter", "predicate": "isOrders", "negate": true},
            ],
            "predicates": [{"name": "isOrders", "type": "TopicNameMatches", "pattern": "orders.*"}],
        });
        let chain = chain_from_pipeline(config.as_object().unwrap()).unwrap();
        assert_eq!(
            chain.names().collect::<Vec<_>>(),
            ["addSource", "route", "dropOthers"]
        );
        // The predicate is evaluated before each step: after `route` renames the topic,
        // `dropOthers` (negated) drops the record.
        let out = chain
            .apply(TransformRecord::new("orders", None, map(&[])))
            .unwrap();
        assert!(out.is_none());
        let other = chain
            .apply(TransformRecord::new("users", None, map(&[])))
            .unwrap();
        assert!(other.is_none());
        let config = json!({
            "transforms": [
                {"name": "addSource", "type": "InsertField$Value", "static.field": "origin",
                 "static.value": "sluice", "predicate": "isOrders"},
                {"name": "keepOrders", "type": "Filter", "predicate": "isOrders", "negate": "true"},
            ],
            "predicates": [{"name": "isOrders", "type": "TopicNameMatches", "pattern": "orders.*"}],
        });
        let chain = chain_from_pipeline(config.as_object().unwrap()).unwrap();
        let out = chain
            .apply(TransformRecord::new("orders", None, map(&[])))
            .unwrap()
            .unwrap();
        assert_eq!(out.value, map(&[("origin", Value::from("sluice"))]));
        assert!(
            chain
                .apply(TransformRecord::new("users", None, map(&[])))
                .unwrap()
                .is_none()
        );
        assert!(chain_from_pipeline(&Map::new()).unwrap().is_empty());
        // A step whose predicate does not hold is skipped; the record goes on unchanged.
        let config = json!({
            "transforms": [{"name": "add", "type": "InsertField$Value", "static.field": "o",
                            "static.value": "s", "predicate": "isOrders"}],
            "predicates": [{"name": "isOrders", "type": "TopicNameMatches", "pattern": "orders.*"}],
        });
        let chain = chain_from_pipeline(config.as_object().unwrap()).unwrap();
        let users = TransformRecord::new("users", None, map(&[]));
        assert_eq!(chain.apply(users.clone()).unwrap(), Some(users));
    }

    #[test]
    fn flat_form_is_kafka_connects() {
        let flat = json!({
            "connector.class": "datagen",
            "transforms": "mask, route, tag",
            "transforms.mask.type": "org.apache.kafka.connect.transforms.MaskField$Value",
            "transforms.mask.fields": "card",
            "transforms.mask.predicate": "notTombstone",
            "transforms.mask.negate": "true",
            "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
            "transforms.route.regex": "orders",
            "transforms.route.replacement": "masked",
            "transforms.unlisted.type": "Nonsense",
            "transforms.tag.type": "InsertHeader",
            "transforms.tag.header": "seen",
            "transforms.tag.value.literal": "yes",
            "transforms.tag.predicate": "traced",
            "predicates": "notTombstone,traced",
            "predicates.notTombstone.type": "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
            "predicates.traced.type": "HasHeaderKey",
            "predicates.traced.name": "trace",
        });
        let chain = chain_from_flat(flat.as_object().unwrap()).unwrap();
        assert_eq!(chain.len(), 3);
        let out = chain
            .apply(TransformRecord::new(
                "orders",
                None,
                map(&[("card", Value::from("4111"))]),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(out.topic, "masked");
        assert_eq!(out.value, map(&[("card", Value::from(""))]));
        assert!(out.headers.is_empty());
        let mut traced = TransformRecord::new("orders", None, map(&[]));
        traced
            .headers
            .push(sluice_connector_api::Header::new("trace", "1"));
        let out = chain.apply(traced).unwrap().unwrap();
        assert_eq!(
            out.headers[1],
            sluice_connector_api::Header::new("seen", "yes")
        );
        let tombstone = chain
            .apply(TransformRecord::new("orders", None, Value::Null))
            .unwrap()
            .unwrap();
        assert_eq!(tombstone.value, Value::Null);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let config = json!({
            "transforms": [
                {"name": "addSource", "type": "InsertField$Value", "static.value": "x", "predicate": "nope"},
                {"name": "route", "type": "RegexRouter", "regex": "([a-z", "replacement": "x"},
                {"name": "x", "type": "Foo"},
                {"type": "Filter"},
                {"name": "neg", "type": "Filter", "negate": true},
                {"name": "route", "type": "Filter"},
            ],
            "predicates": [{"name": "p", "type": "TopicNameMatches"}, {"name": "q", "type": "IsBig"}],
        });
        let errors = chain_from_pipeline(config.as_object().unwrap()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "transforms[3].name",
                "predicates.p.pattern",
                "predicates.q.type",
                "transforms.addSource.predicate",
                "transforms.addSource.static.field",
                "transforms.route.regex",
                "transforms.x.type",
                "transforms.neg.negate",
                "transforms.route.name",
            ]
        );
        assert_eq!(errors[1].message, "missing required field");
        assert_eq!(errors[3].message, "unknown predicate `nope`; defined: p, q");
        assert!(
            errors[5].message.starts_with("invalid regex `([a-z`"),
            "{}",
            errors[5].message
        );
        assert!(
            errors[6].message.starts_with(
                "unknown transform `Foo`; expected one of: Cast$Key, Cast$Value, DropHeaders,"
            ),
            "{}",
            errors[6].message
        );
        assert!(errors[2].message.starts_with("unknown predicate `IsBig`; expected one of: HasHeaderKey, RecordIsTombstone, TopicNameMatches"));
    }

    #[test]
    fn flat_form_errors_use_the_flat_keys() {
        let flat = json!({
            "transforms": "a,b",
            "transforms.a.type": "Cast$Value",
            "transforms.a.spec": "x:int99",
            "predicates": "p",
            "predicates.p.type": "HasHeaderKey",
        });
        let errors = chain_from_flat(flat.as_object().unwrap()).unwrap_err();
        assert_eq!(
            lines(errors),
            [
                "predicates.p.name: missing required field: the header key to look for (`header` \
                 in a pipeline file's predicates list, `name` in Kafka Connect's flat form)",
                "transforms.a.spec: unknown type `int99`; expected one of int8, int16, int32, int64, float32, float64, boolean, string in `x:int99`",
                "transforms.b.type: missing required field",
            ]
        );
        let errors = chain_from_flat(json!({"transforms": 5}).as_object().unwrap()).unwrap_err();
        assert_eq!(
            lines(errors),
            ["transforms: expected a comma separated list of transforms names"]
        );
        let errors =
            chain_from_pipeline(json!({"transforms": {"a": 1}}).as_object().unwrap()).unwrap_err();
        assert_eq!(
            lines(errors),
            ["transforms: expected a list of transforms, each with a name and a type"]
        );
    }

    #[test]
    fn names_cover_both_sides_and_class_names_resolve() {
        let names = transform_names();
        assert!(names.contains(&"InsertField$Key".to_owned()));
        assert!(names.contains(&"ExtractNewRecordState".to_owned()));
        assert_eq!(names.len(), 10 * 2 + 7);
        assert!(resolve_transform("org.apache.kafka.connect.transforms.Flatten$Key").is_ok());
        assert!(resolve_transform("io.debezium.transforms.ExtractNewRecordState").is_ok());
        // The package must be the transform's own.
        assert!(resolve_transform("io.debezium.transforms.Flatten$Key").is_err());
        assert!(resolve_transform("RegexRouter$Value").is_err());
        assert_eq!(
            predicate_names(),
            ["HasHeaderKey", "RecordIsTombstone", "TopicNameMatches"]
        );
    }
}
