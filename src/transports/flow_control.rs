//! Write flow control, shared by every transport core: asyncio's
//! `_FlowControlMixin` arithmetic. The protocol is paused once the buffer
//! grows past `high` and resumed once it drains to `low` or below.

/// asyncio's default high-water mark; the low one is a quarter of it.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowControl {
    pub high: usize,
    pub low: usize,
    /// The protocol was told `pause_writing()` and not yet `resume_writing()`.
    pub paused: bool,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl { high: DEFAULT_HIGH_WATER, low: DEFAULT_HIGH_WATER / 4, paused: false }
    }
}

impl FlowControl {
    /// `set_write_buffer_limits(high, low)`: a missing `high` is 4 × `low`
    /// (or the default), a missing `low` a quarter of `high`. The error is
    /// asyncio's ValueError message.
    pub fn set_limits(&mut self, high: Option<i64>, low: Option<i64>) -> Result<(), String> {
        self.set_limits_from(high, low, DEFAULT_HIGH_WATER)
    }

    /// `set_limits` with another default high-water mark (the TLS layer's
    /// read and write buffers have their own).
    pub fn set_limits_from(&mut self, high: Option<i64>, low: Option<i64>, default_high: usize) -> Result<(), String> {
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, None) => default_high as i64,
            (None, Some(l)) => 4 * l,
        };
        // Floor division, as Python's `high // 4`.
        let low = low.unwrap_or(high.div_euclid(4));
        if !(high >= low && low >= 0) {
            return Err(format!("high ({}) must be >= low ({}) must be >= 0", high, low));
        }
        self.high = high as usize;
        self.low = low as usize;
        Ok(())
    }

    /// `(low, high)`, as `get_write_buffer_limits()` returns them.
    pub fn limits(&self) -> (usize, usize) {
        (self.low, self.high)
    }

    /// True when `buffered` bytes call for `pause_writing()` now.
    pub fn should_pause(&mut self, buffered: usize) -> bool {
        let pause = buffered > self.high && !self.paused;
        self.paused |= pause;
        pause
    }

    /// True when `buffered` bytes call for `resume_writing()` now.
    pub fn should_resume(&mut self, buffered: usize) -> bool {
        let resume = self.paused && buffered <= self.low;
        if resume {
            self.paused = false;
        }
        resume
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_asyncio_defaults() {
        let mut f = FlowControl::default();
        assert_eq!(f.limits(), (16 * 1024, 64 * 1024));
        f.set_limits(None, Some(100)).unwrap();
        assert_eq!(f.limits(), (100, 400));
        f.set_limits(Some(1000), None).unwrap();
        assert_eq!(f.limits(), (250, 1000));
        f.set_limits(None, None).unwrap();
        assert_eq!(f.limits(), (16 * 1024, 64 * 1024));
    }

    #[test]
    fn another_default_high_water_keeps_the_same_arithmetic() {
        let mut f = FlowControl::default();
        f.set_limits_from(None, None, 512 * 1024).unwrap();
        assert_eq!(f.limits(), (128 * 1024, 512 * 1024));
        f.set_limits_from(None, Some(10), 512 * 1024).unwrap();
        assert_eq!(f.limits(), (10, 40));
    }

    #[test]
    fn bad_limits_are_refused_with_asyncios_message() {
        let mut f = FlowControl::default();
        assert_eq!(f.set_limits(Some(1), Some(2)).unwrap_err(), "high (1) must be >= low (2) must be >= 0");
        assert_eq!(f.set_limits(Some(-4), None).unwrap_err(), "high (-4) must be >= low (-1) must be >= 0");
        assert_eq!(f.set_limits(Some(-5), None).unwrap_err(), "high (-5) must be >= low (-2) must be >= 0");
        assert_eq!(f, FlowControl::default());
    }

    #[test]
    fn pauses_once_above_high_and_resumes_at_low() {
        let mut f = FlowControl { high: 10, low: 4, paused: false };
        assert!(!f.should_pause(10));
        assert!(f.should_pause(11));
        assert!(!f.should_pause(20)); // already paused
        assert!(!f.should_resume(5));
        assert!(f.should_resume(4));
        assert!(!f.should_resume(0)); // already resumed
    }
}
