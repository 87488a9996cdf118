//! Node registration and heartbeats.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tracing::warn;

/// One node the test kubelet registers.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub ip: String,
    /// GPUs advertised as `nvidia.com/gpu` (0: a CPU node).
    pub gpus: u32,
    pub gpu_product: String,
}

const FIELD_MANAGER: &str = "benchrun-e2e-kubelet";
pub const KUBELET_VERSION: &str = "v1.34.4-benchrun-e2e";

/// The Node object as a kubelet registers it: labels (with the labels NVIDIA's
/// GPU feature discovery puts on GPU nodes), capacity, addresses, Ready.
pub fn node_object(spec: &NodeSpec, now: Timestamp) -> Node {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), spec.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("benchrun.dev/e2e-node".to_string(), "true".to_string()),
    ]);
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity("16".into())),
        ("memory".to_string(), Quantity("128Gi".into())),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]);
    if spec.gpus > 0 {
        labels.extend([
            ("nvidia.com/gpu.present".to_string(), "true".to_string()),
            ("nvidia.com/gpu.count".to_string(), spec.gpus.to_string()),
            (
                "nvidia.com/gpu.product".to_string(),
                spec.gpu_product.clone(),
            ),
            (
                "nvidia.com/gpu.deploy.dcgm-exporter".to_string(),
                "true".to_string(),
            ),
        ]);
        capacity.insert(
            "nvidia.com/gpu".to_string(),
            Quantity(spec.gpus.to_string()),
        );
    }
    Node {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: spec.ip.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: spec.name.clone(),
                },
            ]),
            conditions: Some(vec![ready_condition(now)]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                kubelet_version: KUBELET_VERSION.into(),
                kube_proxy_version: String::new(),
                container_runtime_version: "benchrun-e2e://processes".into(),
                os_image: "benchrun e2e test kubelet".into(),
                kernel_version: String::new(),
                boot_id: String::new(),
                machine_id: String::new(),
                system_uuid: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn ready_condition(now: Timestamp) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("KubeletReady".into()),
        message: Some("benchrun e2e test kubelet is posting ready status".into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Creates (or re-creates) the node and sets its status.
pub async fn register(client: &kube::Client, spec: &NodeSpec) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = node_object(spec, Timestamp::now());
    if nodes.get_opt(&spec.name).await?.is_none() {
        nodes.create(&PostParams::default(), &node).await?;
    }
    let status = serde_json::json!({ "status": node.status });
    nodes
        .patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// Renews the node Lease every 10 s and the Ready heartbeat every 30 s, as the
/// kubelet does, so the node lifecycle controller keeps the node Ready.
pub async fn heartbeat(client: kube::Client, spec: NodeSpec) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = 0u64;
    loop {
        let now = Timestamp::now();
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": spec.name },
            "spec": LeaseSpec {
                holder_identity: Some(spec.name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(now)),
                ..Default::default()
            },
        });
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = leases.patch(&spec.name, &pp, &Patch::Apply(&lease)).await {
            warn!(node = %spec.name, error = %e, "renewing the node lease");
        }
        if tick.is_multiple_of(3) {
            let status = serde_json::json!({ "status": { "conditions": [ready_condition(now)] } });
            if let Err(e) = nodes
                .patch_status(
                    &spec.name,
                    &PatchParams::default(),
                    &Patch::Strategic(&status),
                )
                .await
            {
                warn!(node = %spec.name, error = %e, "posting node status");
            }
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_nodes_advertise_gpus_and_carry_gpu_labels() {
        let spec = NodeSpec {
            name: "gpu-0".into(),
            ip: "198.19.0.1".into(),
            gpus: 4,
            gpu_product: "NVIDIA-H100-80GB-HBM3".into(),
        };
        let node = node_object(&spec, Timestamp::UNIX_EPOCH);
        let status = node.status.unwrap();
        assert_eq!(status.capacity.unwrap()["nvidia.com/gpu"].0, "4");
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
        assert_eq!(labels["kubernetes.io/hostname"], "gpu-0");
        assert_eq!(status.conditions.unwrap()[0].status, "True");
    }

    #[test]
    fn cpu_nodes_have_no_gpu_resources() {
        let spec = NodeSpec {
            name: "cpu-0".into(),
            ip: "198.19.0.2".into(),
            gpus: 0,
            gpu_product: String::new(),
        };
        let node = node_object(&spec, Timestamp::UNIX_EPOCH);
        assert!(
            !node
                .status
                .unwrap()
                .capacity
                .unwrap()
                .contains_key("nvidia.com/gpu")
        );
        assert!(
            !node
                .metadata
                .labels
                .unwrap()
                .contains_key("nvidia.com/gpu.present")
        );
    }
}
