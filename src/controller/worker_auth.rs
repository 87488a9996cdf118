//! The worker API's per-run token.
//!
//! Every load-generator worker serves its API (start, progress, result,
//! acknowledgement) on the pod network, where any pod of any tenant can reach
//! it. Each run's workers therefore require a bearer token of their own: the
//! controller derives it from a key only it holds (HMAC-SHA256 of the run's
//! UID), writes it into the run's Job (`BENCHRUN_WORKER_TOKEN`), and sends it
//! on every call. A controller that takes over after a restart derives the
//! same token. No Secret is made in the tenant's namespace: the controller
//! needs no right to create Secrets there, and whoever may read the run's
//! Job or pods is the tenant, who may have the token anyway (it guards the
//! workers against other tenants' pods, not against their own).
//!
//! The key lives in the Secret `benchrun-worker-key` in the operator's own
//! namespace, made by the first controller that finds none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use ring::hmac;

/// The Secret that holds the controller's key, in the operator's namespace.
pub const KEY_SECRET: &str = "benchrun-worker-key";
/// Its data key.
const KEY: &str = "key";

/// The controller's key for the workers' tokens.
#[derive(Clone)]
pub struct WorkerKey(hmac::Key);

/// Never shows the key.
impl std::fmt::Debug for WorkerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerKey(..)")
    }
}

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
