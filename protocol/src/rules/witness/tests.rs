//! Witness rule tests: every rule on both sides of its boundary.

use proptest::prelude::*;

use super::*;
use crate::geo::Region;
use crate::hash::keccak256;
use crate::message::BeaconId;

const BEACONER: GatewayId = GatewayId([1; 32]);
const WITNESS: GatewayId = GatewayId([2; 32]);
const SF9: DataRate = DataRate { spreading_factor: 9, bandwidth_khz: 125 };

fn loc(lat: f64, lng: f64) -> Location {
    Location::from_lat_lng(lat, lng).expect("valid coordinates")
}

fn beacon() -> BeaconReport {
    let location = loc(52.5200, 13.4050);
    BeaconReport {
        region: Region::of(location, 5).expect("region"),
        epoch: 7,
        location,
        antenna_gain_ddbi: 30,
        tx_power_ddbm: 270,
        frequency_hz: 868_100_000,
        datarate: SF9,
        entropy: keccak256(b"entropy"),
        beacon_id: BeaconId([0xbe; 16]),
        transmitted_at_ms: 1_700_000_000_000,
    }
}

/// A witness about 1.1 km north of the beaconer that passes every rule.
fn witness() -> WitnessReport {
    let b = beacon();
    WitnessReport {
        region: b.region,
        epoch: b.epoch,
        beacon_id: b.beacon_id,
        location: loc(52.5300, 13.4050),
        antenna_gain_ddbi: 30,
        rssi_ddbm: -900,
        snr_ddb: 55,
        frequency_hz: b.frequency_hz,
        datarate: SF9,
        received_at_ms: b.transmitted_at_ms + 150,
        tmst_us: 12_345,
    }
}

fn run(b: &BeaconReport, w: &WitnessReport) -> Result<u64, Reason> {
    check(b, w, &BEACONER, &WITNESS, &Params::default())
}

#[test]
fn default_params_are_valid() {
    assert_eq!(Params::default().validate(), Ok(()));
    let p = Params { min_distance_m: 10, max_distance_m: 10, ..Params::default() };
    assert_eq!(p.validate(), Err(ParamsError::DistanceBounds { min: 10, max: 10 }));
    let p = Params { rssi_margin_ddb: -1, ..Params::default() };
    assert_eq!(p.validate(), Err(ParamsError::NegativeMargin(-1)));
    let p = Params { max_rewarded_witnesses: 0, ..Params::default() };
    assert_eq!(p.validate(), Err(ParamsError::NoWitnesses));
}

#[test]
fn an_honest_witness_passes_and_reports_its_distance() {
    let d = run(&beacon(), &witness()).expect("valid");
    assert!((1_100..1_125).contains(&d), "{d}");
}

#[test]
fn self_witness_is_refused() {
    assert_eq!(not_self_witness(&BEACONER, &WITNESS), Ok(()));
    assert_eq!(not_self_witness(&BEACONER, &BEACONER), Err(Reason::SelfWitness));
    assert_eq!(
        check(&beacon(), &witness(), &BEACONER, &BEACONER, &Params::default()),
        Err(Reason::SelfWitness)
    );
}

#[test]
fn a_witness_of_another_beacon_epoch_or_region_is_refused() {
    let b = beacon();
    let mut w = witness();
    w.beacon_id = BeaconId([0xbf; 16]);
    assert_eq!(run(&b, &w), Err(Reason::BeaconMismatch));
    let mut w = witness();
    w.epoch += 1;
    assert_eq!(run(&b, &w), Err(Reason::BeaconMismatch));
    let mut w = witness();
    w.region = Region::of(w.location, 6).expect("region");
    assert_eq!(run(&b, &w), Err(Reason::BeaconMismatch));
}

#[test]
fn beacon_power_and_gain_are_bounded() {
    let mut b = beacon();
    b.tx_power_ddbm = TX_POWER_MAX_DDBM;
    assert_eq!(beacon_plausible(&b), Ok(()));
    b.tx_power_ddbm = TX_POWER_MAX_DDBM + 1;
    assert_eq!(beacon_plausible(&b), Err(Reason::ImplausibleBeacon));
    b.tx_power_ddbm = TX_POWER_MIN_DDBM;
    assert_eq!(beacon_plausible(&b), Ok(()));
    b.tx_power_ddbm = TX_POWER_MIN_DDBM - 1;
    assert_eq!(beacon_plausible(&b), Err(Reason::ImplausibleBeacon));
    let mut b = beacon();
    b.antenna_gain_ddbi = ANTENNA_GAIN_MAX_DDBI + 1;
    assert_eq!(run(&b, &witness()), Err(Reason::ImplausibleBeacon));
    let mut b = beacon();
    b.frequency_hz = 600_000_000;
    assert_eq!(beacon_plausible(&b), Err(Reason::ImplausibleBeacon));
    let mut b = beacon();
    b.datarate.spreading_factor = 13;
    assert_eq!(beacon_plausible(&b), Err(Reason::ImplausibleBeacon));
}

#[test]
fn spreading_factor_must_be_5_to_12() {
    for sf in [5, 12] {
        assert_eq!(datarate_valid(DataRate { spreading_factor: sf, bandwidth_khz: 125 }), Ok(()));
    }
    for sf in [4, 13, 0, 255] {
        assert_eq!(
            datarate_valid(DataRate { spreading_factor: sf, bandwidth_khz: 125 }),
            Err(Reason::InvalidSpreadingFactor)
        );
    }
}

#[test]
fn bandwidth_must_be_125_250_or_500() {
    for bw in BANDWIDTHS_KHZ {
        assert_eq!(datarate_valid(DataRate { spreading_factor: 7, bandwidth_khz: bw }), Ok(()));
    }
    for bw in [124, 126, 249, 251, 499, 501, 0] {
        assert_eq!(
            datarate_valid(DataRate { spreading_factor: 7, bandwidth_khz: bw }),
            Err(Reason::InvalidBandwidth)
        );
    }
}

#[test]
fn rssi_range_boundaries() {
    assert_eq!(rssi_in_range(RSSI_MIN_DDBM), Ok(()));
    assert_eq!(rssi_in_range(RSSI_MIN_DDBM - 1), Err(Reason::RssiOutOfRange));
    assert_eq!(rssi_in_range(RSSI_MAX_DDBM), Ok(()));
    assert_eq!(rssi_in_range(RSSI_MAX_DDBM + 1), Err(Reason::RssiOutOfRange));
    let mut w = witness();
    w.rssi_ddbm = i16::MIN;
    assert_eq!(run(&beacon(), &w), Err(Reason::RssiOutOfRange));
}

#[test]
fn snr_range_boundaries() {
    assert_eq!(snr_in_range(SNR_MIN_DDB), Ok(()));
    assert_eq!(snr_in_range(SNR_MIN_DDB - 1), Err(Reason::SnrOutOfRange));
    assert_eq!(snr_in_range(SNR_MAX_DDB), Ok(()));
    assert_eq!(snr_in_range(SNR_MAX_DDB + 1), Err(Reason::SnrOutOfRange));
    let mut w = witness();
    w.snr_ddb = i16::MAX;
    assert_eq!(run(&beacon(), &w), Err(Reason::SnrOutOfRange));
}

#[test]
fn frequency_band_edges_are_inclusive() {
    for (lo, hi) in LORAWAN_BANDS_HZ {
        assert_eq!(frequency_in_band(lo), Ok(()));
        assert_eq!(frequency_in_band(hi), Ok(()));
        assert_eq!(frequency_in_band(lo - 1), Err(Reason::FrequencyOutOfBand));
        assert_eq!(frequency_in_band(hi + 1), Err(Reason::FrequencyOutOfBand));
    }
    assert_eq!(frequency_in_band(0), Err(Reason::FrequencyOutOfBand));
    assert_eq!(frequency_in_band(2_400_000_000), Err(Reason::FrequencyOutOfBand));
}

#[test]
fn witness_antenna_gain_boundaries() {
    assert_eq!(antenna_gain_in_range(ANTENNA_GAIN_MAX_DDBI), Ok(()));
    assert_eq!(antenna_gain_in_range(ANTENNA_GAIN_MAX_DDBI + 1), Err(Reason::AntennaGainOutOfRange));
    assert_eq!(antenna_gain_in_range(ANTENNA_GAIN_MIN_DDBI), Ok(()));
    assert_eq!(antenna_gain_in_range(ANTENNA_GAIN_MIN_DDBI - 1), Err(Reason::AntennaGainOutOfRange));
    let mut w = witness();
    w.antenna_gain_ddbi = ANTENNA_GAIN_MAX_DDBI + 1;
    assert_eq!(run(&beacon(), &w), Err(Reason::AntennaGainOutOfRange));
}

#[test]
fn frequency_tolerance_boundaries() {
    let p = Params::default();
    let f = 868_100_000;
    assert_eq!(frequency_matches(f, f + 100_000, &p), Ok(()));
    assert_eq!(frequency_matches(f, f - 100_000, &p), Ok(()));
    assert_eq!(frequency_matches(f, f + 100_001, &p), Err(Reason::FrequencyMismatch));
    assert_eq!(frequency_matches(f, f - 100_001, &p), Err(Reason::FrequencyMismatch));
    let mut w = witness();
    w.frequency_hz = 868_300_000;
    assert_eq!(run(&beacon(), &w), Err(Reason::FrequencyMismatch));
}

#[test]
fn datarate_must_match_the_beacon() {
    assert_eq!(datarate_matches(SF9, SF9), Ok(()));
    let sf10 = DataRate { spreading_factor: 10, bandwidth_khz: 125 };
    assert_eq!(datarate_matches(SF9, sf10), Err(Reason::DataRateMismatch));
    let mut w = witness();
    w.datarate = DataRate { spreading_factor: 9, bandwidth_khz: 250 };
    assert_eq!(run(&beacon(), &w), Err(Reason::DataRateMismatch));
}

#[test]
fn time_window_boundaries() {
    let p = Params::default();
    let t = 1_700_000_000_000;
    assert_eq!(time_window(t, t - 500, &p), Ok(()));
    assert_eq!(time_window(t, t - 501, &p), Err(Reason::ReceivedBeforeTransmit));
    assert_eq!(time_window(t, t + 2_000, &p), Ok(()));
    assert_eq!(time_window(t, t + 2_001, &p), Err(Reason::ReceivedTooLate));
    // Hostile extremes neither overflow nor pass.
    assert_eq!(time_window(u64::MAX, 0, &p), Err(Reason::ReceivedBeforeTransmit));
    assert_eq!(time_window(0, u64::MAX, &p), Err(Reason::ReceivedTooLate));
    assert_eq!(time_window(u64::MAX, u64::MAX, &p), Ok(()));
    let mut w = witness();
    w.received_at_ms = beacon().transmitted_at_ms + 2_001;
    assert_eq!(run(&beacon(), &w), Err(Reason::ReceivedTooLate));
}

#[test]
fn distance_boundaries() {
    let p = Params::default();
    assert_eq!(min_distance(300, &p), Ok(()));
    assert_eq!(min_distance(299, &p), Err(Reason::BelowMinDistance));
    assert_eq!(max_distance(100_000, &p), Ok(()));
    assert_eq!(max_distance(100_001, &p), Err(Reason::AboveMaxDistance));
}

#[test]
fn too_close_too_far_and_invalid_locations_are_refused() {
    let b = beacon();
    let mut w = witness();
    w.location = loc(52.5210, 13.4050); // ~111 m
    assert_eq!(run(&b, &w), Err(Reason::BelowMinDistance));
    w.location = loc(53.5200, 13.4050); // ~111 km
    assert_eq!(run(&b, &w), Err(Reason::AboveMaxDistance));
    w.location = Location(b.region.0);
    assert_eq!(run(&b, &w), Err(Reason::InvalidLocation));
    let mut b2 = beacon();
    b2.location = Location(0);
    assert_eq!(run(&b2, &witness()), Err(Reason::InvalidLocation));
}

#[test]
fn rssi_free_space_boundary() {
    let (b, mut w) = (beacon(), witness());
    let p = Params::default();
    let d = run(&b, &w).expect("valid");
    let max = max_rssi_ddbm(&b, w.antenna_gain_ddbi, d, &p);
    w.rssi_ddbm = i16::try_from(max).expect("in range");
    assert_eq!(rssi_within_free_space(&b, &w, d, &p), Ok(()));
    assert_eq!(run(&b, &w), Ok(d));
    w.rssi_ddbm += 1;
    assert_eq!(rssi_within_free_space(&b, &w, d, &p), Err(Reason::RssiAboveFreeSpace));
    assert_eq!(run(&b, &w), Err(Reason::RssiAboveFreeSpace));
}

#[test]
fn rssi_bound_adds_power_gains_and_margin_and_subtracts_path_loss() {
    let b = beacon();
    let p = Params::default();
    let fspl = free_space_path_loss_ddb(1_000, b.frequency_hz);
    assert_eq!(fspl, 912); // 91.219 dB
    assert_eq!(max_rssi_ddbm(&b, 20, 1_000, &p), 270 + 30 + 20 - 912 + 60);
}

#[test]
fn free_space_path_loss_matches_the_friis_formula() {
    for d in [1u64, 2, 10, 299, 300, 1_000, 4_321, 10_000, 99_999, 100_000, 20_000_000] {
        for f in [433_175_000u32, 470_300_000, 868_100_000, 902_300_000, 927_500_000] {
            let exact = 20.0 * (4.0 * std::f64::consts::PI * d as f64 * f64::from(f) / 299_792_458.0).log10();
            let ours = free_space_path_loss_ddb(d, f);
            let floor = (exact * 10.0).floor() as i64;
            assert!(ours == floor || ours == floor - 1, "d={d} f={f}: {ours} vs {exact}");
        }
    }
}

#[test]
fn log2_is_exact_on_powers_of_two() {
    assert_eq!(log2_q40(1), 0);
    assert_eq!(log2_q40(2), 1 << 40);
    assert_eq!(log2_q40(1 << 100), 100 << 40);
    assert_eq!(log2_q40(u128::MAX) >> 40, 127);
}

#[test]
fn denylist_covers_either_gateway_and_the_pair() {
    let none = |_: &GatewayId| false;
    let no_pair = |_: &GatewayId, _: &GatewayId| false;
    assert_eq!(not_denied(&BEACONER, &WITNESS, none, no_pair), Ok(()));
    assert_eq!(not_denied(&BEACONER, &WITNESS, |g| *g == WITNESS, no_pair), Err(Reason::Denied));
    assert_eq!(not_denied(&BEACONER, &WITNESS, |g| *g == BEACONER, no_pair), Err(Reason::Denied));
    let pair = |a: &GatewayId, b: &GatewayId| *a == WITNESS && *b == BEACONER;
    assert_eq!(not_denied(&BEACONER, &WITNESS, none, pair), Err(Reason::Denied));
}

fn candidate(id: u8, received_at_ms: u64) -> Candidate {
    Candidate { witness: GatewayId([id; 32]), received_at_ms, verdict: Ok(()) }
}

#[test]
fn every_report_of_a_witness_that_sent_two_is_a_duplicate() {
    let mut second = candidate(1, 5);
    second.verdict = Err(Reason::RssiAboveFreeSpace);
    let verdicts = select(&[candidate(1, 10), candidate(2, 10), second], &Params::default());
    assert_eq!(verdicts, vec![Err(Reason::Duplicate), Ok(()), Err(Reason::Duplicate)]);
}

#[test]
fn invalid_reports_keep_their_reason() {
    let mut bad = candidate(3, 1);
    bad.verdict = Err(Reason::BelowMinDistance);
    assert_eq!(
        select(&[bad, candidate(4, 2)], &Params::default()),
        vec![Err(Reason::BelowMinDistance), Ok(())]
    );
}

#[test]
fn cap_keeps_the_earliest_and_breaks_ties_by_witness_id() {
    let p = Params { max_rewarded_witnesses: 2, ..Params::default() };
    // Exactly at the cap: all selected.
    assert_eq!(select(&[candidate(9, 3), candidate(8, 4)], &p), vec![Ok(()), Ok(())]);
    // One over: the latest is not selected; at equal times the larger id loses.
    let verdicts = select(&[candidate(9, 3), candidate(7, 1), candidate(5, 3)], &p);
    assert_eq!(verdicts, vec![Err(Reason::NotSelected), Ok(()), Ok(())]);
}

#[test]
fn reason_names_are_distinct_snake_case() {
    let all = [
        Reason::SelfWitness,
        Reason::BeaconMismatch,
        Reason::ImplausibleBeacon,
        Reason::InvalidSpreadingFactor,
        Reason::InvalidBandwidth,
        Reason::RssiOutOfRange,
        Reason::SnrOutOfRange,
        Reason::FrequencyOutOfBand,
        Reason::AntennaGainOutOfRange,
        Reason::FrequencyMismatch,
        Reason::DataRateMismatch,
        Reason::ReceivedBeforeTransmit,
        Reason::ReceivedTooLate,
        Reason::InvalidLocation,
        Reason::BelowMinDistance,
        Reason::AboveMaxDistance,
        Reason::RssiAboveFreeSpace,
        Reason::Duplicate,
        Reason::NotSelected,
        Reason::Denied,
    ];
    let names: std::collections::BTreeSet<&str> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), all.len());
    assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
}

proptest! {
    #[test]
    fn selection_does_not_depend_on_input_order(
        raw in prop::collection::vec((0u8..12, 0u64..20, any::<bool>()), 0..30),
        cap in 1usize..8,
        seed in any::<u64>(),
    ) {
        let p = Params { max_rewarded_witnesses: cap, ..Params::default() };
        let cands: Vec<Candidate> = raw
            .iter()
            .map(|&(id, t, ok)| Candidate {
                witness: GatewayId([id; 32]),
                received_at_ms: t,
                verdict: if ok { Ok(()) } else { Err(Reason::SnrOutOfRange) },
            })
            .collect();
        let verdicts = select(&cands, &p);
        prop_assert!(verdicts.iter().filter(|v| v.is_ok()).count() <= cap);
        // Rotate the input and compare per candidate.
        let k = if cands.is_empty() { 0 } else { (seed as usize) % cands.len() };
        let mut rotated = cands.clone();
        rotated.rotate_left(k);
        let mut again = select(&rotated, &p);
        again.rotate_right(k);
        prop_assert_eq!(verdicts, again);
    }

    #[test]
    fn path_loss_grows_with_distance(d in 1u64..50_000_000, f in 400_000_000u32..1_000_000_000) {
        prop_assert!(free_space_path_loss_ddb(d + 1, f) >= free_space_path_loss_ddb(d, f));
    }
}
