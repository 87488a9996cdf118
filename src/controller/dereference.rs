//! The dereference stage: resolves `target.serviceRef` to the URLs requests
//! go to.
//!
//! By default (`routing: endpoints`) benchrun sends to the ready pods behind
//! a Service directly, as listed by its EndpointSlices, instead of through its
//! virtual IP: load spreads evenly over the replicas whatever the proxy does,
//! and no kube-proxy or cluster DNS is needed. With `routing: service` it
//! sends to the Service's DNS name, as the cluster's clients do; the ready
//! pods are still looked up, to say that the Service has some and which
//! servers other runs would share.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};

use super::decide::Target;
use super::error::Error;
use crate::api::{Routing, Scheme, ServiceRef};

/// Looks the target up in the cluster.
pub async fn resolve(
    client: &kube::Client,
    namespace: &str,
    target: &crate::api::Target,
) -> Result<Target, Error> {
    if let Some(url) = &target.url {
        let urls = vec![url.trim_end_matches('/').to_string()];
        return Ok(Target::Resolved {
            reaches: urls.clone(),
            urls,
            owned: Vec::new(),
        });
    }
    let Some(svc_ref) = &target.service_ref else {
        return Ok(Target::Unresolved(
            "the target has neither url nor serviceRef".into(),
        ));
    };
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let Some(service) = services.get_opt(&svc_ref.name).await? else {
        return Ok(Target::Unresolved(format!(
            "Service {} not found",
            svc_ref.name
        )));
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={}", svc_ref.name));
    let slices = slices.list(&lp).await?.items;
    Ok(match urls(svc_ref, namespace, &service, &slices) {
        Ok((urls, reaches)) => {
            let ips = own_pod_ips(client, namespace, &service).await?;
            Target::Resolved {
                owned: owned_addresses(&reaches, &ips),
                urls,
                reaches,
            }
        }
        Err(why) => Target::Unresolved(why),
    })
}

/// The addresses of the pods the Service selects in its own namespace
/// (none for a Service without a selector, whose EndpointSlices anyone who
/// may write them fills).
async fn own_pod_ips(
    client: &kube::Client,
    namespace: &str,
    service: &Service,
) -> Result<std::collections::BTreeSet<String>, Error> {
    let selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty());
    let Some(selector) = selector else {
        return Ok(Default::default());
    };
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().labels_from(&kube::core::Selector::from_iter(selector));
    Ok(pods
        .list(&lp)
        .await?
        .items
        .into_iter()
        // A pod that has ended keeps its address in its status, though the
        // network may have given it to another namespace's pod since.
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status)
        .filter(|s| matches!(s.phase.as_deref(), Some("Running" | "Pending")))
        .flat_map(|s| {
            s.pod_ips
                .into_iter()
                .flatten()
                .map(|ip| ip.ip)
                .chain(s.pod_ip)
        })
        .collect())
}

/// Of the URLs the target reaches, those whose address is one of `ips` (the
/// run's own namespace's pods), as `host:port`: the part of the target the
/// run owns for the queue (`queue::owned`). An address another namespace's
/// pod holds, reached through a hand-written EndpointSlice, is not. Pure.
pub fn owned_addresses(
    reaches: &[String],
    ips: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    reaches
        .iter()
        .filter_map(|u| crate::net::host_port(u))
        .filter(|hp| {
            let host = hp.rsplit_once(':').map_or(hp.as_str(), |(h, _)| h);
            ips.contains(host.trim_start_matches('[').trim_end_matches(']'))
        })
        .collect()
}

/// The URLs requests go to, and the URLs of the ready endpoints of the
/// chosen Service port they reach. Pure.
pub fn urls(
    svc_ref: &ServiceRef,
    namespace: &str,
    service: &Service,
    slices: &[EndpointSlice],
) -> Result<(Vec<String>, Vec<String>), String> {
    let name = &svc_ref.name;
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let port = match (svc_ref.port, &svc_ref.port_name) {
        (Some(n), _) => ports.iter().find(|p| p.port == n),
        (None, Some(pn)) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(pn.as_str())),
        (None, None) if ports.len() == 1 => ports.first(),
        (None, None) => {
            return Err(format!(
                "Service {name} has {} ports: set serviceRef.port or serviceRef.portName",
                ports.len()
            ));
        }
    }
    .ok_or_else(|| format!("Service {name} has no such port"))?;
    let port_name = port.name.clone().unwrap_or_default();
    let scheme = match svc_ref.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let mut urls = Vec::new();
    for slice in slices {
        let Some(target_port) = slice.ports.iter().flatten().find_map(|p| {
            (p.name.clone().unwrap_or_default() == port_name)
                .then_some(p.port)
                .flatten()
        }) else {
            continue;
        };
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for addr in &ep.addresses {
                let host = if addr.contains(':') {
                    format!("[{addr}]")
                } else {
                    addr.clone()
                };
                urls.push(format!("{scheme}://{host}:{target_port}"));
            }
        }
    }
    urls.sort();
    urls.dedup();
    if urls.is_empty() {
        return Err(format!("Service {name} has no ready endpoints"));
    }
    let sent = match svc_ref.routing {
        Routing::Endpoints => urls.clone(),
        Routing::Service => vec![format!("{scheme}://{name}.{namespace}.svc:{}", port.port)],
    };
    Ok((sent, urls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_owns_only_the_addresses_of_its_own_namespace_s_pods() {
        let reaches = [
            "http://10.0.0.1:8000".to_string(),
            "http://10.0.0.2:8000".into(),
            "http://[fd00::1]:8000".into(),
        ];
        let ips = ["10.0.0.2".to_string(), "fd00::1".into()].into();
        assert_eq!(
            owned_addresses(&reaches, &ips),
            ["10.0.0.2:8000", "[fd00::1]:8000"]
        );
        assert!(owned_addresses(&reaches, &Default::default()).is_empty());
    }

    fn service(ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({"spec": {"ports": ports}})).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        let mut base = serde_json::json!({"addressType": "IPv4", "metadata": {}});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn svc_ref(port: Option<i32>, port_name: Option<&str>) -> ServiceRef {
        ServiceRef {
            name: "vllm".into(),
            port,
            port_name: port_name.map(Into::into),
            scheme: Scheme::Http,
            routing: Routing::Endpoints,
        }
    }

    /// The pod URLs an `endpoints` routing sends to.
    fn urls_of(
        svc_ref: &ServiceRef,
        service: &Service,
        slices: &[EndpointSlice],
    ) -> Result<Vec<String>, String> {
        let (sent, reaches) = urls(svc_ref, "llm", service, slices)?;
        assert_eq!(sent, reaches, "endpoints routing sends to what it reaches");
        Ok(sent)
    }

    #[test]
    fn service_routing_sends_to_the_service_name_and_port_and_reaches_its_pods() {
        let svc = service(serde_json::json!([{"name": "http", "port": 80, "targetPort": 8000}]));
        let slices = vec![slice(serde_json::json!({
            "ports": [{"name": "http", "port": 8000}],
            "endpoints": [{"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.1"]}]
        }))];
        let mut r = svc_ref(None, None);
        r.routing = Routing::Service;
        r.scheme = Scheme::Https;
        let (sent, reaches) = urls(&r, "llm", &svc, &slices).unwrap();
        assert_eq!(
            sent,
            ["https://vllm.llm.svc:80"],
            "the Service port, not the pods'"
        );
        assert_eq!(reaches, ["https://10.0.0.1:8000", "https://10.0.0.2:8000"]);
        // A Service with no ready pods is not sent to either way.
        let err = urls(&r, "llm", &svc, &[]).unwrap_err();
        assert!(err.contains("no ready endpoints"), "{err}");
    }

    #[test]
    fn ready_endpoints_of_the_named_port_become_urls() {
        let svc = service(serde_json::json!([
            {"name": "http", "port": 80, "targetPort": 8000},
            {"name": "metrics", "port": 9090}
        ]));
        let slices = vec![slice(serde_json::json!({
            "ports": [{"name": "http", "port": 8000}, {"name": "metrics", "port": 9090}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}}
            ]
        }))];
        let got = urls_of(&svc_ref(Some(80), None), &svc, &slices).unwrap();
        assert_eq!(got, vec!["http://10.0.0.1:8000", "http://10.0.0.2:8000"]);
        let got = urls_of(&svc_ref(None, Some("metrics")), &svc, &slices).unwrap();
        assert_eq!(got, vec!["http://10.0.0.1:9090", "http://10.0.0.2:9090"]);
    }

    #[test]
    fn ambiguous_ports_and_empty_services_are_explained() {
        let svc = service(serde_json::json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}]));
        let err = urls_of(&svc_ref(None, None), &svc, &[]).unwrap_err();
        assert!(err.contains("set serviceRef.port"), "{err}");
        let one = service(serde_json::json!([{"port": 8000}]));
        let err = urls_of(&svc_ref(None, None), &one, &[]).unwrap_err();
        assert!(err.contains("no ready endpoints"), "{err}");
        let err = urls_of(&svc_ref(Some(1234), None), &one, &[]).unwrap_err();
        assert!(err.contains("no such port"), "{err}");
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let svc = service(serde_json::json!([{"port": 8000}]));
        let slices = vec![slice(serde_json::json!({
            "addressType": "IPv6",
            "ports": [{"port": 8000}],
            "endpoints": [{"addresses": ["fd00::1"]}]
        }))];
        let got = urls_of(&svc_ref(None, None), &svc, &slices).unwrap();
        assert_eq!(got, vec!["http://[fd00::1]:8000"]);
    }
}
