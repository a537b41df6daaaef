//! The ChirpStack MQTT forwarder and the radio front against a real
//! mosquitto broker: uplinks in, beacons heard, malformed messages counted,
//! downlinks out with their acks, reconnection after a broker restart.

mod support;

use std::time::Duration;

use chirpstack_api::gw::{
    CrcStatus, DownlinkFrame, DownlinkTxAck, DownlinkTxAckItem, LoraModulationInfo, Modulation, TxAckStatus,
    UplinkFrame, UplinkRxInfo, UplinkTxInfo, modulation,
};
use chirpstack_api::prost::Message as _;
use meshd::ingest::chirpstack::{Config, Downlink, Dropped, Event, Forwarder, Metrics, TransmitError};
use meshd::ingest::semtech::{Eui64, TxError};
use meshd::ingest::{beacon, mqtt, radio};
use meshd_protocol::message::{BeaconId, DataRate};
use prometheus_client::registry::Registry;
use support::mosquitto::{Broker, TestClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const GATEWAY: Eui64 = Eui64([0x00, 0x16, 0xc0, 0x01, 0xff, 0x10, 0xa2, 0x35]);
const PREFIX: &str = "eu868";
const RATE: DataRate = DataRate { spreading_factor: 9, bandwidth_khz: 125 };

fn id(n: u8) -> BeaconId {
    BeaconId([n; 16])
}

fn topic(suffix: &str) -> String {
    format!("{PREFIX}/gateway/{GATEWAY}/{suffix}")
}

fn uplink(payload: &[u8], crc: CrcStatus) -> Vec<u8> {
    UplinkFrame {
        phy_payload: payload.to_vec(),
        tx_info: Some(UplinkTxInfo {
            frequency: 868_100_000,
            modulation: Some(Modulation {
                parameters: Some(modulation::Parameters::Lora(LoraModulationInfo {
                    bandwidth: 125_000,
                    spreading_factor: 9,
                    ..LoraModulationInfo::default()
                })),
            }),
        }),
        rx_info: Some(UplinkRxInfo {
            rssi: -97,
            snr: 5.5,
            context: 4242u32.to_be_bytes().to_vec(),
            crc_status: crc as i32,
            ..UplinkRxInfo::default()
        }),
        ..UplinkFrame::default()
    }
    .encode_to_vec()
}

fn beacon_uplink(n: u8) -> Vec<u8> {
    uplink(&beacon::frame(&id(n)), CrcStatus::CrcOk)
}

fn ack(downlink_id: u32, status: TxAckStatus) -> Vec<u8> {
    DownlinkTxAck {
        gateway_id: GATEWAY.to_string(),
        downlink_id,
        items: vec![DownlinkTxAckItem { status: status as i32 }],
        ..DownlinkTxAck::default()
    }
    .encode_to_vec()
}

/// Publishes beacon `n` until the forwarder reports it: the forwarder
/// subscribes after connecting, so earlier messages are not delivered to it.
async fn until_heard(gateway: &TestClient, events: &mut mpsc::Receiver<Event>, n: u8) {
    for _ in 0..100 {
        gateway.publish(&topic("event/up"), beacon_uplink(n)).await;
        if let Ok(Some(Event::BeaconHeard { observation, .. })) =
            tokio::time::timeout(Duration::from_millis(100), events.recv()).await
        {
            assert_eq!(observation.beacon_id, id(n));
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {}
            return;
        }
    }
    panic!("the forwarder never heard beacon {n}");
}

async fn next_heard(events: &mut mpsc::Receiver<Event>) -> BeaconId {
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(Event::BeaconHeard { gateway, observation })) => {
            assert_eq!(gateway, GATEWAY);
            observation.beacon_id
        }
        other => panic!("expected a heard beacon, got {other:?}"),
    }
}

#[tokio::test]
async fn uplinks_become_beacons_heard_and_everything_else_is_counted() {
    let mut broker = Broker::start().await;
    let metrics = Metrics::default();
    let options = mqtt::options(&broker.url(), "meshd-test").expect("url");
    let (forwarder, handle, mut events) =
        Forwarder::connect(Config::new(PREFIX, vec![GATEWAY]), options, metrics.clone());
    let cancel = CancellationToken::new();
    tokio::spawn(forwarder.run(cancel.clone()));
    let mut gateway = TestClient::connect(&broker, "gateway").await;
    gateway.subscribe(&topic("command/down")).await;
    until_heard(&gateway, &mut events, 1).await;

    gateway.publish(&topic("event/up"), beacon_uplink(2)).await;
    gateway.publish(&topic("event/up"), uplink(&beacon::frame(&id(3)), CrcStatus::BadCrc)).await;
    gateway.publish(&topic("event/up"), uplink(&beacon::frame(&id(4)), CrcStatus::NoCrc)).await;
    gateway.publish(&topic("event/up"), uplink(&[0x40; 20], CrcStatus::CrcOk)).await;
    gateway.publish(&topic("event/up"), vec![0xff; 7]).await;
    gateway.publish(&topic("event/ack"), vec![0xff; 7]).await;
    gateway.publish(&topic("event/ack"), ack(9999, TxAckStatus::Ok)).await;
    gateway.publish(&topic("event/up"), beacon_uplink(5)).await;
    assert_eq!(next_heard(&mut events).await, id(2));
    assert_eq!(next_heard(&mut events).await, id(5), "nothing between the two valid beacons");
    for (reason, count) in [
        (Dropped::BadCrc, 1),
        (Dropped::NoCrc, 1),
        (Dropped::OtherFrame, 1),
        (Dropped::MalformedUplink, 1),
        (Dropped::MalformedAck, 1),
        (Dropped::UnmatchedAck, 1),
        (Dropped::OwnBeacon, 0),
    ] {
        assert_eq!(metrics.dropped(reason), count, "{}", reason.as_str());
    }

    // A beacon out, acknowledged; another rejected for its frequency.
    let downlink = Downlink {
        phy_payload: beacon::frame(&id(6)).to_vec(),
        frequency_hz: 869_525_000,
        datarate: RATE,
        power_dbm: 14,
    };
    let sender = handle.clone();
    let sent = tokio::spawn({
        let downlink = downlink.clone();
        async move { sender.transmit(GATEWAY, downlink).await }
    });
    let message = gateway.next().await;
    assert_eq!(message.topic, topic("command/down"));
    let frame = DownlinkFrame::decode(message.payload.as_ref()).expect("a DownlinkFrame");
    assert_eq!(frame.gateway_id, GATEWAY.to_string());
    assert_eq!(beacon::parse(&frame.items[0].phy_payload), Some(id(6)));
    gateway.publish(&topic("event/ack"), ack(frame.downlink_id, TxAckStatus::Ok)).await;
    assert!(sent.await.expect("task").is_ok());

    let sender = handle.clone();
    let rejected = tokio::spawn(async move { sender.transmit(GATEWAY, downlink).await });
    let frame = DownlinkFrame::decode(gateway.next().await.payload.as_ref()).expect("a DownlinkFrame");
    gateway.publish(&topic("event/ack"), ack(frame.downlink_id, TxAckStatus::TxFreq)).await;
    assert_eq!(rejected.await.expect("task"), Err(TransmitError::Rejected(TxError::TxFreq)));
    assert_eq!((metrics.acks_ok.get(), metrics.acks_error.get()), (1, 1));
    let other = Eui64([9; 8]);
    assert_eq!(
        handle
            .transmit(other, Downlink { phy_payload: vec![1], frequency_hz: 1, datarate: RATE, power_dbm: 0 })
            .await,
        Err(TransmitError::UnknownGateway(other))
    );

    // The gateway's own beacon, heard back, is no witness.
    gateway.publish(&topic("event/up"), beacon_uplink(6)).await;
    gateway.publish(&topic("event/up"), beacon_uplink(7)).await;
    assert_eq!(next_heard(&mut events).await, id(7));
    assert_eq!(metrics.dropped(Dropped::OwnBeacon), 1);

    // The broker restarts: the forwarder reconnects and subscribes again.
    broker.restart().await;
    let gateway = TestClient::connect(&broker, "gateway-again").await;
    until_heard(&gateway, &mut events, 8).await;
    assert!(metrics.disconnects.get() >= 1);
    cancel.cancel();
}

#[tokio::test]
async fn the_radio_front_retries_a_collision_and_feeds_heard_beacons() {
    let broker = Broker::start().await;
    let config = meshd_config::Radio {
        mqtt_url: Some(broker.url()),
        mqtt_topic_prefix: PREFIX.into(),
        gateway_ids: vec![GATEWAY.to_string()],
        ..meshd_config::Radio::default()
    };
    let settings = radio::Settings::from_config(&config, "meshd-radio-test").expect("settings");
    let mut registry = Registry::with_prefix("meshd");
    let cancel = CancellationToken::new();
    let (radio, mut heard) = radio::start(settings, &mut registry, cancel.clone()).await.expect("start");
    let mut gateway = TestClient::connect(&broker, "gateway").await;
    gateway.subscribe(&topic("command/down")).await;

    let mut got = None;
    for _ in 0..100 {
        gateway.publish(&topic("event/up"), beacon_uplink(1)).await;
        if let Ok(Some(beacon)) = tokio::time::timeout(Duration::from_millis(100), heard.recv()).await {
            got = Some(beacon);
            break;
        }
    }
    let beacon = got.expect("a heard beacon");
    assert_eq!((beacon.beacon_id, beacon.rssi_ddbm, beacon.snr_ddb), (id(1), -970, 55));
    assert_eq!((beacon.frequency_hz, beacon.datarate, beacon.tmst_us), (868_100_000, RATE, 4242));

    let sender = radio.clone();
    let sent = tokio::spawn(async move { sender.transmit(id(9)).await });
    let first = DownlinkFrame::decode(gateway.next().await.payload.as_ref()).expect("a DownlinkFrame");
    let tx = first.items[0].tx_info.as_ref().expect("tx info");
    assert_eq!((tx.frequency, tx.power), (config.beacon_frequency_hz, 14));
    gateway.publish(&topic("event/ack"), ack(first.downlink_id, TxAckStatus::CollisionPacket)).await;
    let second = DownlinkFrame::decode(gateway.next().await.payload.as_ref()).expect("a retry");
    assert_ne!(second.downlink_id, first.downlink_id);
    assert_eq!(beacon::parse(&second.items[0].phy_payload), Some(id(9)));
    gateway.publish(&topic("event/ack"), ack(second.downlink_id, TxAckStatus::Ok)).await;
    assert_eq!(sent.await.expect("task"), Ok(()));
    assert_eq!(radio.metrics().transmissions("ok"), 1);

    let sender = radio.clone();
    let refused = tokio::spawn(async move { sender.transmit(id(10)).await });
    let frame = DownlinkFrame::decode(gateway.next().await.payload.as_ref()).expect("a DownlinkFrame");
    gateway.publish(&topic("event/ack"), ack(frame.downlink_id, TxAckStatus::TxPower)).await;
    assert_eq!(refused.await.expect("task"), Err(radio::TxError::Rejected(TxError::TxPower)));
    assert_eq!(radio.metrics().transmissions("tx_power"), 1);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(text.contains(r#"meshd_radio_retries_total{code="collision_packet"} 1"#), "{text}");
    assert!(text.contains("meshd_chirpstack_mqtt_acks_error_total 2"), "{text}");
    cancel.cancel();
}
