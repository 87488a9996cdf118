use serde_json::{Value, json};

use super::*;
use crate::api::rules as r;

const VALID: &str = r#"
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata:
  name: llama-c64
  namespace: llm
spec:
  target:
    url: http://vllm.llm.svc:8000
    model: meta-llama/Llama-3.1-8B-Instruct
  load:
    concurrency: 64
    requestCount: 2000
"#;

fn valid() -> Value {
    serde_saphyr::from_str(VALID).expect("the valid sample parses")
}

/// RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn with(patch: Value) -> Value {
    let mut v = valid();
    merge(&mut v, &json!({ "spec": patch }));
    v
}

#[test]
fn the_valid_sample_passes_and_gets_defaults() {
    let run = validate_json(&valid()).expect("valid");
    assert_eq!(run.spec.load.workers, 1);
    assert!(run.spec.load.streaming);
    assert_eq!(run.spec.telemetry.gpu.path, "/metrics");
    assert_eq!(
        std::time::Duration::from(run.spec.telemetry.interval),
        std::time::Duration::from_secs(1)
    );
    validate(&run).expect("a typed round trip is valid too");
}

/// Each invalid spec fails, and fails with its own message naming what is wrong.
#[test]
fn invalid_specs_fail_with_their_own_message() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "one trial",
            json!({"repeat": {"count": 1}}),
            "spec.repeat.count",
        ),
        (
            "eleven trials",
            json!({"repeat": {"count": 11}}),
            "spec.repeat.count",
        ),
        (
            "a cool-down of an hour",
            json!({"repeat": {"count": 3, "coolDown": "1h"}}),
            r::COOL_DOWN_MSG,
        ),
        (
            "more trial steps than 64",
            json!({"load": {"concurrency": null, "sweep": {"concurrency": (1..=33).collect::<Vec<i32>>()}}, "repeat": {"count": 2}}),
            r::TRIAL_STEPS_MSG,
        ),
        (
            "an idle baseline too short to measure",
            json!({"telemetry": {"idleBaseline": "500ms"}}),
            r::IDLE_BASELINE_MSG,
        ),
        (
            "an idle baseline longer than ten minutes",
            json!({"telemetry": {"idleBaseline": "1h"}}),
            r::IDLE_BASELINE_MSG,
        ),
        (
            "a baseline naming a run and a ConfigMap",
            json!({"baseline": {"runRef": "a", "configMapRef": "b"}}),
            r::BASELINE_ONE_OF_MSG,
        ),
        (
            "a baseline naming nothing",
            json!({"baseline": {"tolerances": []}}),
            r::BASELINE_ONE_OF_MSG,
        ),
        (
            "a baseline in another namespace",
            json!({"baseline": {"runRef": "team-b/base"}}),
            "does not match",
        ),
        (
            "a metric given two tolerances",
            json!({"baseline": {"runRef": "base", "tolerances": [
                {"metric": "ttftP50Ms", "maxRegression": "5%"},
                {"metric": "ttftP50Ms", "maxRegression": "10%"}]}}),
            r::TOLERANCE_METRICS_UNIQUE_MSG,
        ),
        (
            "a tolerance not in percent",
            json!({"baseline": {"runRef": "base", "tolerances": [{"metric": "ttftP50Ms", "maxRegression": "0.05"}]}}),
            "does not match",
        ),
        (
            "a tolerance on an unknown metric",
            json!({"baseline": {"runRef": "base", "tolerances": [{"metric": "vibes", "maxRegression": "5%"}]}}),
            "spec.baseline.tolerances",
        ),
        (
            "no target",
            json!({"target": {"url": null}}),
            r::TARGET_ONE_OF_MSG,
        ),
        (
            "url and serviceRef",
            json!({"target": {"serviceRef": {"name": "vllm"}}}),
            r::TARGET_ONE_OF_MSG,
        ),
        (
            "ftp url",
            json!({"target": {"url": "ftp://x/"}}),
            "does not match",
        ),
        (
            "empty model",
            json!({"target": {"model": ""}}),
            "spec.target.model",
        ),
        (
            "service port and portName",
            json!({"target": {"url": null, "serviceRef": {"name": "v", "port": 8000, "portName": "http"}}}),
            r::PORT_ONE_OF_MSG,
        ),
        (
            "service port out of range",
            json!({"target": {"url": null, "serviceRef": {"name": "v", "port": 70000}}}),
            "maximum of 65535",
        ),
        (
            "conversations at a fixed rate",
            json!({"load": {"mode": "rate", "concurrency": null, "requestRate": 5.0, "conversations": {"count": 10, "turns": 3}}}),
            r::CONVERSATIONS_CLOSED_LOOP_MSG,
        ),
        (
            "a bearer token in plain headers",
            json!({"target": {"headers": {"Authorization": "Bearer sk-123"}}}),
            r::HEADERS_NO_CREDENTIALS_MSG,
        ),
        (
            "a cookie in plain headers, any case",
            json!({"target": {"headers": {"COOKIE": "session=1"}}}),
            r::HEADERS_NO_CREDENTIALS_MSG,
        ),
        (
            "an api key header",
            json!({"target": {"headers": {"x-api-key": "k"}}}),
            r::HEADERS_NO_CREDENTIALS_MSG,
        ),
        (
            "a framing header in plain headers",
            json!({"target": {"headers": {"Transfer-Encoding": "chunked"}}}),
            r::HEADERS_NO_FRAMING_MSG,
        ),
        (
            "a Host header from a Secret",
            json!({"target": {"headersFrom": [{"name": "host", "secretKeyRef": {"name": "s", "key": "k"}}]}}),
            r::HEADERS_FROM_NO_FRAMING_MSG,
        ),
        (
            "a header from a Secret named twice",
            json!({"target": {"headersFrom": [
                {"name": "X-Key", "secretKeyRef": {"name": "s", "key": "a"}},
                {"name": "X-Key", "secretKeyRef": {"name": "s", "key": "b"}}
            ]}}),
            r::HEADERS_FROM_UNIQUE_MSG,
        ),
        (
            "a header both plain and from a Secret",
            json!({"target": {"headers": {"X-Key": "a"}, "headersFrom": [{"name": "X-Key", "secretKeyRef": {"name": "s", "key": "k"}}]}}),
            r::HEADERS_FROM_NOT_TWICE_MSG,
        ),
        (
            "a pod template field the API does not have",
            json!({"load": {"podTemplate": {"securityContext": {"privileged": true}}}}),
            "unknown field \"spec.load.podTemplate.securityContext\"",
        ),
        (
            "a Secret in another namespace",
            json!({"target": {"apiKeySecretRef": {"name": "k", "key": "k", "namespace": "kube-system"}}}),
            "unknown field \"spec.target.apiKeySecretRef.namespace\"",
        ),
        (
            "a Service in another namespace, by a dotted name",
            json!({"target": {"url": null, "serviceRef": {"name": "vllm.kube-system"}}}),
            "spec.target.serviceRef.name",
        ),
        (
            "a namespace wildcard",
            json!({"telemetry": {"gpu": {"namespaces": ["*"]}}}),
            "spec.telemetry.gpu.namespaces.0",
        ),
        (
            "a header twice in different cases",
            json!({"target": {"headers": {"X-Key": "a"}, "headersFrom": [{"name": "x-key", "secretKeyRef": {"name": "s", "key": "k"}}]}}),
            "header x-key is given twice",
        ),
        (
            "two Authorization headers",
            json!({"target": {"apiKeySecretRef": {"name": "s", "key": "k"}, "headersFrom": [{"name": "Authorization", "secretKeyRef": {"name": "s", "key": "k"}}]}}),
            r::API_KEY_OR_AUTHORIZATION_MSG,
        ),
        (
            "a header name from a Secret that smuggles another",
            json!({"target": {"headersFrom": [{"name": "X-A: 1\r\nX-B", "secretKeyRef": {"name": "s", "key": "k"}}]}}),
            "spec.target.headersFrom",
        ),
        (
            "a header name that smuggles another",
            json!({"target": {"headers": {"X-A: 1\r\nX-B": "2"}}}),
            r::HEADER_NAMES_MSG,
        ),
        (
            "a header value with a line break",
            json!({"target": {"headers": {"X-Team": "a\r\nAuthorization: x"}}}),
            "spec.target.headers",
        ),
        (
            "too many extra inputs",
            json!({"load": {"extraInputs": (0..65).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}}),
            "spec.load.extraInputs",
        ),
        (
            "huge extra inputs",
            json!({"load": {"extraInputs": {"prompt_prefix": "x".repeat(20_000)}}}),
            "more than the 16384 allowed",
        ),
        (
            "no count, no duration",
            json!({"load": {"requestCount": null}}),
            r::COUNT_XOR_DURATION_MSG,
        ),
        (
            "count and duration",
            json!({"load": {"duration": "5m"}}),
            r::COUNT_XOR_DURATION_MSG,
        ),
        (
            "zero concurrency",
            json!({"load": {"concurrency": 0}}),
            "minimum of 1",
        ),
        (
            "rate without rate",
            json!({"load": {"mode": "rate", "concurrency": null}}),
            r::RATE_NEEDS_RATE_MSG,
        ),
        (
            "rate in concurrency mode",
            json!({"load": {"requestRate": 5.0}}),
            r::CONCURRENCY_MODE_NO_RATE_MSG,
        ),
        (
            "unknown mode",
            json!({"load": {"mode": "burst"}}),
            "\"burst\" is not one of",
        ),
        (
            "short duration",
            json!({"load": {"requestCount": null, "duration": "500ms"}}),
            r::DURATION_MIN_MSG,
        ),
        (
            "prose duration",
            json!({"load": {"requestCount": null, "duration": "five minutes"}}),
            "spec.load.duration",
        ),
        (
            "workers over concurrency",
            json!({"load": {"concurrency": 2, "workers": 4}}),
            r::WORKERS_LE_CONCURRENCY_MSG,
        ),
        (
            "zero workers",
            json!({"load": {"workers": 0}}),
            "spec.load.workers",
        ),
        (
            "sweep with both lists",
            json!({"load": {"sweep": {"concurrency": [1, 2], "requestRate": [1.0]}}}),
            r::SWEEP_ONE_OF_MSG,
        ),
        (
            "empty sweep",
            json!({"load": {"sweep": {}}}),
            r::SWEEP_ONE_OF_MSG,
        ),
        (
            "rate sweep in concurrency mode",
            json!({"load": {"sweep": {"requestRate": [1.0, 2.0]}}}),
            r::SWEEP_MATCHES_MODE_MSG,
        ),
        (
            "sweep step below workers",
            json!({"load": {"workers": 4, "sweep": {"concurrency": [2, 8]}}}),
            r::WORKERS_LE_CONCURRENCY_MSG,
        ),
        (
            "synthetic and dataset",
            json!({"load": {"input": {"synthetic": {}, "dataset": {"configMapRef": {"name": "d", "key": "k"}}}}}),
            r::INPUT_ONE_OF_MSG,
        ),
        (
            "zero-token prompts",
            json!({"load": {"input": {"synthetic": {"inputTokens": {"mean": 0}}}}}),
            "spec.load.input.synthetic.inputTokens.mean",
        ),
        (
            "conversations over a dataset",
            json!({"load": {"conversations": {"count": 10, "turns": 3},
                   "input": {"synthetic": null, "dataset": {"configMapRef": {"name": "d", "key": "k"}}}}}),
            r::CONVERSATIONS_SYNTHETIC_MSG,
        ),
        (
            "scrape interval 50ms",
            json!({"telemetry": {"interval": "50ms"}}),
            r::INTERVAL_MIN_MSG,
        ),
        (
            "scrape timeout 90s",
            json!({"telemetry": {"timeout": "90s"}}),
            r::SCRAPE_TIMEOUT_MSG,
        ),
        (
            "gpu port and portName",
            json!({"telemetry": {"gpu": {"port": 9400, "portName": "metrics"}}}),
            r::PORT_ONE_OF_MSG,
        ),
        (
            "unknown gpu scope",
            json!({"telemetry": {"gpu": {"scope": "everything"}}}),
            "\"everything\" is not one of",
        ),
        (
            "gpu url not a url",
            json!({"telemetry": {"gpu": {"urls": ["dcgm:9400"]}}}),
            "spec.telemetry.gpu.urls.0",
        ),
        (
            "bad include regex",
            json!({"telemetry": {"server": {"include": ["vllm:(["]}}}),
            "not a valid regular expression",
        ),
        (
            "slo with max and min",
            json!({"slo": [{"metric": "ttftP99Ms", "max": 200.0, "min": 1.0}]}),
            r::SLO_BOUND_MSG,
        ),
        (
            "slo without bound",
            json!({"slo": [{"metric": "ttftP99Ms"}]}),
            r::SLO_BOUND_MSG,
        ),
        (
            "unknown slo metric",
            json!({"slo": [{"metric": "vibes", "max": 1.0}]}),
            "\"vibes\" is not one of",
        ),
        (
            "bad results name",
            json!({"results": {"configMapName": "Results_1"}}),
            "spec.results.configMapName",
        ),
        ("zero timeout", json!({"timeout": "0s"}), r::TIMEOUT_MIN_MSG),
        (
            "negative ttl",
            json!({"ttlSecondsAfterFinished": -1}),
            "spec.ttlSecondsAfterFinished",
        ),
        (
            "tls for a plain http target",
            json!({"target": {"tls": {"insecureSkipVerify": true}}}),
            r::TLS_NEEDS_HTTPS_MSG,
        ),
        (
            "a CA and no verification",
            json!({"target": {"url": "https://gw.llm.svc", "tls": {"insecureSkipVerify": true,
                "caRef": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}}}}}),
            r::TLS_CA_OR_INSECURE_MSG,
        ),
        (
            "a CA from a Secret and a ConfigMap",
            json!({"target": {"url": "https://gw.llm.svc", "tls": {"caRef": {
                "secretKeyRef": {"name": "ca", "key": "ca.crt"},
                "configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}}}),
            r::CA_REF_ONE_OF_MSG,
        ),
        (
            "scrape auth with a bearer token and basic auth",
            json!({"telemetry": {"server": {"auth": {
                "bearerTokenSecretRef": {"name": "t", "key": "token"},
                "basicAuth": {"usernameSecretRef": {"name": "b", "key": "u"},
                              "passwordSecretRef": {"name": "b", "key": "p"}}}}}}),
            r::SCRAPE_AUTH_ONE_OF_MSG,
        ),
        (
            "scrape auth that sets nothing",
            json!({"telemetry": {"server": {"auth": {}}}}),
            r::SCRAPE_AUTH_ONE_OF_MSG,
        ),
        (
            "an exporter CA and no verification",
            json!({"telemetry": {"gpu": {"tls": {"insecureSkipVerify": true,
                "caRef": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}}}}}}),
            r::TLS_CA_OR_INSECURE_MSG,
        ),
        (
            "a scrape token Secret that is no name",
            json!({"telemetry": {"server": {"auth": {"bearerTokenSecretRef": {"name": "../x", "key": "t"}}}}}),
            "spec.telemetry.server.auth.bearerTokenSecretRef.name",
        ),
        (
            "a request path that is no path",
            json!({"target": {"path": "v1/chat completions"}}),
            "spec.target.path",
        ),
        (
            "a client certificate Secret that is no name",
            json!({"target": {"url": "https://gw.llm.svc", "tls": {"clientCertificateSecretName": "../etc"}}}),
            "spec.target.tls.clientCertificateSecretName",
        ),
        (
            "tokenizer files without the files",
            json!({"load": {"input": {"synthetic": {"tokenizer": "files"}}}}),
            r::FILES_NEED_FILES_MSG,
        ),
        (
            "tokenizer files named for the server's tokenizer",
            json!({"load": {"input": {"synthetic": {"tokenizer": "server",
                   "tokenizerFiles": {"url": "https://models.internal/llama/"}}}}}),
            r::FILES_READ_BY_MSG,
        ),
        (
            "tokenizer files in two places",
            json!({"load": {"input": {"synthetic": {"tokenizer": "files",
                   "tokenizerFiles": {"url": "https://models.internal/llama/", "configMapRef": {"name": "tok"}}}}}}),
            r::TOKENIZER_FILES_ONE_OF_MSG,
        ),
        (
            "tokenizer files at a URL that is no http(s) URL",
            json!({"load": {"input": {"synthetic": {"tokenizerFiles": {"url": "file:///etc/passwd"}}}}}),
            "spec.load.input.synthetic.tokenizerFiles.url",
        ),
        (
            "tokenizer files at a URL with credentials in it",
            json!({"load": {"input": {"synthetic": {"tokenizerFiles": {"url": "https://user:token@models.internal/llama/"}}}}}),
            "spec.load.input.synthetic.tokenizerFiles.url",
        ),
        (
            "tokenizer files in a ConfigMap that is no name",
            json!({"load": {"input": {"synthetic": {"tokenizerFiles": {"configMapRef": {"name": "../tok"}}}}}}),
            "spec.load.input.synthetic.tokenizerFiles.configMapRef.name",
        ),
    ];
    assert!(cases.len() >= 20);
    let mut seen = std::collections::HashSet::new();
    for (name, patch, expected) in cases {
        let err = match validate_json(&with(patch)) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expected),
            "{name}: expected {expected:?} in {err:?}"
        );
        seen.insert(err);
    }
    assert!(seen.len() >= 20, "messages must differ between cases");
}

#[test]
fn https_targets_take_tls_and_service_targets_need_the_https_scheme() {
    for target in [
        json!({"url": "https://gw.llm.svc", "tls": {"caRef": {"configMapKeyRef": {"name": "kube-root-ca.crt", "key": "ca.crt"}}}}),
        json!({"url": null, "serviceRef": {"name": "v", "port": 8443, "scheme": "https"},
               "tls": {"clientCertificateSecretName": "loadgen-tls"}}),
    ] {
        validate_json(&with(json!({ "target": target }))).unwrap();
    }
    let err = validate_json(&with(json!({"target": {"url": null,
        "serviceRef": {"name": "v", "port": 8000}, "tls": {"insecureSkipVerify": true}}})))
    .unwrap_err();
    assert!(err.to_string().contains(r::TLS_NEEDS_HTTPS_MSG), "{err}");
}

/// A discovery selector must require a label: empty, or only NotIn and
/// DoesNotExist, it matches nearly every pod of the namespaces it reads.
#[test]
fn selectors_that_name_no_label_are_refused() {
    for (telemetry, field) in [
        (
            json!({"gpu": {"selector": {}}}),
            "spec.telemetry.gpu.selector",
        ),
        (
            json!({"server": {"selector": {"matchLabels": {}, "matchExpressions": [
                {"key": "app", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "NotIn", "values": ["x"]}]}}}),
            "spec.telemetry.server.selector",
        ),
    ] {
        let err = validate_json(&with(json!({ "telemetry": telemetry })))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(field) && err.contains("selects nearly every pod"),
            "{err}"
        );
    }
    for selector in [
        json!({"matchLabels": {"app": "vllm"}}),
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["vllm"]}]}),
        json!({"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "Exists"},
                                    {"key": "tier", "operator": "NotIn", "values": ["x"]}]}),
    ] {
        validate_json(&with(json!({"telemetry": {"gpu": {"selector": selector}}})))
            .unwrap_or_else(|e| panic!("{selector}: {e}"));
    }
}

#[test]
fn tokenizer_files_by_configmap_or_url_pass() {
    for (tokenizer, files) in [
        (
            "files",
            json!({"configMapRef": {"name": "llama-3-tokenizer"}}),
        ),
        (
            "auto",
            json!({"url": "https://huggingface.co/org/model/resolve/main/"}),
        ),
    ] {
        let run = validate_json(&with(json!({"load": {"input": {"synthetic": {
            "tokenizer": tokenizer, "tokenizerFiles": files}}}})))
        .expect(tokenizer);
        assert!(
            run.spec
                .load
                .input
                .synthetic
                .unwrap()
                .tokenizer_files
                .is_some()
        );
    }
}

#[test]
fn ordinary_headers_and_extra_inputs_pass() {
    let ok = with(json!({
        "target": {"headers": {"X-Team": "inference", "OpenAI-Organization": "org-1"}},
        "load": {"extraInputs": {"min_tokens": 128, "ignore_eos": true}},
    }));
    validate_json(&ok).expect("valid");
}

#[test]
fn a_baseline_by_run_or_by_configmap_with_tolerances_passes() {
    for b in [
        json!({"runRef": "vllm-0-9"}),
        json!({"configMapRef": "vllm-0-9-results", "tolerances": [
            {"metric": "ttftP99Ms", "maxRegression": "5%"},
            {"metric": "outputTokensPerJoule", "maxRegression": "2.5%"},
            {"metric": "totalGpuPowerW", "maxRegression": "0%"}]}),
    ] {
        validate_json(&with(json!({"baseline": b}))).expect("valid");
    }
}

#[test]
fn trials_within_the_bounds_pass() {
    for r in [
        json!({"count": 2}),
        json!({"count": 10, "coolDown": "0s"}),
        json!({"count": 3, "coolDown": "30m"}),
    ] {
        validate_json(&with(json!({"repeat": r}))).expect("valid");
    }
    let sweep = json!({"load": {"concurrency": null, "sweep": {"concurrency": (1..=32).collect::<Vec<i32>>()}}, "repeat": {"count": 2}});
    validate_json(&with(sweep)).expect("64 measured steps");
}

#[test]
fn an_idle_baseline_of_seconds_to_minutes_passes() {
    for d in ["1s", "10s", "2m30s", "10m"] {
        validate_json(&with(json!({"telemetry": {"idleBaseline": d}}))).expect(d);
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let err = validate_json(&with(json!({
        "load": {"concurrency": 0},
        "telemetry": {"interval": "10ms"},
    })))
    .unwrap_err();
    assert!(err.0.len() >= 2, "{err}");
}

#[test]
fn rate_mode_with_a_rate_sweep_is_valid() {
    let run = validate_json(&with(json!({"load": {
        "mode": "rate", "concurrency": null, "arrival": "constant",
        "sweep": {"requestRate": [1.0, 2.0, 4.0]}, "workers": 2,
    }})))
    .expect("valid");
    assert_eq!(run.spec.load.sweep.unwrap().request_rate.len(), 3);
}

fn started(mut v: Value) -> Value {
    merge(
        &mut v,
        &json!({"status": {"startTime": "2026-01-01T00:00:00Z"}}),
    );
    v
}

fn update_errors(old: &Value, new: &Value) -> Vec<String> {
    let root = &SCHEMAS.as_ref().expect("schemas").root;
    match kube::core::cel::Validator::new().validate(root, new, Some(old)) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn spec_is_immutable_once_started_except_cancel_and_ttl() {
    let old = started(valid());
    let mut changed = old.clone();
    merge(&mut changed, &json!({"spec": {"load": {"concurrency": 8}}}));
    assert_eq!(update_errors(&old, &changed), vec![r::IMMUTABLE_MSG]);

    let mut cancelled = old.clone();
    merge(
        &mut cancelled,
        &json!({"spec": {"cancel": true, "ttlSecondsAfterFinished": 60}}),
    );
    assert!(update_errors(&old, &cancelled).is_empty());

    let mut resumed = cancelled.clone();
    merge(&mut resumed, &json!({"spec": {"cancel": false}}));
    assert_eq!(
        update_errors(&cancelled, &resumed),
        vec![r::NO_UNCANCEL_MSG]
    );

    // Before the run starts the spec may still be corrected.
    let pending = valid();
    let mut fixed = pending.clone();
    merge(&mut fixed, &json!({"spec": {"load": {"concurrency": 8}}}));
    assert!(update_errors(&pending, &fixed).is_empty());
}
