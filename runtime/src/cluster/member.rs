//! Group membership: join the worker group through the broker's group coordinator (protocol type
//! `connect`), lead the assignment when chosen, heartbeat, and rejoin when asked to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    SyncGroupRequest, join_group_request::JoinGroupRequestProtocol,
    leave_group_request::MemberIdentity, sync_group_request::SyncGroupRequestAssignment,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ClusterError;
use super::assignment::{MemberAssignment, MemberMetadata, PROTOCOL, Work};
use super::assignor::{AssignorState, assign};
use super::protocol::Connection;
use super::security::KafkaSecurity;

const JOIN_VERSION: i16 = 5;
const SYNC_VERSION: i16 = 3;
const HEARTBEAT_VERSION: i16 = 3;
const LEAVE_VERSION: i16 = 3;
const FIND_COORDINATOR_VERSION: i16 = 2;
/// Bound on connecting to a broker and finding the coordinator, so an unreachable broker
/// cannot keep a worker from noticing it has been out of the group too long.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
}

/// Membership settings, from the worker's `cluster` block.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub client_id: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub scheduled_rebalance_max_delay: Duration,
    /// TLS and SASL of the membership's connections (the worker's `kafka:` settings).
    pub security: KafkaSecurity,
}

/// What the membership loop tells the herder.
#[derive(Debug, Clone)]
pub enum MemberEvent {
    /// A rebalance completed: run `assignment.assigned`, stop `assignment.revoked`.
    Assigned {
        generation: i32,
        member_id: String,
        is_leader: bool,
        assignment: MemberAssignment,
    },
    /// A rebalance began: this worker (re)joins the group.
    Joining,
    /// This worker is no longer a member (fenced, or the coordinator was unreachable for longer
    /// than the session timeout): others may run its work now, so it must stop everything.
    Lost,
}

/// What the herder asks of the membership loop.
#[derive(Debug, Clone, Copy)]
pub enum MemberCommand {
    Rejoin,
}

/// The leader's view of the configuration, supplied by the herder.
#[async_trait]
pub trait LeaderContext: Send + Sync {
    /// All configured work, after reading the config topic to at least `min_offset`; with the
    /// offset it was read at.
    async fn configured(&self, min_offset: i64) -> Result<(Work, i64), ClusterError>;
}

enum Interrupt {
    /// Rejoin on the same connection.
    Rejoin,
    /// Find the coordinator again.
    Reconnect,
    Stop,
}

pub struct Member {
    config: MemberConfig,
    local: watch::Receiver<MemberMetadata>,
    leader: Arc<dyn LeaderContext>,
    /// Unbounded: the membership loop must never wait on the herder, or it stops heartbeating.
    events: mpsc::UnboundedSender<MemberEvent>,
    member_id: String,
    generation: i32,
    assignor: AssignorState,
    /// When this member last knew it belonged to the group.
    last_contact: Instant,
    holds_work: bool,
    /// The work the last assignment gave this member; reported when it rejoins (the herder
    /// may not have started all of it yet, but it is this member's).
    owned: Work,
}

impl Member {
    pub fn new(
        config: MemberConfig,
        local: watch::Receiver<MemberMetadata>,
        leader: Arc<dyn LeaderContext>,
        events: mpsc::UnboundedSender<MemberEvent>,
    ) -> Self {
        Self {
            config,
            local,
            leader,
            events,
            member_id: String::new(),
            generation: -1,
            assignor: AssignorState::default(),
            last_contact: Instant::now(),
            holds_work: false,
            owned: Work::default(),
        }
    }

    /// Runs until `cancel` fires, then leaves the group.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<MemberCommand>,
        cancel: CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let mut conn = match self.coordinator().await {
                Ok(conn) => {
                    backoff = Duration::from_millis(100);
                    conn
                }
                Err(e) => {
                    warn!(error = %e, "cannot reach the group coordinator; retrying");
                    self.check_session().await;
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            match self.session(&mut conn, &mut commands, &cancel).await {
                Interrupt::Stop => {
                    self.leave(&mut conn).await;
                    return;
                }
                Interrupt::Reconnect | Interrupt::Rejoin => {
                    self.check_session().await;
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = sleep(backoff) => {}
                    }
                }
            }
        }
    }

    /// Reports the membership lost once the coordinator has surely expelled this member.
    async fn check_session(&mut self) {
        if self.holds_work && self.last_contact.elapsed() > self.config.session_timeout {
            warn!(
                "out of contact with the group for longer than the session timeout; stopping all work"
            );
            self.holds_work = false;
            self.generation = -1;
            self.owned = Work::default();
            let _ = self.events.send(MemberEvent::Lost);
        }
    }

    async fn fenced(&mut self) {
        self.generation = -1;
        self.owned = Work::default();
        if self.holds_work {
            self.holds_work = false;
            let _ = self.events.send(MemberEvent::Lost);
        }
    }

    async fn coordinator(&self) -> Result<Connection, ClusterError> {
        find_coordinator(
            &self.config.bootstrap_servers,
            &self.config.group_id,
            &self.config.client_id,
            &self.config.security,
        )
        .await
    }

    /// Joins, syncs and heartbeats on one connection until it must reconnect or stop.
    async fn session(
        &mut self,
        conn: &mut Connection,
        commands: &mut mpsc::Receiver<MemberCommand>,
        cancel: &CancellationToken,
    ) -> Interrupt {
        loop {
            let delay = match self.join_and_sync(conn).await {
                Ok(delay) => delay,
                Err(Interrupt::Rejoin) => continue,
                Err(other) => return other,
            };
            let rejoin_at = (!delay.is_zero()).then(|| Instant::now() + delay);
            match self.heartbeat(conn, commands, cancel, rejoin_at).await {
                Interrupt::Rejoin => continue,
                other => return other,
            }
        }
    }

    async fn join_and_sync(&mut self, conn: &mut Connection) -> Result<Duration, Interrupt> {
        let _ = self.events.send(MemberEvent::Joining);
        // Owned: what the last assignment gave (perhaps not started yet) plus whatever still
        // runs here (revoked work being stopped): the leader must not hand either out.
        let mut metadata = self.local.borrow().clone();
        metadata.owned.extend(&self.owned);
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_session_timeout_ms(millis(self.config.session_timeout))
            .with_rebalance_timeout_ms(millis(self.config.rebalance_timeout))
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(StrBytes::from_static_str("connect"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(PROTOCOL))
                    .with_metadata(Bytes::from(
                        serde_json::to_vec(&metadata).unwrap_or_default(),
                    )),
            ]);
        let wait = self.config.rebalance_timeout + self.config.session_timeout;
        let response = match timeout(wait, conn.send(&request, JOIN_VERSION)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                warn!(error = %e, "JoinGroup failed");
                return Err(Interrupt::Reconnect);
            }
            Err(_) => {
                warn!("JoinGroup timed out");
                return Err(Interrupt::Reconnect);
            }
        };
        match response.error_code {
            code::NONE => {}
            code::MEMBER_ID_REQUIRED => {
                self.member_id = response.member_id.as_str().to_owned();
                return Err(Interrupt::Rejoin);
            }
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.member_id.clear();
                self.fenced().await;
                return Err(Interrupt::Rejoin);
            }
            code::REBALANCE_IN_PROGRESS => return Err(Interrupt::Rejoin),
            code::NOT_COORDINATOR
            | code::COORDINATOR_NOT_AVAILABLE
            | code::COORDINATOR_LOAD_IN_PROGRESS => return Err(Interrupt::Reconnect),
            other => {
                warn!(code = other, "JoinGroup refused");
                return Err(Interrupt::Reconnect);
            }
        }
        self.member_id = response.member_id.as_str().to_owned();
        let generation = response.generation_id;
        let is_leader = response.leader.as_str() == self.member_id;
        let assignments = if is_leader {
            let members: BTreeMap<String, MemberMetadata> = response
                .members
                .iter()
                .map(|m| {
                    let meta = serde_json::from_slice(&m.metadata).unwrap_or_else(|e| {
                        warn!(member = %m.member_id.as_str(), error = %e, "unreadable member metadata; treating it as owning nothing");
                        MemberMetadata::default()
                    });
                    (m.member_id.as_str().to_owned(), meta)
                })
                .collect();
            match self.lead(&members).await {
                Ok(assignments) => assignments,
                Err(e) => {
                    warn!(error = %e, "cannot compute the assignment; rejoining");
                    return Err(Interrupt::Reconnect);
                }
            }
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str("connect")))
            .with_protocol_name(Some(StrBytes::from_static_str(PROTOCOL)))
            .with_assignments(assignments);
        let response = match timeout(wait, conn.send(&request, SYNC_VERSION)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                warn!(error = %e, "SyncGroup failed");
                return Err(Interrupt::Reconnect);
            }
            Err(_) => return Err(Interrupt::Reconnect),
        };
        match response.error_code {
            code::NONE => {}
            code::REBALANCE_IN_PROGRESS => return Err(Interrupt::Rejoin),
            code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                self.member_id.clear();
                self.fenced().await;
                return Err(Interrupt::Rejoin);
            }
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => {
                return Err(Interrupt::Reconnect);
            }
            other => {
                warn!(code = other, "SyncGroup refused");
                return Err(Interrupt::Reconnect);
            }
        }
        let assignment: MemberAssignment = match serde_json::from_slice(&response.assignment) {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "unreadable assignment; rejoining");
                return Err(Interrupt::Rejoin);
            }
        };
        let delay = Duration::from_millis(assignment.delay_ms);
        info!(
            generation,
            leader = %assignment.leader_url,
            connectors = assignment.assigned.connectors.len(),
            tasks = assignment.assigned.tasks.len(),
            revoked = assignment.revoked.len(),
            delay_ms = assignment.delay_ms,
            "joined the worker group"
        );
        self.generation = generation;
        self.last_contact = Instant::now();
        self.holds_work = true;
        self.owned = assignment.assigned.clone();
        let event = MemberEvent::Assigned {
            generation,
            member_id: self.member_id.clone(),
            is_leader,
            assignment,
        };
        if self.events.send(event).is_err() {
            return Err(Interrupt::Stop);
        }
        Ok(delay)
    }

    async fn lead(
        &mut self,
        members: &BTreeMap<String, MemberMetadata>,
    ) -> Result<Vec<SyncGroupRequestAssignment>, ClusterError> {
        let newest = members.values().map(|m| m.config_offset).max().unwrap_or(0);
        let (configured, config_offset) = self.leader.configured(newest).await?;
        let round = assign(
            members,
            &configured,
            &mut self.assignor,
            self.config.scheduled_rebalance_max_delay,
            Instant::now(),
        );
        let leader_url = members
            .get(&self.member_id)
            .map(|m| m.url.clone())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(round.shares.len());
        for (id, share) in round.shares {
            let assignment = MemberAssignment {
                leader: self.member_id.clone(),
                leader_url: leader_url.clone(),
                config_offset,
                assigned: share.assigned,
                revoked: share.revoked,
                delay_ms: round.delay.as_millis() as u64,
            };
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(id))
                    .with_assignment(Bytes::from(
                        serde_json::to_vec(&assignment).unwrap_or_default(),
                    )),
            );
        }
        Ok(out)
    }

    async fn heartbeat(
        &mut self,
        conn: &mut Connection,
        commands: &mut mpsc::Receiver<MemberCommand>,
        cancel: &CancellationToken,
        rejoin_at: Option<Instant>,
    ) -> Interrupt {
        let mut next = Instant::now() + self.config.heartbeat_interval;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Interrupt::Stop,
                command = commands.recv() => match command {
                    Some(MemberCommand::Rejoin) => return Interrupt::Rejoin,
                    None => return Interrupt::Stop,
                },
                _ = sleep_until(rejoin_at.unwrap_or(next)), if rejoin_at.is_some() => {
                    if rejoin_at.is_some_and(|at| at <= Instant::now()) {
                        debug!("scheduled rebalance delay passed; rejoining");
                        return Interrupt::Rejoin;
                    }
                }
                _ = sleep_until(next) => {
                    next = Instant::now() + self.config.heartbeat_interval;
                    let request = HeartbeatRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
                        .with_generation_id(self.generation)
                        .with_member_id(StrBytes::from_string(self.member_id.clone()));
                    let response = match timeout(self.config.session_timeout, conn.send(&request, HEARTBEAT_VERSION)).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(e)) => {
                            warn!(error = %e, "heartbeat failed");
                            return Interrupt::Reconnect;
                        }
                        Err(_) => return Interrupt::Reconnect,
                    };
                    match response.error_code {
                        code::NONE => self.last_contact = Instant::now(),
                        code::REBALANCE_IN_PROGRESS => {
                            self.last_contact = Instant::now();
                            return Interrupt::Rejoin;
                        }
                        code::UNKNOWN_MEMBER_ID | code::ILLEGAL_GENERATION => {
                            warn!(code = response.error_code, "fenced out of the worker group; stopping all work and rejoining");
                            if response.error_code == code::UNKNOWN_MEMBER_ID {
                                self.member_id.clear();
                            }
                            self.fenced().await;
                            return Interrupt::Rejoin;
                        }
                        other => {
                            warn!(code = other, "heartbeat refused");
                            return Interrupt::Reconnect;
                        }
                    }
                }
            }
        }
    }

    async fn leave(&mut self, conn: &mut Connection) {
        if self.member_id.is_empty() {
            return;
        }
        let request = LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(self.config.group_id.clone())))
            .with_members(vec![
                MemberIdentity::default()
                    .with_member_id(StrBytes::from_string(self.member_id.clone())),
            ]);
        match timeout(Duration::from_secs(5), conn.send(&request, LEAVE_VERSION)).await {
            Ok(Ok(r)) if r.error_code == code::NONE => info!("left the worker group"),
            Ok(Ok(r)) => warn!(code = r.error_code, "LeaveGroup refused"),
            Ok(Err(e)) => warn!(error = %e, "LeaveGroup failed"),
            Err(_) => warn!("LeaveGroup timed out"),
        }
    }
}

/// Connects to the group coordinator of `group_id`, trying each bootstrap server; every step is
/// time-bounded.
pub(crate) async fn find_coordinator(
    bootstrap_servers: &str,
    group_id: &str,
    client_id: &str,
    security: &KafkaSecurity,
) -> Result<Connection, ClusterError> {
    let mut last = None;
    for address in bootstrap_servers.split(',') {
        let address = address.trim();
        let mut conn = match timeout(
            DISCOVERY_TIMEOUT,
            Connection::open(address, client_id, security),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            // Wrong credentials or certificates fail the same way on every server.
            Ok(Err(e @ (ClusterError::Auth(_) | ClusterError::Tls { .. }))) => return Err(e),
            Ok(Err(e)) => {
                last = Some(e);
                continue;
            }
            Err(_) => {
                last = Some(ClusterError::Protocol(format!(
                    "connecting to {address} timed out"
                )));
                continue;
            }
        };
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group_id.to_owned()))
            .with_key_type(0);
        let response = match timeout(
            DISCOVERY_TIMEOUT,
            conn.send(&request, FIND_COORDINATOR_VERSION),
        )
        .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                last = Some(e);
                continue;
            }
            Err(_) => {
                last = Some(ClusterError::Protocol(format!(
                    "FindCoordinator to {address} timed out"
                )));
                continue;
            }
        };
        if response.error_code != code::NONE {
            return Err(ClusterError::Broker {
                request: "FindCoordinator",
                code: response.error_code,
            });
        }
        let coordinator = format!("{}:{}", response.host.as_str(), response.port);
        debug!(%coordinator, "found the group coordinator");
        return if coordinator == conn.address() {
            Ok(conn)
        } else {
            timeout(
                DISCOVERY_TIMEOUT,
                Connection::open(&coordinator, client_id, security),
            )
            .await
            .map_err(|_| ClusterError::Protocol(format!("connecting to {coordinator} timed out")))?
        };
    }
    Err(last.unwrap_or_else(|| ClusterError::Protocol("no bootstrap servers".into())))
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
