//! Readiness probes against a pod's own address.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};

/// Runs one readiness check: httpGet or tcpSocket against the pod address;
/// exec and gRPC probes are not supported and count as failing.
pub async fn check(probe: &Probe, container: &Container, ip: Ipv4Addr) -> bool {
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
