use clap::Parser as _;

use super::*;
use crate::net::testing::{get, start as serve, status_of};
use crate::scrape::{Entry, Format, Kind, Parser};
use crate::telemetry::GpuTelemetry;

fn opts(extra: &[&str]) -> DcgmOpts {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        o: DcgmOpts,
    }
    let mut args = vec!["dcgm", "--hostname", "node-a"];
    args.extend_from_slice(extra);
    Wrap::parse_from(args).o
}

fn shape(gpus: usize) -> Shape {
    Shape {
        gpus,
        model_name: DEFAULT_MODEL.into(),
        hostname: "node-a".into(),
    }
}

fn types(page: &str) -> Vec<(String, Kind)> {
    let mut out = Vec::new();
    for e in Parser::new(page.as_bytes(), Format::Prometheus) {
        if let Entry::Type { name, kind } = e {
            out.push((name.to_string(), kind));
        }
    }
    out
}

#[test]
fn the_page_has_dcgm_exporters_names_types_and_labels() {
    let o = opts(&["--gpus", "4"]);
    let a = serving::parse_serve("1-2=http://10.0.0.9:8000/metrics@demo/llm-0/vllm", 4).unwrap();
    let node = new_node(&o, &shape(4), vec![a]);

    let mut t = GpuTelemetry::default();
    let report = t.ingest("sim", 0.0, node.page.as_bytes(), Format::Prometheus);
    assert_eq!(report.skipped, 0);
    assert_eq!(t.gpus.len(), 4);
    let served: Vec<_> = t.gpus.iter().filter(|g| !g.pods.is_empty()).collect();
    assert_eq!(served.len(), 2);
    assert_eq!(served[0].pods[0].pod, "llm-0");
    assert_eq!(
        t.gpus[0].identity.model.as_deref(),
        Some("NVIDIA H100 80GB HBM3")
    );
    assert_eq!(t.counts.not_dcgm, 0);
    assert_eq!(
        t.gpus[0].fields.len(),
        27,
        "every field is in the engine's DCGM table"
    );

    // Same label names, in the same order, as a captured dcgm-exporter page.
    let fixtures =
        std::env::var("BENCHRUN_FIXTURES").unwrap_or_else(|_| "../shared/fixtures/metrics".into());
    let Ok(real) = std::fs::read_to_string(format!("{fixtures}/aiperf-dcgm-gb200-4gpu.txt")) else {
        return;
    };
    let label_names = |page: &str, metric: &str| -> Vec<String> {
        let line = page.lines().find(|l| l.starts_with(metric)).unwrap();
        let inner = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
        inner
            .split("\",")
            .map(|kv| kv.split('=').next().unwrap().to_string())
            .collect()
    };
    let mut ours = label_names(&node.page, "DCGM_FI_DEV_SM_CLOCK{");
    let mut theirs = label_names(&real, "DCGM_FI_DEV_SM_CLOCK{");
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    // The XID field's two more labels, in dcgm-exporter's order and words.
    let xid = "DCGM_FI_DEV_XID_ERRORS{";
    assert_eq!(label_names(&node.page, xid), label_names(&real, xid));
    assert!(
        node.page
            .contains(",err_code=\"0\",err_msg=\"No Error\"} 0\n")
    );
    // Every family both pages have is declared with the same type.
    let real_types = types(&real);
    let t4 = std::fs::read_to_string(format!("{fixtures}/datadog-dcgm-t4-edgecases.txt"))
        .unwrap_or_default();
    let t4_types = types(&t4);
    let mut compared = 0;
    for (name, kind) in types(&node.page) {
        for (n, k) in real_types.iter().chain(&t4_types) {
            if *n == name {
                assert_eq!(*k, kind, "{name}");
                compared += 1;
            }
        }
    }
    assert!(compared >= 15, "{compared}");
}

#[test]
fn identities_are_stable_and_distinct() {
    let a = page::identity(0, "node-a", "m", "d");
    assert_eq!(a, page::identity(0, "node-a", "m", "d"));
    assert_ne!(a.uuid, page::identity(1, "node-a", "m", "d").uuid);
    assert_ne!(a.uuid, page::identity(0, "node-b", "m", "d").uuid);
    assert_eq!(
        a.uuid.len(),
        "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e".len()
    );
}

/// Waits until `f` holds, polling (never a fixed sleep as the assertion).
async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpus_follow_the_server_and_the_counter_matches_the_truth() {
    use crate::sim::inference::{InferenceOpts, router as inference};
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        o: InferenceOpts,
    }
    let llm = serve(inference(
        Wrap::parse_from(["sim", "--model", "m", "--ttft", "5ms", "--itl", "2ms"]).o,
    ))
    .await;
    let o = opts(&[
        "--gpus",
        "2",
        "--tick",
        "20ms",
        "--update-interval",
        "100ms",
    ]);
    let a = serving::parse_serve(&format!("0={llm}/metrics@demo/llm-0/vllm"), 2).unwrap();
    let node = Arc::new(Mutex::new(new_node(&o, &shape(2), vec![a])));
    tokio::spawn(simulate(node.clone(), o.tick, o.update_interval));
    let dcgm = serve(router(node.clone())).await;

    let mut plan = crate::loadgen::request::tests::plan(crate::loadgen::plan::Endpoint::Chat, true);
    plan.urls = vec![llm.clone()];
    plan.steps[0].concurrency = Some(8);
    plan.stop = crate::loadgen::plan::StopCondition::DurationMs(1500);
    plan.extra_body
        .insert("max_tokens".into(), serde_json::json!(50));

    let mut telemetry = GpuTelemetry::default();
    let t0 = Instant::now();
    let scrape = {
        let dcgm = dcgm.clone();
        async move |t: &mut GpuTelemetry| {
            let body = get(&format!("{dcgm}/metrics")).await;
            t.ingest(
                "sim",
                t0.elapsed().as_secs_f64(),
                body.as_bytes(),
                Format::Prometheus,
            );
        }
    };
    scrape(&mut telemetry).await;
    let truth0: serde_json::Value =
        serde_json::from_str(&get(&format!("{dcgm}/sim/truth?history=0")).await).unwrap();
    let load = tokio::spawn(async move { crate::loadgen::engine::run(&plan, 0, None).await });
    while !load.is_finished() {
        scrape(&mut telemetry).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = load.await.unwrap().unwrap();
    assert!(r[0].successes > 20, "{:?}", r[0].error_samples);
    // One more update after the load, then the closing scrape.
    let published = node.lock().unwrap().gpus[0].snapshot.energy_mj;
    until("an update after the load", async || {
        node.lock().unwrap().gpus[0].snapshot.energy_mj > published
    })
    .await;
    scrape(&mut telemetry).await;
    let truth1: serde_json::Value =
        serde_json::from_str(&get(&format!("{dcgm}/sim/truth")).await).unwrap();

    let served = &truth1["gpus"][0];
    let idle = &truth1["gpus"][1];
    assert_eq!(served["pod"]["name"], "llm-0");
    let e = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let served_j =
        (e(served, "exportedEnergyMj") - e(&truth0["gpus"][0], "exportedEnergyMj")) / 1e3;
    let idle_j = (e(idle, "exportedEnergyMj") - e(&truth0["gpus"][1], "exportedEnergyMj")) / 1e3;
    assert!(
        served_j > 2.0 * idle_j,
        "served {served_j} J, idle {idle_j} J"
    );
    // The history is the exact integral; the exported counter is it at updates.
    let history = served["history"].as_array().unwrap();
    assert!(history.len() > 50);
    let last = history.last().unwrap()[1].as_f64().unwrap();
    assert_eq!(last, e(served, "energyMj"));

    // The telemetry engine, fed the scrapes, gets the counter's delta.
    let results: Vec<_> = telemetry.gpus.iter().map(|g| g.result()).collect();
    let by_pod = results.iter().find(|g| !g.pods.is_empty()).unwrap();
    let energy = by_pod.energy.as_ref().unwrap();
    assert!(
        (energy.joules - served_j).abs() < 1e-3 * served_j,
        "engine {} J, simulator {served_j} J",
        energy.joules
    );
    assert!(energy.avg_power_w > 70.0 && energy.avg_power_w < 700.0);
    let util = by_pod
        .metrics
        .iter()
        .find(|m| m.key == "gpu_utilization")
        .unwrap();
    assert!(util.stats.as_ref().unwrap().max > 90.0, "{util:?}");
}

/// `/sim/restart`: `/metrics` answers 503 while the exporter restarts, the
/// first page after it comes with a refresh, and the energy counter has
/// gone on counting meanwhile (the driver's, not the exporter's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_exporter_is_down_then_counts_on() {
    let o = opts(&[
        "--gpus",
        "1",
        "--tick",
        "20ms",
        "--update-interval",
        "100ms",
    ]);
    let node = Arc::new(Mutex::new(new_node(&o, &shape(1), Vec::new())));
    tokio::spawn(simulate(node.clone(), o.tick, o.update_interval));
    let dcgm = serve(router(node.clone())).await;
    let energy = |page: &str| -> f64 {
        page.lines()
            .find(|l| l.starts_with("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .expect("an energy counter on the page")
    };
    let before = energy(&get(&format!("{dcgm}/metrics")).await);
    let restart = format!("{dcgm}/sim/restart?downS=");
    assert_eq!(status_of("POST", &format!("{restart}99")).await, 400);
    assert_eq!(status_of("POST", &format!("{restart}0.3")).await, 200);
    assert_eq!(status_of("GET", &format!("{dcgm}/metrics")).await, 503);
    until("the exporter to be back", async || {
        status_of("GET", &format!("{dcgm}/metrics")).await == 200
    })
    .await;
    let after = energy(&get(&format!("{dcgm}/metrics")).await);
    // An idle GPU draws 70 W: 0.3 s or more of it, counted on.
    assert!(
        after - before >= 70.0 * 0.3 * 1e3 * 0.9,
        "{before} -> {after}"
    );
    let truth: serde_json::Value =
        serde_json::from_str(&get(&format!("{dcgm}/sim/truth?history=0")).await).unwrap();
    assert!(truth["gpus"][0]["energyMj"].as_f64().unwrap() >= after);
}
