//! Offload first, local when the service does not answer in time: the
//! operator signs in either way, and the badge says which one answered.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kubevision_offload_client::ClientConfig;
use vision::lbph::{LbphParams, Match};
use vision::GrayImage;

use super::offload::OffloadBackend;
use super::sync::SyncPolicy;
use super::{Backend, BackendError, LocalBackend};
use crate::store::Secrets;
use crate::store_worker::labelled;

#[derive(Debug, Clone, Copy)]
pub struct FallbackConfig {
    /// How long one frame may wait for the service before local answers.
    /// Settings has no field for it: 300 ms keeps a five-frame burst within
    /// the sign-in budget even when every frame times out before the
    /// client's circuit breaker opens.
    pub deadline: Duration,
    pub sync: SyncPolicy,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        FallbackConfig {
            deadline: Duration::from_millis(300),
            sync: SyncPolicy::default(),
        }
    }
}

pub struct FallbackBackend {
    offload: OffloadBackend,
    local: LocalBackend,
    /// Which backend answered the latest frame.
    answered: &'static str,
    /// The sync's generation the local gallery was last built at.
    seen: u64,
}

impl FallbackBackend {
    /// The local gallery is the store's, which the offload backend's
    /// background sync keeps in step with the plant-wide gallery.
    pub fn start(
        client: ClientConfig,
        db: &Path,
        secrets: &Secrets,
        params: LbphParams,
        config: FallbackConfig,
    ) -> Result<Self, BackendError> {
        let offload =
            OffloadBackend::connect(client, db, secrets, Some(config.deadline), config.sync)?;
        let mut local = LocalBackend::new(params);
        local.set_gallery(&local_gallery(&offload)?)?;
        Ok(FallbackBackend {
            offload,
            local,
            answered: super::LOCAL,
            seen: 0,
        })
    }

    /// Syncs with the plant-wide gallery now, waiting for the result.
    pub fn sync_now(&mut self) -> Result<(), BackendError> {
        self.offload.sync_now()
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
                let now = self.offload.generation.load(Ordering::Acquire);
                if now != self.seen {
                    self.local.set_gallery(&local_gallery(&self.offload)?)?;
                    self.seen = now;
                }
                self.answered = super::LOCAL;
                local(&mut self.local)
            }
            Err(e) => Err(e),
        }
    }
}

impl Backend for FallbackBackend {
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

fn local_gallery(offload: &OffloadBackend) -> Result<Vec<(i32, Vec<u8>)>, BackendError> {
    Ok(labelled(offload.store.gallery()?))
}
