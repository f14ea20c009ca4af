//! TLS and SASL for the group membership's own Kafka connections, from the same `kafka:`
//! settings librdkafka reads (`security.protocol`, `sasl.mechanism(s)`, `sasl.username`,
//! `sasl.password`, `ssl.ca.location`, `ssl.certificate.location`, `ssl.key.location`), so a
//! worker joins its group over whatever its clients use. SASL mechanisms: PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, as Kafka implements it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value as Json;
use sha2::{Digest as _, Sha256, Sha512};

use super::ClusterError;

/// How the membership's connections secure themselves.
#[derive(Clone, Default)]
pub struct KafkaSecurity {
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Sasl>,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| s.mechanism))
            .finish()
    }
}

#[derive(Clone)]
pub(crate) struct Sasl {
    pub(crate) mechanism: Mechanism,
    pub(crate) username: String,
    pub(crate) password: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

fn text(settings: &BTreeMap<String, Json>, key: &str) -> Option<String> {
    settings.get(key).map(|v| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn setting_error(key: &str, message: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unsupported(format!("kafka.{key}: {message}"))
}

impl KafkaSecurity {
    /// From the worker's librdkafka settings for every client (`kafka:`).
    pub fn from_settings(settings: &BTreeMap<String, Json>) -> Result<Self, ClusterError> {
        let protocol = text(settings, "security.protocol")
            .unwrap_or_else(|| "plaintext".into())
            .to_ascii_lowercase();
        let (tls, sasl) = match protocol.as_str() {
            "plaintext" => (false, false),
            "ssl" => (true, false),
            "sasl_plaintext" => (false, true),
            "sasl_ssl" => (true, true),
            other => {
                return Err(setting_error(
                    "security.protocol",
                    format!(
                        "`{other}` is not a protocol; expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                    ),
                ));
            }
        };
        Ok(Self {
            tls: tls.then(|| tls_config(settings)).transpose()?,
            sasl: sasl.then(|| sasl_settings(settings)).transpose()?,
        })
    }

    pub(crate) fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.tls.as_ref()
    }

    pub(crate) fn sasl(&self) -> Option<&Sasl> {
        self.sasl.as_ref()
    }
}

fn sasl_settings(settings: &BTreeMap<String, Json>) -> Result<Sasl, ClusterError> {
    let mechanism = text(settings, "sasl.mechanisms")
        .or_else(|| text(settings, "sasl.mechanism"))
        .unwrap_or_else(|| "GSSAPI".into());
    let mechanism = match mechanism.trim().to_ascii_uppercase().as_str() {
        "PLAIN" => Mechanism::Plain,
        "SCRAM-SHA-256" => Mechanism::ScramSha256,
        "SCRAM-SHA-512" => Mechanism::ScramSha512,
        other => {
            return Err(setting_error(
                "sasl.mechanism",
                format!(
                    "`{other}` is not supported for the worker group's membership; expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ),
            ));
        }
    };
    let username = text(settings, "sasl.username")
        .ok_or_else(|| setting_error("sasl.username", "required with SASL"))?;
    let password = text(settings, "sasl.password")
        .ok_or_else(|| setting_error("sasl.password", "required with SASL"))?;
    Ok(Sasl {
        mechanism,
        username,
        password,
    })
}

fn read_certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|items| items.collect::<Result<Vec<_>, _>>())
        .map_err(|e| setting_error(key, format!("cannot read {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(setting_error(
            key,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn tls_config(
    settings: &BTreeMap<String, Json>,
) -> Result<Arc<rustls::ClientConfig>, ClusterError> {
    if text(settings, "ssl.endpoint.identification.algorithm")
        .is_some_and(|a| a.eq_ignore_ascii_case("none"))
    {
        return Err(setting_error(
            "ssl.endpoint.identification.algorithm",
            "`none` is not supported for the worker group's membership: give the broker a certificate for its advertised host name",
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    match text(settings, "ssl.ca.location") {
        Some(path) => {
            for cert in read_certificates("ssl.ca.location", Path::new(&path))? {
                roots
                    .add(cert)
                    .map_err(|e| setting_error("ssl.ca.location", e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setting_error("security.protocol", e))?
        .with_root_certificates(roots);
    let config = match (
        text(settings, "ssl.certificate.location"),
        text(settings, "ssl.key.location"),
    ) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates("ssl.certificate.location", Path::new(&cert))?;
            let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| {
                setting_error("ssl.key.location", format!("cannot read {key}: {e}"))
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| setting_error("ssl.certificate.location", e))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(setting_error(
                "ssl.certificate.location",
                "ssl.certificate.location and ssl.key.location go together",
            ));
        }
    };
    Ok(Arc::new(config))
}

/// The server name to check the broker's certificate against: the host of `host:port`.
pub(crate) fn server_name(address: &str) -> Result<ServerName<'static>, ClusterError> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| ClusterError::Protocol(format!("{host} is not a TLS server name: {e}")))
}

/// The SCRAM client of one authentication (RFC 5802).
pub(crate) struct Scram {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    nonce: String,
}

fn hmac(mechanism: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match mechanism {
        Mechanism::ScramSha512 => {
            let mut mac = <Hmac<Sha512>>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    }
}

/// RFC 5802's Hi(): PBKDF2 with the mechanism's HMAC and one block.
fn salted_password(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(mechanism, password.as_bytes(), &first);
    let mut out = u.clone();
    for _ in 1..iterations {
        u = hmac(mechanism, password.as_bytes(), &u);
        out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
    }
    out
}

fn auth_failed(message: impl Into<String>) -> ClusterError {
    ClusterError::Auth(message.into())
}

impl Scram {
    pub(crate) fn new(sasl: &Sasl) -> Result<Self, ClusterError> {
        let mut random = [0u8; 24];
        getrandom::fill(&mut random)
            .map_err(|e| ClusterError::Protocol(format!("no random nonce: {e}")))?;
        let nonce = B64.encode(random);
        let user = sasl.username.replace('=', "=3D").replace(',', "=2C");
        Ok(Self {
            mechanism: sasl.mechanism,
            password: sasl.password.clone(),
            client_first_bare: format!("n={user},r={nonce}"),
            nonce,
        })
    }

    /// The client-first message.
    pub(crate) fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message answering `server_first`, and the server signature expected.
    pub(crate) fn answer(&self, server_first: &[u8]) -> Result<(Vec<u8>, Vec<u8>), ClusterError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| auth_failed("the broker's SCRAM challenge is not text"))?;
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|part| part.strip_prefix(name))
                .ok_or_else(|| auth_failed(format!("the broker's SCRAM challenge lacks {name}")))
        };
        let nonce = field("r=")?;
        if !nonce.starts_with(&self.nonce) {
            return Err(auth_failed("the broker's SCRAM nonce does not extend ours"));
        }
        let salt = B64
            .decode(field("s=")?)
            .map_err(|_| auth_failed("the broker's SCRAM salt is not base64"))?;
        let iterations: u32 = field("i=")?
            .parse()
            .map_err(|_| auth_failed("the broker's SCRAM iteration count is not a number"))?;
        if iterations == 0 || iterations > 1_000_000 {
            return Err(auth_failed(format!(
                "the broker asks for {iterations} SCRAM iterations"
            )));
        }
        let salted = salted_password(self.mechanism, &self.password, &salt, iterations);
        let client_key = hmac(self.mechanism, &salted, b"Client Key");
        let stored_key = hash(self.mechanism, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = hmac(self.mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(self.mechanism, &salted, b"Server Key");
        let server_signature = hmac(self.mechanism, &server_key, auth_message.as_bytes());
        let last = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
        Ok((last, server_signature))
    }

    /// Checks the server-final message: the broker proves it knows the password too.
    pub(crate) fn verify(server_final: &[u8], expected: &[u8]) -> Result<(), ClusterError> {
        let text = String::from_utf8_lossy(server_final);
        if let Some(error) = text.strip_prefix("e=") {
            return Err(auth_failed(format!("the broker refused: {error}")));
        }
        let signature = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v.trim()).ok())
            .ok_or_else(|| auth_failed("the broker's SCRAM final message carries no signature"))?;
        if signature != expected {
            return Err(auth_failed(
                "the broker's SCRAM signature is wrong (it does not know the password)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example (user "user", password "pencil").
    #[test]
    fn scram_sha_256_matches_the_rfc_example() {
        let scram = Scram {
            mechanism: Mechanism::ScramSha256,
            password: "pencil".into(),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO".into(),
        };
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (last, server_signature) = scram.answer(server_first).unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        Scram::verify(
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            &server_signature,
        )
        .unwrap();
        assert!(Scram::verify(b"v=AAAA", &server_signature).is_err());
        assert!(Scram::verify(b"e=invalid-proof", &server_signature).is_err());
    }

    #[test]
    fn settings_map_to_tls_and_sasl_or_name_the_field() {
        let settings = |pairs: &[(&str, &str)]| -> BTreeMap<String, Json> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Json::from(*v)))
                .collect()
        };
        let plain = KafkaSecurity::from_settings(&settings(&[])).unwrap();
        assert!(plain.tls().is_none() && plain.sasl().is_none());
        let sasl = KafkaSecurity::from_settings(&settings(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "scram-sha-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
        ]))
        .unwrap();
        assert_eq!(sasl.sasl().unwrap().mechanism, Mechanism::ScramSha512);
        assert!(sasl.tls().is_none());
        let tls = KafkaSecurity::from_settings(&settings(&[("security.protocol", "ssl")])).unwrap();
        assert!(tls.tls().is_some() && tls.sasl().is_none());
        let missing = KafkaSecurity::from_settings(&settings(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
        ]))
        .unwrap_err();
        assert!(
            missing.to_string().contains("kafka.sasl.username"),
            "{missing}"
        );
        let gssapi =
            KafkaSecurity::from_settings(&settings(&[("security.protocol", "SASL_PLAINTEXT")]))
                .unwrap_err();
        assert!(gssapi.to_string().contains("GSSAPI"), "{gssapi}");
    }
}
