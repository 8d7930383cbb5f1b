//! Append-only audit log, chained with a key: each row's MAC is
//! HMAC-SHA256(audit key, previous row's MAC ‖ canonical encoding of the
//! row's fields), with the installation's audit key, which is not in the
//! database (`keys.rs`). Editing, inserting or removing a row breaks every
//! later link, and without the key nobody can compute new links. The
//! chain's head is anchored outside the database too, so cutting rows off
//! the end, or all of them, also shows. `verify_chain` names the first
//! broken row.
//!
//! Rows written before the key existed (stores from before the keyed
//! chain) keep their SHA-256 links; the first keyed row (`keyed_from`) is
//! an `audit_keyed` row that records the switch-over, and its MAC covers
//! the last unkeyed row's hash, so the old rows cannot be rewritten either.

use std::io::Write;

use rusqlite::{params, Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};

use super::keys::{self, Anchor, AnchorRead, Head, Secrets};
use super::{Millis, StoreError, WriteTx};

pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// What happened; stored by its `as_str` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    SignIn,
    SignInFailed,
    SignOut,
    AutoSignOut,
    LockedOut,
    OperatorCreated,
    OperatorDeleted,
    SecretChanged,
    Enrolled,
    SettingsChanged,
    AuditExported,
    /// The chain switched to the installation's audit key (a store from
    /// before the keyed chain); written once.
    ChainKeyed,
}

impl AuditAction {
    pub const ALL: [AuditAction; 12] = [
        AuditAction::SignIn,
        AuditAction::SignInFailed,
        AuditAction::SignOut,
        AuditAction::AutoSignOut,
        AuditAction::LockedOut,
        AuditAction::OperatorCreated,
        AuditAction::OperatorDeleted,
        AuditAction::SecretChanged,
        AuditAction::Enrolled,
        AuditAction::SettingsChanged,
        AuditAction::AuditExported,
        AuditAction::ChainKeyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::SignIn => "sign_in",
            AuditAction::SignInFailed => "sign_in_failed",
            AuditAction::SignOut => "sign_out",
            AuditAction::AutoSignOut => "auto_sign_out",
            AuditAction::LockedOut => "locked_out",
            AuditAction::OperatorCreated => "operator_created",
            AuditAction::OperatorDeleted => "operator_deleted",
            AuditAction::SecretChanged => "secret_changed",
            AuditAction::Enrolled => "enrolled",
            AuditAction::SettingsChanged => "settings_changed",
            AuditAction::AuditExported => "audit_exported",
            AuditAction::ChainKeyed => "audit_keyed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One event as the application reports it (who, what, how, which backend, distance).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditEvent {
    /// Personnel number of whoever acted, if known. Kept as text so that the
    /// log outlives the operator row.
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub method: Option<String>,
    pub backend: Option<String>,
    pub distance: Option<f64>,
    pub detail: String,
}

impl AuditEvent {
    pub fn new(action: AuditAction) -> Self {
        AuditEvent {
            action: Some(action),
            ..Default::default()
        }
    }
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    pub fn actor_opt(mut self, actor: Option<&str>) -> Self {
        self.actor = actor.map(str::to_owned);
        self
    }
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }
    pub fn backend(mut self, backend: impl Into<String>) -> Self {
        self.backend = Some(backend.into());
        self
    }
    pub fn distance(mut self, distance: f64) -> Self {
        self.distance = Some(distance);
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// A stored row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: Millis,
    pub actor: Option<String>,
    pub action: String,
    pub method: Option<String>,
    pub backend: Option<String>,
    pub distance: Option<f64>,
    pub detail: String,
}

/// Result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStatus {
    /// Every row verifies with this installation's key, and the chain ends
    /// where its anchor says.
    Intact {
        rows: u64,
    },
    /// A store from before the keyed chain that no kiosk has opened since:
    /// its SHA-256 links hold, but without a key they prove little.
    Unkeyed {
        rows: u64,
    },
    Broken {
        seq: i64,
        reason: BreakReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakReason {
    /// A row is missing before this one (sequence numbers skip).
    Gap,
    /// `prev_hash` is not the previous row's hash.
    LinkMismatch,
    /// The row's fields no longer hash to its stored hash (or MAC).
    ContentMismatch,
    /// The log ends before the anchored head: rows were cut off the end
    /// (`seq` is the first missing one).
    Truncated,
    /// The anchored row is there but is not the row that was anchored.
    AnchorMismatch,
    /// Rows after the anchored head that no kiosk anchored.
    Unanchored,
    /// The store was keyed with another installation's key (a copy).
    OtherKey,
    /// The anchor outside the database is missing or not this key's.
    AnchorMissing,
}

/// Viewer filter; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Case-insensitive substring of the actor's personnel number.
    pub actor_contains: Option<String>,
    pub action: Option<AuditAction>,
    pub from: Option<Millis>,
    pub until: Option<Millis>,
    pub limit: Option<u32>,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Length prefixes make the encoding injective: ("ab","c") ≠ ("a","bc").
    buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(1);
            put_str(buf, s);
        }
    }
}

fn encode(r: &AuditRecord) -> Vec<u8> {
    let mut buf = Vec::with_capacity(128);
    buf.extend_from_slice(&r.seq.to_be_bytes());
    buf.extend_from_slice(&r.at.to_be_bytes());
    put_opt_str(&mut buf, r.actor.as_deref());
    put_str(&mut buf, &r.action);
    put_opt_str(&mut buf, r.method.as_deref());
    put_opt_str(&mut buf, r.backend.as_deref());
    match r.distance {
        None => buf.push(0),
        Some(d) => {
            buf.push(1);
            buf.extend_from_slice(&d.to_bits().to_be_bytes());
        }
    }
    put_str(&mut buf, &r.detail);
    buf
}

/// The unkeyed link of rows written before the key existed.
pub(super) fn row_hash(prev: &[u8], r: &AuditRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(encode(r));
    h.finalize().into()
}

/// The keyed link: HMAC-SHA256(audit key, prev ‖ row).
pub(super) fn row_mac(secrets: &Secrets, prev: &[u8], r: &AuditRecord) -> [u8; 32] {
    keys::hmac(secrets.audit_key().bytes(), &[prev, &encode(r)])
}

fn link(secrets: Option<&Secrets>, keyed_from: i64, prev: &[u8], r: &AuditRecord) -> [u8; 32] {
    match secrets {
        Some(s) if r.seq >= keyed_from => row_mac(s, prev, r),
        _ => row_hash(prev, r),
    }
}

/// The last row's sequence number and hash.
pub(super) fn head(conn: &Connection) -> Result<Head, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Appends within the caller's transaction, so an event is logged exactly
/// when the change it describes commits.
pub(super) fn append(tx: &WriteTx<'_>, event: &AuditEvent, at: Millis) -> Result<i64, StoreError> {
    let action = event
        .action
        .ok_or(StoreError::InvalidInput("audit event without action"))?;
    let conn: &Connection = tx;
    let (seq, prev) = match head(conn)? {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_vec()),
    };
    let record = AuditRecord {
        seq,
        at,
        actor: event.actor.clone(),
        action: action.as_str().to_owned(),
        method: event.method.clone(),
        backend: event.backend.clone(),
        distance: event.distance,
        detail: event.detail.clone(),
    };
    let hash = link(Some(tx.secrets()), tx.keyed_from(), &prev, &record);
    conn.execute(
        "INSERT INTO audit_log (seq, at, actor, action, method, backend, distance, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            seq,
            at,
            record.actor,
            record.action,
            record.method,
            record.backend,
            record.distance,
            record.detail,
            prev,
            hash.as_slice()
        ],
    )?;
    Ok(seq)
}

const COLUMNS: &str = "seq, at, actor, action, method, backend, distance, detail";

fn record_from_row(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        at: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        method: r.get(4)?,
        backend: r.get(5)?,
        distance: r.get(6)?,
        detail: r.get(7)?,
    })
}

/// Walks the chain. `secrets`: `None` for a store that has never been
/// keyed (no key anywhere), which is verified with its SHA-256 links only.
pub(super) fn verify_chain(
    conn: &Connection,
    secrets: Option<&Secrets>,
) -> Result<ChainStatus, StoreError> {
    let keyed: Option<(String, i64)> = conn
        .query_row("SELECT key_id, keyed_from FROM audit_chain", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some(secrets) = secrets else {
        if keyed.is_some() {
            return Err(StoreError::Secrets(
                "the store's audit chain is keyed, but the audit key is missing".into(),
            ));
        }
        return verify_legacy(conn);
    };
    let anchor = match (keys::read_anchor(secrets), &keyed) {
        // A store whose first keyed start was cut short before it committed
        // (the key exists, nothing is keyed yet).
        (AnchorRead::Missing, None) => return verify_legacy(conn),
        (AnchorRead::Valid(a), _) => a,
        (AnchorRead::Missing | AnchorRead::Invalid(_), _) => {
            return Ok(ChainStatus::Broken {
                seq: keyed.map_or(1, |k| k.1),
                reason: BreakReason::AnchorMissing,
            })
        }
    };
    if let Some((key_id, keyed_from)) = &keyed {
        if *key_id != secrets.audit_key_id() {
            return Ok(ChainStatus::Broken {
                seq: *keyed_from,
                reason: BreakReason::OtherKey,
            });
        }
    }
    let (rows, last) = match walk(conn, Some(secrets), anchor.keyed_from)? {
        Walk::Broken(status) => return Ok(status),
        Walk::Done { rows, last } => (rows, last),
    };
    Ok(match check_end(&anchor, &last) {
        None => ChainStatus::Intact { rows },
        Some((seq, reason)) => ChainStatus::Broken { seq, reason },
    })
}

/// A store from before the keyed chain: its SHA-256 links only.
pub(super) fn verify_legacy(conn: &Connection) -> Result<ChainStatus, StoreError> {
    Ok(match walk(conn, None, i64::MAX)? {
        Walk::Broken(status) => status,
        Walk::Done { rows, .. } => ChainStatus::Unkeyed { rows },
    })
}

/// Whether the chain ends where the anchor says.
fn check_end(anchor: &Anchor, last: &Head) -> Option<(i64, BreakReason)> {
    if anchor.allows(last) {
        return None;
    }
    let seq_of = |h: &Head| h.as_ref().map_or(0, |h| h.0);
    let at = seq_of(last);
    let lowest = if anchor.confirmed {
        seq_of(&anchor.head)
    } else {
        seq_of(&anchor.prev).min(seq_of(&anchor.head))
    };
    let highest = seq_of(&anchor.head).max(seq_of(&anchor.prev));
    Some(if at < lowest {
        (at + 1, BreakReason::Truncated)
    } else if at > highest {
        (highest + 1, BreakReason::Unanchored)
    } else {
        (at, BreakReason::AnchorMismatch)
    })
}

enum Walk {
    Broken(ChainStatus),
    Done { rows: u64, last: Head },
}

fn walk(conn: &Connection, secrets: Option<&Secrets>, keyed_from: i64) -> Result<Walk, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS}, prev_hash, hash FROM audit_log ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS_HASH.to_vec();
    let mut expected_seq = 1i64;
    let mut count = 0u64;
    let mut last = None;
    while let Some(row) = rows.next()? {
        let record = record_from_row(row)?;
        let prev: Vec<u8> = row.get(8)?;
        let hash: Vec<u8> = row.get(9)?;
        let broken = |reason| {
            Ok(Walk::Broken(ChainStatus::Broken {
                seq: record.seq,
                reason,
            }))
        };
        if record.seq != expected_seq {
            return broken(BreakReason::Gap);
        }
        if prev != expected_prev {
            return broken(BreakReason::LinkMismatch);
        }
        if !keys::mac_eq(&link(secrets, keyed_from, &prev, &record), &hash) {
            return broken(BreakReason::ContentMismatch);
        }
        // The switch-over is recorded where it happened.
        if secrets.is_some()
            && record.seq == keyed_from
            && keyed_from > 1
            && record.action != AuditAction::ChainKeyed.as_str()
        {
            return broken(BreakReason::ContentMismatch);
        }
        last = Some((record.seq, hash.clone()));
        expected_prev = hash;
        expected_seq += 1;
        count += 1;
    }
    Ok(Walk::Done { rows: count, last })
}

/// Newest first, as the viewer shows them.
pub(super) fn query(conn: &Connection, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
    let actor_pattern = f
        .actor_contains
        .as_ref()
        .map(|a| format!("%{}%", a.to_lowercase()));
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM audit_log
         WHERE (?1 IS NULL OR lower(actor) LIKE ?1)
           AND (?2 IS NULL OR action = ?2)
           AND (?3 IS NULL OR at >= ?3)
           AND (?4 IS NULL OR at <= ?4)
         ORDER BY seq DESC LIMIT ?5"
    ))?;
    let limit = f.limit.map_or(-1, i64::from);
    let rows = stmt.query_map(
        params![
            actor_pattern,
            f.action.map(AuditAction::as_str),
            f.from,
            f.until,
            limit
        ],
        record_from_row,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// RFC 4180 CSV with UTC RFC 3339 timestamps.
pub fn write_csv(records: &[AuditRecord], mut out: impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "seq,time_utc,actor,action,method,backend,distance,detail"
    )?;
    for r in records {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.at.max(0) as u64);
        writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            r.seq,
            humantime::format_rfc3339_millis(at),
            csv_field(r.actor.as_deref().unwrap_or("")),
            csv_field(&r.action),
            csv_field(r.method.as_deref().unwrap_or("")),
            csv_field(r.backend.as_deref().unwrap_or("")),
            r.distance.map(|d| format!("{d:.3}")).unwrap_or_default(),
            csv_field(&r.detail),
        )?;
    }
    Ok(())
}
