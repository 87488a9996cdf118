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
