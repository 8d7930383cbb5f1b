//! Recognition on the offload service. Each frame goes to the service as a
//! raw normalised crop and comes back as the nearest operator; the worker
//! still applies the burst rule, so a decision is made the same way
//! whichever backend matched the frames.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kubevision_offload_client::proto::{frame, Frame, IdentifyRequest, RawFaceCrop, VerifyRequest};
use kubevision_offload_client::{ClientConfig, ClientError, OffloadClient, TlsSettings};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tonic::Code;
use vision::lbph::Match;
use vision::GrayImage;

use super::sync::{self, SyncPolicy};
use super::{Backend, BackendError};
use crate::settings::Settings;
use crate::store::{Secrets, SyncStore};
use crate::store_worker::label_of;

pub const OFFLOAD: &str = "offload";

/// The client configuration from the kiosk's settings (TLS files read here).
pub fn client_config(settings: &Settings) -> Result<ClientConfig, BackendError> {
    let mut config = ClientConfig::new(settings.offload_endpoint.trim());
    let read = |path: &str| {
        std::fs::read(path).map_err(|source| BackendError::TlsFile {
            path: path.into(),
            source,
        })
    };
    if !settings.tls_ca.trim().is_empty() {
        let client_identity_pem = match (settings.tls_cert.trim(), settings.tls_key.trim()) {
            ("", _) | (_, "") => None,
            (cert, key) => Some((read(cert)?, read(key)?)),
        };
        config.tls = Some(TlsSettings {
            ca_pem: read(settings.tls_ca.trim())?,
            client_identity_pem,
            domain: None,
        });
    }
    Ok(config)
}

fn raw_frame(crop: &GrayImage) -> Frame {
    Frame {
        content: Some(frame::Content::RawFaceCrop(RawFaceCrop {
            width: crop.width(),
            height: crop.height(),
            pixels: crop.as_raw().clone().into(),
        })),
    }
}

pub struct OffloadBackend {
    /// Created once, off the UI thread; the worker thread blocks on it.
    /// Multi-threaded (one worker) so that the client's connection task
    /// and the sync task run while the worker is between frames.
    pub(super) runtime: Runtime,
    pub(super) client: OffloadClient,
    /// Caps each sign-in call; `None`: the client's own deadlines.
    deadline: Option<Duration>,
    /// The directory of personnel numbers, and the local gallery for the fallback.
    pub(super) store: SyncStore,
    /// Wakes the background sync (the local gallery changed).
    wake: Arc<Notify>,
    /// Bumped by the sync when it changed the local gallery.
    pub(super) generation: Arc<AtomicU64>,
    /// The service names operators by personnel number, the worker by label.
    labels: HashMap<String, i32>,
    personnel_nos: HashMap<i32, String>,
}

impl OffloadBackend {
    /// `db` is the kiosk's store, for personnel numbers; the connection is
    /// made on first use, so the kiosk starts while the service is down.
    /// Starts the background sync with the plant-wide gallery on the
    /// backend's runtime; it stops when the backend is dropped.
    pub fn connect(
        config: ClientConfig,
        db: &Path,
        secrets: &Secrets,
        deadline: Option<Duration>,
        sync: SyncPolicy,
    ) -> Result<Self, BackendError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("offload")
            .enable_all()
            .build()
            .map_err(BackendError::Runtime)?;
        // The lazy channel spawns its connection task on the current runtime.
        let client = {
            let _inside = runtime.enter();
            OffloadClient::new(config)?
        };
        let wake = Arc::new(Notify::new());
        let generation = Arc::new(AtomicU64::new(0));
        runtime.spawn(sync::run(
            SyncStore::open(db, secrets.clone())?,
            client.clone(),
            sync,
            Arc::clone(&wake),
            Arc::clone(&generation),
        ));
        let mut backend = OffloadBackend {
            runtime,
            client,
            deadline,
            store: SyncStore::open(db, secrets.clone())?,
            wake,
            generation,
            labels: HashMap::new(),
            personnel_nos: HashMap::new(),
        };
        backend.reload_directory()?;
        Ok(backend)
    }

    fn reload_directory(&mut self) -> Result<(), BackendError> {
        let entries: Vec<(i32, String)> = self
            .store
            .directory()?
            .into_iter()
            .map(|(id, personnel_no)| (label_of(id), personnel_no))
            .collect();
        self.personnel_nos = entries.iter().cloned().collect();
        self.labels = entries.into_iter().map(|(l, p)| (p, l)).collect();
        Ok(())
    }

    fn call<T>(
        &self,
        deadline: Option<Duration>,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, BackendError> {
        self.runtime.block_on(async {
            match deadline {
                Some(d) => tokio::time::timeout(d, call)
                    .await
                    .map_err(|_| BackendError::Deadline(d))?
                    .map_err(Into::into),
                None => call.await.map_err(Into::into),
            }
        })
    }

    /// Pushes the queued changes and pulls the service's, now, waiting for
    /// the result (the background sync does the same on its own schedule).
    pub fn sync_now(&mut self) -> Result<(), BackendError> {
        let changed = self
            .runtime
            .block_on(sync::sync_once(&mut self.store, &self.client))?;
        if changed {
            self.generation.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// An operator enrolled since the last look (e.g. by a sync) is looked up again.
    fn lookup<K: Eq + std::hash::Hash, V: Clone>(
        &mut self,
        map: fn(&Self) -> &HashMap<K, V>,
        key: &K,
    ) -> Result<Option<V>, BackendError> {
        if !map(self).contains_key(key) {
            self.reload_directory()?;
        }
        Ok(map(self).get(key).cloned())
    }
}

impl Backend for OffloadBackend {
    fn name(&self) -> &'static str {
        OFFLOAD
    }

    /// The service holds the gallery; only who is who may have changed,
    /// and the service should hear of it soon.
    fn set_gallery(&mut self, _entries: &[(i32, Vec<u8>)]) -> Result<(), BackendError> {
        self.wake.notify_one();
        self.reload_directory()
    }

    fn identify(&mut self, crop: &GrayImage) -> Result<Option<Match>, BackendError> {
        let request = IdentifyRequest {
            frames: vec![raw_frame(crop)],
            max_candidates: 1,
            // The trait wants the nearest whatever the distance: the burst
            // rule applies the kiosk's threshold.
            threshold: Some(f64::MAX),
            min_usable_frames: 1,
        };
        let answer = self.call(self.deadline, self.client.identify(request))?;
        let Some(nearest) = answer.frames.first().and_then(|f| f.candidates.first()) else {
            return Ok(None);
        };
        // Someone this kiosk has no record of yet (the next sync brings them)
        // cannot sign in here: no match.
        let label = self.lookup(|b| &b.labels, &nearest.operator_id)?;
        Ok(label.map(|label| Match {
            label,
            distance: nearest.distance,
        }))
    }

    fn verify(&mut self, crop: &GrayImage, label: i32) -> Result<Option<f64>, BackendError> {
        let Some(operator_id) = self.lookup(|b| &b.personnel_nos, &label)? else {
            return Ok(None);
        };
        let request = VerifyRequest {
            operator_id,
            frames: vec![raw_frame(crop)],
            threshold: None,
            min_usable_frames: 1,
        };
        match self.call(self.deadline, self.client.verify(request)) {
            Ok(answer) => Ok(answer
                .frames
                .first()
                .and_then(|f| f.candidates.first())
                .map(|c| c.distance)),
            Err(BackendError::Offload(e)) if e.code() == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
