//! Synthetic energy meters (`[synthetic] meters`, `meter_peak_w`): solar
//! installations that report a signed reading per interval, so a demo mesh
//! attests energy as a real one does.
//!
//! Each meter is a photovoltaic system of peak power `P` at the gateway's
//! longitude. Its clean production follows the daylight curve
//! `P · max(0, sin(π · (h − 6) / 12))` over the local solar hour `h` (UTC +
//! longitude / 15°): zero at night, `P` at solar noon, `2 · 12 h · P / π` a
//! day. A reading's energy is the clean energy of its interval scaled by a
//! cloud factor between 0.8 and 1, and 2 % of intervals are lost (an
//! outage: no reading). The energy register is the clean register at the
//! interval's start plus the noisy delta, so it never runs backwards across
//! a restart (the clean register bounds every noisy one from above) and no
//! reading exceeds the rated power.
//!
//! Sequence numbers are interval indices since the Unix epoch: strictly
//! increasing without any stored state. Keys derive from the gateway's key
//! and the meter's index, so a meter keeps its id across restarts.

use std::f64::consts::PI;

use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{Message, MeterReading, MeterStatus};
use meshd_protocol::{MeterId, keccak256};

/// Longest reading interval: 15 minutes, the usual settlement period of
/// smart meters.
pub const MAX_INTERVAL_S: u64 = 900;

/// Shortest reading interval: 5 seconds, so a demo with short epochs still
/// attests a few readings per epoch.
pub const MIN_INTERVAL_S: u64 = 5;

/// Intervals lost to an outage, per mille: 2 %.
const OUTAGE_PER_MILLE: u64 = 20;

/// Seconds in a day.
const DAY_S: f64 = 86_400.0;

/// One synthetic meter.
#[derive(Clone)]
pub struct Meter {
    key: Keypair,
    /// The meter's id (its public key).
    pub id: MeterId,
}

/// The synthetic meters of one gateway.
pub struct Meters {
    meters: Vec<Meter>,
    peak_w: u64,
    longitude_deg: f64,
    interval_s: u64,
    /// The last interval index read.
    last: Option<u64>,
    domain: Domain,
}

impl Meters {
    /// `count` meters of `peak_w` each at `longitude_deg`, reading every
    /// `interval_s` (clamped to [`MIN_INTERVAL_S`]..=[`MAX_INTERVAL_S`]).
    pub fn new(
        gateway: &Keypair,
        count: u32,
        peak_w: u64,
        longitude_deg: f64,
        interval_s: u64,
        network: &str,
    ) -> Meters {
        let meters = (0..count)
            .map(|index| {
                let mut seed = b"meshd.synthetic-meter.v1".to_vec();
                seed.extend_from_slice(gateway.secret_bytes().as_slice());
                seed.extend_from_slice(&index.to_le_bytes());
                let key = Keypair::from_secret(keccak256(&seed).0);
                let id = key.meter_id();
                Meter { key, id }
            })
            .collect();
        Meters {
            meters,
            peak_w,
            longitude_deg,
            interval_s: interval_s.clamp(MIN_INTERVAL_S, MAX_INTERVAL_S),
            last: None,
            domain: Domain::new(network),
        }
    }

    /// The meters.
    pub fn meters(&self) -> &[Meter] {
        &self.meters
    }

    /// Each meter's rated power, W.
    pub fn peak_w(&self) -> u64 {
        self.peak_w
    }

    /// The reading interval, s.
    pub fn interval_s(&self) -> u64 {
        self.interval_s
    }

    /// When the next readings are due, Unix ms: the end of the current interval.
    pub fn next_due_ms(&self, now_ms: u64) -> u64 {
        let interval_ms = self.interval_s * 1000;
        (now_ms / interval_ms + 1) * interval_ms
    }

    /// The signed readings of the last interval that ended by `now_ms`, once
    /// per interval (empty when already read, or for meters in an outage).
    pub fn due(&mut self, now_ms: u64) -> Vec<Envelope> {
        let index = (now_ms / 1000) / self.interval_s;
        // Interval `index − 1` just ended.
        let Some(ended) = index.checked_sub(1) else { return Vec::new() };
        if self.last.is_some_and(|last| last >= ended) {
            return Vec::new();
        }
        self.last = Some(ended);
        let start_s = ended * self.interval_s;
        let end_s = start_s + self.interval_s;
        let clean_start = clean_register_wh(self.peak_w, self.longitude_deg, start_s);
        let clean_end = clean_register_wh(self.peak_w, self.longitude_deg, end_s);
        let mut readings = Vec::new();
        for meter in &self.meters {
            let draw = draw(&meter.id, ended);
            if draw % 1000 < OUTAGE_PER_MILLE {
                continue;
            }
            // Cloud factor 0.8..=1.0.
            let factor = 0.8 + 0.2 * ((draw >> 10) % 1001) as f64 / 1000.0;
            let delta = ((clean_end - clean_start) as f64 * factor).floor() as u64;
            let reading = MeterReading {
                meter: meter.id,
                sequence: ended,
                interval_start_s: start_s,
                interval_end_s: end_s,
                register_start_wh: clean_start,
                register_end_wh: clean_start + delta,
                status: MeterStatus::Ok,
            };
            if let Ok(envelope) = Envelope::seal(&self.domain, &meter.key, &Message::MeterReading(reading)) {
                readings.push(envelope);
            }
        }
        readings
    }
}

/// A pseudo-random number of a meter and interval.
fn draw(meter: &MeterId, interval: u64) -> u64 {
    let mut seed = meter.0.to_vec();
    seed.extend_from_slice(&interval.to_le_bytes());
    let hash = keccak256(&seed);
    u64::from_le_bytes(hash.0[..8].try_into().unwrap_or_default())
}

/// Energy produced by a clean day's curve from Unix time 0 to `t_s`, Wh.
pub fn clean_register_wh(peak_w: u64, longitude_deg: f64, t_s: u64) -> u64 {
    // Local solar time in seconds since the Unix epoch's solar midnight.
    let solar = t_s as f64 + longitude_deg / 15.0 * 3600.0;
    let days = (solar / DAY_S).floor();
    let into_day = solar - days * DAY_S;
    let peak = peak_w as f64;
    // ∫ P·sin(π(h−6)/12) dh over the daylight hours 6..18 = 24·P/π Wh.
    let per_day_wh = 24.0 * peak / PI;
    let hour = into_day / 3600.0;
    let partial = if hour <= 6.0 {
        0.0
    } else if hour >= 18.0 {
        per_day_wh
    } else {
        12.0 * peak / PI * (1.0 - (PI * (hour - 6.0) / 12.0).cos())
    };
    (days.max(0.0) * per_day_wh + partial).floor() as u64
}

#[cfg(test)]
mod tests {
    use meshd_protocol::rules::meter::{self, Params};

    use super::*;

    #[test]
    fn the_register_follows_the_daylight_curve() {
        let peak = 5_000;
        let day_wh = (24.0 * 5_000.0 / PI) as u64;
        // Longitude 0: solar time is UTC. Night adds nothing, noon the most.
        let midnight = 20_000 * 86_400;
        assert_eq!(clean_register_wh(peak, 0.0, midnight + 5 * 3600), clean_register_wh(peak, 0.0, midnight));
        let noon_hour = clean_register_wh(peak, 0.0, midnight + 12 * 3600 + 1800)
            - clean_register_wh(peak, 0.0, midnight + 11 * 3600 + 1800);
        assert!((4_950..=5_000).contains(&noon_hour), "{noon_hour} Wh in the noon hour");
        let day = clean_register_wh(peak, 0.0, midnight + 86_400) - clean_register_wh(peak, 0.0, midnight);
        assert!(day.abs_diff(day_wh) <= 1, "{day} vs {day_wh}");
    }

    #[test]
    fn readings_pass_the_meter_rules_in_sequence_and_across_a_restart() {
        let gateway = Keypair::from_secret([9; 32]);
        let domain = Domain::new("test");
        let mut meters = Meters::new(&gateway, 3, 5_000, 13.4, 60, "test");
        let start_ms = (20_000 * 86_400 + 10 * 3600) * 1000;
        let mut state: std::collections::BTreeMap<MeterId, meter::MeterState> = Default::default();
        let mut accepted = 0;
        let mut attested_wh = 0;
        for minute in 1..=120 {
            let now_ms = start_ms + minute * 60_000 + 500;
            // A restart halfway: a fresh generator must continue the sequence.
            if minute == 60 {
                meters = Meters::new(&gateway, 3, 5_000, 13.4, 60, "test");
            }
            for envelope in meters.due(now_ms) {
                let Ok(Message::MeterReading(reading)) = envelope.open() else { panic!("a reading") };
                let last = state.get(&reading.meter).copied();
                let ok = meter::check(
                    &domain,
                    &envelope,
                    &reading,
                    last.as_ref(),
                    5_000,
                    now_ms,
                    &Params::default(),
                )
                .unwrap_or_else(|reason| panic!("minute {minute}: {reason}"));
                state.insert(reading.meter, meter::MeterState::after(&reading));
                accepted += 1;
                attested_wh += ok.delta_wh;
            }
            assert!(meters.due(now_ms).is_empty(), "once per interval");
        }
        assert!(accepted >= 3 * 120 * 9 / 10, "{accepted} readings");
        assert!(attested_wh > 3 * 2 * 4_000, "two morning hours of three 5 kW meters: {attested_wh} Wh");
    }
}
