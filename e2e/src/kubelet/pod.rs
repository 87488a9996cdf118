//! One pod: its processes, readiness, restarts, status and termination.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{info, warn};

use super::Node;
use super::launch::{self, PodFacts};
use super::status::{ContainerRun, Exit, pod_status};
use super::{prepare, readiness};
use crate::process::{Proc, tail};

/// Runs `pod` until it ends or `stop` turns true (the pod is being deleted);
/// its processes are killed with SIGKILL when `kill` turns true.
pub async fn run(
    node: Arc<Node>,
    pod: Pod,
    mut stop: watch::Receiver<bool>,
    mut kill: watch::Receiver<bool>,
) {
    let name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let mut worker = Worker::new(node.clone(), pod);
    // A pod deleted (or already ended) before it ran only needs its deletion completed.
    if *stop.borrow() {
        worker.shutdown().await;
        return;
    }
    worker.started = true;
    if let Err(e) = worker.start().await {
        warn!(pod = %name, error = %format!("{e:#}"), "pod cannot start");
        worker.fail_to_start(&format!("{e:#}")).await;
    }
    worker.supervise(&mut stop, &mut kill).await;
    worker.shutdown().await;
    info!(pod = %name, "pod stopped");
}

struct Worker {
    node: Arc<Node>,
    pod: Pod,
    dir: PathBuf,
    ip: Option<Ipv4Addr>,
    containers: Vec<ContainerRun>,
    procs: Vec<Option<Proc>>,
    envs: Vec<Vec<(String, String)>>,
    start_error: Option<String>,
    /// When a pod that could not start is tried again, and the wait after that.
    retry: Option<(tokio::time::Instant, Duration)>,
    last_status: Option<serde_json::Value>,
    /// Whether this kubelet ran the pod (and so owns its status).
    started: bool,
}

impl Worker {
    fn new(node: Arc<Node>, pod: Pod) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = node.pods_dir.join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            uid.get(..8).unwrap_or(&uid)
        ));
        let containers = spec(&pod)
            .containers
            .iter()
            .map(|c| ContainerRun::new(&c.name, c.image.as_deref().unwrap_or_default()))
            .collect::<Vec<_>>();
        let procs = containers.iter().map(|_| None).collect();
        Self {
            node,
            pod,
            dir,
            ip: None,
            containers,
            procs,
            envs: Vec::new(),
            start_error: None,
            retry: None,
            last_status: None,
            started: false,
        }
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.node.client.clone(), self.namespace())
    }

    fn namespace(&self) -> &str {
        namespace(&self.pod)
    }

    /// Prepares the pod: checks volumes, resolves env, claims an address, mints
    /// the service-account kubeconfig, and starts every container.
    async fn start(&mut self) -> Result<()> {
        if spec(&self.pod)
            .init_containers
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        {
            anyhow::bail!("the test kubelet does not run init containers");
        }
        std::fs::create_dir_all(&self.dir)?;
        let prepared = prepare::volumes(&self.node, &self.pod, &self.dir).await?;
        let sources = prepare::env_sources(&self.node, &self.pod).await?;
        // A retried start keeps the address it claimed.
        let ip = match self.ip {
            Some(ip) => ip,
            None => self.node.ips.allocate()?,
        };
        self.ip = Some(ip);
        self.envs.clear();
        let ip_text = ip.to_string();
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: &ip_text,
            host_ip: &self.node.spec.ip,
        };
        for c in &spec(&self.pod).containers {
            let mut env = launch::environment(c, &facts, &sources).map_err(anyhow::Error::msg)?;
            launch::relocate(c, &prepared.config_maps, &mut env);
            let defaults = [
                ("POD_IP", ip_text.clone()),
                (
                    "POD_NAME",
                    self.pod.metadata.name.clone().unwrap_or_default(),
                ),
                ("POD_NAMESPACE", self.namespace().to_string()),
                ("NODE_NAME", self.node.spec.name.clone()),
            ];
            for (k, v) in defaults {
                if !env.iter().any(|(name, _)| name == k) {
                    env.insert(0, (k.to_string(), v));
                }
            }
            if let Some(path) = &prepared.kubeconfig {
                env.push(("KUBECONFIG".into(), path.display().to_string()));
            }
            env.push(("HOME".into(), self.dir.display().to_string()));
            env.push(("TMPDIR".into(), self.dir.display().to_string()));
            env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
            self.envs.push(env);
        }
        for i in 0..self.containers.len() {
            self.spawn(i)?;
        }
        self.write_status().await;
        Ok(())
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let c = &spec(&self.pod).containers[i];
        let (program, args) =
            launch::argv(&self.node.images, c, &self.envs[i]).map_err(anyhow::Error::msg)?;
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(self.envs[i].iter().cloned())
            .current_dir(&self.dir);
        let proc = Proc::spawn(&c.name, cmd, &self.log(i))?;
        self.containers[i].started(proc.pid());
        self.procs[i] = Some(proc);
        Ok(())
    }

    fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.containers[i].name))
    }

    /// Records why the pod cannot start and, like a kubelet, tries again
    /// later with a growing wait: a Secret or ConfigMap may appear, or the
    /// node authorizer may not yet relate a just-bound pod's Secret to this node.
    async fn fail_to_start(&mut self, message: &str) {
        self.start_error = Some(message.to_string());
        let wait = self.retry.map_or(Duration::from_millis(500), |(_, w)| {
            (w * 2).min(Duration::from_secs(10))
        });
        self.retry = Some((tokio::time::Instant::now() + wait, wait));
        for c in &mut self.containers {
            c.cannot_start(message);
        }
        self.write_status().await;
    }

    /// Watches processes and probes until the pod ends or is being deleted.
    async fn supervise(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        kill: &mut watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut killing = true;
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
                changed = kill.changed(), if killing => {
                    killing = changed.is_ok();
                    if *kill.borrow() {
                        info!(pod = ?self.pod.metadata.name, "killed (SIGKILL)");
                        for p in self.procs.iter().flatten() {
                            p.kill();
                        }
                    }
                }
            }
            if self.start_error.is_some() {
                if self
                    .retry
                    .is_some_and(|(at, _)| tokio::time::Instant::now() >= at)
                {
                    match self.start().await {
                        Ok(()) => self.start_error = None,
                        Err(e) => self.fail_to_start(&format!("{e:#}")).await,
                    }
                }
                continue;
            }
            self.reap();
            self.restart_due();
            self.probe().await;
            self.write_status().await;
            if self.containers.iter().all(ContainerRun::is_finished) {
                // Terminal: the processes are gone; wait for the deletion.
                let _ = stop.wait_for(|s| *s).await;
                return;
            }
        }
    }

    fn restart_policy(&self) -> &str {
        spec(&self.pod)
            .restart_policy
            .as_deref()
            .unwrap_or("Always")
    }

    fn reap(&mut self) {
        for i in 0..self.containers.len() {
            let Some(status) = self.procs[i].as_mut().and_then(|p| p.try_exit()) else {
                continue;
            };
            self.procs[i] = None;
            let code = exit_code(status);
            let c = &spec(&self.pod).containers[i];
            let message = (code != 0
                && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError"))
            .then(|| tail(&self.log(i), 80, 4096));
            let policy = self.restart_policy().to_string();
            self.containers[i].exited(Exit { code, message }, &policy);
        }
    }

    fn restart_due(&mut self) {
        for i in 0..self.containers.len() {
            if self.containers[i].restart_due()
                && let Err(e) = self.spawn(i)
            {
                self.containers[i].cannot_start(&format!("{e:#}"));
            }
        }
    }

    async fn probe(&mut self) {
        let Some(ip) = self.ip else { return };
        for (i, c) in spec(&self.pod).containers.iter().enumerate() {
            if !self.containers[i].running() {
                continue;
            }
            let ready = match &c.readiness_probe {
                None => true,
                Some(p) if !self.containers[i].probe_due(p) => continue,
                Some(p) => readiness::check(p, c, ip).await,
            };
            self.containers[i].set_ready(ready);
        }
    }

    async fn write_status(&mut self) {
        let status = pod_status(
            &self.containers,
            self.ip.map(|ip| ip.to_string()).as_deref(),
            &self.node.spec.ip,
            self.start_error.as_deref(),
        );
        let body = serde_json::json!({ "status": status });
        if self.last_status.as_ref() == Some(&body) {
            return;
        }
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        match self
            .api()
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&body))
            .await
        {
            Ok(_) => self.last_status = Some(body),
            Err(e) => warn!(pod = %name, error = %e, "writing pod status"),
        }
    }

    /// Stops the processes (SIGTERM, the grace period, SIGKILL), records how
    /// they ended, frees the address, and completes a pending deletion.
    async fn shutdown(&mut self) {
        let grace = spec(&self.pod)
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64;
        let grace = Duration::from_secs(grace);
        let stops = self
            .procs
            .iter_mut()
            .enumerate()
            .filter_map(|(i, p)| p.as_mut().map(|p| (i, p)));
        let ended =
            futures::future::join_all(stops.map(|(i, p)| async move { (i, p.stop(grace).await) }))
                .await;
        for (i, status) in ended {
            let code = status.map(exit_code).unwrap_or(137);
            self.containers[i].exited(
                Exit {
                    code,
                    message: None,
                },
                "Never",
            );
        }
        self.procs.iter_mut().for_each(|p| *p = None);
        if let Some(ip) = self.ip.take() {
            self.node.ips.release(ip);
        }
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let api = self.api();
        let current = api.get_opt(&name).await.ok().flatten();
        let same = current
            .as_ref()
            .is_some_and(|p| p.metadata.uid == self.pod.metadata.uid);
        if !same {
            return;
        }
        if self.started {
            self.write_status().await;
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = api.delete(&name, &dp).await {
            warn!(pod = %name, error = %e, "completing the pod's deletion");
        }
    }
}

/// The pod's namespace.
pub(super) fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// The pod's spec (the API server always sets one).
pub(super) fn spec(pod: &Pod) -> &k8s_openapi::api::core::v1::PodSpec {
    pod.spec
        .as_ref()
        .expect("pods from the API server have a spec")
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
}
