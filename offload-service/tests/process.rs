//! The service as its own process over loopback: `kill -9` during a stream of
//! enrollments loses no acknowledged enrollment, and SIGTERM drains the
//! requests in flight before exiting cleanly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::process::Process;
use crate::common::*;
use kubevision_offload_client::proto::{sync_event::Event, EnrollRequest, IdentifyRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_enrollments_loses_no_acknowledged_enrollment() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::start(dir.path(), &[]).await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, acknowledged) = (server.client(), acknowledged.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let id = format!("op-{w}-{i}");
                    let frames = vec![orl_raw(1 + (i % 40), 1 + (w % 10))];
                    match client
                        .enroll(EnrollRequest {
                            operator_id: id.clone(),
                            frames,
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(_) => acknowledged.lock().unwrap().push(id),
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL, mid-stream
    server.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let server = Process::start(dir.path(), &[]).await;
    let sync = server.client().sync_gallery(0).await.unwrap();
    let stored: std::collections::HashSet<String> = sync
        .changes
        .iter()
        .filter_map(|c| match c {
            Event::Upsert(u) => Some(u.operator_id.clone()),
            _ => None,
        })
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged enrollments lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    // At most the four in flight at the kill may have landed unacknowledged.
    assert!(
        stored.len() <= acknowledged.len() + 4,
        "{} stored, {} acknowledged",
        stored.len(),
        acknowledged.len()
    );
    assert_eq!(
        sync.version as usize,
        stored.len(),
        "one version per enrollment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::start(dir.path(), &["--max-concurrency=1"]).await;
    let client = server.client();
    client
        .enroll(EnrollRequest {
            operator_id: operator(1),
            frames: vec![orl_raw(1, 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    let heavy = IdentifyRequest {
        frames: (0..32).map(|i| orl_encoded(1 + i, 2)).collect(),
        max_candidates: 1,
        threshold: None,
        min_usable_frames: 1,
        min_agreement: None,
    };
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (client, heavy) = (client.clone(), heavy.clone());
            tokio::spawn(async move { client.identify(heavy).await })
        })
        .collect();
    // Wait until the server has several of them in hand, then ask it to stop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !http_get(server.metrics, "/metrics").await.lines().any(|l| {
        l.strip_prefix("kubevision_requests_in_flight ")
            .is_some_and(|n| n.parse::<u32>().unwrap() >= 4)
    }) {
        assert!(
            Instant::now() < deadline,
            "the requests never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.signal("TERM");
    for call in calls {
        let answer = call
            .await
            .unwrap()
            .expect("a request in flight at SIGTERM is answered");
        assert_eq!(answer.frames.len(), 32);
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        client.gallery_status().await.is_err(),
        "nothing listens after shutdown"
    );
}
