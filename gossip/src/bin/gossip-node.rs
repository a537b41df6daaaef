//! A standalone gateway of the mesh, for tests and measurements.
//!
//! It runs the gossip layer with a key derived from `--seed`, accepts every
//! message whose signature verifies, and speaks a line protocol:
//!
//! - stdout, one event per line: `ready <peer id>`, `listening <addr>`,
//!   `reachability <unknown|public|private>`, `external <addr>`,
//!   `reserved <relay> <addr>`, `connected <peer> <direct|relayed> <addr>`,
//!   `disconnected <peer>`, `hole-punched <peer>`, `hole-punch-failed <peer> <reason>`,
//!   `message <id> <source> <signer>`, `published <id>`, `error <text>`.
//! - stdin, one command per line: `dial <addr>`, `publish <n>` (a signed test
//!   report on the global topic), `quit`.
//!
//! Options: `--seed <0-255>`, `--network <name>`, `--listen <addr>`…,
//! `--bootstrap <addr>`…, `--external <addr>`…, `--relay-server`, `--no-quic`, `--no-tcp`,
//! `--probe-interval-ms <ms>`, `--kad <auto|server|client|off>`.
//! Logs go to stderr, filtered by `RUST_LOG`.

use std::io::{BufRead, Write};
use std::time::Duration;

use meshd_gossip::config::{KademliaMode, Transport};
use meshd_gossip::{Config, Event, Multiaddr, Reachability, Topic, Verdict};
use meshd_protocol::envelope::Domain;
use meshd_protocol::keys::Keypair;
use meshd_protocol::{Envelope, codec, signature};
use tokio_util::sync::CancellationToken;

/// Lines of stdin commands buffered before the reader waits.
const STDIN_QUEUE: usize = 16;

struct Options {
    seed: u8,
    config: Config,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut seed = 1u8;
    let mut config = Config { mdns: false, listen: Vec::new(), ..Config::default() };
    let (mut tcp, mut quic) = (true, true);
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let addr = |text: String| text.parse::<Multiaddr>().map_err(|e| format!("bad address {text}: {e}"));
        match flag.as_str() {
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--network" => config.network = value()?,
            "--listen" => config.listen.push(addr(value()?)?),
            "--bootstrap" => config.bootstrap.push(addr(value()?)?),
            "--external" => config.external_addresses.push(addr(value()?)?),
            "--relay-server" => config.relay_server = true,
            "--no-quic" => quic = false,
            "--no-tcp" => tcp = false,
            "--probe-interval-ms" => {
                let ms: u64 = value()?.parse().map_err(|e| format!("--probe-interval-ms: {e}"))?;
                config.autonat_probe_interval = Duration::from_millis(ms);
            }
            "--kad" => {
                config.kademlia_mode = match value()?.as_str() {
                    "auto" => KademliaMode::Auto,
                    "server" => KademliaMode::Server,
                    "client" => KademliaMode::Client,
                    "off" => KademliaMode::Off,
                    other => return Err(format!("--kad: unknown mode {other}")),
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    config.transport = Transport::Network { tcp, quic };
    if config.listen.is_empty() {
        if tcp {
            config.listen.push(addr_or_panic("/ip4/0.0.0.0/tcp/0"));
        }
        if quic {
            config.listen.push(addr_or_panic("/ip4/0.0.0.0/udp/0/quic-v1"));
        }
    }
    config.maintenance_interval = Duration::from_secs(1);
    Ok(Options { seed, config })
}

fn addr_or_panic(text: &str) -> Multiaddr {
    text.parse().unwrap_or_else(|_| Multiaddr::empty())
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the parent is gone; the next stdin EOF stops us.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A signed test report: a witness report whose epoch is `n`.
fn test_envelope(key: &Keypair, domain: &Domain, n: u64) -> Result<Envelope, codec::CodecError> {
    use meshd_protocol::geo::{Location, Region};
    use meshd_protocol::message::{BeaconId, DataRate, Message, WitnessReport};
    let report = WitnessReport {
        region: Region(0x0852_8308_3fff_ffff),
        epoch: n,
        beacon_id: BeaconId([7; 16]),
        location: Location(0x08c2_8308_3000_0fff),
        antenna_gain_ddbi: 30,
        rssi_ddbm: -1000,
        snr_ddb: 50,
        frequency_hz: 868_100_000,
        datarate: DataRate { spreading_factor: 7, bandwidth_khz: 125 },
        received_at_ms: 1_700_000_000_000 + n,
        tmst_us: 0,
    };
    Envelope::seal(domain, key, &Message::WitnessReport(report))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("gossip-node: {e}");
            std::process::exit(2);
        }
    };
    let key = Keypair::from_secret([options.seed; 32]);
    let domain = Domain::new(&options.config.network);
    let mut registry = prometheus_client::registry::Registry::default();
    let (client, mut events, event_loop) = match meshd_gossip::new(&key, options.config, &mut registry) {
        Ok(parts) => parts,
        Err(e) => {
            eprintln!("gossip-node: {e}");
            std::process::exit(1);
        }
    };
    say(format!("ready {}", event_loop.local_peer_id()));
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(event_loop.run(shutdown.clone()));
    if let Err(e) = client.subscribe(Topic::Global).await {
        say(format!("error {e}"));
    }

    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(STDIN_QUEUE);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });

    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("quit"), _) => break,
                    (Some("dial"), Some(address)) => match address.parse::<Multiaddr>() {
                        Ok(address) => {
                            if let Err(e) = client.dial(address).await {
                                say(format!("error {e}"));
                            }
                        }
                        Err(e) => say(format!("error {e}")),
                    },
                    (Some("publish"), Some(n)) => {
                        let n = n.parse().unwrap_or(0);
                        let published = match test_envelope(&key, &domain, n).and_then(|e| codec::encode_envelope(&e)) {
                            Ok(bytes) => client.publish(Topic::Global, bytes).await.map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        match published {
                            Ok(id) => say(format!("published {id}")),
                            Err(e) => say(format!("error {e}")),
                        }
                    }
                    _ => say(format!("error unknown command {line:?}")),
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break };
                match event {
                    Event::MessageReceived { id, source, envelope, .. } => {
                        let verdict = if signature::verify(&domain, &envelope).is_ok() { Verdict::Accept } else { Verdict::Reject };
                        let _ = client.report_validation(id, verdict).await;
                        if verdict == Verdict::Accept {
                            let signer = meshd_protocol::GatewayId(envelope.signer);
                            say(format!("message {id} {source} {signer}"));
                        }
                    }
                    Event::PeerConnected { peer, address, relayed } => {
                        say(format!("connected {peer} {} {address}", if relayed { "relayed" } else { "direct" }));
                    }
                    Event::PeerDisconnected { peer } => say(format!("disconnected {peer}")),
                    Event::ReachabilityChanged { reachability } => say(format!(
                        "reachability {}",
                        match reachability {
                            Reachability::Unknown => "unknown",
                            Reachability::Public => "public",
                            Reachability::Private => "private",
                        }
                    )),
                    Event::RelayReserved { relay, address } => say(format!("reserved {relay} {address}")),
                    Event::HolePunched { peer } => say(format!("hole-punched {peer}")),
                    Event::HolePunchFailed { peer, reason } => say(format!("hole-punch-failed {peer} {reason}")),
                    Event::ListenAddressAdded { address } => say(format!("listening {address}")),
                    Event::ExternalAddressConfirmed { address } => say(format!("external {address}")),
                    Event::FetchRequested { responder, .. } => responder.respond(Vec::new()),
                    _ => {}
                }
            }
        }
    }
    shutdown.cancel();
    let _ = running.await;
}
