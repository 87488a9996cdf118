//! BenchmarkRuns from apply to their end: success and garbage collection,
//! failure, cancel, timeout, and an operator restart in the middle of a run.

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client, wait_for, wait_gone};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

use crate::common::{
    LONG, OPERATOR, OPERATOR_NS, bench_sim_run, deploy, deploy_sim, energy_between, gpu_sim,
    gpu_truth, phase, phase_is, pod_of, run, summary_json, wait_requests_done,
};

pub(crate) const SHORT_OUTPUT: &str =
    "\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 8}}}";

fn failed_message(r: &BenchmarkRun) -> String {
    crate::common::condition(r, "Failed")
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_run_succeeds_and_its_job_and_results_go_with_it() {
    let ns = setup("succeed", Some(18201)).await;
    let runs = ns.api::<BenchmarkRun>();
    let load = format!("\n    concurrency: 2\n    requestCount: 20{SHORT_OUTPUT}");
    runs.create(&PostParams::default(), &run("ok", &load, ""))
        .await
        .unwrap();
    let done = wait_succeeded(&runs, "ok").await;

    let jobs = ns.api::<Job>();
    let cms = ns.api::<ConfigMap>();
    let job = jobs.get("ok-loadgen").await.unwrap();
    assert_eq!(job.status.unwrap().succeeded, Some(1));
    let cm = cms.get("ok-results").await.unwrap();
    // The suite's install asks for the workers' NetworkPolicy.
    let policies = ns.api::<k8s_openapi::api::networking::v1::NetworkPolicy>();
    let np = policies.get("ok-loadgen").await.unwrap();
    let uid = done.metadata.uid.clone();
    for owners in [
        job.metadata.owner_references,
        cm.metadata.owner_references,
        np.metadata.owner_references,
    ] {
        assert_eq!(owners.unwrap()[0].uid, uid.clone().unwrap());
    }
    // Deleting the run takes its Job and results with it (garbage collector).
    runs.delete("ok", &DeleteParams::background())
        .await
        .unwrap();
    wait_gone(&jobs, "ok-loadgen", LONG).await.unwrap();
    wait_gone(&cms, "ok-results", LONG).await.unwrap();
    wait_gone(&policies, "ok-loadgen", LONG).await.unwrap();
    ns.delete().await.unwrap();
}

/// A target that refuses every connection: the pre-flight fails the run
/// before any load with the check and the answer; with the pre-flight off,
/// the load generators fail and the run carries their reason.
#[tokio::test]
async fn a_failing_load_generator_fails_the_run_with_its_reason() {
    let ns = setup("fail", None).await;
    let runs = ns.api::<BenchmarkRun>();
    let dead = |name: &str, extra: &str| {
        let mut r = run(
            name,
            &format!("\n    concurrency: 1\n    requestCount: 3{SHORT_OUTPUT}{extra}"),
            "",
        );
        r.spec.target.service_ref = None;
        // Nothing listens on the discard port: every request is refused.
        r.spec.target.url = Some("http://127.0.0.1:9".into());
        r
    };
    runs.create(&PostParams::default(), &dead("dead", ""))
        .await
        .unwrap();
    let failed = wait_for(&runs, "dead", "Failed", LONG, phase_is("Failed"))
        .await
        .unwrap();
    let message = failed_message(&failed);
    assert!(
        message.starts_with("PreflightFailed") && message.contains("'reachable'"),
        "{message}"
    );
    assert!(message.contains("127.0.0.1:9"), "{message}");
    runs.create(
        &PostParams::default(),
        &dead("unchecked", "\n    preflight: false"),
    )
    .await
    .unwrap();
    let failed = wait_for(&runs, "unchecked", "Failed", LONG, phase_is("Failed"))
        .await
        .unwrap();
    let message = failed_message(&failed);
    assert!(message.contains("every request failed"), "{message}");
    assert!(message.contains("127.0.0.1:9"), "{message}");
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn cancel_stops_the_load_and_ends_the_run_cancelled() {
    let ns = setup("cancel", Some(18202)).await;
    let runs = ns.api::<BenchmarkRun>();
    let load = format!("\n    concurrency: 1\n    duration: 10m{SHORT_OUTPUT}");
    runs.create(&PostParams::default(), &run("c", &load, ""))
        .await
        .unwrap();
    wait_running_pod(&ns, "c-loadgen").await;
    // Cancel once the measured phase is under way, so there is something to keep.
    wait_requests_done(&runs, "c").await;
    let patch = serde_json::json!({ "spec": { "cancel": true } });
    runs.patch("c", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(&runs, "c", "Cancelled", LONG, phase_is("Cancelled"))
        .await
        .unwrap();
    let jobs = ns.api::<Job>();
    wait_for(
        &jobs,
        "c-loadgen",
        "the Job to be suspended",
        LONG,
        |j: Option<&Job>| j.and_then(|j| j.spec.as_ref()).and_then(|s| s.suspend) == Some(true),
    )
    .await
    .unwrap();
    // What was measured up to the cancel is kept: the workers were stopped
    // and their results pulled before the Job was suspended.
    let cm = ns.api::<ConfigMap>().get("c-results").await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&cm.data.unwrap()["summary.json"]).unwrap();
    assert_eq!(doc["phase"], "Cancelled");
    let notes = doc["notes"].to_string();
    assert!(notes.contains("ended early"), "{notes}");
    let client = &doc["details"][0]["client"];
    let requests = client["requests"].as_u64().unwrap_or(0);
    assert!(
        requests > 0,
        "the client's requests up to the cancel: {doc:#}"
    );
    assert_eq!(client["successes"].as_u64(), Some(requests), "{client:#}");
    assert_eq!(client["stopped"], true, "{client:#}");
    let server = doc["details"][0]["server"].as_array().map_or(0, Vec::len);
    assert!(server > 0, "the server metrics up to the cancel: {doc:#}");
    let cancelled = runs.get("c").await.unwrap();
    let summary = cancelled.status.and_then(|s| s.summary).unwrap();
    assert!(
        summary.request_throughput.is_some_and(|t| t > 0.0),
        "{summary:?}"
    );
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn a_run_past_its_timeout_fails_with_reason_timeout() {
    let ns = setup("timeout", Some(18203)).await;
    let runs = ns.api::<BenchmarkRun>();
    let load = format!("\n    concurrency: 1\n    duration: 10m{SHORT_OUTPUT}");
    runs.create(&PostParams::default(), &run("t", &load, "  timeout: 12s\n"))
        .await
        .unwrap();
    let failed = wait_for(&runs, "t", "Failed", LONG, phase_is("Failed"))
        .await
        .unwrap();
    assert!(
        failed_message(&failed).starts_with("Timeout"),
        "{}",
        failed_message(&failed)
    );
    // What was measured until the timeout is kept, in the status too.
    let cm = ns.api::<ConfigMap>().get("t-results").await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&cm.data.unwrap()["summary.json"]).unwrap();
    let requests = doc["details"][0]["client"]["requests"]
        .as_u64()
        .unwrap_or(0);
    assert!(requests > 0, "{doc:#}");
    let summary = failed.status.and_then(|s| s.summary).unwrap();
    assert!(
        summary.request_throughput.is_some_and(|t| t > 0.0),
        "{summary:?}"
    );
    ns.delete().await.unwrap();
}

/// A three-step sweep whose operator pod is deleted in the middle of step 2:
/// the new leader takes the measurement over from its checkpoint, and the run
/// succeeds with every step's requests counted and every step's energy exact
/// (step 1 checkpointed whole; step 2's counters span the gap): energy and
/// tokens per joule within 1 % of the simulator's truth over each step's
/// client window, and `MeasurementValid` says `Restarted` with the gap's length.
#[tokio::test]
async fn a_sweep_survives_the_operator_pod_being_deleted_in_its_second_step() {
    // About 22 s per step at two streams: the new leader takes over well
    // inside step 2 (the lease runs out after 15 s).
    const REQUESTS: u64 = 1200;
    let _alone = OPERATOR.write().await;
    let (client, ns) = with_gpu_sim("restart", "2ms").await;
    let llm = pod_of(&ns.api::<Pod>(), "app=llm").await;
    let node = llm.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    let runs = ns.api::<BenchmarkRun>();
    let load = format!(
        "\n    requestCount: {REQUESTS}\n    sweep: {{concurrency: [2, 2, 2]}}\n    input: {{synthetic: {{inputTokens: {{mean: 16}}, outputTokens: {{mean: 16}}}}}}"
    );
    runs.create(&PostParams::default(), &llm_run(&load))
        .await
        .unwrap();
    // A little into step 2.
    wait_for(
        &runs,
        "r",
        "step 2 to be under way",
        LONG,
        |r: Option<&BenchmarkRun>| {
            r.and_then(|r| r.status.as_ref())
                .and_then(|s| s.progress.as_ref())
                .is_some_and(|p| p.requests_done as u64 > REQUESTS + 20)
        },
    )
    .await
    .unwrap();
    // The controller only: the GPU simulator keeps its ground truth.
    delete_controller(&client).await;
    let done = wait_succeeded(&runs, "r").await;
    let status = done.status.unwrap();
    let valid = status
        .conditions
        .iter()
        .find(|c| c.type_ == "MeasurementValid")
        .unwrap_or_else(|| panic!("no MeasurementValid in {:?}", status.conditions));
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("True", "Restarted"),
        "{valid:?}"
    );
    assert!(
        valid.message.contains(" s without scrapes in step 1"),
        "{valid:?}"
    );
    // The checkpoint has served once the results are written.
    wait_gone(&ns.api::<ConfigMap>(), "r-checkpoint", LONG)
        .await
        .unwrap();
    assert_eq!(status.steps.len(), 3, "{:?}", status.steps);
    let doc = summary_json(&ns, "r").await;
    let truth = gpu_truth(&client, &node).await;
    let llm_name = llm.metadata.name.clone().unwrap();
    let gpu = truth
        .iter()
        .find(|g| g["pod"]["name"] == llm_name.as_str())
        .unwrap_or_else(|| panic!("no GPU of {llm_name} in {truth:?}"));
    let history = gpu["history"].as_array().unwrap();
    for (k, step) in doc["details"].as_array().unwrap().iter().enumerate() {
        let c = &step["client"];
        assert_eq!(c["requests"].as_u64(), Some(REQUESTS), "step {k}: {c:#}");
        assert_eq!(c["successes"].as_u64(), Some(REQUESTS), "step {k}: {c:#}");
        let gap = step["coverage"]["restartGapS"].as_f64();
        assert_eq!(gap.is_some(), k == 1, "step {k}: {:#}", step["coverage"]);
        // Ground truth over the step's own client window.
        let (from, to) = (
            c["startedUnixMs"].as_u64().unwrap(),
            c["endedUnixMs"].as_u64().unwrap(),
        );
        let true_j = energy_between(history, from, to);
        let summary = &status.steps[k].summary;
        let reported_j = summary.total_gpu_energy_j.expect("energy published");
        let true_tpj = c["outputTokens"].as_f64().unwrap() / true_j;
        let tpj = summary
            .output_tokens_per_joule
            .expect("tokens per joule published");
        eprintln!(
            "restart, step {k}: gap {gap:?} s; energy {reported_j:.1} J vs truth {true_j:.1} J; tokens/J {tpj:.4} vs {true_tpj:.4}"
        );
        assert!(
            (reported_j - true_j).abs() / true_j < 0.01,
            "step {k}: reported {reported_j} J, truth {true_j} J over the client's window"
        );
        assert!(
            (tpj - true_tpj).abs() / true_tpj < 0.01,
            "step {k}: tokens/J {tpj}, truth {true_tpj}"
        );
    }
    ns.delete().await.unwrap();
}

/// The operator pod deleted while the workers' results come in: one worker
/// has finished, its result pulled into the checkpoint and the worker gone;
/// the other still runs. The new leader takes the held result from the
/// checkpoint and pulls the other from its worker: the run succeeds with both
/// workers' requests counted (before, it waited for a worker that was gone,
/// and ended without either result).
#[tokio::test]
async fn results_pulled_before_an_operator_restart_are_kept_by_the_next_one() {
    let _alone = OPERATOR.write().await;
    // 400 tokens at 20 ms: 8 s a request. Worker 1 sends one, worker 0 two,
    // so worker 1 is done some 8 s before worker 0.
    let (client, ns) = with_gpu_sim("collect", "20ms").await;
    let runs = ns.api::<BenchmarkRun>();
    let load = "\n    concurrency: 2\n    workers: 2\n    requestCount: 3\n    input: {synthetic: {inputTokens: {mean: 16}, outputTokens: {mean: 400}}}";
    runs.create(&PostParams::default(), &llm_run(load))
        .await
        .unwrap();
    // Worker 1 exits once the controller holds its result.
    wait_worker_exited(&ns, "r-loadgen", "1").await;
    let now = runs.get("r").await.unwrap();
    assert_eq!(
        phase(Some(&now)).as_deref(),
        Some("Running"),
        "worker 0 still runs"
    );
    delete_controller(&client).await;
    let done = wait_succeeded(&runs, "r").await;
    assert_results(&ns, &done, 3).await;
    let doc = summary_json(&ns, "r").await;
    let coverage = &doc["details"][0]["clientCoverage"];
    assert_eq!(
        (coverage["workers"].as_u64(), coverage["reported"].as_u64()),
        (Some(2), Some(2)),
        "{doc:#}"
    );
    let summary = done.status.unwrap().summary.unwrap();
    assert!(summary.output_token_throughput.is_some(), "{summary:?}");
    ns.delete().await.unwrap();
}

/// Deletes the operator's controller pod (its Deployment starts another,
/// which takes the lease over).
pub(crate) async fn delete_controller(client: &kube::Client) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NS);
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default()
            .labels("app.kubernetes.io/name=benchrun,app.kubernetes.io/component=controller"),
    )
    .await
    .unwrap();
}

/// A namespace of its own with the GPU-backed simulator `llm` (TTFT 5 ms,
/// inter-token latency `itl`) on a GPU node.
pub(crate) async fn with_gpu_sim(prefix: &str, itl: &'static str) -> (kube::Client, TestNamespace) {
    let client = client().await;
    let ns = TestNamespace::create(&client, prefix).await.unwrap();
    deploy(&ns, &gpu_sim("llm", "5ms", itl, None))
        .await
        .unwrap();
    (client, ns)
}

/// Run `r` of `load` against the simulator `llm`.
pub(crate) fn llm_run(load: &str) -> BenchmarkRun {
    bench_sim_run("r", "llm", load, "")
}

/// Waits until the pod of Job `job` with completion index `index` has exited 0.
async fn wait_worker_exited(ns: &TestNamespace, job: &str, index: &str) {
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::WatchStreamExt;
    let config = kube::runtime::watcher::Config::default()
        .labels(&format!("batch.kubernetes.io/job-name={job}"));
    let index = index.to_string();
    let mut pods = kube::runtime::watcher(ns.api::<Pod>(), config)
        .applied_objects()
        .try_filter(move |p| {
            let annotations = p.metadata.annotations.as_ref();
            let this = annotations
                .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
                .is_some_and(|i| *i == index);
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            std::future::ready(this && phase == Some("Succeeded"))
        })
        .boxed();
    match tokio::time::timeout(LONG, pods.next()).await {
        Ok(Some(Ok(_))) => {}
        Ok(other) => panic!("watching the pods of {job}: {other:?}"),
        Err(_) => panic!("worker of {job} did not exit within {LONG:?}"),
    }
}

/// A run deleted while it runs stops being measured: the controller's
/// count of active measurements is back to 0 within 10 s.
#[tokio::test]
async fn a_deleted_run_stops_being_measured_within_ten_seconds() {
    // Alone: the count is the controller's, over every run.
    let _alone = OPERATOR.write().await;
    let ns = setup("deleted", Some(18207)).await;
    let runs = ns.api::<BenchmarkRun>();
    let load = format!("\n    concurrency: 2\n    duration: 120s{SHORT_OUTPUT}");
    runs.create(&PostParams::default(), &run("gone", &load, ""))
        .await
        .unwrap();
    wait_requests_done(&runs, "gone").await;
    let client = client().await;
    // The gauge is refreshed every few seconds; it counts every run this
    // controller measures (a finished test's run may still be reaped).
    let seen = std::time::Instant::now();
    let during = loop {
        let n = active_measurements(&client).await;
        if n >= 1 {
            break n;
        }
        assert!(
            seen.elapsed() < LONG,
            "the run's measurement was never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    runs.delete("gone", &DeleteParams::background())
        .await
        .unwrap();
    let deleted = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(10);
    loop {
        let n = active_measurements(&client).await;
        if n < during {
            break;
        }
        assert!(
            deleted.elapsed() < limit,
            "the deleted run was still measured {limit:?} later ({n} active measurements, {during} before the delete)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eprintln!(
        "measurement stopped {:?} after the delete",
        deleted.elapsed()
    );
    ns.delete().await.unwrap();
}

/// `benchrun_active_measurements` of the controller that holds the lease.
async fn active_measurements(client: &kube::Client) -> u64 {
    crate::common::controller_metric(client, "benchrun_active_measurements").await as u64
}

/// Short runs back to back, one and two workers: every one ends `Succeeded`
/// with its summary and every request counted, and stays so. A reconcile from
/// a stale cached copy once threw finished runs' results away now and then.
#[tokio::test]
async fn a_soak_of_short_runs_keeps_every_result() {
    const RUNS: usize = 20;
    const REQUESTS: u64 = 6;
    let _steady = OPERATOR.read().await;
    let ns = setup("soak", Some(18205)).await;
    let runs = ns.api::<BenchmarkRun>();
    for i in 0..RUNS {
        let workers = 1 + i % 2;
        let load = format!(
            "\n    concurrency: 2\n    workers: {workers}\n    requestCount: {REQUESTS}{SHORT_OUTPUT}"
        );
        let name = format!("s{i:02}");
        runs.create(&PostParams::default(), &run(&name, &load, ""))
            .await
            .unwrap();
        let done = wait_succeeded(&runs, &name).await;
        assert_results(&ns, &done, REQUESTS).await;
    }
    // Nothing went back on its end afterwards (a stale reconcile re-entered
    // Collecting and, after its grace, wrote empty results over good ones).
    for r in runs.list(&ListParams::default()).await.unwrap() {
        assert_eq!(
            phase(Some(&r)).as_deref(),
            Some("Succeeded"),
            "{}",
            r.metadata.name.as_deref().unwrap_or("")
        );
        assert_results(&ns, &r, REQUESTS).await;
    }
    ns.delete().await.unwrap();
}

/// The run's status summary and results ConfigMap hold the client's figures
/// for all `requests`.
pub(crate) async fn assert_results(ns: &TestNamespace, r: &BenchmarkRun, requests: u64) {
    let name = r.metadata.name.clone().unwrap();
    let summary = r.status.as_ref().and_then(|s| s.summary.clone());
    let summary = summary.unwrap_or_else(|| panic!("{name}: no summary in {:?}", r.status));
    assert!(
        summary.request_throughput.is_some_and(|t| t > 0.0),
        "{name}: {summary:?}"
    );
    let cm = ns
        .api::<ConfigMap>()
        .get(&format!("{name}-results"))
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&cm.data.unwrap()["summary.json"]).unwrap();
    let client = &doc["details"][0]["client"];
    assert_eq!(
        client["requests"].as_u64(),
        Some(requests),
        "{name}: {doc:#}"
    );
    assert_eq!(
        client["successes"].as_u64(),
        Some(requests),
        "{name}: {doc:#}"
    );
}

/// A fresh namespace, with the simulator (TTFT 10 ms, ITL 2 ms)
/// on `sim_port` when given.
pub(crate) async fn setup(prefix: &str, sim_port: Option<i32>) -> TestNamespace {
    let client = client().await;
    let ns = TestNamespace::create(&client, prefix).await.unwrap();
    if let Some(port) = sim_port {
        deploy_sim(&ns, port, 10, 2).await.unwrap();
    }
    ns
}

/// Waits until the run ends and asserts it Succeeded (else shows why it failed).
pub(crate) async fn wait_succeeded(runs: &Api<BenchmarkRun>, name: &str) -> BenchmarkRun {
    let ended =
        |r: Option<&BenchmarkRun>| matches!(phase(r).as_deref(), Some("Succeeded" | "Failed"));
    let done = wait_for(runs, name, "the run to end", LONG, ended)
        .await
        .unwrap();
    assert_eq!(
        phase(Some(&done)).as_deref(),
        Some("Succeeded"),
        "{}",
        failed_message(&done)
    );
    done
}

/// One of two workers killed with SIGKILL mid-step (as an OOM kill or a
/// lost node would: no grace, no handover): the other measures its whole
/// share and its result is kept; the run fails `WorkerLost` naming the lost
/// one, and the step says whose results are missing (before, every worker's
/// result was lost with it).
#[tokio::test]
async fn one_of_two_workers_killed_with_sigkill_keeps_the_other_s_result() {
    let _steady = OPERATOR.read().await;
    let ns = setup("sigkill", Some(18210)).await;
    let runs = ns.api::<BenchmarkRun>();
    let load = format!("\n    concurrency: 2\n    workers: 2\n    duration: 20s{SHORT_OUTPUT}");
    runs.create(&PostParams::default(), &run("sk", &load, ""))
        .await
        .unwrap();
    wait_requests_done(&runs, "sk").await;
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("batch.kubernetes.io/job-name=sk-loadgen"))
        .await
        .unwrap();
    let victim = pods
        .items
        .iter()
        .find(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("batch.kubernetes.io/job-completion-index"))
                == Some(&"1".to_string())
        })
        .and_then(|p| p.metadata.name.clone())
        .expect("worker 1's pod");
    let kill = serde_json::json!({"metadata": {"annotations": {benchrun_e2e::kubelet::KILL_ANNOTATION: "SIGKILL"}}});
    ns.api::<Pod>()
        .patch(&victim, &PatchParams::default(), &Patch::Merge(&kill))
        .await
        .unwrap();
    let failed = wait_for(&runs, "sk", "Failed", LONG, phase_is("Failed"))
        .await
        .unwrap();
    let status = failed.status.clone().unwrap();
    let (reason, message) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap();
    assert_eq!(reason, "WorkerLost", "{message}");
    assert!(message.contains("load generator 1:"), "{message}");
    assert!(message.contains("measured up to then is kept"), "{message}");
    let valid = status
        .conditions
        .iter()
        .find(|c| c.type_ == "MeasurementValid")
        .unwrap();
    assert_eq!(valid.reason, "MissingWorkers", "{}", valid.message);
    let doc = summary_json(&ns, "sk").await;
    let step = &doc["details"][0];
    assert_eq!(
        step["clientCoverage"]["workers"].as_u64(),
        Some(2),
        "{doc:#}"
    );
    assert_eq!(
        step["clientCoverage"]["reported"].as_u64(),
        Some(1),
        "{doc:#}"
    );
    // The survivor measured its whole share: not stopped, all its requests
    // answered, over the whole 20 s.
    let client = &step["client"];
    let requests = client["requests"].as_u64().unwrap_or(0);
    assert!(requests > 0, "{client:#}");
    assert_eq!(client["successes"].as_u64(), Some(requests), "{client:#}");
    assert_ne!(client["stopped"], true, "{client:#}");
    assert!(
        client["durationS"].as_f64().unwrap_or(0.0) > 19.0,
        "{client:#}"
    );
    // One step, the one measured; its telemetry closed after the survivor.
    assert_eq!(doc["details"].as_array().map(Vec::len), Some(1), "{doc:#}");
    assert!(
        doc["notes"]
            .to_string()
            .contains("load generator 1's share is lost"),
        "{}",
        doc["notes"]
    );
    ns.delete().await.unwrap();
}

/// Waits until a pod of the Job `job` runs.
async fn wait_running_pod(ns: &TestNamespace, job: &str) {
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::WatchStreamExt;
    let config = kube::runtime::watcher::Config::default().labels(&format!("job-name={job}"));
    let mut pods = kube::runtime::watcher(ns.api::<Pod>(), config)
        .applied_objects()
        .try_filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            std::future::ready(phase == Some("Running"))
        })
        .boxed();
    match tokio::time::timeout(LONG, pods.next()).await {
        Ok(Some(Ok(_))) => {}
        Ok(other) => panic!("watching the pods of {job}: {other:?}"),
        Err(_) => panic!("no pod of {job} ran within {LONG:?}"),
    }
}

/// A load-generator image that cannot start: the run fails with the pod's
/// own reason instead of waiting forever.
#[tokio::test]
async fn workers_that_cannot_start_fail_the_run_with_their_reason() {
    let ns = setup("nostart", None).await;
    let runs = ns.api::<BenchmarkRun>();
    let extra = "";
    let mut r = run(
        "ns1",
        &format!(
            "\n    concurrency: 1\n    requestCount: 3{SHORT_OUTPUT}\n    podTemplate: {{image: \"registry.invalid/no-such-image:1\"}}"
        ),
        extra,
    );
    r.spec.target.service_ref = None;
    r.spec.target.url = Some("http://127.0.0.1:9".into());
    runs.create(&PostParams::default(), &r).await.unwrap();
    let failed = wait_for(&runs, "ns1", "Failed", LONG, phase_is("Failed"))
        .await
        .unwrap();
    let message = failed_message(&failed);
    assert!(message.starts_with("WorkersNotStarted"), "{message}");
    assert!(message.contains("no-such-image"), "{message}");
    ns.delete().await.unwrap();
}

/// The run's Job deleted under it (as `kubectl delete job` does, its pods
/// with it): the workers, terminating, stop and hand over what they measured;
/// the run fails `JobDeleted` with that part in its results, and the Job is
/// not made again.
#[tokio::test]
async fn a_deleted_job_keeps_what_its_workers_measured() {
    let _steady = OPERATOR.read().await;
    job_deleted_under_the_run("jobgone", 18208, None).await;
}

/// The same with the controller replaced as the Job goes: the new leader
/// never saw the Job, yet finds its workers stopping in their grace period
/// and pulls what they hold (before, it ended the run without their results).
#[tokio::test]
async fn a_job_deleted_while_the_controller_is_replaced_keeps_what_its_workers_measured() {
    let _alone = OPERATOR.write().await;
    let client = client().await;
    job_deleted_under_the_run("jobgone-restart", 18209, Some(&client)).await;
}

/// Deletes the Job of a run in progress (after replacing the controller,
/// when `controller` is given) and checks what the run keeps.
async fn job_deleted_under_the_run(prefix: &str, port: i32, controller: Option<&kube::Client>) {
    let ns = setup(prefix, Some(port)).await;
    let runs = ns.api::<BenchmarkRun>();
    let load = format!("\n    concurrency: 2\n    workers: 2\n    duration: 10m{SHORT_OUTPUT}");
    runs.create(&PostParams::default(), &run("jg", &load, ""))
        .await
        .unwrap();
    wait_requests_done(&runs, "jg").await;
    let jobs = ns.api::<Job>();
    let before = jobs.get("jg-loadgen").await.unwrap();
    if let Some(client) = controller {
        delete_controller(client).await;
    }
    jobs.delete("jg-loadgen", &DeleteParams::background())
        .await
        .unwrap();
    let failed = wait_for(&runs, "jg", "Failed", LONG, phase_is("Failed"))
        .await
        .unwrap();
    let status = failed.status.clone().unwrap();
    let reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed")
        .map(|c| (c.reason.clone(), c.message.clone()));
    let (reason, message) = reason.unwrap();
    assert_eq!(reason, "JobDeleted", "{message}");
    assert!(message.contains("measured up to then is kept"), "{message}");
    let summary = status.summary.clone().unwrap();
    assert!(
        summary.request_throughput.is_some_and(|t| t > 0.0),
        "{summary:?}"
    );
    let doc = summary_json(&ns, "jg").await;
    let client = &doc["details"][0]["client"];
    let requests = client["requests"].as_u64().unwrap_or(0);
    assert!(requests > 0, "{doc:#}");
    assert_eq!(client["successes"].as_u64(), Some(requests), "{client:#}");
    assert_eq!(client["stopped"], true, "{client:#}");
    assert_eq!(
        doc["details"][0]["clientCoverage"]["reported"].as_u64(),
        Some(2),
        "both workers handed over: {doc:#}"
    );
    if controller.is_some() {
        // The successor closed the step its predecessor had opened.
        let notes = doc["notes"].to_string();
        assert!(
            notes.contains("took this run over from its checkpoint during step 0"),
            "{notes}"
        );
    }
    // Never made again.
    let again = jobs.get_opt("jg-loadgen").await.unwrap();
    assert!(
        again.is_none(),
        "the Job was made again (it was {:?})",
        before.metadata.uid
    );
    ns.delete().await.unwrap();
}
