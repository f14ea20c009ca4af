//! A minimal Kafka protocol connection for group membership: one request at a time over TCP,
//! messages encoded and decoded by the `kafka-protocol` crate.

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::ClusterError;

/// Largest response accepted (a JoinGroup reply carries every member's metadata).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

pub(crate) struct Connection {
    address: String,
    stream: BufReader<TcpStream>,
    correlation_id: i32,
    client_id: StrBytes,
}

impl Connection {
    pub(crate) async fn open(address: &str, client_id: &str) -> Result<Self, ClusterError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| ClusterError::Connect {
                address: address.to_owned(),
                source,
            })?;
        stream.set_nodelay(true).ok();
        Ok(Self {
            address: address.to_owned(),
            stream: BufReader::new(stream),
            correlation_id: 0,
            client_id: StrBytes::from_string(client_id.to_owned()),
        })
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
