//! Real-stack mode: every gateway runs the real gossip layer
//! ([`meshd_gossip`], rust-libp2p gossipsub) in this process over libp2p's
//! memory transport, in wall-clock time. Each node verifies every message's
//! envelope signature before accepting it (strict validation, as the node
//! does). Messages are published round-robin on the global topic; the run
//! measures delivery, latency percentiles and memory per node.
//!
//! With [`Stack::Plain`] the same run drives plain gossipsub nodes instead
//! (see `plain.rs`), the baseline the meshd stack is measured against.
//!
//! This mode reads the wall clock (tokio's `Instant`): measuring real
//! latency is its purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshd_gossip::config::{KademliaMode, Transport};
use meshd_gossip::{Client, Config, Event, Multiaddr, PeerId, Topic, Verdict};
use meshd_protocol::envelope::Domain;
use meshd_protocol::geo::Location;
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{BeaconId, DataRate, Message, WitnessReport};
use meshd_protocol::{Envelope, Hash32, codec, keccak256, signature};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::{GENESIS_MS, NETWORK};
use crate::plain;
use crate::report::{Cpu, Gossip, Memory, Report};
use crate::scenario::Scenario;
use crate::stats::Histogram;
use crate::world::derived;

/// Earlier nodes each new node dials: a few, so the overlay is a random
/// graph rather than a star around one bootstrap node. Four dials give an
/// average degree of eight, above gossipsub's mesh degree (6), so meshes
/// fill, while every node keeps at least four peers to receive from.
const BOOTSTRAP_PEERS: usize = 4;

/// Pause between two formation checks.
const FORM_POLL: Duration = Duration::from_millis(500);

/// When each node accepted each message, by message id.
pub(crate) type Arrivals = Arc<Mutex<HashMap<Hash32, Vec<Instant>>>>;

/// Which gossip stack every node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stack {
    /// The real `meshd_gossip` layer, as the daemon runs it.
    #[default]
    Meshd,
    /// Plain gossipsub with libp2p message signing and strict validation:
    /// the baseline.
    Plain,
}

impl Stack {
    fn name(self) -> &'static str {
        match self {
            Stack::Meshd => "meshd gossip stack",
            Stack::Plain => "plain gossipsub baseline",
        }
    }
}

/// How the run talks to a node of either stack.
enum Handle {
    Meshd(Client),
    Plain(mpsc::Sender<plain::Command>),
}

impl Handle {
    async fn publish(&self, bytes: Vec<u8>) -> bool {
        match self {
            Handle::Meshd(client) => client.publish(Topic::Global, bytes).await.is_ok(),
            Handle::Plain(commands) => {
                let (tx, rx) = oneshot::channel();
                commands.send(plain::Command::Publish(bytes, tx)).await.is_ok() && rx.await.unwrap_or(false)
            }
        }
    }

    async fn meshed(&self) -> bool {
        match self {
            Handle::Meshd(client) => client.snapshot().await.is_ok_and(|sn| !sn.mesh_peers.is_empty()),
            Handle::Plain(commands) => {
                let (tx, rx) = oneshot::channel();
                commands.send(plain::Command::Meshed(tx)).await.is_ok() && rx.await.unwrap_or(false)
            }
        }
    }
}

struct RealNode {
    handle: Arc<Handle>,
    key: Keypair,
    address: Multiaddr,
    shutdown: CancellationToken,
}

/// Why real-stack mode could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RealError {
    /// The tokio runtime could not start.
    #[error("tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// A gossip node could not start.
    #[error("gossip node {node}: {reason}")]
    Node {
        /// Its index.
        node: usize,
        /// Why.
        reason: String,
    },
    /// The overlay did not form in time.
    #[error("the overlay did not form within {0} s (real_stack.form_timeout_s)")]
    NotFormed(u64),
}

/// How often a simulated node runs its maintenance (redial when alone). The
/// overlay is built from the bootstrap dials, so it only needs to run
/// rarely: with thousands of nodes, every second (as in `Config::local`)
/// was a standing load that starved gossip.
const SIM_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// A node's gossip config: the real stack over the memory transport, with
/// what a memory-transport simulation does not need turned off. The overlay
/// is the random graph of [`BOOTSTRAP_PEERS`] dials per node, as a plain
/// gossipsub setup builds it, so there is no Kademlia (its walks and routing
/// tables were a standing load that grew with the node count); memory
/// addresses always work, so no AutoNAT and no relay client or hole
/// punching; no NAT mapping to keep alive, so no ping; every peer is of this
/// network and nothing fetches, so no identify and no request-response
/// protocols. Each protocol left out is one handler less on every
/// connection, polled on every frame. Gossipsub with peer scoring and the
/// node's verdict on every message runs as in the daemon.
fn config(bootstrap: Vec<Multiaddr>, mesh: Option<[usize; 3]>) -> Config {
    let defaults = Config::local(NETWORK);
    let [mesh_n, mesh_n_low, mesh_n_high] =
        mesh.unwrap_or([defaults.mesh_n, defaults.mesh_n_low, defaults.mesh_n_high]);
    Config {
        mesh_n,
        mesh_n_low,
        mesh_n_high,
        transport: Transport::Memory { plaintext: true },
        listen: "/memory/0".parse().into_iter().collect(),
        bootstrap,
        kademlia_mode: KademliaMode::Off,
        target_peers: BOOTSTRAP_PEERS,
        autonat_client: false,
        autonat_server: false,
        relay_client: false,
        identify: false,
        ping: false,
        request_protocols: false,
        maintenance_interval: SIM_MAINTENANCE_INTERVAL,
        ..defaults
    }
}

async fn start(
    i: usize,
    seed: u64,
    stack: Stack,
    bootstrap: Vec<Multiaddr>,
    mesh: Option<[usize; 3]>,
    arrivals: Arrivals,
) -> Result<RealNode, RealError> {
    let secret = keccak256([&seed.to_le_bytes()[..], &(i as u64).to_le_bytes()[..], b"sim-key"].concat()).0;
    let key = Keypair::from_secret(secret);
    if stack == Stack::Plain {
        let shutdown = CancellationToken::new();
        let node = plain::start(i, secret, bootstrap, mesh, arrivals, shutdown.clone()).await?;
        return Ok(RealNode {
            handle: Arc::new(Handle::Plain(node.commands)),
            key,
            address: node.address,
            shutdown,
        });
    }
    let config = config(bootstrap, mesh);
    let mut registry = Registry::default();
    let (client, mut events, event_loop) = meshd_gossip::new(&key, config, &mut registry)
        .map_err(|e| RealError::Node { node: i, reason: e.to_string() })?;
    let peer_id: PeerId = event_loop.local_peer_id();
    let shutdown = CancellationToken::new();
    tokio::spawn(event_loop.run(shutdown.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Multiaddr>(1);
    let reporter = client.clone();
    let domain = Domain::new(NETWORK);
    tokio::spawn(async move {
        let _registry = registry;
        let mut tx = Some(tx);
        while let Some(event) = events.recv().await {
            match event {
                Event::MessageReceived { id, envelope, .. } => {
                    let verdict = if signature::verify(&domain, &envelope).is_ok() {
                        if let Ok(mut a) = arrivals.lock() {
                            a.entry(id).or_default().push(Instant::now());
                        }
                        Verdict::Accept
                    } else {
                        Verdict::Reject
                    };
                    let _ = reporter.report_validation(id, verdict).await;
                }
                Event::ListenAddressAdded { address } => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(address).await;
                    }
                }
                _ => {}
            }
        }
    });
    let address = rx.recv().await.ok_or(RealError::Node { node: i, reason: "never listened".into() })?;
    let address: Multiaddr = format!("{address}/p2p/{peer_id}")
        .parse()
        .map_err(|e| RealError::Node { node: i, reason: format!("address: {e}") })?;
    client.subscribe(Topic::Global).await.map_err(|e| RealError::Node { node: i, reason: e.to_string() })?;
    Ok(RealNode { handle: Arc::new(Handle::Meshd(client)), key, address, shutdown })
}

fn message(key: &Keypair, n: u64) -> Option<(Hash32, Vec<u8>)> {
    let report = Message::WitnessReport(WitnessReport {
        region: meshd_protocol::geo::Region(0x0852_8308_3fff_ffff),
        epoch: n,
        beacon_id: BeaconId([1; 16]),
        location: Location(0x08c2_8308_3000_0fff),
        antenna_gain_ddbi: 30,
        rssi_ddbm: -1000,
        snr_ddb: 50,
        frequency_hz: 868_100_000,
        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
        received_at_ms: GENESIS_MS + n,
        tmst_us: 0,
    });
    let envelope = Envelope::seal(&Domain::new(NETWORK), key, &report).ok()?;
    Some((envelope.id().ok()?, codec::encode_envelope(&envelope).ok()?))
}

/// Runs the scenario's gateways on the real gossip stack.
pub fn run(
    s: &Scenario,
    threads: usize,
    stack: Stack,
    on_progress: &(dyn Fn(&str) + Sync),
) -> Result<Report, RealError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(RealError::Runtime)?;
    runtime.block_on(run_async(s, stack, on_progress))
}

async fn run_async(
    s: &Scenario,
    stack: Stack,
    on_progress: &(dyn Fn(&str) + Sync),
) -> Result<Report, RealError> {
    let n = s.placement.gateways;
    let r = &s.real_stack;
    let arrivals: Arrivals = Arc::default();
    let mut rng = derived(s.seed, b"real-stack", 0);
    let mut nodes: Vec<RealNode> = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let bootstrap: Vec<Multiaddr> = (0..BOOTSTRAP_PEERS.min(i))
            .map(|_| nodes[(rng.next_u64() % i as u64) as usize].address.clone())
            .collect();
        nodes.push(start(i, s.seed, stack, bootstrap, r.mesh, arrivals.clone()).await?);
        if i % 500 == 499 {
            on_progress(&format!("{} of {n} nodes started", i + 1));
        }
    }
    // Formed: every node has a mesh peer. Each round asks only the nodes not
    // yet meshed, all at once (one task per node), instead of every node in
    // turn: with thousands of nodes a sequential round took longer than the
    // mesh took to form. A final round confirms every node at once.
    // The timeout counts from the last node's start: starting thousands of
    // nodes one after the other takes a while of its own, reported apart.
    let started_s = started.elapsed().as_secs_f64();
    let form_start = Instant::now();
    let deadline = form_start + Duration::from_secs(r.form_timeout_s);
    let mut waiting: Vec<usize> = (0..n).collect();
    loop {
        let all = waiting.is_empty();
        let asked: Vec<usize> = if all { (0..n).collect() } else { std::mem::take(&mut waiting) };
        let checks: Vec<(usize, tokio::task::JoinHandle<bool>)> = asked
            .iter()
            .map(|&i| {
                let handle = nodes[i].handle.clone();
                let check = async move { handle.meshed().await };
                (i, tokio::spawn(check))
            })
            .collect();
        for (i, check) in checks {
            if !check.await.unwrap_or(false) {
                waiting.push(i);
            }
        }
        on_progress(&format!("{} of {n} nodes meshed", n - waiting.len()));
        if all && waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for node in &nodes {
                node.shutdown.cancel();
            }
            return Err(RealError::NotFormed(r.form_timeout_s));
        }
        if !waiting.is_empty() {
            tokio::time::sleep(FORM_POLL).await;
        }
    }
    let formed_s = form_start.elapsed().as_secs_f64();
    let cpu_start = crate::report::process_cpu_s();
    let mut published = Vec::with_capacity(r.messages);
    for k in 0..r.messages {
        let node = &nodes[k * 7919 % n];
        let Some((id, bytes)) = message(&node.key, k as u64) else { continue };
        let at = Instant::now();
        if node.handle.publish(bytes).await {
            published.push((id, at));
        }
        tokio::time::sleep(Duration::from_millis(r.publish_interval_ms)).await;
        if k % 10 == 9 {
            on_progress(&format!("{} of {} messages published", k + 1, r.messages));
        }
    }
    tokio::time::sleep(Duration::from_secs(r.drain_s)).await;
    let message_phase_s = crate::report::process_cpu_s() - cpu_start;
    let wall_s = started.elapsed().as_secs_f64();
    let mut latency = Histogram::default();
    let (mut intended, mut delivered) = (0u64, 0u64);
    if let Ok(arrivals) = arrivals.lock() {
        for (id, at) in &published {
            intended += n as u64 - 1;
            for t in arrivals.get(id).into_iter().flatten() {
                delivered += 1;
                latency.record(t.duration_since(*at).as_millis() as u64);
            }
        }
    }
    for node in &nodes {
        node.shutdown.cancel();
    }
    let peak = crate::report::peak_rss_bytes();
    Ok(Report {
        scenario: s.name.clone(),
        mode: format!(
            "real-stack, {} (nodes started in {started_s:.1} s, overlay formed {formed_s:.1} s later)",
            stack.name()
        ),
        seed: s.seed,
        gateways: n,
        wall_s,
        gossip: Gossip {
            intended,
            delivered,
            delivery_ratio: if intended == 0 { 1.0 } else { delivered as f64 / intended as f64 },
            latency: latency.summary(),
        },
        memory: Memory { peak_rss_bytes: peak, per_node_bytes: peak / n.max(1) as u64 },
        cpu: Cpu { message_phase_s, per_delivery_us: message_phase_s * 1e6 / delivered.max(1) as f64 },
        ..Report::default()
    })
}
