//! Following the rollout, and the failures it explains.

use std::time::Duration;

use kubevision_cluster::{rollout, Error, Failure, Progress};
use serde_json::Value;

use crate::fake_api::FakeApi;
use crate::fixtures::{
    crash_loop, deployed, deployment_pod, deployment_with, image_pull_backoff, node, plant_nodes,
    pod, pod_path, running, statefulset_with, unschedulable, DEPLOY_PATH,
};

const TIMEOUT: Duration = Duration::from_secs(20);
const GPU_IMAGE: &str = "ghcr.io/kubevision/kubevision-offload:0.1.0-cuda";

#[tokio::test]
async fn follows_the_pods_until_every_replica_is_ready() {
    let (fake, conn, values, _dir) = deployed("defaults", plant_nodes()).await;
    fake.put(statefulset_with(&fake, 0));
    fake.put(pod(&fake, 0, running(GPU_IMAGE, false)));
    fake.on_next_watch(vec![
        pod(&fake, 0, running(GPU_IMAGE, true)),
        statefulset_with(&fake, 1),
    ]);

    let mut seen = Vec::new();
    let done = rollout(&conn, &values.release, TIMEOUT, |p| seen.push(p.clone()))
        .await
        .unwrap();
    let progress = |ready, message: &str| Progress {
        ready,
        desired: 1,
        message: message.into(),
    };
    assert_eq!(
        seen,
        [
            progress(0, "0 of 1 replicas ready"),
            progress(1, "all 1 replicas ready")
        ]
    );
    assert_eq!(done, seen[1]);

    let watch = fake
        .requests()
        .into_iter()
        .find(|r| r.query.contains_key("watch"))
        .unwrap();
    assert_eq!(watch.path, "/api/v1/namespaces/kubevision/pods");
    assert_eq!(watch.query["watch"], "true");
    assert_eq!(
        watch.query["labelSelector"],
        "app.kubernetes.io/instance=kv,app.kubernetes.io/part-of=kubevision"
    );
    assert_eq!(watch.query["timeoutSeconds"], "10");
    assert!(watch.query["resourceVersion"].parse::<u64>().unwrap() > 0);
}

#[tokio::test]
async fn follows_a_postgres_deployment_until_every_replica_is_ready() {
    // gallery.store=postgres: three replicas of a Deployment, no StatefulSet.
    let (fake, conn, values, _dir) = deployed("postgres-secret", plant_nodes()).await;
    let before = fake.requests().len();
    let image = "ghcr.io/kubevision/kubevision-offload:0.1.0";
    fake.put(deployment_with(&fake, 1));
    fake.put(deployment_pod(&fake, "x2k9p", running(image, true)));
    // Catching up with the database: NOT_SERVING, so not ready yet.
    fake.put(deployment_pod(&fake, "q7m4w", running(image, false)));
    fake.put(deployment_pod(&fake, "b5t8z", running(image, false)));
    fake.on_next_watch(vec![
        deployment_pod(&fake, "q7m4w", running(image, true)),
        deployment_pod(&fake, "b5t8z", running(image, true)),
        deployment_with(&fake, 3),
    ]);

    let mut seen = Vec::new();
    let done = rollout(&conn, &values.release, TIMEOUT, |p| seen.push(p.clone()))
        .await
        .unwrap();
    let progress = |ready, message: &str| Progress {
        ready,
        desired: 3,
        message: message.into(),
    };
    assert_eq!(
        seen,
        [
            progress(1, "1 of 3 replicas ready"),
            progress(3, "all 3 replicas ready")
        ]
    );
    assert_eq!(done, seen[1]);
    let requests = fake.requests().split_off(before);
    let read = |path: &str| {
        requests
            .iter()
            .filter(|r| {
                r.method == "GET" && r.path == path && r.query.contains_key("labelSelector")
            })
            .count()
    };
    // Each look reads the StatefulSets (none) and then the Deployments.
    assert_eq!(read("/apis/apps/v1/namespaces/kubevision/statefulsets"), 2);
    assert_eq!(read("/apis/apps/v1/namespaces/kubevision/deployments"), 2);
    assert!(fake.get(DEPLOY_PATH).is_some());
}

#[tokio::test]
async fn a_deployment_with_old_replicas_left_is_not_rolled_out() {
    let (fake, conn, values, _dir) = deployed("postgres-secret", plant_nodes()).await;
    let mut deployment = deployment_with(&fake, 3);
    // The new ReplicaSet is complete, one pod of the old one still runs.
    deployment["status"]["replicas"] = 4.into();
    fake.put(deployment);
    let err = rollout(&conn, &values.release, Duration::from_millis(1200), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rollout(Failure::Timeout {
                ready: 3,
                desired: 3,
                ..
            })
        ),
        "{err:?}"
    );
}

/// The failure a rollout of `set` stops with, when replica 0 is in `status`.
async fn failure_of(
    set: &str,
    nodes: Vec<Value>,
    status: Value,
    logs: Option<&str>,
) -> (FakeApi, Failure) {
    let (fake, conn, values, _dir) = deployed(set, nodes).await;
    fake.put(statefulset_with(&fake, 0));
    fake.put(pod(&fake, 0, status));
    if let Some(logs) = logs {
        fake.set_log(&pod_path(0), true, logs);
    }
    match rollout(&conn, &values.release, TIMEOUT, |_| {}).await {
        Err(Error::Rollout(failure)) => (fake, failure),
        other => panic!("{set}: expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled() {
    let (_, failure) = failure_of(
        "defaults",
        plant_nodes(),
        image_pull_backoff(GPU_IMAGE),
        None,
    )
    .await;
    let Failure::ImagePull { image, message } = &failure else {
        panic!("{failure:?}")
    };
    assert_eq!(image, GPU_IMAGE);
    assert!(message.starts_with("Back-off pulling image"), "{message}");
    assert!(failure
        .to_string()
        .starts_with(&format!("the image {GPU_IMAGE} cannot be pulled")));
}

#[tokio::test]
async fn a_crash_loop_with_the_last_log_lines() {
    let log: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    let (fake, failure) = failure_of(
        "cpu",
        plant_nodes(),
        crash_loop("ghcr.io/kubevision/kubevision-offload:0.1.0"),
        Some(&log),
    )
    .await;
    let expected: Vec<String> = (11..=30).map(|i| format!("line {i}")).collect();
    assert_eq!(
        failure,
        Failure::CrashLoop {
            container: "offload".into(),
            last_logs: expected
        }
    );
    assert!(failure
        .to_string()
        .starts_with("the offload container keeps crashing; its last log lines:\nline 11\n"));

    let log_request = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/log"))
        .unwrap();
    assert_eq!(log_request.path, format!("{}/log", pod_path(0)));
    assert_eq!(log_request.query["tailLines"], "20");
    assert_eq!(log_request.query["container"], "offload");
    assert_eq!(log_request.query["previous"], "true");
}

#[tokio::test]
async fn no_node_labelled_for_gpus() {
    let nodes = vec![
        node("line-server-1", Some("premise"), 0, true),
        node("cloud-1", Some("cloud"), 0, true),
    ];
    let message = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. \
                   preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    let (_, failure) = failure_of("defaults", nodes, unschedulable(message), None).await;
    assert_eq!(failure, Failure::NoGpuNode);
    assert!(failure
        .to_string()
        .starts_with("no node is labelled hardware=gpu"));
}

#[tokio::test]
async fn not_enough_gpus_on_the_gpu_nodes() {
    let nodes = vec![
        node("gpu-1", Some("gpu"), 1, true),
        node("line-server-1", Some("premise"), 0, true),
        node("cloud-1", Some("cloud"), 0, true),
    ];
    let message = "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node \
                   affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for \
                   incoming pod, 2 Preemption is not helpful for scheduling.";
    let (_, failure) = failure_of("gpu", nodes, unschedulable(message), None).await;
    assert_eq!(
        failure,
        Failure::InsufficientGpu {
            requested: 2,
            available: 1
        }
    );
    assert!(failure
        .to_string()
        .starts_with("each replica needs 2 nvidia.com/gpu but no GPU node has that many free"));
}

#[tokio::test]
async fn waiting_in_vain_times_out_with_the_schedulers_words() {
    let (fake, conn, values, _dir) = deployed("cpu", plant_nodes()).await;
    let message = "0/3 nodes are available: 1 node(s) had untolerated taint {hardware: gpu}, \
                   2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }.";
    fake.put(statefulset_with(&fake, 0));
    fake.put(pod(&fake, 0, unschedulable(message)));
    let mut seen = Vec::new();
    let err = rollout(&conn, &values.release, Duration::from_millis(1500), |p| {
        seen.push(p.clone())
    })
    .await
    .unwrap_err();
    let Error::Rollout(Failure::Timeout {
        waited,
        ready: 0,
        desired: 1,
    }) = err
    else {
        panic!("{err:?}")
    };
    assert!(waited >= Duration::from_millis(1500));
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].message,
        format!("Kubernetes cannot place the pod yet: {message}")
    );
}
