//! The TLS and the credentials of a run's metrics scrapes, read from the
//! run's namespace when its session starts.
//!
//! Reading a tenant's Secret is the one place the controller does so, and it
//! takes two consents: the installer's (`--scrape-credentials`, the chart's
//! `telemetry.scrapeCredentials`, which also grants `get` on Secrets) and the
//! Secret owner's (the label [`CONSENT_LABEL`]); without the second, a run
//! could send any Secret of its namespace to an endpoint it picks. Values are
//! held in memory only: never in results, events or logs, and an error names
//! the Secret and key, never what they hold.

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

use crate::api::{BenchmarkRunSpec, CaRef, EndpointTls, ScrapeAuth, SecretKeyRef};
use crate::measure::Scrapers;
use crate::net::tls::TlsOptions;
use crate::scrape::fetch::{ScrapeClient, scrape_client_tls};

/// The label by which a Secret's owner lets benchrun read it for scrapes.
pub const CONSENT_LABEL: &str = "benchrun.dev/scrape-credentials";

/// The key `r` of `secret` (looked up by `field` of the spec), when the
/// Secret exists and its owner consented.
pub fn secret_value(
    secret: Option<&Secret>,
    r: &SecretKeyRef,
    field: &str,
) -> Result<Vec<u8>, String> {
    let name = &r.name;
    let secret = secret.ok_or_else(|| {
        format!("{field}: the Secret {name} does not exist in the run's namespace")
    })?;
    let consented = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONSENT_LABEL))
        .is_some_and(|v| v == "true");
    if !consented {
        return Err(format!(
            "{field}: the Secret {name} lacks the label {CONSENT_LABEL}=true, by which its owner lets benchrun read it (kubectl label secret {name} {CONSENT_LABEL}=true)"
        ));
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|v| v.0.clone())
        .ok_or_else(|| format!("{field}: the Secret {name} has no key {}", r.key))
}

/// A credential as text: UTF-8, without the line break a file-made Secret
/// (`kubectl create secret --from-file`) ends with.
fn text(value: Vec<u8>, field: &str) -> Result<String, String> {
    let s = String::from_utf8(value).map_err(|_| format!("{field}: the value is not UTF-8"))?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// The `Authorization` value `auth` makes, with each Secret's key from `get`
/// (the Secret key and the spec field that names it).
pub fn authorization(
    auth: &ScrapeAuth,
    mut get: impl FnMut(&SecretKeyRef, &str) -> Result<Vec<u8>, String>,
) -> Result<String, String> {
    const FIELD: &str = "spec.telemetry.server.auth";
    if let Some(r) = &auth.bearer_token_secret_ref {
        let field = format!("{FIELD}.bearerTokenSecretRef");
        let token = text(get(r, &field)?, &field)?;
        if token.is_empty() {
            return Err(format!("{field}: the token is empty"));
        }
        return Ok(format!("Bearer {token}"));
    }
    if let Some(b) = &auth.basic_auth {
        let field = format!("{FIELD}.basicAuth.usernameSecretRef");
        let user = text(get(&b.username_secret_ref, &field)?, &field)?;
        if user.contains(':') {
            return Err(format!("{field}: a basic-auth user name cannot hold ':'"));
        }
        let field = format!("{FIELD}.basicAuth.passwordSecretRef");
        let password = text(get(&b.password_secret_ref, &field)?, &field)?;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        return Ok(format!("Basic {pair}"));
    }
    Err(format!(
        "{FIELD}: sets neither a bearer token nor basic auth"
    ))
}

/// The Secrets the spec's scrapes need read.
pub fn secrets_named(spec: &BenchmarkRunSpec) -> Vec<(&SecretKeyRef, String)> {
    let t = &spec.telemetry;
    let mut out = Vec::new();
    if let Some(a) = &t.server.auth {
        if let Some(r) = &a.bearer_token_secret_ref {
            out.push((r, "spec.telemetry.server.auth.bearerTokenSecretRef".into()));
        }
        if let Some(b) = &a.basic_auth {
            out.push((
                &b.username_secret_ref,
                "spec.telemetry.server.auth.basicAuth.usernameSecretRef".into(),
            ));
            out.push((
                &b.password_secret_ref,
                "spec.telemetry.server.auth.basicAuth.passwordSecretRef".into(),
            ));
        }
    }
    for (kind, tls) in [("gpu", &t.gpu.tls), ("server", &t.server.tls)] {
        if let Some(r) = tls
            .as_ref()
            .and_then(|t| t.ca_ref.as_ref())
            .and_then(|c| c.secret_key_ref.as_ref())
        {
            out.push((r, format!("spec.telemetry.{kind}.tls.caRef.secretKeyRef")));
        }
    }
    out
}

/// The clients of a run in `ns` with `spec`: TLS and credentials as asked,
/// Secrets read only when the installer allows (`allowed`).
pub async fn scrapers(
    client: &kube::Client,
    ns: &str,
    spec: &BenchmarkRunSpec,
    allowed: bool,
) -> Result<Scrapers, String> {
    let named = secrets_named(spec);
    if !named.is_empty() && !allowed {
        let fields: Vec<&str> = named.iter().map(|(_, f)| f.as_str()).collect();
        return Err(format!(
            "{} name Secrets, which this installation does not let the controller read: the installer enables it with the chart value telemetry.scrapeCredentials=true",
            fields.join(", ")
        ));
    }
    // Each Secret read once, whatever number of its keys are used.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut read = std::collections::BTreeMap::new();
    for (r, field) in &named {
        if !read.contains_key(&r.name) {
            let got = secrets.get_opt(&r.name).await.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 403 => format!(
                    "{field}: the controller may not read Secrets in {ns} (its role lacks get on secrets there)"
                ),
                e => format!("{field}: reading the Secret {}: {e}", r.name),
            })?;
            read.insert(r.name.clone(), got);
        }
    }
    let get = |r: &SecretKeyRef, field: &str| {
        secret_value(read.get(&r.name).and_then(Option::as_ref), r, field)
    };
    let t = &spec.telemetry;
    let (gpu, gpu_note) = kind_client(client, ns, "gpu", t.gpu.tls.as_ref(), &get).await?;
    let (mut server, server_note) =
        kind_client(client, ns, "server", t.server.tls.as_ref(), &get).await?;
    let notes = gpu_note.into_iter().chain(server_note).collect();
    if let Some(auth) = &t.server.auth {
        let value = authorization(auth, get)?;
        server = server
            .with_authorization(&value)
            .map_err(|e| format!("spec.telemetry.server.auth: {e}"))?;
    }
    Ok(Scrapers { gpu, server, notes })
}

/// The client of one kind of endpoint (`gpu`, `server`) with its TLS, and
/// what the results say when its certificates go unverified.
async fn kind_client(
    client: &kube::Client,
    ns: &str,
    kind: &str,
    tls: Option<&EndpointTls>,
    get: &impl Fn(&SecretKeyRef, &str) -> Result<Vec<u8>, String>,
) -> Result<(ScrapeClient, Option<String>), String> {
    let field = format!("spec.telemetry.{kind}.tls");
    let options = match tls {
        Some(tls) => options(client, ns, tls, &field, get).await?,
        None => TlsOptions::default(),
    };
    let note = options.insecure_skip_verify.then(|| {
        format!(
            "the {} endpoints' certificates were not verified ({field}.insecureSkipVerify): the scrapes were encrypted, the endpoints not authenticated",
            if kind == "gpu" { "GPU exporter" } else { "server metrics" }
        )
    });
    let scraper = scrape_client_tls(&options).map_err(|e| format!("{field}: {e}"))?;
    Ok((scraper, note))
}

/// The TLS options of `tls` (at `field`): its CA from a Secret (through
/// `get`) or a ConfigMap, read now.
async fn options(
    client: &kube::Client,
    ns: &str,
    tls: &EndpointTls,
    field: &str,
    get: &impl Fn(&SecretKeyRef, &str) -> Result<Vec<u8>, String>,
) -> Result<TlsOptions, String> {
    let ca_pem = match &tls.ca_ref {
        None => None,
        Some(CaRef {
            secret_key_ref: Some(r),
            ..
        }) => Some(get(r, &format!("{field}.caRef.secretKeyRef"))?),
        Some(CaRef {
            config_map_key_ref: Some(r),
            ..
        }) => {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
            let f = format!("{field}.caRef.configMapKeyRef");
            let cm = cms
                .get_opt(&r.name)
                .await
                .map_err(|e| format!("{f}: reading the ConfigMap {}: {e}", r.name))?
                .ok_or_else(|| {
                    format!(
                        "{f}: the ConfigMap {} does not exist in the run's namespace",
                        r.name
                    )
                })?;
            let pem = cm
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .ok_or_else(|| format!("{f}: the ConfigMap {} has no key {}", r.name, r.key))?;
            Some(pem.clone().into_bytes())
        }
        Some(_) => None,
    };
    Ok(TlsOptions {
        ca_pem,
        insecure_skip_verify: tls.insecure_skip_verify,
        identity: None,
        server_name: tls.server_name.clone(),
    })
}

#[cfg(test)]
mod tests;
