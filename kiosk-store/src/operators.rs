//! Operators, their secrets and their face templates.

use kubevision_proto::text::{check_distinct, check_text, TextKind};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::audit::{self, AuditAction, AuditEvent};
use super::keys::Secrets;
use super::lockout::{self, Subject};
use super::plant::{self, Outbound};
use super::secret::{self, SecretKind, Verified};
use super::{write_transaction, Millis, Store, StoreError, WriteTx};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Operator,
    Maintenance,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Operator, Role::Maintenance, Role::Administrator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Maintenance => "maintenance",
            Role::Administrator => "administrator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: OperatorId,
    pub name: String,
    pub personnel_no: String,
    pub role: Role,
    pub created_at: Millis,
    /// When the current face templates were stored; `None`: no face yet.
    pub enrolled_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct NewOperator<'a> {
    pub name: &'a str,
    pub personnel_no: &'a str,
    pub role: Role,
    pub pin: Option<&'a str>,
    pub password: Option<&'a str>,
}

/// Outcome of checking a PIN or password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretCheck {
    Accepted,
    /// Wrong; `locked_until` is set when this failure started a lock.
    Rejected {
        locked_until: Option<Millis>,
    },
    /// Not even checked: the operator must wait.
    Locked {
        until: Millis,
    },
}

const COLUMNS: &str = "id, name, personnel_no, role, created_at, enrolled_at";

fn operator_from_row(r: &Row<'_>) -> rusqlite::Result<Operator> {
    let role: String = r.get(3)?;
    Ok(Operator {
        id: OperatorId(r.get(0)?),
        name: r.get(1)?,
        personnel_no: r.get(2)?,
        role: Role::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown role {role}").into(),
            )
        })?,
        created_at: r.get(4)?,
        enrolled_at: r.get(5)?,
    })
}

fn get_operator(tx: &Transaction<'_>, id: OperatorId) -> Result<Operator, StoreError> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM operators WHERE id = ?1"),
        [id.0],
        operator_from_row,
    )
    .optional()?
    .ok_or(StoreError::UnknownOperator(id.0))
}

fn put_secret(
    tx: &Transaction<'_>,
    id: OperatorId,
    kind: SecretKind,
    phc: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO credentials (operator_id, kind, phc) VALUES (?1, ?2, ?3)
         ON CONFLICT(operator_id, kind) DO UPDATE SET phc = excluded.phc",
        params![id.0, kind.as_str(), phc],
    )?;
    Ok(())
}

fn administrators(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    Ok(tx.query_row(
        "SELECT count(*) FROM operators WHERE role = 'administrator'",
        [],
        |r| r.get(0),
    )?)
}

/// A new operator's name and personnel number as stored: trimmed, checked
/// and in Unicode NFC.
struct Names {
    name: String,
    personnel_no: String,
}

/// The plant's text rule ([`kubevision_proto::text`]) applied to what the
/// UI gives: the offload service refuses any id or name that fails it, so
/// an operator taken here with one would never reach the plant gallery
/// (the sync drops a change refused for good). Surrounding whitespace is
/// trimmed first, unlike at the service: the kiosk's touch keyboard may add
/// a space, and the person typing cannot see it; everything else the rule
/// refuses is refused here too, with its reason.
fn check_names(new: &NewOperator<'_>) -> Result<Names, StoreError> {
    let (name, personnel_no) = (new.name.trim(), new.personnel_no.trim());
    if name.is_empty() || personnel_no.is_empty() {
        return Err(StoreError::InvalidInput(
            "name and personnel number are required",
        ));
    }
    Ok(Names {
        personnel_no: check_text("personnel number", personnel_no, TextKind::Id)?,
        name: check_text("name", name, TextKind::Name)?,
    })
}

/// Validates and hashes before any transaction: Argon2 is deliberately slow.
fn hash_secrets(
    new: &NewOperator<'_>,
    keys: &Secrets,
) -> Result<Vec<(SecretKind, String)>, StoreError> {
    let secrets: Vec<(SecretKind, &str)> = [
        (SecretKind::Pin, new.pin),
        (SecretKind::Password, new.password),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect();
    if secrets.is_empty() {
        return Err(StoreError::NoSecret);
    }
    secrets
        .into_iter()
        .map(|(kind, s)| {
            secret::validate(kind, s)?;
            Ok((kind, secret::hash(s, keys)?))
        })
        .collect()
}

fn insert_operator(
    tx: &WriteTx<'_>,
    new: &NewOperator<'_>,
    names: &Names,
    hashed: &[(SecretKind, String)],
    actor: Option<&str>,
    now: Millis,
) -> Result<OperatorId, StoreError> {
    let personnel_no = names.personnel_no.as_str();
    // No number that could pass for one held already (Unicode TS #39).
    let held = personnel_numbers(tx)?;
    check_distinct(
        "personnel number",
        personnel_no,
        held.iter().map(String::as_str),
    )?;
    let inserted = tx.execute(
        "INSERT INTO operators (name, personnel_no, role, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![names.name, personnel_no, new.role.as_str(), now],
    );
    match inserted {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(StoreError::DuplicatePersonnelNumber(
                personnel_no.to_owned(),
            ));
        }
        other => other?,
    };
    let id = OperatorId(tx.last_insert_rowid());
    for (kind, phc) in hashed {
        put_secret(tx, id, *kind, phc)?;
    }
    let event = AuditEvent::new(AuditAction::OperatorCreated)
        .actor_opt(actor)
        .detail(format!("{personnel_no} ({})", new.role.as_str()));
    audit::append(tx, &event, now)?;
    Ok(id)
}

/// Every operator's personnel number, for [`check_distinct`].
pub(super) fn personnel_numbers(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT personnel_no FROM operators")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every template with its operator, in a stable order.
pub(super) fn all_templates(conn: &Connection) -> Result<Vec<(OperatorId, Vec<u8>)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT operator_id, data FROM templates ORDER BY operator_id, id")?;
    let rows = stmt.query_map([], |r| Ok((OperatorId(r.get(0)?), r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces the operator's templates and logs the enrollment.
fn replace_templates(
    tx: &WriteTx<'_>,
    id: OperatorId,
    templates: &[Vec<u8>],
    actor: Option<&str>,
    now: Millis,
) -> Result<Operator, StoreError> {
    if templates.is_empty() {
        return Err(StoreError::InvalidInput("an enrollment needs templates"));
    }
    let op = get_operator(tx, id)?;
    tx.execute("DELETE FROM templates WHERE operator_id = ?1", [id.0])?;
    let mut insert = tx.prepare("INSERT INTO templates (operator_id, data) VALUES (?1, ?2)")?;
    for t in templates {
        insert.execute(params![id.0, t])?;
    }
    tx.execute(
        "UPDATE operators SET enrolled_at = ?1 WHERE id = ?2",
        params![now, id.0],
    )?;
    let event = AuditEvent::new(AuditAction::Enrolled)
        .actor_opt(actor)
        .detail(format!(
            "{}: {} templates",
            op.personnel_no,
            templates.len()
        ));
    audit::append(tx, &event, now)?;
    Ok(op)
}

impl Store {
    pub fn operator_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM operators", [], |r| r.get(0))?)
    }

    pub fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM operators ORDER BY name, personnel_no"
        ))?;
        let rows = stmt.query_map([], operator_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn operator(&self, id: OperatorId) -> Result<Option<Operator>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM operators WHERE id = ?1"),
                [id.0],
                operator_from_row,
            )
            .optional()?)
    }

    /// The operator with this personnel number as typed: trimmed and in
    /// NFC, the form it was stored in (a number the text rule refuses is
    /// looked up as typed, for operators from before the rule).
    pub fn operator_by_personnel_no(
        &self,
        personnel_no: &str,
    ) -> Result<Option<Operator>, StoreError> {
        let typed = personnel_no.trim();
        let stored =
            check_text("personnel number", typed, TextKind::Id).unwrap_or_else(|_| typed.into());
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM operators WHERE personnel_no = ?1"),
                [stored],
                operator_from_row,
            )
            .optional()?)
    }

    /// Which secrets an operator has set.
    pub fn secret_kinds(&self, id: OperatorId) -> Result<Vec<SecretKind>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind FROM credentials WHERE operator_id = ?1 ORDER BY kind")?;
        let kinds = stmt.query_map([id.0], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for k in kinds {
            let k = k?;
            out.push(
                SecretKind::parse(&k)
                    .ok_or_else(|| StoreError::Corrupt(format!("credential kind {k}")))?,
            );
        }
        Ok(out)
    }

    /// Creates an operator with their secrets and logs it, all or nothing.
    pub fn create_operator(
        &mut self,
        new: &NewOperator<'_>,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<Operator, StoreError> {
        self.create(new, None, actor, now)
    }

    /// Creates an operator and stores their face in one transaction, so a
    /// wizard that is abandoned or crashes leaves no half-made operator.
    pub fn create_enrolled_operator(
        &mut self,
        new: &NewOperator<'_>,
        templates: &[Vec<u8>],
        actor: Option<&str>,
        now: Millis,
    ) -> Result<Operator, StoreError> {
        self.create(new, Some(templates), actor, now)
    }

    fn create(
        &mut self,
        new: &NewOperator<'_>,
        templates: Option<&[Vec<u8>]>,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<Operator, StoreError> {
        let names = check_names(new)?;
        let hashed = hash_secrets(new, &self.secrets)?;
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let id = insert_operator(&tx, new, &names, &hashed, actor, now)?;
        if let Some(templates) = templates {
            replace_templates(&tx, id, templates, actor, now)?;
        }
        plant::queue(&tx, &names.personnel_no, Outbound::Upsert, now)?;
        let operator = get_operator(&tx, id)?;
        tx.commit()?;
        Ok(operator)
    }

    pub fn set_secret(
        &mut self,
        id: OperatorId,
        kind: SecretKind,
        s: &str,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        secret::validate(kind, s)?;
        let phc = secret::hash(s, &self.secrets)?;
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let op = get_operator(&tx, id)?;
        put_secret(&tx, id, kind, &phc)?;
        plant::queue(&tx, &op.personnel_no, Outbound::Upsert, now)?;
        let event = AuditEvent::new(AuditAction::SecretChanged)
            .actor_opt(actor)
            .detail(format!("{} of {}", kind.as_str(), op.personnel_no));
        audit::append(&tx, &event, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Checks a PIN or password under the lockout rules. The failure or
    /// success is counted but not logged: the caller logs the sign-in step.
    /// A right secret against a hash from before the pepper is rehashed
    /// with the pepper, and the rehash is logged.
    pub fn check_secret(
        &mut self,
        id: OperatorId,
        kind: SecretKind,
        s: &str,
        now: Millis,
    ) -> Result<SecretCheck, StoreError> {
        let subject = Subject::Operator(id);
        if let Some(until) = lockout::locked_until(&self.conn, subject, now)? {
            return Ok(SecretCheck::Locked { until });
        }
        let phc: Option<String> = self
            .conn
            .query_row(
                "SELECT phc FROM credentials WHERE operator_id = ?1 AND kind = ?2",
                params![id.0, kind.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let verified = phc
            .as_deref()
            .map_or(Verified::No, |phc| secret::verify(s, phc, &self.secrets));
        // Argon2 runs before the transaction, as for a new secret.
        let rehashed = match verified {
            Verified::YesStale => Some(secret::hash(s, &self.secrets)?),
            _ => None,
        };
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let result = if verified == Verified::No {
            SecretCheck::Rejected {
                locked_until: lockout::count_failure(&tx, &self.lockout, subject, now)?,
            }
        } else {
            lockout::count_success(&tx, subject, now)?;
            if let Some(new) = rehashed {
                // Only if the hash is still the one that was checked.
                let replaced = tx.execute(
                    "UPDATE credentials SET phc = ?1 WHERE operator_id = ?2 AND kind = ?3 AND phc = ?4",
                    params![new, id.0, kind.as_str(), phc],
                )?;
                if replaced == 1 {
                    let op = get_operator(&tx, id)?;
                    let event = AuditEvent::new(AuditAction::SecretChanged)
                        .actor(&op.personnel_no)
                        .detail(format!(
                            "{} of {}: rehashed with the PIN pepper",
                            kind.as_str(),
                            op.personnel_no
                        ));
                    audit::append(&tx, &event, now)?;
                    // The plant's copy gets the new hash too.
                    plant::queue(&tx, &op.personnel_no, Outbound::Upsert, now)?;
                }
            }
            SecretCheck::Accepted
        };
        tx.commit()?;
        Ok(result)
    }

    /// Replaces the operator's templates with `templates`, all or nothing:
    /// an interrupted enrollment leaves the previous one intact.
    pub fn enroll(
        &mut self,
        id: OperatorId,
        templates: &[Vec<u8>],
        actor: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let op = replace_templates(&tx, id, templates, actor, now)?;
        plant::queue(&tx, &op.personnel_no, Outbound::Upsert, now)?;
        tx.commit()?;
        Ok(())
    }

    /// All templates, for building the recogniser's gallery.
    pub fn templates(&self) -> Result<Vec<(OperatorId, Vec<u8>)>, StoreError> {
        all_templates(&self.conn)
    }

    pub fn change_role(
        &mut self,
        id: OperatorId,
        role: Role,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let op = get_operator(&tx, id)?;
        if op.role == Role::Administrator
            && role != Role::Administrator
            && administrators(&tx)? <= 1
        {
            return Err(StoreError::LastAdministrator);
        }
        tx.execute(
            "UPDATE operators SET role = ?1 WHERE id = ?2",
            params![role.as_str(), id.0],
        )?;
        plant::queue(&tx, &op.personnel_no, Outbound::Upsert, now)?;
        let event = AuditEvent::new(AuditAction::SettingsChanged)
            .actor_opt(actor)
            .detail(format!("role of {}: {}", op.personnel_no, role.as_str()));
        audit::append(&tx, &event, now)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes the operator and erases all their biometric data: the
    /// template rows are overwritten (secure_delete) and the WAL is emptied.
    pub fn delete_operator(
        &mut self,
        id: OperatorId,
        actor: Option<&str>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let tx = write_transaction(&mut self.conn, &self.secrets)?;
        let op = get_operator(&tx, id)?;
        if op.role == Role::Administrator && administrators(&tx)? <= 1 {
            return Err(StoreError::LastAdministrator);
        }
        // Credentials and templates go by ON DELETE CASCADE.
        tx.execute("DELETE FROM operators WHERE id = ?1", [id.0])?;
        lockout::clear(&tx, Subject::Operator(id))?;
        plant::queue(&tx, &op.personnel_no, Outbound::Remove, now)?;
        audit::append(
            &tx,
            &AuditEvent::new(AuditAction::OperatorDeleted)
                .actor_opt(actor)
                .detail(&op.personnel_no),
            now,
        )?;
        tx.commit()?;
        self.checkpoint_truncate()
    }
}
