//! Config providers: `${env:NAME}`, `${env:NAME:-default}` and `${file:path:key}` inside string
//! values, resolved when a file is loaded. A `file:` provider reads `key=value` lines (Java
//! properties style, `#` comments) or, for `.yaml`/`.yml`/`.json` files, a top-level key.
//! `${name}` without a provider prefix is left as it is, for connectors' own templates
//! (http-sink's `${topic}`).

use std::collections::HashMap;

use serde_json::Value as Json;
use sluice_connector_api::FieldError;

/// Replaces provider references in every string of `value`. Problems name the field they are in.
pub fn resolve_providers(value: &mut Json) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut files = HashMap::new();
    walk(value, "", &mut errors, &mut files);
    errors
}

fn walk(
    value: &mut Json,
    path: &str,
    errors: &mut Vec<FieldError>,
    files: &mut HashMap<String, FileData>,
) {
    match value {
        Json::String(s) if s.contains("${") => match expand(s, files) {
            Ok(expanded) => *s = expanded,
            Err(message) => errors.push(FieldError::new(path.trim_start_matches('.'), message)),
        },
        Json::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), errors, files);
            }
        }
        Json::Object(map) => {
            for (k, v) in map.iter_mut() {
                walk(v, &format!("{path}.{k}"), errors, files);
            }
        }
        _ => {}
    }
}

type FileData = Result<HashMap<String, String>, String>;

fn expand(text: &str, files: &mut HashMap<String, FileData>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated `${{` in \"{text}\""))?;
        out.push_str(&lookup(&after[..end], files)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(reference: &str, files: &mut HashMap<String, FileData>) -> Result<String, String> {
    // Not a provider reference (those are `provider:...`): a connector's own placeholder, such
    // as http-sink's `${topic}` in a URL template, kept for the connector.
    if !reference.contains(':') {
        return Ok(format!("${{{reference}}}"));
    }
    if let Some(var) = reference.strip_prefix("env:") {
        let (name, default) = match var.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (var, None),
        };
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
        let data = files
            .entry(path.to_owned())
            .or_insert_with(|| read_file(path));
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

fn read_file(path: &str) -> FileData {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if path.ends_with(".yaml") || path.ends_with(".yml") || path.ends_with(".json") {
        let map: HashMap<String, serde_yaml::Value> =
            serde_yaml::from_str(&text).map_err(|e| format!("cannot parse {path}: {e}"))?;
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
}
