//! Payloads for the parser benchmarks: the captured fixtures, an 8-GPU
//! dcgm-exporter page with every field benchrun maps, and a large vLLM page.

use std::fmt::Write as _;
use std::path::PathBuf;

use benchrun::telemetry::dcgm::{FIELDS, FieldKind};

/// The captured payloads' folder (`BENCHRUN_FIXTURES` overrides).
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BENCHRUN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/metrics")
        })
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A deterministic spread in 0..1 from a step and a series number.
fn spread(step: u64, series: u64) -> f64 {
    let x = (step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ series.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
        .rotate_left(17);
    (x % 10_000) as f64 / 10_000.0
}

/// A dcgm-exporter page for `gpus` H100s at scrape `step`, with dcgm-exporter's
/// label set and the pod labels it adds when it maps GPUs to pods.
pub fn dcgm_page(gpus: u64, step: u64) -> String {
    let mut s = String::with_capacity(160 * 1024);
    for (fi, f) in FIELDS.iter().enumerate() {
        let kind = if f.kind == FieldKind::Gauge || f.kind == FieldKind::Bitmask {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(
            s,
            "# HELP {} {}.\n# TYPE {} {kind}",
            f.name, f.display, f.name
        );
        for g in 0..gpus {
            let r = spread(step, g * 100 + fi as u64);
            let v = match f.kind {
                FieldKind::Counter | FieldKind::ByteRate => {
                    (step * 1000 + g) as f64 * 350_000.0 * (1.0 + r / 100.0)
                }
                _ => ((r * 700.0) * 1000.0).round() / 1000.0,
            };
            let _ = writeln!(
                s,
                "{}{{gpu=\"{g}\",UUID=\"GPU-{g:08x}-1111-2222-3333-444455556666\",pci_bus_id=\"00000000:{:02X}:00.0\",device=\"nvidia{g}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-node-{}\",DCGM_FI_DRIVER_VERSION=\"570.124.06\",container=\"vllm\",namespace=\"inference\",pod=\"vllm-llama-70b-7d9f8c6b5-x{g}k2p\"}} {v}",
                f.name,
                0x18 + g * 0x10,
                g / 8
            );
        }
    }
    s
}

/// The vLLM fixture with every series repeated for `replicas` models: a large
/// page as a multi-model or multi-LoRA server writes it.
pub fn big_vllm_page(replicas: usize) -> String {
    let text = String::from_utf8(fixture("datadog-vllm-v0-v1-mixed.txt")).expect("UTF-8 fixture");
    let mut s = String::with_capacity(text.len() * replicas);
    for line in text.lines() {
        if line.starts_with('#') || !line.contains("model_name=\"") {
            s.push_str(line);
            s.push('\n');
            continue;
        }
        for r in 0..replicas {
            s.push_str(&line.replace("model_name=\"", &format!("model_name=\"replica-{r}/")));
            s.push('\n');
        }
    }
    s
}

/// Every payload the benchmarks run on: `(name, bytes, is_dcgm)`.
pub fn all() -> Vec<(String, Vec<u8>, bool)> {
    let mut out: Vec<(String, Vec<u8>, bool)> = [
        "aiperf-dcgm-gb200-4gpu.txt",
        "datadog-dcgm-t4-edgecases.txt",
        "datadog-nvidia-nim-llama3.1-8b.txt",
        "datadog-sglang-v0.5.10.txt",
        "datadog-triton-tritonserver-8models.txt",
        "datadog-vllm-v0-v1-mixed.txt",
    ]
    .iter()
    .map(|n| (n.to_string(), fixture(n), n.contains("dcgm")))
    .collect();
    out.push((
        "synthetic-dcgm-h100-8gpu".into(),
        dcgm_page(8, 1).into_bytes(),
        true,
    ));
    out.push((
        "synthetic-vllm-16-models".into(),
        big_vllm_page(16).into_bytes(),
        false,
    ));
    out
}
