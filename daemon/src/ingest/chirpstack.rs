//! The ChirpStack MQTT forwarder: frames as protobuf `gw` messages on an
//! MQTT broker (ChirpStack Gateway Bridge / ChirpStack MQTT Forwarder).
//!
//! For each configured gateway id the task subscribes to
//! `{prefix}/gateway/{id}/event/up` ([`UplinkFrame`]) and
//! `{prefix}/gateway/{id}/event/ack` ([`DownlinkTxAck`]), and publishes
//! beacons to `{prefix}/gateway/{id}/command/down` ([`DownlinkFrame`]). Like
//! the Semtech server it recognises beacons in uplinks
//! ([`beacon::observe`]), ignores its own (any gateway's transmission is the
//! daemon's own), and counts what it drops by reason in [`Metrics`]; a
//! message that does not decode is counted and ignored.
//!
//! [`Forwarder::connect`] returns the [`Forwarder`] (run it with
//! [`Forwarder::run`]), a [`Handle`] and the bounded receiver of
//! [`Event`]s. A lost broker connection is retried with
//! [`Backoff`]; subscriptions are renewed on every connection.

use std::collections::{HashMap, VecDeque};

use chirpstack_api::gw::{
    DownlinkFrame, DownlinkFrameItem, DownlinkTxAck, DownlinkTxInfo, LoraModulationInfo, Modulation, Timing,
    TxAckStatus, UplinkFrame, modulation, timing,
};
use chirpstack_api::prost::Message as _;
use meshd_protocol::message::{BeaconId, DataRate};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rumqttc::{AsyncClient, EventLoop, Incoming, MqttOptions, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::beacon::{self, Observation};
use super::mqtt::{Backoff, REQUESTS_CAPACITY};
use super::semtech::{Eui64, TxAckOk, TxError};

/// Settings of the forwarder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Topic prefix (ChirpStack's `topic_prefix`, e.g. `eu868`).
    pub prefix: String,
    /// The gateways to listen to and transmit through.
    pub gateways: Vec<Eui64>,
    /// Events buffered before new ones are dropped (`events_full`).
    pub events_capacity: usize,
    /// Transmissions awaiting their ack; the oldest is given up beyond.
    pub max_pending_tx: usize,
    /// Own beacon ids remembered to ignore their reception.
    pub own_beacons_kept: usize,
    /// First downlink id; ids then count up (reproducible runs).
    pub first_downlink_id: u32,
}

impl Config {
    /// Defaults as the Semtech server's (see
    /// [`semtech::server::Config`](super::semtech::server::Config)) for
    /// `prefix` and `gateways`.
    pub fn new(prefix: impl Into<String>, gateways: Vec<Eui64>) -> Config {
        let defaults = super::semtech::server::Config::default();
        Config {
            prefix: prefix.into(),
            gateways,
            events_capacity: defaults.events_capacity,
            max_pending_tx: defaults.max_pending_tx,
            own_beacons_kept: defaults.own_beacons_kept,
            first_downlink_id: 0,
        }
    }

    fn topic(&self, gateway: Eui64, suffix: &str) -> String {
        format!("{}/gateway/{gateway}/{suffix}", self.prefix)
    }
}

/// What the forwarder reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A gateway received a beacon of another gateway.
    BeaconHeard {
        /// The gateway that heard it.
        gateway: Eui64,
        /// The beacon and the witness report's radio fields.
        observation: Observation,
    },
}

/// Why a transmission failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransmitError {
    /// The gateway is not one of [`Config::gateways`].
    #[error("gateway {0} is not configured")]
    UnknownGateway(Eui64),
    /// The gateway rejected it ([`TxError::is_retryable`] says whether to retry).
    #[error("the gateway rejected the transmission: {0}")]
    Rejected(TxError),
    /// The publish could not be queued (the broker link is saturated).
    #[error("publishing the downlink failed: {0}")]
    Send(String),
    /// Given up waiting: newer transmissions needed its place.
    #[error("no ack before the pending transmissions were full")]
    NoAck,
    /// The forwarder task has stopped.
    #[error("the MQTT forwarder has stopped")]
    Stopped,
}

/// Why a message was dropped: the `reason` label of [`Metrics::dropped`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dropped {
    /// A topic this forwarder did not subscribe to or cannot parse.
    UnknownTopic,
    /// An `event/up` payload that is not a protobuf `UplinkFrame`.
    MalformedUplink,
    /// An `event/ack` payload that is not a protobuf `DownlinkTxAck`.
    MalformedAck,
    /// An uplink received with a bad CRC.
    BadCrc,
    /// A frame that is not a beacon.
    OtherFrame,
    /// A beacon frame without CRC.
    NoCrc,
    /// This gateway's own beacon.
    OwnBeacon,
    /// A beacon whose metadata does not fit a witness report.
    InvalidMetadata,
    /// An ack whose downlink id matches no pending transmission.
    UnmatchedAck,
    /// The event queue was full.
    EventsFull,
}

impl Dropped {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::UnknownTopic => "unknown_topic",
            Dropped::MalformedUplink => "malformed_uplink",
            Dropped::MalformedAck => "malformed_ack",
            Dropped::BadCrc => "bad_crc",
            Dropped::OtherFrame => "other_frame",
            Dropped::NoCrc => "no_crc",
            Dropped::OwnBeacon => "own_beacon",
            Dropped::InvalidMetadata => "invalid_metadata",
            Dropped::UnmatchedAck => "unmatched_ack",
            Dropped::EventsFull => "events_full",
        }
    }
}

type ReasonLabel = [(&'static str, &'static str); 1];

/// The forwarder's counters. Clones share them.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// MQTT messages received on the forwarder's topics.
    pub messages: Counter,
    /// Beacons of other gateways heard.
    pub beacons: Counter,
    /// Downlinks published.
    pub transmissions: Counter,
    /// Acks reporting success.
    pub acks_ok: Counter,
    /// Acks reporting an error.
    pub acks_error: Counter,
    /// Connections to the broker lost.
    pub disconnects: Counter,
    /// Messages and frames dropped, by [`Dropped`] reason.
    pub dropped: Family<ReasonLabel, Counter>,
}

impl Metrics {
    /// Registers every counter into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("chirpstack_mqtt_messages", "MQTT messages received", self.messages.clone());
        registry.register("chirpstack_mqtt_beacons", "Beacons of other gateways heard", self.beacons.clone());
        registry.register("chirpstack_mqtt_transmissions", "Downlinks published", self.transmissions.clone());
        registry.register("chirpstack_mqtt_acks_ok", "Acks reporting success", self.acks_ok.clone());
        registry.register("chirpstack_mqtt_acks_error", "Acks reporting an error", self.acks_error.clone());
        registry.register("chirpstack_mqtt_disconnects", "Broker connections lost", self.disconnects.clone());
        registry.register(
            "chirpstack_mqtt_dropped",
            "Messages and frames dropped, by reason",
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

/// A LoRa beacon downlink: what to send, where and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downlink {
    /// The PHYPayload.
    pub phy_payload: Vec<u8>,
    /// Frequency, Hz.
    pub frequency_hz: u32,
    /// Spreading factor and bandwidth.
    pub datarate: DataRate,
    /// Power, dBm.
    pub power_dbm: i32,
}

type Reply = oneshot::Sender<Result<TxAckOk, TransmitError>>;

#[derive(Debug)]
enum Command {
    Transmit { gateway: Eui64, downlink: Downlink, reply: Reply },
    OwnBeacon(BeaconId),
}

/// Commands buffered between handles and the task. 16, as the Semtech server's.
const COMMANDS_CAPACITY: usize = 16;

/// Commands the forwarder task; cheap to clone. The task stops when every
/// handle is dropped or the cancellation token fires.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Publishes `downlink` to `gateway`'s `command/down` and waits for its
    /// `event/ack`. A beacon frame's id is remembered as this gateway's own.
    /// Timeouts are the caller's.
    pub async fn transmit(&self, gateway: Eui64, downlink: Downlink) -> Result<TxAckOk, TransmitError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Transmit { gateway, downlink, reply };
        self.commands.send(command).await.map_err(|_| TransmitError::Stopped)?;
        answer.await.unwrap_or(Err(TransmitError::NoAck))
    }

    /// Remembers `id` as one of this gateway's own beacons (transmitted by
    /// other means), so hearing it is ignored.
    pub async fn own_beacon(&self, id: BeaconId) -> Result<(), TransmitError> {
        self.commands.send(Command::OwnBeacon(id)).await.map_err(|_| TransmitError::Stopped)
    }
}

/// The forwarder task's state; drive it with [`Forwarder::run`].
pub struct Forwarder {
    config: Config,
    client: AsyncClient,
    eventloop: EventLoop,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    pending: HashMap<u32, Reply>,
    pending_order: VecDeque<u32>,
    own_beacons: VecDeque<BeaconId>,
    next_id: u32,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Prepares the client for the broker of `options`; the connection is
    /// made by [`Forwarder::run`].
    pub fn connect(
        config: Config,
        options: MqttOptions,
        metrics: Metrics,
    ) -> (Forwarder, Handle, mpsc::Receiver<Event>) {
        let (client, eventloop) = AsyncClient::new(options, REQUESTS_CAPACITY);
        let (commands_tx, commands) = mpsc::channel(COMMANDS_CAPACITY);
        let (events, events_rx) = mpsc::channel(config.events_capacity.max(1));
        let forwarder = Forwarder {
            next_id: config.first_downlink_id,
            config,
            client,
            eventloop,
            metrics,
            commands,
            events,
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            own_beacons: VecDeque::new(),
        };
        (forwarder, Handle { commands: commands_tx }, events_rx)
    }

    /// Runs until `cancel` fires or every [`Handle`] is dropped. Broker
    /// errors are logged and retried with backoff; nothing a broker or
    /// gateway sends ends the task.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                command = self.commands.recv() => match command {
                    Some(Command::Transmit { gateway, downlink, reply }) => self.transmit(gateway, downlink, reply),
                    Some(Command::OwnBeacon(id)) => self.remember_own(id),
                    None => return,
                },
                event = self.eventloop.poll() => match event {
                    Ok(rumqttc::Event::Incoming(Incoming::ConnAck(_))) => {
                        backoff.reset();
                        self.subscribe();
                    }
                    Ok(rumqttc::Event::Incoming(Incoming::Publish(publish))) => {
                        self.metrics.messages.inc();
                        self.handle_message(&publish.topic, &publish.payload);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        self.metrics.disconnects.inc();
                        let delay = backoff.next_delay();
                        tracing::warn!(%error, ?delay, "ChirpStack MQTT broker connection failed; retrying");
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                },
            }
        }
    }

    fn subscribe(&self) {
        for &gateway in &self.config.gateways {
            for suffix in ["event/up", "event/ack"] {
                let topic = self.config.topic(gateway, suffix);
                if let Err(error) = self.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                    tracing::warn!(%error, %topic, "could not subscribe");
                }
            }
        }
    }

    fn transmit(&mut self, gateway: Eui64, downlink: Downlink, reply: Reply) {
        if !self.config.gateways.contains(&gateway) {
            let _ = reply.send(Err(TransmitError::UnknownGateway(gateway)));
            return;
        }
        if let Some(id) = beacon::parse(&downlink.phy_payload) {
            self.remember_own(id);
        }
        let downlink_id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let frame = downlink_frame(gateway, downlink_id, &downlink);
        let topic = self.config.topic(gateway, "command/down");
        if let Err(error) = self.client.try_publish(topic, QoS::AtLeastOnce, false, frame.encode_to_vec()) {
            let _ = reply.send(Err(TransmitError::Send(error.to_string())));
            return;
        }
        self.metrics.transmissions.inc();
        self.pending.retain(|_, reply| !reply.is_closed());
        let pending = &self.pending;
        self.pending_order.retain(|id| pending.contains_key(id));
        while self.pending_order.len() >= self.config.max_pending_tx.max(1) {
            if let Some(oldest) = self.pending_order.pop_front() {
                self.pending.remove(&oldest);
            }
        }
        if let Some(stale) = self.pending.insert(downlink_id, reply) {
            let _ = stale.send(Err(TransmitError::NoAck));
        } else {
            self.pending_order.push_back(downlink_id);
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

    fn handle_message(&mut self, topic: &str, payload: &[u8]) {
        let Some((gateway, kind)) = self.parse_topic(topic) else {
            self.metrics.drop(Dropped::UnknownTopic);
            return;
        };
        match kind {
            "event/up" => {
                let Ok(frame) = UplinkFrame::decode(payload) else {
                    self.metrics.drop(Dropped::MalformedUplink);
                    return;
                };
                let bad_crc = frame
                    .rx_info
                    .as_ref()
                    .is_some_and(|rx| rx.crc_status == chirpstack_api::gw::CrcStatus::BadCrc as i32);
                if bad_crc {
                    self.metrics.drop(Dropped::BadCrc);
                    return;
                }
                match beacon::observe(&frame, self.own_beacons.make_contiguous()) {
                    Ok(observation) => {
                        self.metrics.beacons.inc();
                        if self.events.try_send(Event::BeaconHeard { gateway, observation }).is_err() {
                            self.metrics.drop(Dropped::EventsFull);
                        }
                    }
                    Err(beacon::NotBeacon::NoCrc) => self.metrics.drop(Dropped::NoCrc),
                    Err(beacon::NotBeacon::OwnBeacon) => self.metrics.drop(Dropped::OwnBeacon),
                    Err(beacon::NotBeacon::InvalidMetadata) => self.metrics.drop(Dropped::InvalidMetadata),
                    Err(_) => self.metrics.drop(Dropped::OtherFrame),
                }
            }
            "event/ack" => {
                let Ok(ack) = DownlinkTxAck::decode(payload) else {
                    self.metrics.drop(Dropped::MalformedAck);
                    return;
                };
                let Some(reply) = self.pending.remove(&ack.downlink_id) else {
                    self.metrics.drop(Dropped::UnmatchedAck);
                    return;
                };
                self.pending_order.retain(|id| *id != ack.downlink_id);
                let result = ack_result(&ack);
                match &result {
                    Ok(_) => self.metrics.acks_ok.inc(),
                    Err(_) => self.metrics.acks_error.inc(),
                };
                let _ = reply.send(result.map_err(TransmitError::Rejected));
            }
            _ => self.metrics.drop(Dropped::UnknownTopic),
        }
    }

    /// `{prefix}/gateway/{id}/{event/up|event/ack}` of a configured gateway.
    fn parse_topic<'t>(&self, topic: &'t str) -> Option<(Eui64, &'t str)> {
        let rest = topic.strip_prefix(self.config.prefix.as_str())?.strip_prefix("/gateway/")?;
        let (id, kind) = rest.split_once('/')?;
        let gateway: Eui64 = id.parse().ok()?;
        self.config.gateways.contains(&gateway).then_some((gateway, kind))
    }
}

/// The `DownlinkFrame` of one immediate LoRa transmission with uplink
/// polarity (see [`beacon`]).
pub fn downlink_frame(gateway: Eui64, downlink_id: u32, downlink: &Downlink) -> DownlinkFrame {
    let lora = LoraModulationInfo {
        bandwidth: u32::from(downlink.datarate.bandwidth_khz) * 1000,
        spreading_factor: u32::from(downlink.datarate.spreading_factor),
        code_rate: chirpstack_api::gw::CodeRate::Cr45 as i32,
        polarization_inversion: false,
        ..LoraModulationInfo::default()
    };
    DownlinkFrame {
        downlink_id,
        gateway_id: gateway.to_string(),
        items: vec![DownlinkFrameItem {
            phy_payload: downlink.phy_payload.clone(),
            tx_info: Some(DownlinkTxInfo {
                frequency: downlink.frequency_hz,
                power: downlink.power_dbm,
                modulation: Some(Modulation { parameters: Some(modulation::Parameters::Lora(lora)) }),
                timing: Some(Timing {
                    parameters: Some(timing::Parameters::Immediately(Default::default())),
                }),
                ..DownlinkTxInfo::default()
            }),
            ..DownlinkFrameItem::default()
        }],
        ..DownlinkFrame::default()
    }
}

/// The outcome an ack reports: its first item's status (one item is sent).
pub fn ack_result(ack: &DownlinkTxAck) -> Result<TxAckOk, TxError> {
    let status = ack.items.first().map(|item| item.status).unwrap_or(TxAckStatus::Ignored as i32);
    let code = match TxAckStatus::try_from(status) {
        Ok(TxAckStatus::Ok) => return Ok(TxAckOk::default()),
        Ok(status) => status.as_str_name(),
        Err(_) => "UNKNOWN",
    };
    Err(TxError::from_code(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chirpstack_api::gw::DownlinkTxAckItem;

    #[test]
    fn ack_statuses_map_to_the_semtech_errors() {
        let ack = |status: TxAckStatus| DownlinkTxAck {
            items: vec![DownlinkTxAckItem { status: status as i32 }],
            ..DownlinkTxAck::default()
        };
        assert_eq!(ack_result(&ack(TxAckStatus::Ok)), Ok(TxAckOk::default()));
        assert_eq!(ack_result(&ack(TxAckStatus::TooLate)), Err(TxError::TooLate));
        assert_eq!(ack_result(&ack(TxAckStatus::CollisionBeacon)), Err(TxError::CollisionBeacon));
        assert_eq!(ack_result(&ack(TxAckStatus::TxFreq)), Err(TxError::TxFreq));
        assert_eq!(ack_result(&ack(TxAckStatus::QueueFull)), Err(TxError::Unknown("QUEUE_FULL".into())));
        assert_eq!(ack_result(&DownlinkTxAck::default()), Err(TxError::Unknown("IGNORED".into())));
    }

    #[test]
    fn a_beacon_downlink_is_immediate_lora_with_uplink_polarity() {
        let id = BeaconId([3; 16]);
        let downlink = Downlink {
            phy_payload: beacon::frame(&id).to_vec(),
            frequency_hz: 869_525_000,
            datarate: DataRate { spreading_factor: 9, bandwidth_khz: 125 },
            power_dbm: 14,
        };
        let frame = downlink_frame(Eui64([1, 2, 3, 4, 5, 6, 7, 8]), 42, &downlink);
        assert_eq!((frame.downlink_id, frame.gateway_id.as_str()), (42, "0102030405060708"));
        let tx = frame.items[0].tx_info.as_ref().expect("tx info");
        assert_eq!((tx.frequency, tx.power), (869_525_000, 14));
        let Some(modulation::Parameters::Lora(lora)) =
            tx.modulation.as_ref().and_then(|m| m.parameters.as_ref())
        else {
            panic!("LoRa modulation expected");
        };
        assert_eq!((lora.spreading_factor, lora.bandwidth, lora.polarization_inversion), (9, 125_000, false));
        assert_eq!(beacon::parse(&frame.items[0].phy_payload), Some(id));
        let decoded = DownlinkFrame::decode(frame.encode_to_vec().as_slice()).expect("round trip");
        assert_eq!(decoded, frame);
    }
}
