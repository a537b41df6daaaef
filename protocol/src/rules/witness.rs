//! Witness rules: does a witness report prove that its gateway heard the beacon
//! from where it claims to be?
//!
//! Inputs are the beacon's [`BeaconReport`], the [`WitnessReport`], the two
//! gateway ids (the envelopes' signers) and [`Params`]. [`check`] runs the
//! per-report rules in this order and returns the first failure:
//!
//! 1. [`not_self_witness`] — a gateway cannot witness itself.
//! 2. [`same_beacon`] — the witness names this beacon (id, epoch, region).
//! 3. [`beacon_plausible`] — the beacon's own claims (power, gain, frequency,
//!    modulation) are physically possible; the RSSI bound is built on them.
//! 4. [`datarate_valid`], [`rssi_in_range`], [`snr_in_range`],
//!    [`frequency_in_band`], [`antenna_gain_in_range`] — no nonsensical values.
//! 5. [`frequency_matches`], [`datarate_matches`] — heard on the beacon's channel
//!    and modulation.
//! 6. [`time_window`] — received after it was sent, and soon after.
//! 7. [`min_distance`], [`max_distance`] — far enough to prove coverage, near
//!    enough to be believable (locations must be valid res-12 cells).
//! 8. [`rssi_within_free_space`] — not received stronger than free space allows.
//!
//! Then, over all reports for one beacon, [`select`] rejects every report of a
//! witness that sent more than one ([`Reason::Duplicate`]) and keeps at most
//! [`Params::max_rewarded_witnesses`] valid ones ([`Reason::NotSelected`]).
//! [`not_denied`] applies an operator's denylist and is left to the caller,
//! who holds the list.
//!
//! Finally, when a beacon's witnesses are tallied for rewards, the
//! cross-witness rule [`free_space_corroborated`] looks at all of them at
//! once: a witness claiming a reception stronger than free space
//! ([`excess_loss_ddb`] below zero) is rewarded only when at least
//! [`MIN_OPEN_WITNESSES`] (2) other witnesses of the beacon, themselves not
//! above free space, are within [`OPEN_SITE_DDB`] of free space
//! ([`Reason::FreeSpaceUncorroborated`] otherwise). The reports still count as listed reports;
//! only their reward is withheld, so an honest proposal is never refused.
//! This is the defence against Sybil witness rings; see its docs for the
//! physics and the limits.
//!
//! # Where the numbers come from
//!
//! The defaults follow the public rules of Helium's IoT proof-of-coverage
//! verifier (the `iot_verifier` crate of `helium/oracles`) where it has one,
//! HIP-15 for the distance radius, the LoRaWAN Regional Parameters for bands
//! and modulations, Semtech's datasheets for receiver limits, and the Friis
//! free-space formula for the RSSI bound. Each constant and default says which.

use std::collections::BTreeMap;

use crate::geo::{self, Location};
use crate::id::GatewayId;
use crate::message::{BeaconReport, DataRate, WitnessReport};

/// Why a witness report does not count.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The witness is the beaconer.
    #[error("a gateway cannot witness its own beacon")]
    SelfWitness,
    /// The report names another beacon id, epoch or region than the beacon's.
    #[error("the report does not name this beacon (id, epoch or region differ)")]
    BeaconMismatch,
    /// The beacon claims an impossible power, gain, frequency or modulation.
    #[error("the beacon's own claims (power, gain, frequency, modulation) are implausible")]
    ImplausibleBeacon,
    /// Spreading factor outside 5..=12.
    #[error("spreading factor outside 5..=12")]
    InvalidSpreadingFactor,
    /// Bandwidth other than 125, 250 or 500 kHz.
    #[error("bandwidth other than 125, 250 or 500 kHz")]
    InvalidBandwidth,
    /// RSSI outside what a LoRa receiver can report.
    #[error("RSSI outside {min}..={max} dBm", min = RSSI_MIN_DDBM / 10, max = RSSI_MAX_DDBM / 10)]
    RssiOutOfRange,
    /// SNR outside what a LoRa receiver can report.
    #[error("SNR outside {min}..={max} dB", min = SNR_MIN_DDB / 10, max = SNR_MAX_DDB / 10)]
    SnrOutOfRange,
    /// Frequency outside every LoRaWAN sub-GHz band.
    #[error("frequency outside every LoRaWAN band")]
    FrequencyOutOfBand,
    /// The witness's antenna gain is implausible.
    #[error("antenna gain outside {min}..={max} dBi", min = ANTENNA_GAIN_MIN_DDBI / 10, max = ANTENNA_GAIN_MAX_DDBI / 10)]
    AntennaGainOutOfRange,
    /// Heard too far from the beacon's frequency.
    #[error("received frequency too far from the beacon's")]
    FrequencyMismatch,
    /// Heard with another modulation than the beacon's.
    #[error("received data rate differs from the beacon's")]
    DataRateMismatch,
    /// Received before the beacon was transmitted (beyond the clock-skew allowance).
    #[error("received before the beacon was transmitted")]
    ReceivedBeforeTransmit,
    /// Received too long after the beacon was transmitted.
    #[error("received too long after the beacon was transmitted")]
    ReceivedTooLate,
    /// The witness's or the beaconer's location is not a valid res-12 cell.
    #[error("a location is not a valid resolution-12 cell")]
    InvalidLocation,
    /// The witness is too close to the beaconer for its report to prove coverage.
    #[error("witness closer to the beaconer than the minimum distance")]
    BelowMinDistance,
    /// The witness is farther from the beaconer than a LoRa link plausibly reaches.
    #[error("witness farther from the beaconer than the maximum distance")]
    AboveMaxDistance,
    /// Received stronger than free-space propagation allows from the claimed locations.
    #[error("RSSI above the free-space bound for the claimed distance")]
    RssiAboveFreeSpace,
    /// The witness sent more than one report for this beacon.
    #[error("the witness sent more than one report for this beacon")]
    Duplicate,
    /// Valid, but beyond the cap of rewarded witnesses per beacon.
    #[error("valid, but beyond the cap of rewarded witnesses for this beacon")]
    NotSelected,
    /// The witness, the beaconer or the pair is on the denylist.
    #[error("the witness, the beaconer or the pair is denied")]
    Denied,
    /// Valid alone, but it claims a reception stronger than free space that
    /// fewer than [`MIN_OPEN_WITNESSES`] other witnesses of the beacon
    /// corroborate ([`free_space_corroborated`]): not rewarded.
    #[error("received above free space, and too few other witnesses show the beaconer's site open")]
    FreeSpaceUncorroborated,
}

impl Reason {
    /// A stable snake_case name for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SelfWitness => "self_witness",
            Reason::BeaconMismatch => "beacon_mismatch",
            Reason::ImplausibleBeacon => "implausible_beacon",
            Reason::InvalidSpreadingFactor => "invalid_spreading_factor",
            Reason::InvalidBandwidth => "invalid_bandwidth",
            Reason::RssiOutOfRange => "rssi_out_of_range",
            Reason::SnrOutOfRange => "snr_out_of_range",
            Reason::FrequencyOutOfBand => "frequency_out_of_band",
            Reason::AntennaGainOutOfRange => "antenna_gain_out_of_range",
            Reason::FrequencyMismatch => "frequency_mismatch",
            Reason::DataRateMismatch => "data_rate_mismatch",
            Reason::ReceivedBeforeTransmit => "received_before_transmit",
            Reason::ReceivedTooLate => "received_too_late",
            Reason::InvalidLocation => "invalid_location",
            Reason::BelowMinDistance => "below_min_distance",
            Reason::AboveMaxDistance => "above_max_distance",
            Reason::RssiAboveFreeSpace => "rssi_above_free_space",
            Reason::Duplicate => "duplicate",
            Reason::NotSelected => "not_selected",
            Reason::Denied => "denied",
            Reason::FreeSpaceUncorroborated => "free_space_uncorroborated",
        }
    }
}

/// Lowest RSSI a report may carry, tenths of dBm: −150 dBm, about 10 dB below
/// the best LoRa sensitivity (SX1302/SX1250 at SF12/125 kHz: about −139 dBm,
/// SX1261: −137 dBm). Nothing weaker is ever demodulated.
pub const RSSI_MIN_DDBM: i16 = -1500;
/// Highest RSSI a report may carry, tenths of dBm: 0 dBm. Beacons come from at
/// least [`Params::min_distance_m`] away; 36 dBm EIRP (the US915 maximum) with a
/// 15 dBi receive antenna at 300 m still arrives below −29 dBm.
pub const RSSI_MAX_DDBM: i16 = 0;
/// Lowest SNR, tenths of dB: −30 dB, 10 dB below the demodulation floor of
/// SF12 (−20 dB, Semtech SX1276 datasheet, table "Range of spreading factors").
pub const SNR_MIN_DDB: i16 = -300;
/// Highest SNR, tenths of dB: +30 dB. The LoRa SNR estimate saturates well
/// below this (SX130x concentrators report at most about +15 dB).
pub const SNR_MAX_DDB: i16 = 300;
/// Lowest antenna gain, tenths of dBi: −10 dBi, below any chip antenna. Low
/// claims only tighten the RSSI bound against the claimer.
pub const ANTENNA_GAIN_MIN_DDBI: i16 = -100;
/// Highest antenna gain, tenths of dBi: 15 dBi, above any omnidirectional
/// LoRa antenna sold for gateways (typically 2–12 dBi). High claims loosen the
/// RSSI bound, so they are capped.
pub const ANTENNA_GAIN_MAX_DDBI: i16 = 150;
/// Lowest conducted beacon power, tenths of dBm: −10 dBm (SX126x radios go down to −9 dBm).
pub const TX_POWER_MIN_DDBM: i16 = -100;
/// Highest conducted beacon power, tenths of dBm: 30 dBm, the US915 limit (FCC
/// §15.247(b)(3), the highest of any LoRaWAN region). A higher claim would
/// loosen the RSSI bound for every witness of the beacon.
pub const TX_POWER_MAX_DDBM: i16 = 300;
/// LoRa spreading factors: 5 and 6 exist on SX126x radios, 7–12 everywhere.
pub const SPREADING_FACTORS: std::ops::RangeInclusive<u8> = 5..=12;
/// LoRa bandwidths used by the LoRaWAN regional plans, kHz.
pub const BANDWIDTHS_KHZ: [u16; 3] = [125, 250, 500];
/// The sub-GHz bands of the LoRaWAN Regional Parameters (RP002), Hz, inclusive:
/// EU433, CN470, CN779, EU868/IN865/RU864, and US915/AU915/AS923/KR920.
pub const LORAWAN_BANDS_HZ: [(u32, u32); 5] = [
    (433_050_000, 434_790_000),
    (470_000_000, 510_000_000),
    (779_000_000, 787_000_000),
    (863_000_000, 870_000_000),
    (902_000_000, 928_000_000),
];

/// Tunable witness rule parameters (network-wide: every node must use the same).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    /// Minimum beaconer–witness distance, metres. Default 300 m: HIP-15's
    /// radius `R` ("today ~300m"); Helium's verifier now asks for 8 res-11 cells
    /// (≈ 8 × 43 m centre spacing ≈ 345 m). Closer witnesses prove no coverage
    /// the beaconer does not already provide.
    pub min_distance_m: u64,
    /// Maximum beaconer–witness distance, metres. Default 100 km: Helium's
    /// `POC_DISTANCE_LIMIT`. Longer LoRa links exist (line of sight from
    /// mountains), but are rare enough that a claim beyond is more likely a
    /// false location than a record.
    pub max_distance_m: u64,
    /// Allowance above the free-space RSSI bound, tenths of dB. Default 6 dB:
    /// a ground reflection in phase with the direct ray raises the received
    /// power by up to 6.02 dB over free space (two-ray model), and res-12 cell
    /// centres misplace a gateway by up to ~10 m. Helium's verifier uses no
    /// margin but truncates antenna gains to whole dB.
    pub rssi_margin_ddb: i16,
    /// Largest difference between the beacon's and the witness's frequency, Hz.
    /// Default 100 kHz: Helium's tolerance, half the 200 kHz channel raster of
    /// EU868 and US915, so both name the same channel.
    pub max_frequency_offset_hz: u32,
    /// How much earlier than the beacon's transmission a witness may claim
    /// reception, ms. Default 500 ms: gateways without GPS keep time by NTP,
    /// typically within tens of ms, worse right after a Raspberry Pi (no RTC)
    /// boots; the radio path itself takes under a millisecond.
    pub max_clock_skew_ms: u64,
    /// Longest time from transmission to reception, ms. Default 2 s: a 16-byte
    /// beacon at SF12/125 kHz is 1.32 s on air (Semtech's time-on-air formula,
    /// 8-symbol preamble, CR 4/5, CRC, low-data-rate optimisation), plus the
    /// clock-skew allowance. Helium allows 4 s, but measures at its ingest
    /// servers, after internet transit.
    pub max_reception_delay_ms: u64,
    /// Most witnesses rewarded per beacon. Default 14: Helium's
    /// `max_witnesses_per_poc`. Past HIP-15's redundancy of 4 each extra
    /// witness earns less anyway; the cap bounds the work and the summary.
    pub max_rewarded_witnesses: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            min_distance_m: 300,
            max_distance_m: 100_000,
            rssi_margin_ddb: 60,
            max_frequency_offset_hz: 100_000,
            max_clock_skew_ms: 500,
            max_reception_delay_ms: 2_000,
            max_rewarded_witnesses: 14,
        }
    }
}

/// Why witness parameters are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// The minimum distance is not below the maximum.
    #[error("min_distance_m ({min}) must be below max_distance_m ({max})")]
    DistanceBounds {
        /// The minimum given.
        min: u64,
        /// The maximum given.
        max: u64,
    },
    /// The RSSI margin is negative.
    #[error("rssi_margin_ddb must not be negative (got {0})")]
    NegativeMargin(i16),
    /// No witness could ever be rewarded.
    #[error("max_rewarded_witnesses must be at least 1")]
    NoWitnesses,
}

impl Params {
    /// Checks the cross-field rules.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.min_distance_m >= self.max_distance_m {
            return Err(ParamsError::DistanceBounds { min: self.min_distance_m, max: self.max_distance_m });
        }
        if self.rssi_margin_ddb < 0 {
            return Err(ParamsError::NegativeMargin(self.rssi_margin_ddb));
        }
        if self.max_rewarded_witnesses == 0 {
            return Err(ParamsError::NoWitnesses);
        }
        Ok(())
    }
}

/// A gateway cannot witness its own beacon.
pub fn not_self_witness(beaconer: &GatewayId, witness: &GatewayId) -> Result<(), Reason> {
    if beaconer == witness { Err(Reason::SelfWitness) } else { Ok(()) }
}

/// The witness report names this beacon: same id, epoch and region.
pub fn same_beacon(beacon: &BeaconReport, witness: &WitnessReport) -> Result<(), Reason> {
    let same = beacon.beacon_id == witness.beacon_id
        && beacon.epoch == witness.epoch
        && beacon.region == witness.region;
    if same { Ok(()) } else { Err(Reason::BeaconMismatch) }
}

/// The beacon's own claims are possible: conducted power, antenna gain,
/// frequency band and modulation.
pub fn beacon_plausible(beacon: &BeaconReport) -> Result<(), Reason> {
    let plausible = (TX_POWER_MIN_DDBM..=TX_POWER_MAX_DDBM).contains(&beacon.tx_power_ddbm)
        && antenna_gain_in_range(beacon.antenna_gain_ddbi).is_ok()
        && frequency_in_band(beacon.frequency_hz).is_ok()
        && datarate_valid(beacon.datarate).is_ok();
    if plausible { Ok(()) } else { Err(Reason::ImplausibleBeacon) }
}

/// Spreading factor in [`SPREADING_FACTORS`], bandwidth in [`BANDWIDTHS_KHZ`].
pub fn datarate_valid(datarate: DataRate) -> Result<(), Reason> {
    if !SPREADING_FACTORS.contains(&datarate.spreading_factor) {
        return Err(Reason::InvalidSpreadingFactor);
    }
    if !BANDWIDTHS_KHZ.contains(&datarate.bandwidth_khz) {
        return Err(Reason::InvalidBandwidth);
    }
    Ok(())
}

/// RSSI within [`RSSI_MIN_DDBM`]..=[`RSSI_MAX_DDBM`].
pub fn rssi_in_range(rssi_ddbm: i16) -> Result<(), Reason> {
    if (RSSI_MIN_DDBM..=RSSI_MAX_DDBM).contains(&rssi_ddbm) { Ok(()) } else { Err(Reason::RssiOutOfRange) }
}

/// SNR within [`SNR_MIN_DDB`]..=[`SNR_MAX_DDB`].
pub fn snr_in_range(snr_ddb: i16) -> Result<(), Reason> {
    if (SNR_MIN_DDB..=SNR_MAX_DDB).contains(&snr_ddb) { Ok(()) } else { Err(Reason::SnrOutOfRange) }
}

/// Frequency inside one of [`LORAWAN_BANDS_HZ`].
pub fn frequency_in_band(frequency_hz: u32) -> Result<(), Reason> {
    if LORAWAN_BANDS_HZ.iter().any(|&(lo, hi)| (lo..=hi).contains(&frequency_hz)) {
        Ok(())
    } else {
        Err(Reason::FrequencyOutOfBand)
    }
}

/// Antenna gain within [`ANTENNA_GAIN_MIN_DDBI`]..=[`ANTENNA_GAIN_MAX_DDBI`].
pub fn antenna_gain_in_range(gain_ddbi: i16) -> Result<(), Reason> {
    if (ANTENNA_GAIN_MIN_DDBI..=ANTENNA_GAIN_MAX_DDBI).contains(&gain_ddbi) {
        Ok(())
    } else {
        Err(Reason::AntennaGainOutOfRange)
    }
}

/// The witness heard within [`Params::max_frequency_offset_hz`] of the beacon's frequency.
pub fn frequency_matches(beacon_hz: u32, witness_hz: u32, params: &Params) -> Result<(), Reason> {
    if beacon_hz.abs_diff(witness_hz) <= params.max_frequency_offset_hz {
        Ok(())
    } else {
        Err(Reason::FrequencyMismatch)
    }
}

/// The witness heard the beacon's spreading factor and bandwidth.
pub fn datarate_matches(beacon: DataRate, witness: DataRate) -> Result<(), Reason> {
    if beacon == witness { Ok(()) } else { Err(Reason::DataRateMismatch) }
}

/// Received no earlier than `transmitted − max_clock_skew_ms` and no later than
/// `transmitted + max_reception_delay_ms` (both inclusive).
pub fn time_window(transmitted_at_ms: u64, received_at_ms: u64, params: &Params) -> Result<(), Reason> {
    if received_at_ms < transmitted_at_ms.saturating_sub(params.max_clock_skew_ms) {
        return Err(Reason::ReceivedBeforeTransmit);
    }
    if received_at_ms > transmitted_at_ms.saturating_add(params.max_reception_delay_ms) {
        return Err(Reason::ReceivedTooLate);
    }
    Ok(())
}

/// At least [`Params::min_distance_m`] apart (inclusive).
pub fn min_distance(distance_m: u64, params: &Params) -> Result<(), Reason> {
    if distance_m >= params.min_distance_m { Ok(()) } else { Err(Reason::BelowMinDistance) }
}

/// At most [`Params::max_distance_m`] apart (inclusive).
pub fn max_distance(distance_m: u64, params: &Params) -> Result<(), Reason> {
    if distance_m <= params.max_distance_m { Ok(()) } else { Err(Reason::AboveMaxDistance) }
}

/// Free-space path loss in tenths of dB, rounded down (Friis):
/// `FSPL = 20·log10(4π·d·f / c)`, with `d` in metres (at least 1), `f` in Hz
/// and `c = 299,792,458 m/s`.
///
/// Computed in integers only: `log2(d·f)` to 40 fractional bits by repeated
/// squaring, times `200·log10(2)`, plus `200·log10(4π/c)`, both constants in
/// Q40 fixed point. The result is within 0.1 dB of the real value and the same
/// on every machine.
pub fn free_space_path_loss_ddb(distance_m: u64, frequency_hz: u32) -> i64 {
    /// 200·log10(2) = 60.2059991327962…, in Q40 (rounded down).
    const DDB_PER_OCTAVE_Q40: i128 = 66_197_196_108_381;
    /// 200·log10(4π / 299,792,458) = −1475.5221677811662…, in Q40 (rounded down).
    const OFFSET_DDB_Q40: i128 = -1_622_353_780_516_643;
    let x = u128::from(distance_m.max(1)) * u128::from(frequency_hz.max(1));
    let log2 = log2_q40(x) as i128;
    let q80 = log2 * DDB_PER_OCTAVE_Q40 + (OFFSET_DDB_Q40 << 40);
    // An arithmetic shift floors; |q80| < 2¹⁰⁰, so the result fits easily.
    (q80 >> 80) as i64
}

/// log2(x) for x ≥ 1, in Q40 fixed point, rounded down.
fn log2_q40(x: u128) -> u128 {
    const FRAC_BITS: u32 = 40;
    const ONE_Q62: u128 = 1 << 62;
    let whole = 127 - x.leading_zeros();
    // The mantissa x / 2^whole, in [1, 2), as Q62.
    let mut m = if whole >= 62 { x >> (whole - 62) } else { x << (62 - whole) };
    let mut result = u128::from(whole) << FRAC_BITS;
    for bit in (0..FRAC_BITS).rev() {
        // m < 2⁶³, so m² < 2¹²⁶ fits.
        m = (m * m) >> 62;
        if m >= 2 * ONE_Q62 {
            m >>= 1;
            result |= 1 << bit;
        }
    }
    result
}

/// The strongest RSSI free space allows, tenths of dBm: beacon conducted power
/// plus both antenna gains, minus the free-space loss at the beacon's
/// frequency, plus [`Params::rssi_margin_ddb`].
pub fn max_rssi_ddbm(beacon: &BeaconReport, witness_gain_ddbi: i16, distance_m: u64, params: &Params) -> i64 {
    i64::from(beacon.tx_power_ddbm) + i64::from(beacon.antenna_gain_ddbi) + i64::from(witness_gain_ddbi)
        - free_space_path_loss_ddb(distance_m, beacon.frequency_hz)
        + i64::from(params.rssi_margin_ddb)
}

/// The RSSI free space predicts, tenths of dBm: [`max_rssi_ddbm`] without
/// the [`Params::rssi_margin_ddb`] allowance. Beacon conducted power plus both
/// antenna gains, minus the free-space loss at the asserted distance.
pub fn free_space_rssi_ddbm(beacon: &BeaconReport, witness_gain_ddbi: i16, distance_m: u64) -> i64 {
    i64::from(beacon.tx_power_ddbm) + i64::from(beacon.antenna_gain_ddbi) + i64::from(witness_gain_ddbi)
        - free_space_path_loss_ddb(distance_m, beacon.frequency_hz)
}

/// How much weaker than free space the witness heard the beacon, tenths of
/// dB: [`free_space_rssi_ddbm`] minus the reported RSSI, at the asserted
/// beaconer–witness distance. Real links lose more than free space
/// (clutter, obstruction, foliage: typically 10–40 dB at ground level), so
/// this is usually well above zero; it is negative when the witness claims
/// more power than free space delivers, which [`rssi_within_free_space`]
/// allows down to `−rssi_margin_ddb` for an in-phase ground reflection.
pub fn excess_loss_ddb(beacon: &BeaconReport, witness: &WitnessReport, distance_m: u64) -> i64 {
    free_space_rssi_ddbm(beacon, witness.antenna_gain_ddbi, distance_m) - i64::from(witness.rssi_ddbm)
}

/// A witness whose [`excess_loss_ddb`] is below this, tenths of dB, claims a
/// reception stronger than free space: 0 dB. Free space is what an
/// unobstructed line of sight delivers; more needs a ground (or wall)
/// reflection arriving in phase with the direct ray, which adds at most
/// 6.02 dB (two-ray model, the per-report margin) and only at particular
/// distances and antenna heights. Helium's verifier refuses such reports
/// outright; meshd keeps them valid and asks the other witnesses
/// ([`free_space_corroborated`]).
pub const ABOVE_FREE_SPACE_DDB: i64 = 0;

/// A witness whose [`excess_loss_ddb`] is at least [`ABOVE_FREE_SPACE_DDB`]
/// and below this, tenths of dB, shows the beaconer's site open: 10 dB. By
/// single knife-edge diffraction (ITU-R P.526) an obstacle whose edge just
/// touches the direct ray costs 6 dB, and one rising about a third of the
/// first Fresnel radius above it (ν ≈ 0.45) about 10 dB, so a link within
/// 10 dB of free space is at most grazingly obstructed: near line of sight,
/// what a real open site (a mast, a hill) shows towards several of its
/// neighbours. Cluttered links at ground level lose 20–40 dB more than free
/// space.
pub const OPEN_SITE_DDB: i64 = 100;

/// Witnesses within [`OPEN_SITE_DDB`] of free space that a claim above free
/// space needs beside it: 2. A real open site shows near-free-space links
/// towards several of its neighbours. One such link alone is also what a
/// beaconer that lies about its location produces by chance: a real witness
/// nearer the true spot than the asserted one measures a loss close to free
/// space for the asserted distance. With one corroborating witness, Sybil
/// rings asserting a 2 km circle earned 1.2–1.3 % over their real coverage in
/// the simulator's `sybil` and `adversarial` scenarios; with two, nothing,
/// and no honest witness lost its reward there.
pub const MIN_OPEN_WITNESSES: usize = 2;

/// The cross-witness rule over all the witnesses of one beacon, given each
/// one's [`excess_loss_ddb`] (element `i` of the result for `excess_ddb[i]`):
/// the witnesses above free space (below [`ABOVE_FREE_SPACE_DDB`]) are
/// rewarded only when at least [`MIN_OPEN_WITNESSES`] other witnesses of the
/// beacon, themselves not above free space, are within [`OPEN_SITE_DDB`] of
/// free space (corroborating an open site); otherwise each of them is
/// [`Reason::FreeSpaceUncorroborated`]. Every
/// other witness is `Ok`.
///
/// # Why
///
/// A Sybil ring's members sit at one spot and assert spread-out locations;
/// they cannot really hear each other from the asserted distances, so they
/// forge the witness reports of each other's beacons. To pass
/// [`rssi_within_free_space`] and still look strong, the forger claims an
/// RSSI near the bound, which lies above free space (the bound includes the
/// in-phase-reflection margin). Each report alone is possible physics: a clear
/// line of sight and a lucky reflection. But a beaconer with a clear line of
/// sight to one neighbour has an open antenna site, and its beacon reaches
/// other neighbours nearly unobstructed too; the ring's beacon, transmitted
/// from its real, cluttered spot, reaches the real witnesses through the
/// clutter. Claims above free space that no witness outside them confirms
/// earn nothing. Withholding their reward (not refusing the proposal) keeps
/// honest proposals valid and takes away the forged slots' units, including
/// their dilution of the honest witnesses' share.
///
/// # Properties
///
/// Pure, integer-only, and a function of the multiset of excess losses: the
/// verdicts depend on each witness's own value and on how many corroborating
/// values are present, never on the order, so proposer and
/// members agree. Witnesses above free space never corroborate each other.
///
/// # Limits
///
/// It judges claims above free space only. A ring that claims a plausible
/// loss instead (below free space), or that forges [`MIN_OPEN_WITNESSES`]
/// corroborating reports within [`OPEN_SITE_DDB`] for each beacon, passes:
/// such a ring must then claim weaker links, and nothing in RSSI alone can
/// tell a well-made forgery from a real reception. A real open site with
/// fewer than [`MIN_OPEN_WITNESSES`] near-free-space neighbours besides the
/// one above free space loses that witness's reward for the beacon. See
/// `docs/protocol.md`.
pub fn free_space_corroborated(excess_ddb: &[i64]) -> Vec<Result<(), Reason>> {
    let above = |x: i64| x < ABOVE_FREE_SPACE_DDB;
    let open = excess_ddb.iter().filter(|&&x| !above(x) && x < OPEN_SITE_DDB).count() >= MIN_OPEN_WITNESSES;
    excess_ddb
        .iter()
        .map(|&x| if above(x) && !open { Err(Reason::FreeSpaceUncorroborated) } else { Ok(()) })
        .collect()
}

/// The witness's RSSI is at most [`max_rssi_ddbm`]: stronger would mean the
/// two gateways are closer than their locations claim.
pub fn rssi_within_free_space(
    beacon: &BeaconReport,
    witness: &WitnessReport,
    distance_m: u64,
    params: &Params,
) -> Result<(), Reason> {
    if i64::from(witness.rssi_ddbm) <= max_rssi_ddbm(beacon, witness.antenna_gain_ddbi, distance_m, params) {
        Ok(())
    } else {
        Err(Reason::RssiAboveFreeSpace)
    }
}

/// The distance between the beaconer's and the witness's asserted locations.
pub fn distance_between(beacon: Location, witness: Location) -> Result<u64, Reason> {
    geo::distance_m(beacon, witness).map_err(|_| Reason::InvalidLocation)
}

/// Runs every per-report rule in the order of the module docs and returns the
/// first failure, or the beaconer–witness distance in metres.
pub fn check(
    beacon: &BeaconReport,
    witness: &WitnessReport,
    beaconer: &GatewayId,
    witness_id: &GatewayId,
    params: &Params,
) -> Result<u64, Reason> {
    not_self_witness(beaconer, witness_id)?;
    same_beacon(beacon, witness)?;
    beacon_plausible(beacon)?;
    datarate_valid(witness.datarate)?;
    rssi_in_range(witness.rssi_ddbm)?;
    snr_in_range(witness.snr_ddb)?;
    frequency_in_band(witness.frequency_hz)?;
    antenna_gain_in_range(witness.antenna_gain_ddbi)?;
    frequency_matches(beacon.frequency_hz, witness.frequency_hz, params)?;
    datarate_matches(beacon.datarate, witness.datarate)?;
    time_window(beacon.transmitted_at_ms, witness.received_at_ms, params)?;
    let distance = distance_between(beacon.location, witness.location)?;
    min_distance(distance, params)?;
    max_distance(distance, params)?;
    rssi_within_free_space(beacon, witness, distance, params)?;
    Ok(distance)
}

/// Neither the witness, nor the beaconer, nor the pair is denied.
pub fn not_denied(
    beaconer: &GatewayId,
    witness: &GatewayId,
    denied: impl Fn(&GatewayId) -> bool,
    denied_pair: impl Fn(&GatewayId, &GatewayId) -> bool,
) -> Result<(), Reason> {
    if denied(witness) || denied(beaconer) || denied_pair(beaconer, witness) || denied_pair(witness, beaconer)
    {
        Err(Reason::Denied)
    } else {
        Ok(())
    }
}

/// One witness report of a beacon, as [`select`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The witness (the report's signer).
    pub witness: GatewayId,
    /// The report's reception time, Unix ms.
    pub received_at_ms: u64,
    /// The verdict of [`check`] (and of [`not_denied`]) on the report.
    pub verdict: Result<(), Reason>,
}

/// The final verdict on every report of one beacon, element `i` for `candidates[i]`.
///
/// 1. **Duplicates.** Reports with the same content share a message id and are
///    dropped before they get here, so two candidates of one witness are two
///    *different* signed reports of the same beacon. Keeping either would let
///    the witness try several RSSI or timing values and keep whichever passes;
///    every report of such a witness is therefore [`Reason::Duplicate`],
///    whatever its own verdict.
/// 2. Reports that failed [`check`] keep their reason.
/// 3. **Cap.** Of the valid reports, the [`Params::max_rewarded_witnesses`]
///    earliest by `received_at_ms` are selected, ties broken by the smaller
///    witness id; the others are [`Reason::NotSelected`].
///
/// The result does not depend on the order of `candidates`.
pub fn select(candidates: &[Candidate], params: &Params) -> Vec<Result<(), Reason>> {
    let mut reports_per_witness: BTreeMap<GatewayId, usize> = BTreeMap::new();
    for c in candidates {
        *reports_per_witness.entry(c.witness).or_default() += 1;
    }
    let mut verdicts: Vec<Result<(), Reason>> = candidates
        .iter()
        .map(|c| if reports_per_witness[&c.witness] > 1 { Err(Reason::Duplicate) } else { c.verdict })
        .collect();
    let mut valid: Vec<usize> = (0..candidates.len()).filter(|&i| verdicts[i].is_ok()).collect();
    valid.sort_by_key(|&i| (candidates[i].received_at_ms, candidates[i].witness));
    for &i in valid.iter().skip(params.max_rewarded_witnesses) {
        verdicts[i] = Err(Reason::NotSelected);
    }
    verdicts
}

#[cfg(test)]
mod tests;
