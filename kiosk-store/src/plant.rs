//! The kiosk's share in the plant-wide gallery (kept by the offload
//! service). Outgoing: every local change to who is enrolled and how they
//! sign in queues the personnel number in `pending_sync`, in the same
//! transaction as the change; the sync pushes that operator's *current*
//! templates and profile, so the queue holds no face data and a later
//! change simply supersedes an earlier one. Incoming: the service's changes
//! are applied to the local operators, templates and credentials, and
//! audited, so that people enrolled at other lines can sign in here while
//! the cluster is out of reach.

use kubevision_proto::profile::{check_profile, ProfileError};
use kubevision_proto::text::{check_distinct, check_text, TextKind};
use kubevision_proto::v1::credential::Kind;
use kubevision_proto::v1::operator_profile::Role as ProtoRole;
use kubevision_proto::v1::{Credential, OperatorProfile};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use vision::lbph::LbphParams;
use vision::template::AnyTemplate;

use super::audit::{self, AuditAction, AuditEvent};
use super::keys::Secrets;
use super::lockout::{self, Subject};
use super::operators::{OperatorId, Role};
use super::secret::{self, SecretKind};
use super::{write_transaction, Millis, StoreError, WriteTx};

/// What the service should learn about a personnel number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// The operator's current templates and profile.
    Upsert,
    Remove,
}

impl Outbound {
    fn as_str(self) -> &'static str {
        match self {
            Outbound::Upsert => "upsert",
            Outbound::Remove => "remove",
        }
    }
}

/// Queues `personnel_no` for the service; replaces what was queued for it.
pub(super) fn queue(
    tx: &Transaction<'_>,
    personnel_no: &str,
    what: Outbound,
    now: Millis,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO pending_sync (kind, personnel_no, queued_at) VALUES (?1, ?2, ?3)",
        params![what.as_str(), personnel_no, now],
    )?;
    Ok(())
}

/// Most outcomes kept for the plant while it is out of reach: the newest
/// count, older ones are dropped first (the kiosk's own count still holds).
const MAX_PENDING_SIGN_INS: i64 = 1000;

/// Queues an operator's sign-in outcome for the plant-wide count, in the
/// transaction that counts it here; only while this kiosk follows a plant
/// gallery (a kiosk that never synced has nobody to tell).
pub(super) fn queue_sign_in(
    tx: &Connection,
    subject: Subject,
    succeeded: bool,
    now: Millis,
) -> Result<(), StoreError> {
    let Subject::Operator(id) = subject else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO pending_sign_ins (personnel_no, succeeded, at)
         SELECT o.personnel_no, ?2, ?3 FROM operators o
         WHERE o.id = ?1 AND EXISTS (SELECT 1 FROM gallery_sync WHERE gallery_id != '')",
        params![id.0, succeeded, now],
    )?;
    tx.execute(
        "DELETE FROM pending_sign_ins WHERE id <= (SELECT max(id) FROM pending_sign_ins) - ?1",
        [MAX_PENDING_SIGN_INS],
    )?;
    Ok(())
}

/// A sign-in outcome waiting for the plant-wide count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignIn {
    pub id: i64,
    pub personnel_no: String,
    pub succeeded: bool,
    /// When this kiosk counted it.
    pub at: Millis,
}

/// A plant-wide lock the service reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantLock {
    pub personnel_no: String,
    pub failures: u32,
    pub locked_for_ms: u64,
}

/// A queued change: row id (to confirm it), personnel number, what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: i64,
    pub personnel_no: String,
    pub what: Outbound,
}

/// Who an operator is, as the plant-wide gallery carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub role: Role,
    /// Argon2id PHC strings, never secrets.
    pub credentials: Vec<(SecretKind, String)>,
}

impl Profile {
    /// The profile as the service's contract carries it.
    pub fn to_proto(&self) -> OperatorProfile {
        OperatorProfile {
            display_name: self.name.clone(),
            role: match self.role {
                Role::Operator => ProtoRole::Operator,
                Role::Maintenance => ProtoRole::Maintenance,
                Role::Administrator => ProtoRole::Administrator,
            } as i32,
            credentials: self
                .credentials
                .iter()
                .map(|(kind, phc)| Credential {
                    kind: match kind {
                        SecretKind::Pin => Kind::Pin,
                        SecretKind::Password => Kind::Password,
                    } as i32,
                    phc: phc.clone(),
                })
                .collect(),
        }
    }

    /// A profile from the plant gallery, if it passes the rule the service
    /// applies to every profile it takes ([`check_profile`]), its name in
    /// NFC; refused, the change it came with is not taken (the service
    /// would not have sent it: a newer contract or a service not to trust).
    pub fn from_proto(p: &OperatorProfile) -> Result<Profile, ProfileError> {
        let name = check_profile(p)?;
        // Checked above; the refusals below only keep this total.
        let role = match ProtoRole::try_from(p.role) {
            Ok(ProtoRole::Operator) => Role::Operator,
            Ok(ProtoRole::Maintenance) => Role::Maintenance,
            Ok(ProtoRole::Administrator) => Role::Administrator,
            Ok(ProtoRole::Unspecified) | Err(_) => return Err(ProfileError::Role(p.role)),
        };
        let credentials = p
            .credentials
            .iter()
            .enumerate()
            .map(|(index, c)| match Kind::try_from(c.kind) {
                Ok(Kind::Pin) => Ok((SecretKind::Pin, c.phc.clone())),
                Ok(Kind::Password) => Ok((SecretKind::Password, c.phc.clone())),
                Ok(Kind::Unspecified) | Err(_) => Err(ProfileError::Kind {
                    index,
                    kind: c.kind,
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Profile {
            name,
            role,
            credentials,
        })
    }
}

/// An operator as the kiosk sends them to the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub templates: Vec<Vec<u8>>,
    pub profile: Profile,
}

/// A change the service reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Upsert {
        personnel_no: String,
        templates: Vec<Vec<u8>>,
        /// `None`: the service has no profile (enrolled by a non-kiosk client).
        profile: Option<Profile>,
    },
    Removal {
        personnel_no: String,
    },
}

/// Recorded as the backend of audit rows written by a sync.
const PLANT_GALLERY: &str = "plant gallery";

/// The plant sync's view of the store: the same connection as every other
/// change, so the sync is one more task of the store's single owner (the
/// kiosk's store worker) rather than a second writer with its own pragmas.
/// Borrowed with [`Store::plant_sync`](super::Store::plant_sync).
pub struct PlantSync<'s> {
    conn: &'s mut Connection,
    secrets: &'s Secrets,
}

impl super::Store {
    /// The queue to the plant gallery and the changes from it.
    pub fn plant_sync(&mut self) -> PlantSync<'_> {
        PlantSync {
            conn: &mut self.conn,
            secrets: &self.secrets,
        }
    }
}

impl PlantSync<'_> {
    /// Queued changes, oldest first.
    pub fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, personnel_no, kind FROM pending_sync ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let kind: String = r.get(2)?;
            Ok(Pending {
                id: r.get(0)?,
                personnel_no: r.get(1)?,
                // The table's CHECK allows these two only.
                what: if kind == "remove" {
                    Outbound::Remove
                } else {
                    Outbound::Upsert
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The operator's current templates and profile; `None` when there is
    /// nothing to send (no such operator, or no face enrolled yet).
    pub fn outgoing(&self, personnel_no: &str) -> Result<Option<Outgoing>, StoreError> {
        let Some((id, name, role)) = self
            .conn
            .query_row(
                "SELECT id, name, role FROM operators WHERE personnel_no = ?1",
                [personnel_no],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()?
        else {
            return Ok(None);
        };
        let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role {role}")))?;
        let templates: Vec<Vec<u8>> = self
            .conn
            .prepare("SELECT data FROM templates WHERE operator_id = ?1 ORDER BY id")?
            .query_map([id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if templates.is_empty() {
            return Ok(None);
        }
        let mut credentials = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT kind, phc FROM credentials WHERE operator_id = ?1 ORDER BY kind")?;
        let mut rows = stmt.query([id])?;
        while let Some(row) = rows.next()? {
            let kind: String = row.get(0)?;
            let kind = SecretKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("credential kind {kind}")))?;
            credentials.push((kind, row.get(1)?));
        }
        Ok(Some(Outgoing {
            templates,
            profile: Profile {
                name,
                role,
                credentials,
            },
        }))
    }

    /// The service has it. A change queued for the same person meanwhile
    /// has a new row id and stays.
    pub fn pushed(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM pending_sync WHERE id = ?1", [id])?;
        Ok(())
    }

    /// The plant gallery was reset (it answers with another `gallery_id`
    /// than the one this copy follows): every operator known here is queued
    /// for the service, in one transaction, so that the kiosks restore the
    /// plant gallery instead of following it into emptiness. Returns how
    /// many were queued. A person the new gallery already has is then
    /// updated with this kiosk's copy, as after any local change.
    pub fn queue_all_after_reset(&mut self, now: Millis) -> Result<usize, StoreError> {
        let tx = write_transaction(self.conn, self.secrets)?;
        let numbers: Vec<String> = tx
            .prepare(
                "SELECT personnel_no FROM operators o
                 WHERE EXISTS (SELECT 1 FROM templates t WHERE t.operator_id = o.id)
                 ORDER BY id",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for personnel_no in &numbers {
            queue(&tx, personnel_no, Outbound::Upsert, now)?;
        }
        tx.commit()?;
        Ok(numbers.len())
    }

    /// Takes the queued sign-in outcomes, oldest first, out of the queue
    /// in one statement: two senders (the background sync and a sync run
    /// now) never send the same outcome. What could not be sent goes back
    /// with [`requeue_sign_ins`](Self::requeue_sign_ins); a crash in
    /// between loses those reports to the plant (this kiosk's own count
    /// holds them).
    pub fn take_sign_ins(&self) -> Result<Vec<PendingSignIn>, StoreError> {
        let mut query = self
            .conn
            .prepare("DELETE FROM pending_sign_ins RETURNING id, personnel_no, succeeded, at")?;
        let rows = query.query_map([], |r| {
            Ok(PendingSignIn {
                id: r.get(0)?,
                personnel_no: r.get(1)?,
                succeeded: r.get(2)?,
                at: r.get(3)?,
            })
        })?;
        let mut taken: Vec<PendingSignIn> = rows.collect::<Result<_, _>>()?;
        taken.sort_by_key(|p| p.id);
        Ok(taken)
    }

    /// Puts outcomes that did not reach the plant back in the queue.
    pub fn requeue_sign_ins(&self, unsent: &[PendingSignIn]) -> Result<(), StoreError> {
        let mut insert = self.conn.prepare(
            "INSERT OR IGNORE INTO pending_sign_ins (id, personnel_no, succeeded, at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for p in unsent {
            insert.execute(params![p.id, p.personnel_no, p.succeeded, p.at])?;
        }
        Ok(())
    }

    /// Adopts the plant's locks: each locked operator known here is locked
    /// here at least as long, and counted with at least the plant's
    /// failures, so the kiosk's own doubling goes on from there. A lock
    /// that gets longer is audited (`locked_out`, "plant-wide"). Returns how
    /// many got longer.
    pub fn adopt_lockouts(
        &mut self,
        locks: &[PlantLock],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let tx = write_transaction(self.conn, self.secrets)?;
        let mut raised = 0;
        for lock in locks {
            let Some((id, _)) = local_operator(&tx, &lock.personnel_no)? else {
                continue;
            };
            let until = now.saturating_add(lock.locked_for_ms.min(i64::MAX as u64) as i64);
            if lockout::raise(&tx, Subject::Operator(id), lock.failures, until)? {
                let event = AuditEvent::new(AuditAction::LockedOut)
                    .actor(lock.personnel_no.clone())
                    .detail(format!(
                        "plant-wide: {} failed sign-ins across the plant, until {until}",
                        lock.failures
                    ));
                audit::append(&tx, &event.backend(PLANT_GALLERY), now)?;
                raised += 1;
            }
        }
        tx.commit()?;
        Ok(raised)
    }

    /// The service gallery the local copy follows, and its version.
    pub fn synced(&self) -> Result<(String, u64), StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT gallery_id, version FROM gallery_sync WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Applies the service's changes and the version they reach, in one
    /// transaction, each with an audit row; returns how many changed
    /// anything here. Rules:
    /// - a person with a change still queued here is left alone: the local
    ///   change is newer and will be pushed;
    /// - a local administrator keeps their name, role and credentials (only
    ///   their templates follow the service) and is never removed by a sync:
    ///   the kiosk must stay administrable;
    /// - administration is never granted from outside: a synced
    ///   administrator becomes maintenance here;
    /// - credentials are taken only as affordable Argon2id hashes keyed
    ///   with the plant pepper (this kiosk's, once registered);
    /// - a new personnel number that could pass for one held here
    ///   (the same confusable skeleton) is not taken;
    /// - a change is taken only if its personnel number and profile pass the
    ///   rules the service applies ([`kubevision_proto::text`],
    ///   [`kubevision_proto::profile`]): the service never sends others.
    pub fn apply(
        &mut self,
        gallery_id: &str,
        version: u64,
        changes: &[Incoming],
        now: Millis,
    ) -> Result<usize, StoreError> {
        let tx = write_transaction(self.conn, self.secrets)?;
        let mut applied = 0;
        let mut removed = false;
        for change in changes {
            let personnel_no = match change {
                Incoming::Upsert { personnel_no, .. } | Incoming::Removal { personnel_no } => {
                    personnel_no
                }
            };
            // The service holds only ids that pass the plant's text rule,
            // in NFC; a change for any other is not the service's to make.
            let personnel_no = &match check_text("operator_id", personnel_no, TextKind::Id) {
                Ok(checked) => checked,
                Err(why) => {
                    tracing::warn!("not taking {personnel_no:?} from the plant gallery: {why}");
                    continue;
                }
            };
            let queued: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM pending_sync WHERE personnel_no = ?1)",
                [personnel_no],
                |r| r.get(0),
            )?;
            if queued {
                continue;
            }
            let local = local_operator(&tx, personnel_no)?;
            if local.is_none() && matches!(change, Incoming::Upsert { .. }) {
                let held = super::operators::personnel_numbers(&tx)?;
                if let Err(why) =
                    check_distinct("operator_id", personnel_no, held.iter().map(String::as_str))
                {
                    tracing::warn!("not taking {personnel_no:?} from the plant gallery: {why}");
                    continue;
                }
            }
            let event = match change {
                Incoming::Upsert {
                    templates, profile, ..
                } => {
                    // One unusable change must not hold up the others.
                    let profile = match usable(templates, profile.as_ref(), self.secrets) {
                        Ok(profile) => profile,
                        Err(why) => {
                            tracing::warn!(
                                "not taking {personnel_no} from the plant gallery: {why}"
                            );
                            continue;
                        }
                    };
                    upsert(&tx, personnel_no, local, templates, profile.as_ref(), now)?;
                    AuditEvent::new(AuditAction::Enrolled).detail(format!(
                        "{personnel_no}: {} templates from the plant gallery",
                        templates.len()
                    ))
                }
                Incoming::Removal { .. } => match local {
                    Some((id, role)) if role != Role::Administrator => {
                        tx.execute("DELETE FROM operators WHERE id = ?1", [id.0])?;
                        lockout::clear(&tx, Subject::Operator(id))?;
                        removed = true;
                        AuditEvent::new(AuditAction::OperatorDeleted)
                            .detail(format!("{personnel_no}: removed from the plant gallery"))
                    }
                    _ => continue,
                },
            };
            audit::append(&tx, &event.backend(PLANT_GALLERY), now)?;
            applied += 1;
        }
        tx.execute(
            "INSERT INTO gallery_sync (id, gallery_id, version) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET gallery_id = excluded.gallery_id, version = excluded.version",
            params![gallery_id, version as i64],
        )?;
        tx.commit()?;
        if removed {
            // As for a local deletion: the erased templates leave the WAL too.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(applied)
    }
}

fn local_operator(
    tx: &Transaction<'_>,
    personnel_no: &str,
) -> Result<Option<(OperatorId, Role)>, StoreError> {
    let row: Option<(i64, String)> = tx
        .query_row(
            "SELECT id, role FROM operators WHERE personnel_no = ?1",
            [personnel_no],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(id, role)| {
        Role::parse(&role)
            .map(|role| (OperatorId(id), role))
            .ok_or_else(|| StoreError::Corrupt(format!("role {role}")))
    })
    .transpose()
}

/// Whether this kiosk can match with the templates and verify with the
/// credentials, and the profile passes the plant's profile rule
/// ([`check_profile`]: name, credential kinds not repeated, hashes); a
/// change is taken whole or not at all. The profile as it is then stored
/// (its name in NFC).
fn usable(
    templates: &[Vec<u8>],
    profile: Option<&Profile>,
    secrets: &Secrets,
) -> Result<Option<Profile>, String> {
    if templates.is_empty() {
        return Err("no templates".into());
    }
    // Templates this kiosk can match with, of either kind (its magic says
    // which): lbph's made with OpenCV's default parameters (what the kiosk
    // makes and matches with), dlib's of this build's model version.
    for (i, t) in templates.iter().enumerate() {
        AnyTemplate::decode(t, &LbphParams::default()).map_err(|e| format!("template {i}: {e}"))?;
    }
    let Some(profile) = profile else {
        return Ok(None);
    };
    let name = check_profile(&profile.to_proto()).map_err(|e| e.to_string())?;
    // Beyond the plant's rule: this kiosk must hold the pepper a hash names.
    for (kind, phc) in &profile.credentials {
        secret::check_phc(phc, secrets).map_err(|e| format!("{}: {e}", kind.as_str()))?;
    }
    Ok(Some(Profile {
        name,
        ..profile.clone()
    }))
}

fn upsert(
    tx: &WriteTx<'_>,
    personnel_no: &str,
    local: Option<(OperatorId, Role)>,
    templates: &[Vec<u8>],
    profile: Option<&Profile>,
    now: Millis,
) -> Result<(), StoreError> {
    let keeps_profile = matches!(local, Some((_, Role::Administrator)));
    let profile = profile.filter(|_| !keeps_profile);
    let id = match local {
        Some((id, _)) => id,
        None => {
            tx.execute(
                "INSERT INTO operators (name, personnel_no, role, created_at) VALUES (?1, ?2, 'operator', ?3)",
                params![personnel_no, personnel_no, now],
            )?;
            OperatorId(tx.last_insert_rowid())
        }
    };
    if let Some(p) = profile {
        let role = match p.role {
            Role::Administrator => Role::Maintenance,
            role => role,
        };
        // The name passed the plant's text rule in `usable`: never blank.
        tx.execute(
            "UPDATE operators SET name = ?1, role = ?2 WHERE id = ?3",
            params![p.name, role.as_str(), id.0],
        )?;
        tx.execute("DELETE FROM credentials WHERE operator_id = ?1", [id.0])?;
        for (kind, phc) in &p.credentials {
            tx.execute(
                "INSERT INTO credentials (operator_id, kind, phc) VALUES (?1, ?2, ?3)",
                params![id.0, kind.as_str(), phc],
            )?;
        }
    }
    tx.execute("DELETE FROM templates WHERE operator_id = ?1", [id.0])?;
    for t in templates {
        tx.execute(
            "INSERT INTO templates (operator_id, data) VALUES (?1, ?2)",
            params![id.0, t],
        )?;
    }
    tx.execute(
        "UPDATE operators SET enrolled_at = ?1 WHERE id = ?2",
        params![now, id.0],
    )?;
    Ok(())
}
