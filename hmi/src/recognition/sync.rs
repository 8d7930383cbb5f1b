//! The kiosk's side of the plant-wide gallery: changes made while the
//! offload service was unreachable wait in the store (`pending_sync`) and
//! are pushed in order when it is back; the service's changes since the
//! version kept in `gallery_sync` are pulled into the kiosk's own operators
//! and templates, so that people enrolled at other lines can sign in here
//! while the cluster is out of reach.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kubevision_offload_client::proto::update_operator_request::Mode;
use kubevision_offload_client::proto::{sync_event, EnrollRequest, UpdateOperatorRequest};
use kubevision_offload_client::{ClientError, GallerySync, OffloadClient};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::Notify;
use tonic::Code;
use vision::lbph::Template;
use vision::GrayImage;

use super::offload::raw_frame;
use super::BackendError;
use crate::service::label_of;
use crate::store::{now_millis, OperatorId};

/// The service takes at most 32 frames an enrollment (`EnrollRequest`).
const MAX_ENROLL_FRAMES: usize = 32;
/// Normalised crop size (LBPH v1), the unit of a stored enrollment.
const CROP: (u32, u32) = (92, 112);

/// A change to the service's gallery made at this kiosk.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Enroll, or replace the templates of, an operator from face crops.
    Enroll {
        personnel_no: String,
        crops: Vec<GrayImage>,
    },
    Remove {
        personnel_no: String,
    },
}

/// Sends one change; enrolling someone the service knows replaces their
/// templates, and removing someone it does not know is done already.
pub async fn push(client: &OffloadClient, change: &Change) -> Result<(), ClientError> {
    match change {
        Change::Enroll {
            personnel_no,
            crops,
        } => {
            // Spread over the whole capture rather than its first moments.
            let step = crops.len().div_ceil(MAX_ENROLL_FRAMES).max(1);
            let frames: Vec<_> = crops.iter().step_by(step).map(raw_frame).collect();
            let enroll = EnrollRequest {
                operator_id: personnel_no.clone(),
                frames: frames.clone(),
            };
            match client.enroll(enroll).await {
                Err(e) if e.code() == Some(Code::AlreadyExists) => {
                    let update = UpdateOperatorRequest {
                        operator_id: personnel_no.clone(),
                        frames,
                        mode: Mode::Replace as i32,
                    };
                    client.update_operator(update).await.map(drop)
                }
                done => done.map(drop),
            }
        }
        Change::Remove { personnel_no } => match client.remove_operator(personnel_no).await {
            Err(e) if e.code() == Some(Code::NotFound) => Ok(()),
            done => done.map(drop),
        },
    }
}

/// Its own connection to the kiosk's SQLite file (WAL: the store's thread
/// keeps writing meanwhile); the store's migrations must have run.
pub struct SyncStore {
    conn: Connection,
}

impl SyncStore {
    pub fn open(db: &Path) -> Result<Self, BackendError> {
        let conn = Connection::open(db)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // As the store: cascades delete templates, deleted ones are overwritten.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;")?;
        Ok(SyncStore { conn })
    }

    /// Every operator's label and personnel number.
    pub fn directory(&self) -> Result<Vec<(i32, String)>, BackendError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, personnel_no FROM operators")?;
        let rows = stmt.query_map([], |r| Ok((label_of(OperatorId(r.get(0)?)), r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The local gallery, as the store's thread builds it.
    pub fn gallery(&self) -> Result<Vec<(i32, Vec<u8>)>, BackendError> {
        let mut stmt = self
            .conn
            .prepare("SELECT operator_id, data FROM templates ORDER BY operator_id, id")?;
        let rows = stmt.query_map([], |r| Ok((label_of(OperatorId(r.get(0)?)), r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn queue(&self, change: &Change) -> Result<(), BackendError> {
        let (kind, personnel_no, crops) = match change {
            Change::Enroll {
                personnel_no,
                crops,
            } => {
                let mut bytes = Vec::new();
                for crop in crops {
                    if crop.dimensions() != CROP {
                        let (width, height) = crop.dimensions();
                        return Err(BackendError::CropSize { width, height });
                    }
                    bytes.extend_from_slice(crop.as_raw());
                }
                ("enroll", personnel_no, Some(bytes))
            }
            Change::Remove { personnel_no } => ("remove", personnel_no, None),
        };
        self.conn.execute(
            "INSERT INTO pending_sync (kind, personnel_no, crops, queued_at) VALUES (?1, ?2, ?3, ?4)",
            params![kind, personnel_no, crops, now_millis()],
        )?;
        Ok(())
    }

    /// Queued changes, oldest first, with their row ids.
    pub fn pending(&self) -> Result<Vec<(i64, Change)>, BackendError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, personnel_no, crops FROM pending_sync ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let id: i64 = r.get(0)?;
            let kind: String = r.get(1)?;
            let personnel_no: String = r.get(2)?;
            let crops: Option<Vec<u8>> = r.get(3)?;
            Ok((id, kind, personnel_no, crops))
        })?;
        let mut changes = Vec::new();
        for row in rows {
            let (id, kind, personnel_no, crops) = row?;
            let change = match (kind.as_str(), crops) {
                ("enroll", Some(bytes)) => Change::Enroll {
                    personnel_no,
                    crops: bytes
                        .chunks_exact((CROP.0 * CROP.1) as usize)
                        .filter_map(|px| GrayImage::from_raw(CROP.0, CROP.1, px.to_vec()))
                        .collect(),
                },
                // The table's CHECK ties crops to enrollments.
                _ => Change::Remove { personnel_no },
            };
            changes.push((id, change));
        }
        Ok(changes)
    }

    /// The crops go with the row (`secure_delete` overwrites them).
    fn pushed(&self, id: i64) -> Result<(), BackendError> {
        self.conn
            .execute("DELETE FROM pending_sync WHERE id = ?1", [id])?;
        Ok(())
    }

    /// The service gallery the local copy follows and its version.
    pub fn synced(&self) -> Result<(String, u64), BackendError> {
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

    /// Applies a sync to the local operators and templates in one
    /// transaction, with the version it reached. A person synced from
    /// another line gets their personnel number as name and the operator
    /// role: the service's gallery carries neither names nor roles.
    fn apply(&mut self, sync: &GallerySync) -> Result<(), BackendError> {
        let now = now_millis();
        let tx = self.conn.transaction()?;
        for change in &sync.changes {
            match change {
                sync_event::Event::Upsert(up) => {
                    let id: i64 = tx.query_row(
                        "INSERT INTO operators (name, personnel_no, role, created_at, enrolled_at)
                         VALUES (?1, ?1, 'operator', ?2, ?2)
                         ON CONFLICT (personnel_no) DO UPDATE SET enrolled_at = excluded.enrolled_at
                         RETURNING id",
                        params![up.operator_id, now],
                        |r| r.get(0),
                    )?;
                    tx.execute("DELETE FROM templates WHERE operator_id = ?1", [id])?;
                    for bytes in &up.templates {
                        // Refuse a format this kiosk cannot match with.
                        Template::from_bytes(bytes).map_err(|e| {
                            BackendError::BadAnswer(format!("template of {}: {e}", up.operator_id))
                        })?;
                        tx.execute(
                            "INSERT INTO templates (operator_id, data) VALUES (?1, ?2)",
                            params![id, &bytes[..]],
                        )?;
                    }
                }
                // A local administrator stays: the kiosk must remain administrable.
                sync_event::Event::Removal(gone) => {
                    tx.execute(
                        "DELETE FROM operators WHERE personnel_no = ?1 AND role != 'administrator'",
                        [&gone.operator_id],
                    )?;
                }
                sync_event::Event::Header(_) | sync_event::Event::Complete(_) => {}
            }
        }
        tx.execute(
            "INSERT INTO gallery_sync (id, gallery_id, version) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET gallery_id = excluded.gallery_id, version = excluded.version",
            params![sync.header.gallery_id, sync.version as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Pushes the queued changes in order, then pulls the service's changes.
    /// Returns whether the local gallery changed.
    pub async fn sync_once(&mut self, client: &OffloadClient) -> Result<bool, BackendError> {
        for (id, change) in self.pending()? {
            match push(client, &change).await {
                Ok(()) => self.pushed(id)?,
                Err(e) if e.should_fall_back() => return Err(e.into()),
                // Refused for good (e.g. no usable face): retrying cannot help.
                Err(e) => {
                    tracing::warn!("dropping a queued gallery change the service refused: {e}");
                    self.pushed(id)?;
                }
            }
        }
        let (gallery_id, version) = self.synced()?;
        let mut sync = client.sync_gallery(version).await;
        let stale = match &sync {
            Ok(s) => s.header.gallery_id != gallery_id && version != 0,
            Err(e) => e.code() == Some(Code::FailedPrecondition),
        };
        if stale {
            // Another gallery, or one reset behind our version: start over.
            sync = client.sync_gallery(0).await;
        }
        let sync = sync?;
        self.apply(&sync)?;
        Ok(!sync.changes.is_empty())
    }
}

/// How often the background sync runs.
#[derive(Debug, Clone, Copy)]
pub struct SyncPolicy {
    /// Between syncs while the service answers.
    pub every: Duration,
    /// Ceiling of the doubling pause while it does not.
    pub max_backoff: Duration,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            every: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Syncs forever: every `policy.every`, sooner when woken (a change was
/// queued), backing off while the service is unreachable. `generation`
/// counts syncs that changed the local gallery.
pub async fn run(
    mut store: SyncStore,
    client: OffloadClient,
    policy: SyncPolicy,
    wake: Arc<Notify>,
    generation: Arc<AtomicU64>,
) {
    let mut pause = policy.every;
    loop {
        match store.sync_once(&client).await {
            Ok(changed) => {
                if changed {
                    generation.fetch_add(1, Ordering::Release);
                }
                pause = policy.every;
            }
            Err(e) => {
                tracing::debug!("gallery sync failed, retrying in {pause:?}: {e}");
                pause = (pause * 2).min(policy.max_backoff);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
        }
    }
}
