//! Ingest: what the gateway hears from its radio.
//!
//! - [`semtech`]: the Semtech UDP packet forwarder protocol (GWMP v2): a pure
//!   codec, and [`semtech::server`], the UDP task serving many forwarders.
//! - [`beacon`]: the beacon radio frame, recognising beacons in received
//!   frames and the radio fields of a witness report.
//!
//! - [`chirpstack`]: the ChirpStack MQTT forwarder (protobuf `gw` frames).
//! - [`radio`]: the radio front the daemon starts from `[radio]`: heard
//!   beacons in, beacon transmissions out, over either forwarder.
//! - [`meters`]: signed energy meter readings over HTTP and MQTT.
//! - [`mqtt`]: broker URLs and reconnection backoff.
//!
//! The frame format is specified in `docs/radio.md`, the readings' JSON in
//! `docs/meters.md`.

pub mod beacon;
pub mod chirpstack;
pub mod meters;
pub mod mqtt;
pub mod radio;
pub mod semtech;
