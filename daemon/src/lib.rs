//! The library half of `meshd`: the daemon's IO modules, built as a library
//! so that integration tests and examples drive them as the binary does.
//!
//! - [`ingest`]: radio ingest (Semtech UDP packet forwarder, beacon frames).

pub mod ingest;
