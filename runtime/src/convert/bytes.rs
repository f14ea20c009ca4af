use std::sync::{Arc, LazyLock};

use sluice_connector_api::{Schema, SchemaRef, Value};

use super::{ConvertError, Converter};

static OPTIONAL_BYTES: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::bytes().optional()));

/// Raw bytes passed through unchanged.
#[derive(Debug, Clone, Copy)]
pub struct BytesConverter;

impl Converter for BytesConverter {
    fn encode(
        &self,
        _schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        match value {
            Value::Null => Ok(None),
            Value::Bytes(b) => Ok(Some(b.clone())),
            Value::String(s) => Ok(Some(s.as_bytes().to_vec())),
            other => Err(ConvertError::invalid(format!(
                "bytes converter: expected bytes, got {}",
                other.type_name()
            ))),
        }
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value), ConvertError> {
        Ok((
            Some(OPTIONAL_BYTES.clone()),
            bytes.map_or(Value::Null, |b| Value::Bytes(b.to_vec())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_pass_through_and_structs_are_refused() {
        let c = BytesConverter;
        assert_eq!(
            c.encode(None, &Value::Bytes(vec![0, 255])).unwrap(),
            Some(vec![0, 255])
        );
        assert_eq!(c.decode(Some(&[1, 2])).unwrap().1, Value::Bytes(vec![1, 2]));
        let err = c.encode(None, &Value::Int32(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bytes converter: expected bytes, got int32"
        );
    }
}
