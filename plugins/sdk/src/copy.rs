//! Appending short byte strings without `memcpy`. In a WebAssembly plugin `memcpy` is the
//! `memory.copy` instruction, which wasmtime runs as a call out of the plugin into the host: for
//! the short topics, keys, values and fields of records (tens of bytes) that call costs more
//! than the copy. Short slices are copied eight bytes at a time by plain loads and stores.

/// Longer slices than this go through `memcpy`, where the call is worth it.
const SHORT: usize = 128;

/// Appends `src` to `out`.
pub(crate) fn append(out: &mut Vec<u8>, src: &[u8]) {
    if src.len() > SHORT {
        out.extend_from_slice(src);
        return;
    }
    out.reserve(src.len());
    let mut words = src.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        out.extend_from_slice(&w);
    }
    for &b in words.remainder() {
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_every_length() {
        let src: Vec<u8> = (0..=255).collect();
        for len in [0, 1, 7, 8, 9, 63, 128, 129, 256] {
            let mut out = b"ab".to_vec();
            append(&mut out, &src[..len]);
            assert_eq!(out[..2], *b"ab");
            assert_eq!(out[2..], src[..len], "{len}");
        }
    }
}
