//! A `/metrics` page in dcgm-exporter's format — its metric names, HELP texts,
//! types and label set (`gpu`, `UUID`, `pci_bus_id`, `device`, `modelName`,
//! `Hostname`, `DCGM_FI_DRIVER_VERSION`, then `container`, `namespace`, `pod` on a
//! GPU a pod holds; the XID field adds `err_code` and `err_msg` before those),
//! as in the captured pages under `shared/fixtures` — written
//! by both the GPU simulator and the NVML exporter.
//!
//! `DCGM_FI_PROF_PCIE_*_BYTES` and `DCGM_FI_PROF_NVLINK_*_BYTES` are declared
//! `counter` as dcgm-exporter's default field list declares them, and hold what
//! DCGM defines them to be: bytes per second.

use std::collections::BTreeMap;

use super::{NumberStyle, Page};
use crate::scrape::Kind;

/// The identity labels of one GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub gpu: usize,
    pub uuid: String,
    pub pci_bus_id: String,
    pub device: String,
    pub model_name: String,
    pub hostname: String,
    pub driver_version: String,
}

/// A pod, as dcgm-exporter labels the GPUs it holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub container: String,
}

/// One field: its name, HELP text and type.
pub struct Field {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

const fn field(name: &'static str, help: &'static str, kind: Kind) -> Field {
    Field { name, help, kind }
}

/// Every field either producer writes, in dcgm-exporter's order.
#[rustfmt::skip]
pub const FIELDS: &[Field] = &[
    field("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", Kind::Gauge),
    field("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", Kind::Gauge),
    field("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", Kind::Gauge),
    field("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", Kind::Gauge),
    field("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", Kind::Gauge),
    field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy consumption since boot (in mJ).", Kind::Counter),
    field("DCGM_FI_DEV_POWER_MGMT_LIMIT", "", Kind::Gauge),
    field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.", Kind::Counter),
    field("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", Kind::Gauge),
    field("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", Kind::Gauge),
    field("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", Kind::Gauge),
    field("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", Kind::Gauge),
    field("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", Kind::Gauge),
    field("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", Kind::Gauge),
    field("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", Kind::Gauge),
    field("DCGM_FI_DEV_FB_TOTAL", "", Kind::Gauge),
    field("DCGM_FI_DEV_FAN_SPEED", "", Kind::Gauge),
    field("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "", Kind::Gauge),
    field("DCGM_FI_DEV_POWER_VIOLATION", "Throttling duration due to power constraints (in us).", Kind::Counter),
    field("DCGM_FI_DEV_THERMAL_VIOLATION", "Throttling duration due to thermal constraints (in us).", Kind::Counter),
    field("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.", Kind::Counter),
    field("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", Kind::Counter),
    field("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.", Kind::Gauge),
    field("DCGM_FI_PROF_SM_ACTIVE", "The ratio of cycles an SM has at least 1 warp assigned.", Kind::Gauge),
    field("DCGM_FI_PROF_SM_OCCUPANCY", "The ratio of number of warps resident on an SM.", Kind::Gauge),
    field("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor (HMMA) pipe is active.", Kind::Gauge),
    field("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active sending or receiving data (in %).", Kind::Gauge),
    field("DCGM_FI_PROF_PCIE_TX_BYTES", "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second.", Kind::Counter),
    field("DCGM_FI_PROF_PCIE_RX_BYTES", "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second.", Kind::Counter),
    field("DCGM_FI_PROF_NVLINK_TX_BYTES", "The rate of data transmitted over NVLink, not including protocol headers, in bytes per second.", Kind::Counter),
    field("DCGM_FI_PROF_NVLINK_RX_BYTES", "The rate of data received over NVLink, not including protocol headers, in bytes per second.", Kind::Counter),
];

/// A GPU's values by field name; a field it has no value for is not written.
pub type Values = BTreeMap<&'static str, f64>;

/// One GPU of the page.
pub struct Row<'a> {
    pub id: &'a Identity,
    pub pod: Option<&'a PodRef>,
    pub values: &'a Values,
}

/// The page: every field some GPU has a value for, each GPU's sample under it.
pub fn render(rows: &[Row<'_>]) -> String {
    let mut page = Page::new(NumberStyle::Go);
    for f in FIELDS {
        if !rows.iter().any(|r| r.values.contains_key(f.name)) {
            continue;
        }
        page.family(f.name, f.help, f.kind);
        for r in rows {
            let Some(v) = r.values.get(f.name) else {
                continue;
            };
            let id = r.id;
            let gpu = id.gpu.to_string();
            let mut labels: Vec<(&str, &str)> = vec![
                ("gpu", &gpu),
                ("UUID", &id.uuid),
                ("pci_bus_id", &id.pci_bus_id),
                ("device", &id.device),
                ("modelName", &id.model_name),
                ("Hostname", &id.hostname),
                ("DCGM_FI_DRIVER_VERSION", &id.driver_version),
            ];
            // dcgm-exporter names the XID in two more labels, before the pod's.
            let code;
            if f.name == "DCGM_FI_DEV_XID_ERRORS" {
                code = (*v as u64).to_string();
                labels.extend([
                    ("err_code", code.as_str()),
                    ("err_msg", crate::telemetry::xid::describe(*v as u64)),
                ]);
            }
            if let Some(p) = r.pod {
                labels.extend([
                    ("container", p.container.as_str()),
                    ("namespace", p.namespace.as_str()),
                    ("pod", p.name.as_str()),
                ]);
            }
            page.sample(f.name, &labels, *v);
        }
    }
    page.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::dcgm::field as known;

    #[test]
    fn every_field_is_one_the_telemetry_engine_knows() {
        for f in FIELDS {
            assert!(
                known(f.name).is_some(),
                "{} is not in the DCGM table",
                f.name
            );
        }
    }

    #[test]
    fn fields_without_values_are_left_out() {
        let id = Identity {
            gpu: 0,
            uuid: "GPU-1".into(),
            pci_bus_id: "00000000:18:00.0".into(),
            device: "nvidia0".into(),
            model_name: "M".into(),
            hostname: "h".into(),
            driver_version: "1".into(),
        };
        let values = Values::from([("DCGM_FI_DEV_GPU_UTIL", 42.0)]);
        let page = render(&[Row {
            id: &id,
            pod: None,
            values: &values,
        }]);
        assert_eq!(page.matches("# TYPE").count(), 1, "{page}");
        assert!(page.contains("DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"GPU-1\""));
        assert!(page.ends_with("} 42\n"));
    }
}
