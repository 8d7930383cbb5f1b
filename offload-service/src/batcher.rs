//! Coalesces the probes of concurrent requests into batches for the backend.
//!
//! The first probe to arrive opens a batch; it closes when the window has
//! passed or `max_batch` probes have joined. Requests with different `k`
//! share one backend call with the largest, and each then keeps its own
//! nearest `k`, so batching never changes a result.
//! While one batch runs, the next fills up, so under load batches grow by
//! themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use vision::embedding::Embedding;
use vision::lbph::{Match, Template};

use crate::backend::{ActiveBackend, MatchBackend};
use crate::metrics::Metrics;
use vision::template::AnyTemplate;

/// Backend calls allowed at once: one running, one being handed over.
const BATCHES_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the matcher has stopped")]
    Stopped,
    #[error("{0}")]
    Backend(String),
    /// A probe of another recogniser than the gallery's (the RPC layer
    /// checks kinds first, so this is a bug, reported, not a panic).
    #[error("{0}")]
    WrongKind(vision::Error),
}

/// The batcher of the gallery's recogniser.
#[derive(Clone)]
pub enum ActiveBatcher {
    Lbph(Batcher<Template>),
    Dlib(Batcher<Embedding>),
}

impl ActiveBatcher {
    /// Starts the batching task for `backend`; see [`Batcher::start`].
    pub fn start(
        backend: &ActiveBackend,
        window: Duration,
        max_batch: usize,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        match backend {
            ActiveBackend::Lbph(b) => Self::Lbph(Batcher::start(
                b.clone(),
                window,
                max_batch,
                capacity,
                metrics,
            )),
            ActiveBackend::Dlib(b) => Self::Dlib(Batcher::start(
                b.clone(),
                window,
                max_batch,
                capacity,
                metrics,
            )),
        }
    }

    /// The `k` nearest labels for each probe, via a batch.
    pub async fn search(
        &self,
        probes: Vec<AnyTemplate>,
        k: usize,
    ) -> Result<Vec<Vec<Match>>, BatchError> {
        let wrong = BatchError::WrongKind;
        match self {
            Self::Lbph(b) => {
                let probes = probes.into_iter().map(AnyTemplate::into_lbph);
                b.search(probes.collect::<Result<_, _>>().map_err(wrong)?, k)
                    .await
            }
            Self::Dlib(b) => {
                let probes = probes.into_iter().map(AnyTemplate::into_dlib);
                b.search(probes.collect::<Result<_, _>>().map_err(wrong)?, k)
                    .await
            }
        }
    }
}

struct Job<T> {
    probes: Vec<T>,
    k: usize,
    reply: oneshot::Sender<Result<Vec<Vec<Match>>, String>>,
}

/// A batcher of probes of one kind (`T`: LBPH templates or dlib embeddings).
pub struct Batcher<T = Template> {
    jobs: mpsc::Sender<Job<T>>,
}

impl<T> Clone for Batcher<T> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Batcher<T> {
    /// Starts the batching task. `capacity` bounds the jobs waiting for a
    /// batch (admission control keeps it from ever filling).
    pub fn start(
        backend: Arc<dyn MatchBackend<T>>,
        window: Duration,
        max_batch: usize,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (jobs, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(run(rx, backend, window, max_batch.max(1), metrics));
        Self { jobs }
    }

    /// The `k` nearest labels for each probe, via a batch.
    pub async fn search(&self, probes: Vec<T>, k: usize) -> Result<Vec<Vec<Match>>, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { probes, k, reply })
            .await
            .map_err(|_| BatchError::Stopped)?;
        match answer.await {
            Ok(Ok(matches)) => Ok(matches),
            Ok(Err(message)) => Err(BatchError::Backend(message)),
            Err(_) => Err(BatchError::Stopped),
        }
    }
}

async fn run<T: Send + Sync + 'static>(
    mut rx: mpsc::Receiver<Job<T>>,
    backend: Arc<dyn MatchBackend<T>>,
    window: Duration,
    max_batch: usize,
    metrics: Arc<Metrics>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    // The backend's name can change at run time (a GPU backend falling back
    // to the CPU): keep `backend_info` saying which one answers.
    let mut shown = backend.name();
    while let Some(first) = rx.recv().await {
        let mut probes = first.probes.len();
        let mut jobs = vec![first];
        let close_at = tokio::time::Instant::now() + window;
        while probes < max_batch {
            let next = tokio::select! {
                job = rx.recv() => job,
                _ = tokio::time::sleep_until(close_at) => None,
            };
            match next {
                Some(job) => {
                    probes += job.probes.len();
                    jobs.push(job);
                }
                None => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        metrics.batch_size.observe(probes as f64);
        if backend.name() != shown {
            shown = backend.name();
            metrics.backend.reset();
            metrics.backend.with_label_values(&[shown]).set(1);
        }
        let backend = backend.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            answer(backend.as_ref(), jobs);
        });
    }
}

/// Runs one backend call for all jobs and hands each its share.
fn answer<T>(backend: &dyn MatchBackend<T>, jobs: Vec<Job<T>>) {
    let k = jobs.iter().map(|j| j.k).max().unwrap_or(1);
    let mut probes = Vec::new();
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.probes.len(), job.k, job.reply));
        probes.extend(job.probes);
    }
    match backend.search_batch(&probes, k) {
        Ok(all) => {
            let mut all = all.into_iter();
            for (n, k, reply) in replies {
                let mine = all.by_ref().take(n).map(|mut matches| {
                    matches.truncate(k);
                    matches
                });
                let mine = mine.collect();
                let _ = reply.send(Ok(mine)); // the requester may have given up
            }
        }
        Err(e) => {
            let message = e.to_string();
            for (.., reply) in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use vision::lbph::LbphParams;

    use super::*;
    use crate::backend::BackendError;

    /// Answers each probe with labels 0..k at distances 0..k, and records batch sizes.
    #[derive(Default)]
    struct Recording {
        batches: Mutex<Vec<usize>>,
    }

    impl MatchBackend for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        fn update_label(&self, _: i32, _: Vec<Template>, _: bool) -> Result<(), BackendError> {
            Ok(())
        }
        fn remove_label(&self, _: i32) {}
        fn search_batch(
            &self,
            probes: &[Template],
            k: usize,
        ) -> Result<Vec<Vec<Match>>, BackendError> {
            self.batches.lock().unwrap().push(probes.len());
            Ok(probes
                .iter()
                .map(|_| {
                    (0..k as i32)
                        .map(|label| Match {
                            label,
                            distance: label as f64,
                        })
                        .collect()
                })
                .collect())
        }
        fn distances_to_label(
            &self,
            probes: &[Template],
            _: i32,
        ) -> Result<Vec<Option<f64>>, BackendError> {
            Ok(vec![None; probes.len()])
        }
        fn template_count(&self) -> usize {
            0
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_keep_their_own_k() {
        let backend = Arc::new(Recording::default());
        let batcher = Batcher::start(
            backend.clone(),
            Duration::from_millis(50),
            64,
            64,
            Metrics::new(),
        );
        let face =
            vision::GrayImage::from_fn(92, 112, |x, y| image::Luma([(x * 7 + y * 13) as u8]));
        let probe = Template::extract(&LbphParams::default(), &face).unwrap();
        let calls: Vec<_> = (1..=16)
            .map(|k| {
                let (batcher, probes) = (batcher.clone(), vec![probe.clone(); 2]);
                tokio::spawn(async move { (k, batcher.search(probes, k).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (k, answer) = call.await.unwrap();
            assert_eq!(answer.len(), 2, "one answer a probe");
            assert!(
                answer.iter().all(|m| m.len() == k),
                "each request gets its own k"
            );
        }
        let batches = backend.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 32);
        assert!(
            batches.len() < 16,
            "16 concurrent requests were coalesced: {batches:?}"
        );
    }
}
