//! Gateways on loopback (and in memory) form a mesh, deliver, refuse invalid
//! messages, serve fetches and rejoin after a restart.
//!
//! Every test node runs a validator like the node's: it accepts envelopes whose
//! signature verifies and rejects the others. Timeouts are failure guards
//! only; a healthy run meets each condition within seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshd_gossip::config::{KademliaMode, Transport};
use meshd_gossip::fetch::Status;
use meshd_gossip::{Client, Config, Event, FetchError, Multiaddr, PeerId, Topic, Verdict};
use meshd_protocol::envelope::Domain;
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{BeaconId, DataRate, Message, WitnessReport};
use meshd_protocol::{Envelope, Hash32, codec, signature};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

const NETWORK: &str = "test";
const REGION: Region = Region(0x0852_8308_3fff_ffff);
/// Failure guard for each awaited condition.
const GUARD: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Seen {
    accepted: Vec<(Hash32, PeerId)>,
    rejected: Vec<(Hash32, PeerId)>,
    listening: Vec<Multiaddr>,
}

struct Node {
    client: Client,
    peer_id: PeerId,
    key: Keypair,
    seen: Arc<Mutex<Seen>>,
    store: Arc<Mutex<HashMap<Hash32, Vec<u8>>>>,
    registry: Registry,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(seed: u8, config: Config) -> Node {
        let key = Keypair::from_secret([seed; 32]);
        let mut registry = Registry::default();
        let (client, mut events, event_loop) =
            meshd_gossip::new(&key, config, &mut registry).expect("gossip starts");
        let peer_id = event_loop.local_peer_id();
        let shutdown = CancellationToken::new();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let store: Arc<Mutex<HashMap<Hash32, Vec<u8>>>> = Arc::default();
        let loop_task = tokio::spawn(event_loop.run(shutdown.clone()));
        let validator = {
            let (client, seen, store) = (client.clone(), seen.clone(), store.clone());
            let domain = Domain::new(NETWORK);
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        Event::MessageReceived { id, source, envelope, .. } => {
                            let valid = signature::verify(&domain, &envelope).is_ok();
                            let verdict = if valid { Verdict::Accept } else { Verdict::Reject };
                            let _ = client.report_validation(id, verdict).await;
                            let mut seen = seen.lock().expect("lock");
                            if valid {
                                seen.accepted.push((id, source))
                            } else {
                                seen.rejected.push((id, source))
                            }
                        }
                        Event::FetchRequested { ids, responder, .. } => {
                            let store = store.lock().expect("lock");
                            responder.respond(ids.iter().filter_map(|id| store.get(id).cloned()).collect());
                        }
                        // The test's "decision" of epoch 7 is the first two envelopes stored.
                        Event::DecisionRequested { epoch, responder, .. } => {
                            let store = store.lock().expect("lock");
                            let mut held: Vec<(&Hash32, &Vec<u8>)> = store.iter().collect();
                            held.sort();
                            let answer = if epoch == 7 {
                                held.iter().take(2).map(|(_, bytes)| (*bytes).clone()).collect()
                            } else {
                                Vec::new()
                            };
                            responder.respond(answer);
                        }
                        Event::ListenAddressAdded { address } => {
                            seen.lock().expect("lock").listening.push(address)
                        }
                        _ => {}
                    }
                }
            })
        };
        let task = tokio::spawn(async move {
            let _ = loop_task.await;
            validator.abort();
        });
        let node = Node { client, peer_id, key, seen, store, registry, shutdown, task };
        eventually("the node listens", || async { !node.seen.lock().expect("lock").listening.is_empty() })
            .await;
        node
    }

    /// Our first listen address with `/p2p/<id>`.
    fn address(&self) -> Multiaddr {
        let address = self.seen.lock().expect("lock").listening[0].clone();
        address.with(libp2p::multiaddr::Protocol::P2p(self.peer_id))
    }

    fn accepted(&self, id: &Hash32) -> bool {
        self.seen.lock().expect("lock").accepted.iter().any(|(seen, _)| seen == id)
    }

    fn rejected(&self, id: &Hash32) -> bool {
        self.seen.lock().expect("lock").rejected.iter().any(|(seen, _)| seen == id)
    }

    fn saw(&self, id: &Hash32) -> bool {
        self.accepted(id) || self.rejected(id)
    }

    async fn mesh_size(&self) -> usize {
        self.client.snapshot().await.map(|s| s.mesh_peers.len()).unwrap_or(0)
    }

    async fn score_of(&self, peer: PeerId) -> Option<f64> {
        let snapshot = self.client.snapshot().await.ok()?;
        snapshot.peer_scores.into_iter().find(|(p, _)| *p == peer).map(|(_, score)| score)
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Polls `condition` until it holds, failing the test after [`GUARD`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let guard = tokio::time::Instant::now() + GUARD;
    while !condition().await {
        assert!(tokio::time::Instant::now() < guard, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback config bootstrapping from `bootstrap`.
fn config(bootstrap: &[Multiaddr]) -> Config {
    Config { bootstrap: bootstrap.to_vec(), ..Config::local(NETWORK) }
}

/// A bootstrap node's config: a fixed loopback port announced as its public address.
fn bootstrap_config() -> Config {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("multiaddr");
    Config { listen: vec![address.clone()], external_addresses: vec![address], ..Config::local(NETWORK) }
}

/// A signed witness report by `key`, distinct per `n`: (id, wire bytes).
fn report(key: &Keypair, n: u64) -> (Hash32, Vec<u8>) {
    let message = Message::WitnessReport(WitnessReport {
        region: REGION,
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
    let bytes = codec::encode_envelope(&envelope).expect("encode");
    (envelope.id().expect("id"), bytes)
}

/// The same report with a broken signature.
fn forged(key: &Keypair, n: u64) -> (Hash32, Vec<u8>) {
    let (_, bytes) = report(key, n);
    let mut envelope = codec::decode_envelope(&bytes).expect("decode");
    envelope.signature[10] ^= 0x55;
    let bytes = codec::encode_envelope(&envelope).expect("encode");
    (envelope.id().expect("id"), bytes)
}

async fn publish(node: &Node, topic: Topic, (id, bytes): (Hash32, Vec<u8>)) -> Hash32 {
    assert_eq!(node.client.publish(topic, bytes).await, Ok(id));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_gateways_from_one_bootstrap_form_a_mesh_and_deliver_from_any_node() {
    let started = tokio::time::Instant::now();
    let bootstrap = Node::start(1, bootstrap_config()).await;
    let mut nodes = vec![];
    for seed in 2..=8 {
        nodes.push(Node::start(seed, config(&[bootstrap.address()])).await);
    }
    nodes.insert(0, bootstrap);
    for node in &nodes {
        node.client.subscribe(Topic::Region(REGION)).await.expect("subscribe");
    }
    // Discovery got every node beyond the bootstrap: each has a full mesh (mesh_n_low = 4).
    for (i, node) in nodes.iter().enumerate() {
        eventually(&format!("node {i} has 4 mesh peers"), || async { node.mesh_size().await >= 4 }).await;
    }
    eprintln!("8 gateways formed a mesh in {:?}", started.elapsed());

    let mut ids = vec![];
    for (i, node) in nodes.iter().enumerate() {
        ids.push(publish(node, Topic::Region(REGION), report(&node.key, i as u64)).await);
    }
    for (i, id) in ids.iter().enumerate() {
        for (j, node) in nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            eventually(&format!("node {j} got the message of node {i}"), || async { node.accepted(id) })
                .await;
        }
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_stop_at_the_first_hop_and_graylist_their_sender() {
    // A chain a — b — c: no discovery (Kademlia client mode everywhere), so
    // c hears a only through b.
    let chain = |bootstrap: &[Multiaddr]| Config { kademlia_mode: KademliaMode::Client, ..config(bootstrap) };
    let b = Node::start(20, chain(&[])).await;
    let a = Node::start(21, chain(&[b.address()])).await;
    let c = Node::start(22, chain(&[b.address()])).await;
    for node in [&a, &b, &c] {
        node.client.subscribe(Topic::Global).await.expect("subscribe");
    }
    eventually("b meshes with a and c", || async { b.mesh_size().await == 2 }).await;
    eventually("a and c mesh with b", || async { a.mesh_size().await == 1 && c.mesh_size().await == 1 })
        .await;

    let bad = publish(&a, Topic::Global, forged(&a.key, 1)).await;
    eventually("b rejected the forged message", || async { b.rejected(&bad) }).await;
    let score = b.score_of(a.peer_id).await.expect("a is scored");
    assert!(score < meshd_gossip::scoring::GOSSIP_THRESHOLD, "one invalid message costs a: score {score}");

    // A valid message travels the whole chain; the forged one never got past b.
    let good = publish(&a, Topic::Global, report(&a.key, 2)).await;
    eventually("c got the valid message", || async { c.accepted(&good) }).await;
    assert!(!c.saw(&bad), "the forged message went beyond the first hop");

    for n in [3, 4] {
        let bad = publish(&a, Topic::Global, forged(&a.key, n)).await;
        eventually("b rejected another forged message", || async { b.rejected(&bad) }).await;
    }
    let score = b.score_of(a.peer_id).await.expect("a is scored");
    assert!(
        score < meshd_gossip::scoring::GRAYLIST_THRESHOLD,
        "three invalid messages graylist a: score {score}"
    );
    assert!(b.metrics().contains("meshd_gossip_verdicts_total{verdict=\"reject\"} 3"), "{}", b.metrics());

    // Graylisted: b ignores a entirely, so even a valid message stops there.
    let ignored = publish(&a, Topic::Global, report(&a.key, 5)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!b.saw(&ignored) && !c.saw(&ignored), "a graylisted peer's message was processed");
    for node in [a, b, c] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_the_reports_asked_for_and_refuses_oversized_requests() {
    let server = Node::start(30, config(&[])).await;
    // The requester allows larger requests than the server accepts.
    let mut asking = config(&[server.address()]);
    asking.limits.max_fetch_ids = 1024;
    let requester = Node::start(31, asking).await;
    eventually("connected", || async {
        requester
            .client
            .snapshot()
            .await
            .map(|s| s.connected_peers.contains(&server.peer_id))
            .unwrap_or(false)
    })
    .await;

    let stored: Vec<(Hash32, Vec<u8>)> = (0..3).map(|n| report(&server.key, n)).collect();
    server.store.lock().expect("lock").extend(stored.iter().cloned());
    let unknown = Hash32([0xab; 32]);
    let fetched =
        requester.client.fetch(server.peer_id, vec![stored[2].0, unknown, stored[0].0]).await.expect("fetch");
    let found: Vec<Hash32> = fetched.found.iter().map(|(id, _)| *id).collect();
    assert_eq!(found, vec![stored[2].0, stored[0].0]);
    assert_eq!(fetched.missing, vec![unknown]);
    for (id, envelope) in &fetched.found {
        assert_eq!(envelope.id().ok(), Some(*id));
    }

    // Decisions are asked for by (region, epoch), not by id.
    let decision = requester
        .client
        .fetch_decision(server.peer_id, 0x84_1f_1d_4f_ff_ff_ff_ff, 7)
        .await
        .expect("decision");
    assert_eq!(decision.len(), 2);
    assert!(requester.client.fetch_decision(server.peer_id, 1, 8).await.expect("decision").is_empty());

    let too_many: Vec<Hash32> = (0..300u32).map(|i| meshd_protocol::keccak256(i.to_le_bytes())).collect();
    assert_eq!(
        requester.client.fetch(server.peer_id, too_many).await,
        Err(FetchError::Refused(Status::TooLarge))
    );
    assert!(server.metrics().contains("meshd_gossip_dropped_total{reason=\"oversized_fetch_request\"} 1"));
    let far_too_many = vec![unknown; 2000];
    assert_eq!(
        requester.client.fetch(server.peer_id, far_too_many).await,
        Err(FetchError::TooManyIds { count: 2000, limit: 1024 })
    );
    requester.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_gateway_rejoins_the_mesh() {
    let bootstrap = Node::start(40, bootstrap_config()).await;
    let seeds = [41, 42, 43];
    let mut nodes = vec![];
    for seed in seeds {
        nodes.push(Node::start(seed, config(&[bootstrap.address()])).await);
    }
    for node in nodes.iter().chain([&bootstrap]) {
        node.client.subscribe(Topic::Global).await.expect("subscribe");
    }
    for node in &nodes {
        eventually("meshed", || async { node.mesh_size().await >= 2 }).await;
    }
    let leaving = nodes.pop().expect("three nodes");
    let leaving_id = leaving.peer_id;
    leaving.stop().await;
    eventually("its peers saw it leave", || async {
        bootstrap.client.snapshot().await.map(|s| !s.connected_peers.contains(&leaving_id)).unwrap_or(false)
    })
    .await;

    let back = Node::start(seeds[2], config(&[bootstrap.address()])).await;
    assert_eq!(back.peer_id, leaving_id, "same key, same peer id");
    back.client.subscribe(Topic::Global).await.expect("subscribe");
    eventually("the restarted node meshed again", || async { back.mesh_size().await >= 2 }).await;
    let from_bootstrap = publish(&bootstrap, Topic::Global, report(&bootstrap.key, 1)).await;
    eventually("the restarted node got a message", || async { back.accepted(&from_bootstrap) }).await;
    let from_back = publish(&back, Topic::Global, report(&back.key, 2)).await;
    for node in nodes.iter().chain([&bootstrap]) {
        eventually("its message reached the others", || async { node.accepted(&from_back) }).await;
    }
    for node in nodes.into_iter().chain([bootstrap, back]) {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_transport_nodes_gossip_in_process_and_count_malformed_messages() {
    let memory = |bootstrap: &[Multiaddr]| Config {
        transport: Transport::Memory { plaintext: true },
        listen: vec!["/memory/0".parse().expect("multiaddr")],
        kademlia_mode: KademliaMode::Server,
        ..config(bootstrap)
    };
    let first = Node::start(50, memory(&[])).await;
    let second = Node::start(51, memory(&[first.address()])).await;
    let third = Node::start(52, memory(&[first.address()])).await;
    for node in [&first, &second, &third] {
        node.client.subscribe(Topic::Global).await.expect("subscribe");
    }
    for node in [&first, &second, &third] {
        eventually("meshed", || async { node.mesh_size().await >= 1 }).await;
    }
    let id = publish(&second, Topic::Global, report(&second.key, 1)).await;
    eventually("delivered", || async { first.accepted(&id) && third.accepted(&id) }).await;

    let garbage = b"not an envelope".to_vec();
    second.client.publish(Topic::Global, garbage).await.expect("publish garbage");
    eventually("the garbage was dropped and counted", || async {
        first.metrics().contains("meshd_gossip_dropped_total{reason=\"malformed_message\"} 1")
    })
    .await;
    for node in [first, second, third] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_only_nodes_without_identify_ping_or_requests_still_gossip() {
    let bare = |bootstrap: &[Multiaddr]| config(bootstrap).gossip_only_in_memory();
    let first = Node::start(70, bare(&[])).await;
    let second = Node::start(71, bare(&[first.address()])).await;
    let third = Node::start(72, bare(&[first.address(), second.address()])).await;
    for node in [&first, &second, &third] {
        node.client.subscribe(Topic::Global).await.expect("subscribe");
    }
    for node in [&first, &second, &third] {
        eventually("meshed", || async { node.mesh_size().await >= 1 }).await;
    }
    let id = publish(&third, Topic::Global, report(&third.key, 1)).await;
    eventually("delivered", || async { first.accepted(&id) && second.accepted(&id) }).await;
    let fetched = second.client.fetch(first.peer_id, vec![id]).await;
    assert_eq!(fetched.err(), Some(FetchError::Disabled));
    let decision = second.client.fetch_decision(first.peer_id, 0, 0).await;
    assert_eq!(decision.err(), Some(FetchError::Disabled));
    for node in [first, second, third] {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_without_a_verdict_are_ignored_after_the_validation_timeout() {
    let sender = Node::start(60, config(&[])).await;
    // A receiver whose node never answers.
    let mut silent = config(&[sender.address()]);
    silent.limits.validation_timeout = Duration::from_secs(1);
    let mut registry = Registry::default();
    let key = Keypair::from_secret([61; 32]);
    let (client, mut events, event_loop) = meshd_gossip::new(&key, silent, &mut registry).expect("start");
    let shutdown = CancellationToken::new();
    tokio::spawn(event_loop.run(shutdown.clone()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::MessageReceived { id, .. } = event {
                sink.lock().expect("lock").push(id);
            }
        }
    });
    for c in [&sender.client, &client] {
        c.subscribe(Topic::Global).await.expect("subscribe");
    }
    eventually("meshed", || async { sender.mesh_size().await == 1 }).await;
    let id = publish(&sender, Topic::Global, report(&sender.key, 1)).await;
    eventually("received", || async { received.lock().expect("lock").contains(&id) }).await;
    eventually("the message timed out and was counted", || async {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text.contains("meshd_gossip_dropped_total{reason=\"validation_timeout\"} 1")
    })
    .await;
    assert_eq!(client.report_validation(id, Verdict::Accept).await, Ok(false), "too late for a verdict");
    shutdown.cancel();
    sender.stop().await;
}
