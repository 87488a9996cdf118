//! Which Secrets a run's scrapes may use, and what they make of them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::*;
use crate::api::{BasicAuth, BenchmarkRun};

fn secret(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect::<BTreeMap<_, _>>(),
    );
    s
}

fn key(name: &str, key: &str) -> SecretKeyRef {
    SecretKeyRef {
        name: name.into(),
        key: key.into(),
    }
}

/// A run that names no Secret for its scrapes.
fn plain_run() -> BenchmarkRun {
    serde_saphyr::from_str(
        r#"
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: r, namespace: llm}
spec:
  target: {url: "http://vllm:8000", model: m}
  load: {concurrency: 1, requestCount: 1}
"#,
    )
    .unwrap()
}

const FIELD: &str = "spec.telemetry.server.auth.bearerTokenSecretRef";

#[test]
fn a_secret_is_read_only_with_its_owners_consent_and_errors_never_show_values() {
    let value = "s3cr3t-token-value";
    let r = key("metrics-token", "token");
    let consented = secret(
        "metrics-token",
        &[(CONSENT_LABEL, "true")],
        &[("token", value)],
    );
    assert_eq!(
        secret_value(Some(&consented), &r, FIELD).unwrap(),
        value.as_bytes()
    );
    let cases = [
        (None, "does not exist in the run's namespace"),
        (
            Some(secret("metrics-token", &[], &[("token", value)])),
            "lacks the label benchrun.dev/scrape-credentials=true",
        ),
        (
            Some(secret(
                "metrics-token",
                &[(CONSENT_LABEL, "false")],
                &[("token", value)],
            )),
            "kubectl label secret metrics-token benchrun.dev/scrape-credentials=true",
        ),
        (
            Some(secret(
                "metrics-token",
                &[(CONSENT_LABEL, "true")],
                &[("other", value)],
            )),
            "has no key token",
        ),
    ];
    for (s, expected) in cases {
        let e = secret_value(s.as_ref(), &r, FIELD).unwrap_err();
        assert!(e.starts_with(FIELD), "{e}");
        assert!(e.contains(expected), "{expected:?} in {e:?}");
        assert!(!e.contains(value), "the value leaked: {e}");
    }
}

#[test]
fn bearer_and_basic_credentials_become_the_authorization_header() {
    let store = |data: &'static [(&'static str, &'static str)]| {
        move |r: &SecretKeyRef, field: &str| {
            let s = secret(&r.name, &[(CONSENT_LABEL, "true")], data);
            secret_value(Some(&s), r, field)
        }
    };
    // A file-made Secret ends with a line break: it is not part of the token.
    let bearer = ScrapeAuth {
        bearer_token_secret_ref: Some(key("t", "token")),
        basic_auth: None,
    };
    assert_eq!(
        authorization(&bearer, store(&[("token", "abc.def\n")])).unwrap(),
        "Bearer abc.def"
    );
    let empty = authorization(&bearer, store(&[("token", "\n")])).unwrap_err();
    assert!(empty.contains("the token is empty"), "{empty}");
    // RFC 7617's example: Aladdin / open sesame.
    let basic = ScrapeAuth {
        bearer_token_secret_ref: None,
        basic_auth: Some(BasicAuth {
            username_secret_ref: key("b", "user"),
            password_secret_ref: key("b", "password"),
        }),
    };
    assert_eq!(
        authorization(
            &basic,
            store(&[("user", "Aladdin"), ("password", "open sesame")])
        )
        .unwrap(),
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    let colon = authorization(&basic, store(&[("user", "a:b"), ("password", "p")])).unwrap_err();
    assert!(
        colon.starts_with("spec.telemetry.server.auth.basicAuth.usernameSecretRef")
            && colon.contains("cannot hold ':'"),
        "{colon}"
    );
    let missing = authorization(&basic, store(&[("user", "u")])).unwrap_err();
    assert!(
        missing.starts_with("spec.telemetry.server.auth.basicAuth.passwordSecretRef"),
        "{missing}"
    );
}

#[test]
fn only_secrets_the_spec_names_are_read_and_each_field_is_named() {
    let mut run = plain_run();
    assert!(
        secrets_named(&run.spec).is_empty(),
        "a plain run reads none"
    );
    let t = &mut run.spec.telemetry;
    t.server.auth = Some(ScrapeAuth {
        bearer_token_secret_ref: Some(key("tok", "token")),
        basic_auth: None,
    });
    t.gpu.tls = Some(EndpointTls {
        ca_ref: Some(CaRef {
            secret_key_ref: Some(key("ca", "ca.crt")),
            config_map_key_ref: None,
        }),
        ..Default::default()
    });
    // A CA in a ConfigMap is no Secret.
    t.server.tls = Some(EndpointTls {
        ca_ref: Some(CaRef {
            secret_key_ref: None,
            config_map_key_ref: Some(crate::api::ConfigMapKeyRef {
                name: "kube-root-ca.crt".into(),
                key: "ca.crt".into(),
            }),
        }),
        ..Default::default()
    });
    let named: Vec<(String, String)> = secrets_named(&run.spec)
        .into_iter()
        .map(|(r, f)| (r.name.clone(), f))
        .collect();
    assert_eq!(
        named,
        vec![
            (
                "tok".to_string(),
                "spec.telemetry.server.auth.bearerTokenSecretRef".to_string()
            ),
            (
                "ca".to_string(),
                "spec.telemetry.gpu.tls.caRef.secretKeyRef".to_string()
            ),
        ]
    );
}

/// Without the installer's consent a run that names Secrets for its scrapes
/// is refused before any Secret is read (the client points nowhere: a read
/// would fail otherwise), naming the fields and the chart value.
#[tokio::test]
async fn without_the_installers_consent_no_secret_is_read() {
    let mut run = plain_run();
    run.spec.telemetry.server.auth = Some(ScrapeAuth {
        bearer_token_secret_ref: Some(key("tok", "token")),
        basic_auth: None,
    });
    let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let e = scrapers(&client, "llm", &run.spec, false)
        .await
        .err()
        .expect("refused");
    assert!(
        e.contains("spec.telemetry.server.auth.bearerTokenSecretRef")
            && e.contains("telemetry.scrapeCredentials=true"),
        "{e}"
    );
    // A plain run needs no Secret and no consent.
    run.spec.telemetry.server.auth = None;
    let plain = scrapers(&client, "llm", &run.spec, false).await;
    assert!(plain.is_ok(), "{:?}", plain.err());
}
