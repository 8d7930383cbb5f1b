//! A circuit breaker: after a run of failures the service is not called for
//! a while; then one probe call decides whether to close the circuit again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ClientError;

#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before a probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; if it never reports (its future was dropped),
    /// another is let through at `next_probe`.
    HalfOpen {
        next_probe: Instant,
    },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether calls are going through now.
    pub fn is_closed(&self) -> bool {
        matches!(*self.lock(), State::Closed { .. })
    }

    /// Lets a call through, or says how long the circuit stays open.
    pub(crate) fn admit(&self) -> Result<(), ClientError> {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { next_probe: until } if now < until => {
                Err(ClientError::CircuitOpen(until - now))
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen {
                    next_probe: now + self.policy.open_for,
                };
                Ok(())
            }
        }
    }

    /// Reports a call's outcome.
    pub(crate) fn record(&self, success: bool) {
        let mut state = self.lock();
        *state = match (*state, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.policy.failure_threshold => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (_, false) => {
                tracing::warn!(open_for = ?self.policy.open_for, "offload service failing: circuit opened");
                State::Open {
                    until: Instant::now() + self.policy.open_for,
                }
            }
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_and_closes_after_a_good_probe() {
        let breaker = CircuitBreaker::new(BreakerPolicy {
            failure_threshold: 2,
            open_for: Duration::from_millis(50),
        });
        breaker.admit().unwrap();
        breaker.record(false);
        assert!(breaker.is_closed(), "one failure is not a run");
        breaker.record(false);
        assert!(matches!(breaker.admit(), Err(ClientError::CircuitOpen(_))));
        std::thread::sleep(Duration::from_millis(60));
        breaker.admit().expect("a probe after the open period");
        assert!(
            matches!(breaker.admit(), Err(ClientError::CircuitOpen(_))),
            "only one probe at a time"
        );
        breaker.record(true);
        assert!(breaker.is_closed());
        breaker.admit().unwrap();
    }

    #[test]
    fn a_failed_probe_reopens() {
        let breaker = CircuitBreaker::new(BreakerPolicy {
            failure_threshold: 1,
            open_for: Duration::from_millis(30),
        });
        breaker.record(false);
        std::thread::sleep(Duration::from_millis(40));
        breaker.admit().unwrap();
        breaker.record(false);
        assert!(matches!(breaker.admit(), Err(ClientError::CircuitOpen(_))));
    }
}
