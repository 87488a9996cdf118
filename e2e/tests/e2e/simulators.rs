//! The simulators on the real control plane: `benchrun sim inference` as a pod
//! that requests a GPU, and `benchrun sim dcgm` as the chart's DaemonSet, which
//! finds that pod on its node, labels the pod's GPU with it, and draws power as
//! the pod is loaded while the node's other GPUs idle.

use std::time::Duration;

use benchrun::scrape::fetch::{fetch, scrape_client};
use benchrun::telemetry::GpuTelemetry;
use benchrun_e2e::harness::{TestNamespace, client};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use crate::common::{LONG, OPERATOR_NS, deploy, gpu_sim, ip, pod_of, sim_load};

/// One scrape of the exporter, as the engine sees it.
async fn scrape(url: &str) -> GpuTelemetry {
    let p = fetch(&scrape_client(), url, Duration::from_secs(5), 16 << 20)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let mut t = GpuTelemetry::default();
    t.ingest(url, 0.0, &p.body, p.format);
    t
}

/// Power (W) and utilization (%) of one GPU.
type Reading = (f64, f64);

/// The pod's GPU's reading, and those of the GPUs no pod holds.
fn readings(t: &GpuTelemetry, pod: &str) -> Option<(Reading, Vec<Reading>)> {
    let read = |g: &benchrun::telemetry::GpuSeries| {
        let r = g.result();
        let v = |k: &str| {
            r.metrics
                .iter()
                .find(|m| m.key == k)?
                .stats
                .as_ref()
                .map(|s| s.max)
        };
        Some((v("gpu_power_usage")?, v("gpu_utilization")?))
    };
    let mine = t
        .gpus
        .iter()
        .find(|g| g.pods.iter().any(|p| p.pod == pod))?;
    let others = t
        .gpus
        .iter()
        .filter(|g| g.pods.is_empty())
        .filter_map(read)
        .collect();
    Some((read(mine)?, others))
}

#[tokio::test]
async fn the_dcgm_simulator_follows_the_gpu_pod_on_its_node() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "sims").await.unwrap();
    let server = gpu_sim("llm", "5ms", "2ms", None);
    deploy(&ns, &server).await.unwrap();
    let llm = pod_of(&ns.api::<Pod>(), "app=llm").await;
    let node = llm.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap();
    let llm_name = llm.metadata.name.clone().unwrap();
    let exporters = kube::Api::<Pod>::namespaced(client.clone(), OPERATOR_NS);
    let dcgm = {
        let deadline = tokio::time::Instant::now() + LONG;
        loop {
            let pods = exporters
                .list(&ListParams::default().labels("app=sim-dcgm"))
                .await
                .unwrap();
            let on_node = pods.items.into_iter().find(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node)
                    && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
            });
            if let Some(p) = on_node {
                break p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no sim-dcgm pod on {node}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let metrics = format!("http://{}:9400/metrics", ip(&dcgm));

    // The exporter labels the pod's GPU once it has listed the node's pods.
    let deadline = tokio::time::Instant::now() + LONG;
    let idle = loop {
        if let Ok(p) = fetch(&scrape_client(), &metrics, Duration::from_secs(5), 16 << 20).await {
            let mut t = GpuTelemetry::default();
            t.ingest(&metrics, 0.0, &p.body, p.format);
            if let Some(r) = readings(&t, &llm_name) {
                break (r, t.gpus.len());
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{llm_name} never labelled a GPU"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (((idle_power, _), others), gpus) = idle;
    assert_eq!(gpus, 4, "a 4-GPU node");
    // Other tests' GPU pods may hold some of the rest; at least one is free
    // to show that only the loaded pod's GPU gets busy.
    assert!(
        !others.is_empty(),
        "no free GPU left on {node} to compare with"
    );
    assert!(idle_power < 100.0, "idle power {idle_power}");

    // Load the server; its GPU, and only its GPU, gets busy.
    let plan = sim_load(format!("http://{}:8000", ip(&llm)), 16, 4000, 64);
    let load = tokio::spawn(async move { benchrun::loadgen::engine::run(&plan, 0, None).await });
    let mut busiest = (0.0f64, 0.0f64);
    let mut others_max = 0.0f64;
    while !load.is_finished() {
        if let Some(((p, u), others)) = readings(&scrape(&metrics).await, &llm_name) {
            busiest = (busiest.0.max(p), busiest.1.max(u));
            others_max = others.iter().map(|o| o.0).fold(others_max, f64::max);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = load.await.unwrap().unwrap();
    assert!(r[0].successes > 50, "{:?}", r[0].error_samples);
    assert!(
        busiest.0 > 2.0 * idle_power,
        "power under load {} W",
        busiest.0
    );
    assert!(busiest.1 > 50.0, "utilization under load {} %", busiest.1);
    assert!(others_max < 100.0, "an idle GPU drew {others_max} W");
    ns.delete().await.unwrap();
}
