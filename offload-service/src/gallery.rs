//! The gallery as one replica sees it: the store of record, the matching
//! backend's copy of the templates, and operator ids ↔ backend labels, with
//! the copy following the store.
//!
//! There is one way a change reaches the matcher: **catch-up by version**.
//! [`OperatorGallery::catch_up`] asks the store for every change after the
//! version this replica has applied and applies them in order. It runs
//! - at start, before the replica reports SERVING;
//! - right after a change this replica committed (so a client that enrolled
//!   here can identify here at once);
//! - when the store's [`ChangeFeed`](crate::store::ChangeFeed) announces a
//!   change another replica committed (PostgreSQL's LISTEN/NOTIFY);
//! - every `catch_up_period`, so that a notification lost in a reconnect, or
//!   a change written by hand, is still picked up.
//!
//! Catching up is idempotent (an upsert carries all of an operator's current
//! templates), so running it too often costs a query and nothing else. While
//! the store is unreachable the copy keeps answering identifications, and
//! [`OperatorGallery::follow`] reconnects by itself.
//!
//! The store keeps each operator's templates of every recogniser (see
//! [`crate::recogniser`]); the matcher holds those of the gallery's
//! recogniser only. Every stored template is still decoded and checked by
//! its own kind on the way in, so a damaged one of either kind is reported
//! with its operator, not carried along until a kiosk trips over it.
//!
//! **Quarantine.** An operator whose stored templates fail their checksum
//! (the store's [`ChangeKind::Damaged`]) or do not decode is quarantined:
//! taken out of the matcher, named in an error in the log, in the metric
//! `kubevision_gallery_quarantined{operator_id}` and in GalleryStatus,
//! while everyone else is served (one damaged row used to stop the whole
//! service at start, issue 22). Enrolling them again, replacing their
//! templates or removing them lifts it.
//!
//! **Wolves.** The matcher holds the gallery recogniser's templates; a
//! second matcher on the CPU holds the other recogniser's, so that an
//! operator's templates of every kind are checked for wolves together
//! ([`crate::wolf`]). Operators applied while the gallery held no more
//! others than the wolf limit (where no wolf can show) are checked again
//! each time the number of others has doubled, until [`WATCH_UNTIL`], and a
//! wolf found is quarantined.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use vision::lbph::LbphParams;

use vision::embedding::Embedding;
use vision::lbph::Template;
use vision::recogniser::Kind;

use crate::backend::{ActiveBackend, BackendError, CpuBackend, EmbeddingBackend, MatchBackend};
use crate::metrics::Metrics;
use crate::store::{
    Change, ChangeKind, Committed, GalleryStore, StoreError, StoreStatus, UpdateMode,
};
use crate::wolf::{self, Candidate, Wolf, WolfRule, WATCH_UNTIL};
use vision::template::AnyTemplate;

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the gallery's copy in the matcher could not be updated: {0}")]
    Backend(#[from] BackendError),
    #[error("stored template {index} of operator {operator_id:?} is unreadable: {source}")]
    CorruptTemplate {
        operator_id: String,
        index: usize,
        source: vision::Error,
    },
    /// The store holds another gallery than the one this replica loaded (its
    /// database was emptied or replaced): nothing of it is applied.
    #[error("the gallery store now holds gallery {now}, not gallery {was} that this replica has loaded: it was emptied or replaced; not applying it (restore the store, or restart the replicas to serve the new gallery)")]
    GalleryReplaced { was: String, now: String },
}

#[derive(Default)]
struct Ids {
    by_label: HashMap<i32, Arc<str>>,
    by_operator: HashMap<Arc<str>, i32>,
    /// Operators not served, each with why (see "Quarantine" above).
    quarantined: BTreeMap<String, String>,
}

pub struct OperatorGallery {
    store: Arc<dyn GalleryStore>,
    backend: ActiveBackend,
    /// Every operator's LBPH and dlib templates: one of them is `backend`,
    /// the other a CPU matcher for the wolf check only.
    lbph: Arc<dyn MatchBackend>,
    dlib: Arc<dyn MatchBackend<Embedding>>,
    wolf_rule: WolfRule,
    /// Operators to check for wolves again as the gallery grows: label →
    /// the number of other operators they were last checked among.
    watched: Mutex<HashMap<i32, usize>>,
    params: LbphParams,
    ids: RwLock<Ids>,
    /// The version of the latest change applied to the matcher.
    version: AtomicU64,
    /// The store's identity, learned at the first catch-up.
    gallery_id: OnceLock<String>,
    /// Serialises catch-ups, the only writers of the matcher and `ids`.
    applying: Mutex<()>,
    /// The newest version the store is known to have (for the lag metric).
    store_head: AtomicU64,
    /// Becomes true at the first complete catch-up.
    caught_up: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl OperatorGallery {
    /// An empty LBPH copy of `store`; nothing is read until the first
    /// catch-up.
    pub fn new(
        store: Arc<dyn GalleryStore>,
        backend: Arc<dyn MatchBackend>,
        params: LbphParams,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_backend(store, ActiveBackend::Lbph(backend), params, metrics)
    }

    /// An empty copy of `store` matched by `backend`, of the recogniser
    /// the backend is of.
    pub fn with_backend(
        store: Arc<dyn GalleryStore>,
        backend: ActiveBackend,
        params: LbphParams,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.backend.with_label_values(&[backend.name()]).set(1);
        type Matchers = (
            Arc<dyn MatchBackend>,
            Arc<dyn MatchBackend<Embedding>>,
            Kind,
        );
        let (lbph, dlib, gallery_kind): Matchers = match &backend {
            ActiveBackend::Lbph(b) => (b.clone(), Arc::new(EmbeddingBackend::new()), Kind::Lbph),
            ActiveBackend::Dlib(b) => (Arc::new(CpuBackend::new(params)), b.clone(), Kind::Dlib),
        };
        Self {
            store,
            backend,
            lbph,
            dlib,
            wolf_rule: WolfRule {
                gallery_kind,
                accept_threshold: gallery_kind.default_threshold(),
                limit: crate::config::DEFAULT_MAX_WOLF_MATCHES,
            },
            watched: Mutex::default(),
            params,
            ids: RwLock::default(),
            version: AtomicU64::new(0),
            gallery_id: OnceLock::new(),
            applying: Mutex::new(()),
            store_head: AtomicU64::new(0),
            caught_up: watch::channel(false).0,
            metrics,
        }
    }

    /// The wolf rule (default: the recogniser's calibrated threshold and
    /// the default limit).
    pub fn with_wolf_rule(mut self, rule: WolfRule) -> Self {
        self.wolf_rule = rule;
        self
    }

    /// Checks one operator's templates for a wolf (see [`crate::wolf`]):
    /// `lbph` and `dlib`, named by `name`, and when `with_stored` (an
    /// update that appends) the templates the store holds for them.
    pub fn find_wolf(
        &self,
        operator_id: &str,
        lbph: &[Template],
        dlib: &[Embedding],
        name: &dyn Fn(Kind, usize) -> String,
        with_stored: bool,
    ) -> Result<Option<Wolf>, GalleryError> {
        let (mut all_lbph, mut all_dlib) = (lbph.to_vec(), dlib.to_vec());
        if with_stored {
            let stored = self.store.templates_of(operator_id)?.unwrap_or_default();
            self.decode_into(operator_id, &stored, &mut all_lbph, &mut all_dlib)?;
        }
        let name = |kind: Kind, index: usize| {
            let sent = match kind {
                Kind::Lbph => lbph.len(),
                Kind::Dlib => dlib.len(),
            };
            if index < sent {
                name(kind, index)
            } else {
                format!("stored {kind} template {}", index - sent)
            }
        };
        self.wolf_among(self.label_of(operator_id), &all_lbph, &all_dlib, &name)
    }

    fn wolf_among(
        &self,
        own: Option<i32>,
        lbph: &[Template],
        dlib: &[Embedding],
        name: &dyn Fn(Kind, usize) -> String,
    ) -> Result<Option<Wolf>, GalleryError> {
        let candidate = Candidate {
            lbph,
            dlib,
            name,
            own,
        };
        Ok(wolf::check(
            self.lbph.as_ref(),
            self.dlib.as_ref(),
            &candidate,
            &self.wolf_rule,
        )?)
    }

    /// Decodes stored templates by their own kind.
    fn decode_into(
        &self,
        operator_id: &str,
        templates: &[Vec<u8>],
        lbph: &mut Vec<Template>,
        dlib: &mut Vec<Embedding>,
    ) -> Result<(), GalleryError> {
        for (index, bytes) in templates.iter().enumerate() {
            match AnyTemplate::decode(bytes, &self.params) {
                Ok(AnyTemplate::Lbph(t)) => lbph.push(t),
                Ok(AnyTemplate::Dlib(e)) => dlib.push(*e),
                Err(source) => {
                    return Err(GalleryError::CorruptTemplate {
                        operator_id: operator_id.to_owned(),
                        index,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Checks the watched operators again whose number of other operators
    /// has doubled since their last check, and quarantines a wolf found.
    /// Called at the end of every catch-up that applied a change.
    fn recheck_wolves(&self) {
        let others = self.ids().by_label.len().saturating_sub(1);
        let limit = self.wolf_rule.limit;
        if others <= limit {
            return;
        }
        let due: Vec<i32> = {
            let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            watched
                .iter()
                .filter(|(_, &among)| others >= 2 * among.max(1))
                .map(|(&label, _)| label)
                .collect()
        };
        for label in due {
            let Some(operator_id) = self.operator_of(label) else {
                continue;
            };
            let found = self
                .store
                .templates_of(&operator_id)
                .map_err(GalleryError::from)
                .and_then(|stored| {
                    let (mut lbph, mut dlib) = (Vec::new(), Vec::new());
                    self.decode_into(
                        &operator_id,
                        &stored.unwrap_or_default(),
                        &mut lbph,
                        &mut dlib,
                    )?;
                    let name = |kind: Kind, index: usize| format!("{kind} template {index}");
                    self.wolf_among(Some(label), &lbph, &dlib, &name)
                });
            let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            match found {
                Ok(None) if others >= WATCH_UNTIL => {
                    watched.remove(&label);
                }
                Ok(None) => {
                    watched.insert(label, others);
                }
                Ok(Some(wolf)) => {
                    watched.remove(&label);
                    drop(watched);
                    let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
                    let why = format!(
                        "checked again as the gallery grew to {} operators: {wolf}",
                        others + 1
                    );
                    self.quarantine(&mut ids, &operator_id, why);
                }
                Err(e) => {
                    tracing::warn!(%operator_id, error = %e, "the wolf check of a watched operator failed; trying again at the next change");
                }
            }
        }
    }

    pub fn params(&self) -> &LbphParams {
        &self.params
    }

    pub fn backend(&self) -> &ActiveBackend {
        &self.backend
    }

    pub fn store(&self) -> &dyn GalleryStore {
        self.store.as_ref()
    }

    /// The version of the latest applied change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Whether the first catch-up has completed (the replica may serve).
    pub fn is_caught_up(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Resolves once the first catch-up has completed.
    pub fn caught_up(&self) -> watch::Receiver<bool> {
        self.caught_up.subscribe()
    }

    /// The store's status; while the store is unreachable, this replica's
    /// own view of it (which is what identifications are answered from).
    pub fn status(&self) -> Result<StoreStatus, GalleryError> {
        match self.store.status() {
            Err(StoreError::Unavailable(why)) => match self.gallery_id.get() {
                Some(gallery_id) => {
                    tracing::debug!(%why, "gallery status from memory: the store is unavailable");
                    Ok(StoreStatus {
                        gallery_id: gallery_id.clone(),
                        version: self.version(),
                        operators: self.ids().by_label.len(),
                        templates: self.backend.template_count(),
                    })
                }
                None => Err(StoreError::Unavailable(why).into()),
            },
            other => Ok(other?),
        }
    }

    /// The quarantined operators, each with why, in operator order.
    pub fn quarantined(&self) -> Vec<(String, String)> {
        let ids = self.ids();
        ids.quarantined
            .iter()
            .map(|(id, why)| (id.clone(), why.clone()))
            .collect()
    }

    pub fn label_of(&self, operator_id: &str) -> Option<i32> {
        self.ids().by_operator.get(operator_id).copied()
    }

    /// Every enrolled operator's id, in no order.
    pub fn operator_ids(&self) -> Vec<Arc<str>> {
        self.ids().by_operator.keys().cloned().collect()
    }

    /// The operator behind a backend label (None if removed meanwhile).
    pub fn operator_of(&self, label: i32) -> Option<Arc<str>> {
        self.ids().by_label.get(&label).cloned()
    }

    /// `actor`: the caller's identity, kept in the store's change log.
    /// `templates`: encoded, of any kind (checked by the caller).
    pub fn enroll(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        profile: Option<&[u8]>,
    ) -> Result<Committed, GalleryError> {
        self.change(|store| store.enroll(actor, operator_id, templates, profile))
    }

    pub fn update(
        &self,
        actor: &str,
        operator_id: &str,
        templates: &[Vec<u8>],
        mode: UpdateMode,
        profile: Option<&[u8]>,
    ) -> Result<Committed, GalleryError> {
        self.change(|store| store.update(actor, operator_id, templates, mode, profile))
    }

    pub fn remove(&self, actor: &str, operator_id: &str) -> Result<Committed, GalleryError> {
        self.change(|store| store.remove(actor, operator_id))
    }

    /// Commits a change to the store, then brings the matcher up to it. The
    /// change is acknowledged once committed: if the catch-up fails (the
    /// store went away in between), the follower applies it later.
    fn change(
        &self,
        commit: impl FnOnce(&dyn GalleryStore) -> Result<Committed, StoreError>,
    ) -> Result<Committed, GalleryError> {
        let committed = commit(self.store.as_ref())?;
        self.store_head
            .fetch_max(committed.version, Ordering::AcqRel);
        if self.version() < committed.version {
            if let Err(e) = self.catch_up() {
                tracing::warn!(error = %e, version = committed.version,
                    "committed, but not yet applied here; the follower will retry");
            }
        }
        Ok(committed)
    }

    /// Applies every change the store has after this replica's version, and
    /// returns the version reached.
    pub fn catch_up(&self) -> Result<u64, GalleryError> {
        let _applying = self.applying.lock().unwrap_or_else(|p| p.into_inner());
        let since = self.version();
        let mut applied = since;
        let mut newest_at: Option<SystemTime> = None;
        let mut failure = None;
        let mut on_change = |change: Change| match self.apply(&change) {
            Ok(()) => {
                applied = change.version;
                newest_at = change.committed_at.or(newest_at);
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        };
        // Once the gallery is known, changes wait until the snapshot's
        // gallery_id is checked: a store emptied or replaced behind this
        // replica's back is reported, never loaded over the gallery it has.
        let known = self.gallery_id.get().cloned();
        let mut held = Vec::new();
        let read = self.store.changes_since(since, &mut |change| {
            if known.is_some() {
                held.push(change);
                true
            } else {
                on_change(change)
            }
        });
        if let (Ok(status), Some(was)) = (&read, known) {
            if status.gallery_id != was {
                let now = status.gallery_id.clone();
                tracing::error!(%was, %now, "the gallery store holds another gallery: not applying it; still serving the one loaded");
                self.metrics.store_connected.set(0);
                return Err(GalleryError::GalleryReplaced { was, now });
            }
            for change in held {
                if !on_change(change) {
                    break;
                }
            }
        }
        let outcome = match (read, failure) {
            (Ok(status), None) => {
                let _ = self.gallery_id.set(status.gallery_id);
                self.store_head.fetch_max(status.version, Ordering::AcqRel);
                applied = applied.max(status.version);
                Ok(applied)
            }
            (_, Some(e)) => Err(e),
            (Err(e), None) => Err(e.into()),
        };
        // What was applied stays applied, even when the read broke off.
        self.version.store(applied, Ordering::Release);
        if applied > since {
            self.recheck_wolves();
        }
        self.publish(newest_at, applied > since);
        if outcome.is_ok() && !self.is_caught_up() {
            self.caught_up.send_replace(true);
            tracing::info!(
                version = applied,
                store = self.store.kind(),
                "gallery caught up"
            );
        }
        outcome
    }

    /// Applies one change to the matcher and the id maps. A damaged
    /// operator is quarantined, not an error: the rest still applies.
    fn apply(&self, change: &Change) -> Result<(), GalleryError> {
        let operator_id = change.operator_id.as_str();
        let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
        match &change.kind {
            ChangeKind::Damaged { index, .. } => {
                let why = StoreError::Corrupt {
                    operator_id: operator_id.to_owned(),
                    index: *index,
                };
                self.quarantine(&mut ids, operator_id, why.to_string());
            }
            ChangeKind::Upsert {
                label, templates, ..
            } => {
                // Every template checked by its own kind; the gallery's
                // kind kept for the matcher.
                let (mut lbph, mut dlib) = (Vec::new(), Vec::new());
                if let Err(why) = self.decode_into(operator_id, templates, &mut lbph, &mut dlib) {
                    self.quarantine(&mut ids, operator_id, why.to_string());
                    return Ok(());
                }
                self.release(&mut ids, operator_id);
                // Removed and enrolled again: the store gave them a new label.
                let known = ids.by_operator.get(operator_id).copied();
                let others = ids.by_label.len() - usize::from(known.is_some());
                if let Some(old) = known {
                    if old != *label {
                        self.remove_label(old);
                        ids.by_label.remove(&old);
                    }
                }
                self.lbph.update_label(*label, lbph, true)?;
                self.dlib.update_label(*label, dlib, true)?;
                // Checked (by whichever replica took the change) among the
                // others there are now: watched while they are few.
                // Among `limit` or fewer others the check could not tell a
                // wolf: watched until the gallery has grown.
                let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                if others <= self.wolf_rule.limit {
                    watched.insert(*label, others);
                } else {
                    watched.remove(label);
                }
                drop(watched);
                let id: Arc<str> = operator_id.into();
                ids.by_label.insert(*label, id.clone());
                ids.by_operator.insert(id, *label);
            }
            ChangeKind::Removal => {
                self.release(&mut ids, operator_id);
                if let Some(label) = ids.by_operator.remove(operator_id) {
                    self.remove_label(label);
                    ids.by_label.remove(&label);
                }
            }
        }
        Ok(())
    }

    /// Removes `label` from both matchers and the watch list.
    fn remove_label(&self, label: i32) {
        self.lbph.remove_label(label);
        self.dlib.remove_label(label);
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&label);
    }

    /// Takes `operator_id` out of the matcher and records why.
    fn quarantine(&self, ids: &mut Ids, operator_id: &str, why: String) {
        if let Some(label) = ids.by_operator.remove(operator_id) {
            self.remove_label(label);
            ids.by_label.remove(&label);
        }
        tracing::error!(operator_id, %why, "operator quarantined: their stored templates are damaged; not serving them, serving everyone else");
        self.metrics
            .gallery_quarantined
            .with_label_values(&[operator_id])
            .set(1);
        ids.quarantined.insert(operator_id.to_owned(), why);
    }

    /// Lifts a quarantine (the operator was enrolled again, replaced or removed).
    fn release(&self, ids: &mut Ids, operator_id: &str) {
        if ids.quarantined.remove(operator_id).is_some() {
            tracing::info!(operator_id, "operator out of quarantine");
            let _ = self
                .metrics
                .gallery_quarantined
                .remove_label_values(&[operator_id]);
        }
    }

    /// Keeps the matcher following the store until the gallery is dropped:
    /// a thread that listens to the store's change feed, catches up on every
    /// announcement and every `period`, and reconnects after failures.
    pub fn follow(self: &Arc<Self>, period: Duration) -> std::thread::JoinHandle<()> {
        let gallery = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("gallery-follower".into())
            .spawn(move || follow(gallery, period))
            .expect("a thread can be started")
    }

    fn ids(&self) -> std::sync::RwLockReadGuard<'_, Ids> {
        self.ids.read().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, newest_at: Option<SystemTime>, applied_any: bool) {
        let m = &self.metrics;
        let version = self.version();
        m.gallery_operators.set(self.ids().by_label.len() as i64);
        m.gallery_templates
            .set(self.backend.template_count() as i64);
        m.gallery_applied_version.set(version as i64);
        let head = self.store_head.load(Ordering::Acquire);
        m.gallery_lag_versions
            .set(head.saturating_sub(version) as i64);
        if applied_any {
            let lag = newest_at
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .unwrap_or_default();
            m.gallery_lag_seconds.set(lag.as_secs_f64());
        } else if head <= version {
            m.gallery_lag_seconds.set(0.0);
        }
    }
}

/// The follower's loop; ends when the gallery is dropped.
fn follow(gallery: Weak<OperatorGallery>, period: Duration) {
    let mut backoff = Duration::from_millis(200);
    let mut connected = None::<bool>;
    loop {
        let Some(g) = gallery.upgrade() else { return };
        let feed = g.store.watch();
        let mut feed = match feed {
            Ok(feed) => feed,
            Err(e) => {
                if connected != Some(false) {
                    tracing::warn!(error = %e, "gallery store unreachable; identifying from memory, retrying");
                    connected = Some(false);
                }
                g.metrics.store_connected.set(0);
                drop(g);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(period.max(Duration::from_millis(200)));
                continue;
            }
        };
        // Listening first, then catching up: nothing committed in between
        // can be missed.
        g.metrics.store_connected.set(1);
        if connected != Some(true) {
            tracing::info!(store = g.store.kind(), "following the gallery store");
            connected = Some(true);
        }
        backoff = Duration::from_millis(200);
        drop(g);
        loop {
            let Some(g) = gallery.upgrade() else { return };
            if let Err(e) = g.catch_up() {
                tracing::warn!(error = %e, "gallery catch-up failed");
                if matches!(e, GalleryError::Store(StoreError::Unavailable(_))) {
                    break;
                }
            }
            drop(g);
            match feed.wait(period) {
                Ok(Some(version)) => {
                    if let Some(g) = gallery.upgrade() {
                        g.store_head.fetch_max(version, Ordering::AcqRel);
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}
