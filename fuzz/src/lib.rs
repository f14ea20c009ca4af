//! A small mutation fuzzer that runs on stable Rust: inputs are seeds mutated at random (bit
//! flips, byte changes, inserted syntax tokens, cut, duplicated or spliced ranges) and fed to a
//! target for a bounded time. A panic is a crash: the input is saved under `fuzz/crashes/` and
//! the run fails. cargo-fuzz/libFuzzer would add coverage guidance but needs nightly and
//! sanitizer builds of every dependency, which this project does not build.
//!
//! `<target> <seconds>` fuzzes; `<target> --replay <files...>` runs saved inputs once (how a
//! crash becomes a regression check).
//!
//! Every target runs under two limits, so a decoder that allocates without bound or spins is a
//! finding, not a stalled run: live heap memory is capped ([`MEMORY_CAP`], by the global
//! allocator below) and one input may run for at most [`INPUT_TIME_LIMIT`] (a watchdog thread).
//! Either saves the input under `fuzz/crashes/` and exits 1, as a panic does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most live heap memory a target may hold.
pub const MEMORY_CAP: usize = 1 << 30;
/// Longest one input may run.
pub const INPUT_TIME_LIMIT: Duration = Duration::from_secs(5);

/// The system allocator, failing the input in flight once live memory would pass [`MEMORY_CAP`].
struct Capped;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a count is kept.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size() > MEMORY_CAP {
            fail_in_flight(b"allocated past the memory cap");
        }
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let grow = new_size - layout.size();
            if LIVE.fetch_add(grow, Ordering::Relaxed) + grow > MEMORY_CAP {
                fail_in_flight(b"allocated past the memory cap");
            }
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as the caller promised.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// The input in flight (pointer and length), and when it started (ms since the run began, 0:
/// none), for the allocator and the watchdog.
static IN_FLIGHT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static IN_FLIGHT_LEN: AtomicUsize = AtomicUsize::new(0);
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
/// Where the input in flight is saved when it breaks a limit (made before fuzzing starts).
static LIMIT_FILE: OnceLock<CString> = OnceLock::new();

/// Saves the input in flight and exits 1, allocating nothing (it runs inside the allocator).
fn fail_in_flight(why: &[u8]) -> ! {
    let stderr = |bytes: &[u8]| {
        // SAFETY: writing a valid buffer to fd 2.
        unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    };
    stderr(b"fuzz: LIMIT: ");
    stderr(why);
    if let Some(path) = LIMIT_FILE.get() {
        // SAFETY: a NUL-terminated path; the input buffer stays alive while it is in flight.
        unsafe {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            );
            if fd >= 0 {
                let ptr = IN_FLIGHT.load(Ordering::SeqCst);
                let len = IN_FLIGHT_LEN.load(Ordering::SeqCst);
                if !ptr.is_null() {
                    libc::write(fd, ptr.cast(), len);
                }
                libc::close(fd);
            }
        }
        stderr(b"\n  input saved to ");
        stderr(path.as_bytes());
    }
    stderr(b"\n");
    // SAFETY: ends the process without running anything more.
    unsafe { libc::_exit(1) }
}

/// Fails the input in flight once it has run longer than [`INPUT_TIME_LIMIT`].
fn watchdog(begun: Instant) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let started = STARTED_MS.load(Ordering::SeqCst);
            let now = begun.elapsed().as_millis() as u64;
            if started != 0 && now.saturating_sub(started) > INPUT_TIME_LIMIT.as_millis() as u64 {
                fail_in_flight(b"one input ran past the time limit");
            }
        }
    });
}

/// Runs `target` on `input` with the input marked in flight for the limits.
fn run_one(
    begun: Instant,
    target: &mut impl FnMut(&[u8]),
    input: &[u8],
) -> std::thread::Result<()> {
    IN_FLIGHT.store(input.as_ptr().cast_mut(), Ordering::SeqCst);
    IN_FLIGHT_LEN.store(input.len(), Ordering::SeqCst);
    STARTED_MS.store(
        (begun.elapsed().as_millis() as u64).max(1),
        Ordering::SeqCst,
    );
    let result = catch_unwind(AssertUnwindSafe(|| target(input)));
    STARTED_MS.store(0, Ordering::SeqCst);
    IN_FLIGHT.store(std::ptr::null_mut(), Ordering::SeqCst);
    result
}

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
    let begun = Instant::now();
    watchdog(begun);
    if args.first().map(String::as_str) == Some("--replay") {
        for file in &args[1..] {
            let data = std::fs::read(file).expect("read a saved input");
            if run_one(begun, &mut target, &data).is_err() {
                eprintln!("{name}: {file} panicked");
                std::process::exit(1);
            }
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
    let crashes: PathBuf = root.join("crashes");
    let _ = std::fs::create_dir_all(&crashes);
    let limit_file = crashes.join(format!("{name}-{seed}-limit.bin"));
    let _ = LIMIT_FILE
        .set(CString::new(limit_file.to_string_lossy().into_owned()).expect("a path without NUL"));
    let mut rng = SmallRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs: u64 = 0;
    // Panics are reported by the crash file below, not by the default hook each time.
    std::panic::set_hook(Box::new(|_| {}));
    while Instant::now() < deadline {
        let mut input = corpus[rng.random_range(0..corpus.len())].clone();
        mutate(&mut rng, &mut input, &corpus);
        runs += 1;
        if let Err(panic) = run_one(begun, &mut target, &input) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            let file = crashes.join(format!("{name}-{seed}-{runs}.bin"));
            let _ = std::fs::write(&file, &input);
            eprintln!(
                "{name}: CRASH after {runs} inputs (seed {seed}): {message}\n  input saved to {}",
                file.display()
            );
            std::process::exit(1);
        }
    }
    println!(
        "{name}: {runs} inputs in {seconds}s ({} execs/s), no crash (seed {seed})",
        runs / seconds.max(1)
    );
}
