//! The synthetic source: radio traffic for demonstration and test meshes
//! without a concentrator (`[synthetic] enabled = true`).
//!
//! # Beacons
//!
//! A real gateway learns of a beacon by hearing its frame; the synthetic
//! radio learns of it from the beaconer's `BeaconReport`, which reaches
//! every gateway of the region over gossip, and decides whether this
//! gateway's antenna would have heard the frame:
//!
//! - received power = transmit power + both antenna gains − free-space path
//!   loss at the beacon's frequency ([`witness::free_space_path_loss_ddb`],
//!   the bound the witness rules check against) − [`CLUTTER_LOSS_DDB`] −
//!   a log-normal-like shadowing term of 0 to 12 dB, drawn from the
//!   beacon id and this gateway's id (deterministic: the same pair always
//!   fades the same);
//! - heard when that power is at or above the concentrator's sensitivity for
//!   the spreading factor ([`sensitivity_ddbm`]);
//! - SNR = received power − the thermal noise floor of the channel
//!   ([`noise_floor_ddbm`]), clamped to what a concentrator reports;
//! - reception time = transmission time + time on air, or the moment the
//!   report arrived if gossip was slower; a report arriving after the
//!   witness rules' reception window is not heard (it could not be
//!   witnessed in time).
//!
//! The heard frame then goes through the node exactly as a frame from a
//! concentrator does: it signs a witness report and gossips it.

use meshd_node::Heard;
use meshd_protocol::envelope::Envelope;
use meshd_protocol::geo::{Location, distance_m};
use meshd_protocol::message::{BeaconReport, DataRate, Message};
use meshd_protocol::rules::witness::{self, SNR_MAX_DDB, SNR_MIN_DDB};
use meshd_protocol::{GatewayId, keccak256};

/// Loss beyond free space from buildings and vegetation between two rooftop
/// antennas, tenths of dB: 6 dB, a light urban clutter allowance.
pub const CLUTTER_LOSS_DDB: i64 = 60;

/// Largest shadowing loss drawn, tenths of dB: 12 dB, about 2σ of the 6 dB
/// log-normal shadowing usual in suburban LoRa measurements.
pub const MAX_SHADOWING_DDB: i64 = 120;

/// Time on air of the 20-byte beacon frame at SF9/125 kHz is 185 ms; any
/// frame's reception is stamped at least this long after its transmission.
pub const MIN_AIRTIME_MS: u64 = 185;

/// Margin kept before the end of the witness rules' reception window, ms, so
/// that the witness report's own timestamp stays inside it.
const WINDOW_MARGIN_MS: u64 = 250;

/// Sensitivity of an SX1302 concentrator, tenths of dBm: −124.5 dBm at
/// SF7/125 kHz, 2.5 dB better per spreading factor, 3 dB worse per doubling
/// of the bandwidth (Semtech's data sheet figures, rounded).
pub fn sensitivity_ddbm(datarate: DataRate) -> i64 {
    let sf = i64::from(datarate.spreading_factor.clamp(5, 12));
    let doublings = match datarate.bandwidth_khz {
        500 => 2,
        250 => 1,
        _ => 0,
    };
    -1245 - 25 * (sf - 7) + 30 * doublings
}

/// Thermal noise of a LoRa channel with a 6 dB receiver noise figure, tenths
/// of dBm: −174 dBm/Hz + 10·log10(bandwidth) + 6 dB (−117 dBm at 125 kHz).
pub fn noise_floor_ddbm(datarate: DataRate) -> i64 {
    match datarate.bandwidth_khz {
        500 => -1110,
        250 => -1140,
        _ => -1170,
    }
}

/// This gateway's synthetic antenna.
#[derive(Clone, Debug)]
pub struct SyntheticRadio {
    me: GatewayId,
    location: Location,
    gain_ddbi: i16,
    witness: witness::Params,
}

impl SyntheticRadio {
    /// The antenna of gateway `me` at `location` with `gain_ddbi`, judged
    /// against the network's witness rules `witness`.
    pub fn new(
        me: GatewayId,
        location: Location,
        gain_ddbi: i16,
        witness: witness::Params,
    ) -> SyntheticRadio {
        SyntheticRadio { me, location, gain_ddbi, witness }
    }

    /// When and how this gateway hears the beacon announced by `envelope`
    /// (arrived at `now_ms`), or `None` if it is not a beacon report of
    /// another gateway or would not be heard.
    pub fn hear(&self, envelope: &Envelope, now_ms: u64) -> Option<(u64, Heard)> {
        if envelope.signer == *self.me.as_bytes() {
            return None;
        }
        let Ok(Message::BeaconReport(beacon)) = envelope.open() else { return None };
        let rssi = self.received_power_ddbm(&beacon)?;
        if rssi < sensitivity_ddbm(beacon.datarate) {
            return None;
        }
        let at = now_ms.max(beacon.transmitted_at_ms.saturating_add(MIN_AIRTIME_MS));
        let deadline = beacon
            .transmitted_at_ms
            .saturating_add(self.witness.max_reception_delay_ms)
            .saturating_sub(WINDOW_MARGIN_MS);
        if at > deadline {
            return None;
        }
        let snr =
            (rssi - noise_floor_ddbm(beacon.datarate)).clamp(i64::from(SNR_MIN_DDB), i64::from(SNR_MAX_DDB));
        let heard = Heard {
            beacon_id: beacon.beacon_id,
            rssi_ddbm: i16::try_from(rssi).ok()?,
            snr_ddb: i16::try_from(snr).ok()?,
            frequency_hz: beacon.frequency_hz,
            datarate: beacon.datarate,
            // The concentrator's free-running µs counter: wraps every ~71 minutes.
            tmst_us: (at.wrapping_mul(1000) & u64::from(u32::MAX)) as u32,
        };
        Some((at, heard))
    }

    /// The power this antenna receives from `beacon`, tenths of dBm.
    fn received_power_ddbm(&self, beacon: &BeaconReport) -> Option<i64> {
        let distance = distance_m(beacon.location, self.location).ok()?.max(1);
        let loss = witness::free_space_path_loss_ddb(distance, beacon.frequency_hz);
        let eirp = i64::from(beacon.tx_power_ddbm) + i64::from(beacon.antenna_gain_ddbi);
        Some(eirp + i64::from(self.gain_ddbi) - loss - CLUTTER_LOSS_DDB - self.shadowing_ddb(beacon))
    }

    /// 0..=12 dB, bell-shaped: the mean of three uniform draws from the hash
    /// of the beacon and this gateway.
    fn shadowing_ddb(&self, beacon: &BeaconReport) -> i64 {
        let mut seed = beacon.beacon_id.0.to_vec();
        seed.extend_from_slice(self.me.as_bytes());
        let hash = keccak256(&seed);
        let draws: i64 = hash.0[..3].iter().map(|b| i64::from(*b)).sum();
        draws * MAX_SHADOWING_DDB / (3 * 255)
    }
}

#[cfg(test)]
mod tests {
    use meshd_protocol::Hash32;
    use meshd_protocol::envelope::Domain;
    use meshd_protocol::geo::Region;
    use meshd_protocol::keys::Keypair;
    use meshd_protocol::message::BeaconId;

    use super::*;

    fn beacon_from(key: &Keypair, at: Location, transmitted_at_ms: u64) -> Envelope {
        let beacon = BeaconReport {
            region: Region::of(at, 4).expect("region"),
            epoch: 1,
            location: at,
            antenna_gain_ddbi: 20,
            tx_power_ddbm: 140,
            frequency_hz: 868_100_000,
            datarate: DataRate { spreading_factor: 9, bandwidth_khz: 125 },
            entropy: Hash32::ZERO,
            beacon_id: BeaconId([3; 16]),
            transmitted_at_ms,
        };
        Envelope::seal(&Domain::new("test"), key, &Message::BeaconReport(beacon)).expect("seal")
    }

    #[test]
    fn near_beacons_are_heard_within_the_rules_and_far_ones_are_not() {
        let beaconer = Keypair::from_secret([1; 32]);
        let me = Keypair::from_secret([2; 32]).gateway_id();
        let here = Location::from_lat_lng(52.52, 13.40).expect("location");
        let radio = SyntheticRadio::new(me, here, 20, witness::Params::default());
        let near = Location::from_lat_lng(52.54, 13.40).expect("location");
        let beacon = beacon_from(&beaconer, near, 1_000_000);
        let (at, heard) = radio.hear(&beacon, 1_000_050).expect("2 km away is heard");
        assert_eq!(at, 1_000_000 + MIN_AIRTIME_MS);
        let Ok(Message::BeaconReport(report)) = beacon.open() else { panic!("a beacon") };
        let distance = distance_m(near, here).expect("distance");
        let bound = witness::max_rssi_ddbm(
            &report,
            20,
            distance,
            &witness::Params { rssi_margin_ddb: 0, ..Default::default() },
        );
        assert!(i64::from(heard.rssi_ddbm) <= bound - CLUTTER_LOSS_DDB, "{} vs {bound}", heard.rssi_ddbm);
        assert!(heard.snr_ddb > 0, "a strong signal has a positive SNR");
        // Heard too late to be witnessed.
        assert!(radio.hear(&beacon, 1_000_000 + 1_900).is_none());
        // 300 km away: below the sensitivity.
        let far = Location::from_lat_lng(55.2, 13.40).expect("location");
        assert!(radio.hear(&beacon_from(&beaconer, far, 1_000_000), 1_000_050).is_none());
        // Our own beacon is not heard.
        let own = SyntheticRadio::new(beaconer.gateway_id(), here, 20, witness::Params::default());
        assert!(own.hear(&beacon, 1_000_050).is_none());
    }
}
