//! `misbehave`: a transform that misbehaves on purpose, for the sandbox tests. `mode` picks how:
//! `loop` (never returns), `alloc` (allocates without end), `trap` (panics), `file` (opens
//! `path`), `socket` (connects to `address`), `none` (passes records through).

use sluice_plugin_sdk::transform::{Config, ConfigField, Error, Record, Transform};

struct Misbehave {
    mode: String,
    path: String,
    address: String,
    hoard: Vec<Vec<u8>>,
}

impl Transform for Misbehave {
    fn spec() -> Vec<ConfigField> {
        vec![
            ConfigField::new("mode", "string", "none, loop, alloc, trap, file or socket.")
                .required(),
            ConfigField::new("path", "string", "File the `file` mode opens.")
                .default("\"/etc/hostname\""),
            ConfigField::new(
                "address",
                "string",
                "Address the `socket` mode connects to.",
            )
            .default("\"127.0.0.1:9\""),
        ]
    }

    fn open(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            mode: config.get("mode").unwrap_or("none").to_owned(),
            path: config.get("path").unwrap_or_default().to_owned(),
            address: config.get("address").unwrap_or_default().to_owned(),
            hoard: Vec::new(),
        })
    }

    fn apply(&mut self, record: Record) -> Result<Option<Record>, Error> {
        match self.mode.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                self.hoard.push(std::hint::black_box(chunk));
            },
            "trap" => panic!("misbehave: deliberate panic on record for {}", record.topic),
            "file" => match std::fs::read(&self.path) {
                Ok(_) => Ok(Some(record)),
                Err(e) => Err(Error::Fatal(format!("open {}: {e}", self.path))),
            },
            "socket" => match std::net::TcpStream::connect(&self.address) {
                Ok(_) => Ok(Some(record)),
                Err(e) => Err(Error::Fatal(format!("connect {}: {e}", self.address))),
            },
            _ => Ok(Some(record)),
        }
    }
}

sluice_plugin_sdk::export_transform!(Misbehave);
