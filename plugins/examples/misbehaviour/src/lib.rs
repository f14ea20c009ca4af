//! What the `misbehave*` plugins do on purpose, for the sandbox tests: `loop` never returns,
//! `alloc` allocates without end (into `hoard`), `trap` panics, `sleep` waits an hour in a host
//! call (a WASI clock subscription: no wasm runs, so epoch interruption cannot stop it). Other
//! modes return.

/// How long the `sleep` mode waits: far past any call timeout.
pub const SLEEP: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn misbehave(mode: &str, hoard: &mut Vec<Vec<u8>>, what: &str) {
    match mode {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => loop {
            let mut chunk = vec![0u8; 1 << 20];
            chunk[0] = 1;
            hoard.push(std::hint::black_box(chunk));
        },
        "sleep" => std::thread::sleep(SLEEP),
        "trap" => panic!("misbehave: deliberate panic in {what}"),
        _ => {}
    }
}
