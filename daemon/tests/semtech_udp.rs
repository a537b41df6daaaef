//! The Semtech UDP server, driven by a test packet forwarder over real UDP
//! datagrams on 127.0.0.1.
//!
//! Ordering: the server handles datagrams one at a time in arrival order, and
//! loopback UDP from one socket arrives in order, so once the PUSH_ACK of a
//! forwarder's last datagram is back, everything it sent before has been
//! handled. The timeouts below only keep a broken server from hanging CI.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use meshd::ingest::beacon;
use meshd::ingest::semtech::server::{Config, Dropped, Event, Handle, Metrics, Server, TransmitError};
use meshd::ingest::semtech::{Eui64, Packet, TxAckOk, TxError, TxTiming, Txpk};
use meshd_protocol::message::{BeaconId, DataRate};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Generous bound on any single wait; never reached by a working server.
const GUARD: Duration = Duration::from_secs(10);

const SF9: DataRate = DataRate { spreading_factor: 9, bandwidth_khz: 125 };

/// A packet forwarder speaking GWMP v2 from its own loopback socket.
struct Forwarder {
    socket: UdpSocket,
    eui: Eui64,
    token: u16,
}

impl Forwarder {
    async fn connect(server: &Handle, eui: u8) -> Forwarder {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback");
        socket.connect(server.local_addr()).await.expect("connect");
        Forwarder { socket, eui: Eui64([0xAA, 0x55, 0x5A, 0, 0, 0, 0, eui]), token: 0x100 * u16::from(eui) }
    }

    async fn send_raw(&self, bytes: &[u8]) {
        self.socket.send(bytes).await.expect("send");
    }

    async fn recv(&self) -> Packet {
        let mut buffer = vec![0u8; 65_536];
        let len = tokio::time::timeout(GUARD, self.socket.recv(&mut buffer))
            .await
            .expect("an answer before the guard")
            .expect("recv");
        Packet::decode(&buffer[..len]).expect("the server sends valid datagrams")
    }

    fn header(&mut self, identifier: u8) -> (u16, Vec<u8>) {
        self.token = self.token.wrapping_add(1);
        let mut bytes = vec![2];
        bytes.extend_from_slice(&self.token.to_be_bytes());
        bytes.push(identifier);
        bytes.extend_from_slice(&self.eui.0);
        (self.token, bytes)
    }

    /// Sends a PUSH_DATA with this JSON body and waits for its PUSH_ACK.
    async fn push(&mut self, json: &str) {
        let (token, mut bytes) = self.header(0x00);
        bytes.extend_from_slice(json.as_bytes());
        self.send_raw(&bytes).await;
        assert_eq!(self.recv().await, Packet::PushAck { token });
    }

    async fn pull(&mut self) {
        let (token, bytes) = self.header(0x02);
        self.send_raw(&bytes).await;
        assert_eq!(self.recv().await, Packet::PullAck { token });
    }

    async fn tx_ack(&self, token: u16, json: &str) {
        let mut bytes = vec![2];
        bytes.extend_from_slice(&token.to_be_bytes());
        bytes.push(0x05);
        bytes.extend_from_slice(&self.eui.0);
        bytes.extend_from_slice(json.as_bytes());
        self.send_raw(&bytes).await;
    }
}

/// An `rxpk` object carrying `payload`, received at SF9/125 kHz on 868.1 MHz.
fn rxpk(payload: &[u8], stat: i8, rssi: i32) -> String {
    format!(
        r#"{{"tmst":{tmst},"time":"2026-11-23T20:00:00.5Z","chan":0,"rfch":0,"freq":868.1,"stat":{stat},
        "modu":"LORA","datr":"SF9BW125","codr":"4/5","rssi":{rssi},"lsnr":-2.5,"size":{size},"data":"{data}"}}"#,
        tmst = 1_000_000 + rssi.unsigned_abs(),
        size = payload.len(),
        data = STANDARD.encode(payload),
    )
}

fn beacon_rxpk(id: BeaconId, stat: i8, rssi: i32) -> String {
    rxpk(&beacon::frame(&id), stat, rssi)
}

async fn start(config: Config) -> (Handle, mpsc::Receiver<Event>, Metrics) {
    let metrics = Metrics::default();
    let config = Config { bind: "127.0.0.1:0".parse().expect("address"), ..config };
    let (server, handle, events) = Server::bind(config, metrics.clone()).await.expect("bind server");
    tokio::spawn(server.run());
    (handle, events, metrics)
}

fn drain(events: &mut mpsc::Receiver<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(event) = events.try_recv() {
        out.push(event);
    }
    out
}

fn heard(events: &[Event]) -> Vec<(Eui64, BeaconId, i16)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::BeaconHeard { gateway, observation } => {
                Some((*gateway, observation.beacon_id, observation.radio.rssi_ddbm))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn only_valid_beacons_come_out_and_every_bad_datagram_is_counted() {
    let (handle, mut events, metrics) = start(Config { max_datagram_len: 2048, ..Config::default() }).await;
    let mut gw = Forwarder::connect(&handle, 1).await;
    let (a, b, corrupted) = (BeaconId([0xA; 16]), BeaconId([0xB; 16]), BeaconId([0xC; 16]));
    let lorawan_uplink = [0x40, 1, 2, 3, 4, 0, 1, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF];

    // One PUSH_DATA: two beacons, a LoRaWAN uplink, a beacon with a bad CRC,
    // a beacon sent without CRC, an rxpk with broken base64, and a status.
    let body = format!(
        r#"{{"rxpk":[{},{},{},{},{},{}],"stat":{{"rxnb":6,"rxok":4}}}}"#,
        beacon_rxpk(a, 1, -97),
        rxpk(&lorawan_uplink, 1, -60),
        beacon_rxpk(corrupted, -1, -120),
        beacon_rxpk(b, 1, -110),
        beacon_rxpk(BeaconId([0xD; 16]), 0, -100),
        r#"{"tmst":1,"freq":868.1,"stat":1,"modu":"LORA","datr":"SF9BW125","rssi":-1,"size":3,"data":"!!!"}"#,
    );
    gw.push(&body).await;

    // Every way a datagram can be wrong; none is answered.
    let (_, mut malformed) = gw.header(0x00);
    malformed.extend_from_slice(br#"{"rxpk":[{"tmst":"#);
    gw.send_raw(&malformed).await;
    gw.send_raw(&[2, 0]).await; // truncated before the identifier
    gw.send_raw(&[2, 0, 1, 0x00, 0xAA, 0x55]).await; // PUSH_DATA cut inside the EUI
    let (_, mut wrong_version) = gw.header(0x00);
    wrong_version[0] = 1;
    wrong_version.extend_from_slice(b"{}");
    gw.send_raw(&wrong_version).await;
    gw.send_raw(&[2, 0, 1, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]).await; // unknown identifier
    let (_, mut oversized) = gw.header(0x00);
    oversized.extend_from_slice(format!(r#"{{"rxpk":[],"pad":"{}"}}"#, "x".repeat(3000)).as_bytes());
    gw.send_raw(&oversized).await;
    gw.send_raw(&[2, 0, 9, 0x01]).await; // a PUSH_ACK: only servers send those
    gw.tx_ack(0xBEEF, "").await; // no PULL_RESP had this token
    gw.push(r#"{"rxpk":[]}"#).await;

    let events = drain(&mut events);
    assert_eq!(heard(&events), [(gw.eui, a, -970), (gw.eui, b, -1100)]);
    assert!(events.iter().any(|e| matches!(e, Event::StatusReported { stat, .. } if stat.rxnb == Some(6))));
    assert_eq!(events.len(), 3);

    assert_eq!(metrics.datagrams.get(), 10);
    assert_eq!(metrics.uplinks.get(), 4, "two beacons, the LoRaWAN uplink and the no-CRC beacon");
    assert_eq!(metrics.beacons.get(), 2);
    for (reason, count) in [
        (Dropped::BadCrc, 1),
        (Dropped::NoCrc, 1),
        (Dropped::OtherFrame, 1),
        (Dropped::InvalidRxpk, 1),
        (Dropped::MalformedJson, 1),
        (Dropped::TruncatedHeader, 2),
        (Dropped::WrongVersion, 1),
        (Dropped::UnknownIdentifier, 1),
        (Dropped::Oversized, 1),
        (Dropped::DownstreamIdentifier, 1),
        (Dropped::UnmatchedTxAck, 1),
        (Dropped::OwnBeacon, 0),
        (Dropped::EventsFull, 0),
    ] {
        assert_eq!(metrics.dropped(reason), count, "{}", reason.as_str());
    }
}

#[tokio::test]
async fn a_beacon_goes_out_in_a_pull_resp_and_its_tx_ack_answers_the_caller() {
    let (handle, mut events, metrics) = start(Config { first_token: 0xFFFF, ..Config::default() }).await;
    let mut gw = Forwarder::connect(&handle, 1).await;

    // No PULL_DATA yet: nowhere to send.
    let id = BeaconId([0x42; 16]);
    let txpk = Txpk::lora_uplink_polarity(&beacon::frame(&id), 868_100_000, SF9, 14, TxTiming::Immediately);
    assert_eq!(handle.transmit(gw.eui, txpk.clone()).await, Err(TransmitError::UnknownGateway(gw.eui)));

    gw.pull().await;
    let sent = tokio::spawn({
        let (handle, txpk, eui) = (handle.clone(), txpk.clone(), gw.eui);
        async move { handle.transmit(eui, txpk).await }
    });
    let Packet::PullResp { token, body } = gw.recv().await else { panic!("expected a PULL_RESP") };
    assert_eq!(token, 0xFFFF, "tokens start at the configured one");
    assert_eq!(body.txpk, txpk);
    assert!(!body.txpk.ipol, "beacons use uplink polarity");
    assert_eq!(body.txpk.payload().as_deref().and_then(beacon::parse), Some(id));
    gw.tx_ack(token, r#"{"txpk_ack":{"warn":"TX_POWER","value":12}}"#).await;
    assert_eq!(sent.await.expect("joined"), Ok(TxAckOk { warning: Some(12) }));

    // The next one collides with a Class-B beacon: a retryable rejection.
    let sent = tokio::spawn({
        let (handle, txpk, eui) = (handle.clone(), txpk.clone(), gw.eui);
        async move { handle.transmit(eui, txpk).await }
    });
    let Packet::PullResp { token, .. } = gw.recv().await else { panic!("expected a PULL_RESP") };
    assert_eq!(token, 0, "tokens wrap around");
    gw.tx_ack(token, r#"{"txpk_ack":{"error":"COLLISION_BEACON"}}"#).await;
    let result = sent.await.expect("joined");
    assert_eq!(result, Err(TransmitError::Rejected(TxError::CollisionBeacon)));
    assert!(matches!(result, Err(TransmitError::Rejected(error)) if error.is_retryable()));

    // The forwarder hears its own beacon: ignored, counted.
    gw.push(&format!(r#"{{"rxpk":[{}]}}"#, beacon_rxpk(id, 1, -30))).await;
    assert_eq!(drain(&mut events), []);
    assert_eq!(metrics.dropped(Dropped::OwnBeacon), 1);
    assert_eq!(metrics.transmissions.get(), 2);
    assert_eq!((metrics.tx_acks_ok.get(), metrics.tx_acks_error.get()), (1, 1));
}

#[tokio::test]
async fn two_forwarders_are_served_at_once_each_at_its_own_address() {
    let (handle, mut events, metrics) = start(Config::default()).await;
    let mut one = Forwarder::connect(&handle, 1).await;
    let mut two = Forwarder::connect(&handle, 2).await;
    one.pull().await;
    two.pull().await;

    let (id_one, id_two) = (BeaconId([1; 16]), BeaconId([2; 16]));
    let to_one =
        Txpk::lora_uplink_polarity(&beacon::frame(&id_one), 868_300_000, SF9, 14, TxTiming::Counter(5));
    let to_two =
        Txpk::lora_uplink_polarity(&beacon::frame(&id_two), 868_500_000, SF9, 14, TxTiming::GpsMs(7));
    let sent_one = tokio::spawn({
        let (handle, txpk, eui) = (handle.clone(), to_one.clone(), one.eui);
        async move { handle.transmit(eui, txpk).await }
    });
    let sent_two = tokio::spawn({
        let (handle, txpk, eui) = (handle.clone(), to_two.clone(), two.eui);
        async move { handle.transmit(eui, txpk).await }
    });
    let Packet::PullResp { token: token_one, body: body_one } = one.recv().await else { panic!("PULL_RESP") };
    let Packet::PullResp { token: token_two, body: body_two } = two.recv().await else { panic!("PULL_RESP") };
    assert_eq!((body_one.txpk, body_two.txpk), (to_one, to_two), "each forwarder gets its own frame");

    // A TX_ACK with the other gateway's EUI matches nothing.
    one.tx_ack(token_two, "").await;
    two.tx_ack(token_two, "").await;
    one.tx_ack(token_one, r#"{"txpk_ack":{"error":"TX_FREQ"}}"#).await;
    assert_eq!(sent_two.await.expect("joined"), Ok(TxAckOk::default()));
    let result = sent_one.await.expect("joined");
    assert!(matches!(&result, Err(TransmitError::Rejected(TxError::TxFreq))), "{result:?}");
    assert!(matches!(result, Err(TransmitError::Rejected(error)) if !error.is_retryable()));

    // Both forwarders belong to this gateway: one hearing the other's beacon
    // is a self-witness, ignored. Beacons of other gateways are reported
    // with the forwarder that heard them.
    let (other_a, other_b) = (BeaconId([0xA; 16]), BeaconId([0xB; 16]));
    one.push(&format!(r#"{{"rxpk":[{},{}]}}"#, beacon_rxpk(id_two, 1, -80), beacon_rxpk(other_a, 1, -101)))
        .await;
    two.push(&format!(r#"{{"rxpk":[{},{}]}}"#, beacon_rxpk(id_one, 1, -80), beacon_rxpk(other_b, 1, -102)))
        .await;
    let mut heard = heard(&drain(&mut events));
    heard.sort();
    assert_eq!(heard, [(one.eui, other_a, -1010), (two.eui, other_b, -1020)]);
    assert_eq!(metrics.dropped(Dropped::OwnBeacon), 2);
    assert_eq!(metrics.dropped(Dropped::UnmatchedTxAck), 1);
}

#[tokio::test]
async fn a_full_event_queue_drops_and_counts_instead_of_blocking() {
    let (handle, mut events, metrics) = start(Config { events_capacity: 2, ..Config::default() }).await;
    let mut gw = Forwarder::connect(&handle, 1).await;
    let frames: Vec<String> =
        (0..5u8).map(|i| beacon_rxpk(BeaconId([i; 16]), 1, -90 - i32::from(i))).collect();
    gw.push(&format!(r#"{{"rxpk":[{}]}}"#, frames.join(","))).await;
    assert_eq!(drain(&mut events).len(), 2);
    assert_eq!(metrics.beacons.get(), 5);
    assert_eq!(metrics.dropped(Dropped::EventsFull), 3);
}

#[tokio::test]
async fn dropping_every_handle_stops_the_server() {
    let metrics = Metrics::default();
    let config = Config { bind: "127.0.0.1:0".parse().expect("address"), ..Config::default() };
    let (server, handle, _events) = Server::bind(config, metrics).await.expect("bind");
    let task = tokio::spawn(server.run());
    drop(handle);
    let stopped = tokio::time::timeout(GUARD, task).await.expect("stops before the guard");
    assert!(matches!(stopped, Ok(Ok(()))));
}

#[tokio::test]
async fn the_oldest_unacknowledged_transmission_is_given_up_when_pending_is_full() {
    let (handle, _events, metrics) = start(Config { max_pending_tx: 1, ..Config::default() }).await;
    let mut gw = Forwarder::connect(&handle, 1).await;
    gw.pull().await;
    let txpk = |id: u8| {
        Txpk::lora_uplink_polarity(
            &beacon::frame(&BeaconId([id; 16])),
            868_100_000,
            SF9,
            14,
            TxTiming::Immediately,
        )
    };
    let first = tokio::spawn({
        let (handle, txpk, eui) = (handle.clone(), txpk(1), gw.eui);
        async move { handle.transmit(eui, txpk).await }
    });
    let Packet::PullResp { token: first_token, .. } = gw.recv().await else { panic!("PULL_RESP") };
    let second = tokio::spawn({
        let (handle, txpk, eui) = (handle.clone(), txpk(2), gw.eui);
        async move { handle.transmit(eui, txpk).await }
    });
    let Packet::PullResp { token: second_token, .. } = gw.recv().await else { panic!("PULL_RESP") };
    assert_eq!(first.await.expect("joined"), Err(TransmitError::NoAck));

    gw.tx_ack(first_token, "").await; // too late: nobody waits for it
    gw.tx_ack(second_token, "").await;
    assert_eq!(second.await.expect("joined"), Ok(TxAckOk::default()));
    assert_eq!(metrics.dropped(Dropped::UnmatchedTxAck), 1);
}

#[tokio::test]
async fn beacons_the_caller_declares_as_its_own_are_ignored() {
    let (handle, mut events, metrics) = start(Config::default()).await;
    let mut gw = Forwarder::connect(&handle, 1).await;
    let own = BeaconId([0x0E; 16]);
    handle.own_beacon(own).await.expect("server runs");
    gw.push(&format!(r#"{{"rxpk":[{}]}}"#, beacon_rxpk(own, 1, -90))).await;
    assert_eq!(drain(&mut events), []);
    assert_eq!(metrics.dropped(Dropped::OwnBeacon), 1);
}
