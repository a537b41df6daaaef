//! Reward formulas: units per beacon and witness, and energy to certificates.
//!
//! Everything here is consensus-relevant and therefore integer-only, rounded
//! down at each step (never issuing more than the formula), and free of
//! overflow for every input.
//!
//! # Proof-of-coverage units
//!
//! One beacon with `w` rewarded witnesses earns units shared between the
//! beaconer and its witnesses, following the shape of Helium's HIP-15
//! ("Beaconing Rewards") with a desired redundancy `N` and a decay `r`:
//!
//! | witnesses | beaconer | each witness |
//! |---|---|---|
//! | `w = 0` | 0 | — |
//! | `1 ≤ w ≤ N` | `w / N` | 1 |
//! | `w > N` | `2 − rᵏ` | `(N − 1 + rᵏ) / w` |
//!
//! with `k = w − N`, in units of [`UNIT`]. Below the redundancy the area is
//! under-covered: every witness earns a full unit and the beaconer earns in
//! proportion to how many heard it. Past it, the total stays `N + 1` units; the
//! beaconer's share grows towards 2 (transmitting widely still pays, and shows
//! the over-coverage), and the witnesses split the rest, so crowding a beacon
//! with more witnesses earns the crowd nothing. `rᵏ` is computed as repeated
//! multiplication by `r = decay_num / decay_den` in [`UNIT`] fixed point,
//! rounding down after each step.
//!
//! Defaults `N = 4`, `r = 0.8` are HIP-15's, also used by Helium's IoT verifier
//! (`WITNESS_REDUNDANCY`, `POC_REWARD_DECAY_RATE`). Witnesses beyond the rule
//! cap ([`crate::rules::witness::Params::max_rewarded_witnesses`]) are not
//! counted in `w`. Scaling by hex density (HIP-17) is not part of this formula.
//!
//! # Energy certificates
//!
//! One certificate (REC) per MWh, [`WH_PER_CERTIFICATE`]; what is left over is
//! carried into the next period, so no watt-hour is lost or counted twice.

use std::collections::BTreeMap;

use crate::hash::Hash32;
use crate::id::GatewayId;
use crate::merkle::{self, MerkleTree};

/// One reward unit, in the integer sub-units every amount here is counted in.
/// A million sub-units keep the fractions of the formula (quarters, powers of
/// 0.8) exact to six decimals, and sums of billions of units still fit a `u64`.
pub const UNIT: u64 = 1_000_000;

/// Watt-hours per certificate: 1 MWh, the unit of a Renewable Energy
/// Certificate (I-REC, EECS guarantees of origin, US RECs).
pub const WH_PER_CERTIFICATE: u64 = 1_000_000;

/// Parameters of the proof-of-coverage formula (network-wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RewardParams {
    /// Desired redundancy `N`: how many witnesses per beacon are fully rewarded.
    /// Default 4 (HIP-15).
    pub redundancy: u32,
    /// Numerator of the decay `r`. Default 4, for `r = 0.8` (HIP-15: ten
    /// witnesses beyond `N` move ~0.9 units to the beaconer).
    pub decay_num: u32,
    /// Denominator of the decay `r`. Default 5.
    pub decay_den: u32,
}

impl Default for RewardParams {
    fn default() -> Self {
        RewardParams { redundancy: 4, decay_num: 4, decay_den: 5 }
    }
}

/// Why reward parameters are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RewardParamsError {
    /// The redundancy is zero.
    #[error("redundancy must be at least 1")]
    ZeroRedundancy,
    /// The decay is not a fraction below 1.
    #[error("decay {num}/{den} must be a fraction below 1 (num < den)")]
    InvalidDecay {
        /// The numerator given.
        num: u32,
        /// The denominator given.
        den: u32,
    },
}

/// The units one beacon earns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PocUnits {
    /// The beaconer's units.
    pub beaconer: u64,
    /// Each rewarded witness's units.
    pub per_witness: u64,
}

impl RewardParams {
    /// Checks that `N ≥ 1` and `0 ≤ r < 1`.
    pub fn validate(&self) -> Result<(), RewardParamsError> {
        if self.redundancy == 0 {
            return Err(RewardParamsError::ZeroRedundancy);
        }
        if self.decay_den == 0 || self.decay_num >= self.decay_den {
            return Err(RewardParamsError::InvalidDecay { num: self.decay_num, den: self.decay_den });
        }
        Ok(())
    }

    /// `UNIT · rᵏ`, rounded down after each multiplication. Stops early once it
    /// reaches zero (at most ~62 steps for `r = 0.8`), so any `k` is cheap.
    /// An invalid decay (`r ≥ 1` or a zero denominator) counts as `r = 0`.
    pub fn decay_units(&self, k: u32) -> u64 {
        if self.decay_den == 0 || self.decay_num >= self.decay_den {
            return if k == 0 { UNIT } else { 0 };
        }
        let mut value = UNIT;
        for _ in 0..k {
            if value == 0 {
                break;
            }
            value = value * u64::from(self.decay_num) / u64::from(self.decay_den);
        }
        value
    }

    /// The units of a beacon with `witnesses` rewarded witnesses (see the module docs).
    /// A zero redundancy counts as 1.
    pub fn poc_units(&self, witnesses: u32) -> PocUnits {
        let n = self.redundancy.max(1);
        if witnesses == 0 {
            return PocUnits { beaconer: 0, per_witness: 0 };
        }
        if witnesses <= n {
            return PocUnits { beaconer: UNIT * u64::from(witnesses) / u64::from(n), per_witness: UNIT };
        }
        let decay = self.decay_units(witnesses - n);
        // decay ≤ UNIT and n ≤ u32::MAX, so the pool fits a u64 (< 2⁵³).
        let pool = u64::from(n - 1) * UNIT + decay;
        PocUnits { beaconer: 2 * UNIT - decay, per_witness: pool / u64::from(witnesses) }
    }
}

/// Reward units per gateway over an epoch: what the summary's rewards root commits to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewardTally {
    units: BTreeMap<GatewayId, u64>,
}

impl RewardTally {
    /// An empty tally.
    pub fn new() -> RewardTally {
        RewardTally::default()
    }

    /// Adds one beacon: its beaconer and its rewarded witnesses (as
    /// [`crate::rules::witness::select`] left them). Sums saturate at
    /// `u64::MAX`, which no epoch can reach (it would take 10¹³ beacons).
    pub fn add_beacon(&mut self, params: &RewardParams, beaconer: &GatewayId, witnesses: &[GatewayId]) {
        let count = u32::try_from(witnesses.len()).unwrap_or(u32::MAX);
        let units = params.poc_units(count);
        self.add(beaconer, units.beaconer);
        for w in witnesses {
            self.add(w, units.per_witness);
        }
    }

    /// Adds `units` to `gateway`, saturating.
    pub fn add(&mut self, gateway: &GatewayId, units: u64) {
        if units > 0 {
            let entry = self.units.entry(*gateway).or_default();
            *entry = entry.saturating_add(units);
        }
    }

    /// The units of `gateway`.
    pub fn units(&self, gateway: &GatewayId) -> u64 {
        self.units.get(gateway).copied().unwrap_or(0)
    }

    /// Every gateway with its units, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&GatewayId, &u64)> {
        self.units.iter()
    }

    /// The sum of all units, saturating.
    pub fn total(&self) -> u64 {
        self.units.values().fold(0u64, |sum, &u| sum.saturating_add(u))
    }

    /// The Merkle tree of `(gateway, units)` leaves ([`merkle::reward_leaf`]).
    pub fn tree(&self) -> MerkleTree {
        MerkleTree::new(self.units.iter().map(|(g, &u)| merkle::reward_leaf(g, u)))
    }

    /// The rewards root ([`Hash32::ZERO`] when nobody earned anything).
    pub fn root(&self) -> Hash32 {
        self.tree().root()
    }
}

/// Why energy could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnergyError {
    /// A carry must be below one certificate's worth.
    #[error("carried energy {0} Wh is not below {WH_PER_CERTIFICATE} Wh")]
    CarryTooLarge(u64),
}

/// Certificates from `carry_wh` left from before plus `new_wh`: returns
/// `(certificates, new carry)` with `certificates · 1 MWh + new carry = carry_wh + new_wh`
/// and the new carry below 1 MWh. Never overflows.
pub fn certificates(carry_wh: u64, new_wh: u64) -> Result<(u64, u64), EnergyError> {
    if carry_wh >= WH_PER_CERTIFICATE {
        return Err(EnergyError::CarryTooLarge(carry_wh));
    }
    // Both below 1 MWh, so their sum is below 2 MWh.
    let rest = carry_wh + new_wh % WH_PER_CERTIFICATE;
    Ok((new_wh / WH_PER_CERTIFICATE + rest / WH_PER_CERTIFICATE, rest % WH_PER_CERTIFICATE))
}

/// One meter's (or owner's) energy account: certificates issued and Wh carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EnergyLedger {
    carry_wh: u64,
    issued: u64,
}

impl EnergyLedger {
    /// An empty ledger.
    pub fn new() -> EnergyLedger {
        EnergyLedger::default()
    }

    /// A ledger resumed from storage.
    pub fn resume(carry_wh: u64, issued: u64) -> Result<EnergyLedger, EnergyError> {
        if carry_wh >= WH_PER_CERTIFICATE {
            return Err(EnergyError::CarryTooLarge(carry_wh));
        }
        Ok(EnergyLedger { carry_wh, issued })
    }

    /// Credits `wh` and returns the certificates it completes.
    pub fn credit(&mut self, wh: u64) -> u64 {
        // carry_wh < 1 MWh is an invariant of every constructor.
        let (new, carry) = certificates(self.carry_wh, wh).unwrap_or((0, self.carry_wh));
        self.carry_wh = carry;
        self.issued = self.issued.saturating_add(new);
        new
    }

    /// Energy carried towards the next certificate, Wh (below 1 MWh).
    pub fn carry_wh(&self) -> u64 {
        self.carry_wh
    }

    /// Certificates issued so far.
    pub fn issued(&self) -> u64 {
        self.issued
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn default_params_are_valid_and_bad_ones_are_refused() {
        assert_eq!(RewardParams::default().validate(), Ok(()));
        let zero = RewardParams { redundancy: 0, ..RewardParams::default() };
        assert_eq!(zero.validate(), Err(RewardParamsError::ZeroRedundancy));
        let one = RewardParams { decay_num: 5, decay_den: 5, ..RewardParams::default() };
        assert_eq!(one.validate(), Err(RewardParamsError::InvalidDecay { num: 5, den: 5 }));
        let zero_den = RewardParams { decay_num: 0, decay_den: 0, ..RewardParams::default() };
        assert!(zero_den.validate().is_err());
    }

    #[test]
    fn units_follow_the_hip15_table() {
        // HIP-15's table for N = 4, r = 0.8 (two decimals).
        let expected = [
            (1, 250_000, 1_000_000),
            (2, 500_000, 1_000_000),
            (4, 1_000_000, 1_000_000),
            (5, 1_200_000, 760_000),
            (6, 1_360_000, 606_666),
            (8, 1_590_400, 426_200),
            (14, 1_892_627, 221_955),
        ];
        let p = RewardParams::default();
        for (w, beaconer, per_witness) in expected {
            assert_eq!(p.poc_units(w), PocUnits { beaconer, per_witness }, "w = {w}");
        }
        assert_eq!(p.poc_units(0), PocUnits { beaconer: 0, per_witness: 0 });
    }

    #[test]
    fn decay_reaches_zero_and_stays_there() {
        let p = RewardParams::default();
        assert_eq!(p.decay_units(0), UNIT);
        assert_eq!(p.decay_units(1), 800_000);
        assert_eq!(p.decay_units(200), 0);
        assert_eq!(p.decay_units(u32::MAX), 0);
        assert_eq!(p.poc_units(u32::MAX).beaconer, 2 * UNIT);
    }

    #[test]
    fn tally_sums_units_per_gateway_and_commits_to_them() {
        let p = RewardParams::default();
        let (b, w1, w2) = (GatewayId([1; 32]), GatewayId([2; 32]), GatewayId([3; 32]));
        let mut tally = RewardTally::new();
        tally.add_beacon(&p, &b, &[w1, w2]);
        tally.add_beacon(&p, &w1, &[b]);
        assert_eq!(tally.units(&b), 500_000 + UNIT);
        assert_eq!(tally.units(&w1), UNIT + 250_000);
        assert_eq!(tally.units(&w2), UNIT);
        assert_eq!(tally.total(), 3 * UNIT + 750_000);
        let leaf = merkle::reward_leaf(&w2, UNIT);
        let tree = tally.tree();
        assert!(merkle::verify(&tree.proof_of(&leaf).expect("present"), &tally.root(), &leaf));
        assert_eq!(RewardTally::new().root(), Hash32::ZERO);
        // A beacon nobody heard earns nothing and adds no leaf.
        let mut lonely = RewardTally::new();
        lonely.add_beacon(&p, &b, &[]);
        assert_eq!(lonely.iter().count(), 0);
    }

    #[test]
    fn certificates_at_the_mwh_boundary() {
        assert_eq!(certificates(0, 999_999), Ok((0, 999_999)));
        assert_eq!(certificates(0, 1_000_000), Ok((1, 0)));
        assert_eq!(certificates(999_999, 1), Ok((1, 0)));
        assert_eq!(certificates(999_999, 0), Ok((0, 999_999)));
        assert_eq!(certificates(500_000, 2_700_000), Ok((3, 200_000)));
        assert_eq!(certificates(1_000_000, 0), Err(EnergyError::CarryTooLarge(1_000_000)));
        assert_eq!(certificates(999_999, u64::MAX), Ok((u64::MAX / 1_000_000 + 1, 551_614)));
    }

    #[test]
    fn ledger_carries_the_remainder_into_the_next_period() {
        let mut ledger = EnergyLedger::new();
        assert_eq!(ledger.credit(600_000), 0);
        assert_eq!(ledger.credit(600_000), 1);
        assert_eq!(ledger.carry_wh(), 200_000);
        assert_eq!(ledger.credit(1_800_000), 2);
        assert_eq!((ledger.issued(), ledger.carry_wh()), (3, 0));
        assert_eq!(EnergyLedger::resume(1_000_000, 0), Err(EnergyError::CarryTooLarge(1_000_000)));
        assert_eq!(EnergyLedger::resume(5, 2).map(|l| l.carry_wh()), Ok(5));
    }

    fn arb_params() -> impl Strategy<Value = RewardParams> {
        (1u32..=u32::MAX, 1u32..1000).prop_flat_map(|(redundancy, den)| {
            (0..den).prop_map(move |num| RewardParams { redundancy, decay_num: num, decay_den: den })
        })
    }

    proptest! {
        #[test]
        fn units_are_bounded_and_never_exceed_n_plus_one(p in arb_params(), w in any::<u32>()) {
            let units = p.poc_units(w);
            prop_assert!(units.beaconer <= 2 * UNIT);
            prop_assert!(units.per_witness <= UNIT);
            let total = u128::from(units.beaconer) + u128::from(units.per_witness) * u128::from(w);
            prop_assert!(total <= (u128::from(p.redundancy) + 1) * u128::from(UNIT));
        }

        #[test]
        fn more_witnesses_never_pay_each_witness_more_or_the_beaconer_less(
            p in arb_params(),
            w in 0u32..10_000,
        ) {
            let (now, next) = (p.poc_units(w), p.poc_units(w + 1));
            prop_assert!(next.beaconer >= now.beaconer);
            if w > 0 {
                prop_assert!(next.per_witness <= now.per_witness);
            }
        }

        #[test]
        fn energy_is_conserved_and_the_carry_stays_below_one_mwh(
            carry in 0u64..WH_PER_CERTIFICATE,
            new in any::<u64>(),
        ) {
            let (certs, next) = certificates(carry, new).expect("valid carry");
            prop_assert!(next < WH_PER_CERTIFICATE);
            prop_assert_eq!(
                u128::from(certs) * u128::from(WH_PER_CERTIFICATE) + u128::from(next),
                u128::from(carry) + u128::from(new)
            );
        }

        #[test]
        fn a_ledger_issues_exactly_the_whole_mwh_credited(credits in prop::collection::vec(0u64..5_000_000, 0..50)) {
            let mut ledger = EnergyLedger::new();
            for &wh in &credits {
                ledger.credit(wh);
                prop_assert!(ledger.carry_wh() < WH_PER_CERTIFICATE);
            }
            let total: u64 = credits.iter().sum();
            prop_assert_eq!(ledger.issued(), total / WH_PER_CERTIFICATE);
            prop_assert_eq!(ledger.carry_wh(), total % WH_PER_CERTIFICATE);
        }
    }
}
