//! Meter rule tests: every rule on both sides of its boundary.

use super::*;
use crate::keys::Keypair;

const NOW_MS: u64 = 1_700_000_000_000;
const END_S: u64 = NOW_MS / 1_000 - 60;
/// 10 kW: 15 minutes at rated power is 2,500 Wh.
const CAPACITY_W: u64 = 10_000;

fn domain() -> Domain {
    Domain::new("meshd-test")
}

fn meter_key() -> Keypair {
    Keypair::from_secret([42; 32])
}

fn reading() -> MeterReading {
    MeterReading {
        meter: meter_key().meter_id(),
        sequence: 11,
        interval_start_s: END_S - 900,
        interval_end_s: END_S,
        register_start_wh: 50_000,
        register_end_wh: 52_000,
        status: MeterStatus::Ok,
    }
}

fn last() -> MeterState {
    MeterState { sequence: 10, register_end_wh: 50_000, interval_end_s: END_S - 900 }
}

fn seal(reading: &MeterReading) -> Envelope {
    Envelope::seal(&domain(), &meter_key(), &Message::MeterReading(reading.clone())).expect("encodes")
}

fn run(reading: &MeterReading) -> Result<Accepted, Reason> {
    check(&domain(), &seal(reading), reading, Some(&last()), CAPACITY_W, NOW_MS, &Params::default())
}

#[test]
fn a_good_reading_is_accepted_with_its_energy_and_next_state() {
    let r = reading();
    let accepted = run(&r).expect("valid");
    assert_eq!(accepted.delta_wh, 2_000);
    assert_eq!(accepted.credited_wh, 2_000);
    assert_eq!(accepted.state, MeterState { sequence: 11, register_end_wh: 52_000, interval_end_s: END_S });
    // The first reading of a meter has no previous state.
    let first = check(&domain(), &seal(&r), &r, None, CAPACITY_W, NOW_MS, &Params::default());
    assert_eq!(first.map(|a| a.delta_wh), Ok(2_000));
}

#[test]
fn signature_must_be_valid_and_by_the_meter() {
    let r = reading();
    let mut env = seal(&r);
    env.signature[0] ^= 1;
    assert_eq!(signed_by_meter(&domain(), &env, &r), Err(Reason::BadSignature));
    // Valid signature by another key.
    let other = Envelope::seal(&domain(), &Keypair::from_secret([7; 32]), &Message::MeterReading(r.clone()))
        .expect("encodes");
    assert_eq!(signed_by_meter(&domain(), &other, &r), Err(Reason::SignerMismatch));
    // Signed for another network.
    let foreign = Envelope::seal(&Domain::new("other"), &meter_key(), &Message::MeterReading(r.clone()))
        .expect("encodes");
    assert_eq!(signed_by_meter(&domain(), &foreign, &r), Err(Reason::BadSignature));
    assert_eq!(signed_by_meter(&domain(), &seal(&r), &r), Ok(()));
}

#[test]
fn the_envelope_must_carry_this_reading() {
    let r = reading();
    let mut changed = r.clone();
    changed.register_end_wh += 1;
    assert_eq!(signed_by_meter(&domain(), &seal(&r), &changed), Err(Reason::WrongEnvelope));
    let mut env = seal(&r);
    env.kind = Kind::BeaconReport;
    assert_eq!(signed_by_meter(&domain(), &env, &r), Err(Reason::WrongEnvelope));
}

#[test]
fn sequence_must_strictly_increase() {
    let mut r = reading();
    r.sequence = last().sequence + 1;
    assert_eq!(sequence_increases(&r, Some(&last())), Ok(()));
    r.sequence = last().sequence;
    assert_eq!(sequence_increases(&r, Some(&last())), Err(Reason::SequenceNotIncreasing));
    assert_eq!(run(&r), Err(Reason::SequenceNotIncreasing));
    assert_eq!(sequence_increases(&r, None), Ok(()));
}

#[test]
fn interval_must_be_non_empty_and_at_most_a_day() {
    let p = Params::default();
    let mut r = reading();
    r.interval_start_s = r.interval_end_s - 1;
    assert_eq!(interval_sane(&r, &p), Ok(()));
    r.interval_start_s = r.interval_end_s;
    assert_eq!(interval_sane(&r, &p), Err(Reason::EmptyInterval));
    r.interval_start_s = r.interval_end_s + 1;
    assert_eq!(interval_sane(&r, &p), Err(Reason::EmptyInterval));
    r.interval_start_s = r.interval_end_s - 86_400;
    assert_eq!(interval_sane(&r, &p), Ok(()));
    r.interval_start_s = r.interval_end_s - 86_401;
    assert_eq!(interval_sane(&r, &p), Err(Reason::IntervalTooLong));
    let mut r = reading();
    r.interval_start_s = r.interval_end_s;
    assert_eq!(run(&r), Err(Reason::EmptyInterval));
}

#[test]
fn interval_must_not_overlap_the_previous_one() {
    let mut r = reading();
    r.interval_start_s = last().interval_end_s;
    assert_eq!(interval_after_previous(&r, Some(&last())), Ok(()));
    r.interval_start_s = last().interval_end_s - 1;
    assert_eq!(interval_after_previous(&r, Some(&last())), Err(Reason::IntervalOverlap));
    assert_eq!(run(&r), Err(Reason::IntervalOverlap));
}

#[test]
fn interval_must_have_ended_allowing_for_skew() {
    let p = Params::default();
    let mut r = reading();
    r.interval_end_s = NOW_MS / 1_000 + 300;
    assert_eq!(not_from_the_future(&r, NOW_MS, &p), Ok(()));
    r.interval_end_s += 1;
    assert_eq!(not_from_the_future(&r, NOW_MS, &p), Err(Reason::FromTheFuture));
    assert_eq!(not_from_the_future(&r, u64::MAX, &p), Ok(()));
    r.interval_start_s = r.interval_end_s - 900;
    assert_eq!(run(&r), Err(Reason::FromTheFuture));
}

#[test]
fn register_must_be_monotonic() {
    let mut r = reading();
    r.register_start_wh = last().register_end_wh;
    assert_eq!(register_monotonic(&r, Some(&last())), Ok(2_000));
    r.register_start_wh = last().register_end_wh - 1;
    assert_eq!(register_monotonic(&r, Some(&last())), Err(Reason::RegisterWentBack));
    assert_eq!(run(&r), Err(Reason::RegisterWentBack));
    let mut r = reading();
    r.register_end_wh = r.register_start_wh;
    assert_eq!(register_monotonic(&r, Some(&last())), Ok(0));
    r.register_end_wh = r.register_start_wh - 1;
    assert_eq!(register_monotonic(&r, Some(&last())), Err(Reason::RegisterDecreased));
    assert_eq!(run(&r), Err(Reason::RegisterDecreased));
}

#[test]
fn a_gap_after_the_previous_register_is_allowed_but_not_credited() {
    let mut r = reading();
    r.register_start_wh = last().register_end_wh + 10_000;
    r.register_end_wh = r.register_start_wh + 1_000;
    assert_eq!(run(&r).map(|a| a.credited_wh), Ok(1_000));
}

#[test]
fn energy_capacity_boundary() {
    let p = Params::default();
    // 10 kW for 900 s = 2,500 Wh; +5 % = 2,625; +1 Wh of register resolution.
    assert_eq!(max_energy_wh(CAPACITY_W, 900, &p), 2_626);
    assert_eq!(within_capacity(2_626, CAPACITY_W, 900, &p), Ok(()));
    assert_eq!(within_capacity(2_627, CAPACITY_W, 900, &p), Err(Reason::AboveCapacity));
    let mut r = reading();
    r.register_end_wh = r.register_start_wh + 2_626;
    assert!(run(&r).is_ok());
    r.register_end_wh += 1;
    assert_eq!(run(&r), Err(Reason::AboveCapacity));
}

#[test]
fn capacity_bound_never_overflows() {
    let p = Params { capacity_tolerance_pct: u64::MAX, ..Params::default() };
    assert_eq!(max_energy_wh(u64::MAX, u64::MAX, &p), u64::MAX);
    assert_eq!(max_energy_wh(0, u64::MAX, &Params::default()), 1);
}

#[test]
fn a_fault_interval_is_accepted_but_earns_nothing() {
    assert_eq!(credited_wh(MeterStatus::Ok, 5), 5);
    assert_eq!(credited_wh(MeterStatus::Estimated, 5), 5);
    assert_eq!(credited_wh(MeterStatus::Fault, 5), 0);
    let mut r = reading();
    r.status = MeterStatus::Fault;
    let accepted = run(&r).expect("accepted");
    assert_eq!((accepted.delta_wh, accepted.credited_wh), (2_000, 0));
    assert_eq!(accepted.state.sequence, r.sequence);
}

#[test]
fn reason_names_are_distinct() {
    let all = [
        Reason::WrongEnvelope,
        Reason::BadSignature,
        Reason::SignerMismatch,
        Reason::SequenceNotIncreasing,
        Reason::EmptyInterval,
        Reason::IntervalTooLong,
        Reason::IntervalOverlap,
        Reason::FromTheFuture,
        Reason::RegisterWentBack,
        Reason::RegisterDecreased,
        Reason::AboveCapacity,
        Reason::EpochClosed,
        Reason::NotAdmitted,
    ];
    let names: std::collections::BTreeSet<&str> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(names.len(), all.len());
}
