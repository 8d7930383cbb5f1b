//! Load generator for the offload service: N concurrent clients on loopback
//! identify ORL faces for a fixed time and report throughput, latency
//! percentiles and errors; with --server-pid it samples the server's memory
//! while it runs (a soak).
//!
//! ```text
//! kubevision-loadgen --target http://127.0.0.1:50051 --orl ../shared/datasets/orl --enroll \
//!     --concurrency 32 --duration-secs 20 [--server-pid PID]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kubevision_offload_client::proto::{
    frame::Content, EnrollRequest, Frame, IdentifyRequest, RawFaceCrop,
};
use kubevision_offload_client::{ClientConfig, OffloadClient};

#[derive(Debug, Parser)]
#[command(
    name = "kubevision-loadgen",
    about = "Identification load against a kubevision-offload server"
)]
struct Args {
    /// The server's gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    target: String,
    /// The ORL faces (s1..s40/1..10.pgm).
    #[arg(long, default_value = "../shared/datasets/orl")]
    orl: PathBuf,
    /// First enroll photos 1–5 of every person (200 templates); existing operators are kept.
    #[arg(long)]
    enroll: bool,
    /// Concurrent clients (requests in flight).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Frames per request (each a probe photo).
    #[arg(long, default_value_t = 1)]
    frames: usize,
    /// Print a line every this many seconds.
    #[arg(long, default_value_t = 5)]
    report_every_secs: u64,
    /// The server's process id, to sample its resident memory (Linux).
    #[arg(long)]
    server_pid: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let clients: Vec<OffloadClient> = (0..args.connections.max(1))
        .map(|_| {
            let mut config = ClientConfig::new(args.target.clone());
            config.retry.max_attempts = 1; // count every error, hide none behind a retry
            config.breaker.failure_threshold = u32::MAX;
            OffloadClient::new(config)
        })
        .collect::<Result<_, _>>()?;
    if args.enroll {
        enroll(&clients[0], &args.orl).await?;
    }
    let status = clients[0].gallery_status().await?;
    println!(
        "gallery: {} operators, {} templates, backend {}; {} clients on {} connections, {} frame(s) a request, {} s",
        status.operator_count, status.template_count, status.backend, args.concurrency, clients.len(), args.frames, args.duration_secs
    );
    let probes = Arc::new(probes(&args.orl)?);

    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration_secs);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let (client, probes, done) = (
                clients[w % clients.len()].clone(),
                probes.clone(),
                done.clone(),
            );
            let frames = args.frames.max(1);
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut i = w * 7;
                while Instant::now() < end {
                    let burst: Vec<&(String, Frame)> = (0..frames)
                        .map(|j| &probes[(i + j) % probes.len()])
                        .collect();
                    i += frames;
                    let request = IdentifyRequest {
                        frames: burst.iter().map(|(_, f)| f.clone()).collect(),
                        max_candidates: 1,
                        threshold: None,
                        min_usable_frames: 1,
                        min_agreement: None,
                    };
                    let sent = Instant::now();
                    let result = client.identify(request).await;
                    tally.latencies_us.push(sent.elapsed().as_micros() as u32);
                    match result {
                        Ok(answer) => tally.correct += (answer.operator_id == burst[0].0) as u64,
                        Err(e) => *tally.errors.entry(format!("{:?}", e.code())).or_default() += 1,
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tally
            })
        })
        .collect();

    let reporter = {
        let (done, every, pid) = (
            done.clone(),
            Duration::from_secs(args.report_every_secs.max(1)),
            args.server_pid,
        );
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(every).await;
                let now = done.load(Ordering::Relaxed);
                let rss = pid
                    .and_then(resident_mib)
                    .map_or(String::new(), |m| format!(", server RSS {m:.1} MiB"));
                println!(
                    "{:>6.0} s: {:>8.0} identifications/s{rss}",
                    start.elapsed().as_secs_f64(),
                    (now - last) as f64 / every.as_secs_f64()
                );
                last = now;
            }
        })
    };
    let mut total = Tally::default();
    for w in workers {
        total.merge(w.await?);
    }
    reporter.abort();
    total.report(start.elapsed());
    if let Some(m) = args.server_pid.and_then(resident_mib) {
        println!("server RSS at the end: {m:.1} MiB");
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    correct: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.correct += other.correct;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
    }

    fn report(mut self, elapsed: Duration) {
        let n = self.latencies_us.len();
        self.latencies_us.sort_unstable();
        let pct = |p: f64| {
            self.latencies_us
                .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
                .map_or(0.0, |&us| us as f64 / 1000.0)
        };
        let errors: u64 = self.errors.values().sum();
        println!("requests:   {n} in {:.1} s", elapsed.as_secs_f64());
        println!(
            "throughput: {:.0} identifications/s",
            n as f64 / elapsed.as_secs_f64()
        );
        println!(
            "latency:    p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
        println!("errors:     {errors} {:?}", self.errors);
        println!(
            "correct:    {:.1} % of answers named the probe's person",
            100.0 * self.correct as f64 / (n as u64 - errors).max(1) as f64
        );
    }
}

fn operator(person: u32) -> String {
    format!("orl-{person:02}")
}

fn raw(orl: &std::path::Path, person: u32, photo: u32) -> anyhow::Result<Frame> {
    let image = vision::imageio::load_gray(&orl.join(format!("s{person}/{photo}.pgm")))?;
    Ok(Frame {
        content: Some(Content::RawFaceCrop(RawFaceCrop {
            width: image.width(),
            height: image.height(),
            pixels: image.into_raw().into(),
        })),
    })
}

/// Photos 6–10 of everyone, as raw crops, with the person they show.
fn probes(orl: &std::path::Path) -> anyhow::Result<Vec<(String, Frame)>> {
    let mut probes = Vec::new();
    for person in 1..=40 {
        for photo in 6..=10 {
            probes.push((operator(person), raw(orl, person, photo)?));
        }
    }
    Ok(probes)
}

async fn enroll(client: &OffloadClient, orl: &std::path::Path) -> anyhow::Result<()> {
    for person in 1..=40 {
        let frames = (1..=5)
            .map(|photo| raw(orl, person, photo))
            .collect::<anyhow::Result<_>>()?;
        match client
            .enroll(EnrollRequest {
                operator_id: operator(person),
                frames,
                ..Default::default()
            })
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(tonic::Code::AlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// VmRSS of a process, in MiB.
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
