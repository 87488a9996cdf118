use super::*;
use crate::api::Phase;

fn run(phase: Option<Phase>) -> BenchmarkRun {
    let mut r: BenchmarkRun = serde_saphyr::from_str(
        r#"
apiVersion: benchrun.dev/v1alpha1
kind: BenchmarkRun
metadata: {name: r1, namespace: llm, uid: u-1}
spec:
  target: {url: "http://vllm:8000", model: m}
  load: {concurrency: 1, requestCount: 1}
"#,
    )
    .unwrap();
    r.status = phase.map(|p| BenchmarkRunStatus {
        phase: Some(p),
        ..BenchmarkRunStatus::default()
    });
    r
}

#[test]
fn an_ended_run_is_remembered_until_a_copy_shows_its_end() {
    let sessions = Sessions::default();
    let running = run(Some(Phase::Running));
    assert_eq!(sessions.ended(&running), None);
    let end = BenchmarkRunStatus {
        phase: Some(Phase::Succeeded),
        ..BenchmarkRunStatus::default()
    };
    sessions.end(&running, &end);
    // Copies older than the write (no status yet, Running, Collecting) get the end.
    for phase in [None, Some(Phase::Running), Some(Phase::Collecting)] {
        assert_eq!(sessions.ended(&run(phase)), Some(end.clone()), "{phase:?}");
    }
    // A copy that shows a final phase: the cache caught up; forgotten.
    assert_eq!(sessions.ended(&run(Some(Phase::Succeeded))), None);
    assert_eq!(sessions.ended(&running), None);
    // Sessions of deleted runs stop; the ended memory is not a session.
    assert_eq!(sessions.retain(|_| false), 0);
    // Another run is not touched.
    let mut other = running.clone();
    other.metadata.uid = Some("u-2".into());
    sessions.end(&running, &end);
    assert_eq!(sessions.ended(&other), None);
}

/// A change recomputes the steps it touches; the document is always what
/// computing every step afresh gives.
#[test]
fn the_document_recomputes_the_steps_that_changed() {
    use crate::scrape::Format;
    use crate::telemetry::Filter;
    let page = |w: f64| format!("DCGM_FI_DEV_POWER_USAGE{{gpu=\"0\",UUID=\"GPU-0\"}} {w}\n");
    let mut s = State::new(GpuScope::All, 2);
    for _ in 0..2 {
        let mut t = StepTelemetry::new(Filter::default(), 1_800_000_000_000, 0.0, false);
        t.ingest(
            Kind::Gpu,
            "http://e:9400/metrics",
            0.0,
            page(100.0).as_bytes(),
            Format::Prometheus,
        );
        s.telemetry.push(t);
    }
    let fresh = |s: &State| -> Vec<StepDetail> {
        (0..2)
            .map(|k| {
                collect::detail(
                    k as u32,
                    s.telemetry.get(k),
                    None,
                    None,
                    s.scope,
                    &s.pods,
                    s.idle.as_ref(),
                )
            })
            .collect()
    };
    assert_eq!(s.document().steps, fresh(&s));
    // Step 1 scraped again: its detail follows, step 0's is reused.
    let step1 = &mut s.telemetry[1];
    step1.ingest(
        Kind::Gpu,
        "http://e:9400/metrics",
        1.0,
        page(500.0).as_bytes(),
        Format::Prometheus,
    );
    s.changed(Some(1));
    let doc = s.document();
    assert_eq!(doc.steps, fresh(&s));
    assert_ne!(doc.steps[0], doc.steps[1]);
    // A change to what every step rests on recomputes them all.
    s.pods.inference.insert("ns/llm-0".into());
    s.changed(None);
    assert_eq!(s.document().steps, fresh(&s));
}
