//! One run per target at a time: a second run on the same Service waits
//! `Queued` and starts when the first ends; with `concurrencyPolicy: Allow`
//! both run and both withhold their energy; the order holds across a
//! controller restart.

use benchrun::api::BenchmarkRun;
use benchrun_e2e::harness::{TestNamespace, client, wait_for};
use kube::Api;
use kube::api::PostParams;

use crate::common::{
    LONG, OPERATOR, condition, controller_metric, phase, summary_json, wait_requests_done,
};
use crate::runs::{SHORT_OUTPUT, delete_controller, setup, wait_succeeded};

/// A run of `load` named `name` against the namespace's simulator.
fn sim_run(name: &str, load: &str, extra: &str) -> BenchmarkRun {
    crate::common::run(name, &format!("{load}{SHORT_OUTPUT}"), extra)
}

/// Long enough that the first run still runs when its first progress
/// (written every 5 s at most) shows it under way, and the second is made.
const LONG_LOAD: &str = "\n    concurrency: 2\n    duration: 20s";
const SHORT_LOAD: &str = "\n    concurrency: 2\n    requestCount: 20";

/// Waits until `name` is `Queued` at `position`; the run then.
async fn wait_queued(runs: &Api<BenchmarkRun>, name: &str, position: i32) -> BenchmarkRun {
    wait_for(
        runs,
        name,
        &format!("{name} to be queued at {position}"),
        LONG,
        move |r: Option<&BenchmarkRun>| {
            phase(r).as_deref() == Some("Queued")
                && r.and_then(|r| r.status.as_ref())
                    .and_then(|s| s.queue_position)
                    == Some(position)
        },
    )
    .await
    .unwrap()
}

/// The client's measured window of the run's (only) step, Unix ms.
async fn window(ns: &TestNamespace, run: &str) -> (u64, u64) {
    let doc = summary_json(ns, run).await;
    let c = &doc["details"][0]["client"];
    (
        c["startedUnixMs"]
            .as_u64()
            .unwrap_or_else(|| panic!("{run}: {doc:#}")),
        c["endedUnixMs"].as_u64().unwrap(),
    )
}

/// Asserts that the runs, in this order, measured one after another.
async fn in_turn(ns: &TestNamespace, runs: &[&str]) {
    let mut windows = Vec::new();
    for r in runs {
        windows.push((r, window(ns, r).await));
    }
    for pair in windows.windows(2) {
        let ((a, (_, a_end)), (b, (b_start, _))) = (pair[0], pair[1]);
        assert!(
            a_end <= b_start,
            "{a} measured until {a_end}, {b} from {b_start}: the windows overlap"
        );
    }
}

#[tokio::test]
async fn a_second_run_on_the_same_service_waits_for_the_first() {
    let _steady = OPERATOR.read().await;
    let ns = setup("queue", Some(18601)).await;
    let runs = ns.api::<BenchmarkRun>();
    runs.create(&PostParams::default(), &sim_run("a", LONG_LOAD, ""))
        .await
        .unwrap();
    wait_requests_done(&runs, "a").await;
    runs.create(&PostParams::default(), &sim_run("b", SHORT_LOAD, ""))
        .await
        .unwrap();
    let queued = wait_queued(&runs, "b", 1).await;
    let waiting = condition(&queued, "Queued").unwrap();
    assert_eq!(waiting.reason, "WaitingForTarget", "{waiting:?}");
    assert!(
        waiting.message.contains(&format!("{}/a", ns.name)),
        "{waiting:?}"
    );
    // Nothing of b's is launched while it waits.
    assert!(
        queued.status.as_ref().unwrap().start_time.is_none(),
        "{queued:?}"
    );
    let a = wait_succeeded(&runs, "a").await;
    let b = wait_succeeded(&runs, "b").await;
    let freed = condition(&b, "Queued").unwrap();
    assert_eq!(
        (freed.status.as_str(), freed.reason.as_str()),
        ("False", "TargetFree")
    );
    let (a_done, b_start) = (
        a.status.unwrap().completion_time.unwrap().0,
        b.status.as_ref().unwrap().start_time.clone().unwrap().0,
    );
    assert!(
        b_start >= a_done,
        "b started at {b_start}, a ended at {a_done}"
    );
    assert!(b.status.unwrap().shared_with.is_empty());
    in_turn(&ns, &["a", "b"]).await;
    ns.delete().await.unwrap();
}

#[tokio::test]
async fn runs_allowed_to_overlap_both_run_and_both_withhold_their_energy() {
    let _steady = OPERATOR.read().await;
    let ns = setup("overlap", Some(18602)).await;
    let runs = ns.api::<BenchmarkRun>();
    runs.create(&PostParams::default(), &sim_run("a", LONG_LOAD, ""))
        .await
        .unwrap();
    wait_requests_done(&runs, "a").await;
    let allow = "  concurrencyPolicy: Allow\n";
    runs.create(&PostParams::default(), &sim_run("b", SHORT_LOAD, allow))
        .await
        .unwrap();
    let b = wait_succeeded(&runs, "b").await;
    let a = wait_succeeded(&runs, "a").await;
    for (r, other) in [(&a, "b"), (&b, "a")] {
        let name = r.metadata.name.clone().unwrap();
        let status = r.status.as_ref().unwrap();
        assert_eq!(
            status.shared_with,
            [format!("{}/{other}", ns.name)],
            "{name}: {status:?}"
        );
        let valid = condition(r, "MeasurementValid").unwrap();
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("False", "SharedGpus"),
            "{name}: {valid:?}"
        );
        let summary = status.summary.as_ref().unwrap();
        assert!(summary.request_throughput.is_some(), "{name}: {summary:?}");
        assert_eq!(summary.output_tokens_per_joule, None, "{name}: {summary:?}");
        assert_eq!(summary.total_gpu_energy_j, None, "{name}: {summary:?}");
    }
    // Both found their telemetry, and discovery read the pods from the
    // controller's shared watches.
    for r in [&a, &b] {
        let found = condition(r, "TelemetryDiscovered").unwrap();
        assert_eq!(found.reason, "EndpointsFound", "{found:?}");
    }
    let from_watches = controller_metric(
        &client().await,
        "benchrun_discovery_pod_reads_total{source=\"watch\"}",
    )
    .await;
    assert!(from_watches > 0.0, "no pod read came from a watch");
    // Their windows did overlap: that is what they say.
    let ((a_start, a_end), (b_start, b_end)) = (window(&ns, "a").await, window(&ns, "b").await);
    assert!(
        a_start < b_end && b_start < a_end,
        "a {a_start}..{a_end}, b {b_start}..{b_end}"
    );
    ns.delete().await.unwrap();
}

/// One run in progress and two queued behind it; the controller is deleted:
/// the next one finds the same queue (it is derived from the runs), and the
/// three run in the order they were created.
#[tokio::test]
async fn the_queue_keeps_its_order_across_a_controller_restart() {
    let _alone = OPERATOR.write().await;
    let client = client().await;
    let ns = setup("requeue", Some(18603)).await;
    let runs = ns.api::<BenchmarkRun>();
    let first = "\n    concurrency: 2\n    duration: 25s";
    runs.create(&PostParams::default(), &sim_run("a", first, ""))
        .await
        .unwrap();
    wait_requests_done(&runs, "a").await;
    for name in ["b", "c"] {
        runs.create(&PostParams::default(), &sim_run(name, SHORT_LOAD, ""))
            .await
            .unwrap();
    }
    wait_queued(&runs, "b", 1).await;
    wait_queued(&runs, "c", 2).await;
    delete_controller(&client).await;
    // The new controller keeps them queued while a runs, then lets them go
    // one at a time: c is still queued when b has started.
    let b_started = wait_for(
        &runs,
        "b",
        "b to start",
        LONG,
        |r: Option<&BenchmarkRun>| {
            r.and_then(|r| r.status.as_ref())
                .is_some_and(|s| s.start_time.is_some())
        },
    )
    .await
    .unwrap();
    let c_now = runs.get("c").await.unwrap();
    assert!(
        c_now.status.as_ref().unwrap().start_time.is_none(),
        "c started beside b: {:?} / {:?}",
        c_now.status,
        b_started.status
    );
    for name in ["a", "b", "c"] {
        wait_succeeded(&runs, name).await;
    }
    in_turn(&ns, &["a", "b", "c"]).await;
    ns.delete().await.unwrap();
}

/// A run from another namespace aimed at A's pod addresses (a target A owns)
/// cannot hold A's runs: when A's run arrives, B's gives way (it ends
/// `Preempted`, keeping what it measured) and A's then runs alone.
#[tokio::test]
async fn a_run_from_another_namespace_gives_way_to_the_owner_s_run() {
    let _steady = OPERATOR.read().await;
    let a = setup("owner", Some(18604)).await;
    let b = setup("guest", None).await;
    let sim = crate::common::pod_of(&a.api(), "app=sim").await;
    let address = format!("http://{}:18604", crate::common::ip(&sim));
    // B's long run, on A's simulator by its address.
    let mut hold = sim_run("hold", "\n    concurrency: 2\n    duration: 5m", "");
    hold.spec.target.service_ref = None;
    hold.spec.target.url = Some(address);
    let theirs = b.api::<BenchmarkRun>();
    theirs.create(&PostParams::default(), &hold).await.unwrap();
    wait_for(
        &theirs,
        "hold",
        "B's run to run",
        LONG,
        crate::common::phase_is("Running"),
    )
    .await
    .unwrap();
    // A's run arrives: B's gives way, and A's runs after it, alone.
    let mine = a.api::<BenchmarkRun>();
    mine.create(&PostParams::default(), &sim_run("mine", SHORT_LOAD, ""))
        .await
        .unwrap();
    wait_for(
        &theirs,
        "hold",
        "B's run to give way",
        LONG,
        |r: Option<&BenchmarkRun>| {
            r.and_then(|r| condition(r, "Failed"))
                .is_some_and(|c| c.reason == "Preempted")
        },
    )
    .await
    .unwrap();
    let done = wait_succeeded(&mine, "mine").await;
    let status = done.status.as_ref().unwrap();
    assert!(status.shared_with.is_empty(), "{status:?}");
    let held = crate::common::wait_ended(&b, "hold").await;
    let ended = held
        .status
        .as_ref()
        .unwrap()
        .completion_time
        .clone()
        .unwrap()
        .0;
    assert!(
        ended <= status.start_time.clone().unwrap().0,
        "B's run ended at {ended}, after A's started: {status:?}"
    );
    a.delete().await.unwrap();
    b.delete().await.unwrap();
}
