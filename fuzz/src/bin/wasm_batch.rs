//! The host's checks of a batch a WASM plugin returns (records and headers tables pointing into
//! a byte buffer), and its reading of record values: the tables come from the guest, so any
//! numbers give records or an error, never a panic or an out-of-bounds read.

fn main() {
    sluice_fuzz::main("wasm-batch", |data: &[u8]| {
        // [records: u16 count][headers: u16 count] then that many little-endian i64s each, then
        // the data buffer.
        let [r0, r1, h0, h1, rest @ ..] = data else {
            return;
        };
        let (records, headers) = (
            usize::from(u16::from_le_bytes([*r0, *r1])),
            usize::from(u16::from_le_bytes([*h0, *h1])),
        );
        let mut numbers = rest.chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            // Small numbers (offsets and lengths into the buffer) more often than huge ones.
            let n = i64::from_le_bytes(b);
            if b[7] & 0x80 == 0 && b[6] == 0 {
                n % 512
            } else {
                n
            }
        });
        let records: Vec<i64> = numbers.by_ref().take(records).collect();
        let headers: Vec<i64> = numbers.by_ref().take(headers).collect();
        let used = (records.len() + headers.len()) * 8;
        let buffer = rest.get(used..).unwrap_or_default().to_vec();
        let _ = sluice_wasm::check_returned_batch(buffer, records, headers);
        let _ = sluice_wasm::decode_value(Some(data));
    });
}
