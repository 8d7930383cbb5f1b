//! Why pods are not ready, in plain words: the pods' container states and
//! scheduling conditions, with the nodes and the crashing container's log.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use crate::connect::Connection;
use crate::error::Error;
use crate::kinds::release_selector;
use crate::nodes::{list_nodes, NodeInfo, GPU_RESOURCE};
use crate::values::Release;

/// Log lines shown for a crashing container.
const LOG_TAIL: i64 = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The image cannot be pulled (wrong repository or tag, registry credentials).
    ImagePull { image: String, message: String },
    /// The pods want a GPU node and no node is labelled `hardware=gpu`.
    NoGpuNode,
    /// GPU nodes exist, but none has `requested` GPUs free; `available` is
    /// the most any one of them offers at all.
    InsufficientGpu { requested: u64, available: u64 },
    /// The container keeps exiting; its last log lines before the crash.
    CrashLoop {
        container: String,
        last_logs: Vec<String>,
    },
    /// Not schedulable for another reason, in the scheduler's words. May
    /// resolve by itself (e.g. a volume still being provisioned).
    Unschedulable { message: String },
    /// Not ready in time, without any of the failures above.
    Timeout {
        waited: Duration,
        ready: i32,
        desired: i32,
    },
}

impl Failure {
    /// Whether waiting longer cannot help: rollout stops at once on these.
    pub fn is_final(&self) -> bool {
        !matches!(self, Failure::Unschedulable { .. })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ImagePull { image, message } => write!(
                f,
                "the image {image} cannot be pulled ({message}): check image.repository, image.tag and imagePullSecrets"
            ),
            Failure::NoGpuNode => write!(
                f,
                "no node is labelled hardware=gpu: label a GPU node (kubectl label node <node> hardware=gpu) \
                 or deploy the CPU variant (gpu.enabled=false)"
            ),
            Failure::InsufficientGpu { requested, available } => write!(
                f,
                "each replica needs {requested} {GPU_RESOURCE} but no GPU node has that many free \
                 (the largest offers {available}): lower gpu.count or the replicas, or free a GPU"
            ),
            Failure::CrashLoop { container, last_logs } => {
                write!(f, "the {container} container keeps crashing")?;
                if last_logs.is_empty() {
                    write!(f, " (no log lines)")
                } else {
                    write!(f, "; its last log lines:\n{}", last_logs.join("\n"))
                }
            }
            Failure::Unschedulable { message } => write!(f, "Kubernetes cannot place the pod yet: {message}"),
            Failure::Timeout { waited, ready, desired } => write!(
                f,
                "not ready after {} s: {ready} of {desired} replicas ready",
                waited.as_secs()
            ),
        }
    }
}

/// The failures of the release's pods, each reported once however many
/// replicas share it.
pub async fn diagnose(conn: &Connection, release: &Release) -> Result<Vec<Failure>, Error> {
    let pods: Api<Pod> = Api::namespaced(conn.client().clone(), &release.namespace);
    let list = pods
        .list(&ListParams::default().labels(&release_selector(release)))
        .await
        .map_err(|e| Error::kube("list the pods", e))?;
    let mut nodes: Option<Vec<NodeInfo>> = None;
    let mut failures = Vec::new();
    for pod in &list.items {
        let failure = match pod_problem(pod) {
            None => continue,
            Some(Problem::ImagePull { image, message }) => Failure::ImagePull { image, message },
            Some(Problem::CrashLoop { container }) => {
                let last_logs = last_logs(&pods, pod, &container).await;
                Failure::CrashLoop {
                    container,
                    last_logs,
                }
            }
            Some(Problem::Unschedulable { message }) => {
                let nodes = match &nodes {
                    Some(nodes) => nodes,
                    None => nodes.insert(list_nodes(conn).await?),
                };
                unschedulable(pod, message, nodes)
            }
        };
        if !failures.contains(&failure) {
            failures.push(failure);
        }
    }
    Ok(failures)
}

/// What one pod's status shows, before looking at nodes or logs.
enum Problem {
    ImagePull { image: String, message: String },
    CrashLoop { container: String },
    Unschedulable { message: String },
}

fn pod_problem(pod: &Pod) -> Option<Problem> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .chain(&status.container_statuses)
        .flatten();
    for cs in containers {
        let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let message = waiting.message.clone().unwrap_or_default();
        match waiting.reason.as_deref() {
            Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName") => {
                return Some(Problem::ImagePull {
                    image: cs.image.clone(),
                    message,
                });
            }
            Some("CrashLoopBackOff") => {
                return Some(Problem::CrashLoop {
                    container: cs.name.clone(),
                })
            }
            _ => {}
        }
    }
    let unscheduled = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })?;
    Some(Problem::Unschedulable {
        message: unscheduled.message.clone().unwrap_or_default(),
    })
}

fn unschedulable(pod: &Pod, message: String, nodes: &[NodeInfo]) -> Failure {
    let requested = gpu_request(pod);
    let gpu_nodes: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| n.hardware.as_deref() == Some("gpu"))
        .collect();
    if requested == 0 {
        Failure::Unschedulable { message }
    } else if gpu_nodes.is_empty() {
        Failure::NoGpuNode
    } else if message.contains(&format!("Insufficient {GPU_RESOURCE}")) {
        let available = gpu_nodes
            .iter()
            .map(|n| n.allocatable_gpus)
            .max()
            .unwrap_or(0);
        Failure::InsufficientGpu {
            requested,
            available,
        }
    } else {
        Failure::Unschedulable { message }
    }
}

/// GPUs one pod asks for (extended resources are set as limits).
fn gpu_request(pod: &Pod) -> u64 {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .filter_map(|c| {
            c.resources
                .as_ref()?
                .limits
                .as_ref()?
                .get(GPU_RESOURCE)?
                .0
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The log of the crashed run (`previous`), else of the current one. Logs
/// are an aid to the explanation, so a failure to fetch them leaves the
/// list empty rather than hiding the crash loop behind another error.
async fn last_logs(pods: &Api<Pod>, pod: &Pod, container: &str) -> Vec<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut params = LogParams {
        container: Some(container.to_owned()),
        tail_lines: Some(LOG_TAIL),
        previous: true,
        ..LogParams::default()
    };
    let text = match pods.logs(name, &params).await {
        Ok(text) => text,
        Err(_) => {
            params.previous = false;
            pods.logs(name, &params).await.unwrap_or_default()
        }
    };
    text.lines().map(str::to_owned).collect()
}
