//! How the client connects, waits and retries.

use std::sync::Arc;
use std::time::Duration;

use crate::balance::Resolver;
use crate::breaker::BreakerPolicy;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port`, or `https://host:port` with [`ClientConfig::tls`].
    /// A host name is looked up, and calls are spread over every address it
    /// has (a headless Service has one per pod); an IP address is used as is.
    pub endpoint: String,
    /// Looks the endpoint's host name up; `None`: the system's resolver.
    pub resolver: Option<Arc<dyn Resolver>>,
    /// How often the host name is looked up again, to follow pods that come
    /// and go (a failing address also prompts a look-up, at most once a second).
    pub resolve_every: Duration,
    /// The pause before re-probing an address that failed, doubled after
    /// each failed probe up to `probe_max_backoff`.
    pub probe_backoff: Duration,
    pub probe_max_backoff: Duration,
    pub connect_timeout: Duration,
    /// Deadline of each attempt of a unary call.
    pub request_timeout: Duration,
    /// Deadline of each attempt of a gallery sync (the whole stream).
    pub sync_timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    pub tls: Option<TlsSettings>,
    /// Sent as "authorization: Bearer <token>".
    pub token: Option<String>,
    /// Largest response accepted (a sync event carries one operator's templates).
    pub max_message_bytes: usize,
}

impl ClientConfig {
    /// Defaults for a kiosk on the plant network: a sign-in should not wait
    /// long for the cluster when local recognition is the alternative.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            resolver: None,
            resolve_every: Duration::from_secs(10),
            probe_backoff: Duration::from_millis(500),
            probe_max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            sync_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            tls: None,
            token: None,
            max_message_bytes: 16 << 20,
        }
    }
}

/// Exponential back-off with full jitter between attempts of idempotent calls.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt `attempt` (1-based): a random time up
    /// to initial × 2^(attempt-1), capped, so that many kiosks retrying after
    /// one hiccup do not arrive together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.initial_backoff, self.max_backoff, attempt)
    }
}

/// A random time up to initial × 2^(attempt-1), capped at `max`, and at
/// least half of that.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = initial
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(max);
    ceiling.mul_f64(jitter())
}

/// A number in [0.5, 1): enough randomness for spreading retries, from the
/// standard library's randomly seeded hasher.
fn jitter() -> f64 {
    0.5 + (random() >> 11) as f64 / (1u64 << 54) as f64
}

/// A random number from the standard library's randomly seeded hasher.
pub(crate) fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

/// TLS towards the service.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM CA bundle that signed the server's certificate: the plant's own CA
    /// (the client trusts no built-in roots).
    pub ca_pem: Vec<u8>,
    /// PEM certificate and key for mTLS.
    pub client_identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to check the server certificate against, if not the endpoint's host.
    pub domain: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let first = p.backoff(1);
        assert!(
            first >= Duration::from_millis(50) && first < Duration::from_millis(100),
            "{first:?}"
        );
        let second = p.backoff(2);
        assert!(
            second >= Duration::from_millis(100) && second < Duration::from_millis(200),
            "{second:?}"
        );
        for attempt in 3..40 {
            assert!(p.backoff(attempt) < Duration::from_millis(300));
        }
    }
}
