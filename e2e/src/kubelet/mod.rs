//! The test kubelet: registers nodes and runs the pods bound to them as local
//! processes. It is the one stand-in of the end-to-end fixture, because there is
//! no container runtime on the machines the suite runs on.
//!
//! What it does, as a kubelet would:
//! - registers each node (GPU nodes with `nvidia.com/gpu` capacity and the
//!   labels of NVIDIA's GPU feature discovery), renews its Lease and posts a
//!   Ready heartbeat, each node under its own `system:node:<name>` identity;
//! - for every pod bound to a node: resolves env (values, `$(VAR)`, fieldRef,
//!   ConfigMap and Secret refs, envFrom), gives it its own IP, mints a token for
//!   its service account bound to the pod (TokenRequest API) and passes it as a
//!   kubeconfig through `KUBECONFIG`, starts each container as a process, runs
//!   httpGet and tcpSocket readiness probes, restarts by restartPolicy with a
//!   back-off, and writes real pod status (IP, phase, container states, exit
//!   codes, the log tail as termination message under FallbackToLogsOnError);
//! - on deletion: SIGTERM, the grace period, SIGKILL, then completes the delete.
//!
//! What it does not: images (an image's name selects a program from a table),
//! mounts other than the service-account token and emptyDir, init containers,
//! liveness and exec probes, resource limits, logs and exec through the API.
//! Every pod also gets `POD_IP`, `POD_NAME`, `POD_NAMESPACE` and `NODE_NAME`
//! unless it sets them, because processes share one network namespace and must
//! bind their own address rather than 0.0.0.0.

mod launch;
mod net;
mod node;
mod pod;
mod prepare;
mod readiness;
mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use launch::Images;
pub use net::IpPool;
pub use node::NodeSpec;

use crate::cluster::ControlPlane;
use crate::kubeconfig::{self, Credentials};

/// What every pod on a node shares.
pub struct Node {
    client: kube::Client,
    spec: NodeSpec,
    images: Images,
    pods_dir: PathBuf,
    server: String,
    ca_pem: String,
    ips: Arc<IpPool>,
}

/// The running kubelet: one task per node.
pub struct Kubelet {
    ips: Arc<IpPool>,
    stops: Vec<watch::Sender<bool>>,
    serving: Vec<JoinHandle<()>>,
    heartbeats: Vec<JoinHandle<()>>,
}

impl Kubelet {
    /// Registers `nodes` and starts serving their pods.
    pub async fn start(cp: &ControlPlane, nodes: Vec<NodeSpec>, images: Images) -> Result<Self> {
        let ips = Arc::new(IpPool::claim()?);
        let mut stops = Vec::new();
        let mut serving = Vec::new();
        let mut heartbeats = Vec::new();
        for spec in nodes {
            let user = format!("system:node:{}", spec.name);
            let cert = cp.pki.client(&user, Some("system:nodes"))?;
            let rendered =
                kubeconfig::render(&cp.server, &cp.pki.ca_pem, &user, Credentials::Cert(&cert));
            let client = kubeconfig::client(&rendered).await?;
            node::register(&client, &spec).await?;
            info!(node = %spec.name, gpus = spec.gpus, "node registered");
            heartbeats.push(tokio::spawn(node::heartbeat(client.clone(), spec.clone())));
            let node = Arc::new(Node {
                client,
                pods_dir: cp.dir.join("pods"),
                spec,
                images: images.clone(),
                server: cp.server.clone(),
                ca_pem: cp.pki.ca_pem.clone(),
                ips: ips.clone(),
            });
            let (tx, rx) = watch::channel(false);
            stops.push(tx);
            serving.push(tokio::spawn(serve(node, rx)));
        }
        Ok(Self {
            ips,
            stops,
            serving,
            heartbeats,
        })
    }

    /// Stops every pod process and frees every pod address.
    pub async fn stop(self) {
        for s in &self.stops {
            let _ = s.send(true);
        }
        for t in self.heartbeats {
            t.abort();
        }
        for t in self.serving {
            let _ = t.await;
        }
        self.ips.release_all();
    }
}

/// An annotation a test puts on a pod to have its processes killed with
/// SIGKILL at once, as an OOM kill or a lost node would: no grace period, no
/// SIGTERM handler. The pod then fails as its restart policy says.
pub const KILL_ANNOTATION: &str = "e2e.benchrun.dev/kill";

/// A pod this kubelet runs: its stop (deletion) and kill (SIGKILL) signals
/// and its task.
type Running = (watch::Sender<bool>, watch::Sender<bool>, JoinHandle<()>);

/// Watches the pods bound to one node and runs each in its own task.
async fn serve(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(node.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", node.spec.name));
    let mut events = watcher::watcher(api, config).boxed();
    let mut pods: HashMap<String, Running> = HashMap::new();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = shutdown.changed() => break,
        };
        match event {
            Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let deleting = pod.metadata.deletion_timestamp.is_some();
                let killed = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(KILL_ANNOTATION));
                if let Some((stop, kill, _)) = pods.get(&uid) {
                    if deleting {
                        let _ = stop.send(true);
                    }
                    if killed {
                        kill.send_if_modified(|k| !std::mem::replace(k, true));
                    }
                } else if !is_terminal(&pod) || deleting {
                    let (tx, rx) = watch::channel(deleting);
                    let (kill_tx, kill_rx) = watch::channel(false);
                    let task = tokio::spawn(pod::run(node.clone(), pod, rx, kill_rx));
                    pods.insert(uid, (tx, kill_tx, task));
                }
            }
            Some(Ok(Event::Delete(pod))) => {
                let uid = pod.metadata.uid.unwrap_or_default();
                if let Some((stop, _, _)) = pods.get(&uid) {
                    let _ = stop.send(true);
                }
            }
            Some(Ok(Event::Init | Event::InitDone)) => {}
            Some(Err(e)) => warn!(node = %node.spec.name, error = %e, "pod watch"),
            None => break,
        }
        pods.retain(|_, (_, _, task)| !task.is_finished());
    }
    for (stop, _, _) in pods.values() {
        let _ = stop.send(true);
    }
    for (_, (_, _, task)) in pods {
        let _ = task.await;
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}
