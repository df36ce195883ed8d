//! Pure Rust: the clock the loop reads once per callback while it is
//! instrumented (metrics, debug mode, a replaced `Handle._run`).
//!
//! The CPU's own counter where the kernel trusts it (x86-64's TSC when it is
//! the kernel's clocksource; aarch64's virtual counter, whose frequency the
//! CPU reports): a few nanoseconds a read, where `clock_gettime` costs
//! 20-50 ns, as much as the rest of a callback's bookkeeping. Elsewhere the
//! ticks are `CLOCK_MONOTONIC` nanoseconds.

use std::sync::OnceLock;

/// Nanoseconds per tick, found once per process.
static NS_PER_TICK: OnceLock<(bool, f64)> = OnceLock::new();

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_arch = "x86_64")]
fn counter() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(target_arch = "aarch64")]
fn counter() -> u64 {
    let v: u64;
    // SAFETY: the virtual counter is readable from user space on Linux.
    unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) v) };
    v
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn counter() -> u64 {
    monotonic_ns()
}

/// Whether the counter ticks steadily across CPUs and power states: on
/// x86-64 only if the kernel chose it as its own clock.
fn counter_is_steady() -> bool {
    if cfg!(target_arch = "x86_64") {
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc")
    } else {
        cfg!(target_arch = "aarch64")
    }
}

#[cfg(target_arch = "aarch64")]
fn counter_ns_per_tick() -> f64 {
    let freq: u64;
    // SAFETY: as for the counter.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq) };
    1e9 / freq as f64
}

/// The TSC's rate against `CLOCK_MONOTONIC`, over one millisecond: the two
/// reads at each end err by tens of nanoseconds, a few parts in 100,000.
#[cfg(not(target_arch = "aarch64"))]
fn counter_ns_per_tick() -> f64 {
    let (ns0, t0) = (monotonic_ns(), counter());
    let mut ns1 = ns0;
    while ns1 - ns0 < 1_000_000 {
        ns1 = monotonic_ns();
    }
    let t1 = counter();
    (ns1 - ns0) as f64 / t1.saturating_sub(t0).max(1) as f64
}

fn calibration() -> (bool, f64) {
    *NS_PER_TICK.get_or_init(|| if counter_is_steady() { (true, counter_ns_per_tick()) } else { (false, 1.0) })
}

/// Ticks now. The first call in a process may take a millisecond (calibration).
#[inline]
pub fn ticks() -> u64 {
    if calibration().0 {
        counter()
    } else {
        monotonic_ns()
    }
}

#[inline]
pub fn ns_per_tick() -> f64 {
    calibration().1
}

#[inline]
pub fn to_secs(ticks: u64) -> f64 {
    ticks as f64 * ns_per_tick() * 1e-9
}

pub fn from_secs(secs: f64) -> u64 {
    (secs * 1e9 / ns_per_tick()) as u64
}

/// Ties ticks to the loop's `time.monotonic()` seconds: re-anchored every
/// iteration, so the counter's drift against the (NTP-slewed) monotonic
/// clock never adds up.
#[derive(Clone, Copy, Default)]
pub struct Anchor {
    ticks: u64,
    secs: f64,
}

impl Anchor {
    pub fn new(ticks: u64, secs: f64) -> Anchor {
        Anchor { ticks, secs }
    }

    /// The monotonic time of tick `t`.
    pub fn secs_at(&self, t: u64) -> f64 {
        self.secs + (t as i128 - self.ticks as i128) as f64 * ns_per_tick() * 1e-9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_measure_a_sleep() {
        let t0 = ticks();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let slept = to_secs(ticks() - t0);
        assert!((0.020..0.060).contains(&slept), "20 ms slept measured as {slept}");
    }

    #[test]
    fn seconds_round_trip() {
        let t = from_secs(0.25);
        assert!((to_secs(t) - 0.25).abs() < 1e-6);
    }

    #[test]
    fn an_anchor_maps_ticks_to_monotonic_seconds() {
        ns_per_tick(); // calibrated before, not between, the two reads
        let secs = monotonic_ns() as f64 * 1e-9;
        let anchor = Anchor::new(ticks(), secs);
        std::thread::sleep(std::time::Duration::from_millis(10));
        let (t, now) = (ticks(), monotonic_ns() as f64 * 1e-9);
        assert!((anchor.secs_at(t) - now).abs() < 1e-4, "{} vs {}", anchor.secs_at(t), now);
        // Ticks before the anchor map to earlier times.
        assert!(anchor.secs_at(anchor.ticks - from_secs(0.001)) < secs);
    }
}
