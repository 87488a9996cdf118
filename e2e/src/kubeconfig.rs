//! Kubeconfig files for the local cluster's identities, and clients built from them.
//!
//! Files are written as JSON, which every kubeconfig reader (client-go, kubectl,
//! Helm, kube-rs) accepts as YAML.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::pki::ClientCert;

/// How an identity proves who it is.
pub enum Credentials<'a> {
    Cert(&'a ClientCert),
    Token(&'a str),
}

/// Builds a kubeconfig for `user` against `server`, trusting `ca_pem`.
pub fn render(server: &str, ca_pem: &str, user: &str, creds: Credentials<'_>) -> String {
    let user_entry = match creds {
        Credentials::Cert(c) => serde_json::json!({
            "client-certificate-data": STANDARD.encode(&c.cert_pem),
            "client-key-data": STANDARD.encode(&c.key_pem),
        }),
        Credentials::Token(t) => serde_json::json!({ "token": t }),
    };
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "benchrun-e2e",
            "cluster": {
                "server": server,
                "certificate-authority-data": STANDARD.encode(ca_pem),
            },
        }],
        "users": [{ "name": user, "user": user_entry }],
        "contexts": [{
            "name": "benchrun-e2e",
            "context": { "cluster": "benchrun-e2e", "user": user, "namespace": "default" },
        }],
        "current-context": "benchrun-e2e",
    });
    serde_json::to_string_pretty(&doc).expect("a JSON value always serializes")
}

/// Writes a kubeconfig readable only by its owner.
pub fn write(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

/// A kube client for a rendered kubeconfig.
pub async fn client(rendered: &str) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(rendered).context("parsing a generated kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading a generated kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}
