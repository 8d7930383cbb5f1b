//! The one lockout rule, used by each kiosk for its own count and by the
//! offload service for the plant-wide count (`SignInService`): a few free
//! attempts, then a delay that doubles with every further failure up to a
//! ceiling. One rule in one place, so that a kiosk and the plant never
//! disagree about how long a failure count locks someone out.

/// Milliseconds.
pub type Millis = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that cost nothing.
    pub free_attempts: u32,
    /// The delay after the first failure beyond the free ones.
    pub base_delay_ms: Millis,
    /// The longest delay.
    pub max_delay_ms: Millis,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            free_attempts: 3,
            base_delay_ms: 30_000,
            max_delay_ms: 15 * 60_000,
        }
    }
}

impl LockoutPolicy {
    /// Delay imposed after the `failures`-th consecutive failure.
    pub fn delay_after(&self, failures: u32) -> Millis {
        if failures <= self.free_attempts {
            return 0;
        }
        let doublings = (failures - self.free_attempts - 1).min(32);
        self.base_delay_ms
            .saturating_mul(1 << doublings)
            .min(self.max_delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::LockoutPolicy;

    #[test]
    fn delay_grows_then_caps() {
        let p = LockoutPolicy {
            free_attempts: 3,
            base_delay_ms: 1_000,
            max_delay_ms: 10_000,
        };
        let delays: Vec<_> = (1..=9).map(|n| p.delay_after(n)).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 1_000, 2_000, 4_000, 8_000, 10_000, 10_000]
        );
        assert_eq!(p.delay_after(u32::MAX), 10_000, "no overflow");
    }
}
