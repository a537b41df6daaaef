//! Measures the gossip layer on loopback:
//!
//! 1. the time for 8 gateways, started from one bootstrap address, to form a
//!    mesh (every node with at least `mesh_n_low` = 4 mesh peers);
//! 2. delivery ratio and latency of messages published round-robin by all 8;
//! 3. the resident memory of one idle gateway holding 50 connections (a child
//!    process, so the number is that node's alone).
//!
//! ```text
//! cargo run --release -p meshd-gossip --example mesh_bench
//! cargo run --release -p meshd-gossip --example mesh_bench -- --runs 5 --messages 400 --peers 50
//! ```
//!
//! Nodes use `Config::local` (loopback TCP, 1 s AutoNAT probes and
//! maintenance, gossipsub heartbeat 1 s), as the tests do.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use meshd_gossip::config::KademliaMode;
use meshd_gossip::{Client, Config, Event, Multiaddr, PeerId, Topic, Verdict};
use meshd_protocol::envelope::Domain;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{BeaconId, DataRate, Message, WitnessReport};
use meshd_protocol::{Envelope, Hash32, codec};
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const NETWORK: &str = "bench";

type Arrivals = Arc<Mutex<HashMap<Hash32, Vec<Instant>>>>;

struct Node {
    client: Client,
    peer_id: PeerId,
    key: Keypair,
    listening: Arc<Mutex<Vec<Multiaddr>>>,
    shutdown: CancellationToken,
}

async fn start(seed: u32, config: Config, arrivals: Arrivals) -> Node {
    let mut secret = [0u8; 32];
    secret[..4].copy_from_slice(&seed.to_le_bytes());
    secret[31] = 1;
    let key = Keypair::from_secret(secret);
    let mut registry = Registry::default();
    let (client, mut events, event_loop) = meshd_gossip::new(&key, config, &mut registry).expect("start");
    let peer_id = event_loop.local_peer_id();
    let shutdown = CancellationToken::new();
    tokio::spawn(event_loop.run(shutdown.clone()));
    let listening: Arc<Mutex<Vec<Multiaddr>>> = Arc::default();
    let (reporter, seen) = (client.clone(), listening.clone());
    tokio::spawn(async move {
        // Keeps the registry alive as long as the node.
        let _registry = registry;
        while let Some(event) = events.recv().await {
            match event {
                Event::MessageReceived { id, .. } => {
                    arrivals.lock().expect("lock").entry(id).or_default().push(Instant::now());
                    let _ = reporter.report_validation(id, Verdict::Accept).await;
                }
                Event::ListenAddressAdded { address } => seen.lock().expect("lock").push(address),
                _ => {}
            }
        }
    });
    while listening.lock().expect("lock").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Node { client, peer_id, key, listening, shutdown }
}

impl Node {
    fn address(&self) -> Multiaddr {
        self.listening.lock().expect("lock")[0].clone().with(Protocol::P2p(self.peer_id))
    }

    async fn mesh_size(&self) -> usize {
        self.client.snapshot().await.map(|s| s.mesh_peers.len()).unwrap_or(0)
    }

    async fn connections(&self) -> usize {
        self.client.snapshot().await.map(|s| s.connected_peers.len()).unwrap_or(0)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn report(key: &Keypair, n: u64) -> (Hash32, Vec<u8>) {
    let message = Message::WitnessReport(WitnessReport {
        region: Region(0x0852_8308_3fff_ffff),
        epoch: n,
        beacon_id: BeaconId([1; 16]),
        location: Location(0x08c2_8308_3000_0fff),
        antenna_gain_ddbi: 30,
        rssi_ddbm: -1000,
        snr_ddb: 50,
        frequency_hz: 868_100_000,
        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
        received_at_ms: 1_700_000_000_000 + n,
        tmst_us: 0,
    });
    let envelope = Envelope::seal(&Domain::new(NETWORK), key, &message).expect("seal");
    (envelope.id().expect("id"), codec::encode_envelope(&envelope).expect("encode"))
}

/// Starts 8 nodes and returns them with the time the mesh took.
async fn form_mesh(run: u32, arrivals: Arrivals) -> (Vec<Node>, Duration) {
    let started = Instant::now();
    let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port()).parse().expect("multiaddr");
    let bootstrap_config =
        Config { listen: vec![address.clone()], external_addresses: vec![address], ..Config::local(NETWORK) };
    let bootstrap = start(run * 100, bootstrap_config, arrivals.clone()).await;
    let mut nodes = vec![];
    for i in 1..8 {
        let config = Config { bootstrap: vec![bootstrap.address()], ..Config::local(NETWORK) };
        nodes.push(start(run * 100 + i, config, arrivals.clone()).await);
    }
    nodes.insert(0, bootstrap);
    for node in &nodes {
        node.client.subscribe(Topic::Global).await.expect("subscribe");
    }
    loop {
        let mut formed = true;
        for node in &nodes {
            formed &= node.mesh_size().await >= 4;
        }
        if formed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (nodes, started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

async fn mesh_and_delivery(runs: u32, messages: u64) {
    let mut times = vec![];
    let mut latencies = vec![];
    let (mut expected, mut delivered) = (0usize, 0usize);
    for run in 1..=runs {
        let arrivals: Arrivals = Arc::default();
        let (nodes, took) = form_mesh(run, arrivals.clone()).await;
        times.push(took);
        let mut published = vec![];
        for n in 0..messages {
            let node = &nodes[n as usize % nodes.len()];
            let (id, bytes) = report(&node.key, n);
            let at = Instant::now();
            if node.client.publish(Topic::Global, bytes).await.is_ok() {
                published.push((id, at));
            }
            // 100 messages per second across the mesh: steady, not a burst.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let arrivals = arrivals.lock().expect("lock").clone();
        for (id, at) in &published {
            expected += nodes.len() - 1;
            if let Some(times) = arrivals.get(id) {
                delivered += times.len();
                latencies.extend(times.iter().map(|t| t.duration_since(*at)));
            }
        }
        for node in nodes {
            node.shutdown.cancel();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    times.sort();
    latencies.sort();
    println!(
        "mesh formation (8 gateways, {runs} runs): median {:?}, min {:?}, max {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
    println!(
        "delivery: {delivered}/{expected} ({:.2}%) over {} messages × 7 receivers",
        100.0 * delivered as f64 / expected.max(1) as f64,
        messages * u64::from(runs)
    );
    println!(
        "latency publish→receive: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: one idle gateway; prints its address, then answers `rss` and
/// `peers` on stdin until EOF.
async fn hub() {
    let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port()).parse().expect("multiaddr");
    let config =
        Config { listen: vec![address.clone()], external_addresses: vec![address], ..Config::local(NETWORK) };
    let node = start(9999, config, Arc::default()).await;
    node.client.subscribe(Topic::Global).await.expect("subscribe");
    println!("address {}", node.address());
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(4);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        match line.as_str() {
            "rss" => println!("rss {}", rss_kib()),
            "peers" => println!("peers {}", node.connections().await),
            _ => {}
        }
    }
}

async fn idle_memory(peers: u32) {
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .arg("--hub")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn hub");
    let mut input = child.stdin.take().expect("stdin");
    let mut output = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut ask = |question: &str| -> String {
        writeln!(input, "{question}").expect("ask hub");
        loop {
            let line = output.next().and_then(Result::ok).unwrap_or_default();
            if line.starts_with(question) || line.is_empty() {
                return line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            }
        }
    };
    let first = ask("address");
    let hub_address: Multiaddr = first.parse().expect("hub address");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let baseline: u64 = ask("rss").parse().unwrap_or(0);
    let mut nodes = vec![];
    for i in 0..peers {
        let config = Config {
            bootstrap: vec![hub_address.clone()],
            kademlia_mode: KademliaMode::Client,
            target_peers: 1,
            ..Config::local(NETWORK)
        };
        let node = start(20_000 + i, config, Arc::default()).await;
        node.client.subscribe(Topic::Global).await.expect("subscribe");
        nodes.push(node);
    }
    let connected = loop {
        let count: u32 = ask("peers").parse().unwrap_or(0);
        if count >= peers {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Idle: let the mesh settle and heartbeats run.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let loaded: u64 = ask("rss").parse().unwrap_or(0);
    println!(
        "idle gateway memory: {baseline} KiB RSS alone, {loaded} KiB with {connected} connections ({:.1} KiB per connection)",
        (loaded.saturating_sub(baseline)) as f64 / f64::from(connected.max(1))
    );
    drop(input);
    let _ = child.wait();
    for node in nodes {
        node.shutdown.cancel();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if args.iter().any(|a| a == "--hub") {
        // One thread, as a gateway's event loop has.
        let single = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        single.block_on(hub());
        return;
    }
    let runs = u32::try_from(value("--runs", 5)).unwrap_or(5);
    let messages = value("--messages", 200);
    let peers = u32::try_from(value("--peers", 50)).unwrap_or(50);
    runtime.block_on(async {
        mesh_and_delivery(runs, messages).await;
        idle_memory(peers).await;
    });
}
