//! The hostile-spec suite, offline: every manifest under `tests/hostile/` gets
//! its expected outcome from `benchrun validate` (the rules admission applies,
//! then the default install's policy). The same manifests run against the real
//! control plane in the end-to-end suite.

#[path = "hostile/expect.rs"]
mod expect;

use std::path::{Path, PathBuf};
use std::process::Command;

use expect::{Expect, cases};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

fn validate(file: &Path, policy: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_benchrun"))
        .arg("validate")
        .arg(file)
        .args(["--namespace", "tenant-a"])
        .args(policy)
        .output()
        .expect("benchrun runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn every_hostile_manifest_gets_its_outcome_offline() {
    let cases = cases(&dir());
    assert!(cases.len() >= 30, "{} manifests", cases.len());
    for case in &cases {
        let (code, out) = validate(&case.file, &[]);
        let name = &case.name;
        assert!(!out.contains("panicked"), "{name}: {out}");
        let must_say = |text: &str| {
            assert!(out.contains(text), "{name}: expected {text:?} in {out:?}");
        };
        match &case.expect {
            // What it rests on is on the cluster only.
            Expect::Failed { .. } | Expect::TelemetryRefused(_) if !case.setup.is_empty() => {
                assert_eq!(code, Some(0), "{name}: {out}");
                must_say(&format!("{name}: valid"));
            }
            Expect::Rejected(text) => {
                assert_eq!(code, Some(1), "{name}: {out}");
                assert!(out.contains("invalid spec"), "{name}: {out}");
                must_say(text);
            }
            // The cluster's objects cannot be seen offline: the spec is valid.
            Expect::Failed { reason, .. }
                if reason == "ResultsConflict" || reason == "NameConflict" =>
            {
                assert_eq!(code, Some(0), "{name}: {out}");
                must_say(&format!("{name}: valid"));
            }
            Expect::Failed { reason, message } if reason == "InvalidSpec" => {
                assert_eq!(code, Some(1), "{name}: {out}");
                assert!(out.contains("invalid spec"), "{name}: {out}");
                must_say(message.as_deref().unwrap_or_default());
            }
            Expect::Failed { message, .. } => {
                assert_eq!(code, Some(1), "{name}: {out}");
                must_say("this install's policy refuses");
                must_say(message.as_deref().unwrap_or_default());
            }
            Expect::TelemetryRefused(text) => {
                assert_eq!(code, Some(1), "{name}: {out}");
                must_say("this install's policy refuses");
                must_say(text);
            }
        }
        if let Some(secret) = &case.never_shown {
            assert!(
                !out.contains(secret.as_str()),
                "{name} shows its secret: {out}"
            );
        }
    }
}

/// The policy flags are the controller's: what an installer allows passes.
#[test]
fn an_installer_policy_that_allows_it_lets_it_through() {
    let file = |name: &str| dir().join(name);
    let (code, out) = validate(&file("h35-cloud-metadata.yaml"), &[]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out) = validate(
        &file("h35-cloud-metadata.yaml"),
        &["--telemetry-allowed-host", "169.254.169.254"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("h35-cloud-metadata: valid"), "{out}");
    let (code, out) = validate(
        &file("h27-foreign-image.yaml"),
        &["--loadgen-allowed-image", "evil.example/*"],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = validate(
        &file("h45-operator-metrics-port.yaml"),
        &["--telemetry-discovered-port", "8000,8081"],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = validate(
        &file("h46-federate-on-a-discovered-pod.yaml"),
        &["--telemetry-discovered-path", "/metrics,/federate"],
    );
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = validate(
        &file("h45-operator-metrics-port.yaml"),
        &["--telemetry-discovered-port", "80-"],
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--telemetry-discovered-port"), "{out}");
    let (code, out) = validate(
        &file("h33-cross-namespace-server.yaml"),
        &["--telemetry-namespace", "kube-system"],
    );
    assert_eq!(code, Some(0), "{out}");
}
