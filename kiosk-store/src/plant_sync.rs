//! The kiosk's conversation with the plant-wide gallery: push the changes
//! queued in the store (`plant.rs`), then pull the service's changes since
//! the version the local copy has reached. The kiosk runs it as a task of
//! its store worker while an offload service is configured, on the
//! worker's own connection: the store is borrowed only between network calls, never
//! across one, so the UI's requests are served while a call is out. What
//! the sync may change locally is decided by the store.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use kubevision_offload_client::proto::update_operator_request::Mode;
use kubevision_offload_client::proto::{
    sync_event, EnrollRequest, SignInOutcome, UpdateOperatorRequest,
};
use kubevision_offload_client::{ClientError, OffloadClient};
use tokio::sync::Notify;
use tonic::Code;

use crate::{
    now_millis, Incoming, Outbound, Outgoing, PlantLock, PlantSync, Profile, Store, StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Offload(#[from] ClientError),
    #[error("kiosk store: {0}")]
    Store(#[from] StoreError),
    /// The sync's own async runtime did not start (threads, file handles).
    #[error("the plant sync cannot start its runtime")]
    Runtime(#[source] std::io::Error),
}

impl SyncError {
    /// The service, not this kiosk, failed: try again later.
    pub fn should_fall_back(&self) -> bool {
        matches!(self, SyncError::Offload(e) if e.should_fall_back())
    }
}

/// One step on the store, between network calls; the borrow ends with it.
fn with<T>(
    store: &RefCell<Store>,
    step: impl FnOnce(&mut PlantSync<'_>) -> Result<T, StoreError>,
) -> Result<T, SyncError> {
    Ok(step(&mut store.borrow_mut().plant_sync())?)
}

/// Sends one operator's current state: enrolling someone the service knows
/// replaces their templates and profile; removing someone it does not know
/// is done already.
async fn push(
    client: &OffloadClient,
    personnel_no: &str,
    what: Outbound,
    outgoing: Option<Outgoing>,
) -> Result<(), ClientError> {
    match (what, outgoing) {
        (Outbound::Upsert, Some(operator)) => {
            let templates: Vec<_> = operator.templates.into_iter().map(Into::into).collect();
            let profile = Some(operator.profile.to_proto());
            let enroll = EnrollRequest {
                operator_id: personnel_no.to_owned(),
                templates: templates.clone(),
                profile: profile.clone(),
                ..Default::default()
            };
            match client.enroll(enroll).await {
                Err(e) if e.code() == Some(Code::AlreadyExists) => {
                    let update = UpdateOperatorRequest {
                        operator_id: personnel_no.to_owned(),
                        templates,
                        profile,
                        mode: Mode::Replace as i32,
                        ..Default::default()
                    };
                    client.update_operator(update).await.map(drop)
                }
                done => done.map(drop),
            }
        }
        // Gone again, or no face yet: the plant gallery has nothing to learn.
        (Outbound::Upsert, None) => Ok(()),
        (Outbound::Remove, _) => match client.remove_operator(personnel_no).await {
            Err(e) if e.code() == Some(Code::NotFound) => Ok(()),
            done => done.map(drop),
        },
    }
}

/// A change from the plant gallery as the store takes it; `None` (with a
/// warning) for one whose profile fails the plant's profile rule
/// (`kubevision_proto::profile`, the service's own): the change is not
/// taken, as the store does not take one it cannot use.
fn incoming(event: &sync_event::Event) -> Option<Incoming> {
    match event {
        sync_event::Event::Upsert(up) => {
            let profile = match up.profile.as_ref().map(Profile::from_proto).transpose() {
                Ok(profile) => profile,
                Err(why) => {
                    tracing::warn!(
                        "not taking {:?} from the plant gallery: {why}",
                        up.operator_id
                    );
                    return None;
                }
            };
            Some(Incoming::Upsert {
                personnel_no: up.operator_id.clone(),
                templates: up.templates.iter().map(|t| t.to_vec()).collect(),
                profile,
            })
        }
        sync_event::Event::Removal(gone) => Some(Incoming::Removal {
            personnel_no: gone.operator_id.clone(),
        }),
        sync_event::Event::Header(_) | sync_event::Event::Complete(_) => None,
    }
}

/// Pushes the queued changes in order, then pulls the service's changes.
/// Returns whether the local gallery changed.
pub async fn sync_once(store: &RefCell<Store>, client: &OffloadClient) -> Result<bool, SyncError> {
    push_pending(store, client).await?;
    let (gallery_id, version) = with(store, |s| s.synced())?;
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
    if !gallery_id.is_empty() && sync.header.gallery_id != gallery_id {
        // The plant gallery was reset or replaced: put this kiosk's people
        // back before following it (until the new identity is recorded
        // below, every round does this again, so a failed push is retried).
        let queued = with(store, |s| s.queue_all_after_reset(now_millis()))?;
        tracing::warn!(
            was = %gallery_id,
            now = %sync.header.gallery_id,
            queued,
            "the plant gallery has another identity (reset or replaced): pushing this kiosk's operators back"
        );
        push_pending(store, client).await?;
    }
    let changes: Vec<Incoming> = sync.changes.iter().filter_map(incoming).collect();
    let applied = with(store, |s| {
        s.apply(
            &sync.header.gallery_id,
            sync.version,
            &changes,
            now_millis(),
        )
    })?;
    sync_sign_ins(store, client).await?;
    Ok(applied > 0)
}

/// Reports the queued sign-in outcomes to the plant-wide count, oldest
/// first, then adopts the plant's locks. An outcome the plant cannot count
/// (the operator is only known here) is dropped; one that did not get
/// through stays queued and goes with the next round (a reply lost after
/// the count would count it twice: a lock a little early, never late). A
/// service older than the plant-wide count (UNIMPLEMENTED) gets none.
pub async fn sync_sign_ins(
    store: &RefCell<Store>,
    client: &OffloadClient,
) -> Result<(), SyncError> {
    let taken = with(store, |s| s.take_sign_ins())?;
    for (index, pending) in taken.iter().enumerate() {
        let outcome = if pending.succeeded {
            SignInOutcome::Succeeded
        } else {
            SignInOutcome::Failed
        };
        match client.report_sign_in(&pending.personnel_no, outcome).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(Code::Unimplemented) => {
                tracing::debug!("the plant service does not count sign-ins: {e}");
                return Ok(());
            }
            Err(e) if e.should_fall_back() => {
                with(store, |s| s.requeue_sign_ins(&taken[index..]))?;
                return Err(e.into());
            }
            Err(e) => tracing::debug!(
                "the plant did not count a sign-in of {}: {e}",
                pending.personnel_no
            ),
        }
    }
    let locks = match client.lockouts().await {
        Ok(locks) => locks,
        Err(e) if e.code() == Some(Code::Unimplemented) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let locks: Vec<PlantLock> = locks
        .into_iter()
        .map(|s| PlantLock {
            personnel_no: s.operator_id,
            failures: s.failures,
            locked_for_ms: s.locked_for_ms,
        })
        .collect();
    let raised = with(store, |s| s.adopt_lockouts(&locks, now_millis()))?;
    if raised > 0 {
        tracing::info!(raised, "adopted plant-wide sign-in locks");
    }
    Ok(())
}

/// Pushes the queued changes in order; a change refused for good is
/// dropped from the queue with a warning, one beyond the kiosk's scope
/// stays queued.
async fn push_pending(store: &RefCell<Store>, client: &OffloadClient) -> Result<(), SyncError> {
    for pending in with(store, |s| s.pending())? {
        let outgoing = with(store, |s| s.outgoing(&pending.personnel_no))?;
        match push(client, &pending.personnel_no, pending.what, outgoing).await {
            Ok(()) => with(store, |s| s.pushed(pending.id))?,
            // Beyond this kiosk's scope (a maintenance account, a new PIN
            // of someone enrolled: those need `admin`, issue 22): kept
            // queued for when the kiosk is given the scope, and the
            // changes behind it still go.
            Err(e) if e.code() == Some(Code::PermissionDenied) => {
                tracing::warn!(
                    "the plant gallery refused the change of {} to this kiosk's identity: {e}",
                    pending.personnel_no
                );
            }
            Err(e) if e.should_fall_back() => return Err(e.into()),
            // Refused for good (say, templates of another format): retrying
            // cannot help, and the local operator is unaffected.
            Err(e) => {
                tracing::warn!(
                    "the plant gallery refused the change of {}: {e}",
                    pending.personnel_no
                );
                with(store, |s| s.pushed(pending.id))?;
            }
        }
    }
    Ok(())
}

/// How one sync round went.
#[derive(Debug, Clone, PartialEq)]
pub enum Round {
    /// The local store changed (people arrived or left).
    Changed,
    Unchanged,
    /// The plant did not answer (or refused); why, in words.
    Failed(String),
}

/// How often the background sync runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncPolicy {
    /// Between syncs while the service answers.
    pub every: Duration,
    /// Ceiling of the doubling pause while it does not.
    pub max_backoff: Duration,
    /// Between the rounds of sign-in reports and plant locks in between
    /// syncs: a PIN guesser who walks to the next line finds it locked.
    pub sign_ins_every: Duration,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy {
            every: Duration::from_secs(30),
            max_backoff: Duration::from_secs(300),
            sign_ins_every: Duration::from_secs(3),
        }
    }
}

/// Syncs until dropped: every `policy.every`, sooner when woken (the local
/// gallery changed), backing off while the service is unreachable; in
/// between, every `policy.sign_ins_every`, reports sign-in outcomes and
/// adopts the plant's locks. `after` hears how every sync round went, so
/// the store worker can publish the gallery and the operator list, and
/// show whether the plant answers.
pub async fn run(
    store: Rc<RefCell<Store>>,
    client: OffloadClient,
    policy: SyncPolicy,
    wake: Rc<Notify>,
    after: impl Fn(Round),
) {
    let mut pause = policy.every;
    let mut next_sync = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_sync {
            match sync_once(&store, &client).await {
                Ok(applied) => {
                    after(if applied {
                        Round::Changed
                    } else {
                        Round::Unchanged
                    });
                    pause = policy.every;
                }
                Err(e) => {
                    tracing::debug!("gallery sync failed, retrying in {pause:?}: {e}");
                    after(Round::Failed(e.to_string()));
                    pause = (pause * 2).min(policy.max_backoff);
                }
            }
            next_sync = tokio::time::Instant::now() + pause;
        } else if pause == policy.every {
            // Only while the service answers: a down one is left alone
            // until the next sync.
            match sync_sign_ins(&store, &client).await {
                Ok(()) => {}
                Err(e) => tracing::debug!("sign-in reports failed: {e}"),
            }
        }
        let tick = tokio::time::Instant::now() + policy.sign_ins_every;
        tokio::select! {
            _ = tokio::time::sleep_until(next_sync.min(tick)) => {}
            _ = wake.notified() => next_sync = tokio::time::Instant::now(),
        }
    }
}

/// One sync now, waiting for it: for the command line and tests, which
/// have no store worker. Returns whether the local gallery changed.
pub fn sync_now(
    store: &RefCell<Store>,
    config: kubevision_offload_client::ClientConfig,
) -> Result<bool, SyncError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SyncError::Runtime)?;
    let client = {
        let _inside = runtime.enter();
        OffloadClient::new(config)?
    };
    runtime.block_on(sync_once(store, &client))
}
