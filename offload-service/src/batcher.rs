//! Coalesces the probes of concurrent requests into batches for the backend.
//!
//! The first probe to arrive opens a batch; it closes when the window has
//! passed or `max_batch` probes have joined. Requests with different `k`
//! share one backend call with the largest, and each then keeps its own
//! nearest `k`, so batching never changes a result.
//! While one batch runs, the next fills up, so under load batches grow by
//! themselves.
//!
//! **Fair between callers.** Each caller identity has its own queue, and
//! batches hold only one identity's probes. The [`BATCHES_IN_FLIGHT`]
//! backend calls that may run at once are handed out by the workers' rule
//! ([`FairWorkers`]): while another identity is active, no identity holds
//! them all. Each runs on its own thread pool, so one batch's parallel
//! search never queues behind another's. A single FIFO queue let one
//! kiosk's flood of 32-frame calls hold another kiosk's one-frame Identify
//! for 0.9 s (`benches/fairness.rs`): its search waited behind every
//! probe of the flood.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use vision::embedding::Embedding;
use vision::lbph::{Match, Template};

use crate::admission::FairWorkers;
use crate::backend::{ActiveBackend, MatchBackend};
use crate::metrics::Metrics;
use vision::template::AnyTemplate;

/// Backend calls allowed at once: one running, one being handed over (or,
/// with two callers active, one each).
pub const BATCHES_IN_FLIGHT: usize = 2;

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
    #[error("cannot start the search threads")]
    Threads(#[source] rayon::ThreadPoolBuildError),
}

/// The batcher of the gallery's recogniser.
#[derive(Clone)]
pub enum ActiveBatcher {
    Lbph(Batcher<Template>),
    Dlib(Batcher<Embedding>),
}

impl ActiveBatcher {
    /// The batcher for `backend`; see [`Batcher::start`].
    pub fn start(
        backend: &ActiveBackend,
        window: Duration,
        max_batch: usize,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BatchError> {
        Ok(match backend {
            ActiveBackend::Lbph(b) => Self::Lbph(Batcher::start(
                b.clone(),
                window,
                max_batch,
                capacity,
                metrics,
            )?),
            ActiveBackend::Dlib(b) => Self::Dlib(Batcher::start(
                b.clone(),
                window,
                max_batch,
                capacity,
                metrics,
            )?),
        })
    }

    /// The `k` nearest labels for each probe, via a batch of the current
    /// caller's ([`crate::identity::current`]).
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
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Batcher<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    shared: Arc<Shared<T>>,
    /// Each caller identity's queue, and its batching task behind it (which
    /// ends when this map, and so the batcher, is dropped).
    queues: Mutex<HashMap<Arc<str>, mpsc::Sender<Job<T>>>>,
    capacity: usize,
}

/// A slot's thread pools: every core for a caller alone, its share of the
/// cores while other callers are active (so that a flood's search threads
/// do not outnumber a quiet kiosk's on the CPUs).
struct Pools {
    alone: rayon::ThreadPool,
    shared: rayon::ThreadPool,
}

/// What every caller's batching task uses.
struct Shared<T> {
    backend: Arc<dyn MatchBackend<T>>,
    window: Duration,
    max_batch: usize,
    metrics: Arc<Metrics>,
    /// The backend calls that may run at once, handed out fairly.
    slots: Arc<FairWorkers>,
    /// The thread pools of each slot; the free slots' here.
    pools: Mutex<Vec<Pools>>,
    /// The backend name `backend_info` shows (it can change at run time: a
    /// GPU backend falling back to the CPU).
    shown: Mutex<&'static str>,
}

impl<T: Send + Sync + 'static> Batcher<T> {
    /// A batcher over `backend`. `capacity` bounds the jobs waiting for a
    /// batch, each caller's (admission control keeps it from ever filling).
    /// Each of the [`BATCHES_IN_FLIGHT`] slots searches on as many threads
    /// as the machine has cores while its caller is alone, and on its share
    /// of them (cores / slots) while others are active.
    pub fn start(
        backend: Arc<dyn MatchBackend<T>>,
        window: Duration,
        max_batch: usize,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BatchError> {
        let pools = (0..BATCHES_IN_FLIGHT)
            .map(|slot| {
                let pool = |threads: usize, name: &'static str| {
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(move |i| format!("search-{slot}-{name}-{i}"))
                        .build()
                };
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
                Ok(Pools {
                    alone: pool(cores, "alone")?,
                    shared: pool((cores / BATCHES_IN_FLIGHT).max(1), "shared")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(BatchError::Threads)?;
        let shown = backend.name();
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    backend,
                    window,
                    max_batch: max_batch.max(1),
                    metrics,
                    slots: Arc::new(FairWorkers::new(BATCHES_IN_FLIGHT)),
                    pools: Mutex::new(pools),
                    shown: Mutex::new(shown),
                }),
                queues: Mutex::new(HashMap::new()),
                capacity: capacity.max(1),
            }),
        })
    }

    /// The `k` nearest labels for each probe, via a batch of the current
    /// caller's.
    pub async fn search(&self, probes: Vec<T>, k: usize) -> Result<Vec<Vec<Match>>, BatchError> {
        let caller = crate::identity::current().map_or_else(|| Arc::from("anonymous"), |c| c.name);
        let queue = {
            let mut queues = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues
                .entry(caller.clone())
                .or_insert_with(|| {
                    let (jobs, rx) = mpsc::channel(self.inner.capacity);
                    tokio::spawn(run(caller, rx, self.inner.shared.clone()));
                    jobs
                })
                .clone()
        };
        let (reply, answer) = oneshot::channel();
        queue
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

/// One caller's batching task: batches its jobs, and runs each batch once a
/// slot is its.
async fn run<T: Send + Sync + 'static>(
    caller: Arc<str>,
    mut rx: mpsc::Receiver<Job<T>>,
    shared: Arc<Shared<T>>,
) {
    while let Some(first) = rx.recv().await {
        let mut probes = first.probes.len();
        let mut jobs = vec![first];
        let close_at = tokio::time::Instant::now() + shared.window;
        while probes < shared.max_batch {
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
        let Some(slot) = FairWorkers::acquire(&shared.slots, caller.clone()).await else {
            return;
        };
        shared.metrics.batch_size.observe(probes as f64);
        {
            let mut shown = shared.shown.lock().unwrap_or_else(|p| p.into_inner());
            if shared.backend.name() != *shown {
                *shown = shared.backend.name();
                shared.metrics.backend.reset();
                shared.metrics.backend.with_label_values(&[*shown]).set(1);
            }
        }
        let alone = shared.slots.alone(&caller);
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // A slot held means its pools are free: one pair a slot.
            let pools = shared.pools.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match &pools {
                Some(p) if alone => p.alone.install(|| answer(shared.backend.as_ref(), jobs)),
                Some(p) => p.shared.install(|| answer(shared.backend.as_ref(), jobs)),
                None => answer(shared.backend.as_ref(), jobs),
            }
            if let Some(pools) = pools {
                shared
                    .pools
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(pools);
            }
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

    /// Answers each probe with labels 0..k at distances 0..k, and records
    /// batch sizes (in the order the batches ran); each batch takes `delay`.
    #[derive(Default)]
    struct Recording {
        batches: Mutex<Vec<usize>>,
        delay: Duration,
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
            std::thread::sleep(self.delay);
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
        )
        .unwrap();
        let probe = probe();
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

    /// A textured face crop's template.
    fn probe() -> Template {
        let face =
            vision::GrayImage::from_fn(92, 112, |x, y| image::Luma([(x * 7 + y * 13) as u8]));
        Template::extract(&LbphParams::default(), &face).unwrap()
    }

    fn caller(name: &str, token: &str) -> crate::identity::Caller {
        let json = format!(
            r#"{{"identities":[{{"name":"{name}","scopes":["identify"],"token_sha256":"{}"}}]}}"#,
            crate::identity::token_sha256_hex(token)
        );
        crate::identity::Registry::parse(&json)
            .unwrap()
            .resolve(Some(token), &[])
            .unwrap()
    }

    /// One kiosk floods with 16 calls of 3 probes (a batch each, as
    /// `max_batch` is 3); another then asks for one probe. Its batch runs
    /// as soon as one of the flood's two running batches ends, not after
    /// the whole flood (17th, with one FIFO queue for everyone).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooding_caller_does_not_hold_up_another_callers_batch() {
        let backend = Arc::new(Recording {
            delay: Duration::from_millis(20),
            ..Recording::default()
        });
        let batcher = Batcher::start(
            backend.clone(),
            Duration::from_millis(1),
            3,
            64,
            Metrics::new(),
        )
        .unwrap();
        let probe = probe();
        let flooder = caller("kiosk-a", "token a");
        let flood: Vec<_> = (0..16)
            .map(|_| {
                let (batcher, probes) = (batcher.clone(), vec![probe.clone(); 3]);
                tokio::spawn(crate::identity::scope(flooder.clone(), async move {
                    batcher.search(probes, 1).await.unwrap()
                }))
            })
            .collect();
        while backend.batches.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let quiet = crate::identity::scope(caller("kiosk-b", "token b"), {
            let batcher = batcher.clone();
            let probes = vec![probe.clone()];
            async move { batcher.search(probes, 1).await.unwrap() }
        })
        .await;
        assert_eq!(quiet.len(), 1);
        for call in flood {
            assert_eq!(call.await.unwrap().len(), 3);
        }
        let batches = backend.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 16 * 3 + 1, "{batches:?}");
        let position = batches.iter().position(|&n| n == 1).unwrap();
        assert!(
            position <= 3,
            "the quiet caller's batch ran {}th of {}: {batches:?}",
            position + 1,
            batches.len()
        );
    }
}
