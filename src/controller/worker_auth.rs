//! The worker API's per-run token.
//!
//! Every load-generator worker serves its API (start, progress, result,
//! acknowledgement) on the pod network, where any pod of any tenant can reach
//! it. Each run's workers therefore require a bearer token of their own: the
//! controller derives it from a key only it holds (HMAC-SHA256 of the run's
//! UID), hands it to the workers in a Secret the run owns
//! (`<run>-worker-token`, mounted as `BENCHRUN_WORKER_TOKEN`), and sends it on
//! every call. A controller that takes over after a restart derives the same
//! token; it never reads a tenant's Secret.
//!
//! The key lives in the Secret `benchrun-worker-key` in the operator's own
//! namespace, made by the first controller that finds none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use ring::hmac;

use crate::api::BenchmarkRun;

/// The Secret that holds the controller's key, in the operator's namespace.
pub const KEY_SECRET: &str = "benchrun-worker-key";
/// Its data key, and the data key of a run's token Secret.
const KEY: &str = "key";
pub const TOKEN_KEY: &str = "token";

/// The controller's key for the workers' tokens.
#[derive(Clone)]
pub struct WorkerKey(hmac::Key);

impl WorkerKey {
    pub fn new(bytes: &[u8]) -> Self {
        WorkerKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The token of the run with UID `run_uid` (64 hex digits).
    pub fn token(&self, run_uid: &str) -> String {
        let tag = hmac::sign(&self.0, run_uid.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key in `benchrun-worker-key` of `namespace`, made if there is none.
    pub async fn ensure(client: &kube::Client, namespace: &str) -> Result<Self, String> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let read = |s: Secret| {
            s.data
                .and_then(|d| d.get(KEY).map(|k| k.0.clone()))
                .filter(|k| k.len() >= 32)
                .map(|k| WorkerKey::new(&k))
                .ok_or_else(|| {
                    format!("Secret {namespace}/{KEY_SECRET} has no '{KEY}' of 32 bytes or more")
                })
        };
        let failed = |e: kube::Error| format!("Secret {namespace}/{KEY_SECRET}: {e}");
        if let Some(s) = api.get_opt(KEY_SECRET).await.map_err(failed)? {
            return read(s);
        }
        let mut key = vec![0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| "no randomness for the worker key".to_string())?;
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(KEY_SECRET.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_string(),
                    "benchrun".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                KEY.to_string(),
                k8s_openapi::ByteString(key),
            )])),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(s) => read(s),
            // Another replica made it first: use theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                read(api.get(KEY_SECRET).await.map_err(failed)?)
            }
            Err(e) => Err(failed(e)),
        }
    }
}

/// The name of a run's token Secret.
pub fn token_secret_name(run: &BenchmarkRun) -> String {
    crate::controller::names::bounded_name(&run.name_any(), "worker-token", 253)
}

/// The run's token Secret, owned by the run.
pub fn token_secret(run: &BenchmarkRun, token: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(token_secret_name(run)),
            namespace: run.namespace(),
            labels: Some(crate::controller::names::labels(run, "worker-token")),
            owner_references: run.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token.to_string())])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_run_has_its_own_token_and_a_restart_derives_the_same() {
        let key = WorkerKey::new(&[7u8; 32]);
        let a = key.token("uid-a");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            WorkerKey::new(&[7u8; 32]).token("uid-a"),
            a,
            "same key, same run"
        );
        assert_ne!(key.token("uid-b"), a, "another run");
        assert_ne!(WorkerKey::new(&[8u8; 32]).token("uid-a"), a, "another key");
    }
}
