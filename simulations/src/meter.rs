//! Energy meters: solar production following a daylight curve, with cloud
//! noise and outages, read every interval and signed by the meter's key.
//!
//! The engine hands each reading to its gateway's node
//! (`Input::MeterReading`) a second after the interval closes; the report
//! compares the energy the committees decided with the ground truth the
//! model produced.

use meshd_node::sim::Rng;
use meshd_protocol::envelope::{Domain, Envelope};
use meshd_protocol::keys::Keypair;
use meshd_protocol::message::{Message, MeterReading, MeterStatus};
use meshd_protocol::{MeterId, keccak256};

use crate::engine::{GENESIS_MS, NETWORK};
use crate::scenario::Scenario;
use crate::world::{derived, normal, unit};

/// One meter's state.
#[derive(Clone, Debug)]
struct Meter {
    key: Keypair,
    gateway: usize,
    sequence: u64,
    register_wh: u64,
    rng: Rng,
}

/// One reading, as a gateway's ingest receives it.
#[derive(Clone, Debug)]
pub struct Reading {
    /// The gateway the meter is attached to.
    pub gateway: usize,
    /// The meter.
    pub meter: MeterId,
    /// The signed reading.
    pub envelope: Envelope,
    /// Energy of the interval, Wh (0 in an outage).
    pub wh: u64,
    /// Whether the interval was an outage.
    pub outage: bool,
}

/// One meter's interval as the ground truth counts it.
#[derive(Clone, Copy, Debug)]
pub struct Production {
    /// Energy of the interval, Wh (0 in an outage).
    pub wh: u64,
    /// Whether the interval was an outage.
    pub outage: bool,
}

/// All meters of a scenario.
#[derive(Clone, Debug)]
pub struct MeterModel {
    meters: Vec<Meter>,
    capacity_w: u64,
    interval_s: u64,
    noise: f64,
    outage: f64,
    start_hour: f64,
    hours_per_ms: f64,
    domain: Domain,
}

/// Share of rated capacity produced at `hour` of the day (0..24): a sine
/// from 6:00 to 18:00, zero at night.
pub fn daylight(hour: f64) -> f64 {
    let h = hour.rem_euclid(24.0);
    if (6.0..18.0).contains(&h) { (std::f64::consts::PI * (h - 6.0) / 12.0).sin() } else { 0.0 }
}

impl MeterModel {
    /// The meters of a scenario, attached round-robin to gateways.
    pub fn new(s: &Scenario) -> MeterModel {
        MeterModel::of_gateways(s, |_| true)
    }

    /// The meters of a scenario attached to gateways `keep` accepts (a
    /// region's). Each meter's key and generator come from the seed and its
    /// number, so a meter reads the same whichever others are kept; only the
    /// kept ones derive a key.
    pub fn of_gateways(s: &Scenario, keep: impl Fn(usize) -> bool) -> MeterModel {
        let m = &s.meters;
        let meters = (0..m.count)
            .filter(|k| keep(k % s.placement.gateways.max(1)))
            .map(|k| {
                let secret = keccak256(
                    [&s.seed.to_le_bytes()[..], &(k as u64).to_le_bytes()[..], b"sim-meter"].concat(),
                )
                .0;
                Meter {
                    key: Keypair::from_secret(secret),
                    gateway: k % s.placement.gateways.max(1),
                    sequence: 0,
                    register_wh: 0,
                    rng: derived(s.seed, b"meter", k as u64),
                }
            })
            .collect();
        MeterModel {
            meters,
            capacity_w: m.capacity_w,
            interval_s: m.interval_s,
            noise: m.noise,
            outage: m.outage,
            start_hour: m.start_hour,
            hours_per_ms: m.hours_per_epoch / s.epoch_ms as f64,
            domain: Domain::new(NETWORK),
        }
    }

    /// Number of meters.
    pub fn len(&self) -> usize {
        self.meters.len()
    }

    /// Whether there are no meters.
    pub fn is_empty(&self) -> bool {
        self.meters.is_empty()
    }

    /// The readings of every meter for the interval ending at `end_ms`
    /// (virtual Unix ms), signed, advancing the registers.
    pub fn readings(&mut self, end_ms: u64) -> Vec<Reading> {
        let mut out = Vec::with_capacity(self.meters.len());
        let domain = self.domain.clone();
        self.advance(end_ms, |meter, reading, wh, outage| {
            if let Ok(envelope) = Envelope::seal(&domain, &meter.key, &Message::MeterReading(reading)) {
                out.push(Reading {
                    gateway: meter.gateway,
                    meter: meter.key.meter_id(),
                    envelope,
                    wh,
                    outage,
                });
            }
        });
        out
    }

    /// What every meter produced in the interval ending at `end_ms`, as
    /// [`MeterModel::readings`] would read it, without signing (the ground
    /// truth needs the energy, not the envelopes); advances the registers.
    pub fn production(&mut self, end_ms: u64) -> Vec<Production> {
        let mut out = Vec::with_capacity(self.meters.len());
        self.advance(end_ms, |_, _, wh, outage| out.push(Production { wh, outage }));
        out
    }

    /// Draws every meter's interval ending at `end_ms` and hands each
    /// reading (with its energy and outage flag) to `each`, in meter order.
    fn advance(&mut self, end_ms: u64, mut each: impl FnMut(&Meter, MeterReading, u64, bool)) {
        let interval_ms = self.interval_s * 1000;
        let start_ms = end_ms.saturating_sub(interval_ms);
        let hour = self.start_hour + (start_ms.saturating_sub(GENESIS_MS)) as f64 * self.hours_per_ms;
        let sun = daylight(hour);
        for meter in &mut self.meters {
            let outage = unit(&mut meter.rng) < self.outage;
            let clouds = (1.0 + self.noise * normal(&mut meter.rng)).clamp(0.0, 1.0);
            let wh = if outage {
                0
            } else {
                (self.capacity_w as f64 * sun * clouds * self.interval_s as f64 / 3600.0).round() as u64
            };
            let reading = MeterReading {
                meter: meter.key.meter_id(),
                sequence: meter.sequence,
                interval_start_s: start_ms / 1000,
                interval_end_s: end_ms / 1000,
                register_start_wh: meter.register_wh,
                register_end_wh: meter.register_wh + wh,
                status: if outage { MeterStatus::Fault } else { MeterStatus::Ok },
            };
            meter.sequence += 1;
            meter.register_wh += wh;
            each(meter, reading, wh, outage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_production_at_night_and_most_at_noon() {
        assert_eq!(daylight(2.0), 0.0);
        assert_eq!(daylight(20.0), 0.0);
        assert!(daylight(12.0) > 0.99);
        assert!(daylight(9.0) < daylight(12.0));
    }

    #[test]
    fn registers_only_grow_and_sequences_advance() {
        let mut s = Scenario::default();
        s.meters.count = 3;
        s.meters.outage = 0.0;
        let mut model = MeterModel::new(&s);
        let mut last = [0u64; 3];
        for k in 1..=8u64 {
            for (i, r) in model.readings(GENESIS_MS + k * 900_000).iter().enumerate() {
                let Ok(Message::MeterReading(m)) = r.envelope.open() else { panic!("a meter reading") };
                assert_eq!(m.sequence, k - 1);
                assert!(m.register_end_wh >= m.register_start_wh);
                assert_eq!(m.register_start_wh, last[i]);
                last[i] = m.register_end_wh;
            }
        }
        assert!(last.iter().any(|wh| *wh > 0));
    }

    #[test]
    fn production_is_what_the_readings_carry_and_a_region_reads_as_the_whole() {
        let mut s = Scenario::default();
        s.meters.count = 5;
        s.meters.outage = 0.3;
        s.placement.gateways = 3;
        let mut all = MeterModel::new(&s);
        let mut truth = MeterModel::new(&s);
        let mut some = MeterModel::of_gateways(&s, |g| g == 1);
        assert_eq!(some.len(), 2);
        for k in 1..=6u64 {
            let end = GENESIS_MS + k * 900_000;
            let readings = all.readings(end);
            let produced = truth.production(end);
            assert_eq!(readings.len(), produced.len());
            for (r, p) in readings.iter().zip(&produced) {
                assert_eq!((r.wh, r.outage), (p.wh, p.outage));
            }
            let kept: Vec<&Reading> = readings.iter().filter(|r| r.gateway == 1).collect();
            let region = some.readings(end);
            assert_eq!(region.len(), kept.len());
            for (a, b) in region.iter().zip(kept) {
                assert_eq!(a.envelope, b.envelope);
            }
        }
    }
}
