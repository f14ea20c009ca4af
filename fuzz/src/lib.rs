//! A small mutation fuzzer that runs on stable Rust: inputs are seeds mutated at random (bit
//! flips, byte changes, inserted syntax tokens, cut, duplicated or spliced ranges) and fed to a
//! target for a bounded time. A panic is a crash: the input is saved under `fuzz/crashes/` and
//! the run fails. cargo-fuzz/libFuzzer would add coverage guidance but needs nightly and
//! sanitizer builds of every dependency, which this project does not build.
//!
//! `<target> <seconds>` fuzzes; `<target> --replay <files...>` runs saved inputs once (how a
//! crash becomes a regression check).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};

/// Syntax fragments that reach parser corners faster than random bytes do.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\"",
    b"\n",
    b"\n- ",
    b"  ",
    b"${",
    b"${env:",
    b"}",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"---\n",
    b"? ",
    b"|\n",
    b"1e999",
    b"-0",
    b"null",
    b"true",
    b"\\u0000",
    b"\\ud800",
    b"\"schema\":",
    b"\"payload\":",
    b"\"type\":\"struct\"",
    b"\"fields\":[",
    b"\"optional\":true",
    b"\"name\":\"org.apache.kafka.connect.data.Decimal\"",
    b"\"parameters\":{\"scale\":\"2\"}",
    b"\"type\":\"int64\"",
    b"\"type\":\"bytes\"",
    b"\"type\":\"array\",\"items\":",
    b"\"type\":\"map\",\"keys\":",
    b"connector: ",
    b"config:",
    b"transforms:",
    b"tasks: ",
    b"bootstrap_servers: ",
    b"rest:\n  ",
    b"9223372036854775808",
];

fn mutate(rng: &mut SmallRng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..rng.random_range(1..=8) {
        let len = input.len();
        match rng.random_range(0..7) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] = rng.random();
            }
            2 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                let at = rng.random_range(0..=len);
                input.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let from = rng.random_range(0..len);
                let to = rng.random_range(from..=len.min(from + 64));
                input.drain(from..to);
            }
            4 if len > 0 => {
                let from = rng.random_range(0..len);
                let to = rng.random_range(from..=len.min(from + 64));
                let copy = input[from..to].to_vec();
                let at = rng.random_range(0..=len);
                input.splice(at..at, copy);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let to = rng.random_range(from..=other.len());
                    let at = rng.random_range(0..=len);
                    input.splice(at..at, other[from..to].iter().copied());
                }
            }
            _ => input.truncate(rng.random_range(0..=len)),
        }
    }
    input.truncate(64 * 1024);
}

fn seeds(dir: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    out.push(Vec::new());
    out
}

/// Runs `target` as the command line says; exits 1 on a crash.
pub fn main(name: &str, mut target: impl FnMut(&[u8])) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if args.first().map(String::as_str) == Some("--replay") {
        for file in &args[1..] {
            let data = std::fs::read(file).expect("read a saved input");
            target(&data);
            println!("{name}: {file} ok");
        }
        return;
    }
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(60);
    let corpus = seeds(&root.join("seeds").join(name));
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    let mut rng = SmallRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs: u64 = 0;
    // Panics are reported by the crash file below, not by the default hook each time.
    std::panic::set_hook(Box::new(|_| {}));
    while Instant::now() < deadline {
        let mut input = corpus[rng.random_range(0..corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        runs += 1;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let dir: PathBuf = root.join("crashes");
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("{name}-{seed}-{runs}.bin"));
            let _ = std::fs::write(&file, &input);
            eprintln!(
                "{name}: CRASH after {runs} inputs (seed {seed}): {message}\n  input saved to {}",
                file.display()
            );
            std::process::exit(1);
        }
    }
    println!("{name}: {runs} inputs in {seconds}s, no crash (seed {seed})");
}
