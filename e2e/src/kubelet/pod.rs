//! One pod: its processes, readiness, restarts, status and termination.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Probe, Secret, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::process::Command;
use tokio::sync::watch;
use tracing::{info, warn};

use super::Node;
use super::launch::{self, EnvSources, PodFacts};
use super::status::{ContainerRun, Exit, pod_status};
use crate::kubeconfig::{self, Credentials};
use crate::process::{Proc, tail};

/// Runs `pod` until it ends or `stop` turns true (the pod is being deleted).
pub async fn run(node: Arc<Node>, pod: Pod, mut stop: watch::Receiver<bool>) {
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
    worker.supervise(&mut stop).await;
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
            last_status: None,
            started: false,
        }
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.node.client.clone(), self.namespace())
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
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
        let kubeconfig = self.volumes().await?;
        let sources = self.env_sources().await?;
        let ip = self.node.ips.allocate()?;
        self.ip = Some(ip);
        let ip_text = ip.to_string();
        let facts = PodFacts {
            pod: &self.pod,
            pod_ip: &ip_text,
            host_ip: &self.node.spec.ip,
        };
        for c in &spec(&self.pod).containers {
            let mut env = launch::environment(c, &facts, &sources).map_err(anyhow::Error::msg)?;
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
            if let Some(path) = &kubeconfig {
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

    /// Supported volumes: the projected service-account token (turned into a
    /// kubeconfig passed through KUBECONFIG) and emptyDir. Anything that needs
    /// a file at a path inside the container cannot work without a mount
    /// namespace, so it fails the pod with a clear message.
    async fn volumes(&self) -> Result<Option<PathBuf>> {
        let mut kubeconfig = None;
        for v in spec(&self.pod).volumes.iter().flatten() {
            if let Some(p) = &v.projected
                && p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            {
                kubeconfig = Some(self.service_account_kubeconfig().await?);
            } else if v.empty_dir.is_none() {
                anyhow::bail!(
                    "volume {:?}: the test kubelet supports only the service-account token and emptyDir volumes",
                    v.name
                );
            }
        }
        Ok(kubeconfig)
    }

    /// A kubeconfig for the pod's service account, with a token bound to this
    /// pod from the TokenRequest API (as the kubelet mints projected tokens).
    async fn service_account_kubeconfig(&self) -> Result<PathBuf> {
        let sa = spec(&self.pod)
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.node.client.clone(), self.namespace());
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(24 * 3600),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: self.pod.metadata.name.clone(),
                    uid: self.pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        // The Node authorizer learns that this pod (and so its service account)
        // belongs to this node from a watch; right after binding it may not know
        // yet and answers 403. The kubelet retries, and so does this one.
        let mut attempt = 0;
        let response = loop {
            match api
                .create_token_request(&sa, &PostParams::default(), &req)
                .await
            {
                Err(kube::Error::Api(e)) if e.code == 403 && attempt < 40 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => break other,
            }
        };
        let token = response
            .with_context(|| format!("requesting a token for service account {sa}"))?
            .status
            .context("the TokenRequest came back without a token")?
            .token;
        let path = self.dir.join("kubeconfig");
        let text = kubeconfig::render(
            &self.node.server,
            &self.node.ca_pem,
            &sa,
            Credentials::Token(&token),
        );
        kubeconfig::write(&path, &text)?;
        Ok(path)
    }

    async fn env_sources(&self) -> Result<EnvSources> {
        let mut sources = EnvSources::default();
        let cms: Api<ConfigMap> = Api::namespaced(self.node.client.clone(), self.namespace());
        let secrets: Api<Secret> = Api::namespaced(self.node.client.clone(), self.namespace());
        let (cm_names, secret_names) = referenced(&spec(&self.pod).containers);
        for name in cm_names {
            if let Some(cm) = cms.get_opt(&name).await? {
                sources
                    .config_maps
                    .insert(name, cm.data.unwrap_or_default());
            }
        }
        for name in secret_names {
            if let Some(s) = secrets.get_opt(&name).await? {
                let data = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                sources.secrets.insert(name, data);
            }
        }
        Ok(sources)
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

    async fn fail_to_start(&mut self, message: &str) {
        self.start_error = Some(message.to_string());
        for c in &mut self.containers {
            c.cannot_start(message);
        }
        self.write_status().await;
    }

    /// Watches processes and probes until the pod ends or is being deleted.
    async fn supervise(&mut self, stop: &mut watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            if self.start_error.is_some() {
                continue;
            }
            self.reap();
            self.restart_due();
            self.probe().await;
            self.write_status().await;
            if self
                .containers
                .iter()
                .all(|c| c.is_finished(self.restart_policy()))
            {
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
                Some(p) => check(p, c, ip).await,
            };
            self.containers[i].set_ready(ready);
        }
    }

    async fn write_status(&mut self) {
        let status = pod_status(
            &self.containers,
            self.ip.map(|ip| ip.to_string()).as_deref(),
            &self.node.spec.ip,
            self.restart_policy(),
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

/// The pod's spec (the API server always sets one).
fn spec(pod: &Pod) -> &k8s_openapi::api::core::v1::PodSpec {
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

/// ConfigMap and Secret names the containers' env refers to.
fn referenced(containers: &[Container]) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (BTreeMap::new(), BTreeMap::new());
    for c in containers {
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.insert(r.name.clone(), ());
            }
            if let Some(r) = &f.secret_ref {
                secrets.insert(r.name.clone(), ());
            }
        }
        for v in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &v.config_map_key_ref {
                cms.insert(r.name.clone(), ());
            }
            if let Some(r) = &v.secret_key_ref {
                secrets.insert(r.name.clone(), ());
            }
        }
    }
    (cms.into_keys().collect(), secrets.into_keys().collect())
}

/// Runs one readiness check: httpGet or tcpSocket against the pod address;
/// exec and gRPC probes are not supported and count as failing.
async fn check(probe: &Probe, container: &Container, ip: Ipv4Addr) -> bool {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name))
            .map(|cp| cp.container_port),
    };
    if let Some(h) = &probe.http_get {
        let Some(p) = port(&h.port) else { return false };
        let host = h.host.clone().unwrap_or_else(|| ip.to_string());
        let path = h.path.as_deref().unwrap_or("/");
        crate::probe::http_get(&format!("{host}:{p}"), path, timeout)
            .await
            .is_ok_and(|code| (200..400).contains(&code))
    } else if let Some(t) = &probe.tcp_socket {
        let Some(p) = port(&t.port) else { return false };
        crate::probe::tcp(&format!("{ip}:{p}"), timeout).await
    } else {
        false
    }
}
