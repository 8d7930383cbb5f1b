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

/// The rule itself is shared with the plant's count (the offload service).
pub use kubevision_proto::lockout::LockoutPolicy;

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
fn record_failure(
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

/// Counts a failed sign-in step here, and queues it for the plant-wide
/// count (`plant::queue_sign_in`): every path that counts goes through here.
pub(super) fn count_failure(
    conn: &Connection,
    policy: &LockoutPolicy,
    subject: Subject,
    now: Millis,
) -> Result<Option<Millis>, StoreError> {
    let until = record_failure(conn, policy, subject, now)?;
    super::plant::queue_sign_in(conn, subject, false, now)?;
    Ok(until)
}

/// A successful step: the count starts again, here and plant-wide.
pub(super) fn count_success(
    conn: &Connection,
    subject: Subject,
    now: Millis,
) -> Result<(), StoreError> {
    clear(conn, subject)?;
    super::plant::queue_sign_in(conn, subject, true, now)
}

pub(super) fn clear(conn: &Connection, subject: Subject) -> Result<(), StoreError> {
    conn.execute("DELETE FROM lockouts WHERE subject = ?1", [subject.key()])?;
    Ok(())
}

/// Raises the subject's count and lock to at least `failures` and `until`
/// (the plant's, adopted by the sync); returns whether the lock got longer
/// by more than the jitter of two polls of the same plant lock (its end is
/// computed from a remaining duration, so it moves by milliseconds).
pub(super) fn raise(
    conn: &Connection,
    subject: Subject,
    failures: u32,
    until: Millis,
) -> Result<bool, StoreError> {
    let key = subject.key();
    let before: Option<Millis> = conn
        .query_row(
            "SELECT locked_until FROM lockouts WHERE subject = ?1",
            [&key],
            |r| r.get(0),
        )
        .optional()?;
    conn.execute(
        "INSERT INTO lockouts (subject, failures, locked_until) VALUES (?1, ?2, ?3)
         ON CONFLICT(subject) DO UPDATE SET failures = max(failures, excluded.failures),
                                            locked_until = max(locked_until, excluded.locked_until)",
        params![key, failures, until],
    )?;
    const JITTER_MS: Millis = 2_000;
    Ok(before.is_none_or(|b| until > b.saturating_add(JITTER_MS)))
}
