//! The chart's optional parts, rendered by Helm (scripts/e2e.sh puts it on
//! PATH): what they run must be a command the binary accepts.

use std::process::Command;

use benchrun::cli::{Cli, Command as Sub};
use clap::Parser;
use serde_json::Value;

/// `helm template` of one chart file with `sets`, as a JSON value.
fn render(template: &str, sets: &[&str]) -> Value {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/benchrun");
    let mut cmd = Command::new("helm");
    cmd.args(["template", "t", chart, "--show-only", template]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd
        .output()
        .expect("helm on PATH (scripts/e2e.sh puts it there)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).expect("YAML")
}

fn args_of(container: &Value) -> Vec<String> {
    let mut argv = vec!["benchrun".to_string()];
    for a in container["args"].as_array().expect("args") {
        argv.push(a.as_str().expect("string arg").to_string());
    }
    argv
}

#[test]
fn the_gpu_exporter_daemonset_mounts_the_socket_it_is_told_to_read() {
    let ds = render("templates/gpu-exporter.yaml", &["gpuExporter.enabled=true"]);
    let spec = &ds["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let argv = args_of(c);
    let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let Sub::GpuExporter(opts) = cli.command else {
        panic!("{argv:?} is not gpu-exporter");
    };
    assert!(!opts.no_pod_labels);
    // The socket lies under a read-only mount of the node's pod-resources directory.
    let mount = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| {
            opts.pod_resources
                .starts_with(m["mountPath"].as_str().unwrap())
        })
        .unwrap_or_else(|| panic!("no mount holds {}", opts.pod_resources.display()));
    assert_eq!(mount["readOnly"], true);
    let volume = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    assert_eq!(volume["hostPath"]["path"], "/var/lib/kubelet/pod-resources");
    // The kubelet serves the socket to root only.
    assert_eq!(c["securityContext"]["runAsUser"], 0);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(spec["automountServiceAccountToken"], false);

    let off = render(
        "templates/gpu-exporter.yaml",
        &[
            "gpuExporter.enabled=true",
            "gpuExporter.podResources.enabled=false",
        ],
    );
    let spec = &off["spec"]["template"]["spec"];
    let argv = args_of(&spec["containers"][0]);
    assert!(argv.iter().any(|a| a == "--no-pod-labels"), "{argv:?}");
    Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(spec["volumes"].is_null(), "no host path without pod labels");
    assert_eq!(
        spec["containers"][0]["securityContext"]["runAsNonRoot"],
        true
    );
}

#[test]
fn the_gpu_exporter_runs_the_image_that_can_load_nvml() {
    let image = |template: &str, sets: &[&str]| -> String {
        let r = render(template, sets);
        r["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("an image")
            .to_string()
    };
    let exporter = image("templates/gpu-exporter.yaml", &["gpuExporter.enabled=true"]);
    let controller = image("templates/deployment.yaml", &[]);
    let repo = |i: &str| i.rsplit_once(':').map(|(r, _)| r.to_string()).unwrap();
    assert_eq!(repo(&exporter), "ghcr.io/benchrun/benchrun-gpu-exporter");
    assert_eq!(repo(&controller), "ghcr.io/benchrun/benchrun");
    assert_eq!(
        exporter.rsplit_once(':').unwrap().1,
        controller.rsplit_once(':').unwrap().1,
        "both default to the chart's appVersion"
    );
    let own = image(
        "templates/gpu-exporter.yaml",
        &[
            "gpuExporter.enabled=true",
            "gpuExporter.image.repository=registry.example.com/me/benchrun-gpu-exporter",
            "gpuExporter.image.tag=t1",
        ],
    );
    assert_eq!(own, "registry.example.com/me/benchrun-gpu-exporter:t1");
}

/// `helm template` of one chart file that holds several documents.
fn render_docs(template: &str, sets: &[&str]) -> Vec<Value> {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/benchrun");
    let mut cmd = Command::new("helm");
    cmd.args(["template", "t", chart, "--show-only", template]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("helm on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split("\n---")
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .map(|d| serde_saphyr::from_str(d).expect("YAML"))
        .collect()
}

/// Scrape credentials are the installer's choice: off by default; on, the
/// controller is told so and may get Secrets, cluster-wide or in the watched
/// namespaces only.
#[test]
fn scrape_credentials_are_off_unless_the_installer_turns_them_on() {
    let env_of = |sets: &[&str]| -> Option<String> {
        let d = render("templates/deployment.yaml", sets);
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == "BENCHRUN_SCRAPE_CREDENTIALS")
            .and_then(|e| e["value"].as_str().map(str::to_string))
    };
    assert_eq!(env_of(&[]).as_deref(), Some("false"));
    assert_eq!(
        env_of(&["telemetry.scrapeCredentials=true"]).as_deref(),
        Some("true")
    );
    // The value the chart sets is one the controller's flag accepts.
    let cli = Cli::try_parse_from(["benchrun", "controller", "--scrape-credentials", "true"]);
    assert!(
        matches!(cli, Ok(Cli { command: Sub::Controller(ref o), .. }) if o.scrape_credentials),
        "{:?}",
        cli.err()
    );
    let docs = render_docs(
        "templates/scrape-credentials.yaml",
        &["telemetry.scrapeCredentials=true"],
    );
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["ClusterRole", "ClusterRoleBinding"]);
    assert_eq!(docs[0]["rules"][0]["resources"][0], "secrets");
    assert_eq!(
        docs[0]["rules"][0]["verbs"],
        serde_json::json!(["get"]),
        "get only: never list or watch"
    );
    let namespaced = render_docs(
        "templates/scrape-credentials.yaml",
        &[
            "telemetry.scrapeCredentials=true",
            "watchNamespaces={team-a,team-b}",
        ],
    );
    let bound: Vec<&str> = namespaced
        .iter()
        .filter(|d| d["kind"] == "RoleBinding")
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(bound, ["team-a", "team-b"]);
    assert!(!namespaced.iter().any(|d| d["kind"] == "ClusterRoleBinding"));
}

/// Prometheus and Grafana are the installer's choice: nothing by default;
/// on, a Service and ServiceMonitor for the controller's /metrics and the
/// dashboard in a ConfigMap labelled for Grafana's sidecar. The number of
/// runs shown reaches the controller as a value its flag accepts.
#[test]
fn the_service_monitor_and_the_dashboard_are_off_unless_asked_for() {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/benchrun");
    let out = Command::new("helm")
        .args(["template", "t", chart])
        .output()
        .expect("helm on PATH");
    assert!(out.status.success());
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(!all.contains("kind: ServiceMonitor"), "off by default");
    assert!(!all.contains("t-benchrun-dashboard"), "off by default");
    let docs = render_docs(
        "templates/metrics.yaml",
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.dashboard.enabled=true",
        ],
    );
    // Helm orders documents by kind.
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["ConfigMap", "Service", "ServiceMonitor"]);
    let [dashboard, service, monitor] = [&docs[0], &docs[1], &docs[2]];
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value = serde_json::from_str(
        dashboard["data"]["benchrun.json"]
            .as_str()
            .expect("the JSON"),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 5));
    let d = render("templates/deployment.yaml", &["metrics.maxRuns=25"]);
    let max = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "BENCHRUN_METRICS_MAX_RUNS")
        .and_then(|e| e["value"].as_str().map(str::to_string));
    assert_eq!(max.as_deref(), Some("25"));
    let cli = Cli::try_parse_from(["benchrun", "controller", "--metrics-max-runs", "25"]);
    assert!(
        matches!(cli, Ok(Cli { command: Sub::Controller(ref o), .. }) if o.metrics_max_runs == 25),
        "{:?}",
        cli.err()
    );
}

/// `/metrics` is authenticated by default: the controller may review tokens,
/// the reader role grants `get /metrics` to the readers named and to the
/// ServiceMonitor's own scraper account, whose token the ServiceMonitor sends.
#[test]
fn metrics_need_a_reader_s_token_and_the_service_monitor_brings_one() {
    let docs = render_docs(
        "templates/metrics-auth.yaml",
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.readers[0].kind=ServiceAccount",
            "metrics.readers[0].name=prometheus",
            "metrics.readers[0].namespace=monitoring",
        ],
    );
    let find = |kind: &str, suffix: &str| {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with(suffix))
            })
            .unwrap_or_else(|| panic!("no {kind} *{suffix}"))
    };
    let reviews = find("ClusterRole", "-metrics-auth");
    let resources: Vec<&str> = reviews["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(resources, ["tokenreviews", "subjectaccessreviews"]);
    let reader = find("ClusterRole", "-metrics-reader");
    assert_eq!(reader["rules"][0]["nonResourceURLs"][0], "/metrics");
    let readers = find("ClusterRoleBinding", "-metrics-reader");
    let names: Vec<&str> = readers["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["prometheus", "t-benchrun-metrics-scraper"]);
    let token = find("Secret", "-metrics-scraper");
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    let monitor = render_docs(
        "templates/metrics.yaml",
        &["metrics.serviceMonitor.enabled=true"],
    )
    .into_iter()
    .find(|d| d["kind"] == "ServiceMonitor")
    .unwrap();
    let auth = &monitor["spec"]["endpoints"][0]["authorization"];
    assert_eq!(auth["credentials"]["name"], token["metadata"]["name"]);
    assert_eq!(auth["credentials"]["key"], "token");
    // Off: nothing reviews, the ServiceMonitor sends nothing, the controller is told.
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/benchrun");
    let out = Command::new("helm")
        .args(["template", "t", chart, "--set", "metrics.auth=false"])
        .output()
        .expect("helm on PATH");
    assert!(out.status.success());
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(
        !all.contains("-metrics-auth") && !all.contains("-metrics-reader"),
        "{all}"
    );
    let d = render("templates/deployment.yaml", &["metrics.auth=false"]);
    let env = d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "BENCHRUN_METRICS_AUTH")
        .cloned()
        .unwrap();
    assert_eq!(env["value"], "false");
}

/// The controller's NetworkPolicy, when asked for: only its health port, from
/// the sources named.
#[test]
fn the_controller_s_network_policy_admits_only_its_health_port() {
    let np = render(
        "templates/controller-networkpolicy.yaml",
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        ],
    );
    assert_eq!(np["spec"]["policyTypes"][0], "Ingress");
    let rule = &np["spec"]["ingress"][0];
    assert_eq!(rule["ports"][0]["port"], "health");
    assert_eq!(
        rule["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "monitoring"
    );
    assert_eq!(
        np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "controller"
    );
}
