//! Meter rules: may a gateway attest this meter reading?
//!
//! Inputs are the meter-signed [`Envelope`], the [`MeterReading`] decoded from
//! it, the meter's last accepted [`MeterState`] (none for its first reading),
//! its rated capacity in W, the network [`Domain`], the current time and
//! [`Params`]. [`check`] runs the rules in this order and returns the first
//! failure, or what the reading is worth:
//!
//! 1. [`signed_by_meter`] — the envelope is a meter reading, its body is this
//!    reading, its signature is valid and its signer is `reading.meter`.
//! 2. [`sequence_increases`] — strictly above the last accepted sequence: no replay.
//! 3. [`interval_sane`] — the interval is not empty and not too long.
//! 4. [`interval_after_previous`] — it does not overlap the last accepted interval.
//! 5. [`not_from_the_future`] — it has ended (allowing for clock skew).
//! 6. [`register_monotonic`] — the energy register never runs backwards.
//! 7. [`within_capacity`] — no more energy than the rated power could produce
//!    in the interval.
//!
//! A valid reading's energy is `register_end − register_start`;
//! [`credited_wh`] pays nothing for an interval the meter marks as faulty, but
//! the reading is still accepted so that the meter's state moves on.
//!
//! Energy registers are cumulative, so a gap between the previous end and this
//! start (a lost reading) is allowed: the energy in the gap is never credited,
//! and cannot be claimed later because the register only moves forward.

use crate::envelope::{Domain, Envelope};
use crate::message::{Kind, Message, MeterReading, MeterStatus};
use crate::signature;

/// Why a meter reading is not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The envelope is not of kind [`Kind::MeterReading`], or its body is not this reading.
    #[error("the envelope does not carry this meter reading")]
    WrongEnvelope,
    /// The signature is not valid.
    #[error("the meter's signature is not valid")]
    BadSignature,
    /// The envelope's signer is not the reading's meter.
    #[error("the envelope is not signed by the reading's meter")]
    SignerMismatch,
    /// The sequence number is not above the last accepted one.
    #[error("the sequence number is not above the last accepted one")]
    SequenceNotIncreasing,
    /// The interval ends at or before its start.
    #[error("the interval is empty or ends before it starts")]
    EmptyInterval,
    /// The interval is longer than [`Params::max_interval_s`].
    #[error("the interval is longer than allowed")]
    IntervalTooLong,
    /// The interval starts before the last accepted interval ended.
    #[error("the interval overlaps the previous reading's")]
    IntervalOverlap,
    /// The interval ends after now (beyond the clock-skew allowance).
    #[error("the interval ends in the future")]
    FromTheFuture,
    /// The register at the start is below the last accepted register.
    #[error("the register went back below the previous reading's end")]
    RegisterWentBack,
    /// The register at the end is below the register at the start.
    #[error("the register decreased within the interval")]
    RegisterDecreased,
    /// More energy than the rated capacity could produce in the interval.
    #[error("more energy than the rated capacity allows")]
    AboveCapacity,
    /// The interval ends in an epoch that takes no reports now: its grace
    /// period is over, or it has not begun (an end within the clock-skew
    /// allowance but in the next epoch). Checked by the attesting node, after
    /// [`check`]; the meter's state does not move on.
    #[error("the interval ends in an epoch that takes no reports now")]
    EpochClosed,
    /// The attesting gateway cannot add the attestation to its epoch's
    /// reports: it is not registered, or the epoch (or the gateway's share of
    /// it) is full. Checked by the attesting node, after [`check`].
    #[error("the gateway cannot add an attestation to the epoch's reports")]
    NotAdmitted,
}

impl Reason {
    /// A stable snake_case name for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::WrongEnvelope => "wrong_envelope",
            Reason::BadSignature => "bad_signature",
            Reason::SignerMismatch => "signer_mismatch",
            Reason::SequenceNotIncreasing => "sequence_not_increasing",
            Reason::EmptyInterval => "empty_interval",
            Reason::IntervalTooLong => "interval_too_long",
            Reason::IntervalOverlap => "interval_overlap",
            Reason::FromTheFuture => "from_the_future",
            Reason::RegisterWentBack => "register_went_back",
            Reason::RegisterDecreased => "register_decreased",
            Reason::AboveCapacity => "above_capacity",
            Reason::EpochClosed => "epoch_closed",
            Reason::NotAdmitted => "not_admitted",
        }
    }
}

/// What is remembered of a meter's last accepted reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MeterState {
    /// Its sequence number.
    pub sequence: u64,
    /// Its register at the interval end, Wh.
    pub register_end_wh: u64,
    /// Its interval end, Unix s. Needed besides the register: two readings
    /// whose intervals overlap could each claim the full rated power for the
    /// shared time.
    pub interval_end_s: u64,
}

impl MeterState {
    /// The state after accepting `reading`.
    pub fn after(reading: &MeterReading) -> MeterState {
        MeterState {
            sequence: reading.sequence,
            register_end_wh: reading.register_end_wh,
            interval_end_s: reading.interval_end_s,
        }
    }
}

/// Tunable meter rule parameters (network-wide: every node must use the same).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    /// Longest interval one reading may cover, s. Default 86,400 (a day). Meters
    /// report every 15 minutes (the European imbalance settlement period, EU
    /// 2017/2195) or hourly; a day lets a meter whose uplink was down send its
    /// backlog, while longer intervals would make the capacity bound too loose
    /// to catch anything (a week at full rated power is 168 full-sun hours).
    pub max_interval_s: u64,
    /// Tolerance above rated capacity × interval, percent. Default 5 %: meter
    /// accuracy (IEC 62053-21 class 1: ±1 %), PV modules beating their STC
    /// rating in cold sun (a few %), and the meter's interval timestamps being
    /// whole seconds. One further Wh is always allowed because registers count
    /// whole Wh.
    pub capacity_tolerance_pct: u64,
    /// How far past `now` an interval may end, s. Default 300 s: meter clocks
    /// drift (a ±20 ppm crystal loses 12 s a week) between synchronisations;
    /// 5 minutes is generous for that and small against a 15-minute interval.
    pub max_clock_skew_s: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params { max_interval_s: 86_400, capacity_tolerance_pct: 5, max_clock_skew_s: 300 }
    }
}

/// A reading that passed every rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Accepted {
    /// Energy in the interval, Wh: `register_end − register_start`.
    pub delta_wh: u64,
    /// Energy that counts towards certificates, Wh (see [`credited_wh`]).
    pub credited_wh: u64,
    /// The meter's state after this reading.
    pub state: MeterState,
}

/// The envelope is a meter reading whose body is `reading`, validly signed in
/// `domain` by `reading.meter`.
pub fn signed_by_meter(domain: &Domain, envelope: &Envelope, reading: &MeterReading) -> Result<(), Reason> {
    if envelope.kind != Kind::MeterReading {
        return Err(Reason::WrongEnvelope);
    }
    match envelope.open() {
        Ok(Message::MeterReading(body)) if body == *reading => {}
        _ => return Err(Reason::WrongEnvelope),
    }
    if envelope.signer != reading.meter.0 {
        return Err(Reason::SignerMismatch);
    }
    signature::verify(domain, envelope).map_err(|_| Reason::BadSignature)
}

/// The sequence number is strictly above the last accepted one.
pub fn sequence_increases(reading: &MeterReading, last: Option<&MeterState>) -> Result<(), Reason> {
    match last {
        Some(last) if reading.sequence <= last.sequence => Err(Reason::SequenceNotIncreasing),
        _ => Ok(()),
    }
}

/// The interval ends after it starts and lasts at most [`Params::max_interval_s`].
pub fn interval_sane(reading: &MeterReading, params: &Params) -> Result<(), Reason> {
    let length = reading.interval_end_s.checked_sub(reading.interval_start_s).filter(|&l| l > 0);
    match length {
        None => Err(Reason::EmptyInterval),
        Some(length) if length > params.max_interval_s => Err(Reason::IntervalTooLong),
        Some(_) => Ok(()),
    }
}

/// The interval starts no earlier than the last accepted interval ended.
pub fn interval_after_previous(reading: &MeterReading, last: Option<&MeterState>) -> Result<(), Reason> {
    match last {
        Some(last) if reading.interval_start_s < last.interval_end_s => Err(Reason::IntervalOverlap),
        _ => Ok(()),
    }
}

/// The interval ends no later than `now_ms` plus [`Params::max_clock_skew_s`].
pub fn not_from_the_future(reading: &MeterReading, now_ms: u64, params: &Params) -> Result<(), Reason> {
    let latest_s = (now_ms / 1_000).saturating_add(params.max_clock_skew_s);
    if reading.interval_end_s <= latest_s { Ok(()) } else { Err(Reason::FromTheFuture) }
}

/// The register starts at or above the last accepted end and does not decrease
/// within the interval. Returns the energy of the interval, Wh.
pub fn register_monotonic(reading: &MeterReading, last: Option<&MeterState>) -> Result<u64, Reason> {
    if let Some(last) = last
        && reading.register_start_wh < last.register_end_wh
    {
        return Err(Reason::RegisterWentBack);
    }
    reading.register_end_wh.checked_sub(reading.register_start_wh).ok_or(Reason::RegisterDecreased)
}

/// The most energy a meter of `capacity_w` may report for `interval_s`, Wh:
/// `⌊capacity_w · interval_s · (100 + tolerance) / (3600 · 100)⌋ + 1`.
pub fn max_energy_wh(capacity_w: u64, interval_s: u64, params: &Params) -> u64 {
    let scaled = (u128::from(capacity_w) * u128::from(interval_s))
        .checked_mul(100 + u128::from(params.capacity_tolerance_pct));
    // Beyond u128 the bound is far beyond any u64 delta anyway.
    scaled.map_or(u64::MAX, |scaled| u64::try_from(scaled / 360_000 + 1).unwrap_or(u64::MAX))
}

/// At most [`max_energy_wh`] in the interval.
pub fn within_capacity(
    delta_wh: u64,
    capacity_w: u64,
    interval_s: u64,
    params: &Params,
) -> Result<(), Reason> {
    if delta_wh <= max_energy_wh(capacity_w, interval_s, params) {
        Ok(())
    } else {
        Err(Reason::AboveCapacity)
    }
}

/// The energy that earns certificates: all of it, except nothing for an
/// interval the meter reports as [`MeterStatus::Fault`]. Estimated intervals
/// count: the meter still bounds them by its register, and the capacity rule
/// applies to them as to any other.
pub fn credited_wh(status: MeterStatus, delta_wh: u64) -> u64 {
    match status {
        MeterStatus::Ok | MeterStatus::Estimated => delta_wh,
        MeterStatus::Fault => 0,
    }
}

/// Runs every rule in the order of the module docs and returns the first
/// failure, or the accepted reading's energy and the meter's next state.
pub fn check(
    domain: &Domain,
    envelope: &Envelope,
    reading: &MeterReading,
    last: Option<&MeterState>,
    capacity_w: u64,
    now_ms: u64,
    params: &Params,
) -> Result<Accepted, Reason> {
    signed_by_meter(domain, envelope, reading)?;
    sequence_increases(reading, last)?;
    interval_sane(reading, params)?;
    interval_after_previous(reading, last)?;
    not_from_the_future(reading, now_ms, params)?;
    let delta_wh = register_monotonic(reading, last)?;
    // interval_sane guarantees end > start.
    let interval_s = reading.interval_end_s - reading.interval_start_s;
    within_capacity(delta_wh, capacity_w, interval_s, params)?;
    Ok(Accepted {
        delta_wh,
        credited_wh: credited_wh(reading.status, delta_wh),
        state: MeterState::after(reading),
    })
}

#[cfg(test)]
mod tests;
