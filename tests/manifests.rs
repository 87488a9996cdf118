//! The committed manifests agree with the code and with each other: the CRD is
//! what `benchrun crd` prints, the Helm chart grants what `config/` grants, and
//! every sample is a valid run.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("bad YAML: {e}\n{text}"))
}

/// The plain-YAML `rules:` block of a templated RBAC manifest (up to the next document).
fn rules_block(template: &str) -> Value {
    let start = template.find("\nrules:").expect("a rules: block") + 1;
    let block = template[start..].split("\n---").next().unwrap_or_default();
    yaml(block)["rules"].clone()
}

#[test]
fn committed_crds_are_what_benchrun_crd_prints() {
    let generated = benchrun::api::crd_yaml().expect("the CRD serializes");
    for copy in [
        "crds/benchmarkruns.benchrun.dev.yaml",
        "config/crd/benchmarkruns.benchrun.dev.yaml",
        "charts/benchrun/crds/benchmarkruns.benchrun.dev.yaml",
    ] {
        assert!(
            read(copy) == generated,
            "{copy} is stale: regenerate with `cargo run -- crd > {copy}`"
        );
    }
}

#[test]
fn chart_rbac_matches_config_rbac() {
    let config_role = yaml(&read("config/rbac/role.yaml"));
    let chart_role = rules_block(&read("charts/benchrun/templates/clusterrole.yaml"));
    assert_eq!(config_role["rules"], chart_role);
    let config_le = yaml(&read("config/rbac/leader_election_role.yaml"));
    let chart_le = rules_block(&read("charts/benchrun/templates/leader-election.yaml"));
    assert_eq!(config_le["rules"], chart_le);
    let config_key = yaml(&read("config/rbac/worker_key_role.yaml"));
    let chart_key = rules_block(&read("charts/benchrun/templates/worker-key.yaml"));
    assert_eq!(config_key["rules"], chart_key);
    let config_auth = read("config/rbac/metrics_auth_role.yaml");
    let config_auth = yaml(config_auth.split("\n---").next().unwrap());
    let chart_auth = rules_block(&read("charts/benchrun/templates/metrics-auth.yaml"));
    assert_eq!(config_auth["rules"], chart_auth);
}

/// The cluster-wide role reaches Secrets nowhere: the workers' token is
/// written into their Job, so no tenant namespace's Secrets can be made
/// (or read) by the controller unless the installer turns scrape
/// credentials on (their own, separate role).
#[test]
fn the_cluster_wide_role_grants_nothing_on_secrets() {
    let role = yaml(&read("config/rbac/role.yaml"));
    let rules = role["rules"].as_array().expect("rules");
    assert!(rules.len() > 5, "{rules:?}");
    for rule in rules {
        let resources = rule["resources"].as_array().expect("resources");
        assert!(
            resources.iter().all(|r| r != "secrets" && r != "*"),
            "{rule:?}"
        );
    }
}

#[test]
fn chart_deployment_matches_config_manager() {
    let manager = yaml(&read("config/manager/manager.yaml"));
    let values = yaml(&read("charts/benchrun/values.yaml"));
    let pod = &manager["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"], values["podSecurityContext"]);
    assert_eq!(container["securityContext"], values["securityContext"]);
    assert_eq!(container["resources"], values["resources"]);
    assert_eq!(container["ports"][0]["containerPort"], values["healthPort"]);
    let template = read("charts/benchrun/templates/deployment.yaml");
    for env in container["env"].as_array().expect("env") {
        let name = env["name"].as_str().expect("env name");
        assert!(
            template.contains(&format!("name: {name}")),
            "chart lacks env {name}"
        );
    }
    for probe in [
        "path: /livez, port: health",
        "path: /readyz, port: health",
        "args: [\"controller\"]",
    ] {
        assert!(template.contains(probe), "chart lacks {probe}");
        assert!(
            read("config/manager/manager.yaml").contains(probe),
            "config lacks {probe}"
        );
    }
    let image = container["image"].as_str().expect("image");
    let chart = yaml(&read("charts/benchrun/Chart.yaml"));
    assert_eq!(
        image,
        format!(
            "{}:{}",
            values["image"]["repository"].as_str().unwrap(),
            chart["appVersion"].as_str().unwrap()
        )
    );
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
}

/// Every sample's server-metric patterns (whole names) match at least one
/// family of the captured pages: a pattern that matches nothing filters out
/// everything, silently.
#[test]
fn every_samples_metric_patterns_match_a_captured_page() {
    use benchrun::scrape::Format;
    use benchrun::telemetry::{Filter, ServerMetrics};
    let fixtures = root().join("../shared/fixtures/metrics");
    let pages: Vec<Vec<u8>> = std::fs::read_dir(&fixtures)
        .unwrap_or_else(|e| panic!("{}: {e}", fixtures.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| std::fs::read(p).expect("read"))
        .collect();
    assert!(pages.len() >= 5, "the captured pages");
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("config/samples")).expect("samples") {
        let path = entry.expect("entry").path();
        let run = yaml(&std::fs::read_to_string(&path).expect("read"));
        let server = &run["spec"]["telemetry"]["server"];
        for list in ["include", "exclude"] {
            for pattern in server[list].as_array().into_iter().flatten() {
                let pattern = pattern.as_str().expect("a pattern").to_string();
                let filter = Filter::new(std::slice::from_ref(&pattern), &[]).expect("compiles");
                let mut m = ServerMetrics::new(filter);
                for page in &pages {
                    m.ingest("page", 0.0, page, Format::Prometheus);
                }
                assert!(
                    !m.results().is_empty(),
                    "{}: {list} pattern {pattern:?} matches no metric of the captured pages",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no sample has patterns to check");
}

#[test]
fn every_sample_is_a_valid_run() {
    let dir = root().join("config/samples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("samples") {
        let path = entry.expect("entry").path();
        if path.file_name().and_then(|f| f.to_str()) == Some("kustomization.yaml") {
            continue;
        }
        let mut run = yaml(&std::fs::read_to_string(&path).expect("read"));
        run["metadata"]["namespace"] = "default".into();
        if let Err(e) = benchrun::api::validate_json(&run) {
            panic!("{}: {e}", Path::new(&path).display());
        }
        n += 1;
    }
    assert!(n >= 3, "at least three samples");
}

#[test]
fn the_simulator_manifest_runs_a_command_the_binary_accepts() {
    use clap::Parser;
    let text =
        std::fs::read_to_string(root().join("config/simulators/sim-inference.yaml")).expect("read");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv = vec!["benchrun".to_string()];
    for a in container["args"].as_array().expect("args") {
        argv.push(a.as_str().expect("string arg").to_string());
    }
    let cli = benchrun::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(matches!(cli.command, benchrun::cli::Command::Sim(_)));
    let gpus = &container["resources"]["limits"]["nvidia.com/gpu"];
    assert_eq!(gpus, 1, "the GPU simulator labels GPUs that pods request");
}
