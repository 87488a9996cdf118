//! `--kubernetes`: what the Node says (GPU count, product) and which of its
//! pods hold GPUs, as dcgm-exporter learns them from the kubelet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::serving::{self, Claim, PodRef};
use super::{DEFAULT_GPUS, DcgmOpts, Node, Shape};
use crate::discovery::{PodInfo, PortRule, metrics_url};

/// Fills what the flags left open from the Node: GPU capacity and product label.
pub(super) async fn node_shape(
    client: &kube::Client,
    name: &str,
    opts: &DcgmOpts,
    shape: &mut Shape,
) -> Result<(), String> {
    use k8s_openapi::api::core::v1::Node as KNode;
    let node = kube::Api::<KNode>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| format!("reading Node {name}: {e}"))?;
    if opts.gpus.is_none() {
        shape.gpus = node
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("nvidia.com/gpu"))
            .and_then(|q| q.0.parse().ok())
            .unwrap_or(DEFAULT_GPUS);
    }
    if opts.model_name.is_none()
        && let Some(product) = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("nvidia.com/gpu.product"))
    {
        shape.model_name = product.replace('-', " ");
    }
    Ok(())
}

/// Every few seconds: the pods on `node_name` holding GPUs, placed on GPUs.
pub(super) async fn discover(
    client: kube::Client,
    node_name: String,
    node: Arc<Mutex<Node>>,
    n: usize,
) {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::all(client);
    let params = kube::api::ListParams::default().fields(&format!("spec.nodeName={node_name}"));
    let mut warned: Vec<PodRef> = Vec::new();
    loop {
        match pods.list(&params).await {
            Ok(list) => {
                let claims: Vec<Claim> = list.items.iter().filter_map(claim).collect();
                let mut n_ = node.lock().unwrap_or_else(|p| p.into_inner());
                let (placed, unplaced) = serving::place(&n_.assignments, &claims, n);
                if placed != n_.assignments {
                    n_.assignments = placed;
                    n_.render();
                }
                for p in unplaced {
                    if !warned.contains(&p) {
                        eprintln!(
                            "benchrun sim dcgm: no free GPUs for {}/{} (node has {n})",
                            p.namespace, p.name
                        );
                        warned.push(p);
                    }
                }
            }
            Err(e) => eprintln!("benchrun sim dcgm: listing pods on {node_name}: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A running pod's GPU claim and metrics URL: the port from the
/// `prometheus.io/port` annotation, else the GPU container's port named
/// `metrics` or `http`, else its first port; the path from `prometheus.io/path`
/// (the rules of the controller's discovery).
fn claim(pod: &k8s_openapi::api::core::v1::Pod) -> Option<Claim> {
    let meta = &pod.metadata;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    let spec = pod.spec.as_ref()?;
    let mut gpus = 0usize;
    let mut container = None;
    for c in &spec.containers {
        let n = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("nvidia.com/gpu"))
            .and_then(|q| q.0.parse::<usize>().ok())
            .unwrap_or(0);
        if n > 0 {
            gpus += n;
            container.get_or_insert(c);
        }
    }
    let c = container?;
    // The GPU container's ports, found as the controller finds a server's.
    let mut info = PodInfo::from(pod);
    info.ports = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone(), p.container_port))
        .collect();
    let rule = PortRule {
        number: None,
        name: None,
        names: &["metrics", "http"],
        fallback: None,
        https: false,
    };
    let url = metrics_url(&info, rule, "/metrics")?;
    Some(Claim {
        pod: PodRef {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            container: c.name.clone(),
        },
        gpus,
        url,
    })
}
