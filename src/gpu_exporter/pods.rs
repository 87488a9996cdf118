//! Which pod holds which GPU, from the kubelet's pod-resources API — the
//! `v1.PodResourcesLister/List` call on the kubelet's socket, which is where
//! dcgm-exporter learns it too.
//!
//! The messages are declared here with prost's derive, with the field numbers of
//! `k8s.io/kubelet/pkg/apis/podresources/v1` (only the fields read here; protobuf
//! skips the others), and the call goes through tonic's generic client:
//! generating code from the `.proto` would need protoc or a protobuf compiler at
//! build time for four messages and one call.
//!
//! Device-plugin device IDs name a GPU by its UUID (`GPU-…`, or `MIG-…` for a
//! MIG device), or by its index under the plugin's `--device-id-strategy=index`;
//! with time-slicing they carry a `::N` replica suffix, and several pods may
//! hold the same GPU. GPUs given out through dynamic resource allocation are not
//! read: their claims name devices the way the DRA driver names them, not by
//! UUID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::expose::dcgm::PodRef;

/// Where the kubelet serves the pod-resources API by default.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// The gRPC method.
pub const LIST: &str = "/v1.PodResourcesLister/List";

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodResourcesRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodResourcesResponse {
    #[prost(message, repeated, tag = "1")]
    pub pod_resources: Vec<PodResources>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodResources {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(message, repeated, tag = "3")]
    pub containers: Vec<ContainerResources>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerResources {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub devices: Vec<ContainerDevices>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerDevices {
    #[prost(string, tag = "1")]
    pub resource_name: String,
    #[prost(string, repeated, tag = "2")]
    pub device_ids: Vec<String>,
}

/// GPU device ID (without a replica suffix) → the containers that hold it.
pub type Holders = BTreeMap<String, Vec<PodRef>>;

/// The NVIDIA devices every container holds, by device ID.
pub fn holders(resp: &ListPodResourcesResponse) -> Holders {
    let mut out = Holders::new();
    for pod in &resp.pod_resources {
        for c in &pod.containers {
            for d in c.devices.iter().filter(|d| is_nvidia(&d.resource_name)) {
                for id in &d.device_ids {
                    let id = id.split_once("::").map_or(id.as_str(), |(gpu, _)| gpu);
                    let holders = out.entry(id.to_string()).or_default();
                    let p = PodRef {
                        namespace: pod.namespace.clone(),
                        name: pod.name.clone(),
                        container: c.name.clone(),
                    };
                    if !holders.contains(&p) {
                        holders.push(p);
                    }
                }
            }
        }
    }
    out
}

/// `nvidia.com/gpu`, `nvidia.com/mig-1g.10gb`, a renamed shared resource…
fn is_nvidia(resource: &str) -> bool {
    resource.starts_with("nvidia.com/")
}

/// The containers holding the GPU with this UUID and index.
pub fn of<'h>(holders: &'h Holders, uuid: &str, index: u32) -> &'h [PodRef] {
    holders
        .get(uuid)
        .or_else(|| holders.get(&index.to_string()))
        .map_or(&[], Vec::as_slice)
}

/// A client of the kubelet's pod-resources socket; it connects on first use
/// and again after the kubelet restarts.
#[derive(Clone)]
pub struct PodResourcesClient {
    channel: Channel,
    socket: PathBuf,
}

impl PodResourcesClient {
    pub fn new(socket: &Path) -> Self {
        let path = socket.to_path_buf();
        let connector = tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(&path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        });
        // The URI is a placeholder: the connector dials the socket.
        let channel = Endpoint::from_static("http://kubelet.sock")
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .connect_with_connector_lazy(connector);
        Self {
            channel,
            socket: socket.to_path_buf(),
        }
    }

    /// Every pod's resources, or why they could not be listed.
    pub async fn list(&self) -> Result<ListPodResourcesResponse, String> {
        let why = |e: &dyn std::fmt::Display| {
            format!("listing pod resources on {}: {e}", self.socket.display())
        };
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| why(&e))?;
        let resp = grpc
            .unary(
                tonic::Request::new(ListPodResourcesRequest {}),
                http::uri::PathAndQuery::from_static(LIST),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .map_err(|s| why(&format_args!("{}: {}", s.code(), s.message())))?;
        Ok(resp.into_inner())
    }
}

#[cfg(test)]
pub(crate) mod tests;
