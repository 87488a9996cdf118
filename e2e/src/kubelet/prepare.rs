//! What a pod needs from the API before its processes start: its
//! service-account kubeconfig, its volumes checked, and the ConfigMaps and
//! Secrets its env refers to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;

use super::Node;
use super::launch::{self, EnvSources};
use super::pod::{namespace, spec};
use crate::kubeconfig::{self, Credentials};

/// What the pod's volumes became on this machine.
#[derive(Default, Debug)]
pub struct Prepared {
    /// The service-account kubeconfig (passed through KUBECONFIG).
    pub kubeconfig: Option<PathBuf>,
    /// ConfigMap and Secret volumes by name: the directory their files were written to.
    pub config_maps: BTreeMap<String, PathBuf>,
}

/// Supported volumes: the projected service-account token (turned into a
/// kubeconfig passed through KUBECONFIG), emptyDir, and ConfigMaps and
/// Secrets (their files written under the pod's directory; without a mount namespace the
/// container finds them where its environment says, see
/// [`launch::relocate`]). Anything else fails the pod with a clear message.
pub async fn volumes(node: &Node, pod: &Pod, dir: &Path) -> Result<Prepared> {
    let mut prepared = Prepared::default();
    for v in spec(pod).volumes.iter().flatten() {
        if let Some(p) = &v.projected
            && p.sources
                .iter()
                .flatten()
                .any(|s| s.service_account_token.is_some())
        {
            prepared.kubeconfig = Some(service_account_kubeconfig(node, pod, dir).await?);
        } else if let Some(source) = &v.config_map {
            let api: Api<ConfigMap> = Api::namespaced(node.client.clone(), namespace(pod));
            let data = match api.get_opt(&source.name).await? {
                Some(cm) => cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .chain(
                        cm.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    )
                    .collect(),
                None if source.optional == Some(true) => BTreeMap::new(),
                None => anyhow::bail!("configmap {:?} not found", source.name),
            };
            let at = dir.join("volumes").join(&v.name);
            write_files(
                &at,
                &data,
                source.items.as_deref(),
                "configmap",
                &source.name,
            )?;
            prepared.config_maps.insert(v.name.clone(), at);
        } else if let Some(source) = &v.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(node.client.clone(), namespace(pod));
            let data = match api.get_opt(&name).await? {
                Some(s) => s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
                None if source.optional == Some(true) => BTreeMap::new(),
                None => anyhow::bail!("secret {name:?} not found"),
            };
            let at = dir.join("volumes").join(&v.name);
            write_files(&at, &data, source.items.as_deref(), "secret", &name)?;
            prepared.config_maps.insert(v.name.clone(), at);
        } else if v.empty_dir.is_none() {
            anyhow::bail!(
                "volume {:?}: the test kubelet supports only the service-account token, emptyDir, ConfigMap and Secret volumes",
                v.name
            );
        }
    }
    Ok(prepared)
}

/// Writes a ConfigMap's or Secret's keys (or the `items` named) as files under `at`.
fn write_files(
    at: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    what: &str,
    name: &str,
) -> Result<()> {
    std::fs::create_dir_all(at)?;
    let files: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in files {
        let Some(bytes) = data.get(&key) else {
            anyhow::bail!("{what} {name:?} has no key {key:?}");
        };
        anyhow::ensure!(
            !path.split('/').any(|p| p == ".." || p.is_empty()),
            "{what} volume path {path:?} leaves its volume"
        );
        let file = at.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes)?;
    }
    Ok(())
}

/// A kubeconfig for the pod's service account, with a token bound to this
/// pod from the TokenRequest API (as the kubelet mints projected tokens).
async fn service_account_kubeconfig(node: &Node, pod: &Pod, dir: &Path) -> Result<PathBuf> {
    let sa = spec(pod)
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(node.client.clone(), namespace(pod));
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(24 * 3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
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
    let path = dir.join("kubeconfig");
    let text = kubeconfig::render(&node.server, &node.ca_pem, &sa, Credentials::Token(&token));
    kubeconfig::write(&path, &text)?;
    Ok(path)
}

/// The ConfigMaps and Secrets the containers' env refers to.
pub async fn env_sources(node: &Node, pod: &Pod) -> Result<EnvSources> {
    let mut sources = EnvSources::default();
    let cms: Api<ConfigMap> = Api::namespaced(node.client.clone(), namespace(pod));
    let secrets: Api<Secret> = Api::namespaced(node.client.clone(), namespace(pod));
    let (cm_names, secret_names) = launch::referenced(&spec(pod).containers);
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
