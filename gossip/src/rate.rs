//! Token buckets for per-peer rates.

use tokio::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket { tokens: f64::from(burst), rate: f64::from(rate), burst: f64::from(burst), updated: now }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, 5, start);
        assert_eq!((0..10).filter(|_| bucket.try_take(start)).count(), 5);
        let later = start + Duration::from_secs(3);
        assert_eq!(
            (0..10).filter(|_| bucket.try_take(later)).count(),
            5,
            "refilled to the burst, not beyond"
        );
        let a_second_on = later + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| bucket.try_take(a_second_on)).count(), 2);
    }
}
