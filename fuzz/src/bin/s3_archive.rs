//! The s3-source's archive reader on arbitrary object bytes, under every name it tells formats
//! by (JSON lines plain, gzip or zstd; Parquet; bytes, refused): records or an error, never a
//! panic.

const KEYS: &[&str] = &[
    "topics/t/partition=0/t+0+0000000000.json",
    "topics/t/partition=0/t+0+0000000000.json.gz",
    "topics/t/partition=0/t+0+0000000000.json.zst",
    "topics/t/partition=0/t+0+0000000000.bin",
    "topics/t/partition=0/t+0+0000000000.parquet",
];

fn main() {
    sluice_fuzz::main("s3-archive", |data: &[u8]| {
        for key in KEYS {
            let _ = sluice_connector_s3::read_object(key, bytes::Bytes::copy_from_slice(data));
        }
    });
}
