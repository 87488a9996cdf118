use super::*;
use crate::telemetry::gpu::PodRef;

fn gpu(uuid: &str, pod: Option<&str>) -> GpuResult {
    let page = match pod {
        Some(p) => format!(
            "DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"{uuid}\",namespace=\"ns\",pod=\"{p}\"}} 100\n"
        ),
        None => format!("DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"{uuid}\"}} 100\n"),
    };
    let mut t = GpuTelemetry::default();
    t.ingest("e", 0.0, page.as_bytes(), Format::Prometheus);
    t.gpus[0].result()
}

#[test]
fn scope_keeps_the_targets_gpus_or_falls_back_as_it_says() {
    let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let gpus = || {
        vec![
            gpu("A", Some("llm-0")),
            gpu("B", Some("other")),
            gpu("C", None),
        ]
    };
    let (kept, applied) = attribute(gpus(), GpuScope::TargetPods, &inference);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        kept[0].pods,
        vec![PodRef {
            namespace: "ns".into(),
            pod: "llm-0".into(),
            container: String::new()
        }]
    );
    assert_eq!(applied, GpuScope::TargetPods);
    let (kept, applied) = attribute(gpus(), GpuScope::Auto, &inference);
    assert_eq!((kept.len(), applied), (1, GpuScope::TargetPods));
    let (kept, applied) = attribute(vec![gpu("C", None)], GpuScope::Auto, &inference);
    assert_eq!((kept.len(), applied), (1, GpuScope::TargetNodes));
    let (kept, applied) = attribute(gpus(), GpuScope::Auto, &Pods::default());
    assert_eq!((kept.len(), applied), (3, GpuScope::All));
    assert_eq!(attribute(gpus(), GpuScope::All, &inference).0.len(), 3);
}

#[test]
fn gpus_name_only_pods_in_namespaces_the_run_may_read() {
    let gpus = || vec![gpu("A", Some("llm-0")), gpu("B", Some("theirs"))];
    // The run reads "ns": both pods are named.
    let mine = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let (kept, _) = attribute(gpus(), GpuScope::All, &mine);
    assert_eq!(kept[1].pods.len(), 1);
    assert_eq!(kept[1].pods_elsewhere, 0);
    // A run in another namespace, reading the exporter of an opened
    // namespace with scope all: the pods are counted, not named; its own
    // inference pod, found where it may read, stays named.
    let other = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["team-b".to_string()]),
    };
    let (kept, applied) = attribute(gpus(), GpuScope::All, &other);
    assert_eq!(applied, GpuScope::All);
    assert_eq!(kept[0].pods.len(), 1);
    assert!(kept[1].pods.is_empty());
    assert_eq!(kept[1].pods_elsewhere, 1);
    let json = serde_json::to_string(&kept).unwrap();
    assert!(
        !json.contains("theirs") && json.contains("\"podsElsewhere\":1"),
        "{json}"
    );
    // The checkpoint keeps the count, not the name.
    let mut series = gpus();
    for g in &mut series {
        other.anonymize(&mut g.pods);
    }
    assert_eq!(series[0].pods[0].pod, "llm-0");
    assert_eq!(series[1].pods[0].pod, "");
    let (kept, _) = attribute(series, GpuScope::All, &other);
    assert_eq!(kept[1].pods_elsewhere, 1);
    assert!(!serde_json::to_string(&kept).unwrap().contains("theirs"));
    // Restored from the checkpoint and seen again: one pod, not two.
    let page =
        "DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"B\",namespace=\"ns\",pod=\"theirs\"} 100\n";
    let mut t = GpuTelemetry::default();
    t.ingest("e", 0.0, page.as_bytes(), Format::Prometheus);
    other.anonymize(&mut t.gpus[0].pods);
    t.ingest("e", 1.0, page.as_bytes(), Format::Prometheus);
    assert_eq!(t.gpus[0].pods.len(), 1);
    let (kept, _) = attribute(vec![t.gpus[0].result()], GpuScope::All, &other);
    assert_eq!(kept[0].pods_elsewhere, 1);
    // Attribution still sees every pod: targetPods keeps the GPU of the
    // run's own pod only.
    let (kept, _) = attribute(gpus(), GpuScope::TargetPods, &other);
    assert_eq!(kept.len(), 1);
}

/// A step of `steps` scrapes one second apart from `t0` (session seconds,
/// unix ms `T0 + 1000 t`) of two GPUs at 400 W, GPU 1's exporter answering
/// only `gpu1` of them. Telemetry opened by a resumed session when `resumed`.
fn step(t0: u32, steps: u32, gpu1: std::ops::Range<u32>, resumed: bool) -> StepTelemetry {
    const T0: u64 = 1_800_000_000_000;
    let page = |g: u32, t: u32| {
        let l = format!("gpu=\"{g}\",UUID=\"GPU-{g}\",namespace=\"ns\",pod=\"llm-0\"");
        format!(
            "DCGM_FI_DEV_POWER_USAGE{{{l}}} 400\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{l}}} {}\n",
            1e9 + f64::from(t) * 400_000.0
        )
    };
    let mut s = StepTelemetry::new(
        Filter::default(),
        T0 + u64::from(t0) * 1000,
        f64::from(t0),
        resumed,
    );
    for t in t0..t0 + steps {
        for (url, g) in [("a", 0), ("b", 1)] {
            if g == 0 || gpu1.contains(&t) {
                let body = page(g, t);
                s.ingest(
                    Kind::Gpu,
                    url,
                    f64::from(t),
                    body.as_bytes(),
                    Format::Prometheus,
                );
            }
        }
        s.window.end_unix_ms = T0 + u64::from(t) * 1000;
        s.closed_t = f64::from(t);
    }
    s
}

/// The client measured 30 s from `T0`, 12 000 output tokens.
fn client_step() -> ClientStep {
    const T0: u64 = 1_800_000_000_000;
    ClientStep {
        requests: 100,
        successes: 100,
        output_tokens: 12_000,
        duration_s: 30.0,
        concurrency: Some(8),
        started_unix_ms: T0,
        ended_unix_ms: T0 + 30_000,
        ..Default::default()
    }
}

#[test]
fn efficiency_is_published_only_over_the_whole_step() {
    let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let detail_of = |t: &StepTelemetry| {
        detail(
            0,
            Some(t),
            Some(client_step()),
            None,
            GpuScope::Auto,
            &inference,
            None,
        )
    };
    // Whole: 2 GPUs × 400 W × 30 s = 24 kJ for 12 000 tokens.
    let whole = detail_of(&step(0, 31, 0..31, false));
    let c = whole.coverage.as_ref().unwrap();
    assert!(c.complete, "{c:?}");
    let e = whole.efficiency.as_ref().unwrap();
    assert!((e.total_gpu_energy_j - 24_000.0).abs() < 1e-6);
    assert_eq!(e.output_tokens_per_joule, Some(0.5));
    assert_eq!(whole.summary().output_tokens_per_joule, Some(0.5));

    // A controller restart 8 s in: the new session's window opens late.
    // Dividing every token by 22 s of energy would publish 0.68, not 0.5.
    let restarted = detail_of(&step(8, 23, 8..31, true));
    let c = restarted.coverage.as_ref().unwrap();
    assert!(!c.complete);
    assert_eq!(c.gaps[0].reason, crate::results::GapReason::Restarted);
    let e = restarted.efficiency.as_ref().unwrap();
    assert!(
        (e.total_gpu_energy_j - 17_600.0).abs() < 1e-6,
        "what was measured stays"
    );
    assert_eq!(e.output_tokens_per_joule, None);
    assert_eq!(e.energy_per_output_token_j, None);
    assert_eq!(e.energy_per_user_j, None);
    assert_eq!(e.output_tokens_per_second_per_watt, None);
    let s = restarted.summary();
    assert_eq!(
        (s.output_tokens_per_joule, s.total_gpu_energy_j),
        (None, None)
    );
    assert_eq!(s.request_throughput, Some(0.0), "client figures stay");

    // GPU 1's exporter died 20 s in: its energy misses the closing scrape.
    let partial = detail_of(&step(0, 31, 0..20, false));
    let c = partial.coverage.as_ref().unwrap();
    assert_eq!((c.gpus, c.gpus_with_energy), (2, 1));
    assert_eq!(c.gaps[0].reason, crate::results::GapReason::PartialGpus);
    assert_eq!(partial.efficiency.unwrap().output_tokens_per_joule, None);
}

/// An energy counter that goes back mid-step (a GPU reset, a driver
/// reload) under-counts by what was drawn between the readings around
/// it: the step keeps what was measured and withholds its efficiency,
/// naming the GPU (`CounterReset`); the same step without the reset is
/// complete and exact.
#[test]
fn an_energy_counter_that_went_back_mid_step_withholds_the_efficiency() {
    const T0: u64 = 1_800_000_000_000;
    let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let l = "gpu=\"0\",UUID=\"GPU-0\",namespace=\"ns\",pod=\"llm-0\"";
    let step = |reset_at: Option<u32>| {
        let mut s = StepTelemetry::new(Filter::default(), T0, 0.0, false);
        for t in 0..=30u32 {
            // 400 W; after a reset the counter starts again from 0.
            let mj = match reset_at {
                Some(r) if t >= r => f64::from(t - r) * 400e3,
                _ => 5e9 + f64::from(t) * 400e3,
            };
            let page = format!(
                "DCGM_FI_DEV_POWER_USAGE{{{l}}} 400\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{l}}} {mj}\n"
            );
            s.ingest(
                Kind::Gpu,
                "a",
                f64::from(t),
                page.as_bytes(),
                Format::Prometheus,
            );
            s.window.end_unix_ms = T0 + u64::from(t) * 1000;
            s.closed_t = f64::from(t);
        }
        detail(
            0,
            Some(&s),
            Some(client_step()),
            None,
            GpuScope::Auto,
            &inference,
            None,
        )
    };
    let whole = step(None);
    assert!(whole.coverage.as_ref().unwrap().complete);
    let e = whole.efficiency.as_ref().unwrap();
    assert!((e.total_gpu_energy_j - 12_000.0).abs() < 1e-6, "{e:?}");
    let reset = step(Some(17));
    let c = reset.coverage.as_ref().unwrap();
    assert!(!c.complete);
    assert_eq!(c.gaps[0].reason, crate::results::GapReason::CounterReset);
    assert!(c.gaps[0].message.contains("GPU-0"), "{}", c.gaps[0].message);
    assert_eq!(reset.summary().output_tokens_per_joule, None);
}

/// A worker's result (the steps it ran).
fn worker(index: u32, steps: Vec<ClientStep>) -> WorkerResult {
    WorkerResult {
        schema_version: crate::contract::RESULT_SCHEMA_VERSION,
        worker: index,
        steps,
    }
}

#[test]
fn a_missing_worker_takes_the_client_figures_out_of_the_status() {
    let half = ClientStep {
        requests: 50,
        successes: 50,
        output_tokens: 6_000,
        concurrency: Some(4),
        ..client_step()
    };
    let merged = merge_client(&[worker(0, vec![half.clone()])], 1, 2);
    let (client, workers) = merged[0].clone();
    assert_eq!(
        workers,
        WorkerCoverage {
            workers: 2,
            reported: 1
        }
    );
    assert_eq!(client.as_ref().map(|c| c.requests), Some(50));
    let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let whole = step(0, 31, 0..31, false);
    let detail_of = |client, workers| {
        detail(
            0,
            Some(&whole),
            client,
            Some(workers),
            GpuScope::Auto,
            &inference,
            None,
        )
    };
    let d = detail_of(client, workers);
    // Half the tokens over all the energy would be half the truth.
    let c = d.coverage.as_ref().unwrap();
    assert!(!c.complete);
    assert_eq!(c.gaps[0].reason, crate::results::GapReason::MissingWorkers);
    assert!(c.gaps[0].message.contains("1 of 2"), "{:?}", c.gaps);
    assert_eq!(d.efficiency.as_ref().unwrap().output_tokens_per_joule, None);
    let s = d.summary();
    assert_eq!(
        (
            s.request_throughput,
            s.output_token_throughput,
            s.error_count
        ),
        (None, None, None),
        "no client figure from half the load"
    );
    assert_eq!(s.output_tokens_per_joule, None);
    assert_eq!(d.client.unwrap().requests, 50, "what arrived is kept");

    // Both workers: one merged result over all the load, published.
    let both = merge_client(
        &[worker(0, vec![half.clone()]), worker(1, vec![half])],
        1,
        2,
    );
    let (client, workers) = both[0].clone();
    assert!(workers.complete());
    assert_eq!(client.as_ref().map(|c| c.requests), Some(100));
    let d = detail_of(client, workers);
    assert!(d.coverage.as_ref().unwrap().complete);
    assert!(d.summary().request_throughput.is_some());
    assert_eq!(d.summary().output_tokens_per_joule, Some(0.5));
}

/// Feeds scrapes `ts` (one per second from unix ms `T0`) of one GPU
/// drawing `watts[t]` (power gauge and energy counter) and of a server
/// (a counter and a histogram with its `+Inf` bucket).
fn feed(s: &mut StepTelemetry, watts: &[f64], ts: std::ops::Range<usize>) {
    const T0: u64 = 1_800_000_000_000;
    let l = "gpu=\"0\",UUID=\"GPU-0\",namespace=\"ns\",pod=\"llm-0\"";
    for t in ts {
        let mj: f64 = watts[..t].iter().sum::<f64>() * 1e3;
        let gpu = format!(
            "DCGM_FI_DEV_POWER_USAGE{{{l}}} {}\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{l}}} {}\n",
            watts[t],
            1e9 + mj
        );
        let n = t as u64 * 3;
        let server = format!(
            "# TYPE vllm:prompt_tokens counter\nvllm:prompt_tokens_total{{model_name=\"m\"}} {}\n# TYPE vllm:e2e_request_latency_seconds histogram\nvllm:e2e_request_latency_seconds_bucket{{le=\"0.5\"}} {}\nvllm:e2e_request_latency_seconds_bucket{{le=\"+Inf\"}} {n}\nvllm:e2e_request_latency_seconds_sum {}\nvllm:e2e_request_latency_seconds_count {n}\n",
            n * 100,
            n / 2,
            n as f64 * 0.4
        );
        let at = t as f64;
        s.ingest(Kind::Gpu, "a", at, gpu.as_bytes(), Format::Prometheus);
        s.ingest(Kind::Server, "s", at, server.as_bytes(), Format::Prometheus);
        s.window.end_unix_ms = T0 + t as u64 * 1000;
        s.closed_t = at;
    }
}

/// `first`'s telemetry through a checkpoint's encoding and back.
fn through_checkpoint(first: &StepTelemetry) -> StepTelemetry {
    use super::super::checkpoint::{Checkpoint, SavedStep, VERSION};
    let cp = Checkpoint {
        version: VERSION,
        run_uid: "u".into(),
        origin_unix_ms: 0,
        taken_unix_ms: 0,
        last_scrape_t: first.closed_t,
        steps: vec![SavedStep::of(first)],
        active: Some(0),
        next_step: 1,
        notes: Vec::new(),
        results: None,
        workers: 0,
        collected: false,
        idle: None,
        lost: Vec::new(),
    };
    // Small pieces: the split is exercised too.
    let pieces = cp.encode(4096).unwrap();
    let back = Checkpoint::decode(&pieces, "u").unwrap().unwrap();
    back.steps
        .into_iter()
        .next()
        .unwrap()
        .restore(Filter::default())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Checkpoint, restore, continue: the same result as a measurement
    /// never interrupted; and with scrapes missed in between, the energy
    /// is still exact (the counter spans the gap).
    #[test]
    fn a_step_taken_over_from_its_checkpoint_ends_as_if_never_interrupted(
        split in 1usize..28,
        gap in 0usize..6,
        watts in proptest::collection::vec(100.0f64..700.0, 31),
    ) {
        const T0: u64 = 1_800_000_000_000;
        let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
        let client = ClientStep {
            ended_unix_ms: T0 + 30_000,
            ..client_step()
        };
        let detail_of = |t: &StepTelemetry| {
            detail(0, Some(t), Some(client.clone()), None, GpuScope::Auto, &inference, None)
        };
        let mut whole = StepTelemetry::new(Filter::default(), T0, 0.0, false);
        feed(&mut whole, &watts, 0..31);
        let mut first = StepTelemetry::new(Filter::default(), T0, 0.0, false);
        feed(&mut first, &watts, 0..split);
        let mut rest = through_checkpoint(&first);
        feed(&mut rest, &watts, split..31);
        proptest::prop_assert_eq!(detail_of(&whole), detail_of(&rest));

        // Scrapes missed while the run was taken over.
        let mut rest = through_checkpoint(&first);
        let resumed_at = (split + gap).min(30);
        feed(&mut rest, &watts, resumed_at..31);
        rest.interruptions.push(((split - 1) as f64, resumed_at as f64));
        let (a, b) = (detail_of(&whole), detail_of(&rest));
        let joules = |d: &StepDetail| d.gpus[0].energy.as_ref().unwrap().joules;
        proptest::prop_assert_eq!(joules(&a), joules(&b));
        let c = b.coverage.unwrap();
        proptest::prop_assert!(c.complete, "{:?}", c);
        proptest::prop_assert_eq!(
            b.efficiency.unwrap().output_tokens_per_joule,
            a.efficiency.unwrap().output_tokens_per_joule
        );
    }
}

#[test]
fn endpoint_logs_state_gaps_and_reachability() {
    let mut l = EndpointLog::default();
    l.record(0.0, Ok(()));
    l.record(1.0, Err("connection refused".into()));
    l.record(2.0, Err("connection refused".into()));
    assert!(!l.reachable);
    l.record(3.5, Ok(()));
    let r = l.report(Kind::Gpu, "http://x:9400/metrics");
    assert_eq!((r.scrapes, r.failures, r.reachable), (4, 2, true));
    assert_eq!(r.longest_gap_s, Some(3.5));
    assert_eq!(r.last_error.as_deref(), Some("connection refused"));
}

#[test]
fn a_derived_endpoint_counts_once_it_has_answered() {
    let url = "http://10.0.0.1:8000/metrics";
    let mut logs = BTreeMap::new();
    let derived = Some(crate::discovery::DERIVED_FROM_TARGET.to_string());
    logs.insert((Kind::Server, url.to_string()), EndpointLog::new(derived));
    logs.insert(
        (Kind::Gpu, "http://x:9400/metrics".to_string()),
        EndpointLog::new(None),
    );
    for log in logs.values_mut() {
        log.record(0.0, Err("HTTP 404".into()));
    }
    let c = counts(&logs);
    assert_eq!(
        (c.server.discovered, c.gpu.discovered),
        (0, 1),
        "silent: left out"
    );
    let log = logs.get_mut(&(Kind::Server, url.to_string())).unwrap();
    assert!(log.silent_derived());
    log.record(1.0, Ok(()));
    log.record(2.0, Err("HTTP 503".into()));
    assert!(!log.silent_derived(), "it answered once: its gaps count");
    let r = log.report(Kind::Server, url);
    assert_eq!(r.pod.as_deref(), Some("derived from target.url"));
    let c = counts(&logs);
    assert_eq!((c.server.discovered, c.server.reachable), (1, 0));
}

#[test]
fn credentials_in_a_telemetry_url_never_reach_the_results() {
    let mut s = StepTelemetry::new(Filter::default(), 1_800_000_000_000, 0.0, false);
    let gpu = "DCGM_FI_DEV_POWER_USAGE{gpu=\"0\",UUID=\"GPU-0\"} 400\n";
    let server =
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 3\n";
    for t in 0..3 {
        let t = f64::from(t);
        s.ingest(
            Kind::Gpu,
            "http://admin:hunter2@10.0.0.7:9400/metrics?token=s3cr3t",
            t,
            gpu.as_bytes(),
            Format::Prometheus,
        );
        s.ingest(
            Kind::Server,
            "http://10.0.0.8:8000/metrics?apiKey=s3cr3t",
            t,
            server.as_bytes(),
            Format::Prometheus,
        );
    }
    let d = detail(
        0,
        Some(&s),
        None,
        None,
        GpuScope::All,
        &Pods::default(),
        None,
    );
    let text = serde_json::to_string(&d).unwrap();
    assert!(!d.gpus.is_empty() && !d.server.is_empty(), "{text}");
    for secret in ["hunter2", "admin", "s3cr3t"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("***@10.0.0.7:9400"), "{text}");
}

/// A refresh period shorter than the scrapes' spacing cannot be known
/// from them: two close samples either side of one refresh read as an
/// exporter refreshing every 0.1 s. Found by the fault schedules
/// (schedule 1,111,868): a 1.1 s step of an exporter refreshing every
/// second was published at twice its energy. The spacing bounds the
/// period from below, and the step is `StaleExporter`.
#[test]
fn two_close_samples_do_not_make_an_exporter_fast() {
    const T0: u64 = 1_800_000_000_000;
    let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let l = "gpu=\"0\",UUID=\"GPU-0\",namespace=\"ns\",pod=\"llm-0\"";
    let mut s = StepTelemetry::new(Filter::default(), T0, 0.0, false);
    // Scrapes at 0, 1.0 and 1.1 s; the counter changed before the second
    // and again before the third.
    for (t, mj) in [(0.0, 5e9), (1.0, 5e9 + 400e3), (1.1, 5e9 + 800e3)] {
        let page = format!(
            "DCGM_FI_DEV_POWER_USAGE{{{l}}} 400\n# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{l}}} {mj}\n"
        );
        s.ingest(Kind::Gpu, "a", t, page.as_bytes(), Format::Prometheus);
        s.window.end_unix_ms = T0 + (t * 1e3) as u64;
        s.closed_t = t;
    }
    let client = ClientStep {
        started_unix_ms: T0,
        ended_unix_ms: T0 + 1_100,
        duration_s: 1.1,
        ..client_step()
    };
    let d = detail(
        0,
        Some(&s),
        Some(client),
        None,
        GpuScope::Auto,
        &inference,
        None,
    );
    let c = d.coverage.as_ref().unwrap();
    assert!(!c.complete, "{c:?}");
    assert!(
        c.gaps
            .iter()
            .any(|g| g.reason == crate::results::GapReason::StaleExporter),
        "{c:?}"
    );
    assert_eq!(d.summary().total_gpu_energy_j, None);
}

/// Found by the end-to-end restart test: a step whose controller was
/// replaced just after it opened has one scrape before a 17 s takeover and
/// a scrape a second after it. The takeover is no part of the scrapes'
/// spacing: the exporter (refreshing every second, its counter spanning
/// the gap) is not `StaleExporter`, and the step's energy is published.
#[test]
fn a_takeover_s_gap_is_no_part_of_the_scrapes_spacing() {
    const T0: u64 = 1_800_000_000_000;
    let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let watts = vec![400.0; 23];
    let mut first = StepTelemetry::new(Filter::default(), T0, 0.0, false);
    feed(&mut first, &watts, 0..1);
    let mut rest = through_checkpoint(&first);
    feed(&mut rest, &watts, 17..22);
    rest.interruptions.push((0.0, 17.0));
    let client = ClientStep {
        started_unix_ms: T0,
        ended_unix_ms: T0 + 21_000,
        duration_s: 21.0,
        ..client_step()
    };
    let d = detail(
        0,
        Some(&rest),
        Some(client),
        None,
        GpuScope::Auto,
        &inference,
        None,
    );
    let c = d.coverage.as_ref().unwrap();
    assert!(c.complete, "{c:?}");
    assert_eq!(c.restart_gap_s, Some(17.0), "{c:?}");
    let joules = d.gpus[0].energy.as_ref().unwrap().joules;
    assert!((joules - 21.0 * 400.0).abs() < 1e-6, "{joules}");
    assert_eq!(d.summary().total_gpu_energy_j, Some(joules));
}

/// A step whose telemetry was let go for the run's budget says so where
/// its figures would be: server metrics absent; with its GPU telemetry
/// gone, the first coverage gap is `TelemetryBudget`, and no energy or
/// efficiency is published; `refused.overBudget` names what went.
#[test]
fn a_step_let_go_for_the_budget_withholds_what_rested_on_it_and_says_why() {
    let inference = Pods {
        inference: BTreeSet::from(["ns/llm-0".to_string()]),
        readable: BTreeSet::from(["ns".to_string()]),
    };
    let client = ClientStep {
        ended_unix_ms: 1_800_000_000_000 + 30_000,
        ..client_step()
    };
    let detail_of = |t: &StepTelemetry| {
        detail(
            0,
            Some(t),
            Some(client.clone()),
            None,
            GpuScope::Auto,
            &inference,
            None,
        )
    };
    let watts = vec![300.0; 31];
    let mut s = StepTelemetry::new(Filter::default(), 1_800_000_000_000, 0.0, false);
    feed(&mut s, &watts, 0..31);
    let whole = detail_of(&s);
    assert!(!whole.server.is_empty());
    assert!(whole.summary().total_gpu_energy_j.is_some());
    // Server metrics let go: the energy stands.
    let off = crate::results::Dropped {
        server: true,
        gpu: false,
        budget_bytes: 32 << 20,
        pool: false,
    };
    s.let_go(off);
    let d = detail_of(&s);
    assert!(d.server.is_empty());
    assert_eq!(
        d.summary().total_gpu_energy_j,
        whole.summary().total_gpu_energy_j
    );
    assert_eq!(d.refused.and_then(|r| r.over_budget), Some(off));
    assert!(
        off.reason().starts_with("server metrics were let go"),
        "{}",
        off.reason()
    );
    // The GPU telemetry too: nothing of energy is published, and why.
    let off = crate::results::Dropped { gpu: true, ..off };
    s.let_go(off);
    let d = detail_of(&s);
    let c = d.coverage.as_ref().unwrap();
    assert!(!c.complete);
    assert_eq!(
        c.gaps[0].reason,
        crate::results::GapReason::TelemetryBudget,
        "{c:?}"
    );
    assert!(c.gaps[0].message.contains("32 MiB"), "{c:?}");
    assert_eq!(d.summary().total_gpu_energy_j, None);
    assert_eq!(d.summary().output_tokens_per_joule, None);
    assert_eq!(d.refused.and_then(|r| r.over_budget), Some(off));
    // Later scrapes keep nothing.
    feed(&mut s, &watts, 0..5);
    assert!(s.gpu.gpus.is_empty() && s.server.results().is_empty());
}
