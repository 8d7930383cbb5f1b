//! Offload first, local when the service does not answer in time: the
//! operator signs in either way, and the badge says which one answered.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kubevision_offload_client::ClientConfig;
use tokio::sync::Notify;
use vision::lbph::{LbphParams, Match};
use vision::GrayImage;

use super::offload::OffloadBackend;
use super::sync::{self, Change, SyncPolicy, SyncStore};
use super::{Backend, BackendError, LocalBackend};

#[derive(Debug, Clone, Copy)]
pub struct AutoConfig {
    /// How long one frame may wait for the service before local answers.
    /// Settings has no field for it: 300 ms keeps a five-frame burst within
    /// the sign-in budget even when every frame times out before the
    /// client's circuit breaker opens.
    pub deadline: Duration,
    pub sync: SyncPolicy,
}

impl Default for AutoConfig {
    fn default() -> Self {
        AutoConfig {
            deadline: Duration::from_millis(300),
            sync: SyncPolicy::default(),
        }
    }
}

pub struct AutoBackend {
    offload: OffloadBackend,
    local: LocalBackend,
    /// Which backend answered the latest frame.
    answered: &'static str,
    wake: Arc<Notify>,
    /// Bumped by the sync task when the local gallery changed; `seen` is
    /// the value the local gallery was last built at.
    generation: Arc<AtomicU64>,
    seen: u64,
}

impl AutoBackend {
    /// Starts the background sync on the backend's runtime; it stops when
    /// the backend is dropped.
    pub fn start(
        client: ClientConfig,
        db: &Path,
        params: LbphParams,
        config: AutoConfig,
    ) -> Result<Self, BackendError> {
        let offload = OffloadBackend::connect(client, db, Some(config.deadline))?;
        let wake = Arc::new(Notify::new());
        let generation = Arc::new(AtomicU64::new(0));
        offload.runtime.spawn(sync::run(
            SyncStore::open(db)?,
            offload.client.clone(),
            config.sync,
            Arc::clone(&wake),
            Arc::clone(&generation),
        ));
        let mut local = LocalBackend::new(params);
        local.set_gallery(&offload.store.gallery()?)?;
        Ok(AutoBackend {
            offload,
            local,
            answered: super::LOCAL,
            wake,
            generation,
            seen: 0,
        })
    }

    /// Queues an enrollment or removal for the service; the sync task
    /// pushes it now if the service answers, else once it is back.
    pub fn submit(&self, change: &Change) -> Result<(), BackendError> {
        self.offload.store.queue(change)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Syncs now, waiting for the result (the background task does the same
    /// on its own schedule).
    pub fn sync_now(&mut self) -> Result<(), BackendError> {
        let client = self.offload.client.clone();
        let store = &mut self.offload.store;
        if self.offload.runtime.block_on(store.sync_once(&client))? {
            self.generation.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    fn answer<T>(
        &mut self,
        offload: impl FnOnce(&mut OffloadBackend) -> Result<T, BackendError>,
        local: impl FnOnce(&mut LocalBackend) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        match offload(&mut self.offload) {
            Ok(answer) => {
                self.answered = super::offload::OFFLOAD;
                Ok(answer)
            }
            Err(e) if e.should_fall_back() => {
                tracing::debug!("recognising locally: {e}");
                let now = self.generation.load(Ordering::Acquire);
                if now != self.seen {
                    self.local.set_gallery(&self.offload.store.gallery()?)?;
                    self.seen = now;
                }
                self.answered = super::LOCAL;
                local(&mut self.local)
            }
            Err(e) => Err(e),
        }
    }
}

impl Backend for AutoBackend {
    fn name(&self) -> &'static str {
        self.answered
    }

    fn set_gallery(&mut self, entries: &[(i32, Vec<u8>)]) -> Result<(), BackendError> {
        self.offload.set_gallery(entries)?;
        self.local.set_gallery(entries)
    }

    fn identify(&mut self, crop: &GrayImage) -> Result<Option<Match>, BackendError> {
        self.answer(|o| o.identify(crop), |l| l.identify(crop))
    }

    fn verify(&mut self, crop: &GrayImage, label: i32) -> Result<Option<f64>, BackendError> {
        self.answer(|o| o.verify(crop, label), |l| l.verify(crop, label))
    }
}
