//! `misbehave`: a transform that misbehaves on purpose, for the sandbox tests. `mode` picks how:
//! `loop` (never returns), `alloc` (allocates without end), `trap` (panics), `sleep` (waits an
//! hour in a host call), `file` (reads
//! `path`), `socket` (connects to `address`), `http` (GETs `url` over wasi:http), `none`
//! (passes records through). Where the sandbox grants it, `file` and `http` succeed and add
//! what they read to each record as a header (`file`, `http`: status and body).

use sluice_plugin_sdk::transform::{Config, ConfigField, Error, Header, Record, Transform};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct Misbehave {
    mode: String,
    path: String,
    address: String,
    url: String,
    hoard: Vec<Vec<u8>>,
}

impl Transform for Misbehave {
    fn spec() -> Vec<ConfigField> {
        vec![
            ConfigField::new(
                "mode",
                "string",
                "none, loop, alloc, trap, sleep, file, socket or http.",
            )
            .required(),
            ConfigField::new("path", "string", "File the `file` mode opens.")
                .default("\"/etc/hostname\""),
            ConfigField::new(
                "address",
                "string",
                "Address the `socket` mode connects to.",
            )
            .default("\"127.0.0.1:9\""),
            ConfigField::new(
                "url",
                "string",
                "URL the `http` mode GETs (http://host:port/path).",
            )
            .default("\"http://127.0.0.1:9/\""),
        ]
    }

    fn open(config: &Config) -> Result<Self, Error> {
        Ok(Self {
            mode: config.get("mode").unwrap_or("none").to_owned(),
            path: config.get("path").unwrap_or_default().to_owned(),
            address: config.get("address").unwrap_or_default().to_owned(),
            url: config.get("url").unwrap_or_default().to_owned(),
            hoard: Vec::new(),
        })
    }

    fn apply(&mut self, record: Record) -> Result<Option<Record>, Error> {
        match self.mode.as_str() {
            "loop" | "alloc" | "trap" | "sleep" => {
                let what = format!("apply, on a record for {}", record.topic);
                misbehaviour::misbehave(&self.mode, &mut self.hoard, &what);
                Ok(Some(record))
            }
            "file" => match std::fs::read(&self.path) {
                Ok(content) => Ok(Some(with_header(record, "file", content))),
                Err(e) => Err(Error::Fatal(format!("open {}: {e}", self.path))),
            },
            "http" => match get(&self.url) {
                Ok(answer) => Ok(Some(with_header(record, "http", answer))),
                Err(e) => Err(Error::Fatal(format!("http GET {}: {e}", self.url))),
            },
            "socket" => match std::net::TcpStream::connect(&self.address) {
                Ok(_) => Ok(Some(record)),
                Err(e) => Err(Error::Fatal(format!("connect {}: {e}", self.address))),
            },
            _ => Ok(Some(record)),
        }
    }
}

fn with_header(mut record: Record, key: &str, value: Vec<u8>) -> Record {
    record.headers.push(Header {
        key: key.to_owned(),
        value: Some(value),
    });
    record
}

/// `GET url` over wasi:http: "<status> <body>".
fn get(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let set = |ok: Result<(), ()>, what: &str| ok.map_err(|()| format!("bad {what}"));
    set(request.set_method(&Method::Get), "method")?;
    set(request.set_scheme(Some(&Scheme::Http)), "scheme")?;
    set(request.set_authority(Some(authority)), "authority")?;
    set(
        request.set_path_with_query(Some(if path.is_empty() { "/" } else { path })),
        "path",
    )?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let mut answer = format!("{} ", response.status()).into_bytes();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => answer.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body: {e:?}")),
        }
    }
    Ok(answer)
}

sluice_plugin_sdk::export_transform!(Misbehave);
