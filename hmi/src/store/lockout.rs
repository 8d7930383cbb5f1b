//! Growing delay after repeated failures: a few free attempts, then the
//! delay doubles with every further failure up to a ceiling. Counters live
//! in the store so that restarting the kiosk does not reset them.

use rusqlite::{params, Connection, OptionalExtension};

use super::{Millis, OperatorId, StoreError};

/// Whose failures are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Wrong PIN, password or face for a known operator: all count together.
    Operator(OperatorId),
    /// Failures that name nobody (unknown personnel number, unknown face).
    Kiosk,
}

impl Subject {
    fn key(self) -> String {
        match self {
            Subject::Operator(id) => format!("operator:{}", id.0),
            Subject::Kiosk => "kiosk".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub free_attempts: u32,
    pub base_delay_ms: Millis,
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

/// `Some(until)` while the subject must wait.
pub(super) fn locked_until(
    conn: &Connection,
    subject: Subject,
    now: Millis,
) -> Result<Option<Millis>, StoreError> {
    let until: Option<Millis> = conn
        .query_row(
            "SELECT locked_until FROM lockouts WHERE subject = ?1",
            [subject.key()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(until.filter(|&u| u > now))
}

/// Counts one failure; returns the new lock's end if this failure imposes one.
pub(super) fn record_failure(
    conn: &Connection,
    policy: &LockoutPolicy,
    subject: Subject,
    now: Millis,
) -> Result<Option<Millis>, StoreError> {
    let key = subject.key();
    let failures: u32 = conn
        .query_row(
            "SELECT failures FROM lockouts WHERE subject = ?1",
            [&key],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0)
        + 1;
    let delay = policy.delay_after(failures);
    let until = now + delay;
    conn.execute(
        "INSERT INTO lockouts (subject, failures, locked_until) VALUES (?1, ?2, ?3)
         ON CONFLICT(subject) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until",
        params![key, failures, until],
    )?;
    Ok((delay > 0).then_some(until))
}

pub(super) fn clear(conn: &Connection, subject: Subject) -> Result<(), StoreError> {
    conn.execute("DELETE FROM lockouts WHERE subject = ?1", [subject.key()])?;
    Ok(())
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
