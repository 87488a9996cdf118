//! Peak figures of known GPU models, for the profiling estimates (MBU, MFU).
//!
//! Figures are the vendors' published dense (no sparsity) numbers: memory
//! bandwidth in GB/s, FP16/BF16 tensor throughput in TFLOPS, board power in W.
//! Anything derived from them is an estimate and is labelled so.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuPeak {
    /// The model as the table names it.
    pub model: &'static str,
    #[serde(rename = "memoryBandwidthGBps")]
    pub memory_bandwidth_gbps: f64,
    pub fp16_tensor_tflops: f64,
    pub board_power_w: f64,
}

/// `(tokens that must all appear in the model name, peak)`, most specific first.
const TABLE: &[(&[&str], GpuPeak)] = &[
    (&["GB200"], peak("GB200", 8000.0, 2500.0, 1200.0)),
    (&["B200"], peak("B200", 8000.0, 2250.0, 1000.0)),
    (&["GH200"], peak("GH200", 4000.0, 989.0, 1000.0)),
    (&["H200"], peak("H200", 4800.0, 989.0, 700.0)),
    (&["H100", "PCIE"], peak("H100 PCIe", 2000.0, 756.0, 350.0)),
    (&["H100", "NVL"], peak("H100 NVL", 3900.0, 835.0, 400.0)),
    (&["H100"], peak("H100 SXM", 3350.0, 989.0, 700.0)),
    (&["H20"], peak("H20", 4000.0, 148.0, 400.0)),
    (&["H800"], peak("H800 SXM", 3350.0, 989.0, 700.0)),
    (
        &["A100", "80GB", "PCIE"],
        peak("A100 80GB PCIe", 1935.0, 312.0, 300.0),
    ),
    (
        &["A100", "80GB"],
        peak("A100 80GB SXM", 2039.0, 312.0, 400.0),
    ),
    (
        &["A100", "PCIE"],
        peak("A100 40GB PCIe", 1555.0, 312.0, 250.0),
    ),
    (&["A100"], peak("A100 40GB SXM", 1555.0, 312.0, 400.0)),
    (&["A30"], peak("A30", 933.0, 165.0, 165.0)),
    (&["L40S"], peak("L40S", 864.0, 362.0, 350.0)),
    (&["L40"], peak("L40", 864.0, 181.0, 300.0)),
    (&["L4"], peak("L4", 300.0, 121.0, 72.0)),
    (&["A10G"], peak("A10G", 600.0, 70.0, 300.0)),
    (&["A10"], peak("A10", 600.0, 125.0, 150.0)),
    (&["T4"], peak("T4", 320.0, 65.0, 70.0)),
    (&["V100"], peak("V100", 900.0, 125.0, 300.0)),
];

const fn peak(model: &'static str, bw: f64, tflops: f64, power: f64) -> GpuPeak {
    GpuPeak {
        model,
        memory_bandwidth_gbps: bw,
        fp16_tensor_tflops: tflops,
        board_power_w: power,
    }
}

/// The peak figures for a dcgm-exporter `modelName` ("NVIDIA H100 80GB HBM3",
/// "NVIDIA A100-SXM4-80GB", "Tesla T4"...), when the model is known.
pub fn lookup(model_name: &str) -> Option<&'static GpuPeak> {
    let upper = model_name.to_ascii_uppercase();
    let tokens: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    TABLE
        .iter()
        .find(|(needles, _)| needles.iter().all(|n| tokens.contains(n)))
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::lookup;

    #[test]
    fn model_names_as_exporters_write_them() {
        let m = |s: &str| lookup(s).map(|p| p.model);
        assert_eq!(m("NVIDIA H100 80GB HBM3"), Some("H100 SXM"));
        assert_eq!(m("NVIDIA H100 PCIe"), Some("H100 PCIe"));
        assert_eq!(m("NVIDIA H100 NVL"), Some("H100 NVL"));
        assert_eq!(m("NVIDIA H200"), Some("H200"));
        assert_eq!(m("NVIDIA GH200 480GB"), Some("GH200"));
        assert_eq!(m("NVIDIA GB200"), Some("GB200"));
        assert_eq!(m("NVIDIA B200"), Some("B200"));
        assert_eq!(m("NVIDIA A100-SXM4-80GB"), Some("A100 80GB SXM"));
        assert_eq!(m("NVIDIA A100 80GB PCIe"), Some("A100 80GB PCIe"));
        assert_eq!(m("NVIDIA A100-PCIE-40GB"), Some("A100 40GB PCIe"));
        assert_eq!(m("NVIDIA L40S"), Some("L40S"));
        assert_eq!(m("NVIDIA L4"), Some("L4"));
        assert_eq!(m("NVIDIA A10G"), Some("A10G"));
        assert_eq!(m("Tesla T4"), Some("T4"));
        assert_eq!(m("Simulated GPU"), None);
    }
}
