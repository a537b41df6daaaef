//! Helpers shared by the integration tests.
// Each test binary compiles these helpers and uses only its part of them.
#![allow(dead_code)]

pub mod mosquitto;
