//! The UDP task that speaks GWMP v2 with any number of packet forwarders.
//!
//! [`Server::bind`] opens the socket and returns the [`Server`] (run it with
//! [`Server::run`], usually in its own task), a [`Handle`] to command it and
//! the bounded receiver of [`Event`]s. The task:
//!
//! - answers every PUSH_DATA with a PUSH_ACK and every PULL_DATA with a
//!   PULL_ACK (same token), remembering per gateway EUI the address of its
//!   latest PULL_DATA — the only address a forwarder behind a NAT can be
//!   reached at;
//! - converts each `rxpk` to an [`UplinkFrame`](chirpstack_api::gw::UplinkFrame),
//!   recognises beacons in it ([`beacon::observe`]) and emits
//!   [`Event::BeaconHeard`]; a gateway's status emits [`Event::StatusReported`].
//!   Beacons this server transmitted, through any forwarder, are the
//!   gateway's own and their receptions are ignored: one meshd is one
//!   gateway identity, whatever number of concentrators it drives, so one
//!   concentrator hearing another's beacon would be a self-witness;
//! - sends [`Handle::transmit`]'s frames as PULL_RESP with a fresh token and
//!   answers the caller when the TX_ACK with that token comes back;
//! - counts every datagram or frame it drops in [`Metrics`], by reason, and
//!   never panics on what a forwarder sends.
//!
//! Queues are bounded: events beyond [`Config::events_capacity`] are dropped
//! (counted as `events_full`) rather than slowing the socket, commands wait
//! for room, and at most [`Config::max_pending_tx`] transmissions await their
//! TX_ACK (the oldest is given up when a new one needs room; a caller that stopped
//! waiting frees its place). The task stops
//! when every [`Handle`] is dropped. Timeouts are the caller's: wrap
//! [`Handle::transmit`] in `tokio::time::timeout`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;

use meshd_protocol::message::BeaconId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::{DecodeError, Eui64, Packet, PullRespBody, Stat, TxAckOk, TxError, Txpk};
use crate::ingest::beacon::{self, Observation};

/// Largest UDP payload over IPv4 (65,535 − 8 UDP − 20 IP header bytes). The
/// reference forwarder's PUSH_DATA buffer is larger (255 frames per fetch),
/// so no smaller default would be safe for a busy concentrator.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Settings of the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on. Default `0.0.0.0:1700`, the packet forwarder's
    /// default `serv_port_up`/`serv_port_down`.
    pub bind: SocketAddr,
    /// Datagrams longer than this are dropped as `oversized`, bytes. Default
    /// [`MAX_UDP_PAYLOAD`].
    pub max_datagram_len: usize,
    /// Events buffered for the consumer before new ones are dropped. Default
    /// 1024: a minute of beacons for a gateway hearing a few hundred
    /// neighbours, and a few seconds of any burst.
    pub events_capacity: usize,
    /// Transmissions awaiting their TX_ACK. Default 64: beacons go out once
    /// per window, so more pending acks than this means lost TX_ACKs.
    pub max_pending_tx: usize,
    /// Own beacon ids remembered to ignore their reception. Default 16: a
    /// gateway beacons a few times per epoch.
    pub own_beacons_kept: usize,
    /// First PULL_RESP token; tokens then count up. Default 0. The protocol
    /// asks for random tokens only so that acks match requests, which
    /// distinct tokens per gateway achieve; a seed from config keeps runs
    /// reproducible.
    pub first_token: u16,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: SocketAddr::from(([0, 0, 0, 0], 1700)),
            max_datagram_len: MAX_UDP_PAYLOAD,
            events_capacity: 1024,
            max_pending_tx: 64,
            own_beacons_kept: 16,
            first_token: 0,
        }
    }
}

/// Commands buffered between [`Handle`]s and the task. 16: callers wait for
/// room, and a gateway issues a command per beacon.
const COMMANDS_CAPACITY: usize = 16;

/// What the server reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A forwarder received a beacon of another gateway.
    BeaconHeard {
        /// The forwarder that heard it.
        gateway: Eui64,
        /// The beacon and the witness report's radio fields.
        observation: Observation,
    },
    /// A forwarder reported its status.
    StatusReported {
        /// The forwarder.
        gateway: Eui64,
        /// Its status.
        stat: Stat,
    },
}

/// Why a transmission failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransmitError {
    /// No PULL_DATA was received from this gateway yet: no address to send to.
    #[error("gateway {0} has not sent a PULL_DATA yet")]
    UnknownGateway(Eui64),
    /// The forwarder rejected it ([`TxError::is_retryable`] says whether to retry).
    #[error("the forwarder rejected the transmission: {0}")]
    Rejected(TxError),
    /// The PULL_RESP could not be sent.
    #[error("sending the PULL_RESP failed: {0}")]
    Send(String),
    /// Given up waiting: newer transmissions needed its place.
    #[error("no TX_ACK before the pending transmissions were full")]
    NoAck,
    /// The server task has stopped.
    #[error("the packet forwarder server has stopped")]
    Stopped,
}

/// Why a datagram or a frame was dropped: the `reason` label of
/// [`Metrics::dropped`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dropped {
    /// Longer than [`Config::max_datagram_len`].
    Oversized,
    /// Shorter than its header.
    TruncatedHeader,
    /// Not protocol version 2.
    WrongVersion,
    /// Unknown identifier byte.
    UnknownIdentifier,
    /// Invalid JSON body.
    MalformedJson,
    /// PUSH_ACK, PULL_ACK or PULL_RESP: only a server sends those.
    DownstreamIdentifier,
    /// A TX_ACK whose token matches no pending transmission.
    UnmatchedTxAck,
    /// An `rxpk` with `stat` −1.
    BadCrc,
    /// An `rxpk` with invalid data, frequency, modulation or signal.
    InvalidRxpk,
    /// A frame that is not a beacon.
    OtherFrame,
    /// A beacon frame without CRC.
    NoCrc,
    /// This gateway's own beacon.
    OwnBeacon,
    /// A beacon whose metadata does not fit a witness report.
    InvalidMetadata,
    /// The event queue was full.
    EventsFull,
}

impl Dropped {
    /// Every reason.
    pub const ALL: [Dropped; 14] = [
        Dropped::Oversized,
        Dropped::TruncatedHeader,
        Dropped::WrongVersion,
        Dropped::UnknownIdentifier,
        Dropped::MalformedJson,
        Dropped::DownstreamIdentifier,
        Dropped::UnmatchedTxAck,
        Dropped::BadCrc,
        Dropped::InvalidRxpk,
        Dropped::OtherFrame,
        Dropped::NoCrc,
        Dropped::OwnBeacon,
        Dropped::InvalidMetadata,
        Dropped::EventsFull,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Oversized => "oversized",
            Dropped::TruncatedHeader => "truncated_header",
            Dropped::WrongVersion => "wrong_version",
            Dropped::UnknownIdentifier => "unknown_identifier",
            Dropped::MalformedJson => "malformed_json",
            Dropped::DownstreamIdentifier => "downstream_identifier",
            Dropped::UnmatchedTxAck => "unmatched_tx_ack",
            Dropped::BadCrc => "bad_crc",
            Dropped::InvalidRxpk => "invalid_rxpk",
            Dropped::OtherFrame => "other_frame",
            Dropped::NoCrc => "no_crc",
            Dropped::OwnBeacon => "own_beacon",
            Dropped::InvalidMetadata => "invalid_metadata",
            Dropped::EventsFull => "events_full",
        }
    }
}

impl From<&DecodeError> for Dropped {
    fn from(error: &DecodeError) -> Dropped {
        match error {
            DecodeError::TruncatedHeader { .. } => Dropped::TruncatedHeader,
            DecodeError::WrongVersion(_) => Dropped::WrongVersion,
            DecodeError::UnknownIdentifier(_) => Dropped::UnknownIdentifier,
            DecodeError::MalformedJson(_) => Dropped::MalformedJson,
        }
    }
}

impl From<beacon::NotBeacon> for Dropped {
    fn from(reason: beacon::NotBeacon) -> Dropped {
        match reason {
            beacon::NotBeacon::NoCrc => Dropped::NoCrc,
            beacon::NotBeacon::OwnBeacon => Dropped::OwnBeacon,
            beacon::NotBeacon::InvalidMetadata => Dropped::InvalidMetadata,
            _ => Dropped::OtherFrame,
        }
    }
}

type ReasonLabel = [(&'static str, &'static str); 1];

/// The server's counters. Clones share them; [`Metrics::register`] adds them
/// to a registry (names get the registry's prefix).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Datagrams received, valid or not.
    pub datagrams: Counter,
    /// `rxpk` frames converted to uplink frames.
    pub uplinks: Counter,
    /// Beacons heard (events emitted or dropped for a full queue).
    pub beacons: Counter,
    /// PULL_RESP sent.
    pub transmissions: Counter,
    /// TX_ACK reporting success.
    pub tx_acks_ok: Counter,
    /// TX_ACK reporting an error.
    pub tx_acks_error: Counter,
    /// Datagrams and frames dropped, by [`Dropped`] reason.
    pub dropped: Family<ReasonLabel, Counter>,
}

impl Metrics {
    /// Registers every counter into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "semtech_udp_datagrams",
            "Datagrams received from packet forwarders",
            self.datagrams.clone(),
        );
        registry.register(
            "semtech_udp_uplinks",
            "Received frames converted to uplink frames",
            self.uplinks.clone(),
        );
        registry.register("semtech_udp_beacons", "Beacons of other gateways heard", self.beacons.clone());
        registry.register(
            "semtech_udp_transmissions",
            "PULL_RESP datagrams sent",
            self.transmissions.clone(),
        );
        registry.register("semtech_udp_tx_acks_ok", "TX_ACK reporting success", self.tx_acks_ok.clone());
        registry.register(
            "semtech_udp_tx_acks_error",
            "TX_ACK reporting an error",
            self.tx_acks_error.clone(),
        );
        registry.register(
            "semtech_udp_dropped",
            "Datagrams and frames dropped, by reason",
            self.dropped.clone(),
        );
    }

    /// How many were dropped for `reason`.
    pub fn dropped(&self, reason: Dropped) -> u64 {
        self.dropped.get_or_create(&[("reason", reason.as_str())]).get()
    }

    fn drop(&self, reason: Dropped) {
        self.dropped.get_or_create(&[("reason", reason.as_str())]).inc();
    }
}

enum Command {
    Transmit { gateway: Eui64, txpk: Box<Txpk>, reply: oneshot::Sender<Result<TxAckOk, TransmitError>> },
    OwnBeacon(BeaconId),
    Gateways(oneshot::Sender<Vec<Eui64>>),
}

/// Commands the server task; cheap to clone. The task stops when every
/// handle is dropped.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Transmit { gateway, .. } => write!(f, "Transmit({gateway})"),
            Command::OwnBeacon(id) => write!(f, "OwnBeacon({id:?})"),
            Command::Gateways(_) => write!(f, "Gateways"),
        }
    }
}

impl Handle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends `txpk` to `gateway` in a PULL_RESP and waits for its TX_ACK. A
    /// beacon frame's id is remembered as this gateway's own.
    pub async fn transmit(&self, gateway: Eui64, txpk: Txpk) -> Result<TxAckOk, TransmitError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Transmit { gateway, txpk: Box::new(txpk), reply };
        self.commands.send(command).await.map_err(|_| TransmitError::Stopped)?;
        answer.await.unwrap_or(Err(TransmitError::NoAck))
    }

    /// Remembers `id` as one of this gateway's own beacons (transmitted by
    /// other means than [`Handle::transmit`]), so hearing it is ignored.
    pub async fn own_beacon(&self, id: BeaconId) -> Result<(), TransmitError> {
        self.commands.send(Command::OwnBeacon(id)).await.map_err(|_| TransmitError::Stopped)
    }

    /// The forwarders that can be sent to (those that sent a PULL_DATA),
    /// in EUI order.
    pub async fn gateways(&self) -> Result<Vec<Eui64>, TransmitError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Gateways(reply)).await.map_err(|_| TransmitError::Stopped)?;
        answer.await.map_err(|_| TransmitError::Stopped)
    }
}

type Pending = oneshot::Sender<Result<TxAckOk, TransmitError>>;

/// The server task's state; drive it with [`Server::run`].
#[derive(Debug)]
pub struct Server {
    config: Config,
    socket: UdpSocket,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    pull_addrs: HashMap<Eui64, SocketAddr>,
    pending: HashMap<(Eui64, u16), Pending>,
    pending_order: VecDeque<(Eui64, u16)>,
    own_beacons: VecDeque<BeaconId>,
    next_token: u16,
}

impl Server {
    /// Binds the socket. Returns the server to run, a handle, and the events.
    pub async fn bind(
        config: Config,
        metrics: Metrics,
    ) -> io::Result<(Server, Handle, mpsc::Receiver<Event>)> {
        let socket = UdpSocket::bind(config.bind).await?;
        let local_addr = socket.local_addr()?;
        let (commands_tx, commands) = mpsc::channel(COMMANDS_CAPACITY);
        let (events, events_rx) = mpsc::channel(config.events_capacity.max(1));
        let server = Server {
            next_token: config.first_token,
            config,
            socket,
            metrics,
            commands,
            events,
            pull_addrs: HashMap::new(),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            own_beacons: VecDeque::new(),
        };
        Ok((server, Handle { commands: commands_tx, local_addr }, events_rx))
    }

    /// Runs until every [`Handle`] is dropped. Errors of single datagrams are
    /// counted, not returned; only a failing socket ends the task with an error.
    pub async fn run(mut self) -> io::Result<()> {
        // One byte more than the limit tells an oversized datagram from one
        // of exactly the limit.
        let mut buffer = vec![0u8; self.config.max_datagram_len.saturating_add(1).min(MAX_UDP_PAYLOAD + 1)];
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command).await,
                    None => return Ok(()),
                },
                received = self.socket.recv_from(&mut buffer) => {
                    let (len, from) = match received {
                        Ok(received) => received,
                        // ICMP port unreachable from an earlier send surfaces
                        // here on some systems; it concerns that peer only.
                        Err(error) if error.kind() == io::ErrorKind::ConnectionReset => continue,
                        Err(error) => return Err(error),
                    };
                    self.metrics.datagrams.inc();
                    if len > self.config.max_datagram_len {
                        self.metrics.drop(Dropped::Oversized);
                        continue;
                    }
                    self.handle_datagram(&buffer[..len], from).await;
                }
            }
        }
    }

    async fn handle_command(&mut self, command: Command) {
        match command {
            Command::OwnBeacon(id) => self.remember_own(id),
            Command::Gateways(reply) => {
                let mut gateways: Vec<Eui64> = self.pull_addrs.keys().copied().collect();
                gateways.sort();
                let _ = reply.send(gateways);
            }
            Command::Transmit { gateway, txpk, reply } => {
                let Some(addr) = self.pull_addrs.get(&gateway).copied() else {
                    let _ = reply.send(Err(TransmitError::UnknownGateway(gateway)));
                    return;
                };
                if let Some(id) = txpk.payload().as_deref().and_then(beacon::parse) {
                    self.remember_own(id);
                }
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1);
                let datagram = Packet::PullResp { token, body: PullRespBody { txpk: *txpk } }.encode();
                if let Err(error) = self.socket.send_to(&datagram, addr).await {
                    let _ = reply.send(Err(TransmitError::Send(error.to_string())));
                    return;
                }
                self.metrics.transmissions.inc();
                // Callers that gave up waiting (a timeout) free their place.
                self.pending.retain(|_, reply| !reply.is_closed());
                let pending = &self.pending;
                self.pending_order.retain(|key| pending.contains_key(key));
                while self.pending_order.len() >= self.config.max_pending_tx.max(1) {
                    // Dropping the sender answers the waiting caller with NoAck.
                    if let Some(oldest) = self.pending_order.pop_front() {
                        self.pending.remove(&oldest);
                    }
                }
                if let Some(stale) = self.pending.insert((gateway, token), reply) {
                    // The token wrapped around onto an unacknowledged one.
                    let _ = stale.send(Err(TransmitError::NoAck));
                } else {
                    self.pending_order.push_back((gateway, token));
                }
            }
        }
    }

    fn remember_own(&mut self, id: BeaconId) {
        if self.own_beacons.contains(&id) {
            return;
        }
        if self.own_beacons.len() >= self.config.own_beacons_kept.max(1) {
            self.own_beacons.pop_front();
        }
        self.own_beacons.push_back(id);
    }

    async fn handle_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        let packet = match Packet::decode(bytes) {
            Ok(packet) => packet,
            Err(error) => {
                tracing::debug!(%from, %error, "dropped a packet forwarder datagram");
                self.metrics.drop(Dropped::from(&error));
                return;
            }
        };
        match packet {
            Packet::PushData { token, gateway, body } => {
                self.send(&Packet::PushAck { token }, from).await;
                if let Some(stat) = body.stat {
                    self.emit(Event::StatusReported { gateway, stat });
                }
                for rxpk in &body.rxpk {
                    let frame = match rxpk.to_uplink(gateway) {
                        Ok(frame) => frame,
                        Err(super::RxpkError::BadCrc) => {
                            self.metrics.drop(Dropped::BadCrc);
                            continue;
                        }
                        Err(_) => {
                            self.metrics.drop(Dropped::InvalidRxpk);
                            continue;
                        }
                    };
                    self.metrics.uplinks.inc();
                    let own = self.own_beacons.make_contiguous();
                    match beacon::observe(&frame, own) {
                        Ok(observation) => {
                            self.metrics.beacons.inc();
                            self.emit(Event::BeaconHeard { gateway, observation });
                        }
                        Err(reason) => self.metrics.drop(Dropped::from(reason)),
                    }
                }
            }
            Packet::PullData { token, gateway } => {
                self.pull_addrs.insert(gateway, from);
                self.send(&Packet::PullAck { token }, from).await;
            }
            Packet::TxAck { token, gateway, result } => {
                let Some(reply) = self.pending.remove(&(gateway, token)) else {
                    self.metrics.drop(Dropped::UnmatchedTxAck);
                    return;
                };
                self.pending_order.retain(|key| *key != (gateway, token));
                match &result {
                    Ok(_) => self.metrics.tx_acks_ok.inc(),
                    Err(_) => self.metrics.tx_acks_error.inc(),
                };
                let _ = reply.send(result.map_err(TransmitError::Rejected));
            }
            Packet::PushAck { .. } | Packet::PullAck { .. } | Packet::PullResp { .. } => {
                self.metrics.drop(Dropped::DownstreamIdentifier);
            }
        }
    }

    fn emit(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            self.metrics.drop(Dropped::EventsFull);
        }
    }

    async fn send(&self, packet: &Packet, to: SocketAddr) {
        if let Err(error) = self.socket.send_to(&packet.encode(), to).await {
            tracing::debug!(%to, %error, "could not answer a packet forwarder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported_with_a_reason_label() {
        let metrics = Metrics::default();
        let mut registry = Registry::with_prefix("meshd");
        metrics.register(&mut registry);
        metrics.drop(Dropped::BadCrc);
        metrics.datagrams.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains(r#"meshd_semtech_udp_dropped_total{reason="bad_crc"} 1"#), "{text}");
        assert!(text.contains("meshd_semtech_udp_datagrams_total 1"), "{text}");
        assert_eq!(metrics.dropped(Dropped::BadCrc), 1);
        assert_eq!(metrics.dropped(Dropped::Oversized), 0);
    }
}
