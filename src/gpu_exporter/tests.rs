use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::scrape::{Entry, Format, Kind, Parser};
use crate::telemetry::GpuTelemetry;

/// Two GPUs whose energy counter grows by a step on every read; the second has
/// seen XID 79.
struct Fake {
    reads: AtomicU64,
}

impl GpuSource for Fake {
    fn driver_version(&self) -> String {
        "570.124.06".into()
    }

    fn read_all(&self) -> Result<Readings, String> {
        let n = self.reads.fetch_add(1, Ordering::Relaxed) as f64;
        let gpus = (0..2u32)
            .map(|i| Reading {
                index: i,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: format!("GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd"),
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + i),
                values: Values::from([
                    ("DCGM_FI_DEV_POWER_USAGE", 300.5),
                    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1e6 + n * 300_500.0),
                    ("DCGM_FI_DEV_GPU_UTIL", 87.0),
                    ("DCGM_FI_DEV_FB_USED", 40_000.0),
                    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", 700.0),
                    ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", 0.0),
                    ("DCGM_FI_PROF_PCIE_TX_BYTES", 1024.0 * 350.0),
                    ("DCGM_FI_DEV_XID_ERRORS", if i == 1 { 79.0 } else { 0.0 }),
                ]),
            })
            .collect();
        Ok(Readings {
            gpus,
            unreadable: Vec::new(),
        })
    }
}

fn fake() -> Fake {
    Fake {
        reads: AtomicU64::new(0),
    }
}

#[test]
fn the_page_reads_as_dcgm_exporters_with_the_same_types() {
    let readings = fake().read_all().unwrap().gpus;
    let text = page(&readings, &Holders::new(), "node-a", "570.124.06", &[]);
    let mut t = GpuTelemetry::default();
    let report = t.ingest("e", 0.0, text.as_bytes(), Format::Prometheus);
    assert_eq!(report.skipped, 0);
    assert_eq!(t.gpus.len(), 2);
    assert_eq!(t.gpus[0].identity.hostname.as_deref(), Some("node-a"));
    assert_eq!(t.counts.not_dcgm, 0);
    // Types as in the captured dcgm-exporter pages.
    let fixtures =
        std::env::var("BENCHRUN_FIXTURES").unwrap_or_else(|_| "../shared/fixtures/metrics".into());
    if let Ok(real) = std::fs::read_to_string(format!("{fixtures}/datadog-dcgm-t4-edgecases.txt")) {
        let types = |p: &str| -> Vec<(String, Kind)> {
            Parser::new(p.as_bytes(), Format::Prometheus)
                .filter_map(|e| match e {
                    Entry::Type { name, kind } => Some((name.to_string(), kind)),
                    _ => None,
                })
                .collect()
        };
        let theirs = types(&real);
        for (name, kind) in types(&text) {
            if let Some((_, k)) = theirs.iter().find(|(n, _)| *n == name) {
                assert_eq!(*k, kind, "{name}");
            }
        }
    }
    // The XID, named as dcgm-exporter names it, reaches the run's warnings.
    assert!(text.contains(",err_code=\"79\",err_msg=\"GPU has fallen off the bus\"} 79\n"));
    assert!(text.contains(",err_code=\"0\",err_msg=\"No Error\"} 0\n"));
    let warned = |g: usize| t.gpus[g].result().warnings.join("; ");
    assert!(warned(1).contains("XID error 79 reported (GPU has fallen off the bus)"));
    assert!(!warned(0).contains("XID"), "{}", warned(0));
    let only = page(
        &readings,
        &Holders::new(),
        "h",
        "d",
        &["DCGM_FI_DEV_GPU_UTIL".to_string()],
    );
    assert_eq!(only.matches("# TYPE").count(), 1);
}

#[test]
fn field_selection_is_checked() {
    assert!(check_fields(&["DCGM_FI_DEV_GPU_UTIL".into()]).is_ok());
    let e = check_fields(&["DCGM_FI_DEV_NOPE".into()]).unwrap_err();
    assert!(e.contains("unknown field") && e.contains("DCGM_FI_DEV_GPU_UTIL"));
}

fn opts(pod_resources: PathBuf) -> GpuExporterOpts {
    GpuExporterOpts {
        host: None,
        port: 0,
        interval: Duration::from_secs(1),
        fields: Vec::new(),
        hostname: Some("node-a".into()),
        pod_resources,
        no_pod_labels: false,
    }
}

fn energy(text: &str) -> f64 {
    Parser::new(text.as_bytes(), Format::Prometheus)
        .find_map(|e| match e {
            Entry::Sample(s) if s.name == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" => Some(s.value),
            _ => None,
        })
        .unwrap()
}

#[tokio::test]
async fn served_snapshots_refresh_and_the_energy_counter_grows() {
    // No kubelet socket here: the pages go out without pod labels.
    let mut reader = Reader::new(&opts("/nonexistent/kubelet.sock".into()), Arc::new(fake()));
    let url = crate::net::testing::start(router(reader.latest.clone())).await;
    let client = crate::net::client::http_client(1);
    let early = client
        .get(format!("{url}/metrics").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(early.status(), 503, "nothing read yet");
    let mut energies = Vec::new();
    for _ in 0..3 {
        reader.read().await;
        let text = crate::net::testing::get(&format!("{url}/metrics")).await;
        assert!(!text.contains("pod=\""), "{text}");
        energies.push(energy(&text));
    }
    assert!(energies.windows(2).all(|w| w[1] > w[0]), "{energies:?}");
}

#[tokio::test]
async fn gpus_pods_hold_carry_the_pods_labels_and_the_engine_attributes_them() {
    use super::pods::ListPodResourcesResponse;
    use super::pods::tests::{devices, kubelet, pod};
    let gpu = |i: u32| format!("GPU-0000000{i}-aaaa-bbbb-cccc-dddddddddddd");
    let (_dir, socket) = kubelet(ListPodResourcesResponse {
        pod_resources: vec![
            pod(
                "llm",
                "vllm-0",
                "vllm",
                vec![devices("nvidia.com/gpu", &[&gpu(0)])],
            ),
            pod(
                "llm",
                "a",
                "s",
                vec![devices("nvidia.com/gpu", &[&format!("{}::0", gpu(1))])],
            ),
            pod(
                "llm",
                "b",
                "s",
                vec![devices("nvidia.com/gpu", &[&format!("{}::1", gpu(1))])],
            ),
        ],
    })
    .await;
    let mut reader = Reader::new(&opts(socket), Arc::new(fake()));
    reader.read().await;
    let text = reader.latest.lock().unwrap().clone().unwrap();
    assert!(
        text.contains(
            "err_msg=\"No Error\",container=\"vllm\",namespace=\"llm\",pod=\"vllm-0\"} 0\n"
        ),
        "{text}"
    );
    let mut t = GpuTelemetry::default();
    t.ingest("e", 0.0, text.as_bytes(), Format::Prometheus);
    assert_eq!(t.gpus.len(), 2, "a shared GPU is still one GPU");
    let held = |g: usize| -> Vec<String> { t.gpus[g].pods.iter().map(|p| p.pod.clone()).collect() };
    assert_eq!(held(0), ["vllm-0"]);
    assert_eq!(held(1), ["a", "b"], "both time-sliced pods are kept");
    assert_eq!(
        t.counts.repeats, 8,
        "the shared GPU's series are written twice, counted once"
    );
}
