//! A minimal Kafka protocol connection for group membership: one request at a time over TCP (or
//! TLS), SASL-authenticated when the worker's settings ask for it, messages encoded and decoded
//! by the `kafka-protocol` crate.

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::ClusterError;
use super::security::{KafkaSecurity, Mechanism, Sasl, Scram, server_name};

/// A byte stream to a broker: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Largest response accepted (a JoinGroup reply carries every member's metadata).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

pub(crate) struct Connection {
    address: String,
    stream: BufReader<Box<dyn Stream>>,
    correlation_id: i32,
    client_id: StrBytes,
}

impl Connection {
    pub(crate) async fn open(
        address: &str,
        client_id: &str,
        security: &KafkaSecurity,
    ) -> Result<Self, ClusterError> {
        let connect_error = |source| ClusterError::Connect {
            address: address.to_owned(),
            source,
        };
        let tcp = TcpStream::connect(address).await.map_err(connect_error)?;
        tcp.set_nodelay(true).ok();
        let stream: Box<dyn Stream> = match security.tls() {
            None => Box::new(tcp),
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                let tls = connector
                    .connect(server_name(address)?, tcp)
                    .await
                    .map_err(|e| ClusterError::Tls {
                        address: address.to_owned(),
                        reason: e.to_string(),
                    })?;
                Box::new(tls)
            }
        };
        let mut conn = Self {
            address: address.to_owned(),
            stream: BufReader::new(stream),
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id.to_owned()),
        };
        if let Some(sasl) = security.sasl() {
            conn.authenticate(sasl).await.map_err(|e| match e {
                ClusterError::Auth(reason) => ClusterError::Auth(format!(
                    "cannot authenticate to Kafka at {address} with SASL {} as {}: {reason}",
                    sasl.mechanism.name(),
                    sasl.username
                )),
                other => other,
            })?;
        }
        Ok(conn)
    }

    /// SASL handshake and authentication (KIP-152), before any other request.
    async fn authenticate(&mut self, sasl: &Sasl) -> Result<(), ClusterError> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name()));
        let offered = self.send(&handshake, 1).await?;
        if offered.error_code != 0 {
            let names: Vec<&str> = offered.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(ClusterError::Auth(format!(
                "the broker does not enable {} (it offers {})",
                sasl.mechanism.name(),
                names.join(", ")
            )));
        }
        match sasl.mechanism {
            Mechanism::Plain => {
                let token = format!("\0{}\0{}", sasl.username, sasl.password);
                self.sasl_round(token.into_bytes()).await?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let scram = Scram::new(sasl)?;
                let challenge = self.sasl_round(scram.first()).await?;
                let (last, expected) = scram.answer(&challenge)?;
                let outcome = self.sasl_round(last).await?;
                Scram::verify(&outcome, &expected)?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate exchange; returns the broker's bytes.
    async fn sasl_round(&mut self, bytes: Vec<u8>) -> Result<bytes::Bytes, ClusterError> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(bytes.into());
        let response = self.send(&request, 1).await?;
        if response.error_code != 0 {
            let message = response
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_else(|| format!("error code {}", response.error_code));
            return Err(ClusterError::Auth(message));
        }
        Ok(response.auth_bytes)
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Sends `request` at `version` and waits for its response.
    pub(crate) async fn send<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClusterError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::with_capacity(256);
        frame.put_i32(0);
        header
            .encode(&mut frame, R::header_version(version))
            .map_err(ClusterError::codec)?;
        request
            .encode(&mut frame, version)
            .map_err(ClusterError::codec)?;
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let io = |source| ClusterError::Io {
            address: self.address.clone(),
            source,
        };
        self.stream.get_mut().write_all(&frame).await.map_err(io)?;
        let length = self
            .stream
            .read_i32()
            .await
            .map_err(|source| ClusterError::Io {
                address: self.address.clone(),
                source,
            })?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length > MAX_RESPONSE {
            return Err(ClusterError::Protocol(format!(
                "response of {length} bytes from {} is too large",
                self.address
            )));
        }
        let mut body = vec![0; length];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|source| ClusterError::Io {
                address: self.address.clone(),
                source,
            })?;
        let mut body = bytes::Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(ClusterError::codec)?;
        if header.correlation_id != self.correlation_id {
            return Err(ClusterError::Protocol(format!(
                "response correlation id {} does not match request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        let response = R::Response::decode(&mut body, version).map_err(ClusterError::codec)?;
        if body.has_remaining() {
            tracing::debug!(remaining = body.remaining(), "response had trailing bytes");
        }
        Ok(response)
    }
}
