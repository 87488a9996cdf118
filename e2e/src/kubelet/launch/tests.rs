use super::*;
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec,
    SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn images() -> Images {
    Images(BTreeMap::from([
        ("benchrun".to_string(), PathBuf::from("/opt/benchrun")),
        ("llm-d-inference-sim".to_string(), PathBuf::from("/opt/sim")),
    ]))
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn images_match_on_the_last_repository_segment() {
    let i = images();
    assert_eq!(
        i.program("ghcr.io/benchrun/benchrun:0.1.0").unwrap().0,
        "benchrun"
    );
    assert_eq!(i.program("benchrun").unwrap().0, "benchrun");
    assert_eq!(i.program("localhost:5000/benchrun").unwrap().0, "benchrun");
    assert_eq!(
        i.program("ghcr.io/llm-d/llm-d-inference-sim@sha256:abc")
            .unwrap()
            .0,
        "llm-d-inference-sim"
    );
    assert!(i.program("nginx:1.27").is_none());
    assert!(i.program("ghcr.io/benchrun/benchrun-extra:1").is_none());
}

#[test]
fn argv_uses_args_and_expands_references() {
    let c = Container {
        image: Some("ghcr.io/benchrun/benchrun:dev".into()),
        args: Some(vec![
            "sim".into(),
            "--addr=$(POD_IP):8000".into(),
            "$(UNSET)".into(),
        ]),
        ..Default::default()
    };
    let (program, words) = argv(&images(), &c, &env(&[("POD_IP", "198.18.0.4")])).unwrap();
    assert_eq!(program, PathBuf::from("/opt/benchrun"));
    assert_eq!(words, ["sim", "--addr=198.18.0.4:8000", "$(UNSET)"]);
}

#[test]
fn a_command_must_name_the_images_program() {
    let mut c = Container {
        image: Some("benchrun".into()),
        command: Some(vec!["/benchrun".into(), "controller".into()]),
        args: Some(vec!["--x".into()]),
        ..Default::default()
    };
    assert_eq!(argv(&images(), &c, &[]).unwrap().1, ["controller", "--x"]);
    c.command = Some(vec!["/bin/sh".into()]);
    assert!(
        argv(&images(), &c, &[])
            .unwrap_err()
            .contains("names another program")
    );
    c.image = Some("busybox".into());
    assert!(
        argv(&images(), &c, &[])
            .unwrap_err()
            .contains("no program for image")
    );
}

#[test]
fn expansion_follows_kubernetes_rules() {
    let e = env(&[("A", "1"), ("B", "two")]);
    assert_eq!(expand("$(A)-$(B)", &e), "1-two");
    assert_eq!(expand("$$(A)", &e), "$(A)");
    assert_eq!(expand("$(C)", &e), "$(C)");
    assert_eq!(expand("cost $5 $(A", &e), "cost $5 $(A");
    assert_eq!(expand("", &e), "");
}

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("w-0".into()),
            namespace: Some("ns".into()),
            labels: Some(BTreeMap::from([("app".to_string(), "x".to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("gpu-0".into()),
            ..Default::default()
        }),
        status: None,
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn environment_resolves_the_downward_api_and_references() {
    let p = pod();
    let facts = PodFacts {
        pod: &p,
        pod_ip: "198.18.0.9",
        host_ip: "198.19.0.1",
    };
    let mut sources = EnvSources::default();
    sources.config_maps.insert(
        "cfg".into(),
        BTreeMap::from([("MODE".into(), "fast".into())]),
    );
    sources.secrets.insert(
        "key".into(),
        BTreeMap::from([("token".into(), "s3cret".into())]),
    );
    let c = Container {
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: "cfg".into(),
                optional: None,
            }),
            prefix: Some("CFG_".into()),
            ..Default::default()
        }]),
        env: Some(vec![
            field_env("NAME", "metadata.name"),
            field_env("IP", "status.podIP"),
            field_env("NODE", "spec.nodeName"),
            field_env("APP", "metadata.labels['app']"),
            EnvVar {
                name: "URL".into(),
                value: Some("http://$(IP):80".into()),
                ..Default::default()
            },
            EnvVar {
                name: "TOKEN".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "key".into(),
                        key: "token".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };
    let got = environment(&c, &facts, &sources).unwrap();
    assert_eq!(
        got,
        env(&[
            ("CFG_MODE", "fast"),
            ("NAME", "w-0"),
            ("IP", "198.18.0.9"),
            ("NODE", "gpu-0"),
            ("APP", "x"),
            ("URL", "http://198.18.0.9:80"),
            ("TOKEN", "s3cret"),
        ])
    );
}

#[test]
fn missing_references_fail_unless_optional() {
    let p = pod();
    let facts = PodFacts {
        pod: &p,
        pod_ip: "1.2.3.4",
        host_ip: "",
    };
    let reference = |optional| Container {
        env: Some(vec![EnvVar {
            name: "TOKEN".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "gone".into(),
                    key: "k".into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let err = environment(&reference(None), &facts, &EnvSources::default()).unwrap_err();
    assert!(err.contains("Secret \"gone\""), "{err}");
    assert!(
        environment(&reference(Some(true)), &facts, &EnvSources::default())
            .unwrap()
            .is_empty()
    );
    let bad = Container {
        env: Some(vec![field_env("X", "spec.nope")]),
        ..Default::default()
    };
    assert!(
        environment(&bad, &facts, &EnvSources::default())
            .unwrap_err()
            .contains("spec.nope")
    );
}

#[test]
fn env_paths_under_a_config_map_mount_point_at_its_files() {
    let c: Container = serde_json::from_value(serde_json::json!({
        "name": "c",
        "volumeMounts": [{"name": "plan", "mountPath": "/var/run/benchrun/plan"}]
    }))
    .unwrap();
    let mounts = BTreeMap::from([("plan".to_string(), PathBuf::from("/tmp/pod-1/volumes/plan"))]);
    let mut env = vec![
        (
            "BENCHRUN_PLAN_FILE".to_string(),
            "/var/run/benchrun/plan/plan.json".to_string(),
        ),
        ("OTHER".to_string(), "/var/run/benchrun/planned".to_string()),
        ("DIR".to_string(), "/var/run/benchrun/plan".to_string()),
    ];
    relocate(&c, &mounts, &mut env);
    assert_eq!(env[0].1, "/tmp/pod-1/volumes/plan/plan.json");
    assert_eq!(
        env[1].1, "/var/run/benchrun/planned",
        "a prefix of a name is not a path under it"
    );
    assert_eq!(env[2].1, "/tmp/pod-1/volumes/plan");
}
