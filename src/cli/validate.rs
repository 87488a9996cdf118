//! `benchrun validate`: BenchmarkRun manifests checked offline, first with the
//! rules admission applies (schema, CEL, unknown fields), then with what an
//! install's policy would refuse once the run is admitted (telemetry
//! namespaces and URLs, load-generator images and service accounts). The
//! policy flags are the controller's, so a platform team can check a tenant's
//! manifest against its own install before it is applied.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::BenchmarkRun;
use crate::controller::build::BuildSettings;
use crate::discovery::policy::Policy;

/// Options of `benchrun validate`.
#[derive(clap::Args, Debug, Clone)]
pub struct ValidateOpts {
    /// YAML files; documents of other kinds are skipped.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The namespace of runs whose manifest names none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The operator's namespace (open to every run's discovery).
    #[arg(long, default_value = "benchrun-system")]
    pub operator_namespace: String,
    /// Namespaces every run may discover in, as the controller's flag; list
    /// here too the namespaces labelled benchrun.dev/telemetry=readable
    /// (labels cannot be seen offline).
    #[arg(long = "telemetry-namespace", value_delimiter = ',')]
    pub telemetry_namespaces: Vec<String>,
    /// Hosts, IPs or CIDRs explicit telemetry URLs may point at, as the controller's flag.
    #[arg(long = "telemetry-allowed-host", value_delimiter = ',')]
    pub telemetry_allowed_hosts: Vec<String>,
    #[command(flatten)]
    pub discovered: crate::discovery::policy::DiscoveredFlags,
    /// The load generators' default image, as the controller's flag.
    #[arg(long, default_value = crate::controller::DEFAULT_IMAGE)]
    pub loadgen_image: String,
    /// Images a run may name, as the controller's flag.
    #[arg(long = "loadgen-allowed-image", value_delimiter = ',')]
    pub loadgen_allowed_images: Vec<String>,
    /// Service accounts a run may name, as the controller's flag.
    #[arg(long = "loadgen-allowed-service-account", value_delimiter = ',')]
    pub loadgen_allowed_service_accounts: Vec<String>,
}

/// One run's verdict.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Admission would take it and the policy refuses nothing.
    Valid,
    /// Admission (or the controller's own check) refuses it.
    Invalid(String),
    /// Admitted, then refused in part or whole by the install's policy.
    Refused(Vec<String>),
}

impl ValidateOpts {
    fn policy(&self) -> Result<(Policy, BuildSettings), String> {
        let mut policy = Policy::from_flags(
            &self.operator_namespace,
            &self.telemetry_namespaces,
            &self.telemetry_allowed_hosts,
            Vec::new(),
        )?;
        policy.discovered = self.discovered.rules()?;
        let pods = BuildSettings {
            loadgen_image: self.loadgen_image.clone(),
            worker_key: None,
            allowed_images: self.loadgen_allowed_images.clone(),
            allowed_service_accounts: self.loadgen_allowed_service_accounts.clone(),
            network_policy: None,
        };
        Ok((policy, pods))
    }
}

/// The verdict on one BenchmarkRun document.
pub fn verdict(doc: &serde_json::Value, policy: &Policy, pods: &BuildSettings) -> Verdict {
    let run: BenchmarkRun = match crate::api::validate_json(doc) {
        Ok(run) => run,
        Err(e) => return Verdict::Invalid(e.to_string()),
    };
    let own = doc["metadata"]["namespace"].as_str().unwrap_or("default");
    let mut refused = crate::discovery::refusals(policy, own, &BTreeSet::new(), &run.spec);
    refused.extend(pods.refuses(&run));
    if refused.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Refused(refused)
    }
}

/// Checks every BenchmarkRun document in the files; exit 1 if any is invalid
/// or refused.
pub fn main(opts: &ValidateOpts) -> ExitCode {
    let (policy, pods) = match opts.policy() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("benchrun validate: {e}");
            return ExitCode::from(2);
        }
    };
    let mut ok = true;
    for file in &opts.files {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ok = false;
                continue;
            }
        };
        let docs: Vec<serde_json::Value> = match serde_saphyr::from_multiple(&text) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: not YAML: {e}", file.display());
                ok = false;
                continue;
            }
        };
        for mut doc in docs.into_iter().filter(|d| d["kind"] == "BenchmarkRun") {
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or("<unnamed>")
                .to_string();
            if doc["metadata"]["namespace"].is_null() {
                doc["metadata"]["namespace"] = opts.namespace.clone().into();
            }
            let line = match verdict(&doc, &policy, &pods) {
                Verdict::Valid => "valid".to_string(),
                Verdict::Invalid(e) => {
                    ok = false;
                    e
                }
                Verdict::Refused(why) => {
                    ok = false;
                    format!(
                        "valid, but this install's policy refuses: {}",
                        why.join("; ")
                    )
                }
            };
            crate::outln!("{}: {name}: {line}", file.display());
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
