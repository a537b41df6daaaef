//! Measures how many received frames per second meshd turns into beacon
//! observations: datagram → `rxpk` → `UplinkFrame` → beacon recognised.
//!
//! ```text
//! cargo run --release -p meshd --example semtech_throughput [DATAGRAMS]
//! ```
//!
//! Three measurements, each with PUSH_DATA datagrams of [`FRAMES_PER_DATAGRAM`]
//! beacon frames:
//! 1. the pure codec on one core (no sockets);
//! 2. the UDP server on 127.0.0.1, one test forwarder sending a datagram and
//!    waiting for its PUSH_ACK before the next (closed loop, so no datagram is
//!    lost to a full socket buffer), a consumer draining the events;
//! 3. the whole ingest path of a heard beacon, as the daemon runs it for
//!    every frame: the UDP server as in 2, then a witness report built from
//!    the observation and signed, checked as a peer checks it (signature
//!    verdict and the single-report witness rules), and persisted to a sled
//!    store as the node's outbox record (one durable write per report, as
//!    the daemon writes each of the node's records); the forwarder stays at
//!    most 2,048 frames ahead of the writes, since the server drops (and
//!    counts) events beyond its queue of 4,096. The protocol admits 32
//!    coverage reports per gateway and epoch, so this is headroom, not a
//!    rate a gateway meets.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use meshd::ingest::beacon;
use meshd::ingest::semtech::server::{Config, Event, Metrics, Server};
use meshd::ingest::semtech::{Eui64, Packet};
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::geo::{Location, Region};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{BeaconId, Message, WitnessReport};
use meshd_protocol::rules::witness;
use meshd_protocol::signature;
use meshd_storage::{Batch, Options, SledStore, Store as _};
use tokio::net::UdpSocket;

/// Frames per PUSH_DATA: the eight LoRa channels of a typical concentrator
/// each delivering a frame in one fetch cycle.
const FRAMES_PER_DATAGRAM: usize = 8;

/// Datagrams sent when no count is given: a few seconds of work.
const DEFAULT_DATAGRAMS: usize = 20_000;

#[expect(clippy::disallowed_methods, reason = "a benchmark measures wall-clock time")]
fn now() -> Instant {
    Instant::now()
}

fn push_data(token: u16, eui: Eui64, first_id: u32) -> Vec<u8> {
    let frames: Vec<String> = (0..FRAMES_PER_DATAGRAM as u32)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&(first_id + i).to_be_bytes());
            let frame = beacon::frame(&BeaconId(id));
            format!(
                r#"{{"tmst":{i},"time":"2026-11-23T20:00:00.123456Z","tmms":1447876818123,"chan":{i},"rfch":0,"freq":868.1,"mid":8,"stat":1,"modu":"LORA","datr":"SF9BW125","codr":"4/5","rssis":-97,"rssi":-96,"lsnr":-2.5,"foff":-120,"size":{},"data":"{}"}}"#,
                frame.len(),
                STANDARD.encode(frame)
            )
        })
        .collect();
    let mut bytes = vec![2];
    bytes.extend_from_slice(&token.to_be_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&eui.0);
    bytes.extend_from_slice(format!(r#"{{"rxpk":[{}]}}"#, frames.join(",")).as_bytes());
    bytes
}

fn rate(frames: usize, elapsed: Duration) -> f64 {
    frames as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let datagrams: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => DEFAULT_DATAGRAMS,
    };
    let eui = Eui64([0xAA, 0x55, 0x5A, 0, 0, 0, 0, 1]);
    let samples: Vec<Vec<u8>> = (0..64u16).map(|t| push_data(t, eui, u32::from(t) * 8)).collect();
    println!("{FRAMES_PER_DATAGRAM} beacon frames per PUSH_DATA of {} bytes", samples[0].len());

    // 1. The pure codec.
    let start = now();
    let mut recognised = 0usize;
    for i in 0..datagrams {
        if let Ok(Packet::PushData { gateway, body, .. }) = Packet::decode(&samples[i % samples.len()]) {
            for rxpk in &body.rxpk {
                if let Ok(frame) = rxpk.to_uplink(gateway) {
                    recognised += usize::from(beacon::observe(&frame, &[]).is_ok());
                }
            }
        }
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(recognised == datagrams * FRAMES_PER_DATAGRAM, "codec recognised {recognised} beacons");
    println!("codec:      {recognised} frames in {elapsed:.2?}: {:.0} frames/s", rate(recognised, elapsed));

    // 2. The UDP server on loopback.
    let config = Config { bind: "127.0.0.1:0".parse()?, events_capacity: 4096, ..Config::default() };
    let metrics = Metrics::default();
    let (server, handle, mut events) = Server::bind(config, metrics).await?;
    let server = tokio::spawn(server.run());
    let consumer = tokio::spawn(async move {
        let mut heard = 0usize;
        while let Some(event) = events.recv().await {
            heard += usize::from(matches!(event, Event::BeaconHeard { .. }));
        }
        heard
    });
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(handle.local_addr()).await?;
    let mut buffer = [0u8; 64];
    let start = now();
    for i in 0..datagrams {
        socket.send(&samples[i % samples.len()]).await?;
        tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer)).await??;
    }
    let elapsed = start.elapsed();
    drop(handle);
    server.await??;
    let heard = consumer.await?;
    anyhow::ensure!(heard == datagrams * FRAMES_PER_DATAGRAM, "server reported {heard} beacons");
    println!(
        "udp server: {heard} frames in {elapsed:.2?}: {:.0} frames/s ({:.0} datagrams/s, closed loop)",
        rate(heard, elapsed),
        rate(datagrams, elapsed)
    );

    // 3. The whole path, to a durable outbox record per frame. Fewer
    // datagrams: each frame costs a durable write.
    let datagrams = (datagrams / 10).max(1);
    let dir = tempfile::tempdir()?;
    let store = std::sync::Arc::new(SledStore::open(dir.path(), Options::default())?);
    let config = Config { bind: "127.0.0.1:0".parse()?, events_capacity: 4096, ..Config::default() };
    let (server, handle, mut events) = Server::bind(config, Metrics::default()).await?;
    let server = tokio::spawn(server.run());
    // Reports persisted so far: the sender keeps at most half the event
    // queue in flight, so that none is dropped for a full queue.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let persister = {
        let store = store.clone();
        let done = done.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let domain = Domain::new("meshd-bench");
            let key = Keypair::from_secret([7; 32]);
            let location = Location::from_lat_lng(52.52, 13.405)?;
            let region = Region::of(location, 4)?;
            let mut persisted = 0usize;
            while let Some(event) = events.blocking_recv() {
                let Event::BeaconHeard { observation, .. } = event else { continue };
                let radio = &observation.radio;
                let report = WitnessReport {
                    region,
                    epoch: 1,
                    beacon_id: observation.beacon_id,
                    location,
                    antenna_gain_ddbi: 30,
                    rssi_ddbm: radio.rssi_ddbm,
                    snr_ddb: radio.snr_ddb,
                    frequency_hz: radio.frequency_hz,
                    datarate: radio.datarate,
                    received_at_ms: 1_000,
                    tmst_us: radio.tmst_us,
                };
                let envelope = Envelope::seal(&domain, &key, &Message::WitnessReport(report))?;
                signature::verify(&domain, &envelope)?;
                let Message::WitnessReport(w) = envelope.open()? else {
                    anyhow::bail!("not a witness report")
                };
                witness::rssi_in_range(w.rssi_ddbm)
                    .and_then(|()| witness::snr_in_range(w.snr_ddb))
                    .and_then(|()| witness::frequency_in_band(w.frequency_hz))
                    .and_then(|()| witness::datarate_valid(w.datarate))
                    .map_err(|reason| anyhow::anyhow!("refused: {}", reason.as_str()))?;
                let mut batch = Batch::new();
                batch.put_report(region, w.epoch, &envelope)?;
                store.apply(&batch)?;
                persisted += 1;
                done.store(persisted, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(persisted)
        })
    };
    socket.connect(handle.local_addr()).await?;
    let start = now();
    for i in 0..datagrams {
        while i * FRAMES_PER_DATAGRAM > done.load(std::sync::atomic::Ordering::Relaxed) + 2048 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        socket.send(&samples[i % samples.len()]).await?;
        tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer)).await??;
    }
    drop(handle);
    server.await??;
    let persisted = persister.await??;
    let elapsed = start.elapsed();
    anyhow::ensure!(persisted == datagrams * FRAMES_PER_DATAGRAM, "persisted {persisted} reports");
    println!(
        "full path:  {persisted} frames in {elapsed:.2?}: {:.0} frames/s decoded, signed, checked and \
         durably persisted",
        rate(persisted, elapsed)
    );
    Ok(())
}
