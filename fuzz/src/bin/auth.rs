//! What the REST API's access rules read from outside: tokens and htpasswd files, Authorization
//! headers, worker-signature headers of forwarded requests. Never a panic.

fn main() {
    sluice_fuzz::main("auth", |data: &[u8]| {
        sluice::rest::fuzz_untrusted_auth(&String::from_utf8_lossy(data));
    });
}
