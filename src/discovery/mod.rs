//! Discovery: the inference pods a run targets, the GPU exporters beside them,
//! and the URLs to scrape on each. The listing talks to the API server; the
//! rest (pod facts, ports, scope) is pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::core::Selector;

pub mod policy;
pub mod watches;

use self::policy::{Policy, READABLE_LABEL, READABLE_VALUE};
use self::watches::PodWatches;
use crate::api::{BenchmarkRunSpec, GpuScope};

/// What a scrape needs to know about a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: Option<String>,
    pub ip: Option<String>,
    pub ready: bool,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Container ports: (name, number), in container order.
    pub ports: Vec<(Option<String>, i32)>,
    /// It runs on its node's network: its ports are the node's.
    pub host_network: bool,
    /// The uid of the Job that controls it, per its owner references.
    pub job_uid: Option<String>,
    /// The name of that Job.
    pub job_owner: Option<String>,
    /// When it was created, Unix seconds.
    pub created_unix_s: Option<i64>,
    /// Its containers ended (phase `Failed` or `Succeeded`): killed,
    /// evicted, or exited.
    pub ended: bool,
}

/// Whether discovery (or the worker lookup) reads an annotation: the
/// `prometheus.io/` ones and a Job pod's completion index. Others are not
/// kept.
pub fn read_annotation(key: &str) -> bool {
    key.starts_with("prometheus.io/") || key == "batch.kubernetes.io/job-completion-index"
}

impl From<&Pod> for PodInfo {
    fn from(p: &Pod) -> Self {
        let job = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == "Job");
        let status = p.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let phase = status.and_then(|s| s.phase.as_deref());
        let running = phase == Some("Running");
        let ports = p
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .map(|port| (port.name.clone(), port.container_port))
            .collect();
        PodInfo {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            ip: status.and_then(|s| s.pod_ip.clone()),
            ready: ready && running && p.metadata.deletion_timestamp.is_none(),
            // Only the annotations a scrape reads.
            annotations: p
                .metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| read_annotation(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            labels: p.metadata.labels.clone().unwrap_or_default(),
            ports,
            host_network: p.spec.as_ref().and_then(|s| s.host_network) == Some(true),
            job_uid: job.map(|o| o.uid.clone()),
            job_owner: job.map(|o| o.name.clone()),
            created_unix_s: p
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second()),
            ended: matches!(phase, Some("Failed" | "Succeeded")),
        }
    }
}

/// How to find a pod's metrics port.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PortRule<'a> {
    pub number: Option<i32>,
    pub name: Option<&'a str>,
    /// Port names to try, in order, when neither is given.
    pub names: &'a [&'a str],
    /// The port when nothing else says.
    pub fallback: Option<i32>,
    /// The endpoint serves HTTPS (the spec gives it TLS options).
    pub https: bool,
}

/// The metrics URL of `pod`: the spec's port (number or name), else the
/// `prometheus.io/port` annotation, else a port named in `rule.names`, else the
/// fallback, else the pod's first port. `path` from the spec, else the
/// `prometheus.io/path` annotation.
pub fn metrics_url(pod: &PodInfo, rule: PortRule<'_>, path: &str) -> Option<String> {
    let ip = pod.ip.as_deref()?;
    let by_name = |n: &str| {
        pod.ports
            .iter()
            .find(|(name, _)| name.as_deref() == Some(n))
            .map(|(_, p)| *p)
    };
    let port = match (rule.number, rule.name) {
        (Some(n), _) => Some(n),
        (None, Some(name)) => by_name(name),
        (None, None) => pod
            .annotations
            .get("prometheus.io/port")
            .and_then(|p| p.parse().ok())
            .or_else(|| rule.names.iter().find_map(|n| by_name(n)))
            .or(rule.fallback)
            .or_else(|| pod.ports.first().map(|(_, p)| *p)),
    }?;
    let path = match pod.annotations.get("prometheus.io/path") {
        Some(p) if path == "/metrics" && p.starts_with('/') => p.as_str(),
        _ => path,
    };
    let scheme = if rule.https { "https" } else { "http" };
    Some(format!("{scheme}://{}:{port}{path}", url_host(ip)))
}

/// An IP as the host part of a URL (IPv6 in brackets).
pub fn url_host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// Selectors tried when a run names no GPU exporter selector: NVIDIA's GPU
/// operator, dcgm-exporter's Helm chart, and benchrun's own exporter and simulator.
pub const DEFAULT_GPU_SELECTORS: &[(&str, &str)] = &[
    ("app", "nvidia-dcgm-exporter"),
    ("app.kubernetes.io/name", "dcgm-exporter"),
    ("app.kubernetes.io/component", "gpu-exporter"),
    ("app.kubernetes.io/component", "sim-dcgm"),
];

/// What discovery found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    /// What the run asked for and the policy refused, for the run's condition.
    pub refused: Vec<String>,
    /// The inference pods (Ready or not).
    pub inference: Vec<PodInfo>,
    /// Server metrics URLs, with the pod they belong to.
    pub servers: Vec<(String, Option<String>)>,
    /// GPU exporter URLs on the nodes in scope, with their pod.
    pub gpus: Vec<(String, Option<String>)>,
    /// Why a kind found nothing, for the run's condition.
    pub notes: Vec<String>,
    /// The namespaces the run may read: GPU results name pods only there.
    pub readable: BTreeSet<String>,
    /// The most bytes a page may have, for endpoints held to less than
    /// [`crate::scrape::fetch::DEFAULT_MAX_BYTES`]: pods outside the
    /// operator's namespace, which a tenant may run (see [`policy::TENANT_MAX_BYTES`]).
    pub page_bounds: BTreeMap<String, usize>,
}

/// The pods matching `selector` in each of `namespaces`: from the shared
/// `watches` where they hold the namespace, else listed. A namespace the
/// controller's RBAC does not let it read is skipped and said so in `notes`
/// (once); the others are still listed.
async fn list(
    client: &kube::Client,
    watches: Option<&PodWatches>,
    namespaces: &[String],
    selector: &Selector,
    notes: &mut Vec<String>,
) -> Result<Vec<PodInfo>, kube::Error> {
    let shared = DEFAULT_GPU_SELECTORS
        .iter()
        .any(|(k, v)| *selector == Selector::from_iter([(k.to_string(), v.to_string())]));
    let lp = ListParams::default()
        .labels_from(selector)
        .limit(watches::MAX_LISTED_PODS);
    let mut note = |note: String| {
        if !notes.contains(&note) {
            notes.push(note);
        }
    };
    let mut out = Vec::new();
    for ns in namespaces {
        if let Some(watches) = watches {
            match watches.pods(ns, selector, shared).await {
                Ok(pods) => {
                    out.extend(pods);
                    continue;
                }
                Err(Some(why)) => note(why),
                Err(None) => {}
            }
        }
        watches::count("list");
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        match pods.list(&lp).await {
            Ok(list) => {
                if list
                    .metadata
                    .continue_
                    .as_deref()
                    .is_some_and(|c| !c.is_empty())
                {
                    note(format!(
                        "more than {} pods match {selector} in {ns}: only the first {} are read",
                        watches::MAX_LISTED_PODS,
                        watches::MAX_LISTED_PODS
                    ));
                }
                out.extend(list.items.iter().map(PodInfo::from));
            }
            Err(kube::Error::Api(e)) if e.code == 403 => note(format!(
                "the controller may not list pods in namespace {ns} (its RBAC, e.g. a namespaced install): nothing there is discovered"
            )),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The namespaces that open themselves to every run's discovery by label;
/// none, with a note, when the controller may not list namespaces.
async fn labelled_namespaces(
    client: &kube::Client,
    notes: &mut Vec<String>,
) -> Result<BTreeSet<String>, kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{READABLE_LABEL}={READABLE_VALUE}"));
    match api.list_metadata(&lp).await {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect()),
        Err(kube::Error::Api(e)) if e.code == 403 => {
            notes.push(format!(
                "the controller may not list namespaces, so namespaces labelled {READABLE_LABEL}={READABLE_VALUE} are not opened to discovery"
            ));
            Ok(BTreeSet::new())
        }
        Err(e) => Err(e),
    }
}

/// What a run's telemetry spec asks for and the policy refuses, in words for
/// the run's `TelemetryDiscovered` condition. Pure, so `benchrun validate`
/// gives the same answer offline (`labelled`: the namespaces that opted in).
pub fn refusals(
    policy: &Policy,
    own: &str,
    labelled: &BTreeSet<String>,
    spec: &BenchmarkRunSpec,
) -> Vec<String> {
    let t = &spec.telemetry;
    let mut out = Vec::new();
    let mut namespaces = |requested: &[String], what: &str| {
        for ns in policy.namespaces(own, labelled, requested).refused {
            out.push(format!(
                "{what}: namespace {ns} is not readable by runs in {own} (its owner can label it {READABLE_LABEL}={READABLE_VALUE}, or the installer can open it)"
            ));
        }
    };
    namespaces(&t.server.namespaces, "spec.telemetry.server.namespaces");
    if t.gpu.enabled {
        namespaces(&t.gpu.namespaces, "spec.telemetry.gpu.namespaces");
    }
    // A port or path the spec names, on pods in namespaces it names: refused
    // before anything is listed (a discovered pod is checked again).
    let named = [
        (
            t.server.enabled,
            &t.server.namespaces,
            t.server.port,
            &t.server.path,
            "spec.telemetry.server",
        ),
        (
            t.gpu.enabled,
            &t.gpu.namespaces,
            t.gpu.port,
            &t.gpu.path,
            "spec.telemetry.gpu",
        ),
    ];
    for (enabled, namespaces, port, path, what) in named {
        if enabled {
            out.extend(policy.check_named_port(own, namespaces, port, path, what));
        }
    }
    let urls = [
        (
            t.server.enabled,
            &t.server.urls,
            "spec.telemetry.server.urls",
        ),
        (t.gpu.enabled, &t.gpu.urls, "spec.telemetry.gpu.urls"),
    ];
    for (enabled, urls, what) in urls {
        for (i, u) in urls.iter().enumerate().filter(|_| enabled) {
            if let Err(why) = policy.check_url(u) {
                out.push(format!("{what}[{i}]: {why}"));
            }
        }
    }
    out
}

/// How an endpoint derived from the target's URL is labelled (where a
/// discovered one names its pod).
pub const DERIVED_FROM_TARGET: &str = "derived from target.url";

/// The server metrics endpoint of a URL target, when the run names no
/// other: the target's scheme and host, `telemetry.server.port` if set (else
/// the target's port), and `telemetry.server.path` — where vLLM, SGLang,
/// TGI and NIM serve it. The controller scrapes from its own network
/// identity, so the URL must pass the installer's URL policy like any
/// explicit telemetry URL; `Err` says why it was not derived. `None`: the
/// target is not a URL. Scraped only while it answers (see
/// [`crate::measure`]): one that never does is left out with a note. Pure.
pub fn derived_server(spec: &BenchmarkRunSpec, policy: &Policy) -> Option<Result<String, String>> {
    let target = spec.target.url.as_deref()?;
    let t = &spec.telemetry.server;
    let Ok(uri) = target.parse::<http::Uri>() else {
        return Some(Err(format!(
            "the target's metrics endpoint was not derived: {} is not a valid URL",
            crate::net::redact_url(target)
        )));
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Some(Err(
            "the target's metrics endpoint was not derived: target.url has no scheme or host"
                .into(),
        ));
    };
    let port = t
        .port
        .map(|p| format!(":{p}"))
        .or_else(|| uri.port_u16().map(|p| format!(":{p}")))
        .unwrap_or_default();
    let url = format!("{scheme}://{host}{port}{}", t.path);
    Some(policy.check_url(&url).map(|()| url).map_err(|why| {
        format!(
            "the target's own metrics endpoint was not scraped ({why}); \
             name the server pods (telemetry.server.selector) to scrape them where they run"
        )
    }))
}

/// The explicit URLs the policy lets the controller scrape.
fn permitted_urls(policy: &Policy, urls: &[String]) -> Vec<(String, Option<String>)> {
    urls.iter()
        .filter(|u| policy.check_url(u).is_ok())
        .map(|u| (u.clone(), None))
        .collect()
}

impl Found {
    /// Holds a discovered `pod` (of GPU exporters when `gpu`, else of the
    /// inference server) with metrics `url` to `policy` for a run in `own`:
    /// refused, it says why in `refused`, ready or not; admitted and ready,
    /// its URL is scraped, with its page bound.
    fn admit(&mut self, gpu: bool, policy: &Policy, own: &str, pod: &PodInfo, url: Option<String>) {
        match policy.check_pod(own, pod, url.as_deref()) {
            Err(why) => refuse(&mut self.refused, why),
            Ok(()) => {
                let Some(url) = url.filter(|_| pod.ready) else {
                    return;
                };
                if let Some(max) = policy.page_bound(pod) {
                    self.page_bounds.insert(url.clone(), max);
                }
                let to = if gpu {
                    &mut self.gpus
                } else {
                    &mut self.servers
                };
                to.push((url, Some(format!("{}/{}", pod.namespace, pod.name))));
            }
        }
    }
}

/// Adds a discovered pod's refusal, once, at most [`MAX_POD_REFUSALS`] (then
/// one line counting the rest).
fn refuse(refused: &mut Vec<String>, why: String) {
    const MORE: &str = "more discovered pods were refused";
    if refused.contains(&why) {
        return;
    }
    let pods = refused.iter().filter(|r| r.starts_with("pod ")).count();
    if pods < MAX_POD_REFUSALS {
        refused.push(why);
    } else if !refused.iter().any(|r| r.starts_with(MORE)) {
        refused.push(format!("{MORE} by the same rules"));
    }
}

/// How many discovered pods' refusals a run's condition names.
pub const MAX_POD_REFUSALS: usize = 8;

fn selector(s: &LabelSelector) -> Result<Selector, String> {
    Selector::try_from(s.clone()).map_err(|e| format!("bad selector: {e}"))
}

/// Finds everything a run scrapes, within what `policy` lets it read. `ns`
/// is the run's namespace; pods come from `watches` where they can.
pub async fn discover(
    client: &kube::Client,
    watches: Option<&PodWatches>,
    ns: &str,
    spec: &BenchmarkRunSpec,
    policy: &Policy,
) -> Result<Found, kube::Error> {
    let t = &spec.telemetry;
    let mut found = Found::default();
    let labelled = labelled_namespaces(client, &mut found.notes).await?;
    // The inference pods: the server selector, else the target Service's
    // selector; in the run's own namespace unless it names others.
    let own = [ns.to_string()];
    let requested = if t.server.namespaces.is_empty() {
        &own[..]
    } else {
        &t.server.namespaces[..]
    };
    found.refused = refusals(policy, ns, &labelled, spec);
    found.readable = policy.readable(ns, &labelled);
    let server_namespaces = policy.namespaces(ns, &labelled, requested).listed;
    let inference_selector = match &t.server.selector {
        Some(s) => Some(selector(s)),
        None => match &spec.target.service_ref {
            Some(r) => {
                let services: Api<Service> = Api::namespaced(client.clone(), ns);
                services
                    .get_opt(&r.name)
                    .await?
                    .and_then(|s| s.spec?.selector)
                    .map(|m| Ok(Selector::from_iter(m)))
            }
            None => None,
        },
    };
    match inference_selector {
        Some(Ok(sel)) => {
            found.inference = list(
                client,
                watches,
                &server_namespaces,
                &sel,
                &mut found.notes,
            )
            .await?;
            found.inference.sort();
            if found.inference.is_empty() {
                found
                    .notes
                    .push(format!("no inference pods match {sel} in {server_namespaces:?}"));
            }
        }
        Some(Err(e)) => found.notes.push(format!("spec.telemetry.server.selector: {e}")),
        None => found.notes.push(
            "the target is a URL and spec.telemetry.server.selector is not set: no inference pods to attribute GPUs to"
                .into(),
        ),
    }
    if t.server.enabled && t.server.selector.is_none() && t.server.urls.is_empty() {
        match derived_server(spec, policy) {
            Some(Ok(url)) => found
                .servers
                .push((url, Some(DERIVED_FROM_TARGET.to_string()))),
            Some(Err(why)) => found.notes.push(why),
            None => {}
        }
    }
    if t.server.enabled {
        let rule = PortRule {
            number: t.server.port,
            name: t.server.port_name.as_deref(),
            names: &["metrics", "http"],
            fallback: None,
            https: t.server.tls.is_some(),
        };
        // Every matching pod is held to the policy, ready or not (a refusal
        // does not wait for the pod to start); the ready ones are scraped.
        for p in found.inference.clone() {
            let url = metrics_url(&p, rule, &t.server.path);
            found.admit(false, policy, ns, &p, url);
        }
        let urls = permitted_urls(policy, &t.server.urls);
        found.servers.extend(urls);
    }
    if t.gpu.enabled {
        let selectors: Vec<Selector> = match &t.gpu.selector {
            Some(s) => match selector(s) {
                Ok(s) => vec![s],
                Err(e) => {
                    found
                        .notes
                        .push(format!("spec.telemetry.gpu.selector: {e}"));
                    Vec::new()
                }
            },
            None => DEFAULT_GPU_SELECTORS
                .iter()
                .map(|(k, v)| Selector::from_iter([(k.to_string(), v.to_string())]))
                .collect(),
        };
        // Every namespace the run may read, unless it names some.
        let gpu_namespaces = policy.namespaces(ns, &labelled, &t.gpu.namespaces).listed;
        let mut exporters = BTreeSet::new();
        for sel in &selectors {
            exporters.extend(list(client, watches, &gpu_namespaces, sel, &mut found.notes).await?);
        }
        let exporters: Vec<PodInfo> = exporters.into_iter().collect();
        let nodes: BTreeSet<String> = found
            .inference
            .iter()
            .filter_map(|p| p.node.clone())
            .collect();
        let rule = PortRule {
            number: t.gpu.port,
            name: t.gpu.port_name.as_deref(),
            names: &["metrics"],
            fallback: Some(9400),
            https: t.gpu.tls.is_some(),
        };
        let in_scope = exporters.iter().filter(|e| {
            t.gpu.scope == GpuScope::All
                || e.node.as_deref().is_some_and(|n| nodes.contains(n))
                || nodes.is_empty() && t.gpu.scope == GpuScope::Auto
        });
        for e in in_scope {
            let url = metrics_url(e, rule, &t.gpu.path);
            found.admit(true, policy, ns, e, url);
        }
        let urls = permitted_urls(policy, &t.gpu.urls);
        found.gpus.extend(urls);
        if found.gpus.is_empty() {
            let which = match &t.gpu.selector {
                Some(_) => "spec.telemetry.gpu.selector".to_string(),
                None => {
                    let all: Vec<String> = DEFAULT_GPU_SELECTORS
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("the default selectors ({})", all.join(", "))
                }
            };
            let on = if nodes.is_empty() {
                String::new()
            } else {
                format!(
                    " on the nodes of the inference pods ({})",
                    nodes.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            found.notes.push(format!(
                "no ready GPU exporter pods match {which}{on} in the namespaces runs in {ns} may read ({}) ({} found elsewhere)",
                gpu_namespaces.join(", "),
                exporters.len()
            ));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ports: &[(&str, i32)], annotations: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: "ns".into(),
            name: "p".into(),
            node: Some("n1".into()),
            ip: Some("10.0.0.7".into()),
            ready: true,
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: BTreeMap::new(),
            ports: ports
                .iter()
                .map(|(n, p)| ((!n.is_empty()).then(|| n.to_string()), *p))
                .collect(),
            ..PodInfo::default()
        }
    }

    const AUTO: PortRule<'static> = PortRule {
        number: None,
        name: None,
        names: &["metrics", "http"],
        fallback: None,
        https: false,
    };

    #[test]
    fn a_url_target_s_metrics_are_derived_only_where_the_policy_allows() {
        let spec = |target: &str, telemetry: serde_json::Value| -> BenchmarkRunSpec {
            serde_json::from_value(serde_json::json!({
                "target": {"url": target, "model": "m"},
                "load": {"concurrency": 1, "requestCount": 1},
                "telemetry": telemetry,
            }))
            .unwrap()
        };
        let policy = Policy::from_flags(
            "benchrun-system",
            &[],
            &["gateway.example.com".into(), "10.20.0.0/16".into()],
            vec![],
        )
        .unwrap();
        let none = serde_json::json!({});
        let derived = |target: &str, telemetry: serde_json::Value| {
            derived_server(&spec(target, telemetry), &policy).unwrap()
        };
        assert_eq!(
            derived("https://gateway.example.com/openai/v1", none.clone()),
            Ok("https://gateway.example.com/metrics".into())
        );
        assert_eq!(
            derived("http://10.20.0.5:8000", none.clone()),
            Ok("http://10.20.0.5:8000/metrics".into())
        );
        // The run's server port and path, where the server serves them apart.
        assert_eq!(
            derived(
                "http://10.20.0.5:8000",
                serde_json::json!({"server": {"port": 9090, "path": "/stats"}})
            ),
            Ok("http://10.20.0.5:9090/stats".into())
        );
        // A host the installer does not allow is not requested, and the note says why.
        let no = derived("http://vllm.other-team.svc:8000", none.clone()).unwrap_err();
        assert!(
            no.contains("not scraped") && no.contains("vllm.other-team.svc"),
            "{no}"
        );
        let no = derived("http://169.254.169.254:80", none).unwrap_err();
        assert!(no.contains("refused"), "{no}");
        // A Service target is discovered through its pods, not derived.
        let mut s = spec("http://10.20.0.5:8000", serde_json::json!({}));
        s.target.url = None;
        assert_eq!(derived_server(&s, &policy), None);
    }

    #[test]
    fn ports_by_number_name_annotation_and_order() {
        let p = pod(&[("grpc", 9000), ("http", 8000), ("metrics", 8001)], &[]);
        assert_eq!(
            metrics_url(&p, AUTO, "/metrics").unwrap(),
            "http://10.0.0.7:8001/metrics"
        );
        let named = PortRule {
            name: Some("http"),
            ..AUTO
        };
        assert_eq!(
            metrics_url(&p, named, "/m").unwrap(),
            "http://10.0.0.7:8000/m"
        );
        let number = PortRule {
            number: Some(1234),
            ..AUTO
        };
        assert_eq!(
            metrics_url(&p, number, "/metrics").unwrap(),
            "http://10.0.0.7:1234/metrics"
        );
        let missing = PortRule {
            name: Some("nope"),
            ..AUTO
        };
        assert_eq!(metrics_url(&p, missing, "/metrics"), None);

        let annotated = pod(
            &[("http", 8000)],
            &[
                ("prometheus.io/port", "9090"),
                ("prometheus.io/path", "/prom"),
            ],
        );
        assert_eq!(
            metrics_url(&annotated, AUTO, "/metrics").unwrap(),
            "http://10.0.0.7:9090/prom"
        );
        // An explicit path wins over the annotation.
        assert_eq!(
            metrics_url(&annotated, AUTO, "/x").unwrap(),
            "http://10.0.0.7:9090/x"
        );

        let bare = pod(&[], &[]);
        let dcgm = PortRule {
            fallback: Some(9400),
            names: &["metrics"],
            ..AUTO
        };
        assert_eq!(
            metrics_url(&bare, dcgm, "/metrics").unwrap(),
            "http://10.0.0.7:9400/metrics"
        );
        // An exporter given TLS options is scraped over HTTPS.
        let tls = PortRule {
            https: true,
            ..dcgm
        };
        assert_eq!(
            metrics_url(&bare, tls, "/metrics").unwrap(),
            "https://10.0.0.7:9400/metrics"
        );
        assert_eq!(metrics_url(&bare, AUTO, "/metrics"), None);
        let mut v6 = pod(&[("http", 80)], &[]);
        v6.ip = Some("fd00::1".into());
        assert_eq!(
            metrics_url(&v6, AUTO, "/metrics").unwrap(),
            "http://[fd00::1]:80/metrics"
        );
    }
}
