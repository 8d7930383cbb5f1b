//! The cluster's nodes as the chart sees them: `hardware` label, GPUs, readiness.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::connect::Connection;
use crate::error::Error;

/// The extended resource the NVIDIA device plugin advertises.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The node label the chart selects on (chart/README.md, "Prepare the nodes").
pub const HARDWARE_LABEL: &str = "hardware";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `gpu`, `premise`, `cloud`, or `None` for an unlabelled node.
    pub hardware: Option<String>,
    /// `status.capacity["nvidia.com/gpu"]`.
    pub gpus: u64,
    /// What a pod may request: capacity less what the system reserves.
    pub allocatable_gpus: u64,
    pub ready: bool,
    /// Carries the `hardware=gpu:NoSchedule` taint that keeps other workloads off.
    pub tainted_gpu: bool,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        let gpu_count = |quantities: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >| {
            quantities
                .and_then(|q| q.get(GPU_RESOURCE))
                .and_then(|q| q.0.parse().ok())
                .unwrap_or(0)
        };
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            hardware: node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HARDWARE_LABEL))
                .cloned(),
            gpus: gpu_count(status.and_then(|s| s.capacity.as_ref())),
            allocatable_gpus: gpu_count(status.and_then(|s| s.allocatable.as_ref())),
            ready: status
                .and_then(|s| s.conditions.as_deref())
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            tainted_gpu: taints.iter().any(|t| {
                t.key == HARDWARE_LABEL
                    && t.value.as_deref() == Some("gpu")
                    && t.effect == "NoSchedule"
            }),
        }
    }
}

/// Every node, sorted by name.
pub async fn list_nodes(conn: &Connection) -> Result<Vec<NodeInfo>, Error> {
    let api: Api<Node> = Api::all(conn.client().clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("list the nodes", e))?;
    let mut nodes: Vec<NodeInfo> = list.items.iter().map(NodeInfo::from_node).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}
