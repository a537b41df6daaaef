//! Epoch math: which epoch a moment falls in, and where an epoch stands.
//!
//! Epoch `e` covers `[genesis + e·L, genesis + (e+1)·L)` in Unix milliseconds.
//! After its end a grace period `G` still admits late gossip; at
//! `end + G` ([`EpochClock::decides_at_ms`]) the region's committee decides and
//! the epoch's reports are closed.
//!
//! ```text
//!   start_ms(e)          end_ms(e) = start_ms(e+1)     decides_at_ms(e)
//!   |------- Open --------|--------- Grace -------------|------ Deciding ------>
//!   Pending before start   (G < L: at most one epoch is in grace at a time)
//! ```
//!
//! Every function takes `now_ms` as an argument and never panics: products and
//! sums are computed in `u128`, where `u64 + u64·u64` cannot overflow, and a
//! moment that does not fit a `u64` is reported as [`EpochError::Overflow`]
//! (it lies some 584 million years after 1970).

/// The network's epoch schedule, validated by [`EpochClock::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EpochClock {
    genesis_ms: u64,
    length_ms: u64,
    grace_ms: u64,
}

/// Why an epoch schedule is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpochClockError {
    /// The epoch length is zero.
    #[error("the epoch length must be at least 1 ms")]
    ZeroLength,
    /// The grace period is not shorter than an epoch.
    #[error("the grace period ({grace_ms} ms) must be shorter than an epoch ({length_ms} ms)")]
    GraceTooLong {
        /// The grace period given, ms.
        grace_ms: u64,
        /// The epoch length given, ms.
        length_ms: u64,
    },
}

/// Why an epoch or a moment could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpochError {
    /// The moment is before the network's genesis: there is no epoch yet.
    #[error("{now_ms} is before genesis at {genesis_ms} (Unix ms)")]
    BeforeGenesis {
        /// The moment asked about.
        now_ms: u64,
        /// The genesis.
        genesis_ms: u64,
    },
    /// The epoch's moment does not fit a `u64` of Unix milliseconds.
    #[error("epoch {0} lies beyond the last representable Unix millisecond")]
    Overflow(u64),
}

/// Where an epoch stands at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The epoch has not started.
    Pending,
    /// The epoch is running: `start ≤ now < end`.
    Open,
    /// The epoch has ended and its grace period runs: `end ≤ now < decides_at`.
    Grace,
    /// The grace period is over: the committee decides, reports are closed.
    Deciding,
}

/// How a report of some epoch arrives relative to that epoch's schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timing {
    /// Before the epoch starts: the sender's clock runs ahead, or it lies.
    Early,
    /// While the epoch is open.
    OnTime,
    /// After the epoch's end but within its grace period: still admitted.
    Late,
    /// After the grace period: the epoch is being or has been decided.
    TooLate,
}

impl Timing {
    /// Whether a report with this timing is still admitted to its epoch.
    pub fn admitted(self) -> bool {
        matches!(self, Timing::OnTime | Timing::Late)
    }
}

impl EpochClock {
    /// A schedule with epoch 0 starting at `genesis_ms` (Unix ms), epochs of
    /// `length_ms` and a grace period of `grace_ms` after each.
    ///
    /// The grace period must be shorter than an epoch, so that when epoch `e`
    /// is decided, epoch `e + 1` is still open and at most one epoch is ever in
    /// grace: a node holds the open epoch and at most one closing one.
    pub fn new(genesis_ms: u64, length_ms: u64, grace_ms: u64) -> Result<EpochClock, EpochClockError> {
        if length_ms == 0 {
            return Err(EpochClockError::ZeroLength);
        }
        if grace_ms >= length_ms {
            return Err(EpochClockError::GraceTooLong { grace_ms, length_ms });
        }
        Ok(EpochClock { genesis_ms, length_ms, grace_ms })
    }

    /// Start of epoch 0, Unix ms.
    pub fn genesis_ms(&self) -> u64 {
        self.genesis_ms
    }

    /// Length of an epoch, ms.
    pub fn length_ms(&self) -> u64 {
        self.length_ms
    }

    /// Grace period after an epoch's end, ms.
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
    }

    /// The epoch running at `now_ms`.
    pub fn epoch_at(&self, now_ms: u64) -> Result<u64, EpochError> {
        let since = now_ms
            .checked_sub(self.genesis_ms)
            .ok_or(EpochError::BeforeGenesis { now_ms, genesis_ms: self.genesis_ms })?;
        // length_ms > 0 is an invariant of the constructor.
        Ok(since / self.length_ms)
    }

    /// Start of epoch `e` (inclusive), Unix ms.
    pub fn start_ms(&self, e: u64) -> Result<u64, EpochError> {
        to_ms(self.start(e), e)
    }

    /// End of epoch `e` (exclusive), Unix ms: the start of `e + 1`.
    pub fn end_ms(&self, e: u64) -> Result<u64, EpochError> {
        to_ms(self.end(e), e)
    }

    /// When epoch `e`'s grace period ends and its committee decides, Unix ms.
    pub fn decides_at_ms(&self, e: u64) -> Result<u64, EpochError> {
        to_ms(self.decides_at(e), e)
    }

    /// Where epoch `e` stands at `now_ms`.
    pub fn phase(&self, e: u64, now_ms: u64) -> Phase {
        let now = u128::from(now_ms);
        if now < self.start(e) {
            Phase::Pending
        } else if now < self.end(e) {
            Phase::Open
        } else if now < self.decides_at(e) {
            Phase::Grace
        } else {
            Phase::Deciding
        }
    }

    /// How a report of epoch `e` arriving at `now_ms` stands: on time, late
    /// but within grace (both admitted), too late, or early.
    pub fn timing(&self, e: u64, now_ms: u64) -> Timing {
        match self.phase(e, now_ms) {
            Phase::Pending => Timing::Early,
            Phase::Open => Timing::OnTime,
            Phase::Grace => Timing::Late,
            Phase::Deciding => Timing::TooLate,
        }
    }

    fn start(&self, e: u64) -> u128 {
        // At most (2⁶⁴−1) + (2⁶⁴−1)² < 2¹²⁸.
        u128::from(self.genesis_ms) + u128::from(e) * u128::from(self.length_ms)
    }

    fn end(&self, e: u64) -> u128 {
        // genesis + (e+1)·length ≤ (2⁶⁴−1) + 2⁶⁴·(2⁶⁴−1) = 2¹²⁸ − 1.
        u128::from(self.genesis_ms) + (u128::from(e) + 1) * u128::from(self.length_ms)
    }

    fn decides_at(&self, e: u64) -> u128 {
        // grace < length, so this is at most genesis + (e+2)·length − 1, which
        // can exceed u128 only for e = u64::MAX with both near u64::MAX.
        self.end(e).saturating_add(u128::from(self.grace_ms))
    }
}

fn to_ms(value: u128, e: u64) -> Result<u64, EpochError> {
    u64::try_from(value).map_err(|_| EpochError::Overflow(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, one-hour epochs, five-minute grace.
    fn clock() -> EpochClock {
        EpochClock::new(1_704_067_200_000, 3_600_000, 300_000).expect("valid")
    }

    #[test]
    fn invalid_schedules_are_refused() {
        assert_eq!(EpochClock::new(0, 0, 0), Err(EpochClockError::ZeroLength));
        assert_eq!(
            EpochClock::new(0, 10, 10),
            Err(EpochClockError::GraceTooLong { grace_ms: 10, length_ms: 10 })
        );
        assert!(EpochClock::new(0, 10, 9).is_ok());
        assert!(EpochClock::new(u64::MAX, 1, 0).is_ok());
    }

    #[test]
    fn epoch_at_is_none_before_genesis_and_exact_on_boundaries() {
        let c = clock();
        let g = c.genesis_ms();
        assert_eq!(c.epoch_at(g - 1), Err(EpochError::BeforeGenesis { now_ms: g - 1, genesis_ms: g }));
        assert_eq!(c.epoch_at(g), Ok(0));
        assert_eq!(c.epoch_at(g + 3_599_999), Ok(0));
        assert_eq!(c.epoch_at(g + 3_600_000), Ok(1));
        assert_eq!(c.epoch_at(u64::MAX), Ok((u64::MAX - g) / 3_600_000));
    }

    #[test]
    fn start_end_and_decision_moments_line_up() {
        let c = clock();
        let g = c.genesis_ms();
        assert_eq!(c.start_ms(0), Ok(g));
        assert_eq!(c.end_ms(0), Ok(g + 3_600_000));
        assert_eq!(c.start_ms(1), c.end_ms(0));
        assert_eq!(c.decides_at_ms(0), Ok(g + 3_900_000));
        for e in [0, 1, 17, 100_000] {
            let start = c.start_ms(e).expect("fits");
            assert_eq!(c.epoch_at(start), Ok(e));
            assert_eq!(c.epoch_at(c.end_ms(e).expect("fits") - 1), Ok(e));
        }
    }

    #[test]
    fn moments_beyond_u64_are_overflow_errors_not_panics() {
        let c = clock();
        assert_eq!(c.start_ms(u64::MAX), Err(EpochError::Overflow(u64::MAX)));
        assert_eq!(c.end_ms(u64::MAX), Err(EpochError::Overflow(u64::MAX)));
        assert_eq!(c.decides_at_ms(u64::MAX), Err(EpochError::Overflow(u64::MAX)));
        let last = c.epoch_at(u64::MAX).expect("after genesis");
        assert!(c.start_ms(last).is_ok());
        assert_eq!(c.end_ms(last), Err(EpochError::Overflow(last)));
        let extreme = EpochClock::new(u64::MAX, u64::MAX, u64::MAX - 1).expect("valid");
        assert_eq!(extreme.phase(u64::MAX, u64::MAX), Phase::Pending);
        assert_eq!(extreme.phase(0, u64::MAX), Phase::Open);
        assert_eq!(extreme.decides_at_ms(u64::MAX), Err(EpochError::Overflow(u64::MAX)));
    }

    #[test]
    fn phase_changes_exactly_at_start_end_and_decision() {
        let c = clock();
        let (start, end, decides) =
            (c.start_ms(5).expect("fits"), c.end_ms(5).expect("fits"), c.decides_at_ms(5).expect("fits"));
        assert_eq!(c.phase(5, start - 1), Phase::Pending);
        assert_eq!(c.phase(5, start), Phase::Open);
        assert_eq!(c.phase(5, end - 1), Phase::Open);
        assert_eq!(c.phase(5, end), Phase::Grace);
        assert_eq!(c.phase(5, decides - 1), Phase::Grace);
        assert_eq!(c.phase(5, decides), Phase::Deciding);
        assert_eq!(c.phase(5, 0), Phase::Pending);
        assert_eq!(c.phase(5, u64::MAX), Phase::Deciding);
    }

    #[test]
    fn report_timing_follows_the_phase_and_only_on_time_or_late_is_admitted() {
        let c = clock();
        let end = c.end_ms(2).expect("fits");
        let decides = c.decides_at_ms(2).expect("fits");
        let start = c.start_ms(2).expect("fits");
        assert_eq!(c.timing(2, start - 1), Timing::Early);
        assert_eq!(c.timing(2, start), Timing::OnTime);
        assert_eq!(c.timing(2, end), Timing::Late);
        assert_eq!(c.timing(2, decides - 1), Timing::Late);
        assert_eq!(c.timing(2, decides), Timing::TooLate);
        assert!(Timing::OnTime.admitted() && Timing::Late.admitted());
        assert!(!Timing::Early.admitted() && !Timing::TooLate.admitted());
    }

    #[test]
    fn at_most_one_epoch_is_in_grace_at_any_moment() {
        let c = clock();
        let g = c.genesis_ms();
        for now in (g..g + 4 * 3_600_000).step_by(60_000) {
            let e = c.epoch_at(now).expect("after genesis");
            let in_grace = (e.saturating_sub(2)..=e).filter(|&x| c.phase(x, now) == Phase::Grace).count();
            assert!(in_grace <= 1, "{now}");
            assert_eq!(c.phase(e, now), Phase::Open);
        }
    }
}
