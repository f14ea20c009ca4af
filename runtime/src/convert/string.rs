use std::sync::{Arc, LazyLock};

use sluice_connector_api::{Schema, SchemaRef, Value};

use super::{ConvertError, Converter};

static OPTIONAL_STRING: LazyLock<SchemaRef> =
    LazyLock::new(|| Arc::new(Schema::string().optional()));

/// UTF-8 text. Non-string values are written as their text (`42`, `true`, `12.50`).
#[derive(Debug, Clone, Copy)]
pub struct StringConverter;

impl Converter for StringConverter {
    fn encode(
        &self,
        _schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        Ok(match value {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Bytes(b) => Some(b.clone()),
            other => Some(other.to_string().into_bytes()),
        })
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value), ConvertError> {
        let Some(bytes) = bytes else {
            return Ok((Some(OPTIONAL_STRING.clone()), Value::Null));
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            ConvertError::invalid(format!("string converter: bytes are not valid UTF-8: {e}"))
        })?;
        Ok((
            Some(OPTIONAL_STRING.clone()),
            Value::String(text.to_owned()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_bad_utf8_is_an_error() {
        let c = StringConverter;
        let bytes = c.encode(None, &Value::String("héllo".into())).unwrap();
        assert_eq!(
            c.decode(bytes.as_deref()).unwrap().1,
            Value::String("héllo".into())
        );
        assert_eq!(
            c.encode(None, &Value::Int64(42)).unwrap(),
            Some(b"42".to_vec())
        );
        assert_eq!(c.encode(None, &Value::Null).unwrap(), None);
        assert!(
            c.decode(Some(&[0xff, 0xfe]))
                .unwrap_err()
                .to_string()
                .contains("not valid UTF-8")
        );
    }
}
