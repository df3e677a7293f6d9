//! A latency histogram that many tasks record into at once: log-linear buckets (64 per
//! power of two, so about 1.6 % resolution) of atomic counters, in nanoseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Up to 2^40 ns (about 18 minutes).
const BUCKETS: usize = ((40 - SUB_BITS as usize) + 1) * SUB as usize;

#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Vec<AtomicU64>,
}

fn index(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let log = 63 - u64::from(ns.leading_zeros());
    let shift = log - u64::from(SUB_BITS);
    let i = (shift + 1) * SUB + ((ns >> shift) - SUB);
    (i as usize).min(BUCKETS - 1)
}

/// The highest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = i / SUB - 1;
    (((i % SUB) + SUB + 1) << shift) - 1
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[index(ns)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The value at quantile `q` (0..=1), as the upper edge of its bucket.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return Duration::from_nanos(upper(i));
            }
        }
        Duration::from_nanos(upper(BUCKETS - 1))
    }

    pub(crate) fn summary(&self) -> Latency {
        Latency {
            n: self.count(),
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            max: self.quantile(1.0),
        }
    }
}

/// What a latency figure is reported as.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Latency {
    pub(crate) n: u64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values_within_two_percent() {
        for ns in [0, 1, 63, 64, 65, 100, 1_000, 123_456, 9_999_999, 1 << 39] {
            let i = index(ns);
            assert!(upper(i) >= ns, "{ns} above its bucket {}", upper(i));
            if i > 0 {
                assert!(upper(i - 1) < ns, "{ns} belongs to an earlier bucket");
            }
            assert!(upper(i) - ns <= ns / 50 + 1, "{ns} -> {}", upper(i));
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_values() {
        let h = Histogram::new();
        for us in 1..=100 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.n, 100);
        let near = |d: Duration, us: u64| {
            let ns = d.as_nanos() as f64;
            (ns / (us as f64 * 1000.0) - 1.0).abs() < 0.02
        };
        assert!(near(s.p50, 50), "{:?}", s.p50);
        assert!(near(s.p99, 99), "{:?}", s.p99);
        assert!(near(s.max, 100), "{:?}", s.max);
    }
}
