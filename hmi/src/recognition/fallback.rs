//! Offload first, local when the service does not answer in time: the
//! operator signs in either way, and the badge says which one decided.

use std::time::Duration;

use kubevision_offload_client::ClientConfig;
use vision::burst::BurstRule;
use vision::lbph::LbphParams;
use vision::recogniser::Kind;

use super::offload::OffloadBackend;
use super::{Backend, BackendError, Decision, LocalBackend, Probe};

/// How long one burst may wait for the service before local decides.
/// Settings has no field for it: 1.5 s keeps a sign-in within its budget
/// even when the service hangs, before the client's circuit breaker opens.
pub const FALLBACK_DEADLINE: Duration = Duration::from_millis(1500);

pub struct FallbackBackend {
    offload: OffloadBackend,
    /// The store's gallery (fed by the store worker, which keeps it in
    /// step with the plant-wide gallery).
    local: LocalBackend,
    /// Which backend decided the latest burst.
    answered: &'static str,
}

impl FallbackBackend {
    pub fn start(
        client: ClientConfig,
        kind: Kind,
        params: LbphParams,
        deadline: Duration,
    ) -> Result<Self, BackendError> {
        Ok(FallbackBackend {
            offload: OffloadBackend::connect(client, Some(deadline), kind)?,
            local: LocalBackend::new(kind, params),
            answered: super::LOCAL,
        })
    }

    fn answer(
        &mut self,
        offload: impl FnOnce(&mut OffloadBackend) -> Result<Decision, BackendError>,
        local: impl FnOnce(&mut LocalBackend) -> Result<Decision, BackendError>,
    ) -> Result<Decision, BackendError> {
        match offload(&mut self.offload) {
            Ok(answer) => {
                self.answered = super::offload::OFFLOAD;
                Ok(answer)
            }
            Err(e) if e.should_fall_back() => {
                tracing::debug!("deciding locally: {e}");
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

    fn set_gallery(&mut self, entries: &[(String, Vec<u8>)]) -> Result<(), BackendError> {
        self.local.set_gallery(entries)
    }

    fn identify(&mut self, burst: &[Probe], rule: &BurstRule) -> Result<Decision, BackendError> {
        self.answer(|o| o.identify(burst, rule), |l| l.identify(burst, rule))
    }

    fn verify(
        &mut self,
        burst: &[Probe],
        personnel_no: &str,
        rule: &BurstRule,
    ) -> Result<Decision, BackendError> {
        self.answer(
            |o| o.verify(burst, personnel_no, rule),
            |l| l.verify(burst, personnel_no, rule),
        )
    }
}
