//! `meshd run`: one gateway — the node state machine driven by the gossip
//! layer (rust-libp2p), the sled store, the clock, the local API and, on demo
//! meshes, the synthetic source.
//!
//! # The loop
//!
//! One task owns the [`Node`]. It drains the node's outputs until the node
//! asks to be woken ([`Output::Timeout`]), then waits for whichever comes
//! first: a gossip event, a fetch result, a synthetic frame, the wake-up
//! time or shutdown, and feeds it to the node as an [`Input`].
//!
//! - `Persist` is written to sled (fsync'd) before `Persisted` goes back to
//!   the node, so every vote leaves only after it is durable; a failed write
//!   stops the daemon (it must never send a vote it could forget).
//! - `Publish` goes out on the region or global topic; `Fetch` runs as its
//!   own task and its answer comes back as `FetchResponse`.
//! - Inbound fetch and decision requests become `FetchRequest`s; the node's
//!   `Respond` answers them.
//! - Each gossip message gets the gossip layer's verdict from what the node
//!   made of it: refused for a provable fault (malformed, bad signature,
//!   broken rule) → reject, refused for timing or spam limits or as a copy →
//!   ignore, otherwise accept.
//! - Anchoring (a gateway on the chain's anchor committee): the anchor book
//!   ([`meshd_node::anchors`]) takes this region's finalized summaries and
//!   every region's certified summaries from the global topic; each range
//!   it hands out is stored (its leaves, for proofs and restarts) before its
//!   root is signed with the anchor key and published. The node's own
//!   anchoring (its region's sub-root) is switched off. The latest anchor
//!   shows in the status.
//!
//! After each step the loop publishes a [`status::Status`] that
//! `GET /v1/status` serves, and brings the node's counters to `/metrics`.

pub mod anchoring;
pub mod api;
pub mod chain_registry;
pub mod meters;
pub mod metrics;
pub mod records;
pub mod settings;
pub mod status;
pub mod synthetic;

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use meshd_config::Config;
use meshd_gossip::{Client, Event as GossipEvent, FetchResponder, Multiaddr, PeerId, Verdict};
use meshd_node::anchors::{AnchorBook, AnchorBookConfig};
use meshd_node::{Event, FetchError, Input, Node, Output, Request, Response, Topic};
use meshd_protocol::codec;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::keys::KeyFile;
use meshd_protocol::message::Message;
use meshd_protocol::{GatewayId, Hash32, MeterId};
use meshd_storage::{SledStore, Store};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::ingest;
use crate::ingest::meters::{MeterRejection, MeterSubmission};
use crate::ingest::radio;
use status::Status;
use synthetic::SyntheticRadio;

/// Fetch results waiting for the loop. A round fetches from a handful of
/// peers; 256 is far above what a committee of 128 has in flight.
const FETCH_RESULTS: usize = 256;

/// Inbound requests awaiting the node's answer. The node answers in the same
/// step, so only requests whose answer was dropped linger; past this bound the
/// oldest are answered empty.
const MAX_PENDING_REQUESTS: usize = 1024;

/// Synthetic frames waiting for their reception time: one per beacon of the
/// region and epoch, bounded by the pool's own limit on beacons.
const MAX_PENDING_FRAMES: usize = 1024;

/// How long the anchor book waits for a region's decision it asked a
/// member for before asking the next member: a decision request is answered
/// in milliseconds, or times out.
const DECISION_RETRY_MS: u64 = 2_000;

/// Overdue decisions asked for per second at most: a range of many regions
/// whose decisions all went missing is fetched over a few seconds rather
/// than in one burst.
const DECISION_ASKS: usize = 16;

/// How often the peer count in the status is refreshed.
const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// How long one gossip command may take before the loop gives up on it: the
/// event loop answers in microseconds unless it is shutting down.
const GOSSIP_COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Refusal codes of the node that prove the forwarding peer relayed
/// something invalid (it should have checked): the gossip layer rejects such
/// messages and penalises the peer. Every other refusal (timing, limits,
/// copies, unknown epochs) is ignored without penalty.
const PROVABLE_FAULTS: [&str; 5] =
    ["malformed", "bad_signature", "beacon_not_derived", "not_sorted", "not_proposer"];

/// The gossip layer's configuration from the daemon's.
pub fn gossip_config(config: &Config) -> anyhow::Result<meshd_gossip::Config> {
    let parse = |key: &str, list: &[String]| -> anyhow::Result<Vec<Multiaddr>> {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                Multiaddr::from_str(text)
                    .with_context(|| format!("`{key}[{i}]` = {text:?} is not a multiaddr"))
            })
            .collect()
    };
    let p2p = &config.p2p;
    let mut gossip = meshd_gossip::Config {
        network: config.network.name.clone(),
        listen: parse("p2p.listen", &p2p.listen)?,
        bootstrap: parse("p2p.bootstrap", &p2p.bootstrap)?,
        mdns: p2p.mdns,
        relay_server: p2p.relay_server,
        ..meshd_gossip::Config::default()
    };
    let tcp = gossip.listen.iter().any(|a| a.to_string().contains("/tcp/"));
    let quic = gossip.listen.iter().any(|a| a.to_string().ends_with("/quic-v1"));
    gossip.transport = meshd_gossip::config::Transport::Network { tcp: tcp || !quic, quic };
    gossip.limits.max_connections = p2p.max_connections;
    gossip.limits.max_connections_per_peer = p2p.max_connections_per_peer;
    gossip.limits.max_pending_incoming = p2p.max_pending_incoming;
    gossip.limits.max_pending_outgoing = p2p.max_pending_outgoing;
    gossip.validate().context("p2p settings")?;
    Ok(gossip)
}

fn gossip_topic(topic: Topic) -> meshd_gossip::Topic {
    match topic {
        Topic::Region(region) => meshd_gossip::Topic::Region(region),
        Topic::Global => meshd_gossip::Topic::Global,
    }
}

fn gateway_of(peer: &PeerId) -> Option<GatewayId> {
    GatewayId::from_str(&peer.to_base58()).ok()
}

/// Runs the gateway until `shutdown` is cancelled.
pub async fn run(config: Config, keys: KeyFile, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started_ms = clock::now_ms();
    let own = keys.identity.gateway_id();
    let mut settings = settings::settings(&config, own)?;
    let chain_registry = chain_registry::open(&config, own, settings.location).await?;
    let mut meter_capacities = BTreeMap::new();
    if let Some(chain) = &chain_registry {
        settings.node.region = chain.region;
        settings.members = chain.members.clone();
        meter_capacities = chain.meters.clone();
    }
    let region = settings.node.region;
    let store =
        SledStore::open(&config.storage.path, meshd_storage::Options::default()).with_context(|| {
            format!("cannot open the store in `storage.path` = {}", config.storage.path.display())
        })?;
    let stored = records::load(&store, region).context("cannot read the stored consensus records")?;
    let restored = stored.records.len();

    let mut registry = Registry::default();
    let (client, mut events, event_loop) =
        meshd_gossip::new(&keys.identity, gossip_config(&config)?, &mut registry)
            .context("cannot start networking")?;
    let node_metrics = metrics::NodeMetrics::new(&mut registry);
    let radio_stop = CancellationToken::new();
    let (radio, mut heard) =
        start_radio(&config, own, registry.sub_registry_with_prefix("meshd"), radio_stop.clone())
            .await?
            .unzip();
    let ingest_metrics = ingest::meters::Metrics::default();
    ingest_metrics.register(registry.sub_registry_with_prefix("meshd"));
    let registry = Arc::new(registry);
    let network_stop = CancellationToken::new();
    let network = tokio::spawn(event_loop.run(network_stop.clone()));
    for topic in [Topic::Region(region), Topic::Global] {
        client.subscribe(gossip_topic(topic)).await.context("cannot subscribe to gossip")?;
    }

    let node =
        Node::new(settings.node.clone(), keys.identity.clone(), settings.members.clone(), stored, started_ms);
    let (status_tx, status_rx) = watch::channel(Status::default());
    let listener = api::bind(config.api.listen).await?;
    let api_state = api::ApiState { status: status_rx, registry: Arc::clone(&registry) };
    let (meter_tx, mut meter_rx) = mpsc::channel(METER_QUEUE);
    let meter_ingest = ingest::meters::MeterIngest::new(
        Domain::new(&config.network.name),
        settings.node.meter.clone(),
        meter_tx,
        ingest_metrics,
    );
    let routes = api::router(api_state).merge(ingest::meters::router(meter_ingest.clone()));
    let api_task = tokio::spawn(api::serve(listener, routes, shutdown.clone()));
    let meters_stop = CancellationToken::new();
    if let Some(url) = &config.meters.mqtt_url {
        let options = ingest::mqtt::options(url, &format!("meshd-meters-{own}"))
            .map_err(|error| anyhow::anyhow!("`meters.mqtt_url` = {url:?}: {error}"))?;
        let topic = config.meters.mqtt_topic.clone();
        tokio::spawn(ingest::meters::run_mqtt(meter_ingest, options, topic, meters_stop.clone()));
    }

    let synthetic = config.synthetic.enabled.then(|| {
        SyntheticRadio::new(
            own,
            settings.location,
            settings.node.radio.antenna_gain_ddbi,
            settings.node.witness.clone(),
        )
    });
    let meters = (config.synthetic.enabled && config.synthetic.meters > 0).then(|| {
        let longitude = settings.location.lat_lng().map_or(0.0, |(_, lon)| lon);
        // Three readings per epoch, within the meters' 5 s to 15 min range.
        let interval_s = config.network.epoch_length_s / 3;
        meters::Meters::new(
            &keys.identity,
            config.synthetic.meters,
            config.synthetic.meter_peak_w,
            longitude,
            interval_s,
            &config.network.name,
        )
    });
    let mut anchoring = anchoring::start(&config, &keys, settings.node.anchor_domain).await?;
    let mut anchor_events = anchoring.as_mut().map(|a| std::mem::replace(&mut a.events, mpsc::channel(1).1));
    let anchor_book = anchoring.as_ref().map(|_| {
        let mut book = anchor_book(&config, &settings, started_ms);
        if let Some(chain) = &chain_registry {
            book.set_registry(0, &chain.registered);
        }
        book
    });
    let registry_stop = CancellationToken::new();
    let mut registry_updates = chain_registry.map(|chain| chain.follow(own, registry_stop.clone()));
    let (fetch_tx, mut fetch_rx) = mpsc::channel(FETCH_RESULTS);
    let (decisions_tx, mut decisions_rx) = mpsc::channel(FETCH_RESULTS);
    tracing::info!(
        gateway = %own,
        anchor = %keys.anchor.address(),
        region = %format!("{:x}", region.0),
        committee = settings.members.len(),
        restored,
        api = %config.api.listen,
        synthetic = config.synthetic.enabled,
        "gateway started"
    );
    let mut gateway = Gateway {
        node,
        client,
        store,
        keys,
        domain: Domain::new(&config.network.name),
        settings,
        fetch_tx,
        requests: BTreeMap::new(),
        next_request: 0,
        frames: BTreeSet::new(),
        synthetic,
        meters,
        next_reading: 0,
        anchoring,
        anchor_book,
        decision_asks: BTreeMap::new(),
        decisions_tx,
        radio,
        meter_capacities,
        meter_replies: BTreeMap::new(),
        metrics: node_metrics,
        status: status_tx,
        peers: 0,
        connected: BTreeSet::new(),
        last_anchor: None,
        started_ms,
    };
    gateway.resume_anchoring().await;
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    let result = loop {
        let wake_at = match gateway.drain().await {
            Ok(at) => at,
            Err(error) => break Err(error),
        };
        gateway.publish_status();
        let next_frame = gateway.frames.first().map(|(at, ..)| *at);
        let next_meters = gateway.meters.as_ref().map(|m| m.next_due_ms(clock::now_ms()));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            event = events.recv() => match event {
                Some(event) => gateway.on_gossip_event(event).await,
                None => break Err(anyhow::anyhow!("the networking task stopped")),
            },
            Some((id, result)) = fetch_rx.recv() => {
                gateway.node.handle_input(Input::FetchResponse { now_ms: clock::now_ms(), id, result });
            }
            _ = tokio::time::sleep_until(clock::instant_of(next_frame.unwrap_or(u64::MAX))), if next_frame.is_some() => {
                gateway.deliver_frames();
            }
            _ = tokio::time::sleep_until(clock::instant_of(next_meters.unwrap_or(u64::MAX))), if next_meters.is_some() => {
                gateway.read_meters();
            }
            _ = tokio::time::sleep_until(clock::instant_of(wake_at)) => {
                gateway.node.handle_input(Input::Timeout { now_ms: clock::now_ms() });
            }
            Some(event) = async { anchor_events.as_mut()?.recv().await }, if anchor_events.is_some() => {
                gateway.on_anchor_event(event);
            }
            Some(heard) = async { heard.as_mut()?.recv().await }, if heard.is_some() => {
                gateway.node.handle_input(Input::BeaconHeard { now_ms: clock::now_ms(), heard });
            }
            Some(update) = async { registry_updates.as_mut()?.recv().await }, if registry_updates.is_some() => {
                let chain_registry::Update { as_of_ms, members, meters, registered } = update;
                gateway.meter_capacities = meters;
                if let Some(book) = &mut gateway.anchor_book {
                    // As the node applies a registry: from the epoch after the block's time.
                    let from = gateway.settings.node.clock.epoch_at(as_of_ms).map_or(0, |e| e + 1);
                    book.set_registry(from, &registered);
                }
                gateway.node.handle_input(Input::Registry { now_ms: clock::now_ms(), as_of_ms, members });
            }
            Some(submission) = meter_rx.recv() => gateway.submit_reading(submission),
            Some((peer, envelopes)) = decisions_rx.recv() => {
                gateway.on_fetched_decision(&peer, &envelopes).await;
            }
            _ = refresh.tick() => {
                gateway.refresh_peers().await;
                gateway.sign_ready_ranges().await;
                gateway.ask_overdue_decisions();
            }
        }
    };
    network_stop.cancel();
    registry_stop.cancel();
    radio_stop.cancel();
    meters_stop.cancel();
    let _ = network.await;
    let _ = api_task.await;
    if let Err(error) = gateway.store.flush() {
        tracing::warn!(%error, "final flush of the store failed");
    }
    tracing::info!("gateway stopped");
    result
}

/// The anchor book of a gateway on the anchor committee.
fn anchor_book(config: &Config, settings: &settings::Settings, now_ms: u64) -> AnchorBook {
    let clock = settings.node.clock;
    let book_config = AnchorBookConfig {
        network: config.network.name.clone(),
        resolution: config.network.region_resolution,
        anchor_every: config.network.anchor_every_epochs,
        clock,
        // A region decides an epoch in the grace period of the next; a
        // whole epoch more leaves a slow region several consensus rounds.
        wait_ms: clock.length_ms(),
        domain: settings.node.anchor_domain,
    };
    let current = clock.epoch_at(now_ms).unwrap_or(0);
    AnchorBook::new(book_config, settings.node.region, current.max(settings.node.first_epoch))
}

/// Readings submitted over HTTP and MQTT waiting for the loop. 64: the
/// loop takes one per turn, in microseconds; beyond this the API answers 503
/// and the meter sends again.
const METER_QUEUE: usize = 64;

/// Readings handed to the node and not answered yet, at most. The node
/// answers each within one persist; 1024 covers a burst from many meters.
const MAX_PENDING_READINGS: usize = 1024;

/// Starts the radio front when `[radio]` names a packet forwarder (Semtech
/// UDP or ChirpStack MQTT): its transmit handle and the beacons it hears.
async fn start_radio(
    config: &Config,
    own: GatewayId,
    registry: &mut Registry,
    stop: CancellationToken,
) -> anyhow::Result<Option<(radio::Radio, mpsc::Receiver<meshd_node::Heard>)>> {
    if config.radio.semtech_listen.is_none() && config.radio.mqtt_url.is_none() {
        return Ok(None);
    }
    let settings = radio::Settings::from_config(&config.radio, &format!("meshd-{own}"))
        .map_err(|error| anyhow::anyhow!("`[radio]`: {error}"))?;
    let started = radio::start(settings, registry, stop).await.context("cannot start the radio front")?;
    tracing::info!(
        semtech = ?config.radio.semtech_listen,
        chirpstack = ?config.radio.mqtt_url,
        "radio front started"
    );
    Ok(Some(started))
}

/// The loop's state: the node and everything its outputs go to.
struct Gateway {
    node: Node,
    client: Client,
    store: SledStore,
    keys: KeyFile,
    domain: Domain,
    settings: settings::Settings,
    fetch_tx: mpsc::Sender<(u64, Result<Response, FetchError>)>,
    /// Inbound requests by the id the node answers with.
    requests: BTreeMap<u64, FetchResponder>,
    next_request: u64,
    /// Synthetic frames by reception time (ties broken by beacon id).
    frames: BTreeSet<(u64, [u8; 16], FrameKey)>,
    synthetic: Option<SyntheticRadio>,
    /// Synthetic meters, whose readings go to the node.
    meters: Option<meters::Meters>,
    /// Id of the last meter reading fed to the node.
    next_reading: u64,
    /// The anchoring task, when the chain is configured.
    anchoring: Option<anchoring::Anchoring>,
    /// Every region's certified summaries and the ranges to sign, when anchoring.
    anchor_book: Option<AnchorBook>,
    /// Overdue decisions asked for: when to ask again, and how many members were asked.
    decision_asks: BTreeMap<(meshd_protocol::geo::Region, u64), (u64, usize)>,
    /// Where fetched decisions come back: the member asked and its envelopes.
    decisions_tx: mpsc::Sender<(GatewayId, Vec<Envelope>)>,
    /// The radio's transmit side, when a packet forwarder is configured.
    radio: Option<radio::Radio>,
    /// Registered meters' rated capacities, W (from the chain registry).
    meter_capacities: BTreeMap<MeterId, u64>,
    /// Submitted readings waiting for the node's verdict, by reading id.
    meter_replies: BTreeMap<u64, oneshot::Sender<Result<Hash32, MeterRejection>>>,
    metrics: metrics::NodeMetrics,
    status: watch::Sender<Status>,
    peers: usize,
    /// The gateways connected at the last refresh.
    connected: BTreeSet<GatewayId>,
    last_anchor: Option<status::Anchor>,
    started_ms: u64,
}

/// A heard frame, orderable so that it can wait in a set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FrameKey {
    rssi_ddbm: i16,
    snr_ddb: i16,
    frequency_hz: u32,
    spreading_factor: u8,
    bandwidth_khz: u16,
    tmst_us: u32,
}

impl Gateway {
    /// Carries out the node's outputs until it asks to be woken; returns when.
    async fn drain(&mut self) -> anyhow::Result<u64> {
        loop {
            match self.node.poll_output() {
                Output::Timeout(at) => return Ok(at),
                Output::Publish { topic, bytes } => self.publish(topic, bytes).await,
                Output::Fetch { id, peer, request } => self.fetch(id, peer, request),
                Output::Respond { id, response } => self.respond(id, response),
                Output::Persist { id, batch } => {
                    let writes = records::batch(&batch, self.settings.node.region)?;
                    tokio::task::block_in_place(|| self.store.apply(&writes)).context(
                        "cannot persist consensus records; stopping rather than send what could be forgotten",
                    )?;
                    self.node.handle_input(Input::Persisted { now_ms: clock::now_ms(), id });
                }
                Output::TransmitBeacon { epoch, beacon_id } => {
                    // The synthetic source's "air" is the beacon report on
                    // gossip; a radio sends the frame too. The beacon is
                    // durable before this output: a transmission that fails
                    // is logged and counted, never repeated with another id.
                    tracing::debug!(epoch, beacon = %hex::encode(beacon_id.0), "beacon");
                    if let Some(radio) = self.radio.clone() {
                        tokio::spawn(async move {
                            if let Err(error) = radio.transmit(beacon_id).await {
                                tracing::warn!(epoch, %error, "the beacon was not transmitted");
                            }
                        });
                    }
                }
                // Off (`anchor_every` 0): the anchor book signs each range
                // over every region's summaries.
                Output::SignAnchor { .. } => {}
                Output::Event(Event::Finalized { epoch, round, summary }) => {
                    if let (Some(book), Some((summary, _))) =
                        (&mut self.anchor_book, self.node.finalized(epoch))
                    {
                        book.own(summary);
                    }
                    let counts = self
                        .node
                        .finalized(epoch)
                        .map(|(s, c)| (s.beacon_count, s.witness_count, c.signatures.len()));
                    let (beacons, witnesses, signatures) = counts.unwrap_or_default();
                    // Latency from the moment deciding could start; an epoch
                    // caught up after a restart is not a latency sample.
                    let now_ms = clock::now_ms();
                    let clock = &self.settings.node.clock;
                    let latency_ms = clock.decides_at_ms(epoch).ok().map(|at| now_ms.saturating_sub(at));
                    if let Some(latency_ms) = latency_ms.filter(|ms| *ms < clock.length_ms()) {
                        self.metrics.finalized_after(latency_ms);
                    }
                    tracing::info!(epoch, round, summary = %summary, beacons, witnesses, signatures, latency_ms, "epoch finalized");
                }
                Output::Event(Event::Stalled { epoch, reason }) => {
                    tracing::warn!(epoch, ?reason, "epoch stalled");
                }
                Output::MeterVerdict { id, result } => {
                    match &result {
                        Ok(attestation) => tracing::info!(id, %attestation, "meter reading attested"),
                        Err(reason) => tracing::info!(id, reason = reason.as_str(), "meter reading refused"),
                    }
                    // A submitted reading's sender gets the verdict (the
                    // attestation is durable by now); a gone sender re-sends.
                    if let Some(reply) = self.meter_replies.remove(&id) {
                        let _ = reply.send(result.map_err(MeterRejection::Rule));
                    }
                }
            }
        }
    }

    async fn publish(&mut self, topic: Topic, bytes: Vec<u8>) {
        let publish = self.client.publish(gossip_topic(topic), bytes);
        match tokio::time::timeout(GOSSIP_COMMAND_TIMEOUT, publish).await {
            Ok(Ok(_)) => {}
            // Alone on the topic (peers not connected yet): the node resends its
            // consensus messages until the epoch is decided.
            Ok(Err(error)) => tracing::debug!(%error, ?topic, "publish failed"),
            Err(_) => tracing::warn!(?topic, "publish timed out"),
        }
    }

    fn fetch(&self, id: u64, peer: GatewayId, request: Request) {
        let client = self.client.clone();
        let results = self.fetch_tx.clone();
        let region = self.settings.node.region;
        tokio::spawn(async move {
            let result = match meshd_gossip::peer_id_of(&peer) {
                Err(_) => Err(FetchError::Unreachable),
                Ok(peer) => match request {
                    Request::Reports { ids, .. } => {
                        client.fetch(peer, ids).await.map_err(fetch_error).map(|f| {
                            Response::Reports(
                                f.found.iter().filter_map(|(_, e)| codec::encode_envelope(e).ok()).collect(),
                            )
                        })
                    }
                    Request::Decision { epoch } => client
                        .fetch_decision(peer, region.0, epoch)
                        .await
                        .map_err(fetch_error)
                        .map(decision_of),
                },
            };
            let _ = results.send((id, result)).await;
        });
    }

    fn respond(&mut self, id: u64, response: Response) {
        let Some(responder) = self.requests.remove(&id) else { return };
        let envelopes = match response {
            Response::Reports(list) => list,
            Response::Decision { summary, certificate } => {
                [Message::EpochSummary(*summary), Message::Certificate(*certificate)]
                    .iter()
                    .filter_map(|m| Envelope::seal(&self.domain, &self.keys.identity, m).ok())
                    .filter_map(|e| codec::encode_envelope(&e).ok())
                    .collect()
            }
            Response::NotFound => Vec::new(),
        };
        responder.respond(envelopes);
    }

    /// Signs the anchor digest of `first..=last`; with anchoring on, publishes
    /// the signature on the global topic and offers it to the collector.
    async fn sign_anchor(&mut self, first: u64, last: u64, root: Hash32, digest: Hash32) {
        let range = meshd_chain::EpochRange { from: first, to: last };
        let signature =
            match meshd_chain::sign_anchor(&self.keys.anchor, &self.settings.node.anchor_domain, range, root)
            {
                Ok(signature) => signature,
                Err(error) => {
                    tracing::error!(%error, first, last, "cannot sign the anchor digest");
                    return;
                }
            };
        tracing::info!(first, last, root = %root, digest = %digest, "anchor digest signed");
        self.last_anchor = Some(status::Anchor {
            first_epoch: first,
            last_epoch: last,
            root: root.to_string(),
            digest: digest.to_string(),
            state: "signed".into(),
        });
        let Some(anchoring) = &self.anchoring else { return };
        if anchoring.signatures.try_send(meshd_chain::ServiceInput::Signature(signature.clone())).is_err() {
            tracing::warn!(first, last, "anchoring queue full; own signature dropped");
        }
        let message = Message::AnchorSignature(signature);
        match Envelope::seal(&self.domain, &self.keys.identity, &message)
            .and_then(|e| codec::encode_envelope(&e))
        {
            Ok(bytes) => self.publish(Topic::Global, bytes).await,
            Err(error) => tracing::error!(%error, "cannot seal the anchor signature"),
        }
    }

    /// A region's summary or certificate from the global topic, for the anchor book.
    fn on_decision(&mut self, envelope: &Envelope) -> Verdict {
        let Some(book) = &mut self.anchor_book else { return Verdict::Ignore };
        if meshd_protocol::signature::verify(&self.domain, envelope).is_err() {
            return Verdict::Reject;
        }
        let publisher = GatewayId(envelope.signer);
        let now_ms = clock::now_ms();
        let taken = match envelope.open() {
            Ok(Message::EpochSummary(summary)) => book.offer_summary(&publisher, summary, now_ms),
            Ok(Message::Certificate(certificate)) => book.offer_certificate(&publisher, certificate, now_ms),
            _ => return Verdict::Reject,
        };
        match taken {
            Ok(_) => Verdict::Accept,
            Err(refusal) => {
                self.metrics.anchor_book_refused(refusal.as_str());
                tracing::debug!(%refusal, "summary or certificate not taken for anchoring");
                // The verdict decides whether gossip relays the message: a
                // decision this gateway has already signed its range without
                // is still due at gateways that have not.
                if refusal.is_provably_invalid() {
                    Verdict::Reject
                } else if refusal.is_local() {
                    Verdict::Accept
                } else {
                    Verdict::Ignore
                }
            }
        }
    }

    /// Asks a member of each region whose decision the anchor book misses
    /// past its time (gossip may lose the published one), the next member
    /// on each retry.
    fn ask_overdue_decisions(&mut self) {
        let Some(book) = &self.anchor_book else { return };
        let now_ms = clock::now_ms();
        let overdue = book.overdue(now_ms, DECISION_ASKS);
        self.decision_asks.retain(|key, _| overdue.contains(key));
        let own = self.keys.identity.gateway_id();
        for (region, epoch) in overdue {
            let (next_ms, attempt) = self.decision_asks.get(&(region, epoch)).copied().unwrap_or((0, 0));
            if next_ms > now_ms {
                continue;
            }
            // Members this gateway is connected to first: a request to one
            // it would have to dial may take until the fetch timeout.
            let mut members: Vec<GatewayId> =
                book.members(region, epoch).into_iter().filter(|m| *m != own).collect();
            members.sort_by_key(|m| !self.connected.contains(m));
            let Some(member) = members.get(attempt % members.len().max(1)).copied() else { continue };
            self.decision_asks.insert((region, epoch), (now_ms + DECISION_RETRY_MS, attempt + 1));
            tracing::debug!(region = %format!("{:x}", region.0), epoch, %member, "asking for a decision the anchor book misses");
            let client = self.client.clone();
            let results = self.decisions_tx.clone();
            tokio::spawn(async move {
                let Ok(peer) = meshd_gossip::peer_id_of(&member) else { return };
                if let Ok(envelopes) = client.fetch_decision(peer, region.0, epoch).await {
                    let _ = results.send((member, envelopes)).await;
                }
            });
        }
    }

    /// A decision fetched from a region's member: offered to the anchor
    /// book as if it came from the global topic.
    async fn on_fetched_decision(&mut self, member: &GatewayId, envelopes: &[Envelope]) {
        for envelope in envelopes.iter().filter(|e| e.signer == member.0) {
            let _ = self.on_decision(envelope);
        }
        self.sign_ready_ranges().await;
    }

    /// Stores and signs every range the anchor book has ready.
    async fn sign_ready_ranges(&mut self) {
        let now_ms = clock::now_ms();
        while let Some(ready) = self.anchor_book.as_mut().and_then(|book| book.poll(now_ms)) {
            let range = ready.range;
            if !ready.missing.is_empty() {
                let missing: Vec<String> =
                    ready.missing.iter().map(|(region, epoch)| format!("{:x}@{epoch}", region.0)).collect();
                tracing::warn!(%range, missing = %missing.join(","), "signing the range without the summaries still missing");
            }
            let set = meshd_storage::AnchorSet {
                from_epoch: range.from,
                to_epoch: range.to,
                root: ready.root,
                leaves: ready.leaves,
            };
            // Durable before it is signed: a restart signs this root again, never another.
            if let Err(error) =
                tokio::task::block_in_place(|| meshd_storage::StoreExt::put_anchor_set(&self.store, &set))
            {
                tracing::error!(%error, %range, "cannot store the range's summary leaves; not signing it");
                continue;
            }
            tracing::info!(%range, leaves = set.leaves.len(), "range ready to anchor");
            self.sign_anchor(range.from, range.to, ready.root, ready.digest).await;
        }
        if let Some(book) = &self.anchor_book {
            self.metrics.anchor_book(&book.metrics());
        }
    }

    /// After a start: the ranges signed before are never signed again (the
    /// last one's signature is published again, in case the quorum still
    /// lacks it); collecting goes on with the current epoch's range, with
    /// this region's summaries the node restored. Other regions' summaries
    /// of that range decided while the gateway was down are not on gossip
    /// any more: they are asked for once overdue ([`Gateway::ask_overdue_decisions`]).
    async fn resume_anchoring(&mut self) {
        let Some(book) = &mut self.anchor_book else { return };
        let current = self.settings.node.clock.epoch_at(clock::now_ms()).unwrap_or(0);
        let latest = match meshd_storage::StoreExt::latest_anchor_set(&self.store) {
            Ok(latest) => latest,
            Err(error) => {
                tracing::warn!(%error, "cannot read the last signed anchor range");
                None
            }
        };
        if let Some(set) = &latest {
            book.skip_before(set.to_epoch + 1);
        }
        // This region's summaries the node restored from the store.
        let from = book.next_range();
        for epoch in from..=current {
            if let Some((summary, _)) = self.node.finalized(epoch) {
                book.own(summary);
            }
        }
        if let Some(set) = latest {
            let range = meshd_chain::EpochRange { from: set.from_epoch, to: set.to_epoch };
            let digest = self.settings.node.anchor_domain.anchor_digest(range, &set.root);
            tracing::info!(%range, root = %set.root, "publishing the last signed anchor again");
            self.sign_anchor(set.from_epoch, set.to_epoch, set.root, digest).await;
        }
    }

    /// A committee member's anchor signature from the global topic.
    fn on_anchor_signature(&mut self, envelope: &Envelope) -> Verdict {
        if meshd_protocol::signature::verify(&self.domain, envelope).is_err() {
            return Verdict::Reject;
        }
        let Ok(Message::AnchorSignature(signature)) = envelope.open() else { return Verdict::Reject };
        match &self.anchoring {
            Some(anchoring) => {
                // The collector checks the anchor signature itself; a full queue
                // drops it (members re-publish on restart, and a quorum needs
                // only 2f+1 of them).
                let _ = anchoring.signatures.try_send(meshd_chain::ServiceInput::Signature(signature));
                Verdict::Accept
            }
            None => Verdict::Ignore,
        }
    }

    fn on_anchor_event(&mut self, event: meshd_chain::ServiceEvent) {
        let (range, state) = match event {
            meshd_chain::ServiceEvent::QuorumReached { range, root } => {
                tracing::info!(%range, %root, "anchor quorum reached");
                (range, "quorum reached".to_owned())
            }
            meshd_chain::ServiceEvent::Anchored { range, root, outcome } => {
                tracing::info!(%range, %root, block = outcome.block(), "anchored");
                // Where `meshd prove` finds the range an epoch was anchored in.
                let tx_hash = match &outcome {
                    meshd_chain::AnchorOutcome::Anchored { tx_hash, .. } => Some(Hash32(tx_hash.0)),
                    _ => None,
                };
                let record = meshd_storage::AnchorRecord {
                    start_epoch: range.from,
                    end_epoch: range.to.saturating_add(1),
                    root,
                    tx_hash,
                    block_number: Some(outcome.block()),
                };
                if let Err(error) = meshd_storage::StoreExt::put_anchor(&self.store, &record) {
                    tracing::warn!(%error, %range, "cannot store the anchor record");
                }
                (range, format!("anchored in block {}", outcome.block()))
            }
            meshd_chain::ServiceEvent::SubmitFailed { range, error } => {
                tracing::warn!(%range, %error, "anchor submission failed");
                (range, format!("submission failed: {error}"))
            }
            meshd_chain::ServiceEvent::Refused(refused) => {
                tracing::debug!(%refused, "anchor signature refused");
                return;
            }
            _ => return,
        };
        if let Some(anchor) = &mut self.last_anchor
            && anchor.first_epoch == range.from
            && anchor.last_epoch == range.to
        {
            anchor.state = state;
        }
    }

    fn request(&mut self, from: &PeerId, request: Request, responder: FetchResponder) {
        let Some(from) = gateway_of(from) else { return responder.respond(Vec::new()) };
        while self.requests.len() >= MAX_PENDING_REQUESTS {
            if let Some((_, oldest)) = self.requests.pop_first() {
                oldest.respond(Vec::new());
            }
        }
        self.next_request += 1;
        let id = self.next_request;
        self.requests.insert(id, responder);
        self.node.handle_input(Input::FetchRequest { now_ms: clock::now_ms(), id, from, request });
    }

    async fn on_gossip_event(&mut self, event: GossipEvent) {
        match event {
            GossipEvent::MessageReceived { id, envelope, .. }
                if envelope.kind == meshd_protocol::message::Kind::AnchorSignature =>
            {
                let verdict = self.on_anchor_signature(&envelope);
                let report = self.client.report_validation(id, verdict);
                let _ = tokio::time::timeout(GOSSIP_COMMAND_TIMEOUT, report).await;
            }
            GossipEvent::MessageReceived { id, envelope, .. }
                if self.anchor_book.is_some()
                    && matches!(
                        envelope.kind,
                        meshd_protocol::message::Kind::EpochSummary
                            | meshd_protocol::message::Kind::Certificate
                    ) =>
            {
                let verdict = self.on_decision(&envelope);
                let report = self.client.report_validation(id, verdict);
                let _ = tokio::time::timeout(GOSSIP_COMMAND_TIMEOUT, report).await;
                self.sign_ready_ranges().await;
            }
            GossipEvent::MessageReceived { id, source, envelope, .. } => {
                let now_ms = clock::now_ms();
                let verdict = match (gateway_of(&source), codec::encode_envelope(&envelope)) {
                    (Some(from), Ok(bytes)) => {
                        let before = self.node.metrics().clone();
                        self.node.handle_input(Input::Gossip { now_ms, from, bytes });
                        verdict(&before, self.node.metrics())
                    }
                    _ => Verdict::Reject,
                };
                if verdict != Verdict::Reject
                    && let Some(radio) = &self.synthetic
                    && let Some((at, heard)) = radio.hear(&envelope, now_ms)
                    && self.frames.len() < MAX_PENDING_FRAMES
                {
                    let key = FrameKey {
                        rssi_ddbm: heard.rssi_ddbm,
                        snr_ddb: heard.snr_ddb,
                        frequency_hz: heard.frequency_hz,
                        spreading_factor: heard.datarate.spreading_factor,
                        bandwidth_khz: heard.datarate.bandwidth_khz,
                        tmst_us: heard.tmst_us,
                    };
                    self.frames.insert((at, heard.beacon_id.0, key));
                }
                let report = self.client.report_validation(id, verdict);
                let _ = tokio::time::timeout(GOSSIP_COMMAND_TIMEOUT, report).await;
            }
            GossipEvent::FetchRequested { peer, ids, responder } => {
                let epoch = self.current_epoch();
                self.request(&peer, Request::Reports { epoch, ids }, responder);
            }
            GossipEvent::DecisionRequested { peer, region, epoch, responder } => {
                if region == self.settings.node.region.0 {
                    self.request(&peer, Request::Decision { epoch }, responder);
                } else {
                    responder.respond(Vec::new());
                }
            }
            GossipEvent::PeerConnected { peer, .. } => tracing::debug!(%peer, "peer connected"),
            GossipEvent::PeerDisconnected { peer } => tracing::debug!(%peer, "peer disconnected"),
            other => tracing::debug!(?other, "network event"),
        }
    }

    /// Feeds the synthetic frames whose reception time has come.
    fn deliver_frames(&mut self) {
        let now_ms = clock::now_ms();
        while let Some((at, ..)) = self.frames.first()
            && *at <= now_ms
        {
            let Some((at, beacon_id, key)) = self.frames.pop_first() else { break };
            let heard = meshd_node::Heard {
                beacon_id: meshd_protocol::message::BeaconId(beacon_id),
                rssi_ddbm: key.rssi_ddbm,
                snr_ddb: key.snr_ddb,
                frequency_hz: key.frequency_hz,
                datarate: meshd_protocol::message::DataRate {
                    spreading_factor: key.spreading_factor,
                    bandwidth_khz: key.bandwidth_khz,
                },
                tmst_us: key.tmst_us,
            };
            self.node.handle_input(Input::BeaconHeard { now_ms: at.max(now_ms), heard });
        }
    }

    /// Feeds the synthetic meters' readings of the interval that just ended.
    fn read_meters(&mut self) {
        let now_ms = clock::now_ms();
        let Some(meters) = &mut self.meters else { return };
        let capacity_w = meters.peak_w();
        for reading in meters.due(now_ms) {
            self.next_reading += 1;
            let id = self.next_reading;
            self.node.handle_input(Input::MeterReading { now_ms, id, reading, capacity_w });
        }
    }

    /// Hands a reading submitted over HTTP or MQTT to the node, with its
    /// meter's registered capacity; the verdict answers it.
    fn submit_reading(&mut self, submission: MeterSubmission) {
        let MeterSubmission { reading, reply } = submission;
        let Ok(Message::MeterReading(parsed)) = reading.open() else {
            // The ingest checked the envelope; nothing else reaches here.
            let _ = reply.send(Err(MeterRejection::Unavailable));
            return;
        };
        let Some(&capacity_w) = self.meter_capacities.get(&parsed.meter) else {
            let _ = reply.send(Err(MeterRejection::UnknownMeter));
            return;
        };
        if self.meter_replies.len() >= MAX_PENDING_READINGS {
            let _ = reply.send(Err(MeterRejection::Unavailable));
            return;
        }
        self.next_reading += 1;
        let id = self.next_reading;
        self.meter_replies.insert(id, reply);
        self.node.handle_input(Input::MeterReading { now_ms: clock::now_ms(), id, reading, capacity_w });
    }

    async fn refresh_peers(&mut self) {
        if let Ok(Ok(snapshot)) = tokio::time::timeout(GOSSIP_COMMAND_TIMEOUT, self.client.snapshot()).await {
            self.peers = snapshot.connected_peers.len();
            self.connected = snapshot.connected_peers.iter().filter_map(gateway_of).collect();
        }
    }

    fn current_epoch(&self) -> u64 {
        self.settings.node.clock.epoch_at(clock::now_ms()).unwrap_or(0)
    }

    fn publish_status(&mut self) {
        let now_ms = clock::now_ms();
        let current = self.current_epoch();
        let config = &self.settings.node;
        let last = self.node.finalized_epochs().max();
        let oldest_open = last.map_or(config.first_epoch, |e| e + 1).max(config.first_epoch);
        let deciding = (oldest_open <= current).then(|| status::EpochState {
            epoch: oldest_open,
            state: describe(self.node.status(oldest_open)),
        });
        let stalled = matches!(deciding.as_ref().map(|d| d.state.starts_with("stalled")), Some(true));
        self.metrics.update(self.node.metrics());
        self.metrics.epochs(current, last, stalled);
        let last_finalized = last.and_then(|epoch| {
            let (summary, certificate) = self.node.finalized(epoch)?;
            Some(status::Finalized {
                epoch,
                summary_hash: codec::summary_hash(summary).map(|h| h.to_string()).unwrap_or_default(),
                round: certificate.round,
                signatures: certificate.signatures.len(),
                beacons: summary.beacon_count,
                witnesses: summary.witness_count,
                attestations: summary.attestation_count,
                energy_wh: summary.energy_wh,
            })
        });
        let own = self.node.id();
        let status = Status {
            gateway_id: own.to_string(),
            anchor_address: self.keys.anchor.address().to_string(),
            network: config.network.clone(),
            region: format!("{:x}", config.region.0),
            location: format!("{:x}", self.settings.location.0),
            committee_size: self.node.committee_members(current).len(),
            committee_member: self.node.committee_members(current).contains(&own),
            peers: self.peers,
            current_epoch: current,
            deciding,
            last_finalized,
            finalized_epochs: self.node.finalized_epochs().count(),
            last_anchor: self.last_anchor.clone(),
            uptime_s: now_ms.saturating_sub(self.started_ms) / 1000,
        };
        self.status.send_replace(status);
    }
}

fn describe(status: meshd_node::Status) -> String {
    match status {
        meshd_node::Status::Open => "open".into(),
        meshd_node::Status::Grace => "grace".into(),
        meshd_node::Status::Deciding(round) => format!("deciding (round {round})"),
        meshd_node::Status::Finalized => "finalized".into(),
        meshd_node::Status::Stalled(reason) => format!("stalled: {reason:?}"),
    }
}

/// The gossip verdict on a message from what the node made of it.
fn verdict(before: &meshd_node::Metrics, after: &meshd_node::Metrics) -> Verdict {
    let grew = |code: &str| {
        after.refused.get(code).copied().unwrap_or(0) > before.refused.get(code).copied().unwrap_or(0)
    };
    if PROVABLE_FAULTS.iter().any(|code| grew(code)) {
        Verdict::Reject
    } else if after.refused.iter().any(|(code, n)| before.refused.get(code).copied().unwrap_or(0) < *n)
        || after.duplicates > before.duplicates
    {
        Verdict::Ignore
    } else {
        Verdict::Accept
    }
}

fn fetch_error(error: meshd_gossip::FetchError) -> FetchError {
    match error {
        meshd_gossip::FetchError::Failed(reason) if reason.contains("imeout") => FetchError::Timeout,
        _ => FetchError::Unreachable,
    }
}

/// A decision response from the envelopes a peer returned.
fn decision_of(envelopes: Vec<Envelope>) -> Response {
    let mut summary = None;
    let mut certificate = None;
    for envelope in envelopes {
        match envelope.open() {
            Ok(Message::EpochSummary(s)) => summary = Some(s),
            Ok(Message::Certificate(c)) => certificate = Some(c),
            _ => {}
        }
    }
    match (summary, certificate) {
        (Some(summary), Some(certificate)) => {
            Response::Decision { summary: Box::new(summary), certificate: Box::new(certificate) }
        }
        _ => Response::NotFound,
    }
}
