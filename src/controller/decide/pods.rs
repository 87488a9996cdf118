//! What the load-generator pods say about themselves: why a worker failed,
//! and why one is not starting. Pure.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Container waiting reasons that do not resolve by waiting: the pod needs
/// something fixed (an image, a Secret or ConfigMap, a command).
pub const STUCK_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "CrashLoopBackOff",
];

/// The termination message (or reason and exit code) of the first failed worker.
pub fn failed_message(pods: &[Pod]) -> Option<String> {
    pods.iter().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses.iter().find_map(|cs| {
            let t = cs.state.as_ref()?.terminated.as_ref()?;
            (t.exit_code != 0).then(|| {
                let msg = t
                    .message
                    .as_deref()
                    .map(str::trim)
                    .filter(|m| !m.is_empty());
                match msg {
                    // A worker's words, or its log's last lines (whose end
                    // says why it stopped): their last 1 KiB, redacted.
                    Some(m) => format!(
                        "{} (exit code {})",
                        crate::net::bounded_tail(m, crate::net::MAX_QUOTED_BYTES),
                        t.exit_code
                    ),
                    None => format!(
                        "{} exited with code {} ({})",
                        pod.name_any(),
                        t.exit_code,
                        t.reason.as_deref().unwrap_or("Error")
                    ),
                }
            })
        })
    })
}

/// Why a worker cannot start, when one is stuck: a container waiting for a
/// reason in [`STUCK_REASONS`], or a pod the scheduler cannot place.
pub fn stuck(pods: &[Pod]) -> Option<String> {
    pods.iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        let waiting = status
            .container_statuses
            .iter()
            .chain(status.init_container_statuses.iter())
            .flatten()
            .find_map(|cs| {
                let w = cs.state.as_ref()?.waiting.as_ref()?;
                let reason = w.reason.as_deref()?;
                STUCK_REASONS.contains(&reason).then(|| {
                    let message = w.message.as_deref().map(str::trim).unwrap_or_default();
                    format!("{}: {reason}{}", pod.name_any(), tail(message))
                })
            });
        waiting.or_else(|| {
            let c = status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
            let why = c.reason.as_deref().unwrap_or("Unschedulable");
            let message = c.message.as_deref().map(str::trim).unwrap_or_default();
            Some(format!("{}: {why}{}", pod.name_any(), tail(message)))
        })
    })
}

fn tail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({})", message.chars().take(300).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "r1-loadgen-0-abc"}, "status": status}))
            .unwrap()
    }

    #[test]
    fn a_worker_stuck_on_its_image_or_config_says_why() {
        let image = pod(json!({"containerStatuses": [{
            "name": "loadgen", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"registry.invalid/benchrun:1\""}}
        }]}));
        let s = stuck(&[image]).unwrap();
        assert!(
            s.starts_with("r1-loadgen-0-abc: ImagePullBackOff (Back-off pulling"),
            "{s}"
        );
        let unschedulable = pod(json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu."
        }]}));
        assert!(
            stuck(&[unschedulable])
                .unwrap()
                .contains("Insufficient cpu")
        );
        // Starting normally is not stuck.
        let creating = pod(json!({"containerStatuses": [{
            "name": "loadgen", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}
        }]}));
        assert_eq!(stuck(&[creating]), None);
        assert_eq!(stuck(&[]), None);
    }

    #[test]
    fn a_failed_worker_gives_its_termination_message() {
        let failed = pod(json!({"containerStatuses": [{
            "name": "loadgen", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "message": "every request failed\n"}}
        }]}));
        assert_eq!(
            failed_message(&[failed]).as_deref(),
            Some("every request failed (exit code 1)")
        );
        // A worker's message (its log, with FallbackToLogsOnError) is
        // quoted at most 1 KiB, with the URLs' credentials redacted.
        let noisy = format!(
            "{{\"url\": \"http://admin:hunter3@llm:8000\"}}\n{}\nGET http://admin:hunter3@llm:8000/v1: every request failed",
            "x".repeat(5000)
        );
        let failed = pod(json!({"containerStatuses": [{
            "name": "loadgen", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 2, "message": noisy}}
        }]}));
        let m = failed_message(&[failed]).unwrap();
        assert!(
            m.ends_with("GET http://***@llm:8000/v1: every request failed (exit code 2)"),
            "{m}"
        );
        assert!(m.starts_with("(… ") && !m.contains("hunter3"), "{m}");
        assert!(m.len() < 1100, "{}", m.len());
    }
}
