//! The JSON converter with schemas writes exactly what Kafka Connect's JsonConverter writes.
//!
//! The expected text follows Kafka Connect's `JsonConverter.asJsonSchema`/`convertToJson`: schema
//! keys `type`, `fields`, `optional`, `name`, `version`, `parameters`, with each field's own name
//! last as `field`; Decimal payloads as base64 of the unscaled two's-complement bytes (1.56 at
//! scale 2 is 156 = 0x009C = "AJw="), Timestamp as epoch milliseconds, a null optional field as an
//! explicit null, no whitespace.

use sluice::convert::{Converter, DecimalFormat, JsonConverter};
use sluice_connector_api::{Decimal, Schema, Struct, Value};

const GOLDEN: &str = concat!(
    r#"{"schema":{"type":"struct","fields":["#,
    r#"{"type":"int32","optional":false,"field":"id"},"#,
    r#"{"type":"string","optional":false,"field":"name"},"#,
    r#"{"type":"string","optional":true,"field":"note"},"#,
    r#"{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2"},"field":"price"},"#,
    r#"{"type":"int64","optional":false,"name":"org.apache.kafka.connect.data.Timestamp","version":1,"field":"created"}"#,
    r#"],"optional":false,"name":"shop.Order"},"#,
    r#""payload":{"id":42,"name":"widget \"deluxe\"","note":null,"price":"AJw=","created":1700000000123}}"#
);

fn order() -> (Schema, Value) {
    let schema = Schema::struct_builder()
        .name("shop.Order")
        .field("id", Schema::int32())
        .field("name", Schema::string())
        .field("note", Schema::string().optional())
        .field("price", Schema::decimal(2))
        .field("created", Schema::timestamp())
        .build();
    let value = Value::Struct(
        Struct::new()
            .with("id", 42i32)
            .with("name", "widget \"deluxe\"")
            .with("note", Value::Null)
            .with("price", Decimal::parse("1.56").expect("decimal"))
            .with("created", Value::Timestamp(1_700_000_000_123)),
    );
    (schema, value)
}

#[test]
fn json_converter_writes_kafka_connect_bytes_and_reads_them_back() {
    let converter = JsonConverter::new(true, DecimalFormat::Base64);
    let (schema, value) = order();
    let bytes = converter
        .encode(Some(&schema), &value)
        .expect("convert")
        .expect("bytes");
    assert_eq!(String::from_utf8(bytes.clone()).expect("utf-8"), GOLDEN);

    let (read_schema, read_value) = converter
        .decode(Some(GOLDEN.as_bytes()))
        .expect("read back");
    assert_eq!(read_value, value);
    assert_eq!(read_schema.as_deref(), Some(&schema));
    // Writing what was read gives the same bytes again.
    assert_eq!(
        converter
            .encode(read_schema.as_deref(), &read_value)
            .expect("again"),
        Some(bytes)
    );
}

#[test]
fn numeric_decimal_format_and_schemaless_output() {
    let (schema, value) = order();
    let numeric = JsonConverter::new(false, DecimalFormat::Numeric);
    let bytes = numeric
        .encode(Some(&schema), &value)
        .expect("convert")
        .expect("bytes");
    assert_eq!(
        String::from_utf8(bytes).expect("utf-8"),
        r#"{"id":42,"name":"widget \"deluxe\"","note":null,"price":1.56,"created":1700000000123}"#
    );
}
