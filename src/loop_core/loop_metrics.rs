//! Pure Rust: what a loop counts while its metrics are on (`Loop.enable_metrics`),
//! and the lag histogram behind its percentiles.
//!
//! Nothing here is touched while metrics are off: the loop keeps no
//! `LoopMetrics` then, and its hot paths test one flag.

use crate::loop_core::tick_clock;

/// Values below this many nanoseconds have a bucket each.
const LINEAR: u64 = 16;
/// Sub-buckets per power of two above `LINEAR`: 8 keeps every bucket within
/// 12.5% of the values it holds.
const SUB_BITS: u32 = 3;
const BUCKETS: usize = LINEAR as usize + (64 - 4) * (1 << SUB_BITS);

/// Durations in a log-linear histogram of nanoseconds, as HdrHistogram
/// keeps them: recording is a few integer operations, a percentile is read
/// to within 12.5%, and the maximum and the sum are kept exactly.
#[derive(Clone)]
pub struct LagHistogram {
    buckets: Box<[u64; BUCKETS]>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram { buckets: Box::new([0; BUCKETS]), count: 0, sum_ns: 0, max_ns: 0 }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= 4
    let sub = (ns >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    LINEAR as usize + ((exp - 4) as usize) * (1 << SUB_BITS) + sub as usize
}

/// The largest value bucket `i` holds.
fn bucket_top(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let k = i - LINEAR as usize;
    let exp = (k >> SUB_BITS) as u32 + 4;
    let sub = (k & ((1 << SUB_BITS) - 1)) as u64;
    let low = (1u64 << exp) + (sub << (exp - SUB_BITS));
    low.saturating_add((1u64 << (exp - SUB_BITS)) - 1)
}

impl LagHistogram {
    /// Records `seconds`; negative values (a timer run within the clock's
    /// resolution before its deadline) count as zero.
    pub fn record(&mut self, seconds: f64) {
        self.record_ns(if seconds > 0.0 { (seconds * 1e9) as u64 } else { 0 })
    }

    #[inline]
    pub fn record_ticks(&mut self, ticks: u64) {
        self.record_ns((ticks as f64 * tick_clock::ns_per_tick()) as u64)
    }

    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.buckets[bucket_of(ns)] += 1;
        self.count += 1;
        self.sum_ns += ns as u128;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> f64 {
        self.max_ns as f64 / 1e9
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            (self.sum_ns as f64 / self.count as f64) / 1e9
        }
    }

    /// The value at quantile `q` (0..=1), in seconds: the top of the bucket
    /// holding that rank, never above the largest value recorded.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_top(i).min(self.max_ns) as f64 / 1e9;
            }
        }
        self.max()
    }
}

/// The transports whose bytes are counted apart.
#[derive(Clone, Copy)]
pub enum TransportKind {
    /// TCP and Unix stream sockets: the bytes on the wire, TLS records included.
    Stream = 0,
    /// What TLS connections deliver to and take from their protocols.
    Tls = 1,
    Datagram = 2,
    Pipe = 3,
}

pub const TRANSPORT_KINDS: [&str; 4] = ["stream", "tls", "datagram", "pipe"];

#[derive(Default, Clone)]
pub struct LoopMetrics {
    pub iterations: u64,
    pub callbacks: u64,
    /// `tick_clock` ticks spent running callbacks, and waiting in the poll.
    pub busy_ticks: u64,
    pub poll_ticks: u64,
    pub timers_scheduled: u64,
    pub timers_cancelled: u64,
    pub timers_fired: u64,
    pub connections_accepted: u64,
    pub tasks_created: u64,
    pub slow_callbacks: u64,
    /// Per `TransportKind`: (bytes read, bytes written).
    pub bytes: [(u64, u64); 4],
    /// How late each timer ran after its deadline.
    pub timer_lag: LagHistogram,
    /// How long each other callback waited in the ready queue.
    pub ready_lag: LagHistogram,
}

impl LoopMetrics {
    pub fn add_read(&mut self, kind: TransportKind, n: usize) {
        self.bytes[kind as usize].0 += n as u64;
    }

    pub fn add_written(&mut self, kind: TransportKind, n: usize) {
        self.bytes[kind as usize].1 += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_within_an_eighth_of_it() {
        let mut v = 1u64;
        while v < u64::MAX / 3 {
            for x in [v, v + 1, v * 3 / 2] {
                let top = bucket_top(bucket_of(x));
                assert!(top >= x, "value {x} above its bucket's top {top}");
                assert!((top - x) as f64 <= x as f64 / 8.0 + 1.0, "bucket of {x} too wide: top {top}");
            }
            v *= 2;
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn buckets_are_ordered_and_contiguous() {
        for i in 1..BUCKETS {
            assert_eq!(bucket_of(bucket_top(i - 1) + 1), i, "bucket {i} does not start after {}", i - 1);
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = LagHistogram::default();
        // 1..=1000 microseconds.
        for us in 1..=1000 {
            h.record(us as f64 * 1e-6);
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5);
        let p99 = h.quantile(0.99);
        assert!((500e-6..=500e-6 * 1.125).contains(&p50), "p50 {p50}");
        assert!((990e-6..=1000e-6).contains(&p99), "p99 {p99}");
        assert!((h.max() - 1000e-6).abs() < 1e-9);
        assert!((h.mean() - 500.5e-6).abs() < 1e-9);
    }

    #[test]
    fn one_outlier_shows_in_the_max_and_the_top_quantile_only() {
        let mut h = LagHistogram::default();
        for _ in 0..999 {
            h.record(10e-6);
        }
        h.record(0.050);
        assert!(h.quantile(0.99) < 12e-6);
        assert!((h.quantile(1.0) - 0.050).abs() < 1e-9);
        assert!((h.max() - 0.050).abs() < 1e-9);
    }

    #[test]
    fn empty_and_negative_values() {
        let mut h = LagHistogram::default();
        assert_eq!(h.quantile(0.5), 0.0);
        assert_eq!(h.mean(), 0.0);
        h.record(-1e-6);
        assert_eq!(h.count(), 1);
        assert_eq!(h.max(), 0.0);
    }

    #[test]
    fn bytes_are_counted_per_kind() {
        let mut m = LoopMetrics::default();
        m.add_read(TransportKind::Tls, 5);
        m.add_written(TransportKind::Tls, 7);
        m.add_read(TransportKind::Pipe, 1);
        assert_eq!(m.bytes[TransportKind::Tls as usize], (5, 7));
        assert_eq!(m.bytes[TransportKind::Pipe as usize], (1, 0));
        assert_eq!(m.bytes[TransportKind::Stream as usize], (0, 0));
    }
}
