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
        })
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
        }
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
