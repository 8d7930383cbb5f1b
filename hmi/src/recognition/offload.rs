//! Recognition on the offload service. A burst goes to the service in one
//! call, with the kiosk's threshold and frame count: for lbph as raw
//! normalised crops, for dlib as the probe templates (embeddings) the
//! kiosk made from its frames (`Frame.template`: dlib's alignment needs
//! the whole frame). The service's decision is the kiosk's.

use std::future::Future;
use std::time::Duration;

use kubevision_offload_client::proto::{frame, Frame, IdentifyRequest, RawFaceCrop, VerifyRequest};
use kubevision_offload_client::{ClientConfig, ClientError, OffloadClient};
use tokio::runtime::Runtime;
use tonic::Code;
use vision::burst::BurstRule;
use vision::recogniser::Kind;

use super::{Backend, BackendError, Decision, Probe};

pub const OFFLOAD: &str = "offload";

/// A probe in the form the proto has for `kind`.
fn frame(kind: Kind, probe: &Probe) -> Result<Frame, BackendError> {
    let content = match kind {
        Kind::Lbph => frame::Content::RawFaceCrop(RawFaceCrop {
            width: probe.crop.width(),
            height: probe.crop.height(),
            pixels: probe.crop.as_raw().clone().into(),
        }),
        Kind::Dlib => frame::Content::Template(probe.embedding()?.to_bytes().into()),
    };
    Ok(Frame {
        content: Some(content),
    })
}

pub struct OffloadBackend {
    /// Created once, off the UI thread; the worker thread blocks on it.
    /// One worker thread, so the client's connection task runs while the
    /// recogniser is between bursts.
    runtime: Runtime,
    client: OffloadClient,
    /// Caps each call; `None`: the client's own deadlines.
    deadline: Option<Duration>,
    /// The recogniser whose probes are sent.
    kind: Kind,
}

impl OffloadBackend {
    /// The connection is made on first use, so the kiosk starts while the
    /// service is down.
    pub fn connect(
        config: ClientConfig,
        deadline: Option<Duration>,
        kind: Kind,
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
        Ok(OffloadBackend {
            runtime,
            client,
            deadline,
            kind,
        })
    }

    fn call<T>(
        &self,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, BackendError> {
        self.runtime.block_on(async {
            match self.deadline {
                Some(d) => tokio::time::timeout(d, call)
                    .await
                    .map_err(|_| BackendError::Deadline(d))?
                    .map_err(Into::into),
                None => call.await.map_err(Into::into),
            }
        })
    }

    fn frames(&self, burst: &[Probe]) -> Result<Vec<Frame>, BackendError> {
        burst.iter().map(|p| frame(self.kind, p)).collect()
    }
}

/// The kiosk's frame count as the request carries it (the request carries
/// the whole rule: threshold, frames and agreement share, so that the
/// service decides as the kiosk's local path would).
fn min_usable(rule: &BurstRule, burst: &[Probe]) -> u32 {
    rule.min_frames.clamp(1, burst.len().max(1)) as u32
}

impl Backend for OffloadBackend {
    fn name(&self) -> &'static str {
        OFFLOAD
    }

    /// The service holds the plant-wide gallery.
    fn set_gallery(&mut self, _entries: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        Ok(())
    }

    fn identify(&mut self, burst: &[Probe], rule: &BurstRule) -> Result<Decision, BackendError> {
        let request = IdentifyRequest {
            frames: self.frames(burst)?,
            max_candidates: 1,
            threshold: Some(rule.threshold),
            min_usable_frames: min_usable(rule, burst),
            min_agreement: Some(rule.min_agreement),
        };
        let answer = self.call(self.client.identify(request))?;
        Ok(if answer.identified {
            Decision {
                accepted: Some(answer.operator_id),
                distance: answer.distance,
            }
        } else {
            Decision::nobody()
        })
    }

    fn verify(
        &mut self,
        burst: &[Probe],
        personnel_no: &str,
        rule: &BurstRule,
    ) -> Result<Decision, BackendError> {
        let request = VerifyRequest {
            operator_id: personnel_no.to_owned(),
            frames: self.frames(burst)?,
            threshold: Some(rule.threshold),
            min_usable_frames: min_usable(rule, burst),
            min_agreement: Some(rule.min_agreement),
        };
        match self.call(self.client.verify(request)) {
            Ok(answer) => Ok(Decision {
                accepted: answer.verified.then(|| personnel_no.to_owned()),
                distance: if answer.votes > 0 {
                    answer.distance
                } else {
                    f64::INFINITY
                },
            }),
            // Not (yet) in the plant gallery: not this person, as far as the service knows.
            Err(BackendError::Offload(e)) if e.code() == Some(Code::NotFound) => {
                Ok(Decision::nobody())
            }
            Err(e) => Err(e),
        }
    }
}
