//! What a pod needs from the API before its processes start: its
//! service-account kubeconfig, its volumes checked, and the ConfigMaps and
//! Secrets its env refers to.

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

/// Supported volumes: the projected service-account token (turned into a
/// kubeconfig passed through KUBECONFIG) and emptyDir. Anything that needs
/// a file at a path inside the container cannot work without a mount
/// namespace, so it fails the pod with a clear message.
pub async fn volumes(node: &Node, pod: &Pod, dir: &Path) -> Result<Option<PathBuf>> {
    let mut kubeconfig = None;
    for v in spec(pod).volumes.iter().flatten() {
        if let Some(p) = &v.projected
            && p.sources
                .iter()
                .flatten()
                .any(|s| s.service_account_token.is_some())
        {
            kubeconfig = Some(service_account_kubeconfig(node, pod, dir).await?);
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
