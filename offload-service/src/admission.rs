//! Bounded concurrency and a bounded queue.
//!
//! A request is admitted only while fewer than `workers + queue` requests are
//! admitted; otherwise it is turned away at once with RESOURCE_EXHAUSTED, so
//! memory stays bounded however hard clients push. An admitted request then
//! waits for one of `workers` permits to do its CPU work. Waiting happens
//! inside the request's future, so a client deadline that expires in the
//! queue drops the request before any work is done.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the server is at capacity ({0} requests in flight or queued); retry with back-off")]
    Full(usize),
    #[error("the server is shutting down")]
    Closed,
    #[error("a worker thread failed: {0}")]
    WorkerFailed(String),
}

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    capacity: usize,
    workers: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

/// An admitted request; dropping it frees its slot.
pub struct Ticket {
    admission: Admission,
    _slot: OwnedSemaphorePermit,
}

impl Admission {
    pub fn new(workers: usize, queue: usize, metrics: Arc<Metrics>) -> Self {
        let capacity = workers + queue;
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            workers: Arc::new(Semaphore::new(workers)),
            metrics,
        }
    }

    pub fn admit(&self) -> Result<Ticket, AdmissionError> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| AdmissionError::Full(self.capacity))?;
        self.metrics.in_flight.inc();
        Ok(Ticket {
            admission: self.clone(),
            _slot: slot,
        })
    }
}

impl Ticket {
    /// Runs CPU-bound work on the blocking pool once a worker is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AdmissionError> {
        let waiting = Waiting::new(&self.admission.metrics.queue_depth);
        let worker = self
            .admission
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AdmissionError::Closed)?;
        drop(waiting);
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            work()
        })
        .await
        .map_err(|e| AdmissionError::WorkerFailed(e.to_string()))
    }
}

/// Counts a request as queued until dropped, even when its future is dropped
/// mid-wait (a deadline expiring in the queue).
struct Waiting<'a>(&'a prometheus::IntGauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.metrics.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_server_turns_requests_away_at_once_and_recovers() {
        let admission = Admission::new(1, 2, Metrics::new());
        let held: Vec<Ticket> = (0..3).map(|_| admission.admit().unwrap()).collect();
        assert!(matches!(admission.admit(), Err(AdmissionError::Full(3))));
        drop(held);
        let ticket = admission.admit().unwrap();
        assert_eq!(ticket.run(|| 6 * 7).await.unwrap(), 42);
    }
}
