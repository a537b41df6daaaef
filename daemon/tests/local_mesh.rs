//! End to end: four `meshd run` processes on loopback form a committee and
//! finalize the same summaries in their own sled stores; one is killed with
//! SIGKILL, the others go on, and after a restart it catches up.
// Real processes run on the wall clock; so do the test's deadlines.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshd::gateway::api::{get_blocking, post_blocking};
use meshd::gateway::status::Status;
use meshd::ingest::meters::ReadingJson;
use meshd_protocol::MeterId;
use meshd_protocol::codec;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::message::{Message, MeterReading, MeterStatus};
use meshd_storage::{Options, SledStore, StoreExt};

mod support;

/// Epoch length: the shortest the configuration allows, to keep the test short.
const EPOCH_S: u64 = 10;
/// Grace period after each epoch.
const GRACE_S: u64 = 2;
/// Gateways in the mesh: the smallest committee that tolerates one fault.
const GATEWAYS: usize = 4;
/// Anchor every two epochs: the first anchor comes a few epochs in.
const ANCHOR_EVERY: u64 = 2;
/// About 2 km apart in Berlin: one region, within the synthetic radio's range.
const LOCATIONS: [(f64, f64); GATEWAYS] =
    [(52.5200, 13.4050), (52.5380, 13.4050), (52.5200, 13.4350), (52.5380, 13.4350)];

struct Gateway {
    dir: PathBuf,
    config: PathBuf,
    api: SocketAddr,
    child: Option<Child>,
}

impl Gateway {
    fn start(&mut self) {
        let log =
            fs::OpenOptions::new().create(true).append(true).open(self.dir.join("meshd.log")).expect("log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshd"));
        for (name, _) in std::env::vars_os() {
            if name.as_encoded_bytes().starts_with(b"MESHD_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("meshd starts");
        self.child = Some(child);
    }

    fn status(&self) -> Option<Status> {
        let (code, body) = get_blocking(self.api, "/v1/status", Duration::from_secs(2)).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    fn last_finalized(&self) -> Option<u64> {
        self.status()?.last_finalized.map(|f| f.epoch)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        let log = fs::read_to_string(self.dir.join("meshd.log")).unwrap_or_default();
        // Without gossipsub's warnings about the node's own resends, which
        // its duplicate cache refuses (they say nothing about a failure).
        let tail: Vec<&str> =
            log.lines().rev().filter(|l| !l.contains("already been published")).take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port free for TCP and UDP, below Linux's ephemeral range
/// (32768–60999): a port handed out from that range can be taken by any
/// outgoing connection (to anvil, say) before its gateway binds it; one
/// below it stays free. Ports are handed out once per test process.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    /// Where this process's ports start: spread over 20000–29999 by process
    /// id, so that test binaries running at once rarely probe the same ones.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 10_000) as u16;
    let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < 32_768, "no free port left below the ephemeral range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

fn now_s() -> u64 {
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}

fn generate_key(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["keys", "generate", "--out"])
        .arg(dir.join("gateway.key"))
        .output()
        .expect("meshd keys generate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("gateway id:")).expect("id line");
    line["gateway id:".len()..].trim().to_owned()
}

fn wait_until(what: &str, timeout: Duration, gateways: &[Gateway], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Each gateway's log tail and its node counters (refusals by reason,
    // proposals and votes), which tell why an epoch did not decide.
    let logs: Vec<String> = gateways
        .iter()
        .map(|g| {
            let counters = get_blocking(g.api, "/metrics", Duration::from_secs(2))
                .map(|(_, text)| {
                    text.lines()
                        .filter(|l| l.starts_with("meshd_node_") && !l.starts_with('#'))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            format!("--- {}\n{}\n{counters}", g.dir.display(), g.log())
        })
        .collect();
    panic!("timed out waiting until {what}\n{}", logs.join("\n"));
}

/// Four gateways' directories, keys and configurations (not started yet):
/// a committee on loopback with the synthetic source. With `fixed`, the
/// committee is listed in `registry.members`; without, the gateways read it
/// from the chain (the test adds the `[chain]` section).
fn mesh(root: &Path, fixed: bool) -> (Vec<Gateway>, Vec<PathBuf>) {
    mesh_at(root, fixed, &LOCATIONS)
}

/// [`mesh`] with one gateway at each of `locations`. Every gateway
/// bootstraps from the first of each group of [`GATEWAYS`]: a region's
/// gossip needs its members connected to each other (bootstrapping from
/// another region's gateway alone leaves that to discovery), and an anchoring
/// gateway asks connected members of other regions for decisions it missed.
fn mesh_at(root: &Path, fixed: bool, locations: &[(f64, f64)]) -> (Vec<Gateway>, Vec<PathBuf>) {
    let genesis = now_s() + 2;
    let mut ids = Vec::new();
    let mut dirs = Vec::new();
    for n in 0..locations.len() {
        let dir = root.join(format!("g{n}"));
        fs::create_dir_all(dir.join("keys")).expect("dir");
        ids.push(generate_key(&dir.join("keys")));
        dirs.push(dir);
    }
    let p2p: Vec<u16> = (0..locations.len()).map(|_| free_port()).collect();
    let members: Vec<String> =
        if fixed { ids.iter().map(|id| format!("{id:?}")).collect() } else { Vec::new() };
    let mut gateways: Vec<Gateway> = Vec::new();
    for n in 0..locations.len() {
        let dir = &dirs[n];
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let hubs: BTreeSet<usize> = (0..locations.len()).step_by(GATEWAYS).filter(|hub| *hub != n).collect();
        let bootstrap: Vec<String> = hubs
            .iter()
            .map(|hub| format!("\"/ip4/127.0.0.1/tcp/{}/p2p/{}\"", p2p[*hub], ids[*hub]))
            .collect();
        let bootstrap = bootstrap.join(", ");
        let config = config_text(dir, genesis, p2p[n], api, &bootstrap, locations[n], &members);
        let path = dir.join("meshd.toml");
        fs::write(&path, config).expect("config");
        gateways.push(Gateway { dir: dir.clone(), config: path, api, child: None });
    }
    (gateways, dirs)
}

/// One gateway's configuration file: the test network's schedule, loopback
/// addresses, the synthetic source and the committee `members` (quoted ids).
fn config_text(
    dir: &Path,
    genesis: u64,
    port: u16,
    api: SocketAddr,
    bootstrap: &str,
    (lat, lon): (f64, f64),
    members: &[String],
) -> String {
    format!(
        "[network]\nname = \"meshd-e2e\"\ngenesis_unix_s = {genesis}\nepoch_length_s = {EPOCH_S}\n\
         grace_period_s = {GRACE_S}\nanchor_every_epochs = {ANCHOR_EVERY}\n\n[identity]\nkey_file = {key:?}\n\n\
         [storage]\npath = {data:?}\n\n\
         [p2p]\nlisten = [\"/ip4/127.0.0.1/tcp/{port}\"]\nbootstrap = [{bootstrap}]\nmdns = false\n\n\
         [api]\nlisten = \"{api}\"\n\n[gateway]\nlat_deg = {lat}\nlon_deg = {lon}\n\n\
         [registry]\nmembers = [{members}]\n\n[synthetic]\nenabled = true\n",
        key = dir.join("keys/gateway.key"),
        data = dir.join("data"),
        members = members.join(", "),
    )
}

#[test]
fn four_gateways_finalize_the_same_summaries_and_a_killed_one_catches_up() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut gateways, dirs) = mesh(root.path(), true);
    for gateway in &mut gateways {
        gateway.start();
    }

    // All four finalize epochs 0 and 1.
    let epoch = Duration::from_secs(EPOCH_S);
    wait_until("every gateway finalized epoch 1", epoch * 4 + Duration::from_secs(20), &gateways, || {
        gateways.iter().all(|g| g.last_finalized().is_some_and(|e| e >= 1))
    });
    let status = gateways[0].status().expect("status");
    assert_eq!(status.committee_size, GATEWAYS);
    assert!(status.peers >= 1, "{status:?}");
    // Each gateway's synthetic meter reads three times an epoch; the readings
    // are attested and counted.
    let attested = status.last_finalized.as_ref().map_or(0, |f| f.attestations);
    assert!(attested >= 4, "{status:?}");
    let (code, metrics) = get_blocking(gateways[0].api, "/metrics", Duration::from_secs(2)).expect("metrics");
    assert_eq!(code, 200);
    for family in ["meshd_node_finalized_total", "meshd_gateway_last_finalized_epoch", "meshd_gossip_"] {
        assert!(metrics.contains(family), "{family} missing from /metrics");
    }

    // Gateway 3 dies without warning; the other three (a quorum) go on.
    gateways[3].kill();
    let reached = gateways[0].last_finalized().expect("finalized");
    wait_until(
        "the three others finalized two more epochs",
        epoch * 3 + Duration::from_secs(20),
        &gateways,
        || gateways[..3].iter().all(|g| g.last_finalized().is_some_and(|e| e >= reached + 2)),
    );

    // Restarted, it catches up with the epochs it missed.
    gateways[3].start();
    wait_until("the restarted gateway caught up", epoch * 3 + Duration::from_secs(20), &gateways, || {
        let others = gateways[0].last_finalized().unwrap_or(0);
        gateways[3].last_finalized().is_some_and(|e| e + 1 >= others && e >= reached + 2)
    });
    for gateway in &mut gateways {
        gateway.stop();
    }

    // Every store holds the same finalized summary for every epoch.
    let region = Region::of(Location::from_lat_lng(LOCATIONS[0].0, LOCATIONS[0].1).expect("location"), 4)
        .expect("region");
    let stores: Vec<SledStore> =
        dirs.iter().map(|d| SledStore::open(d.join("data"), Options::default()).expect("store")).collect();
    let last = stores[3].latest_summary(region).expect("read").expect("a summary").summary.epoch;
    assert!(last >= reached + 2);
    for epoch in 0..=last {
        let hashes: Vec<_> = stores
            .iter()
            .map(|s| {
                let finalized =
                    s.summary(region, epoch).expect("read").unwrap_or_else(|| panic!("epoch {epoch} stored"));
                finalized.check_consistent().expect("certificate matches");
                codec::summary_hash(&finalized.summary).expect("hash")
            })
            .collect();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "epoch {epoch}: {hashes:?}");
    }
}

#[path = "../../chain/tests/common/mod.rs"]
mod chain;

/// The `key = value` line of `meshd chain deploy`'s output.
fn deployed(stdout: &str, key: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("{key} in {stdout}"));
    line.split_once('=').map_or(line, |(_, v)| v).trim().trim_matches('"').to_owned()
}

#[test]
fn the_mesh_anchors_its_summaries_on_a_real_chain() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // Blocks every second, so that anchors gather their confirmations.
    let anvil = runtime.block_on(chain::Anvil::start_on(free_port(), &["--block-time", "1"]));
    // Gateway 1 also takes meter readings from an MQTT broker.
    let broker = runtime.block_on(support::mosquitto::Broker::start());
    let url = anvil.url.to_string();
    let root = tempfile::tempdir().expect("tempdir");
    let (mut gateways, dirs) = mesh(root.path(), false);

    // Deploy with the four gateways as registered members and first
    // committee, registered in the first one's cell: the gateways read their
    // committee from the registry.
    let (lat, lon) = LOCATIONS[0];
    let cell = format!("{:x}", Location::from_lat_lng(lat, lon).expect("location").0);
    let mut deploy = Command::new(env!("CARGO_BIN_EXE_meshd"));
    deploy.args([
        "chain",
        "deploy",
        "--rpc-url",
        &url,
        "--private-key",
        chain::DEPLOYER_KEY,
        "--location",
        &cell,
        "--epoch-seconds",
    ]);
    deploy.arg(EPOCH_S.to_string());
    for dir in &dirs {
        deploy.arg("--member").arg(dir.join("keys/gateway.key"));
    }
    let out = deploy.output().expect("meshd chain deploy");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "deploy: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let anchor = deployed(&stdout, "anchor_contract");
    let registry = deployed(&stdout, "registry_contract");
    let section = format!(
        "\n[chain]\nrpc_url = {url:?}\nchain_id = 31337\nanchor_contract = {anchor:?}\nregistry_contract = {registry:?}\n"
    );
    // Each gateway gets the chain section, and funds on its anchor account:
    // it pays for the anchors it submits.
    for (n, gateway) in gateways.iter().enumerate() {
        let text = fs::read_to_string(&gateway.config).expect("config");
        let meters =
            if n == 1 { format!("\n[meters]\nmqtt_url = {:?}\n", broker.url()) } else { String::new() };
        // No synthetic meters: the only energy is the registered meter's below.
        let text = text.replace("[synthetic]\nenabled = true\n", "[synthetic]\nenabled = true\nmeters = 0\n");
        fs::write(&gateway.config, format!("{text}{section}{meters}")).expect("config");
        let key = fs::read_to_string(gateway.dir.join("keys/gateway.key")).expect("key");
        let address =
            meshd_protocol::keys::KeyFile::parse(&key).expect("key file").anchor.address().to_string();
        runtime.block_on(async {
            use alloy::providers::Provider as _;
            let _: serde_json::Value = anvil
                .provider()
                .raw_request("anvil_setBalance".into(), (address, "0x56BC75E2D63100000"))
                .await
                .expect("anvil_setBalance");
        });
    }
    for gateway in &mut gateways {
        gateway.start();
    }

    // Epochs 0 and 1 form the first range; it is anchored a little after
    // epoch 1 is final, by the range's designated member (the others would
    // check the chain a fallback delay later and find it there).
    let epoch = Duration::from_secs(EPOCH_S);
    wait_until("a gateway anchored the first range", epoch * 5 + Duration::from_secs(30), &gateways, || {
        gateways.iter().any(|g| {
            g.status().and_then(|s| s.last_anchor).is_some_and(|a| {
                a.first_epoch == 0 && a.last_epoch == 1 && a.state.starts_with("anchored in block")
            })
        })
    });
    let anchor_status = gateways
        .iter()
        .filter_map(|g| g.status().and_then(|s| s.last_anchor))
        .find(|a| a.state.starts_with("anchored"))
        .expect("anchor");
    let anchored = runtime.block_on(chain::root_of(
        &anvil.url,
        anchor.parse().expect("address"),
        meshd_chain::EpochRange { from: 0, to: 1 },
    ));
    assert_eq!(format!("{anchored}"), anchor_status.root, "the chain holds the root the committee signed");

    // A fifth gateway registers in the region: every member follows the
    // registry and decides with a committee of five from a later epoch. It
    // never runs, so the four must all sign (quorum 4 of 5).
    let fifth = root.path().join("g4");
    fs::create_dir_all(&fifth).expect("dir");
    generate_key(&fifth);
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["chain", "register", "--rpc-url", &url, "--private-key", chain::DEPLOYER_KEY, "--registry"])
        .arg(&registry)
        .arg("--gateway")
        .arg(fifth.join("gateway.key"))
        .args(["--location", &cell])
        .output()
        .expect("meshd chain register");
    assert!(out.status.success(), "register: {}", String::from_utf8_lossy(&out.stderr));
    let mut joined_at = 0;
    wait_until("every gateway follows the registry to a committee of five", epoch * 3, &gateways, || {
        let statuses: Vec<Status> = gateways.iter().filter_map(Gateway::status).collect();
        joined_at = statuses.iter().map(|s| s.current_epoch).max().unwrap_or(0);
        statuses.len() == GATEWAYS && statuses.iter().all(|s| s.committee_size == 5)
    });
    wait_until("an epoch of the committee of five is final everywhere", epoch * 4, &gateways, || {
        gateways
            .iter()
            .all(|g| g.status().and_then(|s| s.last_finalized).is_some_and(|f| f.epoch >= joined_at))
    });

    // A meter registered on chain: the gateways follow the registry's meters
    // too, and attest its signed readings posted to the local API.
    let meter = meshd_protocol::keys::Keypair::from_secret([9; 32]);
    let out = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args([
            "chain",
            "register-meter",
            "--rpc-url",
            &url,
            "--private-key",
            chain::DEPLOYER_KEY,
            "--registry",
        ])
        .arg(&registry)
        .args(["--meter", &meter.meter_id().to_string(), "--rated-watts", "10000"])
        .args(["--owner", "0x70997970C51812dc3A010C7d01b50e0d51f3e6b7"])
        .output()
        .expect("meshd chain register-meter");
    assert!(out.status.success(), "register-meter: {}", String::from_utf8_lossy(&out.stderr));
    // The JSON of a 5-second reading of `wh` Wh, signed by `key`, claiming `meter`.
    let signed = |key: &meshd_protocol::keys::Keypair,
                  meter: MeterId,
                  sequence: u64,
                  end_s: u64,
                  from_wh: u64,
                  wh: u64| {
        let reading = MeterReading {
            meter,
            sequence,
            interval_start_s: end_s - 5,
            interval_end_s: end_s,
            register_start_wh: from_wh,
            register_end_wh: from_wh + wh,
            status: MeterStatus::Ok,
        };
        let message = Message::MeterReading(reading.clone());
        let sealed = Envelope::seal(&Domain::new("meshd-e2e"), key, &message).expect("seal");
        serde_json::to_string(&ReadingJson::new(&reading, &sealed.signature)).expect("json")
    };
    let reading = |key: &meshd_protocol::keys::Keypair, sequence: u64, end_s: u64, from_wh: u64| {
        signed(key, key.meter_id(), sequence, end_s, from_wh, 5)
    };
    let api = gateways[0].api;
    let post = |json: &str| {
        post_blocking(api, "/v1/meter/readings", json, Duration::from_secs(5)).expect("the API answers")
    };
    // The first reading over MQTT, to gateway 1; sent again (with a fresh
    // interval) until the gateway has read the registration (every 5 s).
    let mqtt = runtime.block_on(support::mosquitto::TestClient::connect(&broker, "meter-test"));
    let mut mqtt_end = 0;
    wait_until("gateway 1 accepts a reading sent over MQTT", Duration::from_secs(30), &gateways, || {
        mqtt_end = now_s() - 1;
        runtime.block_on(async {
            mqtt.publish("meshd/meter/readings", reading(&meter, 1, mqtt_end, 1_000).into_bytes()).await;
            tokio::time::sleep(Duration::from_millis(1_000)).await;
        });
        metric(&gateways[1], "meshd_meter_readings_accepted_total{source=\"mqtt\"}") == 1
    });
    // Its epoch is the current one or, in the grace period, the one before;
    // the ranges holding both are anchored on the chain (to prove the
    // reading's energy below).
    let mqtt_epoch = gateways[1].status().map_or(0, |s| s.current_epoch);
    let anchor_address: alloy::primitives::Address = anchor.parse().expect("address");
    let ranges: Vec<meshd_chain::EpochRange> = [mqtt_epoch.saturating_sub(1), mqtt_epoch]
        .iter()
        .map(|e| e - e % ANCHOR_EVERY)
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .map(|from| meshd_chain::EpochRange { from, to: from + ANCHOR_EVERY - 1 })
        .collect();
    wait_until(
        "the MQTT reading's epoch is anchored",
        epoch * 5 + Duration::from_secs(30),
        &gateways,
        || {
            ranges
                .iter()
                .all(|range| !runtime.block_on(chain::root_of(&anvil.url, anchor_address, *range)).is_zero())
        },
    );

    // The next reading over HTTP, to gateway 0 (its interval starts long
    // after the first ended).
    let (accepted, accepted_end) = {
        let end = now_s() - 1;
        (post(&reading(&meter, 2, end, 1_005)), end)
    };
    assert_eq!(accepted.0, 200, "{}", accepted.1);
    assert!(accepted.1.contains("\"id\""), "{}", accepted.1);
    assert!(accepted_end > mqtt_end + 5);
    assert_eq!(metric(&gateways[0], "meshd_meter_readings_accepted_total{source=\"http\"}"), 1);
    // Killed right after the acknowledgement, the gateway loses nothing: the
    // attestation and the meter's state were durable before the answer.
    gateways[0].kill();
    gateways[0].start();
    wait_until("gateway 0 answers again", Duration::from_secs(20), &gateways, || {
        gateways[0].status().is_some()
    });
    let (code, body) = post(&reading(&meter, 2, now_s() - 1, 1_010));
    assert_eq!(code, 409, "the same sequence again: {body}");
    assert!(body.contains("\"rule\""), "{body}");
    let (code, body) = post("{\"meter\": 1}");
    assert_eq!(code, 400, "{body}");
    // Each rule that fails names itself (10 kW allow 14 Wh in 5 s); the
    // intervals start after the accepted one ended.
    let other = meshd_protocol::keys::Keypair::from_secret([11; 32]);
    let now = now_s();
    for (json, code, rule) in [
        (signed(&other, meter.meter_id(), 3, now + 6, 1_010, 5), 422, "bad_signature"),
        (signed(&meter, meter.meter_id(), 3, now + 6, 1_010, 100), 422, "above_capacity"),
        (signed(&meter, meter.meter_id(), 3, now + 3_600, 1_010, 5), 422, "from_the_future"),
        (signed(&meter, meter.meter_id(), 3, now + 6, 900, 5), 409, "register_went_back"),
    ] {
        let (got, body) = post(&json);
        assert_eq!((got, body.contains(&format!("\"rule\":\"{rule}\""))), (code, true), "{rule}: {body}");
    }
    let unregistered = meshd_protocol::keys::Keypair::from_secret([10; 32]);
    let (code, body) = post(&reading(&unregistered, 1, now_s() - 1, 1_000));
    assert_eq!(code, 403, "an unregistered meter: {body}");
    assert!(
        metric(&gateways[0], "meshd_meter_readings_rejected_total{source=\"http\",reason=\"unknown_meter\"}")
            >= 1
    );

    let until = gateways[1].status().map_or(0, |s| s.current_epoch) + 1;
    wait_until("the readings' epochs are final everywhere", epoch * 4, &gateways, || {
        gateways.iter().all(|g| g.last_finalized().is_some_and(|e| e >= until))
    });
    let counters: String = gateways
        .iter()
        .map(|g| {
            let text =
                get_blocking(g.api, "/metrics", Duration::from_secs(2)).map(|(_, t)| t).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("meshd_node_propos") || l.starts_with("meshd_node_refused"))
                .collect();
            format!("{}: {}\n", g.dir.display(), lines.join(" | "))
        })
        .collect();
    for gateway in &mut gateways {
        gateway.stop();
    }
    // Every store counts the two readings, once each: 10 Wh over all epochs.
    let region = Region::of(Location::check(u64::from_str_radix(&cell, 16).expect("cell")).expect("cell"), 4)
        .expect("region");
    let mut credited = Vec::new();
    let trail: String = gateways
        .iter()
        .flat_map(|g| {
            let log = g.log();
            let name = g.dir.display().to_string();
            log.lines()
                .filter(|l| l.contains("attested") || l.contains("finalized") || l.contains("publish"))
                .map(|l| format!("{name}: {l}\n"))
                .collect::<Vec<_>>()
        })
        .collect();
    for dir in &dirs {
        let store = SledStore::open(dir.join("data"), Options::default()).expect("store");
        let last = store.latest_summary(region).expect("read").expect("a summary").summary.epoch;
        credited = (0..=last)
            .filter_map(|e| store.summary(region, e).expect("read"))
            .filter(|f| f.summary.energy_wh > 0)
            .map(|f| (f.summary.epoch, f.summary.energy_wh))
            .collect();
        assert_eq!(
            credited.iter().map(|(_, wh)| wh).sum::<u64>(),
            10,
            "{}: last finalized epoch {last}, credited (epoch, Wh) {credited:?}\n{trail}\n{counters}",
            dir.display()
        );
    }

    // The meter's energy and one accepted report, proven from a committee
    // member's store (any that judged the decided proposal keeps what it
    // settled) and verified against the anchored root.
    let (energy_epoch, wh) = credited[0];
    let settled = |dir: &PathBuf| {
        let store = SledStore::open(dir.join("data"), Options::default()).expect("store");
        store.settlement(region, energy_epoch).expect("read")
    };
    let (store_dir, settlement) = dirs
        .iter()
        .find_map(|dir| settled(dir).map(|s| (dir.join("data"), s)))
        .expect("a member kept what the epoch settled");
    assert!(settlement.energy.iter().any(|(m, e)| *m == meter.meter_id() && *e == wh), "{settlement:?}");
    let prove = |what: &str, epoch: u64, id_flag: &str, id: &str| {
        let out = root.path().join(format!("{what}.json"));
        prove_and_verify(&store_dir, region, epoch, [what, id_flag, id], (&url, &anchor), &out)
    };
    let verified = prove("energy", energy_epoch, "--id", &meter.meter_id().to_string());
    assert!(verified.starts_with(&format!("OK {wh} Wh of meter")), "{verified}");
    let report_id = settlement.report_ids[0];
    let verified = prove("report", energy_epoch, "--report-id", &report_id.to_string());
    assert!(verified.starts_with(&format!("OK report {report_id}")), "{verified}");
}

/// The value of the metric line starting with `series` in the text of
/// `GET /metrics`, or 0 when absent.
fn metric(gateway: &Gateway, series: &str) -> u64 {
    let Ok((200, text)) = get_blocking(gateway.api, "/metrics", Duration::from_secs(2)) else { return 0 };
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0)
}

#[test]
fn a_gateway_sends_its_beacons_through_a_semtech_packet_forwarder() {
    use meshd::ingest::beacon;
    use meshd::ingest::semtech::Packet;

    // A committee of one decides every epoch alone, so it beacons from
    // epoch 1 on (each beacon's entropy is the previous summary).
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("g0");
    fs::create_dir_all(dir.join("keys")).expect("dir");
    let id = generate_key(&dir.join("keys"));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let forwarder_port = udp.local_addr().expect("address").port();
    drop(udp);
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let mut text = config_text(&dir, now_s() + 2, free_port(), api, "", LOCATIONS[0], &[format!("{id:?}")]);
    text.push_str(&format!("\n[radio]\nsemtech_listen = \"127.0.0.1:{forwarder_port}\"\n"));
    let config = dir.join("meshd.toml");
    fs::write(&config, text).expect("config");
    let mut gateway = Gateway { dir, config, api, child: None };
    gateway.start();

    // The packet forwarder: PULL_DATA every second (its keep-alive, which
    // gives the server the address for downlinks) until a PULL_RESP
    // carries a beacon frame; it acknowledges that with TX_ACK.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.connect(("127.0.0.1", forwarder_port)).expect("connect");
    socket.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let eui = [0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1];
    let datagram = |token: u16, identifier: u8, body: &[u8]| {
        let mut bytes = vec![2];
        bytes.extend_from_slice(&token.to_be_bytes());
        bytes.push(identifier);
        bytes.extend_from_slice(&eui);
        bytes.extend_from_slice(body);
        bytes
    };
    let deadline = Instant::now() + Duration::from_secs(EPOCH_S * 4 + 20);
    let mut sent = None;
    let mut buffer = vec![0u8; 65_536];
    while sent.is_none() && Instant::now() < deadline {
        let _ = socket.send(&datagram(7, 0x02, &[]));
        let Ok(len) = socket.recv(&mut buffer) else { continue };
        if let Ok(Packet::PullResp { token, body }) = Packet::decode(&buffer[..len]) {
            let payload = body.txpk.payload().expect("base64 payload");
            let beacon_id = beacon::parse(&payload).expect("a beacon frame");
            socket.send(&datagram(token, 0x05, br#"{"txpk_ack":{"error":"NONE"}}"#)).expect("send");
            sent = Some(beacon_id);
        }
    }
    assert!(sent.is_some(), "no beacon transmitted within four epochs\n{}", gateway.log());
    wait_until(
        "the gateway counts the transmission",
        Duration::from_secs(10),
        std::slice::from_ref(&gateway),
        || metric(&gateway, "meshd_radio_transmissions_total{outcome=\"ok\"}") == 1,
    );

    // Broken datagrams are counted by reason; the gateway keeps running.
    socket.send(&[2, 0, 1]).expect("send");
    socket.send(&datagram(8, 0x00, b"{not json")).expect("send");
    wait_until("both are counted", Duration::from_secs(10), std::slice::from_ref(&gateway), || {
        let text =
            get_blocking(gateway.api, "/metrics", Duration::from_secs(2)).map(|(_, t)| t).unwrap_or_default();
        text.lines().filter(|l| l.starts_with("meshd_semtech_udp_dropped_total{")).count() >= 2
    });
    assert!(gateway.status().is_some(), "the gateway still answers");
    gateway.stop();
}

/// About 2 km apart in Lisbon: a second region, far from Berlin's.
const LISBON: [(f64, f64); GATEWAYS] =
    [(38.7200, -9.1400), (38.7380, -9.1400), (38.7200, -9.1100), (38.7380, -9.1100)];

/// Proves `item` (`[what, id flag, id]`) of `region`'s `epoch` from the
/// store at `store` with `meshd prove`, writes the proof to `out` and checks
/// it with `meshd verify` against `(rpc url, anchor contract)`; returns
/// what `verify` printed.
fn prove_and_verify(
    store: &Path,
    region: Region,
    epoch: u64,
    [what, id_flag, id]: [&str; 3],
    (url, anchor): (&str, &str),
    out: &Path,
) -> String {
    let proved = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["prove", what, "--store"])
        .arg(store)
        .args(["--region", &format!("{:x}", region.0), "--epoch", &epoch.to_string(), id_flag, id])
        .args(["--anchor-every", &ANCHOR_EVERY.to_string()])
        .output()
        .expect("meshd prove");
    assert!(proved.status.success(), "prove {what}: {}", String::from_utf8_lossy(&proved.stderr));
    fs::write(out, &proved.stdout).expect("proof");
    let verified = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .arg("verify")
        .arg(out)
        .args(["--rpc-url", url, "--contract", anchor])
        .output()
        .expect("meshd verify");
    assert!(verified.status.success(), "verify {what}: {}", String::from_utf8_lossy(&verified.stderr));
    String::from_utf8_lossy(&verified.stdout).into_owned()
}

/// The H3 cell (hex) a gateway at `(lat, lon)` is registered at.
fn cell_of((lat, lon): (f64, f64)) -> String {
    format!("{:x}", Location::from_lat_lng(lat, lon).expect("location").0)
}

#[test]
fn two_regions_anchor_one_root_over_both_regions_summaries() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let anvil = runtime.block_on(chain::Anvil::start_on(free_port(), &["--block-time", "1"]));
    let url = anvil.url.to_string();
    let root = tempfile::tempdir().expect("tempdir");
    let locations: Vec<(f64, f64)> = LOCATIONS.iter().chain(LISBON.iter()).copied().collect();
    let (mut gateways, dirs) = mesh_at(root.path(), false, &locations);
    let regions: Vec<Region> = [LOCATIONS[0], LISBON[0]]
        .iter()
        .map(|(lat, lon)| {
            Region::of(Location::from_lat_lng(*lat, *lon).expect("location"), 4).expect("region")
        })
        .collect();
    for (n, at) in locations.iter().enumerate() {
        let region = Region::of(Location::from_lat_lng(at.0, at.1).expect("location"), 4).expect("region");
        assert_eq!(region, regions[n / GATEWAYS], "gateway {n} sits in its group's region");
    }

    // All eight on one anchor committee (quorum 6 of 8), each registered at
    // its own cell: two committees of four decide, one root covers both.
    let mut deploy = Command::new(env!("CARGO_BIN_EXE_meshd"));
    deploy.args(["chain", "deploy", "--rpc-url", &url, "--private-key", chain::DEPLOYER_KEY]);
    deploy.args(["--epoch-seconds", &EPOCH_S.to_string(), "--fund-members", "10"]);
    for (dir, at) in dirs.iter().zip(&locations) {
        deploy.arg("--member").arg(dir.join("keys/gateway.key")).args(["--location", &cell_of(*at)]);
    }
    let out = deploy.output().expect("meshd chain deploy");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "deploy: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let anchor = deployed(&stdout, "anchor_contract");
    let registry = deployed(&stdout, "registry_contract");
    // The network starts once the contracts are in place: epochs 0 and 1
    // form the first range, decided with every gateway running.
    let genesis = now_s() + 2;
    for gateway in &gateways {
        let text = fs::read_to_string(&gateway.config).expect("config");
        let (head, rest) = text.split_once("genesis_unix_s = ").expect("genesis line");
        let (_, tail) = rest.split_once('\n').expect("line end");
        let section = format!(
            "\n[chain]\nrpc_url = {url:?}\nchain_id = 31337\nanchor_contract = {anchor:?}\n\
             registry_contract = {registry:?}\n"
        );
        fs::write(&gateway.config, format!("{head}genesis_unix_s = {genesis}\n{tail}{section}"))
            .expect("config");
    }
    for gateway in &mut gateways {
        gateway.start();
    }

    let epoch = Duration::from_secs(EPOCH_S);
    let first = meshd_chain::EpochRange { from: 0, to: ANCHOR_EVERY - 1 };
    let anchor_address: alloy::primitives::Address = anchor.parse().expect("address");
    let mut anchored = alloy::primitives::B256::ZERO;
    wait_until("the first range is anchored", epoch * 6 + Duration::from_secs(30), &gateways, || {
        anchored = runtime.block_on(chain::root_of(&anvil.url, anchor_address, first));
        !anchored.is_zero()
    });
    // Each member signed the range as soon as both regions had decided it,
    // not after the wait.
    let complete = |g: &Gateway| {
        metric(g, "meshd_anchor_ranges_complete_total") >= 1
            && metric(g, "meshd_anchor_ranges_incomplete_total") == 0
    };
    // Under load a member may miss a decision of the range's last epoch for
    // longer than the wait and sign without it: the anchor then stands on
    // the quorum (6 of 8) that signed the complete root.
    let quorum = meshd_chain::quorum(2 * GATEWAYS);
    if gateways.iter().filter(|g| complete(g)).count() < quorum {
        let report: Vec<String> = gateways
            .iter()
            .map(|g| {
                let text = get_blocking(g.api, "/metrics", Duration::from_secs(2))
                    .map(|(_, t)| t)
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("meshd_anchor")).collect();
                format!("--- {}\n{}\n{}", g.dir.display(), lines.join("\n"), g.log())
            })
            .collect();
        panic!("a member signed the range without every region's summaries\n{}", report.join("\n"));
    }

    // A Berlin member restarts in the middle of the next range: Lisbon's
    // decision of the range's first epoch went by on gossip while it was
    // down, so it asks a Lisbon member for it and signs the same root as the
    // others, over both regions.
    let second = meshd_chain::EpochRange { from: ANCHOR_EVERY, to: 2 * ANCHOR_EVERY - 1 };
    wait_until("every gateway finalized the next range's first epoch", epoch * 3, &gateways, || {
        gateways.iter().all(|g| g.last_finalized().is_some_and(|e| e >= second.from))
    });
    gateways[1].kill();
    gateways[1].start();
    let mut anchored_second = alloy::primitives::B256::ZERO;
    wait_until(
        "the next range is anchored and the restarted member signed it",
        epoch * 4 + Duration::from_secs(30),
        &gateways,
        || {
            anchored_second = runtime.block_on(chain::root_of(&anvil.url, anchor_address, second));
            let signed = gateways[1]
                .status()
                .and_then(|s| s.last_anchor)
                .is_some_and(|a| a.first_epoch == second.from && a.root == format!("{anchored_second}"));
            !anchored_second.is_zero() && signed
        },
    );
    assert!(metric(&gateways[1], "meshd_anchor_ranges_complete_total") >= 1, "{}", gateways[1].log());
    for gateway in &mut gateways {
        gateway.stop();
    }

    // A quorum of members signed that root, over the same leaves: both
    // regions' summaries of both epochs.
    let stores: Vec<SledStore> =
        dirs.iter().map(|d| SledStore::open(d.join("data"), Options::default()).expect("store")).collect();
    let mut on_anchored = 0;
    for (n, store) in stores.iter().enumerate() {
        let set = store.anchor_set_covering(0).expect("read").unwrap_or_else(|| panic!("gateway {n} signed"));
        assert_eq!((set.from_epoch, set.to_epoch), (first.from, first.to));
        if format!("{:?}", set.root) != format!("{anchored:?}") {
            continue;
        }
        on_anchored += 1;
        let mut covered: Vec<(Region, u64)> = set.leaves.iter().map(|l| (l.region, l.epoch)).collect();
        covered.sort();
        let mut expected: Vec<(Region, u64)> =
            regions.iter().flat_map(|r| (first.from..=first.to).map(move |e| (*r, e))).collect();
        expected.sort();
        assert_eq!(covered, expected, "gateway {n}");
    }
    assert!(on_anchored >= quorum, "{on_anchored} members stored the anchored root");
    let restarted =
        stores[1].anchor_set_covering(second.from).expect("read").expect("the restarted member signed");
    assert_eq!(format!("{:?}", restarted.root), format!("{anchored_second:?}"));
    assert_eq!(restarted.leaves.len(), 2 * ANCHOR_EVERY as usize, "both regions, both epochs");
    let lisbon = regions[1];
    let (store_n, epoch_n, report_id) = (GATEWAYS..2 * GATEWAYS)
        .flat_map(|n| (first.from..=first.to).map(move |e| (n, e)))
        .find_map(|(n, e)| {
            let settled = stores[n].settlement(lisbon, e).expect("read")?;
            settled.report_ids.first().map(|id| (n, e, *id))
        })
        .expect("a Lisbon member settled an epoch of the range with reports");
    drop(stores);

    // A report of the second region, proven from one of its members' store
    // and verified against the root on the chain.
    let verified = prove_and_verify(
        &dirs[store_n].join("data"),
        lisbon,
        epoch_n,
        ["report", "--report-id", &report_id.to_string()],
        (&url, &anchor),
        &root.path().join("report.json"),
    );
    assert!(verified.starts_with("OK report"), "{verified}");
}
