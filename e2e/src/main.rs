//! `benchrun-e2e up`: a local cluster for the demo and the end-to-end suite.
//!
//! Starts the control plane and the test kubelet, writes `<dir>/kubeconfig`
//! and then `<dir>/ready`, and runs until SIGINT or SIGTERM (or until a
//! component dies), then stops everything, removes the pod addresses, and
//! removes `<dir>` unless `--keep-dir` is given.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use benchrun_e2e::cluster::{ControlPlane, Tools};
use benchrun_e2e::kubelet::{Images, IpPool, Kubelet, NodeSpec};
use clap::{Parser, Subcommand};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

#[derive(Parser)]
#[command(
    name = "benchrun-e2e",
    about = "A local Kubernetes cluster with a process-running test kubelet"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring a cluster up and keep it running until SIGINT or SIGTERM.
    Up(Up),
}

#[derive(Parser)]
struct Up {
    /// Folder for certificates, etcd data, logs and pod folders.
    #[arg(long)]
    dir: PathBuf,
    /// Folder with etcd and the Kubernetes binaries (e2e/tools/build.sh prints it).
    #[arg(long)]
    tools: PathBuf,
    /// GPU nodes to register.
    #[arg(long, default_value_t = 2)]
    gpu_nodes: u8,
    /// CPU-only nodes to register.
    #[arg(long, default_value_t = 1)]
    cpu_nodes: u8,
    /// `nvidia.com/gpu` capacity of each GPU node.
    #[arg(long, default_value_t = 4)]
    gpus_per_node: u32,
    /// GPU product label of the GPU nodes.
    #[arg(long, default_value = "NVIDIA-H100-80GB-HBM3")]
    gpu_product: String,
    /// Image to program mapping, NAME=PATH (repeatable): an image whose last
    /// repository segment is NAME runs PATH.
    #[arg(long = "image", value_parser = parse_image)]
    images: Vec<(String, PathBuf)>,
    /// An extra kube-apiserver flag (repeatable), e.g.
    /// `--apiserver-arg=--audit-log-path=FILE` for bench/scale.sh.
    #[arg(long = "apiserver-arg", allow_hyphen_values = true)]
    apiserver_args: Vec<String>,
    /// Keep the folder (logs, etcd data) after stopping.
    #[arg(long)]
    keep_dir: bool,
}

fn parse_image(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or("expected NAME=PATH")?;
    let path = std::fs::canonicalize(path).map_err(|e| format!("{path}: {e}"))?;
    Ok((name.to_string(), path))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BENCHRUN_E2E_LOG")
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cmd::Up(up) = Cli::parse().command;
    if let Err(e) = run(up).await {
        error!("{e:#}");
        std::process::exit(1);
    }
}

async fn run(up: Up) -> Result<()> {
    if up.dir.join("ready").exists() {
        bail!(
            "{} already holds a cluster (remove it first)",
            up.dir.display()
        );
    }
    std::fs::create_dir_all(&up.dir)?;
    let dir = std::fs::canonicalize(&up.dir)?;
    let tools = Tools {
        bin: up.tools.clone(),
    };
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let mut cp = ControlPlane::start(&dir, &tools, &up.apiserver_args)
        .await
        .context("starting the control plane")?;
    let nodes = (0..up.gpu_nodes)
        .map(|i| {
            node(
                format!("gpu-node-{i}"),
                i,
                up.gpus_per_node,
                &up.gpu_product,
            )
        })
        .chain((0..up.cpu_nodes).map(|i| node(format!("cpu-node-{i}"), up.gpu_nodes + i, 0, "")))
        .collect();
    let images = Images(up.images.iter().cloned().collect::<BTreeMap<_, _>>());
    let kubelet = Kubelet::start(&cp, nodes, images)
        .await
        .context("starting the test kubelet")?;
    std::fs::write(dir.join("ready"), format!("{}\n", cp.kubeconfig.display()))?;
    info!(kubeconfig = %cp.kubeconfig.display(), "cluster is up");

    let mut check = tokio::time::interval(Duration::from_secs(1));
    let outcome = loop {
        tokio::select! {
            _ = sigterm.recv() => break Ok(()),
            _ = sigint.recv() => break Ok(()),
            _ = check.tick() => {
                if let Err(e) = cp.check_alive() {
                    break Err(e);
                }
            }
        }
    };
    info!("stopping the cluster");
    kubelet.stop().await;
    cp.stop().await;
    if up.keep_dir {
        let _ = std::fs::remove_file(dir.join("ready"));
    } else {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    outcome
}

fn node(name: String, index: u8, gpus: u32, product: &str) -> NodeSpec {
    NodeSpec {
        name,
        ip: IpPool::node_ip(index).to_string(),
        gpus,
        gpu_product: product.to_string(),
    }
}
