//! What the end-to-end tests share: the cluster's client, a namespace per test,
//! and waiting on conditions (never on fixed sleeps).

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// The environment variable scripts/e2e.sh sets to the cluster's admin kubeconfig.
pub const KUBECONFIG_ENV: &str = "BENCHRUN_E2E_KUBECONFIG";

/// A client for the suite's cluster. Panics with instructions when the suite
/// is run outside scripts/e2e.sh, so it can never pass without a cluster.
pub async fn client() -> kube::Client {
    let path = std::env::var(KUBECONFIG_ENV).unwrap_or_else(|_| {
        panic!("{KUBECONFIG_ENV} is not set: run the end-to-end suite with scripts/e2e.sh (make test does)")
    });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    crate::kubeconfig::client(&text)
        .await
        .expect("a client for the e2e cluster")
}

/// A namespace of its own for one test.
pub struct TestNamespace {
    pub name: String,
    client: kube::Client,
}

impl TestNamespace {
    /// Creates `e2e-<prefix>-<random>`.
    pub async fn create(client: &kube::Client, prefix: &str) -> Result<Self> {
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("e2e-{prefix}-")),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &ns).await?;
        Ok(Self {
            name: created
                .metadata
                .name
                .context("a created namespace has a name")?,
            client: client.clone(),
        })
    }

    /// A namespace made beforehand (by the script that set the cluster up).
    pub fn existing(client: &kube::Client, name: &str) -> Self {
        Self {
            name: name.to_string(),
            client: client.clone(),
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (a failed test keeps its own for inspection).
    pub async fn delete(self) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.delete(&self.name, &DeleteParams::default()).await?;
        Ok(())
    }
}

/// Waits until `cond` holds for the object `name`, or fails after `timeout`
/// with the object's last state in the message.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Condition<K>,
) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => Err(anyhow!("{name} was deleted while waiting for {what}")),
        Ok(Err(e)) => Err(anyhow!("watching {name} for {what}: {e}")),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            Err(anyhow!(
                "timed out after {timeout:?} waiting for {name}: {what}; last seen: {last:#?}"
            ))
        }
    }
}

/// Waits until the object `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let cond = move |obj: Option<&K>| obj.is_none();
    match tokio::time::timeout_at(deadline, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(anyhow!("watching {name} for deletion: {e}")),
        Err(_) => Err(anyhow!("{name} still exists after {timeout:?}")),
    }
}
