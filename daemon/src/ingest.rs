//! Ingest: what the gateway hears from its radio.
//!
//! - [`semtech`]: the Semtech UDP packet forwarder protocol (GWMP v2): a pure
//!   codec, and [`semtech::server`], the UDP task serving many forwarders.
//! - [`beacon`]: the beacon radio frame, recognising beacons in received
//!   frames and the radio fields of a witness report.
//!
//! The frame format is specified in `docs/radio.md`.

pub mod beacon;
pub mod semtech;
