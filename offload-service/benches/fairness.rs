//! Fair admission between kiosks (issue 22): one identity flooding the
//! service with heavy Identify calls (32 frames each) raised another
//! kiosk's one-frame Identify p50 from 4 ms to 340 ms. The service as its
//! own process on loopback, two kiosk identities (tokens), ORL faces:
//!
//! 1. kiosk B alone: sequential one-frame Identify calls, p50 and p99;
//! 2. kiosk B again while kiosk A keeps `FLOOD` heavy calls in flight;
//! 3. the ratio of B's p50 with and without the flood (the goal: at most 2).
//!
//! ```sh
//! cargo bench -p kubevision-offload --bench fairness
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::Process;
use common::{orl_encoded, orl_raw};
use kubevision_offload::identity::token_sha256_hex;
use kubevision_offload_client::proto::{EnrollRequest, IdentifyRequest};
use kubevision_offload_client::{ClientConfig, OffloadClient};

const TOKEN_A: &str = "kiosk-a-0123456789abcdef0123456789abcdef";
const TOKEN_B: &str = "kiosk-b-0123456789abcdef0123456789abcdef";
const FLOOD: usize = 16;
const SAMPLES: usize = 200;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let identities = dir.path().join("identities.json");
    std::fs::write(
        &identities,
        format!(
            r#"{{"identities": [
  {{"name": "kiosk-a", "scopes": ["identify", "enrol"], "token_sha256": "{}"}},
  {{"name": "kiosk-b", "scopes": ["identify", "enrol"], "token_sha256": "{}"}}
]}}"#,
            token_sha256_hex(TOKEN_A),
            token_sha256_hex(TOKEN_B)
        ),
    )
    .unwrap();
    let server = Process::start(
        dir.path(),
        &[&format!("--identities={}", identities.display())],
    )
    .await;
    let (a, b) = (client(&server, TOKEN_A), client(&server, TOKEN_B));
    for person in 1..=40 {
        a.enroll(EnrollRequest {
            operator_id: common::operator(person),
            frames: (1..=5).map(|photo| orl_raw(person, photo)).collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "# Fair admission: kiosk B's Identify while kiosk A floods (loopback, {cores} cores)\n"
    );

    let alone = sample(&b).await;
    let stop = Arc::new(AtomicBool::new(false));
    let heavy_done = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let (a, stop, done) = (a.clone(), stop.clone(), heavy_done.clone());
            tokio::spawn(async move {
                let heavy = IdentifyRequest {
                    frames: (0..32)
                        .map(|f| orl_encoded(1 + (i as u32 + f) % 40, 6 + f % 5))
                        .collect(),
                    max_candidates: 1,
                    threshold: None,
                    min_usable_frames: 1,
                    min_agreement: None,
                };
                while !stop.load(Ordering::Relaxed) {
                    if a.identify(heavy.clone()).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let flooded = sample(&b).await;
    let elapsed = started.elapsed();
    let heavy = heavy_done.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        let _ = task.await;
    }

    println!("| kiosk B, one-frame Identify | p50 ms | p99 ms |\n|---|---|---|");
    println!("| alone | {:.2} | {:.2} |", alone.0, alone.1);
    println!(
        "| while kiosk A keeps {FLOOD} 32-frame calls in flight | {:.2} | {:.2} |",
        flooded.0, flooded.1
    );
    println!(
        "\nratio of B's p50 (flooded / alone): {:.2} (goal: at most 2); kiosk A completed {heavy} heavy calls meanwhile ({:.1}/s)",
        flooded.0 / alone.0,
        heavy as f64 / elapsed.as_secs_f64()
    );
}

fn client(server: &Process, token: &str) -> OffloadClient {
    let mut config = ClientConfig::new(server.url.clone());
    config.token = Some(token.into());
    config.retry.max_attempts = 1;
    config.breaker.failure_threshold = u32::MAX;
    config.request_timeout = Duration::from_secs(60);
    OffloadClient::new(config).unwrap()
}

/// SAMPLES sequential one-frame Identify calls: (p50, p99) in ms.
async fn sample(client: &OffloadClient) -> (f64, f64) {
    let mut ms = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let request = IdentifyRequest {
            frames: vec![orl_raw(1 + i as u32 % 40, 6 + i as u32 % 5)],
            max_candidates: 1,
            threshold: None,
            min_usable_frames: 1,
            min_agreement: None,
        };
        let started = Instant::now();
        client.identify(request).await.unwrap();
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (ms[SAMPLES / 2], ms[SAMPLES * 99 / 100])
}
