//! Bounded concurrency and a bounded queue.
//!
//! A request is admitted only while fewer than `workers + queue` requests are
//! admitted; otherwise it is turned away at once with RESOURCE_EXHAUSTED, so
//! memory stays bounded however hard clients push. An admitted request then
//! waits for one of `workers` permits to do its CPU work. Waiting happens
//! inside the request's future, so a client deadline that expires in the
//! queue drops the request before any work is done.
//!
//! Streams (SyncGallery) take their slots from a separate, smaller pool
//! ([`Admission::admit_stream`]), so clients that open streams and never
//! read them cannot starve Identify; and each stream is wrapped in a
//! [`Bounded`] stream that lets go of its producer when its deadline passes,
//! read or not, which gives the slot back.
//!
//! Work on the blocking pool learns through a [`Cancel`] flag when its call
//! was dropped (deadline, client gone), and stops between frames.
//!
//! **Fair between callers.** The workers are handed out per caller
//! identity ([`FairWorkers`]), not first come first served: one kiosk's
//! flood of heavy requests raised another kiosk's Identify p50 from 4 ms to
//! 340 ms (issue 22), because the other's request queued behind all of the
//! flood. Now a freed worker goes to the waiting identity that holds the
//! fewest, and while another identity has been seen within [`RECENT`], no
//! identity holds more than all workers but one, so the next request of
//! a quiet kiosk finds a worker free. A single caller alone still gets
//! every worker. Anonymous callers (`--allow-unauthenticated`) are one
//! identity. The searches that follow are shared by the same rule
//! ([`crate::batcher`]).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::metadata::MetadataMap;

use crate::config::Config;
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("the server is at capacity ({0} requests in flight or queued); retry with back-off")]
    Full(usize),
    #[error("the server is shutting down")]
    Closed,
    #[error("a worker thread failed: {0}")]
    WorkerFailed(String),
    #[error("the server is serving as many streams as it allows ({0}); retry with back-off")]
    StreamsFull(usize),
    #[error("the server is reading as many request bytes as it allows at once ({0} bytes); retry with back-off")]
    DecodeBudget(usize),
    #[error("the call was cancelled (its deadline passed or the client went away)")]
    Cancelled,
    #[error("the stream was not read to its end within its deadline ({0:?}); resume from the last version received")]
    StreamDeadline(Duration),
}

#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    capacity: usize,
    streams: Arc<Semaphore>,
    stream_capacity: usize,
    workers: Arc<FairWorkers>,
    /// The longest any call may run, whatever its client's deadline.
    stream_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// An admitted request; dropping it frees its slot.
pub struct Ticket {
    admission: Admission,
    _slot: OwnedSemaphorePermit,
}

/// Streams served at once when the configuration names no number: a
/// quarter of the request slots, at least 1 and at most 64. Each holds a
/// blocking thread and a few buffered events until read or timed out.
pub fn default_max_streams(workers: usize, queue: usize) -> usize {
    ((workers + queue) / 4).clamp(1, 64)
}

impl Admission {
    pub fn new(workers: usize, queue: usize, metrics: Arc<Metrics>) -> Self {
        Self::with_streams(
            workers,
            queue,
            default_max_streams(workers, queue),
            Duration::from_secs(30),
            metrics,
        )
    }

    /// Everything from the configuration: workers, queue, the stream share
    /// and the sync timeout that bounds a stream's life.
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> Self {
        let workers = config.max_concurrency();
        let streams = config
            .max_streams
            .unwrap_or_else(|| default_max_streams(workers, config.max_queue));
        Self::with_streams(
            workers,
            config.max_queue,
            streams,
            Duration::from_secs(config.sync_timeout_secs),
            metrics,
        )
    }

    pub fn with_streams(
        workers: usize,
        queue: usize,
        streams: usize,
        stream_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let capacity = workers + queue;
        let streams = streams.max(1);
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            streams: Arc::new(Semaphore::new(streams)),
            stream_capacity: streams,
            workers: Arc::new(FairWorkers::new(workers)),
            stream_timeout,
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

    /// Admits a server stream into the streams' own pool, so that streams
    /// never take the slots unary calls need.
    pub fn admit_stream(&self) -> Result<Ticket, AdmissionError> {
        let slot = self
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| AdmissionError::StreamsFull(self.stream_capacity))?;
        self.metrics.in_flight.inc();
        Ok(Ticket {
            admission: self.clone(),
            _slot: slot,
        })
    }

    /// How long a call may live: the client's `grpc-timeout`, capped by
    /// `--sync-timeout-secs`.
    pub fn deadline(&self, metadata: &MetadataMap) -> Duration {
        metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map_or(self.stream_timeout, |t| t.min(self.stream_timeout))
    }
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl Ticket {
    /// Runs CPU-bound work on the blocking pool once a worker is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AdmissionError> {
        self.run_cancellable(move |_| work()).await
    }

    /// Like [`run`](Self::run), and the work gets a [`Cancel`] flag that is
    /// raised when this future is dropped (the call's deadline passed, the
    /// client went away), so that it can stop between steps rather than
    /// finish work nobody waits for.
    pub async fn run_cancellable<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Cancel) -> T + Send + 'static,
    ) -> Result<T, AdmissionError> {
        let cancel = Cancel::default();
        let _raise_when_dropped = RaiseOnDrop(cancel.clone());
        let waiting = Waiting::new(&self.admission.metrics.queue_depth);
        let caller = crate::identity::current().map_or_else(|| Arc::from("anonymous"), |c| c.name);
        let worker = FairWorkers::acquire(&self.admission.workers, caller)
            .await
            .ok_or(AdmissionError::Closed)?;
        drop(waiting);
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            work(&cancel)
        })
        .await
        .map_err(|e| AdmissionError::WorkerFailed(e.to_string()))
    }
}

/// How long after its last request an identity still counts as active, so
/// that the others leave it a worker.
pub const RECENT: Duration = Duration::from_secs(1);

/// Worker permits handed out fairly between caller identities (see the
/// module's documentation).
pub struct FairWorkers {
    workers: usize,
    state: Mutex<FairState>,
}

#[derive(Default)]
struct FairState {
    free: usize,
    /// Workers each identity holds now.
    held: HashMap<Arc<str>, usize>,
    /// When each identity last asked for a worker.
    seen: HashMap<Arc<str>, Instant>,
    waiting: VecDeque<(Arc<str>, oneshot::Sender<Worker>)>,
}

/// One worker, held by one identity; dropping it hands it on.
pub struct Worker {
    pool: Option<Arc<FairWorkers>>,
    caller: Arc<str>,
}

impl FairWorkers {
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        Self {
            workers,
            state: Mutex::new(FairState {
                free: workers,
                ..FairState::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FairState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker for `caller`, once the rule allows one. None: the pool is
    /// gone (shutting down).
    pub async fn acquire(pool: &Arc<Self>, caller: Arc<str>) -> Option<Worker> {
        let waiter = {
            let mut state = pool.lock();
            let now = Instant::now();
            state.seen.insert(caller.clone(), now);
            state
                .seen
                .retain(|_, at| now.saturating_duration_since(*at) < RECENT);
            // Queued, then handed out by the one rule (perhaps at once).
            let (tx, rx) = oneshot::channel();
            state.waiting.push_back((caller, tx));
            pool.dispatch(&mut state);
            rx
        };
        waiter.await.ok()
    }

    /// Whether no identity but `caller` holds a worker or was seen within
    /// RECENT.
    pub fn alone(&self, caller: &Arc<str>) -> bool {
        !Self::others(&self.lock(), caller)
    }

    fn others(state: &FairState, caller: &Arc<str>) -> bool {
        let now = Instant::now();
        state
            .seen
            .iter()
            .any(|(c, &at)| c != caller && now.saturating_duration_since(at) < RECENT)
            || state.held.iter().any(|(c, &n)| c != caller && n > 0)
    }

    /// Whether `caller` may hold one more worker: all of them when nobody
    /// else was seen within RECENT, else all but one.
    fn may_take(&self, state: &FairState, caller: &Arc<str>) -> bool {
        let cap = if Self::others(state, caller) {
            (self.workers - 1).max(1)
        } else {
            self.workers
        };
        state.held.get(caller).copied().unwrap_or(0) < cap
    }

    /// Gives free workers to waiters: the identity holding the fewest
    /// first, then the one waiting longest.
    fn dispatch(self: &Arc<Self>, state: &mut FairState) {
        while state.free > 0 {
            // Waiters whose calls were dropped go.
            state.waiting.retain(|(_, tx)| !tx.is_closed());
            let next = state
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, (caller, _))| self.may_take(state, caller))
                .min_by_key(|(at, (caller, _))| (state.held.get(caller).copied().unwrap_or(0), *at))
                .map(|(at, _)| at);
            let Some((caller, tx)) = next.and_then(|at| state.waiting.remove(at)) else {
                return;
            };
            let worker = Worker {
                pool: Some(self.clone()),
                caller: caller.clone(),
            };
            match tx.send(worker) {
                Ok(()) => {
                    state.free -= 1;
                    *state.held.entry(caller).or_default() += 1;
                }
                // Dropped meanwhile: the worker was never counted.
                Err(mut worker) => worker.pool = None,
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else { return };
        let mut state = pool.lock();
        if let Some(held) = state.held.get_mut(&self.caller) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(&self.caller);
            }
        }
        state.free += 1;
        pool.dispatch(&mut state);
    }
}

/// Raised when the call that started a piece of blocking work is dropped.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once the call is gone: `cancel.check()?` between steps.
    pub fn check(&self) -> Result<(), AdmissionError> {
        if self.is_cancelled() {
            Err(AdmissionError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Raises the flag when dropped: with the future of a finished call
/// (harmless, the work is done) or of an abandoned one.
struct RaiseOnDrop(Cancel);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0 .0.store(true, Ordering::Relaxed);
    }
}

/// A server stream with a deadline. When the deadline passes, whether or
/// not anyone is reading, the inner stream is dropped: its producer's next
/// (or current, blocked) send fails, so the producer stops and its ticket
/// gives the slot back. A reader that comes back afterwards gets one
/// DEADLINE_EXCEEDED and the end of the stream.
pub struct Bounded<S> {
    inner: Arc<Mutex<Option<S>>>,
    timeout: Duration,
    watchdog: tokio::task::JoinHandle<()>,
    ended: bool,
}

impl<S: Send + 'static> Bounded<S> {
    pub fn new(stream: S, timeout: Duration) -> Self {
        let inner = Arc::new(Mutex::new(Some(stream)));
        let deadline = Instant::now() + timeout;
        let watchdog = tokio::spawn({
            let inner = Arc::downgrade(&inner);
            async move {
                tokio::time::sleep_until(deadline).await;
                if let Some(inner) = inner.upgrade() {
                    let stream = inner.lock().unwrap_or_else(|p| p.into_inner()).take();
                    drop(stream); // outside the poll path; the producer wakes with an error
                }
            }
        });
        Self {
            inner,
            timeout,
            watchdog,
            ended: false,
        }
    }
}

impl<S, T> Stream for Bounded<S>
where
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    type Item = Result<T, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let polled = match inner.as_mut() {
            Some(stream) => Pin::new(stream).poll_next(cx),
            None => {
                drop(inner);
                self.ended = true;
                let error =
                    crate::error::ServiceError::from(AdmissionError::StreamDeadline(self.timeout));
                return Poll::Ready(Some(Err(error.into())));
            }
        };
        if let Poll::Ready(None) = polled {
            inner.take();
            drop(inner);
            self.ended = true;
            self.watchdog.abort();
        }
        polled
    }
}

impl<S> Drop for Bounded<S> {
    fn drop(&mut self) {
        self.watchdog.abort();
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
    use tokio_stream::StreamExt;

    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        let admission = Admission::new(1, 1, Metrics::new());
        let mut metadata = MetadataMap::new();
        assert_eq!(admission.deadline(&metadata), Duration::from_secs(30));
        metadata.insert("grpc-timeout", "100m".parse().unwrap());
        assert_eq!(admission.deadline(&metadata), Duration::from_millis(100));
        metadata.insert("grpc-timeout", "5H".parse().unwrap());
        assert_eq!(admission.deadline(&metadata), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn streams_have_their_own_pool() {
        let admission = Admission::with_streams(1, 1, 2, Duration::from_secs(1), Metrics::new());
        let streams: Vec<Ticket> = (0..2).map(|_| admission.admit_stream().unwrap()).collect();
        assert!(matches!(
            admission.admit_stream(),
            Err(AdmissionError::StreamsFull(2))
        ));
        let unary = admission.admit().expect("streams take no unary slot");
        drop((streams, unary));
        admission.admit_stream().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unread_stream_lets_its_producer_go_at_its_deadline() {
        let admission = Admission::with_streams(1, 1, 1, Duration::from_secs(1), Metrics::new());
        let ticket = admission.admit_stream().unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, tonic::Status>>(1);
        let producer = tokio::task::spawn_blocking(move || {
            let _ticket = ticket;
            let mut sent = 0;
            while tx.blocking_send(Ok(sent)).is_ok() {
                sent += 1;
            }
            sent
        });
        let mut stream = Bounded::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            Duration::from_millis(200),
        );
        assert_eq!(stream.next().await.unwrap().unwrap(), 0);
        // Nobody reads any more: the producer blocks until the deadline.
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout(Duration::from_secs(5), producer)
            .await
            .expect("the producer stops at the deadline")
            .unwrap();
        assert!(sent <= 3, "{sent}");
        assert!(started.elapsed() < Duration::from_secs(1));
        admission.admit_stream().expect("the slot is back");
        let late = stream.next().await.unwrap().unwrap_err();
        assert_eq!(late.code(), tonic::Code::DeadlineExceeded, "{late:?}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_calls_raise_the_cancel_flag() {
        let admission = Admission::new(1, 1, Metrics::new());
        let ticket = admission.admit().unwrap();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let call = ticket.run_cancellable(move |cancel| {
            let started = std::time::Instant::now();
            while !cancel.is_cancelled() && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            seen_tx.send(cancel.check().is_err()).unwrap();
        });
        assert!(tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err());
        let stopped =
            tokio::task::spawn_blocking(move || seen_rx.recv_timeout(Duration::from_secs(2)))
                .await
                .unwrap();
        assert_eq!(stopped, Ok(true), "the work saw the flag and stopped");
    }

    type Acquiring = Pin<Box<dyn std::future::Future<Output = Option<Worker>>>>;

    fn acquire(pool: &Arc<FairWorkers>, who: &str) -> Acquiring {
        let pool = pool.clone();
        let who = Arc::from(who);
        Box::pin(async move { FairWorkers::acquire(&pool, who).await })
    }

    fn poll(f: &mut Acquiring) -> Poll<Option<Worker>> {
        f.as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    fn ready(mut f: Acquiring) -> Worker {
        match poll(&mut f) {
            Poll::Ready(worker) => worker.expect("a worker"),
            Poll::Pending => panic!("no worker"),
        }
    }

    /// Issue 22: one identity's flood made another's Identify wait behind
    /// all of it.
    #[test]
    fn workers_are_shared_fairly_between_identities() {
        let pool = Arc::new(FairWorkers::new(2));
        // Alone, "a" gets every worker.
        let a1 = ready(acquire(&pool, "a"));
        let a2 = ready(acquire(&pool, "a"));
        let mut a3 = acquire(&pool, "a");
        let mut b1 = acquire(&pool, "b");
        assert!(poll(&mut a3).is_pending() && poll(&mut b1).is_pending());
        // A freed worker goes to "b", which holds none, though "a" asked first.
        drop(a1);
        let b1 = ready(b1);
        assert!(poll(&mut a3).is_pending());
        drop(a2);
        let a3 = ready(a3);
        // While "b" is active, "a" holds at most all workers but one: the
        // one freed is kept for "b".
        drop(b1);
        let mut a4 = acquire(&pool, "a");
        assert!(poll(&mut a4).is_pending());
        let b2 = ready(acquire(&pool, "b"));
        drop((a3, b2));
        assert!(poll(&mut a4).is_ready(), "a freed worker reaches a waiter");
    }

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
