use super::*;
use crate::telemetry::report::{EnergySource, Workload};

/// A dcgm-exporter page for `gpus` GPUs (power `p` W each,
/// energy counter `e` mJ), shaped like the captured fixtures.
fn page(gpus: u32, p: f64, e: f64) -> String {
    let mut s = String::from(
        "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).\n# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n",
    );
    let labels = |g: u32| {
        format!(
            "gpu=\"{g}\",UUID=\"GPU-{g}\",pci_bus_id=\"0000:0{g}:00.0\",device=\"nvidia{g}\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node-a\",DCGM_FI_DRIVER_VERSION=\"570.1\""
        )
    };
    for g in 0..gpus {
        s += &format!("DCGM_FI_DEV_POWER_USAGE{{{}}} {p}\n", labels(g));
    }
    s += "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n";
    for g in 0..gpus {
        s += &format!(
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{}}} {e}\n",
            labels(g)
        );
    }
    s
}

#[test]
fn energy_from_the_counter_with_its_uncertainty() {
    let mut t = GpuTelemetry::default();
    // 400 W for 10 s, scraped each second: +4000 J = +4e6 mJ.
    for k in 0..=10 {
        let body = page(2, 400.0, 1e9 + f64::from(k) * 400_000.0);
        let r = t.ingest(
            "http://a:9400/metrics",
            f64::from(k),
            body.as_bytes(),
            Format::Prometheus,
        );
        assert_eq!(r.skipped, 0);
    }
    assert_eq!(t.gpus.len(), 2);
    let r = t.gpus[0].result();
    let e = r.energy.unwrap();
    assert_eq!(e.source, EnergySource::Counter);
    assert!((e.joules - 4000.0).abs() < 1e-6);
    assert_eq!(e.avg_power_w, 400.0);
    assert_eq!(r.update_period_s, Some(1.0));
    assert_eq!(e.uncertainty_j, Some(400.0));
    assert!(!r.stale);
    assert_eq!(r.identity.model.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(r.identity.uuid.as_deref(), Some("GPU-0"));
}

#[test]
fn a_stale_exporter_is_detected() {
    let mut t = GpuTelemetry::default();
    // Refreshed every 5 scrapes.
    for k in 0..=30u32 {
        let body = page(1, 300.0 + f64::from(k / 5), 1e6 + f64::from(k / 5) * 1.5e6);
        t.ingest("e", f64::from(k), body.as_bytes(), Format::Prometheus);
    }
    let r = t.gpus[0].result();
    assert_eq!(r.update_period_s, Some(5.0));
    assert!(r.stale);
    let e = r.energy.unwrap();
    assert!((e.uncertainty_j.unwrap() - e.avg_power_w * 5.0).abs() < 1e-9);
}

#[test]
fn power_integration_when_there_is_no_counter() {
    let mut t = GpuTelemetry::default();
    for (k, p) in [100.0, 200.0, 300.0].iter().enumerate() {
        let body = format!("DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"U\"}} {p}\n");
        t.ingest("e", k as f64 * 2.0, body.as_bytes(), Format::Prometheus);
    }
    let e = t.gpus[0].result().energy.unwrap();
    assert_eq!(e.source, EnergySource::PowerIntegral);
    // Trapezoids: (100+200)/2*2 + (200+300)/2*2.
    assert_eq!(e.joules, 800.0);
}

#[test]
fn same_gpu_from_two_exporters_and_repeats_count_once() {
    let mut t = GpuTelemetry::default();
    let a = "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"U\",pod=\"p1\",namespace=\"ns\"} 50\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"U\",pod=\"p2\",namespace=\"ns\"} 50\n";
    t.ingest("a", 0.0, a.as_bytes(), Format::Prometheus);
    t.ingest("b", 0.0, a.as_bytes(), Format::Prometheus);
    assert_eq!(t.gpus.len(), 1);
    assert_eq!(t.counts.repeats, 1);
    assert_eq!(t.counts.other_exporter, 2);
    let g = &t.gpus[0];
    let pods: Vec<_> = g.pods.iter().map(|p| p.pod.as_str()).collect();
    assert_eq!(pods, ["p1", "p2"]);
    let Some(FieldAgg::Gauge(u)) = g.field("gpu_utilization") else {
        panic!()
    };
    assert_eq!(u.stats.count(), 1);
}

#[test]
fn blanks_are_filtered_and_keys_fall_back() {
    let mut t = GpuTelemetry::default();
    let body = "DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",Hostname=\"h\"} 2147483632\nDCGM_FI_DEV_GPU_TEMP{gpu=\"1\",Hostname=\"h\"} 40\nDCGM_FI_PROF_SM_ACTIVE 0.5\nDCGM_FI_DEV_POWER_USAGE{gpu=\"2\",Hostname=\"h\"} 140737488355328\nnot_dcgm 1\n";
    t.ingest("e", 0.0, body.as_bytes(), Format::Prometheus);
    assert_eq!(t.counts.blanks, 2);
    assert_eq!(t.counts.not_dcgm, 1);
    let keys: Vec<_> = t.gpus.iter().map(|g| g.key.as_str()).collect();
    assert_eq!(keys, ["h/1", "e#"]);
    let sm = t.gpus[1].result().metrics;
    assert_eq!(sm[0].key, "sm_active");
    assert_eq!(sm[0].stats.as_ref().unwrap().mean, 50.0);
}

#[test]
fn mig_slices_are_separate_gpus() {
    let mut t = GpuTelemetry::default();
    let body = "DCGM_FI_DEV_FB_USED{gpu=\"0\",UUID=\"U\",GPU_I_ID=\"1\",GPU_I_PROFILE=\"1g.10gb\"} 10\nDCGM_FI_DEV_FB_USED{gpu=\"0\",UUID=\"U\",GPU_I_ID=\"2\",GPU_I_PROFILE=\"1g.10gb\"} 20\n";
    t.ingest("e", 0.0, body.as_bytes(), Format::Prometheus);
    assert_eq!(t.gpus.len(), 2);
    assert_eq!(t.gpus[1].identity.mig_instance.as_deref(), Some("2"));
    assert_eq!(t.gpus[1].identity.mig_profile.as_deref(), Some("1g.10gb"));
}

#[test]
fn profiling_estimates_classification_and_warnings() {
    let mut t = GpuTelemetry::default();
    let l = "{gpu=\"0\",UUID=\"U\",modelName=\"NVIDIA H100 80GB HBM3\"}";
    for k in 0..4u32 {
        let body = format!(
            "DCGM_FI_PROF_DRAM_ACTIVE{l} 0.8\nDCGM_FI_PROF_PIPE_TENSOR_ACTIVE{l} 0.2\n\
             DCGM_FI_PROF_PCIE_TX_BYTES{l} {}\nDCGM_FI_PROF_NVLINK_RX_BYTES{l} {}\n\
             DCGM_FI_DEV_GPU_TEMP{l} 85\nDCGM_FI_DEV_FB_USED{l} 79000\nDCGM_FI_DEV_FB_FREE{l} 1000\n\
             DCGM_FI_DEV_XID_ERRORS{l} {}\nDCGM_FI_DEV_CLOCK_THROTTLE_REASONS{l} {}\n",
            f64::from(k) * 2e9,
            if k % 2 == 0 { 1e9 } else { 3e9 },
            if k == 2 { 79 } else { 0 },
            if k == 1 { 0x4 } else { 0x1 },
        );
        t.ingest("e", f64::from(k), body.as_bytes(), Format::Prometheus);
    }
    let r = t.gpus[0].result();
    let p = r.profile.unwrap();
    assert_eq!(p.peak_model.as_deref(), Some("H100 SXM"));
    assert!((p.mbu_pct.unwrap() - 80.0).abs() < 1e-9);
    assert!((p.dram_bandwidth_gbps.unwrap() - 0.8 * 3350.0).abs() < 1e-6);
    assert!((p.tensor_tflops.unwrap() - 0.2 * 989.0).abs() < 1e-6);
    assert_eq!(p.workload, Some(Workload::MemoryBound));
    // TX only grew: a counter, 2 GB/s. RX went up and down: a rate, mean 2 GB/s.
    assert!((p.pcie_tx_gbps.unwrap() - 2.0).abs() < 1e-9);
    assert!((p.nvlink_rx_gbps.unwrap() - 2.0).abs() < 1e-9);
    let w = r.warnings.join("; ");
    assert!(w.contains("85 °C"), "{w}");
    assert!(w.contains("98.8% full"), "{w}");
    assert!(
        w.contains("XID error 79 reported (GPU has fallen off the bus)"),
        "{w}"
    );
    assert!(w.contains("power throttling"), "{w}");
    assert!(!w.contains("thermal"), "{w}");
}

#[test]
fn low_utilisation_and_power_at_the_limit_are_warned_of() {
    let gpu = |util: f64, power: f64| {
        let mut t = GpuTelemetry::default();
        let l = "{gpu=\"0\",UUID=\"U\"}";
        for k in 0..3 {
            let body = format!(
                "DCGM_FI_DEV_GPU_UTIL{l} {util}\nDCGM_FI_DEV_POWER_USAGE{l} {power}\nDCGM_FI_DEV_ENFORCED_POWER_LIMIT{l} 700\n"
            );
            t.ingest("e", f64::from(k), body.as_bytes(), Format::Prometheus);
        }
        t.gpus[0].result().warnings.join("; ")
    };
    let w = gpu(30.0, 690.0);
    assert!(w.contains("utilisation averaged 30 %"), "{w}");
    assert!(w.contains("690 W, 99 % of its 700 W limit"), "{w}");
    assert_eq!(
        gpu(90.0, 500.0),
        "",
        "busy and below its limit: nothing to say"
    );
}

#[test]
fn a_gpu_read_back_from_json_keeps_aggregating() {
    let mut t = GpuTelemetry::default();
    let body = "DCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"U\"} 10\nDCGM_FI_DEV_SM_CLOCK{gpu=\"0\",UUID=\"U\"} 1500\n";
    t.ingest("e", 0.0, body.as_bytes(), Format::Prometheus);
    let json = serde_json::to_string(&t.gpus[0]).unwrap();
    let mut back: GpuSeries = serde_json::from_str(&json).unwrap();
    let i = dcgm::field_index("DCGM_FI_DEV_SM_CLOCK").unwrap();
    let slot = field_slot(&mut back, i, true).unwrap();
    assert_eq!(back.fields[slot].id, FieldId::Known(i));
    assert_eq!(back.fields.len(), 2, "no second SM clock series");
}

#[test]
fn a_gpu_names_at_most_max_pods_per_gpu() {
    let mut t = GpuTelemetry::default();
    let mut page = String::new();
    for i in 0..(MAX_PODS_PER_GPU + 36) {
        page.push_str(&format!(
            "DCGM_FI_DEV_GPU_UTIL{{gpu=\"0\",UUID=\"GPU-a\",namespace=\"ns\",pod=\"p{i}\"}} 50\n"
        ));
    }
    t.ingest("a", 0.0, page.as_bytes(), Format::Prometheus);
    assert_eq!(t.gpus.len(), 1);
    assert_eq!(t.gpus[0].pods.len(), MAX_PODS_PER_GPU);
    assert_eq!(t.gpus[0].pods[0].pod, "p0", "the first ones named are kept");
}

/// GPUs past the bound are refused and counted apart from fields past
/// theirs: such a GPU is not measured at all.
#[test]
fn gpus_past_the_bound_are_counted_as_refused_gpus() {
    let mut t = GpuTelemetry::default();
    let extra = 3;
    let body = page(MAX_GPUS as u32 + extra, 300.0, 1_000.0);
    t.ingest(
        "http://e:9400/metrics",
        0.0,
        body.as_bytes(),
        Format::Prometheus,
    );
    assert_eq!(t.gpus.len(), MAX_GPUS);
    // Power and energy of each GPU past the bound.
    assert_eq!(t.counts.gpus_refused, 2 * u64::from(extra));
    assert_eq!(t.counts.over_limit, 0);
}

/// The step's field series are bounded in all, whatever the GPUs and fields
/// an exporter invents; label text longer than a Kubernetes name is not kept.
#[test]
fn field_series_past_the_steps_budget_and_overlong_labels_are_refused() {
    let mut t = GpuTelemetry::default();
    // 700 GPUs of 50 invented fields: 35 000 series, past the budget.
    let mut page = String::new();
    for f in 0..50 {
        for g in 0..700 {
            page += &format!("DCGM_FI_DEV_INVENTED_{f}{{gpu=\"{g}\",UUID=\"GPU-{g}\"}} 1\n");
        }
    }
    t.ingest("e", 0.0, page.as_bytes(), Format::Prometheus);
    let kept: usize = t.gpus.iter().map(|g| g.fields.len()).sum();
    assert_eq!(kept, MAX_GPU_SERIES);
    assert_eq!(t.counts.over_limit, (700 * 50 - MAX_GPU_SERIES) as u64);
    // A restored step keeps counting from where it was.
    let back = GpuTelemetry::restore(t.snapshot());
    assert_eq!(back.series, MAX_GPU_SERIES);

    let mut t = GpuTelemetry::default();
    let long = "p".repeat(MAX_TEXT + 1);
    let page = format!(
        "DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"GPU-0\",modelName=\"{long}\",pod=\"{long}\",namespace=\"ns\"}} 300\n\
         DCGM_FI_DEV_{long}{{gpu=\"0\",UUID=\"GPU-0\"}} 1\n\
         DCGM_FI_DEV_POWER_USAGE{{gpu=\"1\",UUID=\"{long}{long}\"}} 300\n"
    );
    t.ingest("e", 0.0, page.as_bytes(), Format::Prometheus);
    assert_eq!(t.gpus.len(), 1, "a GPU key past the bound is refused");
    assert_eq!(t.counts.gpus_refused, 1);
    let gpu = &t.gpus[0];
    assert_eq!(gpu.identity.model.as_deref().map(str::len), Some(MAX_TEXT));
    assert!(gpu.pods.is_empty(), "no pod of an impossible name");
    assert_eq!(gpu.fields.len(), 1, "the overlong field name is refused");
    assert_eq!(t.counts.over_limit, 1);
}

#[test]
fn refreshes_show_in_the_energy_counter_even_when_idle_power_does_not_move() {
    let mut t = GpuTelemetry::default();
    // Refreshed every third scrape; idle power reads 70 W at every refresh.
    let mut seen = Vec::new();
    for k in 0..=6u32 {
        let body = page(1, 70.0, 1e6 + f64::from(k / 3) * 210_000.0);
        t.ingest("e", f64::from(k), body.as_bytes(), Format::Prometheus);
        seen.push(t.gpus[0].refreshes());
    }
    assert_eq!(seen, [0, 0, 0, 1, 1, 1, 2]);
    // Without a counter a constant reading shows no refresh; a changing one does.
    let mut t = GpuTelemetry::default();
    for (k, p) in [70.0, 70.0, 71.5, 71.5, 70.5].iter().enumerate() {
        let body = format!("DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"U\"}} {p}\n");
        t.ingest("e", k as f64, body.as_bytes(), Format::Prometheus);
    }
    assert_eq!(t.gpus[0].refreshes(), 2);
    let mut t = GpuTelemetry::default();
    for k in 0..5 {
        let body = "DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"U\"} 70\n";
        t.ingest("e", f64::from(k), body.as_bytes(), Format::Prometheus);
    }
    assert_eq!(t.gpus[0].refreshes(), 0);
}
