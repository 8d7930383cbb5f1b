//! The plant gallery across replicas, measured on loopback with a real
//! PostgreSQL server (started here, as the tests do) and the service's own
//! binary:
//!
//! 1. enrolment latency with the SQLite store and with the PostgreSQL store;
//! 2. propagation: from an acknowledged enrolment at replica A to the first
//!    identification of that face at replica B, over 200 enrolments;
//! 3. identification throughput with 1 and with 3 replicas, the client
//!    balancing across them as a kiosk does (the replicas listen on
//!    127.0.0.1, .2 and .3, one port, like pods behind a headless Service),
//!    and how the requests spread, read from each replica's metrics.
//!
//! ```sh
//! cargo bench -p kubevision-offload --bench replicas
//! ```
//!
//! Medians and 99th percentiles; a 2-core machine gives no speed-up from 3
//! replicas (they share the cores), and the figures say so.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::PgServer;
use common::process::{free_port, Process};
use common::{http_get, orl_raw};
use kubevision_offload_client::proto::{EnrollRequest, IdentifyRequest};
use kubevision_offload_client::{ClientConfig, OffloadClient, Resolver};

const ENROLMENTS: usize = 200;
const THROUGHPUT_SECS: u64 = 5;
const CALLERS: usize = 16;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pg = PgServer::start();
    let store = format!("--store={}", pg.url());

    println!(
        "# KubeVision plant gallery across replicas (loopback, {} cores)\n",
        cores()
    );
    println!("| measure | value |\n|---|---|");

    // 1. Enrolment latency, one replica each.
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite = Process::start(sqlite_dir.path(), &[]).await;
    let lat = enrol_latencies(&sqlite.client(), "sqlite").await;
    row("enrolment latency, SQLite (p50 / p99 ms)", &lat);
    drop(sqlite);
    let pg_dir = tempfile::tempdir().unwrap();
    let single = Process::start(pg_dir.path(), &[&store]).await;
    let lat = enrol_latencies(&single.client(), "pg").await;
    row("enrolment latency, PostgreSQL (p50 / p99 ms)", &lat);
    drop(single);
    pg.psql("TRUNCATE operators, templates, removals, change_log; UPDATE gallery SET version = 0");

    // 2. Propagation A → B.
    let port = free_port();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let ip = format!("127.0.0.{}", i + 1);
        replicas.push(Process::start_at(&ip, port, dir.path(), &[&store]).await);
    }
    let (a, b) = (replicas[0].client(), replicas[1].client());
    let mut propagation = Vec::with_capacity(ENROLMENTS);
    for i in 0..ENROLMENTS {
        let face = orl_raw(1 + (i as u32 % 40), 1 + (i as u32 / 40));
        let id = format!("prop-{i}");
        a.enroll(EnrollRequest {
            operator_id: id.clone(),
            frames: vec![face.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
        let acknowledged = Instant::now();
        loop {
            let answer = b
                .identify(IdentifyRequest {
                    frames: vec![face.clone()],
                    max_candidates: 1,
                    threshold: None,
                    min_usable_frames: 1,
                    min_agreement: None,
                })
                .await
                .unwrap();
            if answer.operator_id == id {
                break;
            }
            assert!(
                acknowledged.elapsed() < Duration::from_secs(30),
                "{id} never reached B"
            );
        }
        propagation.push(acknowledged.elapsed());
    }
    row(
        &format!("propagation A → B over {ENROLMENTS} enrolments (p50 / p99 ms)"),
        &propagation,
    );

    // 3. Identification throughput: 1 replica, then 3 with the balancing client.
    let one = throughput(&[replicas[0].url.clone()], None).await;
    println!("| identifications/s, 1 replica, {CALLERS} callers | {one:.0} |");
    let before = identify_counts(&replicas).await;
    let resolver = Arc::new(Loopback(
        (1..=3)
            .map(|i| format!("127.0.0.{i}:{port}").parse().unwrap())
            .collect(),
    ));
    let three = throughput(&[format!("http://replicas.test:{port}")], Some(resolver)).await;
    let after = identify_counts(&replicas).await;
    println!(
        "| identifications/s, 3 replicas, client balancing, {CALLERS} callers | {three:.0} ({:.2}× one) |",
        three / one
    );
    let spread: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: f64 = spread.iter().sum();
    println!(
        "| share of requests per replica (A / B / C) | {} |",
        spread
            .iter()
            .map(|n| format!("{:.0} %", 100.0 * n / total))
            .collect::<Vec<_>>()
            .join(" / ")
    );
}

async fn enrol_latencies(client: &OffloadClient, prefix: &str) -> Vec<Duration> {
    let mut out = Vec::with_capacity(ENROLMENTS);
    for i in 0..ENROLMENTS {
        let started = Instant::now();
        client
            .enroll(EnrollRequest {
                operator_id: format!("{prefix}-{i}"),
                frames: vec![orl_raw(1 + (i as u32 % 40), 1)],
                ..Default::default()
            })
            .await
            .unwrap();
        out.push(started.elapsed());
    }
    out
}

/// Identifications per second from `CALLERS` concurrent callers.
async fn throughput(endpoints: &[String], resolver: Option<Arc<dyn Resolver>>) -> f64 {
    let mut config = ClientConfig::new(endpoints[0].clone());
    config.resolver = resolver;
    config.request_timeout = Duration::from_secs(10);
    let client = OffloadClient::new(config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(THROUGHPUT_SECS);
    let started = Instant::now();
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    client
                        .identify(IdentifyRequest {
                            frames: vec![orl_raw(1 + (c as u32 % 40), 9)],
                            max_candidates: 1,
                            threshold: None,
                            min_usable_frames: 1,
                            min_agreement: None,
                        })
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for c in callers {
        done += c.await.unwrap();
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// Each replica's count of answered identifications, from its metrics.
async fn identify_counts(replicas: &[Process]) -> Vec<f64> {
    let mut out = Vec::new();
    for r in replicas {
        let text = http_get(r.metrics, "/metrics").await;
        out.push(
            text.lines()
                .filter(|l| {
                    l.starts_with("kubevision_requests_total{") && l.contains("method=\"Identify\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        );
    }
    out
}

/// The headless Service of the bench: one name, three pod addresses.
#[derive(Debug)]
struct Loopback(Vec<SocketAddr>);

impl Resolver for Loopback {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>
    {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

fn row(what: &str, samples: &[Duration]) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!("| {what} | {:.1} / {:.1} |", pick(0.5), pick(0.99));
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
