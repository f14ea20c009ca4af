//! Request bodies: one record's bytes (an *element*) and how elements join into a body.

use bytes::Bytes;
use sluice_connector_api::Value;

use crate::config::BatchFormat;

/// The bytes one record contributes to a body. `single` and `ndjson` write strings as they
/// are (as `file-sink` writes values); `single` also writes bytes as they are; everything else
/// is the value's plain JSON (bytes as base64), as the JSON converter writes it with schemas off.
pub(crate) fn element(format: BatchFormat, value: &Value) -> Vec<u8> {
    match (format, value) {
        (BatchFormat::Single | BatchFormat::Ndjson, Value::String(s)) => s.as_bytes().to_vec(),
        (BatchFormat::Single, Value::Bytes(b)) => b.clone(),
        (_, other) => other.to_plain_json().to_string().into_bytes(),
    }
}

/// The `Content-Type` of a body (unless the config's `headers` set one).
pub(crate) fn content_type(format: BatchFormat, first: &Value) -> &'static str {
    match (format, first) {
        (BatchFormat::Single, Value::String(_)) => "text/plain; charset=utf-8",
        (BatchFormat::Single, Value::Bytes(_)) => "application/octet-stream",
        (BatchFormat::Single | BatchFormat::JsonArray, _) => "application/json",
        (BatchFormat::Ndjson, _) => "application/x-ndjson",
    }
}

/// Body bytes of `count` elements of `sum` bytes in all.
pub(crate) fn body_len(format: BatchFormat, count: usize, sum: usize) -> usize {
    match format {
        BatchFormat::Single => sum,
        // `[`, `]` and the commas between elements.
        BatchFormat::JsonArray => sum + 2 + count.saturating_sub(1),
        BatchFormat::Ndjson => sum + count,
    }
}

/// Joins elements into one body.
pub(crate) fn body<'a>(
    format: BatchFormat,
    elements: impl ExactSizeIterator<Item = &'a [u8]>,
) -> Bytes {
    let mut out = Vec::new();
    match format {
        BatchFormat::Single => {
            for e in elements {
                out.extend_from_slice(e);
            }
        }
        BatchFormat::JsonArray => {
            out.push(b'[');
            for (i, e) in elements.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(e);
            }
            out.push(b']');
        }
        BatchFormat::Ndjson => {
            for e in elements {
                out.extend_from_slice(e);
                out.push(b'\n');
            }
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::Struct;

    fn join(format: BatchFormat, values: &[Value]) -> String {
        let elements: Vec<Vec<u8>> = values.iter().map(|v| element(format, v)).collect();
        let body = body(format, elements.iter().map(Vec::as_slice));
        let sum = elements.iter().map(Vec::len).sum();
        assert_eq!(body.len(), body_len(format, elements.len(), sum));
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[test]
    fn formats_join_values() {
        let values = [
            Value::Struct(Struct::new().with("id", 1i64).with("name", "a")),
            Value::String("plain".into()),
            Value::Null,
        ];
        assert_eq!(
            join(BatchFormat::JsonArray, &values),
            r#"[{"id":1,"name":"a"},"plain",null]"#
        );
        assert_eq!(
            join(BatchFormat::Ndjson, &values),
            "{\"id\":1,\"name\":\"a\"}\nplain\nnull\n"
        );
        assert_eq!(
            join(BatchFormat::Single, &values[..1]),
            r#"{"id":1,"name":"a"}"#
        );
        assert_eq!(join(BatchFormat::JsonArray, &[]), "[]");
    }

    #[test]
    fn single_bodies_keep_strings_and_bytes_raw() {
        assert_eq!(
            element(BatchFormat::Single, &Value::String("{\"a\":1}".into())),
            b"{\"a\":1}"
        );
        assert_eq!(
            element(BatchFormat::Single, &Value::Bytes(vec![0, 159])),
            vec![0, 159]
        );
        assert_eq!(
            element(BatchFormat::JsonArray, &Value::Bytes(vec![1, 2])),
            b"\"AQI=\""
        );
        assert_eq!(
            content_type(BatchFormat::Single, &Value::Bytes(vec![])),
            "application/octet-stream"
        );
        assert_eq!(
            content_type(BatchFormat::Single, &Value::Int32(1)),
            "application/json"
        );
        assert_eq!(
            content_type(BatchFormat::Ndjson, &Value::Int32(1)),
            "application/x-ndjson"
        );
    }
}
