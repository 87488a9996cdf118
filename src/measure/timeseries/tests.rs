use super::*;
use crate::scrape::Format;
use crate::telemetry::Filter;

/// A dcgm-exporter page: `gpus` GPUs drawing `p` W, energy counter `e` mJ.
fn page(gpus: u32, p: f64, e: f64) -> String {
    let mut s = String::from("# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n");
    for g in 0..gpus {
        s += &format!("DCGM_FI_DEV_POWER_USAGE{{gpu=\"{g}\",UUID=\"GPU-{g}\"}} {p}\n");
        s += &format!("DCGM_FI_DEV_GPU_UTIL{{gpu=\"{g}\",UUID=\"GPU-{g}\"}} 87\n");
    }
    s += "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n";
    for g in 0..gpus {
        s += &format!("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu=\"{g}\",UUID=\"GPU-{g}\"}} {e}\n");
    }
    s
}

fn server_page(running: f64, tokens: f64) -> String {
    format!(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"m\"}} {running}\n# TYPE vllm:generation_tokens counter\nvllm:generation_tokens_total{{model_name=\"m\"}} {tokens}\n"
    )
}

fn lines(ts: &Timeseries) -> Vec<Record> {
    ts.render()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn energy_of(records: &[Record], step: usize, gpu: &str) -> f64 {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Scrape { step: s, gpus, .. } if *s == step => {
                gpus.iter().find(|p| p.gpu == gpu).and_then(|p| p.energy_j)
            }
            _ => None,
        })
        .sum()
}

/// Two steps scraped every second: each step's records add up to the
/// step's energy as its results give it, per GPU; server counters add up to
/// their increase; gauges are the values read.
#[test]
fn a_steps_records_add_up_to_its_energy() {
    let mut ts = Timeseries::default();
    let mut steps = Vec::new();
    for k in 0..2usize {
        let (mut gpus, mut server) = (
            GpuTelemetry::default(),
            ServerMetrics::new(Filter::default()),
        );
        for i in 0..=20u32 {
            let t = f64::from(i) + 100.0 * k as f64;
            // 300 W, then 500 W in the second step; 1 J = 1000 mJ.
            let watts = 300.0 + 200.0 * k as f64;
            let e = 5e8 + t * watts * 1e3;
            gpus.ingest(
                "http://a:9400/metrics",
                t,
                page(2, watts, e).as_bytes(),
                Format::Prometheus,
            );
            let body = server_page(f64::from(i % 4), 1000.0 + f64::from(i) * 50.0);
            server.ingest(
                "http://vllm:8000/metrics",
                t,
                body.as_bytes(),
                Format::Prometheus,
            );
            ts.scrape(k, t, 1_700_000_000_000 + (t * 1e3) as u64, &gpus, &server);
        }
        steps.push(gpus);
    }
    let records = lines(&ts);
    let Record::Header {
        records: n,
        thinned,
        ..
    } = &records[0]
    else {
        panic!("the header first: {:?}", records[0]);
    };
    assert_eq!((*n, *thinned), (42, 0));
    for (k, gpus) in steps.iter().enumerate() {
        for g in &gpus.gpus {
            let truth = g.result().energy.expect("counter energy").joules;
            let sum = energy_of(&records, k, g.identity.uuid.as_deref().unwrap());
            assert!(
                (sum - truth).abs() < 1e-6,
                "step {k}: {sum} J against {truth} J"
            );
        }
    }
    assert!((energy_of(&records, 0, "GPU-0") - 6000.0).abs() < 1e-6);
    assert!((energy_of(&records, 1, "GPU-1") - 10_000.0).abs() < 1e-6);
    let Record::Scrape { gpus, servers, .. } = &records[5] else {
        panic!()
    };
    assert_eq!(gpus[0].power_w, Some(300.0));
    assert_eq!(gpus[0].utilization_pct, Some(87.0));
    assert_eq!(servers[0].gauges["vllm:num_requests_running"], 0.0);
    let generated: f64 = records
        .iter()
        .filter_map(|r| match r {
            Record::Scrape {
                step: 0, servers, ..
            } => servers[0].counters.get("vllm:generation_tokens").copied(),
            _ => None,
        })
        .sum();
    assert!((generated - 1000.0).abs() < 1e-9, "{generated}");
}

/// Past the cap, records merge two by two and nothing is lost: energy and
/// counters still add up, `n` counts every scrape, the header says so.
#[test]
fn thinning_merges_without_losing_energy() {
    let mut ts = Timeseries::default();
    let mut gpus = GpuTelemetry::default();
    let server = ServerMetrics::new(Filter::default());
    // Two GPU entries a scrape, some 360 bytes: past the cap by half.
    let scrapes = (MAX_BYTES * 3 / 2 / 360) as u32;
    for i in 0..scrapes {
        let t = f64::from(i) * 0.1;
        gpus.ingest(
            "http://a:9400/metrics",
            t,
            page(2, 400.0, t * 400.0 * 1e3).as_bytes(),
            Format::Prometheus,
        );
        ts.scrape(0, t, 0, &gpus, &server);
    }
    let records = lines(&ts);
    let Record::Header {
        thinned,
        records: kept,
        ..
    } = records[0]
    else {
        panic!()
    };
    assert!(thinned >= 1, "thinned {thinned} times");
    assert!(kept * 360 <= MAX_BYTES, "{kept} records");
    let n: u32 = records
        .iter()
        .map(|r| match r {
            Record::Scrape { n, .. } => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(n, scrapes, "every scrape is in some record");
    // One resolution throughout: new records join until they hold as many.
    let held: Vec<u32> = records[1..records.len() - 1]
        .iter()
        .map(|r| match r {
            Record::Scrape { n, .. } => *n,
            _ => 0,
        })
        .collect();
    assert!(held.iter().all(|&h| h == 1 << thinned), "{held:?}");
    let truth = gpus.gpus[0].result().energy.unwrap().joules;
    let sum = energy_of(&records, 0, "GPU-0");
    assert!((sum - truth).abs() < 1e-6 * truth, "{sum} against {truth}");
    let Record::Scrape { gpus: g, .. } = &records[1] else {
        panic!()
    };
    assert_eq!(g[0].power_w, Some(400.0), "gauges are averaged, not summed");
}

/// Progress: totals as they come, rates since the previous record, repeats
/// dropped; merged records keep the later totals and time-weighted rates.
#[test]
fn progress_records_carry_totals_and_rates() {
    let mut ts = Timeseries::default();
    let at = |done, tokens| ClientCounts {
        done,
        ok: done,
        errors: 0,
        output_tokens: tokens,
    };
    ts.progress(1.0, 0, at(0, 0));
    ts.progress(2.0, 0, at(10, 1000));
    ts.progress(2.5, 0, at(10, 1000));
    ts.progress(4.0, 0, at(30, 2000));
    let records = lines(&ts);
    assert_eq!(records.len(), 4, "{records:?}");
    let Record::Progress {
        requests_per_s,
        output_tokens_per_s,
        ..
    } = records[2]
    else {
        panic!()
    };
    assert_eq!((requests_per_s, output_tokens_per_s), (10.0, 1000.0));
    let Record::Progress {
        requests_per_s, dt, ..
    } = records[3]
    else {
        panic!()
    };
    assert_eq!((requests_per_s, dt), (10.0, 2.0));
    let merged = merge(records[2].clone(), records[3].clone()).unwrap();
    let Record::Progress {
        n,
        dt,
        requests_per_s,
        output_tokens_per_s,
        requests_done,
        ..
    } = merged
    else {
        panic!()
    };
    assert_eq!((n, dt, requests_done), (2, 3.0, 30));
    assert!((requests_per_s - 10.0).abs() < 1e-9);
    assert!((output_tokens_per_s - 2000.0 / 3.0).abs() < 1e-9);
}

/// Scrapes of two steps never merge into one record.
#[test]
fn records_of_two_steps_stay_apart() {
    let a = Record::Scrape {
        t: 1.0,
        t_unix_ms: 0,
        step: 0,
        n: 1,
        gpus: vec![],
        servers: vec![],
    };
    let b = Record::Scrape {
        t: 2.0,
        t_unix_ms: 0,
        step: 1,
        n: 1,
        gpus: vec![],
        servers: vec![],
    };
    assert_eq!(halve(vec![a.clone(), b.clone()]), vec![a, b]);
}
