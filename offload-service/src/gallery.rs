//! The gallery as the service sees it: the SQLite store, the matching
//! backend's copy of the templates, and operator ids ↔ backend labels, kept
//! in step.
//!
//! A change is committed to SQLite first and applied to the backend second,
//! under one lock, so the backend always equals the store's latest state and
//! sees changes in the store's order. At start-up the backend is loaded from
//! the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use vision::lbph::{LbphParams, Template};

use crate::backend::{BackendError, MatchBackend};
use crate::metrics::Metrics;
use crate::store::{Committed, GalleryStore, StoreError, StoreStatus, UpdateMode};

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
}

#[derive(Default)]
struct Ids {
    by_label: HashMap<i32, Arc<str>>,
    by_operator: HashMap<Arc<str>, i32>,
}

pub struct OperatorGallery {
    store: GalleryStore,
    backend: Arc<dyn MatchBackend>,
    params: LbphParams,
    gallery_id: String,
    ids: RwLock<Ids>,
    version: AtomicU64,
    /// Serialises changes across store and backend.
    changing: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl OperatorGallery {
    /// Loads every stored template into `backend`.
    pub fn load(
        store: GalleryStore,
        backend: Arc<dyn MatchBackend>,
        params: LbphParams,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GalleryError> {
        let mut ids = Ids::default();
        for op in store.load_all()? {
            let templates = op
                .templates
                .iter()
                .enumerate()
                .map(|(index, bytes)| {
                    Template::from_bytes(bytes).map_err(|source| GalleryError::CorruptTemplate {
                        operator_id: op.operator_id.clone(),
                        index,
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            backend.update_label(op.label, templates, true)?;
            let id: Arc<str> = op.operator_id.into();
            ids.by_label.insert(op.label, id.clone());
            ids.by_operator.insert(id, op.label);
        }
        let status = store.status()?;
        metrics.backend.with_label_values(&[backend.name()]).set(1);
        let gallery = Self {
            store,
            backend,
            params,
            gallery_id: status.gallery_id,
            ids: RwLock::new(ids),
            version: AtomicU64::new(status.version),
            changing: Mutex::new(()),
            metrics,
        };
        gallery.publish_size();
        Ok(gallery)
    }

    pub fn params(&self) -> &LbphParams {
        &self.params
    }

    pub fn backend(&self) -> &Arc<dyn MatchBackend> {
        &self.backend
    }

    pub fn store(&self) -> &GalleryStore {
        &self.store
    }

    /// The store's identity (fixed when it was created).
    pub fn gallery_id(&self) -> &str {
        &self.gallery_id
    }

    /// The version of the latest applied change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn status(&self) -> Result<StoreStatus, GalleryError> {
        Ok(self.store.status()?)
    }

    pub fn label_of(&self, operator_id: &str) -> Option<i32> {
        self.ids().by_operator.get(operator_id).copied()
    }

    /// The operator behind a backend label (None if removed meanwhile).
    pub fn operator_of(&self, label: i32) -> Option<Arc<str>> {
        self.ids().by_label.get(&label).cloned()
    }

    pub fn enroll(
        &self,
        operator_id: &str,
        templates: Vec<Template>,
        profile: Option<&[u8]>,
    ) -> Result<Committed, GalleryError> {
        let encoded = encode(&templates);
        self.change(
            |store| store.enroll(operator_id, &encoded, profile),
            |backend, c| backend.update_label(c.label, templates, true),
            |ids, c| {
                let id: Arc<str> = operator_id.into();
                ids.by_label.insert(c.label, id.clone());
                ids.by_operator.insert(id, c.label);
            },
        )
    }

    pub fn update(
        &self,
        operator_id: &str,
        templates: Vec<Template>,
        mode: UpdateMode,
        profile: Option<&[u8]>,
    ) -> Result<Committed, GalleryError> {
        let encoded = encode(&templates);
        self.change(
            |store| store.update(operator_id, &encoded, mode, profile),
            |backend, c| backend.update_label(c.label, templates, mode == UpdateMode::Replace),
            |_, _| {},
        )
    }

    pub fn remove(&self, operator_id: &str) -> Result<Committed, GalleryError> {
        self.change(
            |store| store.remove(operator_id),
            |backend, c| {
                backend.remove_label(c.label);
                Ok(())
            },
            |ids, c| {
                ids.by_label.remove(&c.label);
                ids.by_operator.remove(operator_id);
            },
        )
    }

    fn change(
        &self,
        commit: impl FnOnce(&GalleryStore) -> Result<Committed, StoreError>,
        apply: impl FnOnce(&dyn MatchBackend, &Committed) -> Result<(), BackendError>,
        rename: impl FnOnce(&mut Ids, &Committed),
    ) -> Result<Committed, GalleryError> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let committed = commit(&self.store)?;
        apply(self.backend.as_ref(), &committed)?;
        rename(
            &mut self.ids.write().unwrap_or_else(|p| p.into_inner()),
            &committed,
        );
        self.version.store(committed.version, Ordering::Release);
        self.publish_size();
        Ok(committed)
    }

    fn ids(&self) -> std::sync::RwLockReadGuard<'_, Ids> {
        self.ids.read().unwrap_or_else(|p| p.into_inner())
    }

    fn publish_size(&self) {
        self.metrics
            .gallery_operators
            .set(self.ids().by_label.len() as i64);
        self.metrics
            .gallery_templates
            .set(self.backend.template_count() as i64);
    }
}

fn encode(templates: &[Template]) -> Vec<Vec<u8>> {
    templates.iter().map(Template::to_bytes).collect()
}
