use super::*;
use crate::measure::collect::Kind;
use crate::scrape::Format;
use crate::telemetry::Filter;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/metrics")
            .join(name),
    )
    .expect("fixture")
}

/// A hostile server's page: `n` gauge series with long labels.
fn hostile(n: usize, scrape: usize) -> Vec<u8> {
    let pad = "x".repeat(1000);
    let mut page = String::from("# TYPE evil gauge\n");
    for i in 0..n {
        page.push_str(&format!("evil{{i=\"{i}\",pad=\"{pad}\"}} {scrape}\n"));
    }
    page.into_bytes()
}

/// Scrapes step `k` once at `t`: the real exporter and vLLM pages, and
/// `extra` from a third endpoint. Returns what the budget let go.
fn scrape(
    b: &mut Budget,
    steps: &mut Vec<StepTelemetry>,
    k: usize,
    t: f64,
    extra: Option<(Kind, &[u8])>,
) -> Option<Dropped> {
    if steps.len() == k {
        let mut s = StepTelemetry::new(Filter::default(), 1_800_000_000_000, t, false);
        b.opened(&mut s);
        steps.push(s);
    }
    let dcgm = fixture("aiperf-dcgm-gb200-4gpu.txt");
    let vllm = fixture("datadog-vllm-v0-v1-mixed.txt");
    let mut bytes = dcgm.len() + vllm.len();
    let s = &mut steps[k];
    s.ingest(
        Kind::Gpu,
        "http://node:9400/metrics",
        t,
        &dcgm,
        Format::Prometheus,
    );
    s.ingest(
        Kind::Server,
        "http://llm:8000/metrics",
        t,
        &vllm,
        Format::Prometheus,
    );
    if let Some((kind, page)) = extra {
        s.ingest(
            kind,
            "http://evil:8000/metrics",
            t,
            page,
            Format::Prometheus,
        );
        bytes += page.len();
    }
    b.after_scrape(steps, k, bytes)
}

fn total(steps: &[StepTelemetry]) -> usize {
    steps.iter().map(StepTelemetry::encoded_bytes).sum()
}

/// Real pages stay within the budget; a hostile page in step 1 passes it:
/// that step's server metrics are let go at once and none are kept again
/// (in step 1 or later steps), its GPU telemetry stays; then a hostile GPU
/// page lets the GPU telemetry go too. The run's telemetry stays under the
/// budget throughout, but for the scrape that passed it.
#[test]
fn past_its_budget_a_run_lets_server_metrics_go_then_gpu_telemetry() {
    let mut steps = Vec::new();
    // Three scrapes of real pages: sized, and well under.
    let mut b = Budget::new(1 << 20);
    for t in 0..3 {
        assert_eq!(scrape(&mut b, &mut steps, 0, f64::from(t), None), None);
    }
    let real = total(&steps);
    assert!(real > 10_000 && real < 1 << 19, "{real}");
    // Step 1: a page of 2,000 series with 1 KB labels (about 2 MB).
    let page = hostile(2000, 0);
    let off = scrape(&mut b, &mut steps, 1, 3.0, Some((Kind::Server, &page)));
    let off = off.expect("the budget was passed");
    assert!(off.server && !off.gpu, "{off:?}");
    assert_eq!(off.budget_bytes, 1 << 20);
    assert!(total(&steps) < 1 << 20, "{}", total(&steps));
    assert!(steps[1].server.results().is_empty());
    assert!(!steps[0].server.results().is_empty(), "step 0 is kept");
    assert_eq!(steps[1].gpu.gpus.len(), 4, "the GPUs are kept");
    // More scrapes of step 1 keep no server metrics, and say nothing new.
    for t in 4..8 {
        let off = scrape(
            &mut b,
            &mut steps,
            1,
            f64::from(t),
            Some((Kind::Server, &page)),
        );
        assert_eq!(off, None);
        assert!(steps[1].server.results().is_empty());
    }
    // Step 2 opens with the server let go; its GPUs are measured.
    assert_eq!(scrape(&mut b, &mut steps, 2, 8.0, None), None);
    assert!(steps[2].dropped.server && !steps[2].dropped.gpu);
    assert!(steps[2].server.results().is_empty());
    assert_eq!(steps[2].gpu.gpus.len(), 4);
    // A hostile exporter in step 3: its GPU telemetry goes too.
    let gpus: String = (0..5)
        .flat_map(|f| {
            (0..3000).map(move |g| {
                format!("DCGM_FI_DEV_INVENTED_{f}{{gpu=\"{g}\",UUID=\"GPU-evil-{g}\"}} {g}\n")
            })
        })
        .collect();
    let off = scrape(
        &mut b,
        &mut steps,
        3,
        9.0,
        Some((Kind::Gpu, gpus.as_bytes())),
    );
    let off = off.expect("the budget was passed again");
    assert!(off.server && off.gpu, "{off:?}");
    assert!(steps[3].gpu.gpus.is_empty());
    assert!(total(&steps) < 1 << 20, "{}", total(&steps));
    assert_eq!(steps[2].gpu.gpus.len(), 4, "step 2 keeps its GPUs");
    // Step 4: nothing is kept, and that is said on the step.
    assert_eq!(scrape(&mut b, &mut steps, 4, 10.0, None), None);
    assert_eq!(steps[4].dropped, off);
    assert!(steps[4].gpu.gpus.is_empty() && steps[4].server.results().is_empty());
    // Steps before the budget was passed keep everything.
    assert_eq!(steps[0].dropped, Dropped::default());
    assert!(!steps[1].dropped.gpu);
    assert_eq!(steps[1].gpu.gpus.len(), 4);
}

/// Growth a little at a time is caught within [`CHECK_EVERY_SCRAPES`]
/// scrapes; a page past [`CHECK_EVERY_BYTES`] is sized at once.
#[test]
fn sizing_is_due_every_few_scrapes_or_at_once_for_a_large_page() {
    let mut steps = Vec::new();
    let mut b = Budget::new(1 << 20);
    assert_eq!(scrape(&mut b, &mut steps, 0, 0.0, None), None);
    let limit = total(&steps) + 20_000;
    let mut b = Budget::new(limit);
    assert_eq!(
        scrape(&mut b, &mut steps, 0, 1.0, None),
        None,
        "sized: under"
    );
    // 50 new 1 KB series a scrape (under 4 MiB of pages): each scrape passes
    // the budget soon, and the sizing that sees it comes within 10 scrapes.
    let mut let_go_at = None;
    for n in 0..30 {
        let page = format!(
            "# TYPE grow_{n} gauge\n{}",
            (0..50)
                .map(|i| format!("grow_{n}{{i=\"{i}\",pad=\"{}\"}} 1\n", "z".repeat(1000)))
                .collect::<String>()
        );
        if scrape(
            &mut b,
            &mut steps,
            0,
            2.0 + n as f64,
            Some((Kind::Server, page.as_bytes())),
        )
        .is_some()
        {
            let_go_at = Some(n);
            break;
        }
    }
    // Passed at the first scrape (about 50 KB over a 20 KB margin), seen
    // at the tenth since the last sizing.
    assert_eq!(let_go_at, Some(CHECK_EVERY_SCRAPES as usize - 1));
    // A page over CHECK_EVERY_BYTES is sized at once.
    let mut steps = Vec::new();
    let mut b = Budget::new(64 << 20);
    assert_eq!(scrape(&mut b, &mut steps, 0, 0.0, None), None);
    let big = hostile(CHECK_EVERY_BYTES / 1000 + 100, 0);
    let mut b2 = Budget::new(total(&steps) + 1000);
    b2.sizes = b.sizes.clone();
    assert!(
        scrape(&mut b2, &mut steps, 0, 1.0, Some((Kind::Server, &big))).is_some(),
        "sized at once"
    );
}

/// A successor restoring the steps carries on: what was let go stays let
/// go, and the next scrape sizes every step.
#[test]
fn a_restored_run_keeps_what_was_let_go_let_go() {
    let mut steps = Vec::new();
    let mut b = Budget::new(1 << 20);
    scrape(&mut b, &mut steps, 0, 0.0, None);
    let page = hostile(2000, 0);
    assert!(scrape(&mut b, &mut steps, 1, 1.0, Some((Kind::Server, &page))).is_some());
    let saved: Vec<_> = steps
        .iter()
        .map(crate::measure::checkpoint::SavedStep::of)
        .collect();
    let mut restored: Vec<StepTelemetry> = saved
        .into_iter()
        .map(|s| s.restore(Filter::default()))
        .collect();
    assert_eq!(restored[1].dropped, steps[1].dropped);
    let mut b = Budget::new(1 << 20).restored(&restored);
    assert!(b.off.server && !b.off.gpu);
    assert_eq!(
        scrape(&mut b, &mut restored, 1, 2.0, Some((Kind::Server, &page))),
        None
    );
    assert!(restored[1].server.results().is_empty());
    assert!(!restored[0].server.results().is_empty(), "step 0 kept");
    assert_eq!(scrape(&mut b, &mut restored, 2, 3.0, None), None);
    assert!(restored[2].dropped.server);
    assert_eq!(restored[2].gpu.gpus.len(), 4);
}

/// No budget: nothing is sized or let go.
#[test]
fn a_budget_of_zero_is_no_budget() {
    let mut steps = Vec::new();
    let mut b = Budget::new(0);
    let page = hostile(2000, 0);
    for t in 0..3 {
        assert_eq!(
            scrape(
                &mut b,
                &mut steps,
                0,
                f64::from(t),
                Some((Kind::Server, &page))
            ),
            None
        );
    }
    let kept: usize = steps[0]
        .server
        .results()
        .iter()
        .map(|f| f.series.len())
        .sum();
    assert!(kept > 1000, "{kept}");
    assert_eq!(steps[0].dropped, Dropped::default());
}

/// Two runs share the controller's pool. A hostile run passes it while the
/// other holds less than its share: the hostile run lets go (saying it was
/// the pool), the other never does. When the hostile run ends, its bytes
/// leave the pool.
#[test]
fn past_the_pool_the_run_past_its_share_lets_go_and_the_other_keeps_all() {
    let pool = Pool::new(1 << 20);
    let mut quiet = Budget::new(0).in_pool(pool.clone());
    let mut loud = Budget::new(0).in_pool(pool.clone());
    let (mut q, mut l) = (Vec::new(), Vec::new());
    assert_eq!(scrape(&mut quiet, &mut q, 0, 0.0, None), None);
    let quiet_bytes = total(&q);
    assert_eq!(pool.held(), quiet_bytes);
    assert!(
        quiet_bytes < (1 << 20) / 2,
        "within its share: {quiet_bytes}"
    );
    let page = hostile(3500, 0);
    let off = scrape(&mut loud, &mut l, 0, 0.0, Some((Kind::Server, &page)));
    let off = off.expect("the pool was passed");
    assert!(
        off.server && off.pool && off.budget_bytes == 1 << 20,
        "{off:?}"
    );
    assert!(
        off.reason().contains("controller's limit of 1 MiB"),
        "{}",
        off.reason()
    );
    assert!(pool.held() <= 1 << 20, "{}", pool.held());
    // The quiet run goes on sizing, and keeps everything.
    for t in 1..25 {
        assert_eq!(
            scrape(&mut quiet, &mut q, t / 10, f64::from(t as u32), None),
            None
        );
        assert_eq!(q.last().unwrap().dropped, Dropped::default());
    }
    // The loud run's end takes its bytes out of the pool.
    let before = pool.held();
    let loud_bytes = total(&l);
    drop(loud);
    assert_eq!(pool.held(), before - loud_bytes);
    drop(quiet);
    assert_eq!(pool.held(), 0);
}

/// A run holding more than its share when the pool is passed lets go too,
/// even if another run passed it: the runs that hold the most pay.
#[test]
fn past_the_pool_every_run_past_its_share_lets_go() {
    let mut steps = Vec::new();
    let mut probe = Budget::new(1 << 30);
    scrape(&mut probe, &mut steps, 0, 0.0, None);
    let one = total(&steps);
    // Room for about one and a half runs of real pages.
    let pool = Pool::new(one * 3 / 2);
    let mut a = Budget::new(0).in_pool(pool.clone());
    let mut b = Budget::new(0).in_pool(pool.clone());
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    assert_eq!(
        scrape(&mut a, &mut sa, 0, 0.0, None),
        None,
        "alone in the pool"
    );
    // b passes the pool; each holds more than the pool over two runs.
    let off = scrape(&mut b, &mut sb, 0, 0.0, None).expect("b lets go");
    assert!(off.server && off.pool);
    // a, at its next sizing (a new step), lets go too: it holds more than its share.
    let off = scrape(&mut a, &mut sa, 1, 1.0, None).expect("a lets go");
    assert!(off.server && off.pool);
}
