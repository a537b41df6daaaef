//! Real-stack mode: every gateway runs the real gossip layer
//! ([`meshd_gossip`], rust-libp2p gossipsub) in this process over libp2p's
//! memory transport, in wall-clock time. Each node verifies every message's
//! envelope signature before accepting it (strict validation, as the node
//! does). Once every node listens, each dials a few others drawn at
//! random; when every node has a mesh peer, messages are published
//! round-robin on the global topic, and the run measures delivery, latency
//! percentiles, memory per node and CPU per delivery.
//!
//! With [`Stack::Plain`] the same run drives plain gossipsub nodes instead
//! (see `plain.rs`), the baseline the meshd stack is measured against.
//!
//! This mode reads the wall clock (tokio's `Instant`): measuring real
//! latency is its purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use meshd_node::sim::Rng;

/// Peers each node dials once every node has started, drawn uniformly from
/// all the others, so the overlay is a random graph of near-even degree, as
/// peer discovery over a DHT gives, rather than a star around one bootstrap
/// node. Four dials give an average degree of eight, above gossipsub's mesh
/// degree (6), so meshes fill, while every node keeps at least four peers
/// to receive from.
const DIALS_PER_NODE: usize = 4;

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

    async fn dial(&self, address: Multiaddr) -> bool {
        match self {
            Handle::Meshd(client) => client.dial(address).await.is_ok(),
            Handle::Plain(commands) => {
                let (tx, rx) = oneshot::channel();
                commands.send(plain::Command::Dial(address, tx)).await.is_ok() && rx.await.unwrap_or(false)
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
/// overlay is built from the run's dials, so it only needs to run
/// rarely: with thousands of nodes, every second (as in `Config::local`)
/// was a standing load that starved gossip.
const SIM_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// A node's gossip config: the real stack over the memory transport, with
/// what a memory-transport simulation does not need turned off. The overlay
/// is the random graph of [`DIALS_PER_NODE`] dials per node, the same for
/// both stacks, so there is no Kademlia (its walks and routing
/// tables were a standing load that grew with the node count); memory
/// addresses always work, so no AutoNAT and no relay client or hole
/// punching; no NAT mapping to keep alive, so no ping; every peer is of this
/// network and nothing fetches, so no identify and no request-response
/// protocols. Each protocol left out is one handler less on every
/// connection, polled on every frame. Gossipsub with peer scoring and the
/// node's verdict on every message runs as in the daemon.
fn config(mesh: Option<[usize; 3]>) -> Config {
    let defaults = Config::local(NETWORK);
    let [mesh_n, mesh_n_low, mesh_n_high] =
        mesh.unwrap_or([defaults.mesh_n, defaults.mesh_n_low, defaults.mesh_n_high]);
    Config {
        mesh_n,
        mesh_n_low,
        mesh_n_high,
        target_peers: DIALS_PER_NODE,
        maintenance_interval: SIM_MAINTENANCE_INTERVAL,
        ..defaults.gossip_only_in_memory()
    }
}

async fn start(
    i: usize,
    host: &tokio::runtime::Handle,
    seed: u64,
    stack: Stack,
    mesh: Option<[usize; 3]>,
    arrivals: Arrivals,
) -> Result<RealNode, RealError> {
    let secret = keccak256([&seed.to_le_bytes()[..], &(i as u64).to_le_bytes()[..], b"sim-key"].concat()).0;
    let key = Keypair::from_secret(secret);
    if stack == Stack::Plain {
        let shutdown = CancellationToken::new();
        let node = plain::start(i, host, secret, mesh, arrivals, shutdown.clone()).await?;
        return Ok(RealNode {
            handle: Arc::new(Handle::Plain(node.commands)),
            key,
            address: node.address,
            shutdown,
        });
    }
    let config = config(mesh);
    let mut registry = Registry::default();
    let (client, mut events, event_loop) = meshd_gossip::new(&key, config, &mut registry)
        .map_err(|e| RealError::Node { node: i, reason: e.to_string() })?;
    let peer_id: PeerId = event_loop.local_peer_id();
    let shutdown = CancellationToken::new();
    host.spawn(event_loop.run(shutdown.clone()));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Multiaddr>(1);
    let reporter = client.clone();
    let domain = Domain::new(NETWORK);
    host.spawn(async move {
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

/// The run's dials `(from, to)`: [`DIALS_PER_NODE`] per node, to distinct
/// others drawn uniformly, each pair of nodes connected at most once.
fn dials(n: usize, rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut linked = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n * DIALS_PER_NODE);
    for i in 0..n {
        // A node can dial at most everyone else; with few nodes most pairs
        // are taken by then, so the draws stop when no partner is left.
        let mut wanted = DIALS_PER_NODE.min(n - 1);
        let mut attempts = 0;
        while wanted > 0 && attempts < 64 * DIALS_PER_NODE {
            attempts += 1;
            let j = (rng.next_u64() % n as u64) as usize;
            if j != i && linked.insert((i.min(j), i.max(j))) {
                out.push((i, j));
                wanted -= 1;
            }
        }
    }
    out
}

/// Gives the timer thread that all nodes share the lowest scheduling
/// priority (nice 19); answers how many threads were changed.
///
/// Gossipsub arms a timer (`futures_timer::Delay`) for every copy it queues
/// and drops it once the copy is sent; each arm and each drop wakes the one
/// helper thread that keeps all such timers. With thousands of nodes in one
/// process that thread was woken tens of thousands of times a second and
/// preempted the threads running the nodes each time: a sixth of the run's CPU
/// went to it, its wake-ups and the context switches (5,000 nodes, one
/// message every 2 s). At nice 19 it no longer preempts a node thread; it runs
/// when that thread's time slice ends, and keeps every timer armed
/// meanwhile in one pass, as a woken timer thread marks itself awake and
/// later arms do not wake it again. Its timers (gossipsub's heartbeat,
/// the queue timeouts) fire a little later under load, which a daemon with
/// a few dozen peers never sees.
#[cfg(target_os = "linux")]
fn calm_timer_thread() -> usize {
    // The thread starts with the first timer ever armed, and names itself
    // once it runs: look again for a while if it has not yet.
    drop(futures_timer::Delay::new(Duration::ZERO));
    for _ in 0..TIMER_THREAD_LOOKS {
        let changed = lower_priority_of(TIMER_THREAD);
        if changed > 0 {
            return changed;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    0
}

/// Gives every thread of this process named `name` nice 19; answers how
/// many it changed.
#[cfg(target_os = "linux")]
fn lower_priority_of(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    let mut changed = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let tid = task.file_name().to_str().and_then(|t| t.parse::<i32>().ok());
        if comm.trim_end() == name
            && let Some(pid) = tid.and_then(rustix::process::Pid::from_raw)
            && rustix::process::setpriority_process(Some(pid), LOWEST_PRIORITY).is_ok()
        {
            changed += 1;
        }
    }
    changed
}

/// How many times, a millisecond apart, to look for the new timer thread
/// under its name: a thread just spawned takes microseconds to name itself,
/// a loaded machine may take longer; a second is plenty.
#[cfg(target_os = "linux")]
const TIMER_THREAD_LOOKS: usize = 1_000;

/// Elsewhere the timer thread keeps its priority.
#[cfg(not(target_os = "linux"))]
fn calm_timer_thread() -> usize {
    0
}

/// The name `futures_timer` gives its helper thread.
#[cfg(target_os = "linux")]
const TIMER_THREAD: &str = "futures-timer";

/// Nice 19: the weakest claim on a core an ordinary thread can have.
#[cfg(target_os = "linux")]
const LOWEST_PRIORITY: i32 = 19;

/// Runs the scenario's gateways on the real gossip stack.
pub fn run(
    s: &Scenario,
    threads: usize,
    stack: Stack,
    on_progress: &(dyn Fn(&str) + Sync),
) -> Result<Report, RealError> {
    let hosts = Hosts::start(threads.max(1))?;
    let coordinator =
        tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(RealError::Runtime)?;
    let timer_calmed = calm_timer_thread() > 0;
    coordinator.block_on(run_async(s, stack, &hosts.handles, timer_calmed, on_progress))
}

/// The threads the nodes run on: one single-threaded tokio runtime per
/// thread, each node (its swarm, its connections, its validator) on one of
/// them.
///
/// One runtime per thread rather than one work-stealing runtime over all:
/// a node's tasks wake each other on every gossip copy, and on one thread
/// that wake is a push onto a local queue, where a work-stealing runtime
/// pays for stealing and cross-thread notification. The runtimes have a
/// timer but no I/O driver (the memory transport needs none), so waking a
/// task on another thread's runtime costs a system call only when that
/// thread sleeps.
struct Hosts {
    /// Where to spawn, one handle per thread.
    handles: Vec<tokio::runtime::Handle>,
    /// Ends every thread's runtime.
    stop: CancellationToken,
    /// The threads, joined on drop.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hosts {
    fn start(count: usize) -> Result<Hosts, RealError> {
        let mut hosts = Hosts { handles: Vec::new(), stop: CancellationToken::new(), threads: Vec::new() };
        for k in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(RealError::Runtime)?;
            hosts.handles.push(runtime.handle().clone());
            let stop = hosts.stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sim-host-{k}"))
                .spawn(move || runtime.block_on(stop.cancelled()))
                .map_err(RealError::Runtime)?;
            hosts.threads.push(thread);
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

async fn run_async(
    s: &Scenario,
    stack: Stack,
    hosts: &[tokio::runtime::Handle],
    timer_calmed: bool,
    on_progress: &(dyn Fn(&str) + Sync),
) -> Result<Report, RealError> {
    let n = s.placement.gateways;
    let r = &s.real_stack;
    let arrivals: Arrivals = Arc::default();
    let mut rng = derived(s.seed, b"real-stack", 0);
    let mut nodes: Vec<RealNode> = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let host = &hosts[i % hosts.len()];
        nodes.push(start(i, host, s.seed, stack, r.mesh, arrivals.clone()).await?);
        if i % 500 == 499 {
            on_progress(&format!("{} of {n} nodes started", i + 1));
        }
    }
    // Dialled after every node listens, so late nodes are as likely to be
    // dialled as early ones: when each node dialled earlier nodes only, the
    // first nodes gathered dozens of peers and, with mesh bounds below that,
    // pruned late nodes out of every mesh.
    for (i, j) in dials(n, &mut rng) {
        if !nodes[i].handle.dial(nodes[j].address.clone()).await {
            return Err(RealError::Node { node: i, reason: format!("could not dial node {j}") });
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
            "real-stack, {} (nodes started in {started_s:.1} s, overlay formed {formed_s:.1} s later{})",
            stack.name(),
            if timer_calmed { "" } else { "; timer thread at normal priority, gossip slower" }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn degrees(n: usize, dials: &[(usize, usize)]) -> Vec<usize> {
        let mut degree = vec![0; n];
        for &(i, j) in dials {
            degree[i] += 1;
            degree[j] += 1;
        }
        degree
    }

    #[test]
    fn every_node_dials_its_share_of_distinct_others() {
        let n = 1_000;
        let dials = dials(n, &mut derived(7, b"real-stack", 0));
        assert_eq!(dials.len(), n * DIALS_PER_NODE);
        let mut pairs = std::collections::HashSet::new();
        for &(i, j) in &dials {
            assert_ne!(i, j, "no node dials itself");
            assert!(pairs.insert((i.min(j), i.max(j))), "{i} and {j} are linked once");
        }
        let degree = degrees(n, &dials);
        assert!(degree.iter().all(|&d| d >= DIALS_PER_NODE), "every node keeps its own dials");
        // Uniform targets: a node's inbound dials are about Poisson with
        // mean DIALS_PER_NODE, so the busiest of a thousand has some 17
        // peers, not the 30 and more the first nodes gathered when every
        // node dialled earlier nodes only.
        let max = degree.iter().max().copied().unwrap_or(0);
        assert!(max <= 6 * DIALS_PER_NODE, "most peers of one node: {max}");
    }

    #[test]
    fn tiny_overlays_link_what_they_can() {
        for n in 1..=DIALS_PER_NODE + 1 {
            let dials = dials(n, &mut derived(1, b"real-stack", 0));
            assert_eq!(dials.len(), n * (n - 1) / 2, "{n} nodes are all linked, once");
        }
    }
}
