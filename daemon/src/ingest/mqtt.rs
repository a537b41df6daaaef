//! What the ChirpStack forwarder and the meter readings share over MQTT:
//! broker URLs and the reconnection backoff.
//!
//! [rumqttc]'s event loop reconnects when it is polled again after an error;
//! [`Backoff`] spaces those attempts so a broker that is down costs one
//! connection attempt every [`MAX_BACKOFF`] at most.

use std::time::Duration;

use rumqttc::MqttOptions;

/// First pause after a connection error. 100 ms: a broker restarting on the
/// same machine is back within a few hundred milliseconds.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause between connection attempts. 30 s: a broker that is down
/// for long is retried twice a minute, and a gateway's beacon window (minutes)
/// loses at most one attempt's worth of time.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Keep-alive interval. 30 s: below the idle timeouts of common NAT
/// gateways (60 s and up) so a silent link is noticed within a minute.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Largest MQTT packet accepted or sent, bytes. 64 KiB: an uplink frame with
/// its metadata is under 1 KiB and a meter reading's JSON under 1 KiB; a
/// larger packet is refused by the client rather than buffered.
pub const MAX_PACKET_LEN: usize = 64 * 1024;

/// Requests buffered between the client handle and the event loop. 64: a
/// few subscriptions and one publish per beacon.
pub const REQUESTS_CAPACITY: usize = 64;

/// Why a broker URL was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `mqtt://host:port` or `tcp://host:port`.
    #[error("{0:?} is not an MQTT broker URL; write it as mqtt://host:port")]
    NotMqtt(String),
}

/// Client options for the broker at `url` (`mqtt://host:port`, the form
/// `meshd_config` validates), with this module's keep-alive and packet limit.
pub fn options(url: &str, client_id: &str) -> Result<MqttOptions, UrlError> {
    let refuse = || UrlError::NotMqtt(url.to_owned());
    let rest = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")).ok_or_else(refuse)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(refuse)?;
    let port: u16 = port.parse().map_err(|_| refuse())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(refuse());
    }
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(KEEP_ALIVE);
    options.set_max_packet_size(MAX_PACKET_LEN, MAX_PACKET_LEN);
    options.set_request_channel_capacity(REQUESTS_CAPACITY);
    Ok(options)
}

/// Exponential backoff from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], reset by a
/// successful connection.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff { next: MIN_BACKOFF }
    }
}

impl Backoff {
    /// The pause before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }

    /// A connection succeeded: start again from [`MIN_BACKOFF`].
    pub fn reset(&mut self) {
        self.next = MIN_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_give_host_and_port() {
        let local = options("mqtt://127.0.0.1:1883", "meshd").expect("valid");
        assert_eq!(local.broker_address(), ("127.0.0.1".to_owned(), 1883));
        assert_eq!(options("tcp://broker.local:8883/", "m").expect("valid").broker_address().1, 8883);
        for bad in ["http://h:1", "mqtt://h", "mqtt://:1883", "mqtt://h:0", "mqtt://h:x"] {
            assert!(options(bad, "m").is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_ceiling_and_resets() {
        let mut backoff = Backoff::default();
        assert_eq!(backoff.next_delay(), MIN_BACKOFF);
        assert_eq!(backoff.next_delay(), MIN_BACKOFF * 2);
        for _ in 0..20 {
            backoff.next_delay();
        }
        assert_eq!(backoff.next_delay(), MAX_BACKOFF);
        backoff.reset();
        assert_eq!(backoff.next_delay(), MIN_BACKOFF);
    }
}
