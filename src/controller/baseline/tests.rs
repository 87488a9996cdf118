use super::*;

#[test]
fn only_configmaps_labelled_as_benchrun_results_are_read() {
    let cm = |labels: serde_json::Value| -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "x", "labels": labels}}))
            .unwrap()
    };
    assert!(is_results(&cm(serde_json::json!({
        "app.kubernetes.io/managed-by": "benchrun",
        "app.kubernetes.io/component": "results",
        "benchrun.dev/run": "r1",
    }))));
    // Another component of a run (its plan, its checkpoint), or anyone's data.
    assert!(!is_results(&cm(serde_json::json!({
        "app.kubernetes.io/managed-by": "benchrun",
        "app.kubernetes.io/component": "plan",
    }))));
    assert!(!is_results(&cm(serde_json::json!({"app": "billing"}))));
    assert!(!is_results(&cm(serde_json::Value::Null)));
}
