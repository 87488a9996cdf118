//! The control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler on loopback, with free ports, fresh certificates and a
//! generated admin kubeconfig.
//!
//! The API server runs with RBAC and the Node authorizer, NodeRestriction, and
//! service-account tokens signed by a key of its own. The controller-manager
//! runs every default controller (job, garbage collector, namespace,
//! endpointslice, serviceaccount and token, root-ca publisher among them) with
//! one service account per controller, as kubeadm sets it up.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::Api;
use tokio::process::Command;
use tracing::info;

use crate::kubeconfig::{self, Credentials};
use crate::pki::Pki;
use crate::process::{Proc, free_port};

/// Where the control-plane programs live.
pub struct Tools {
    pub bin: PathBuf,
}

impl Tools {
    fn cmd(&self, name: &str) -> Result<Command> {
        let path = self.bin.join(name);
        if !path.exists() {
            bail!(
                "{} is missing: run e2e/tools/build.sh (it builds the control plane into {})",
                path.display(),
                self.bin.display()
            );
        }
        Ok(Command::new(path))
    }
}

/// A running control plane.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub server: String,
    pub pki: Pki,
    /// The admin kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
    pub admin: kube::Client,
    procs: Vec<Proc>,
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

impl ControlPlane {
    /// Starts every component under `dir` and waits until the controllers work.
    /// `apiserver_args` are added to kube-apiserver's command line (the
    /// scale benchmark's audit log).
    pub async fn start(dir: &Path, tools: &Tools, apiserver_args: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir.join("logs"))?;
        let pki = Pki::create(dir)?;
        let files = pki.control_plane_files()?;
        let mut procs = Vec::new();

        // etcd
        let (client_port, peer_port) = (free_port(LOOPBACK)?, free_port(LOOPBACK)?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = tools.cmd("etcd")?;
        etcd.args(["--name", "e2e", "--data-dir"])
            .arg(dir.join("etcd"))
            .args([
                "--listen-client-urls",
                &etcd_url,
                "--advertise-client-urls",
                &etcd_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("e2e={peer_url}")])
            // A throwaway store: durability buys nothing and fsync costs seconds.
            .args(["--unsafe-no-fsync", "--log-level", "warn"]);
        procs.push(Proc::spawn("etcd", etcd, &dir.join("logs/etcd.log"))?);
        let etcd_health = format!("127.0.0.1:{client_port}");
        poll_until(
            &mut procs,
            dir,
            Duration::from_secs(30),
            "etcd was not healthy",
            async || {
                crate::probe::http_get(&etcd_health, "/health", Duration::from_secs(1))
                    .await
                    .is_ok_and(|s| s == 200)
            },
        )
        .await?;

        // kube-apiserver
        let port = free_port(LOOPBACK)?;
        let server = format!("https://127.0.0.1:{port}");
        let mut api = tools.cmd("kube-apiserver")?;
        api.args(["--etcd-servers", &etcd_url, "--bind-address", "127.0.0.1"])
            .args(["--secure-port", &port.to_string()])
            .arg(flag("--tls-cert-file", &files.serving_cert))
            .arg(flag("--tls-private-key-file", &files.serving_key))
            .arg(flag("--client-ca-file", &files.ca))
            .arg(flag("--service-account-key-file", &files.sa_public))
            .arg(flag(
                "--service-account-signing-key-file",
                &files.sa_private,
            ))
            .args([
                "--service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ])
            .args(["--authorization-mode", "Node,RBAC"])
            .args(["--enable-admission-plugins", "NodeRestriction"])
            .args(["--service-cluster-ip-range", "10.96.0.0/16"])
            // No kube-proxy here; the `kubernetes` Service's endpoints would only
            // hold a loopback address the EndpointSlice API rejects.
            .args(["--endpoint-reconciler-type", "none"])
            .args(["--allow-privileged=true", "--profiling=false", "--v", "1"])
            .args(apiserver_args);
        procs.push(Proc::spawn(
            "kube-apiserver",
            api,
            &dir.join("logs/kube-apiserver.log"),
        )?);

        let admin_cert = pki.client("benchrun-e2e-admin", Some("system:masters"))?;
        let admin_cfg = kubeconfig::render(
            &server,
            &pki.ca_pem,
            "admin",
            Credentials::Cert(&admin_cert),
        );
        let kubeconfig = dir.join("kubeconfig");
        kubeconfig::write(&kubeconfig, &admin_cfg)?;
        let admin = kubeconfig::client(&admin_cfg).await?;
        poll_until(
            &mut procs,
            dir,
            Duration::from_secs(90),
            "kube-apiserver was not ready",
            async || {
                let Ok(req) = http::Request::get("/readyz").body(Vec::new()) else {
                    return false;
                };
                admin
                    .request_text(req)
                    .await
                    .is_ok_and(|t| t.trim() == "ok")
            },
        )
        .await?;
        info!(%server, "kube-apiserver is ready");

        // kube-controller-manager
        let kcm_cert = pki.client("system:kube-controller-manager", None)?;
        let kcm_cfg = dir.join("pki/controller-manager.kubeconfig");
        kubeconfig::write(
            &kcm_cfg,
            &kubeconfig::render(&server, &pki.ca_pem, "kcm", Credentials::Cert(&kcm_cert)),
        )?;
        let mut kcm = tools.cmd("kube-controller-manager")?;
        kcm.arg(flag("--kubeconfig", &kcm_cfg))
            .arg(flag("--authentication-kubeconfig", &kcm_cfg))
            .arg(flag("--authorization-kubeconfig", &kcm_cfg))
            .arg(flag(
                "--service-account-private-key-file",
                &files.sa_private,
            ))
            .arg(flag("--root-ca-file", &files.ca))
            .arg(flag("--cluster-signing-cert-file", &files.ca))
            .arg(flag("--cluster-signing-key-file", &files.ca_key))
            .args([
                "--use-service-account-credentials=true",
                "--leader-elect=false",
            ])
            .args(["--secure-port", "0", "--controllers", "*", "--v", "1"]);
        procs.push(Proc::spawn(
            "kube-controller-manager",
            kcm,
            &dir.join("logs/kube-controller-manager.log"),
        )?);

        // kube-scheduler
        let sched_cert = pki.client("system:kube-scheduler", None)?;
        let sched_cfg = dir.join("pki/scheduler.kubeconfig");
        kubeconfig::write(
            &sched_cfg,
            &kubeconfig::render(
                &server,
                &pki.ca_pem,
                "scheduler",
                Credentials::Cert(&sched_cert),
            ),
        )?;
        let mut sched = tools.cmd("kube-scheduler")?;
        sched
            .arg(flag("--kubeconfig", &sched_cfg))
            .arg(flag("--authentication-kubeconfig", &sched_cfg))
            .arg(flag("--authorization-kubeconfig", &sched_cfg))
            .args(["--leader-elect=false", "--secure-port", "0", "--v", "1"]);
        procs.push(Proc::spawn(
            "kube-scheduler",
            sched,
            &dir.join("logs/kube-scheduler.log"),
        )?);

        let mut cp = Self {
            dir: dir.to_path_buf(),
            server,
            pki,
            kubeconfig,
            admin,
            procs,
        };
        cp.wait_controllers().await?;
        Ok(cp)
    }

    /// The controller-manager works once it has made the default service
    /// account and published the root CA into the default namespace.
    async fn wait_controllers(&mut self) -> Result<()> {
        let sa: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), "default");
        let cm: Api<ConfigMap> = Api::namespaced(self.admin.clone(), "default");
        let what = "kube-controller-manager did not create the default service account and root CA";
        poll_until(
            &mut self.procs,
            &self.dir,
            Duration::from_secs(90),
            what,
            async || {
                sa.get_opt("default").await.ok().flatten().is_some()
                    && cm
                        .get_opt("kube-root-ca.crt")
                        .await
                        .ok()
                        .flatten()
                        .is_some()
            },
        )
        .await?;
        info!("kube-controller-manager is working");
        Ok(())
    }

    /// Fails when a component has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        check_alive(&mut self.procs, &self.dir)
    }

    /// Stops every component, newest first.
    pub async fn stop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            let status = p.stop(Duration::from_secs(10)).await;
            info!(component = %p.name, ?status, "stopped");
        }
    }
}

fn flag(name: &str, path: &Path) -> String {
    format!("{name}={}", path.display())
}

fn check_alive(procs: &mut [Proc], dir: &Path) -> Result<()> {
    for p in procs.iter_mut() {
        if let Some(status) = p.try_exit() {
            bail!(
                "{} exited ({status}); its log: {}/logs/{}.log",
                p.name,
                dir.display(),
                p.name
            );
        }
    }
    Ok(())
}

/// Polls `ready` until it holds; fails as soon as a component exits, or with
/// `what` once `timeout` has passed.
async fn poll_until(
    procs: &mut [Proc],
    dir: &Path,
    timeout: Duration,
    what: &str,
    mut ready: impl AsyncFnMut() -> bool,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        check_alive(procs, dir)?;
        if ready().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{what} within {timeout:?}; see the logs in {}/logs",
                dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
