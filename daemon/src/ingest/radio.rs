//! The radio front the daemon starts from `[radio]`: one stream of beacons
//! heard ([`Heard`], the node's input) and one transmit handle, over a
//! Semtech UDP packet forwarder server, a ChirpStack MQTT forwarder, or both.
//!
//! ```text
//! let (radio, heard) = radio::start(radio::Settings::from_config(&config.radio, "meshd-<id>")?,
//!                                   &mut registry, cancel.clone()).await?;
//! // feed every `heard.recv()` to the node as Input::BeaconHeard;
//! // on Output::TransmitBeacon { beacon_id, .. }: radio.transmit(beacon_id).await
//! ```
//!
//! Beacons go out immediately (the node picks the time within the window)
//! through the first forwarder able to send: Semtech forwarders that sent a
//! PULL_DATA (in EUI order), then the configured ChirpStack gateways. A
//! rejection that another attempt may avoid ([`semtech::TxError::is_retryable`]:
//! too early or late, a collision, GPS unlocked) is retried on the same
//! forwarder after [`RETRY_DELAY`], up to [`ATTEMPTS_PER_GATEWAY`] times; a
//! configuration mismatch (frequency, power) or a missing ack moves on to
//! the next forwarder. Every id transmitted is registered as own with both
//! forwarders first, so that no concentrator witnesses the gateway's own
//! beacon.

use std::net::SocketAddr;
use std::time::Duration;

use meshd_node::Heard;
use meshd_protocol::message::{BeaconId, DataRate};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rumqttc::MqttOptions;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::beacon::{self, Observation};
use super::chirpstack;
use super::semtech::server;
use super::semtech::{self, Eui64, TxTiming, Txpk};

/// Heard beacons buffered for the node before new ones are dropped
/// (`heard_full`). 1024, as the forwarders' own event queues.
pub const HEARD_CAPACITY: usize = 1024;

/// Longest wait for one transmission's ack. 5 s: forwarders answer an
/// immediate transmission within tens of milliseconds; a SF12 frame's
/// airtime (1.3 s) is not waited for before the ack.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause before retrying a retryable rejection. 1 s: longer than a
/// colliding downlink at SF12 lasts, short against a beacon window.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Attempts per forwarder for retryable rejections. 3: a collision twice in
/// a row means a busy downlink schedule; the next forwarder is tried.
pub const ATTEMPTS_PER_GATEWAY: usize = 3;

/// How beacons are transmitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeaconTx {
    /// Frequency, Hz.
    pub frequency_hz: u32,
    /// Spreading factor and bandwidth.
    pub datarate: DataRate,
    /// Power, dBm.
    pub power_dbm: i32,
}

/// Which forwarders to run, from `[radio]`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The Semtech UDP server's address, if any.
    pub semtech_listen: Option<SocketAddr>,
    /// The ChirpStack broker and forwarder settings, if any.
    pub chirpstack: Option<(MqttOptions, chirpstack::Config)>,
    /// How beacons go out.
    pub beacon: BeaconTx,
}

/// Why `[radio]` cannot be used (validation normally catches these first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// `radio.mqtt_url` is not a broker URL.
    #[error("`radio.mqtt_url`: {0}")]
    MqttUrl(#[from] super::mqtt::UrlError),
    /// A `radio.gateway_ids` entry is not an EUI-64.
    #[error("`radio.gateway_ids`: {0}")]
    GatewayId(#[from] semtech::ParseEuiError),
}

impl Settings {
    /// The settings of `[radio]`; `client_id` names this daemon to the
    /// MQTT broker (unique per broker, e.g. `meshd-` and the gateway id).
    pub fn from_config(radio: &meshd_config::Radio, client_id: &str) -> Result<Settings, SettingsError> {
        let chirpstack = match &radio.mqtt_url {
            None => None,
            Some(url) => {
                let options = super::mqtt::options(url, client_id)?;
                let gateways =
                    radio.gateway_ids.iter().map(|id| id.parse()).collect::<Result<Vec<Eui64>, _>>()?;
                Some((options, chirpstack::Config::new(radio.mqtt_topic_prefix.clone(), gateways)))
            }
        };
        Ok(Settings {
            semtech_listen: radio.semtech_listen,
            chirpstack,
            beacon: BeaconTx {
                frequency_hz: radio.beacon_frequency_hz,
                datarate: DataRate {
                    spreading_factor: radio.beacon_spreading_factor,
                    bandwidth_khz: radio.beacon_bandwidth_khz,
                },
                power_dbm: i32::from(radio.beacon_power_dbm),
            },
        })
    }
}

/// Why a beacon was not transmitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// No forwarder is configured, or none has connected yet.
    #[error("no forwarder to transmit through")]
    NoGateway,
    /// Every forwarder rejected it; the last rejection.
    #[error("the forwarders rejected the beacon, last with {0}")]
    Rejected(semtech::TxError),
    /// No forwarder acknowledged it in time.
    #[error("no forwarder acknowledged the beacon")]
    NoAck,
    /// The forwarders have stopped.
    #[error("the radio has stopped")]
    Stopped,
}

impl TxError {
    fn label(&self) -> String {
        match self {
            TxError::NoGateway => "no_gateway".into(),
            TxError::Rejected(error) => error.code().to_ascii_lowercase(),
            TxError::NoAck => "no_ack".into(),
            TxError::Stopped => "stopped".into(),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

/// The radio front's own counters (each forwarder registers its own).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Beacons of other gateways passed to the node.
    pub heard: Counter,
    /// Heard beacons dropped because the node's queue was full.
    pub heard_full: Counter,
    /// Beacon transmissions by `outcome` (`ok` or the error).
    pub transmissions: Family<Labels, Counter>,
    /// Attempts retried, by the rejection's `code`.
    pub retries: Family<Labels, Counter>,
}

impl Metrics {
    /// Registers every counter into `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("radio_heard", "Beacons of other gateways passed to the node", self.heard.clone());
        registry.register(
            "radio_heard_full",
            "Heard beacons dropped because the node's queue was full",
            self.heard_full.clone(),
        );
        registry.register(
            "radio_transmissions",
            "Beacon transmissions, by outcome",
            self.transmissions.clone(),
        );
        registry.register(
            "radio_retries",
            "Beacon transmissions retried, by rejection",
            self.retries.clone(),
        );
    }

    /// Transmissions that ended with `outcome`.
    pub fn transmissions(&self, outcome: &str) -> u64 {
        self.transmissions.get_or_create(&vec![("outcome", outcome.to_owned())]).get()
    }
}

/// The transmit side of the radio; cheap to clone.
#[derive(Clone, Debug)]
pub struct Radio {
    semtech: Option<server::Handle>,
    chirpstack: Option<(chirpstack::Handle, Vec<Eui64>)>,
    beacon: BeaconTx,
    metrics: Metrics,
}

/// The heard beacon as the node takes it.
pub fn heard(observation: &Observation) -> Heard {
    Heard {
        beacon_id: observation.beacon_id,
        rssi_ddbm: observation.radio.rssi_ddbm,
        snr_ddb: observation.radio.snr_ddb,
        frequency_hz: observation.radio.frequency_hz,
        datarate: observation.radio.datarate,
        tmst_us: observation.radio.tmst_us,
    }
}

/// Starts the configured forwarders as tasks that stop when `cancel` fires,
/// registering their counters into `registry`. Returns the transmit handle
/// and the heard beacons. With no forwarder configured the stream stays
/// empty and [`Radio::transmit`] answers [`TxError::NoGateway`].
pub async fn start(
    settings: Settings,
    registry: &mut Registry,
    cancel: CancellationToken,
) -> std::io::Result<(Radio, mpsc::Receiver<Heard>)> {
    let metrics = Metrics::default();
    metrics.register(registry);
    let (heard_tx, heard_rx) = mpsc::channel(HEARD_CAPACITY);
    let semtech = match settings.semtech_listen {
        None => None,
        Some(bind) => {
            let server_metrics = server::Metrics::default();
            server_metrics.register(registry);
            let config = server::Config { bind, ..server::Config::default() };
            let (server, handle, events) = server::Server::bind(config, server_metrics).await?;
            let stop = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    result = server.run() => if let Err(error) = result {
                        tracing::error!(%error, "the Semtech UDP server stopped");
                    },
                }
            });
            tokio::spawn(forward_heard(events, heard_tx.clone(), metrics.clone(), cancel.clone(), |event| {
                match event {
                    server::Event::BeaconHeard { observation, .. } => Some(observation),
                    _ => None,
                }
            }));
            Some(handle)
        }
    };
    let chirpstack = match settings.chirpstack {
        None => None,
        Some((options, config)) => {
            let forwarder_metrics = chirpstack::Metrics::default();
            forwarder_metrics.register(registry);
            let gateways = config.gateways.clone();
            let (forwarder, handle, events) =
                chirpstack::Forwarder::connect(config, options, forwarder_metrics);
            tokio::spawn(forwarder.run(cancel.clone()));
            tokio::spawn(forward_heard(events, heard_tx, metrics.clone(), cancel, |event| match event {
                chirpstack::Event::BeaconHeard { observation, .. } => Some(observation),
            }));
            Some((handle, gateways))
        }
    };
    Ok((Radio { semtech, chirpstack, beacon: settings.beacon, metrics }, heard_rx))
}

/// Passes the beacons heard among a forwarder's `events` to the node's
/// queue until `stop` fires or the forwarder ends; a full queue drops the
/// beacon and counts it (`heard_full`).
async fn forward_heard<E>(
    mut events: mpsc::Receiver<E>,
    forward: mpsc::Sender<Heard>,
    metrics: Metrics,
    stop: CancellationToken,
    observation: impl Fn(&E) -> Option<&Observation>,
) {
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.recv() => event,
        };
        let Some(event) = event else { return };
        let Some(observation) = observation(&event) else { continue };
        match forward.try_send(heard(observation)) {
            Ok(()) => metrics.heard.inc(),
            Err(_) => metrics.heard_full.inc(),
        };
    }
}

enum Attempt {
    Done,
    Retry(semtech::TxError),
    Next(TxError),
}

impl Radio {
    /// The front's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Transmits the beacon `beacon_id` now (see the module docs for the
    /// order of forwarders and the retries).
    pub async fn transmit(&self, beacon_id: BeaconId) -> Result<(), TxError> {
        let result = self.transmit_inner(beacon_id).await;
        let outcome = match &result {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.label(),
        };
        self.metrics.transmissions.get_or_create(&vec![("outcome", outcome)]).inc();
        result
    }

    async fn transmit_inner(&self, beacon_id: BeaconId) -> Result<(), TxError> {
        let frame = beacon::frame(&beacon_id);
        // Own first everywhere: the beacon may be heard by another
        // concentrator before the ack arrives.
        if let Some(handle) = &self.semtech {
            handle.own_beacon(beacon_id).await.map_err(|_| TxError::Stopped)?;
        }
        if let Some((handle, _)) = &self.chirpstack {
            handle.own_beacon(beacon_id).await.map_err(|_| TxError::Stopped)?;
        }
        let mut last = TxError::NoGateway;
        if let Some(handle) = &self.semtech {
            let gateways = handle.gateways().await.map_err(|_| TxError::Stopped)?;
            for gateway in gateways {
                let txpk = Txpk::lora_uplink_polarity(
                    &frame,
                    self.beacon.frequency_hz,
                    self.beacon.datarate,
                    self.beacon.power_dbm,
                    TxTiming::Immediately,
                );
                let outcome = self
                    .with_retries(|| async {
                        match tokio::time::timeout(ACK_TIMEOUT, handle.transmit(gateway, txpk.clone())).await
                        {
                            Err(_) => Attempt::Next(TxError::NoAck),
                            Ok(Ok(_)) => Attempt::Done,
                            Ok(Err(server::TransmitError::Rejected(error))) => rejected(error),
                            Ok(Err(server::TransmitError::Stopped)) => Attempt::Next(TxError::Stopped),
                            Ok(Err(server::TransmitError::UnknownGateway(_))) => {
                                Attempt::Next(TxError::NoGateway)
                            }
                            Ok(Err(_)) => Attempt::Next(TxError::NoAck),
                        }
                    })
                    .await;
                match outcome {
                    Ok(()) => return Ok(()),
                    Err(error) => last = error,
                }
            }
        }
        if let Some((handle, gateways)) = &self.chirpstack {
            for &gateway in gateways {
                let downlink = chirpstack::Downlink {
                    phy_payload: frame.to_vec(),
                    frequency_hz: self.beacon.frequency_hz,
                    datarate: self.beacon.datarate,
                    power_dbm: self.beacon.power_dbm,
                };
                let outcome = self
                    .with_retries(|| async {
                        match tokio::time::timeout(ACK_TIMEOUT, handle.transmit(gateway, downlink.clone()))
                            .await
                        {
                            Err(_) => Attempt::Next(TxError::NoAck),
                            Ok(Ok(_)) => Attempt::Done,
                            Ok(Err(chirpstack::TransmitError::Rejected(error))) => rejected(error),
                            Ok(Err(chirpstack::TransmitError::Stopped)) => Attempt::Next(TxError::Stopped),
                            Ok(Err(_)) => Attempt::Next(TxError::NoAck),
                        }
                    })
                    .await;
                match outcome {
                    Ok(()) => return Ok(()),
                    Err(error) => last = error,
                }
            }
        }
        Err(last)
    }

    async fn with_retries<F, Fut>(&self, mut attempt: F) -> Result<(), TxError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt>,
    {
        for tries in 1..=ATTEMPTS_PER_GATEWAY {
            match attempt().await {
                Attempt::Done => return Ok(()),
                Attempt::Next(error) => return Err(error),
                Attempt::Retry(error) if tries == ATTEMPTS_PER_GATEWAY => {
                    return Err(TxError::Rejected(error));
                }
                Attempt::Retry(error) => {
                    self.metrics
                        .retries
                        .get_or_create(&vec![("code", error.code().to_ascii_lowercase())])
                        .inc();
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
        Err(TxError::NoAck)
    }
}

fn rejected(error: semtech::TxError) -> Attempt {
    if error.is_retryable() { Attempt::Retry(error) } else { Attempt::Next(TxError::Rejected(error)) }
}
