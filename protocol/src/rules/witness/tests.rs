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
        Reason::FreeSpaceUncorroborated,
    ];
    let names: std::collections::BTreeSet<&str> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), all.len());
    assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
}

#[test]
fn excess_loss_is_the_distance_below_free_space() {
    let (b, w) = (beacon(), witness());
    let d = run(&b, &w).expect("valid");
    let fs = free_space_rssi_ddbm(&b, w.antenna_gain_ddbi, d);
    assert_eq!(
        fs + i64::from(Params::default().rssi_margin_ddb),
        max_rssi_ddbm(&b, 30, d, &Params::default())
    );
    assert_eq!(excess_loss_ddb(&b, &w, d), fs + 900);
    assert!(excess_loss_ddb(&b, &w, d) > 0, "−90 dBm at 1.1 km is below free space");
    // A report at the per-report bound claims 6 dB more than free space.
    let strong = WitnessReport { rssi_ddbm: max_rssi_ddbm(&b, 30, d, &Params::default()) as i16, ..w };
    assert_eq!(run(&b, &strong), Ok(d));
    assert_eq!(excess_loss_ddb(&b, &strong, d), -60);
}

#[test]
fn witnesses_at_or_below_free_space_are_never_judged() {
    assert_eq!(free_space_corroborated(&[]), Vec::<Result<(), Reason>>::new());
    assert_eq!(free_space_corroborated(&[0, 300, 5, 1000]), vec![Ok(()); 4]);
}

#[test]
fn claims_above_free_space_need_two_witnesses_showing_the_site_open() {
    let no = Err(Reason::FreeSpaceUncorroborated);
    // Alone, or with cluttered witnesses only: not rewarded.
    assert_eq!(free_space_corroborated(&[-50]), vec![no]);
    assert_eq!(free_space_corroborated(&[-50, 100, 350]), vec![no, Ok(()), Ok(())]);
    // Claims above free space do not corroborate each other.
    assert_eq!(free_space_corroborated(&[-50, -1, 400]), vec![no, no, Ok(())]);
    assert_eq!(free_space_corroborated(&[-50, -1, -2, 99]), vec![no, no, no, Ok(())]);
    // One witness within 10 dB of free space is not enough: a beaconer's
    // location error alone can make one real witness look open.
    assert_eq!(free_space_corroborated(&[-50, -1, 99]), vec![no, no, Ok(())]);
    assert_eq!(free_space_corroborated(&[-60, 0]), vec![no, Ok(())]);
    // Two (not above free space) corroborate all.
    assert_eq!(free_space_corroborated(&[-50, -1, 99, 0]), vec![Ok(()); 4]);
    assert_eq!(free_space_corroborated(&[0, -60, 50, 400]), vec![Ok(()); 4]);
}

/// Witness `i` of a Sybil ring asserting a circle of 2 km around the beaconer
/// (`i` = 0..3, at 0°, 90°, 180°), with the ring's forgery: 3 dB under the
/// per-report bound, as `simulations` forges it.
fn ring_forgery(i: usize) -> (WitnessReport, u64) {
    let b = beacon();
    let (dlat, dlng) = [(0.018, 0.0), (0.0, 0.0295), (-0.018, 0.0)][i];
    let location = loc(52.5200 + dlat, 13.4050 + dlng);
    let d = distance_between(b.location, location).expect("valid");
    let rssi = max_rssi_ddbm(&b, 30, d, &Params::default()) - 30;
    (WitnessReport { location, rssi_ddbm: rssi as i16, ..witness() }, d)
}

#[test]
fn a_sybil_rings_forged_witnesses_pass_every_report_rule_and_are_not_rewarded() {
    let b = beacon();
    let mut excess = Vec::new();
    for i in 0..3 {
        let (w, d) = ring_forgery(i);
        assert_eq!(run(&b, &w), Ok(d), "each forgery passes every per-report rule");
        excess.push(excess_loss_ddb(&b, &w, d));
    }
    // An honest witness at −90 dBm, 1.1 km away.
    let honest = witness();
    excess.push(excess_loss_ddb(&b, &honest, run(&b, &honest).expect("valid")));
    let no = Err(Reason::FreeSpaceUncorroborated);
    assert_eq!(free_space_corroborated(&excess), vec![no, no, no, Ok(())]);
}

proptest! {
    #[test]
    fn the_cross_witness_rule_depends_on_the_set_and_judges_only_claims_above_free_space(
        excess in prop::collection::vec(-60i64..600, 0..20),
        seed in any::<u64>(),
    ) {
        let verdicts = free_space_corroborated(&excess);
        prop_assert_eq!(verdicts.len(), excess.len());
        let open = excess.iter().filter(|&&x| (ABOVE_FREE_SPACE_DDB..OPEN_SITE_DDB).contains(&x)).count()
            >= MIN_OPEN_WITNESSES;
        for (x, v) in excess.iter().zip(&verdicts) {
            if *x >= ABOVE_FREE_SPACE_DDB {
                // Nothing at or below free space is ever excluded.
                prop_assert_eq!(*v, Ok(()));
            } else {
                prop_assert_eq!(v.is_err(), !open);
            }
        }
        // Rotated input, rotated verdicts.
        let k = if excess.is_empty() { 0 } else { (seed as usize) % excess.len() };
        let mut rotated = excess.clone();
        rotated.rotate_left(k);
        let mut again = free_space_corroborated(&rotated);
        again.rotate_right(k);
        prop_assert_eq!(verdicts, again);
    }

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
