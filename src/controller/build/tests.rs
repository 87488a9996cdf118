use super::*;
use crate::loadgen::plan::{InputPlan, StopCondition};

const RUN: &str = r#"
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: llama-sweep, namespace: llm, uid: 1f0e2d3c-0000-4000-8000-000000000001}
spec:
  target:
    serviceRef: {name: vllm, port: 8000}
    model: meta-llama/Llama-3.1-8B-Instruct
    apiKeySecretRef: {name: vllm-key, key: token}
    headers: {X-Tenant: bench}
    headersFrom:
    - {name: X-Gateway-Key, secretKeyRef: {name: gateway, key: key}}
    - {name: Cookie, secretKeyRef: {name: gateway, key: session}}
  load:
    workers: 2
    requestCount: 500
    warmupRequestCount: 20
    sweep: {concurrency: [4, 16, 64]}
    extraInputs: {ignore_eos: true, min_tokens: 128}
    randomSeed: 7
    input:
      synthetic: {inputTokens: {mean: 1000, stddev: 100}, outputTokens: {mean: 200}}
    podTemplate:
      nodeSelector: {pool: cpu}
      tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
  timeout: 30m
"#;

fn run() -> BenchmarkRun {
    crate::api::validate_json(&serde_saphyr::from_str(RUN).unwrap()).expect("valid sample")
}

fn settings() -> BuildSettings {
    BuildSettings {
        loadgen_image: "ghcr.io/benchrun/benchrun:test".into(),
        worker_key: Some(crate::controller::worker_auth::WorkerKey::new(&[9u8; 32])),
        allowed_images: vec!["registry.corp/benchrun/*".into(), "ghcr.io/x/y:1".into()],
        allowed_service_accounts: vec!["bench".into()],
        network_policy: None,
    }
}

#[test]
fn plan_carries_the_spec() {
    let p = plan(&run(), vec!["http://10.0.0.1:8000".into()]);
    assert_eq!(p.urls, ["http://10.0.0.1:8000"]);
    assert_eq!(p.workers, 2);
    let steps: Vec<_> = p.steps.iter().map(|s| s.concurrency).collect();
    assert_eq!(steps, [Some(4), Some(16), Some(64)]);
    assert_eq!(p.stop, StopCondition::Requests(500));
    assert_eq!(p.warmup_requests, 20);
    assert!(p.api_key_from_env);
    assert_eq!(p.seed, 7);
    assert_eq!(p.extra_body["min_tokens"], 128);
    assert_eq!(
        p.input,
        InputPlan::Synthetic {
            input_mean: 1000,
            input_stddev: 100,
            output_mean: 200,
            output_stddev: 0
        }
    );
}

#[test]
fn job_is_an_owned_indexed_job_of_restricted_workers() {
    let r = run();
    let p = plan(&r, vec!["http://10.0.0.1:8000".into()]);
    let job = job(&r, &settings(), false);

    assert_eq!(job.metadata.name.as_deref(), Some("llama-sweep-loadgen"));
    assert_eq!(job.metadata.namespace.as_deref(), Some("llm"));
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("BenchmarkRun", "llama-sweep")
    );
    assert_eq!(owner.controller, Some(true));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["benchrun.dev/run"], "llama-sweep");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "benchrun");

    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.completions, spec.parallelism), (Some(2), Some(2)));
    // No index retried; a failed one leaves the others running.
    assert_eq!(
        (spec.backoff_limit, spec.backoff_limit_per_index),
        (None, Some(0))
    );
    assert_eq!(spec.max_failed_indexes, None);
    assert_eq!(spec.suspend, Some(false));
    // 30 min, then the controller's stop grace and a margin: a backstop.
    assert_eq!(spec.active_deadline_seconds, Some(1800 + 20 + 30));

    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    // A stopping worker's result outlives a controller handover.
    assert_eq!(pod.termination_grace_period_seconds, Some(60));
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "cpu");
    assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );

    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("ghcr.io/benchrun/benchrun:test"));
    assert_eq!(
        c.args.as_deref(),
        Some(
            &[
                "loadgen".to_string(),
                "--worker".to_string(),
                "--wait-for-start".to_string()
            ][..]
        )
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );

    let env = c.env.as_ref().unwrap();
    // The plan is a file from the run's own ConfigMap, not an environment
    // variable (which the kernel caps at 128 KiB).
    assert!(env.iter().all(|e| e.name != lp::PLAN_ENV));
    let file = env
        .iter()
        .find(|e| e.name == lp::PLAN_FILE_ENV)
        .and_then(|e| e.value.clone())
        .unwrap();
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| file.starts_with(&format!("{}/", m.mount_path)))
        .expect("the plan's file is on a mount");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let source = volume.config_map.as_ref().unwrap();
    assert_eq!(source.name, "llama-sweep-plan");
    let item = &source.items.as_ref().unwrap()[0];
    assert_eq!(format!("{}/{}", mount.mount_path, item.path), file);
    let cm = plan_config_map(&r, &p).unwrap();
    assert_eq!(cm.metadata.name.as_deref(), Some("llama-sweep-plan"));
    assert_eq!(
        cm.metadata.owner_references.as_ref().unwrap()[0].uid,
        r.metadata.uid.clone().unwrap()
    );
    let plan_json = &cm.data.as_ref().unwrap()[&item.key];
    assert_eq!(
        LoadPlan::from_json(plan_json).unwrap(),
        p,
        "the plan round-trips through the ConfigMap"
    );
    // The target's API key from its Secret.
    let from_secret = |var: &str| {
        let e = env.iter().find(|e| e.name == var).unwrap();
        let r = e
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        (r.name.clone(), r.key.clone())
    };
    assert_eq!(
        from_secret(lp::API_KEY_ENV),
        ("vllm-key".into(), "token".into())
    );
    // The worker API's token, the run's own, written into the Job: no
    // Secret is made for it.
    let token = env
        .iter()
        .find(|e| e.name == crate::contract::WORKER_TOKEN_ENV)
        .unwrap();
    assert_eq!(
        token.value.as_deref(),
        Some(
            crate::controller::worker_auth::WorkerKey::new(&[9u8; 32])
                .token("1f0e2d3c-0000-4000-8000-000000000001")
                .as_str()
        )
    );
    assert_eq!(token.value_from, None);
    assert!(
        pod.volumes.iter().flatten().all(|v| v.secret.is_none()),
        "no Secret is mounted"
    );
    // Headers from Secrets: the kubelet fills the variables; the plan names
    // only the variables, and no value is anywhere in the Job or the plan.
    let header_vars = &p.headers_from_env;
    assert_eq!(header_vars.len(), 2);
    assert_eq!(
        from_secret(&header_vars["X-Gateway-Key"]),
        ("gateway".into(), "key".into())
    );
    assert_eq!(
        from_secret(&header_vars["Cookie"]),
        ("gateway".into(), "session".into())
    );
    assert!(!p.headers.contains_key("Cookie"));
    assert!(env.iter().any(|e| e.name == "POD_IP"));
}

#[test]
fn overrides_and_datasets_reach_the_pod() {
    let mut r = run();
    let lp_ = r
        .spec
        .load
        .pod_template
        .get_or_insert_with(Default::default);
    lp_.image = Some("registry.local/benchrun:dev".into());
    r.spec.load.input = crate::api::Input {
        synthetic: None,
        dataset: Some(crate::api::Dataset {
            config_map_ref: crate::api::ConfigMapKeyRef {
                name: "prompts".into(),
                key: "sharegpt.jsonl".into(),
            },
        }),
    };
    let p = plan(&r, vec![]);
    assert_eq!(
        p.input,
        InputPlan::Dataset {
            path: format!("{DATASET_DIR}/dataset.jsonl")
        }
    );
    let job = job(&r, &settings(), true);
    let spec = job.spec.unwrap();
    assert_eq!(spec.suspend, Some(true));
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.local/benchrun:dev")
    );
    // The dataset's volume beside the plan's.
    let (cm, at) = config_map_mount(&pod, "dataset");
    assert_eq!(cm.name, "prompts");
    assert_eq!(cm.optional, None);
    assert_eq!(at, DATASET_DIR);
}

/// The pod spec of the run's workers.
fn pod_spec(r: &BenchmarkRun) -> k8s_openapi::api::core::v1::PodSpec {
    job(r, &settings(), true)
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
}

/// The pod's ConfigMap volume `name`, and where its container mounts it.
fn config_map_mount<'a>(
    pod: &'a k8s_openapi::api::core::v1::PodSpec,
    name: &str,
) -> (
    &'a k8s_openapi::api::core::v1::ConfigMapVolumeSource,
    &'a str,
) {
    let vol = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"));
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no mount of {name}"));
    (vol.config_map.as_ref().unwrap(), &mount.mount_path)
}

/// Tokenizer files from a ConfigMap are mounted whole (its keys are the
/// files' names) and the plan reads them there, naming the ConfigMap; from
/// a URL, nothing is mounted and the plan names the URL, its credentials
/// redacted.
#[test]
fn tokenizer_files_reach_the_worker() {
    use crate::loadgen::plan::{FilesAt, TOKENIZER_DIR_ENV};
    let mut r = run();
    r.spec.load.input = crate::api::Input {
        synthetic: Some(crate::api::Synthetic {
            tokenizer: crate::api::PromptTokenizer::Files,
            tokenizer_files: Some(crate::api::TokenizerFiles {
                config_map_ref: Some(crate::api::LocalObjectName {
                    name: "llama-tok".into(),
                }),
                url: None,
            }),
            ..Default::default()
        }),
        dataset: None,
    };
    let p = plan(&r, vec![]);
    assert_eq!(p.tokenizer, crate::loadgen::plan::Tokenizer::Files);
    let files = p.tokenizer_files.unwrap();
    assert_eq!(files.at, FilesAt::Env(TOKENIZER_DIR_ENV.into()));
    assert_eq!(files.origin, "ConfigMap llama-tok");
    let pod = pod_spec(&r);
    let env = pod.containers[0].env.as_ref().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == TOKENIZER_DIR_ENV && e.value.as_deref() == Some(TOKENIZER_DIR)),
        "the worker finds the folder through its environment, as it finds its plan"
    );
    let (cm, at) = config_map_mount(&pod, "tokenizer");
    assert_eq!(cm.name, "llama-tok");
    assert!(cm.items.is_none(), "every key, under its own name");
    assert_eq!(
        cm.optional,
        Some(true),
        "a missing ConfigMap is the worker's to report, not a pod stuck creating"
    );
    assert_eq!(at, TOKENIZER_DIR);

    let url = "https://user:secret@models.internal/llama/";
    if let Some(s) = r.spec.load.input.synthetic.as_mut() {
        s.tokenizer = crate::api::PromptTokenizer::Auto;
        s.tokenizer_files = Some(crate::api::TokenizerFiles {
            config_map_ref: None,
            url: Some(url.into()),
        });
    }
    let files = plan(&r, vec![]).tokenizer_files.unwrap();
    assert_eq!(files.at, FilesAt::Url(url.into()));
    assert!(!files.origin.contains("secret"), "{}", files.origin);
    let pod = pod_spec(&r);
    assert!(
        pod.volumes.unwrap().iter().all(|v| v.name != "tokenizer"),
        "nothing to mount"
    );
}

#[test]
fn rate_mode_steps_carry_rates_and_the_cap() {
    let mut r = run();
    r.spec.load.mode = crate::api::LoadMode::Rate;
    r.spec.load.sweep = None;
    r.spec.load.request_rate = Some(12.5);
    r.spec.load.concurrency = Some(256);
    let p = plan(&r, vec![]);
    assert_eq!(
        p.steps,
        vec![lp::Step {
            concurrency: Some(256),
            rate: Some(12.5)
        }]
    );
}

#[test]
fn workers_wait_for_their_start_through_the_idle_baseline() {
    let mut r = run();
    let args = |r: &BenchmarkRun| {
        let job = job(r, &settings(), false);
        job.spec.unwrap().template.spec.unwrap().containers[0]
            .args
            .clone()
            .unwrap()
    };
    assert_eq!(args(&r), ["loadgen", "--worker", "--wait-for-start"]);
    r.spec.telemetry.idle_baseline = Some(std::time::Duration::from_secs(300).into());
    let with_idle = args(&r);
    assert_eq!(&with_idle[3..], ["--start-timeout", "975s"]);
    // A value the worker's flag reads.
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(
        ["benchrun"]
            .into_iter()
            .chain(with_idle.iter().map(String::as_str)),
    );
    assert!(cli.is_ok(), "{:?}", cli.err());
}

#[test]
fn trials_repeat_the_sweep_after_a_cool_down() {
    let mut r = run();
    r.spec.load.sweep = Some(crate::api::Sweep {
        concurrency: vec![2, 4],
        request_rate: Vec::new(),
    });
    r.spec.repeat = Some(crate::api::Repeat {
        count: 3,
        cool_down: std::time::Duration::from_secs(30).into(),
    });
    let p = plan(&r, vec![]);
    assert_eq!(p.steps.len(), 2, "one trial's steps");
    assert_eq!(
        p.repeat,
        Some(lp::RepeatPlan {
            trials: 3,
            cool_down_ms: 30_000
        })
    );
    // Six measured steps; a pause before trials 2 and 3 only.
    let measured: Vec<(Option<u32>, u64)> = p
        .measured_steps()
        .map(|(s, pause)| (s.concurrency, pause))
        .collect();
    assert_eq!(
        measured,
        [
            (Some(2), 0),
            (Some(4), 0),
            (Some(2), 30_000),
            (Some(4), 0),
            (Some(2), 30_000),
            (Some(4), 0)
        ]
    );
    // Without trials, the steps once.
    r.spec.repeat = None;
    assert_eq!(plan(&r, vec![]).measured_steps().count(), 2);
}

#[test]
fn results_config_maps_are_owned_and_named_after_the_run() {
    let r = run();
    // Numbers that do not compress much, as a big CSV's would not fit either.
    let noise = |seed: u64| {
        let mut x = seed;
        (0..3000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                format!("{},", x >> 40)
            })
            .collect::<String>()
    };
    let files = BTreeMap::from([
        ("summary.json".to_string(), noise(1)),
        ("gpu_telemetry.csv".to_string(), noise(2)),
    ]);
    let one = results_config_maps(&r, crate::results::pack(files.clone(), 1 << 20), 1);
    assert_eq!(one.len(), 1);
    let cm = &one[0];
    assert_eq!(cm.metadata.name.as_deref(), Some("llama-sweep-results"));
    assert_eq!(
        cm.metadata.owner_references.as_ref().unwrap()[0].name,
        "llama-sweep"
    );
    assert_eq!(
        cm.metadata.labels.as_ref().unwrap()["app.kubernetes.io/component"],
        "results"
    );
    assert!(cm.binary_data.is_none());
    // Split: numbered parts, every one owned by the run, the index in the first.
    let parts = results_config_maps(&r, crate::results::pack(files, 20_000), 1);
    let names: Vec<_> = parts
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names[0], "llama-sweep-results");
    assert!(
        names.len() >= 2 && names[1] == "llama-sweep-results-1",
        "{names:?}"
    );
    assert!(parts[0].data.as_ref().unwrap().contains_key("index.json"));
    assert!(parts.iter().all(|c| c.metadata.owner_references.is_some()));
}

#[test]
fn results_are_never_replaced_by_fewer_results() {
    let r = run();
    let files = BTreeMap::from([("summary.json".to_string(), "{}".to_string())]);
    let written =
        |steps| results_config_maps(&r, crate::results::pack(files.clone(), 1 << 20), steps);
    let three = written(3).remove(0);
    assert_eq!(
        three.metadata.annotations.as_ref().unwrap()[CLIENT_STEPS],
        "3"
    );
    // A write without client results (a stale decision, a lost session) keeps them.
    assert!(keep_existing_results(Some(&three), 0));
    assert!(keep_existing_results(Some(&three), 2));
    // As many or more results replace them; nothing written yet is no reason to wait.
    assert!(!keep_existing_results(Some(&three), 3));
    assert!(!keep_existing_results(Some(&three), 4));
    assert!(!keep_existing_results(None, 0));
    // A ConfigMap without the annotation (written by an older release) holds no count.
    let mut old = three.clone();
    old.metadata.annotations = None;
    assert!(!keep_existing_results(Some(&old), 0));
}

#[test]
fn goodput_bounds_come_from_latency_objectives() {
    let slo: Vec<api::Slo> = serde_json::from_value(serde_json::json!([
        {"metric": "ttftP99Ms", "max": 500.0},
        {"metric": "ttftP50Ms", "max": 200.0},
        {"metric": "itlP99Ms", "max": 40.0},
        {"metric": "requestThroughput", "min": 5.0},
    ]))
    .unwrap();
    let g = goodput(&slo).unwrap();
    assert_eq!(
        (g.ttft_ms, g.itl_ms, g.latency_ms),
        (Some(200.0), Some(40.0), None)
    );
    assert_eq!(goodput(&[]), None);
}

#[test]
fn pod_overrides_are_held_to_the_installers_images_and_service_accounts() {
    let with = |image: Option<&str>, sa: Option<&str>| {
        let mut r = run();
        let t = r
            .spec
            .load
            .pod_template
            .get_or_insert_with(Default::default);
        t.image = image.map(str::to_string);
        t.service_account_name = sa.map(str::to_string);
        settings().refuses(&r)
    };
    // The operator's own image, an allowed prefix, an allowed reference, an allowed account.
    assert_eq!(with(Some("ghcr.io/benchrun/benchrun:test"), None), None);
    assert_eq!(with(Some("registry.corp/benchrun/loadgen:2"), None), None);
    assert_eq!(with(Some("ghcr.io/x/y:1"), Some("bench")), None);
    assert_eq!(with(None, None), None);
    let mut r = run();
    r.spec.load.pod_template = None;
    assert_eq!(settings().refuses(&r), None);
    // Anything else is refused, and the message says what would do.
    let msg = with(Some("docker.io/evil/miner:latest"), None).unwrap();
    assert!(
        msg.contains("\"docker.io/evil/miner:latest\"") && msg.contains("loadgen.allowedImages"),
        "{msg}"
    );
    assert!(
        with(Some("ghcr.io/x/y:2"), None).is_some(),
        "a whole reference is not a prefix"
    );
    assert!(with(Some("registry.corp/benchrun"), None).is_some());
    let msg = with(None, Some("cluster-admin-sa")).unwrap();
    assert!(
        msg.contains("cluster-admin-sa") && msg.contains("[\"bench\"]"),
        "{msg}"
    );
    let none = BuildSettings {
        allowed_service_accounts: Vec::new(),
        ..settings()
    };
    let mut r = run();
    r.spec
        .load
        .pod_template
        .get_or_insert_with(Default::default)
        .service_account_name = Some("default".into());
    assert!(none.refuses(&r).unwrap().contains("(none)"));
}

#[test]
fn workers_get_a_network_policy_for_the_controller_only_when_asked() {
    let r = run();
    assert!(network_policy(&r, &settings()).is_none());
    let on = BuildSettings {
        network_policy: Some("benchrun-system".into()),
        ..settings()
    };
    let np = network_policy(&r, &on).unwrap();
    assert_eq!(np.metadata.name, Some(names::job_name(&r)));
    assert_eq!(
        np.metadata.owner_references.as_ref().unwrap()[0].uid,
        r.metadata.uid.clone().unwrap()
    );
    let spec = np.spec.unwrap();
    // It selects exactly this run's worker pods, as the Job labels them.
    let selected = spec.pod_selector.unwrap().match_labels.unwrap();
    let job = job(&r, &on, false);
    let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert!(!selected.is_empty());
    for (k, v) in &selected {
        assert_eq!(pod_labels.get(k), Some(v), "{k}");
    }
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    let rule = &spec.ingress.unwrap()[0];
    let from = &rule.from.as_ref().unwrap()[0];
    assert_eq!(
        from.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["kubernetes.io/metadata.name"],
        "benchrun-system"
    );
    assert_eq!(
        from.pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app.kubernetes.io/component"],
        "controller"
    );
    assert_eq!(
        rule.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(i32::from(crate::contract::WORKER_PORT)))
    );
}

/// `target.tls`: the CA and the client certificate reach the workers through
/// variables the kubelet fills from the run's Secret or ConfigMap; the plan
/// names only the variables, and no PEM is in the Job or the plan.
#[test]
fn target_tls_reaches_the_workers_as_variables_from_the_runs_objects() {
    let with = |tls: serde_json::Value| {
        let mut v: serde_json::Value = serde_saphyr::from_str(RUN).unwrap();
        v["spec"]["target"] = serde_json::json!({
            "url": "https://gateway.llm.svc:443", "model": "m", "tls": tls,
        });
        crate::api::validate_json(&v).expect("valid")
    };
    let env_of = |r: &BenchmarkRun| {
        let job = job(r, &settings(), true);
        job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap()
    };
    let r = with(serde_json::json!({
        "caRef": {"secretKeyRef": {"name": "gateway-ca", "key": "ca.crt"}},
        "clientCertificateSecretName": "loadgen-cert",
    }));
    let p = plan(&r, vec!["https://gateway.llm.svc:443".into()]);
    let env = |v: &str| Some(lp::PemSource::Env(v.into()));
    assert_eq!(p.tls.ca, env(lp::TLS_CA_ENV));
    assert_eq!(p.tls.client_cert, env(lp::TLS_CERT_ENV));
    assert_eq!(p.tls.client_key, env(lp::TLS_KEY_ENV));
    assert!(!p.tls.insecure_skip_verify);
    let env = env_of(&r);
    let secret = |var: &str| {
        let r = env
            .iter()
            .find(|e| e.name == var)
            .and_then(|e| e.value_from.as_ref()?.secret_key_ref.clone())
            .unwrap_or_else(|| panic!("{var} from a Secret"));
        (r.name, r.key)
    };
    assert_eq!(
        secret(lp::TLS_CA_ENV),
        ("gateway-ca".into(), "ca.crt".into())
    );
    assert_eq!(
        secret(lp::TLS_CERT_ENV),
        ("loadgen-cert".into(), "tls.crt".into())
    );
    assert_eq!(
        secret(lp::TLS_KEY_ENV),
        ("loadgen-cert".into(), "tls.key".into())
    );

    let r = with(serde_json::json!({
        "caRef": {"configMapKeyRef": {"name": "kube-root-ca.crt", "key": "ca.crt"}},
    }));
    let env = env_of(&r);
    let ca = env.iter().find(|e| e.name == lp::TLS_CA_ENV).unwrap();
    let cm = ca
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (cm.name.as_str(), cm.key.as_str()),
        ("kube-root-ca.crt", "ca.crt")
    );
    assert!(!env.iter().any(|e| e.name == lp::TLS_CERT_ENV));

    assert_eq!(tls_note(&r), None, "verified: nothing to say");
    let r = with(serde_json::json!({"insecureSkipVerify": true}));
    let p = plan(&r, vec![]);
    assert!(p.tls.insecure_skip_verify && p.tls.ca.is_none());
    assert!(tls_note(&r).unwrap().contains("not verified"));
    assert!(
        !env_of(&r)
            .iter()
            .any(|e| e.name.starts_with("BENCHRUN_TLS_"))
    );
}

/// `target.path` reaches the workers' plan; without it the plan has none
/// (the endpoint's OpenAI path).
#[test]
fn a_gateway_path_reaches_the_plan() {
    let mut v: serde_json::Value = serde_saphyr::from_str(RUN).unwrap();
    v["spec"]["target"]["path"] = serde_json::json!("/openai/deployments/llama/chat/completions");
    let r = crate::api::validate_json(&v).expect("valid");
    let p = plan(&r, vec!["http://gw".into()]);
    assert_eq!(
        p.request_path(),
        "/openai/deployments/llama/chat/completions"
    );
    let plain: BenchmarkRun = serde_saphyr::from_str(RUN).unwrap();
    assert_eq!(plan(&plain, vec![]).path, None);
}

/// Requests to an https `serviceRef` go to its pods by address: the
/// certificate is verified against the Service's DNS name, unless the spec
/// names another; a URL target's own host is kept.
#[test]
fn an_https_service_is_verified_against_its_dns_name() {
    let with = |target: serde_json::Value| {
        let mut v: serde_json::Value = serde_saphyr::from_str(RUN).unwrap();
        v["spec"]["target"] = target;
        crate::api::validate_json(&v).expect("valid")
    };
    let service = |tls: serde_json::Value| {
        with(serde_json::json!({
            "serviceRef": {"name": "vllm", "port": 8443, "scheme": "https"}, "model": "m", "tls": tls,
        }))
    };
    let name = |r: &BenchmarkRun| plan(r, vec![]).tls.server_name;
    assert_eq!(
        name(&service(serde_json::json!({}))).as_deref(),
        Some("vllm.llm.svc")
    );
    assert_eq!(
        name(&service(
            serde_json::json!({"serverName": "vllm.example.com"})
        ))
        .as_deref(),
        Some("vllm.example.com")
    );
    let plain =
        with(serde_json::json!({"serviceRef": {"name": "vllm", "port": 8000}, "model": "m"}));
    assert_eq!(name(&plain), None);
    let url = with(serde_json::json!({"url": "https://gw.example.com", "model": "m"}));
    assert_eq!(name(&url), None, "the URL's host is verified");
}
