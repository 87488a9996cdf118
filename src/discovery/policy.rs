//! What a run may make the controller read: the installer's telemetry policy.
//!
//! The controller reads pods cluster-wide and sends scrapes from its own
//! network identity, on behalf of whoever may create a run in some namespace.
//! So a run discovers only in its own namespace, the namespaces the installer
//! opens to every run (the operator's own, where its exporters run, and those
//! listed), and namespaces that opt in with a label; and a run's explicit
//! telemetry URLs must point at hosts the installer allows. Addresses that
//! reach the node or the cluster's control plane (loopback, link-local and so
//! cloud metadata, the API server, the kubelet's ports) are refused unless the
//! installer names them exactly. A refusal names the rule, never whether the
//! address would have answered: nothing is sent to it.
//!
//! Discovered pods are held to rules of their own ([`Policy::check_pod`]): a
//! pod on the node's network is refused (its ports are the node's); in the
//! operator's namespace only benchrun's own exporters are read (never the
//! controller, whose `/metrics` lists every tenant's runs); outside the run's
//! own namespace only the ports and paths the installer allows (by default
//! the engines' and exporters' documented metrics ports, path `/metrics`), so
//! a run cannot turn an opted-in namespace's Prometheus `/federate` or an
//! admin port into its results. In its own namespace a run reads its own
//! pods: any port and path there is the tenant's.
//!
//! Pure: every input is a value.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

/// The label that opens a namespace to every run's telemetry discovery.
pub const READABLE_LABEL: &str = "benchrun.dev/telemetry";
/// Its value.
pub const READABLE_VALUE: &str = "readable";

/// The kubelet's ports: its API, its read-only API and its health port.
const KUBELET_PORTS: &[u16] = &[10250, 10255, 10248];

/// The ports discovered pods outside the run's namespace may be scraped on
/// unless the installer says otherwise: TGI's 80, vLLM's, NIM's and
/// TensorRT-LLM's 8000, Triton's metrics port 8002, llama.cpp's and TGI's
/// 8080, dcgm-exporter's 9400 and SGLang's 30000.
pub const DEFAULT_DISCOVERED_PORTS: &[u16] = &[80, 8000, 8002, 8080, 9400, 30000];

/// The paths discovered pods outside the run's namespace may be scraped on
/// unless the installer says otherwise.
pub const DEFAULT_DISCOVERED_PATHS: &[&str] = &["/metrics"];

/// The most bytes one page of a discovered pod outside the operator's
/// namespace may have (a tenant may run it). Real pages are far smaller: a
/// vLLM page is tens of KiB, dcgm-exporter's for eight GPUs with profiling
/// a few hundred. The installer's exporters and allow-listed URLs keep
/// [`crate::scrape::fetch::DEFAULT_MAX_BYTES`].
pub const TENANT_MAX_BYTES: usize = 4 << 20;
const _: () = assert!(TENANT_MAX_BYTES < crate::scrape::fetch::DEFAULT_MAX_BYTES);

/// Components of benchrun's own exporters: the only pods of the operator's
/// namespace a run reads (there the labels are the installer's).
pub const OWN_EXPORTERS: &[&str] = &["gpu-exporter", "sim-dcgm"];

/// A port or an inclusive range of ports, as an installer writes it
/// (`9400`, `18000-18999`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub first: u16,
    pub last: u16,
}

impl Ports {
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for Ports {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{s:?} is not a port (1-65535) or a range of ports (a-b)"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(format!(
                "{s:?}: a range runs from the lower port to the higher"
            ));
        }
        Ok(Ports { first, last })
    }
}

/// The installer's flags for discovered pods (the controller's, and
/// `benchrun validate`'s to check a manifest against an install).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DiscoveredFlags {
    /// Ports (or ranges, `a-b`) the controller may scrape on discovered pods
    /// outside the run's own namespace. Empty: the engines' and exporters'
    /// usual metrics ports (80, 8000, 8002, 8080, 9400, 30000).
    #[arg(
        long = "telemetry-discovered-port",
        env = "BENCHRUN_TELEMETRY_DISCOVERED_PORTS",
        value_delimiter = ','
    )]
    pub ports: Vec<String>,
    /// Paths the controller may scrape on discovered pods outside the run's
    /// own namespace. Empty: /metrics.
    #[arg(
        long = "telemetry-discovered-path",
        env = "BENCHRUN_TELEMETRY_DISCOVERED_PATHS",
        value_delimiter = ','
    )]
    pub paths: Vec<String>,
    /// Let runs scrape discovered pods on their node's network (hostNetwork),
    /// whose ports are the node's.
    #[arg(long = "telemetry-discovered-host-network", env = "BENCHRUN_TELEMETRY_DISCOVERED_HOST_NETWORK", default_value_t = false, action = clap::ArgAction::Set)]
    pub host_network: bool,
}

impl DiscoveredFlags {
    /// The rules these flags set (empty entries, as an empty environment
    /// variable gives, are none).
    pub fn rules(&self) -> Result<Discovered, String> {
        let clean = |l: &[String]| -> Vec<String> {
            l.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Discovered::from_flags(&clean(&self.ports), &clean(&self.paths), self.host_network)
    }
}

/// The installer's rules for discovered pods.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovered {
    /// Ports pods outside the run's namespace may be scraped on.
    pub ports: Vec<Ports>,
    /// Paths pods outside the run's namespace may be scraped on.
    pub paths: Vec<String>,
    /// Pods on the node's network may be scraped.
    pub host_network: bool,
}

impl Default for Discovered {
    fn default() -> Self {
        Discovered {
            ports: DEFAULT_DISCOVERED_PORTS
                .iter()
                .map(|&p| Ports { first: p, last: p })
                .collect(),
            paths: DEFAULT_DISCOVERED_PATHS
                .iter()
                .map(|p| p.to_string())
                .collect(),
            host_network: false,
        }
    }
}

impl Discovered {
    /// The rules an installer's flags set; empty lists keep the defaults.
    pub fn from_flags(
        ports: &[String],
        paths: &[String],
        host_network: bool,
    ) -> Result<Self, String> {
        let mut out = Discovered {
            host_network,
            ..Discovered::default()
        };
        if !ports.is_empty() {
            out.ports = ports
                .iter()
                .map(|p| {
                    p.parse()
                        .map_err(|e| format!("--telemetry-discovered-port: {e}"))
                })
                .collect::<Result<_, _>>()?;
        }
        if !paths.is_empty() {
            for p in paths {
                if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
                    return Err(format!(
                        "--telemetry-discovered-path: {p:?} is not a path (it starts with / and has no query)"
                    ));
                }
            }
            out.paths = paths.to_vec();
        }
        Ok(out)
    }

    fn port_allowed(&self, port: u16) -> bool {
        self.ports.iter().any(|r| r.contains(port))
    }

    fn ports_said(&self) -> String {
        self.ports
            .iter()
            .map(Ports::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One entry of the URL allow-list.
#[derive(Clone, Debug, PartialEq)]
pub enum Allowed {
    /// A host name, matched whole and case-insensitively.
    Host(String),
    /// An address or a network.
    Net(IpNet),
}

impl std::str::FromStr for Allowed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an empty allow-list entry".into());
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Allowed::Net(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Allowed::Net(IpNet::from(ip)));
        }
        let valid = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "{s:?} is neither a host name, an IP address nor a CIDR"
            ));
        }
        Ok(Allowed::Host(s.to_ascii_lowercase()))
    }
}

/// The installer's telemetry policy (controller flags, Helm values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// Namespaces every run may discover in, besides its own.
    pub namespaces: BTreeSet<String>,
    /// Hosts explicit telemetry URLs may point at; empty: none.
    pub allowed_hosts: Vec<Allowed>,
    /// Addresses of the API server (refused unless named exactly).
    pub api_server: Vec<IpAddr>,
    /// Runs may name Secrets for their scrapes (`telemetry.server.auth`, a
    /// telemetry CA in a Secret): the controller reads those, and only those
    /// labelled `benchrun.dev/scrape-credentials=true`.
    pub scrape_credentials: bool,
    /// The operator's own namespace.
    pub operator: String,
    /// The rules for discovered pods.
    pub discovered: Discovered,
}

/// Where a run may and may not discover.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Namespaces {
    /// To list, in order.
    pub listed: Vec<String>,
    /// Asked for and not readable by the run.
    pub refused: Vec<String>,
}

impl Policy {
    /// The policy an installer's flags set: `operator` (the operator's own
    /// namespace, where its exporters run) and `namespaces` open to every run,
    /// `hosts` parsed as allow-list entries (an error names the flag).
    pub fn from_flags(
        operator: &str,
        namespaces: &[String],
        hosts: &[String],
        api_server: Vec<IpAddr>,
    ) -> Result<Policy, String> {
        let mut open: BTreeSet<String> = namespaces.iter().cloned().collect();
        open.insert(operator.to_string());
        let allowed_hosts = hosts
            .iter()
            .map(|h| {
                h.parse()
                    .map_err(|e| format!("--telemetry-allowed-host: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            namespaces: open,
            allowed_hosts,
            api_server,
            scrape_credentials: false,
            operator: operator.to_string(),
            discovered: Discovered::default(),
        })
    }

    /// The page bound of a discovered `pod` when it is held to less than the
    /// default: any pod outside the operator's namespace. Pure.
    pub fn page_bound(&self, pod: &super::PodInfo) -> Option<usize> {
        (pod.namespace != self.operator).then_some(TENANT_MAX_BYTES)
    }

    /// Whether a run in `own` may have the controller scrape a port and path
    /// its spec names on pods in `namespaces` (the ones it asked for): `Err`
    /// says why not, before any pod is listed. `what` names the spec field.
    pub fn check_named_port(
        &self,
        own: &str,
        namespaces: &[String],
        port: Option<i32>,
        path: &str,
        what: &str,
    ) -> Vec<String> {
        let Some(other) = namespaces.iter().find(|n| *n != own) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(p) = port
            && !u16::try_from(p).is_ok_and(|p| self.discovered.port_allowed(p))
        {
            out.push(format!(
                "{what}.port: port {p} is not one the installer allows on pods outside {own} (namespace {other}; allowed: {}; Helm value telemetry.discoveredPorts)",
                self.discovered.ports_said()
            ));
        }
        if !self.discovered.paths.iter().any(|p| p == path) {
            out.push(format!(
                "{what}.path: path {path:?} is not one the installer allows on pods outside {own} (namespace {other}; allowed: {}; Helm value telemetry.discoveredPaths)",
                self.discovered.paths.join(", ")
            ));
        }
        out
    }

    /// Whether a run in `own` may have the controller scrape `url` on the
    /// discovered `pod` (`None`: it has no metrics URL yet; the rules that
    /// do not need one still apply): `Err` says which rule refuses it. Pure.
    pub fn check_pod(
        &self,
        own: &str,
        pod: &super::PodInfo,
        url: Option<&str>,
    ) -> Result<(), String> {
        let name = format!("pod {}/{}", pod.namespace, pod.name);
        if pod.host_network && !self.discovered.host_network {
            return Err(format!(
                "{name} is on its node's network (hostNetwork), so its ports are the node's: refused unless the installer allows host-network pods (Helm value telemetry.discoveredHostNetwork)"
            ));
        }
        if pod.namespace == self.operator && pod.namespace != own {
            let component = pod
                .labels
                .get("app.kubernetes.io/component")
                .map(String::as_str);
            let own_exporter = pod.labels.get("app.kubernetes.io/name").map(String::as_str)
                == Some("benchrun")
                && component.is_some_and(|c| OWN_EXPORTERS.contains(&c));
            if !own_exporter {
                return Err(format!(
                    "{name} is in the operator's namespace, where runs read only benchrun's own exporters"
                ));
            }
        }
        let Some(url) = url.filter(|_| pod.namespace != own) else {
            return Ok(());
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|_| format!("{name}: its metrics URL is not valid"))?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        if !self.discovered.port_allowed(port) {
            return Err(format!(
                "{name}: port {port} is not one the installer allows on pods outside {own} (allowed: {}; Helm value telemetry.discoveredPorts)",
                self.discovered.ports_said()
            ));
        }
        if !self.discovered.paths.iter().any(|p| p == uri.path()) || uri.query().is_some() {
            return Err(format!(
                "{name}: path {:?} is not one the installer allows on pods outside {own} (allowed: {}; Helm value telemetry.discoveredPaths)",
                uri.path_and_query().map_or("/", |p| p.as_str()),
                self.discovered.paths.join(", ")
            ));
        }
        Ok(())
    }

    /// The namespaces a run in `own` may read, given those that opt in by label.
    pub fn readable(&self, own: &str, labelled: &BTreeSet<String>) -> BTreeSet<String> {
        let mut all = self.namespaces.clone();
        all.extend(labelled.iter().cloned());
        all.insert(own.to_string());
        all
    }

    /// Of the `requested` namespaces (empty: every readable one), those to list
    /// and those refused.
    pub fn namespaces(
        &self,
        own: &str,
        labelled: &BTreeSet<String>,
        requested: &[String],
    ) -> Namespaces {
        let readable = self.readable(own, labelled);
        if requested.is_empty() {
            return Namespaces {
                listed: readable.into_iter().collect(),
                refused: Vec::new(),
            };
        }
        let mut out = Namespaces::default();
        for ns in requested {
            let to = if readable.contains(ns) {
                &mut out.listed
            } else {
                &mut out.refused
            };
            if !to.contains(ns) {
                to.push(ns.clone());
            }
        }
        out
    }

    /// Whether the controller may scrape `url` for a run: `Err` says which rule
    /// refuses it, in words for the run's condition.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{} is not a valid URL: {e}", crate::net::redact_url(url)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!(
                "{}: only http and https URLs are scraped",
                crate::net::redact_url(url)
            ));
        }
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        if authority.contains('@') {
            return Err("a URL with credentials in it is refused: use a Secret".into());
        }
        let host = uri.host().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        let name = bare.to_ascii_lowercase();
        let exact = self.allowed_hosts.iter().any(|a| match (a, ip) {
            (Allowed::Host(h), _) => *h == name,
            (Allowed::Net(n), Some(ip)) => n.prefix_len() == n.max_prefix_len() && n.addr() == ip,
            _ => false,
        });
        let port = uri.port_u16();
        let sensitive = match ip {
            Some(ip) => sensitive_ip(ip, &self.api_server),
            None => sensitive_name(&name),
        }
        .or_else(|| {
            port.filter(|p| KUBELET_PORTS.contains(p))
                .map(|p| format!("port {p} is the kubelet's"))
        });
        if let Some(why) = sensitive {
            return if exact {
                Ok(())
            } else {
                Err(format!(
                    "{host}: {why}, refused unless the operator's installer allows this host by name"
                ))
            };
        }
        let allowed = self.allowed_hosts.iter().any(|a| match (a, ip) {
            (Allowed::Host(h), _) => *h == name,
            (Allowed::Net(n), Some(ip)) => n.contains(&ip),
            _ => false,
        });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{host} is not in the operator's allow-list of telemetry hosts (Helm value telemetry.allowedHosts)"
            ))
        }
    }
}

/// Why an address is one a run must not aim the controller at, if it is.
fn sensitive_ip(ip: IpAddr, api_server: &[IpAddr]) -> Option<String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        return Some("a loopback address (the controller's own pod)".into());
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Some("not a host address".into());
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Some("a link-local address (node and cloud metadata services)".into());
    }
    if api_server.contains(&ip) {
        return Some("the Kubernetes API server".into());
    }
    None
}

fn sensitive_name(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.');
    if name == "localhost" || name.ends_with(".localhost") {
        return Some("a loopback address (the controller's own pod)".into());
    }
    let api = name == "kubernetes"
        || name.starts_with("kubernetes.default")
        || name == "metadata.google.internal"
        || name == "metadata";
    api.then(|| "the API server or a metadata service".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> Policy {
        Policy {
            namespaces: BTreeSet::from(["benchrun-system".to_string()]),
            allowed_hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
            api_server: vec!["10.96.0.1".parse().unwrap()],
            scrape_credentials: false,
            operator: "benchrun-system".into(),
            discovered: Discovered::default(),
        }
    }

    fn pod(ns: &str, labels: &[(&str, &str)]) -> super::super::PodInfo {
        super::super::PodInfo {
            namespace: ns.into(),
            name: "p".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn discovered_pods_outside_the_run_s_namespace_only_on_allowed_ports_and_paths() {
        let p = policy(&[]);
        let theirs = pod("gpu-operator", &[("app", "nvidia-dcgm-exporter")]);
        assert_eq!(
            p.check_pod("team-a", &theirs, Some("http://10.1.0.4:9400/metrics")),
            Ok(())
        );
        // A Prometheus in an opted-in namespace: neither its port nor /federate.
        let e = p
            .check_pod("team-a", &theirs, Some("http://10.1.0.4:9090/metrics"))
            .unwrap_err();
        assert!(
            e.contains("port 9090") && e.contains("gpu-operator/p"),
            "{e}"
        );
        let e = p
            .check_pod("team-a", &theirs, Some("http://10.1.0.4:9400/federate"))
            .unwrap_err();
        assert!(e.contains("path \"/federate\""), "{e}");
        let e = p
            .check_pod(
                "team-a",
                &theirs,
                Some("http://10.1.0.4:9400/metrics?match[]=x"),
            )
            .unwrap_err();
        assert!(e.contains("path"), "{e}");
        // The run's own pods: any port and path.
        let mine = pod("team-a", &[("app", "llm")]);
        assert_eq!(
            p.check_pod("team-a", &mine, Some("http://10.1.0.5:5000/stats")),
            Ok(())
        );
        // The installer widens the rules.
        let wide = Policy {
            discovered: Discovered::from_flags(&["9000-9100".into()], &["/stats".into()], false)
                .unwrap(),
            ..p.clone()
        };
        assert_eq!(
            wide.check_pod("team-a", &theirs, Some("http://10.1.0.4:9090/stats")),
            Ok(())
        );
        assert!(
            wide.check_pod("team-a", &theirs, Some("http://10.1.0.4:9400/metrics"))
                .is_err()
        );
    }

    fn theirs_unready() -> super::super::PodInfo {
        pod("gpu-operator", &[("app", "nvidia-dcgm-exporter")])
    }

    #[test]
    fn the_operator_s_namespace_shows_only_its_exporters_and_the_node_s_network_nothing() {
        let p = policy(&[]);
        let controller = pod(
            "benchrun-system",
            &[
                ("app.kubernetes.io/name", "benchrun"),
                ("app.kubernetes.io/component", "controller"),
            ],
        );
        let e = p
            .check_pod("team-a", &controller, Some("http://10.1.0.2:8000/metrics"))
            .unwrap_err();
        assert!(e.contains("operator's namespace"), "{e}");
        // A look-alike exporter there is not benchrun's either.
        let lookalike = pod("benchrun-system", &[("app", "nvidia-dcgm-exporter")]);
        assert!(
            p.check_pod("team-a", &lookalike, Some("http://10.1.0.3:9400/metrics"))
                .is_err()
        );
        let sim = pod(
            "benchrun-system",
            &[
                ("app.kubernetes.io/name", "benchrun"),
                ("app.kubernetes.io/component", "sim-dcgm"),
            ],
        );
        assert_eq!(
            p.check_pod("team-a", &sim, Some("http://10.1.0.3:9400/metrics")),
            Ok(())
        );
        // Runs in the operator's own namespace are the installer's.
        assert_eq!(
            p.check_pod(
                "benchrun-system",
                &controller,
                Some("http://10.1.0.2:8081/metrics")
            ),
            Ok(())
        );
        // A pod on the node's network, even the run's own, unless allowed.
        let mut host = pod("team-a", &[("app", "llm")]);
        host.host_network = true;
        let e = p
            .check_pod("team-a", &host, Some("http://10.0.0.1:10249/metrics"))
            .unwrap_err();
        assert!(e.contains("hostNetwork"), "{e}");
        // Before it has an address too: the refusal does not wait for it.
        assert!(p.check_pod("team-a", &host, None).is_err());
        assert_eq!(p.check_pod("team-a", &theirs_unready(), None), Ok(()));
        let allowing = Policy {
            discovered: Discovered {
                host_network: true,
                ..Discovered::default()
            },
            ..p.clone()
        };
        assert_eq!(
            allowing.check_pod("team-a", &host, Some("http://10.0.0.1:10249/metrics")),
            Ok(())
        );
    }

    #[test]
    fn a_named_port_or_path_in_another_namespace_is_refused_before_listing() {
        let p = policy(&[]);
        let ns = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let said = p.check_named_port(
            "team-a",
            &ns(&["benchrun-system"]),
            Some(8081),
            "/metrics",
            "spec.telemetry.server",
        );
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("port 8081"), "{said:?}");
        let said = p.check_named_port(
            "team-a",
            &ns(&["team-a", "mon"]),
            None,
            "/federate",
            "spec.telemetry.server",
        );
        assert!(
            said[0].contains("\"/federate\"") && said[0].contains("namespace mon"),
            "{said:?}"
        );
        // Only its own namespace: its own business.
        assert!(
            p.check_named_port("team-a", &ns(&["team-a"]), Some(1), "/x", "w")
                .is_empty()
        );
        assert!(
            p.check_named_port("team-a", &ns(&[]), Some(1), "/x", "w")
                .is_empty()
        );
        assert!(
            p.check_named_port("team-a", &ns(&["mon"]), Some(8000), "/metrics", "w")
                .is_empty()
        );
    }

    #[test]
    fn pages_of_pods_a_tenant_may_run_are_bounded_lower() {
        let p = policy(&[]);
        assert_eq!(p.page_bound(&pod("team-a", &[])), Some(TENANT_MAX_BYTES));
        assert_eq!(
            p.page_bound(&pod("gpu-operator", &[])),
            Some(TENANT_MAX_BYTES)
        );
        assert_eq!(p.page_bound(&pod("benchrun-system", &[])), None);
    }

    #[test]
    fn port_ranges_parse_or_say_why_not() {
        assert_eq!(
            "9400".parse::<Ports>(),
            Ok(Ports {
                first: 9400,
                last: 9400
            })
        );
        assert_eq!(
            "18000-18999".parse::<Ports>(),
            Ok(Ports {
                first: 18000,
                last: 18999
            })
        );
        for bad in ["0", "9400-80", "x", "70000", "1-2-3", ""] {
            assert!(bad.parse::<Ports>().is_err(), "{bad}");
        }
        assert!(Discovered::from_flags(&[], &["metrics".into()], false).is_err());
        assert!(
            Discovered::from_flags(&["x".into()], &[], false)
                .unwrap_err()
                .contains("--telemetry-discovered-port")
        );
    }

    #[test]
    fn a_run_reads_its_namespace_the_open_ones_and_those_that_opt_in() {
        let p = policy(&[]);
        let labelled = BTreeSet::from(["gpu-operator".to_string()]);
        let all = p.namespaces("team-a", &labelled, &[]);
        assert_eq!(all.listed, ["benchrun-system", "gpu-operator", "team-a"]);
        assert!(all.refused.is_empty());
        let asked = ["team-b", "gpu-operator", "team-a", "team-b"].map(String::from);
        let n = p.namespaces("team-a", &labelled, &asked);
        assert_eq!(n.listed, ["gpu-operator", "team-a"]);
        assert_eq!(n.refused, ["team-b"]);
        // Without the label, the GPU operator's namespace is closed.
        let n = p.namespaces("team-a", &BTreeSet::new(), &["gpu-operator".into()]);
        assert_eq!(n.refused, ["gpu-operator"]);
    }

    #[test]
    fn urls_need_the_allow_list_and_sensitive_ones_an_exact_entry() {
        let p = policy(&["10.20.0.0/16", "dcgm.monitoring.svc"]);
        assert_eq!(p.check_url("http://10.20.3.4:9400/metrics"), Ok(()));
        assert_eq!(
            p.check_url("http://DCGM.monitoring.svc:9400/metrics"),
            Ok(())
        );
        let no = p.check_url("http://10.30.0.1:9400/metrics").unwrap_err();
        assert!(no.contains("allow-list"), "{no}");
        for (url, says) in [
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[fe80::1]:9400/metrics", "link-local"),
            ("http://127.0.0.1:8081/metrics", "loopback"),
            ("http://[::ffff:127.0.0.1]:80/", "loopback"),
            ("http://localhost:9400/metrics", "loopback"),
            ("http://10.96.0.1:443/metrics", "API server"),
            ("https://kubernetes.default.svc/metrics", "API server"),
            (
                "http://metadata.google.internal/computeMetadata/v1/",
                "metadata",
            ),
            ("http://10.20.0.9:10250/metrics", "kubelet"),
            ("http://0.0.0.0:9400/metrics", "not a host address"),
        ] {
            let e = p.check_url(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
        }
        // Inside an allowed network is not enough for the kubelet's port...
        assert!(p.check_url("http://10.20.0.9:10255/").is_err());
        // ...an exact entry is.
        let exact = policy(&["10.20.0.9", "169.254.169.254"]);
        assert_eq!(exact.check_url("http://10.20.0.9:10255/metrics"), Ok(()));
        assert_eq!(exact.check_url("http://169.254.169.254/"), Ok(()));
        // Credentials and other schemes are refused whatever the list says.
        let any = policy(&["0.0.0.0/0"]);
        assert!(
            any.check_url("http://user:pw@10.1.1.1/metrics")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(any.check_url("file:///etc/passwd").is_err());
        assert!(any.check_url("not a url").is_err());
        // An empty allow-list allows nothing.
        assert!(
            policy(&[])
                .check_url("http://10.20.3.4:9400/metrics")
                .is_err()
        );
    }

    #[test]
    fn allow_list_entries_parse_or_say_why_not() {
        assert_eq!(
            "10.0.0.0/8".parse::<Allowed>(),
            Ok(Allowed::Net("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(
            "fd00::1".parse::<Allowed>(),
            Ok(Allowed::Net("fd00::1/128".parse().unwrap()))
        );
        assert_eq!(
            "Exporter.NS.svc".parse::<Allowed>(),
            Ok(Allowed::Host("exporter.ns.svc".into()))
        );
        assert!("http://x".parse::<Allowed>().is_err());
        assert!("".parse::<Allowed>().is_err());
    }
}
