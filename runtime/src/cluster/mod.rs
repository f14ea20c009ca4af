//! Distributed mode's group membership: workers find each other through the broker's group
//! coordinator and the leader hands out connectors and tasks.

mod assignment;
mod assignor;
mod member;
mod offsets;
mod protocol;
mod security;

pub use assignment::{MemberAssignment, MemberMetadata, TaskId, Work};
pub use assignor::{AssignorState, Round, Share, assign, configured_work};
pub use member::{LeaderContext, Member, MemberCommand, MemberConfig, MemberEvent};
pub use offsets::delete_committed_offsets;
pub use security::KafkaSecurity;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to {address} failed: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode or decode a Kafka message: {0}")]
    Codec(String),
    #[error("{request} refused with Kafka error code {code}")]
    Broker { request: &'static str, code: i16 },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Auth(String),
    #[error("TLS with Kafka at {address} failed: {reason}")]
    Tls { address: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("config store: {0}")]
    Store(String),
}

impl ClusterError {
    fn codec(e: impl std::fmt::Display) -> Self {
        Self::Codec(e.to_string())
    }
}
