//! Small statistics helpers: a bounded latency histogram and percentiles.

use serde::Serialize;

/// Buckets of 1 ms below 1 s, 10 ms below 10 s, 100 ms below 100 s, then one
/// overflow bucket: 2,801 counters, bounded whatever the run's length.
const FINE: u64 = 1_000;
const MEDIUM: u64 = 10_000;
const COARSE: u64 = 100_000;
const BUCKETS: usize = 1_000 + 900 + 900 + 1;

/// A latency histogram in ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

fn bucket(ms: u64) -> usize {
    if ms < FINE {
        ms as usize
    } else if ms < MEDIUM {
        1_000 + ((ms - FINE) / 10) as usize
    } else if ms < COARSE {
        1_900 + ((ms - MEDIUM) / 100) as usize
    } else {
        BUCKETS - 1
    }
}

fn lower_bound(b: usize) -> u64 {
    if b < 1_000 {
        b as u64
    } else if b < 1_900 {
        FINE + (b as u64 - 1_000) * 10
    } else if b < BUCKETS - 1 {
        MEDIUM + (b as u64 - 1_900) * 100
    } else {
        COARSE
    }
}

impl Histogram {
    /// Counts one sample.
    pub fn record(&mut self, ms: u64) {
        self.counts[bucket(ms)] += 1;
        self.total += 1;
        self.max = self.max.max(ms);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Samples counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `q`-quantile (0..=1), ms: the lower edge of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return lower_bound(b).min(self.max);
            }
        }
        self.max
    }

    /// p50, p90, p99 and max.
    pub fn summary(&self) -> Percentiles {
        Percentiles {
            samples: self.total,
            p50_ms: self.quantile(0.50),
            p90_ms: self.quantile(0.90),
            p99_ms: self.quantile(0.99),
            max_ms: self.max,
        }
    }
}

/// Percentiles of a latency distribution, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50_ms: u64,
    /// 90th percentile.
    pub p90_ms: u64,
    /// 99th percentile.
    pub p99_ms: u64,
    /// Largest.
    pub max_ms: u64,
}

/// Percentiles of a list of values (sorted in place).
pub fn percentiles(values: &mut [u64]) -> Percentiles {
    let mut h = Histogram::default();
    for v in values.iter() {
        h.record(*v);
    }
    h.summary()
}

/// Mean, p99 and max of per-node amounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// The spread of per-node amounts.
pub fn spread(values: &mut [u64]) -> Spread {
    if values.is_empty() {
        return Spread::default();
    }
    values.sort_unstable();
    let sum: u128 = values.iter().map(|v| u128::from(*v)).sum();
    let k = ((values.len() as f64 * 0.99).ceil() as usize).clamp(1, values.len()) - 1;
    Spread { mean: sum as f64 / values.len() as f64, p99: values[k], max: values[values.len() - 1] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_uniform_sample() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(ms);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.summary().max_ms, 100);
    }

    #[test]
    fn long_latencies_land_in_coarser_buckets() {
        let mut h = Histogram::default();
        h.record(12_345);
        h.record(1_000_000);
        assert_eq!(h.quantile(0.5), 12_300);
        assert_eq!(h.quantile(1.0), 100_000);
    }
}
