//! The daemon's one clock. The node and every pure crate take `now` as an
//! input; only this module reads the system clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as Unix time in milliseconds (0 if the system clock is before 1970).
#[allow(clippy::disallowed_methods)]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The tokio instant of the Unix time `at_ms` (now, if it has passed).
pub fn instant_of(at_ms: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(at_ms.saturating_sub(now_ms()))
}
