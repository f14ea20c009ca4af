//! The converters on arbitrary Kafka bytes: decoding gives a value or an error, never a panic,
//! and whatever decodes encodes again.

use sluice::convert::{ConverterConfig, ConverterKind, DecimalFormat};

fn main() {
    let converters: Vec<_> = [
        (ConverterKind::Json, true, DecimalFormat::Base64),
        (ConverterKind::Json, true, DecimalFormat::Numeric),
        (ConverterKind::Json, false, DecimalFormat::Base64),
        (ConverterKind::String, false, DecimalFormat::Base64),
        (ConverterKind::Bytes, false, DecimalFormat::Base64),
    ]
    .into_iter()
    .map(|(kind, schemas, decimal_format)| {
        ConverterConfig {
            kind,
            schemas,
            decimal_format,
        }
        .build()
    })
    .collect();
    sluice_fuzz::main("converters", move |data: &[u8]| {
        for converter in &converters {
            if let Ok((schema, value)) = converter.decode(Some(data)) {
                let _ = converter.encode_shared(schema.as_ref(), &value);
            }
        }
    });
}
