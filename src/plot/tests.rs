use super::*;
use crate::api::Summary;
use crate::loadgen::engine::StepResult as ClientStep;
use crate::measure::timeseries::{GpuPoint, Record};
use crate::results::StepDetail;
use crate::results::coverage::WorkerCoverage;
use crate::stats::Summary as Dist;

/// A results document with nothing measured yet.
fn doc(name: &str) -> ResultsDocument {
    serde_json::from_value(serde_json::json!({
        "schemaVersion": 1,
        "run": {"namespace": "ns", "name": name, "uid": "u"},
        "phase": "Succeeded", "reason": "Completed", "message": "",
        "summary": {}
    }))
    .unwrap()
}

/// A latency distribution whose pN is `scale` × N ms.
fn dist(scale: f64) -> Dist {
    let ms = |q: f64| scale * q / 1e3;
    Dist {
        count: 100,
        p1: ms(1.0),
        p5: ms(5.0),
        p10: ms(10.0),
        p25: ms(25.0),
        p50: ms(50.0),
        p75: ms(75.0),
        p90: ms(90.0),
        p95: ms(95.0),
        p99: ms(99.0),
        ..Default::default()
    }
}

fn step(index: i32, concurrency: i32, summary: Summary) -> StepResult {
    StepResult {
        index,
        concurrency: Some(concurrency),
        summary,
        ..Default::default()
    }
}

fn gpu(uuid: &str) -> crate::telemetry::report::GpuResult {
    serde_json::from_value(serde_json::json!({
        "key": uuid, "endpoint": "http://e:9400/metrics", "uuid": uuid,
        "samples": 3, "stale": false, "metrics": []
    }))
    .unwrap()
}

/// A four-step concurrency sweep (1, 4, 16, 32). At 16 the energy coverage
/// was incomplete (tokens per joule withheld); at 32 one load generator of
/// two reported (its client figures withheld, and tokens per joule with them).
fn sweep() -> ResultsDocument {
    let mut d = doc("sweep");
    let s = |ttft, itl, tput, tpj| Summary {
        ttft_p99_ms: Some(ttft),
        itl_p99_ms: Some(itl),
        output_token_throughput: Some(tput),
        output_tokens_per_joule: tpj,
        ..Default::default()
    };
    d.steps = vec![
        step(0, 1, s(20.0, 4.0, 200.0, Some(1.5))),
        step(1, 4, s(30.0, 5.0, 700.0, Some(3.0))),
        // Slower than at 4 and gives less: dominated.
        step(2, 16, s(45.0, 9.0, 650.0, None)),
        step(3, 32, Summary::default()),
    ];
    let client = |c: u32, scale: f64| ClientStep {
        concurrency: Some(c),
        ttft_s: dist(scale),
        itl_s: dist(scale / 10.0),
        latency_s: dist(scale * 20.0),
        ..Default::default()
    };
    let detail = |index: u32, c: u32, scale: f64, reported: u32| StepDetail {
        index,
        client: Some(client(c, scale)),
        client_coverage: Some(WorkerCoverage {
            workers: 2,
            reported,
        }),
        window: Some(crate::results::Window {
            start_unix_ms: 1_000_000 + 2_000 + u64::from(index) * 12_000,
            end_unix_ms: 1_000_000 + 12_000 + u64::from(index) * 12_000,
        }),
        gpus: vec![gpu("GPU-aaaaaaaa-1111-2222-3333-444444444444")],
        ..Default::default()
    };
    d.details = vec![
        detail(0, 1, 0.2, 2),
        detail(1, 4, 0.3, 2),
        detail(2, 16, 0.5, 2),
        detail(3, 32, 0.9, 1),
    ];
    d
}

/// The run's time series: a scrape every 10 s of the target's GPU and of a
/// GPU the results do not count, and the client's progress.
fn series() -> Vec<Record> {
    let scrape = |s: u64, w: f64, u: f64| Record::Scrape {
        t: s as f64,
        t_unix_ms: 1_000_000 + s * 1000,
        step: 0,
        n: 1,
        gpus: vec![
            GpuPoint {
                gpu: "GPU-aaaaaaaa-1111-2222-3333-444444444444".into(),
                power_w: Some(w),
                utilization_pct: Some(u),
                ..Default::default()
            },
            GpuPoint {
                gpu: "GPU-bbbbbbbb".into(),
                power_w: Some(60.0),
                utilization_pct: Some(0.0),
                ..Default::default()
            },
        ],
        servers: vec![],
    };
    let progress = |s: u64, rate: f64, dt: f64| Record::Progress {
        t: s as f64,
        t_unix_ms: 1_000_000 + s * 1000,
        n: 1,
        requests_done: 0,
        ok: 0,
        errors: 0,
        output_tokens: 0,
        dt,
        requests_per_s: 0.0,
        output_tokens_per_s: rate,
    };
    vec![
        Record::Header {
            schema_version: 1,
            records: 6,
            thinned: 0,
            max_bytes: 1,
            starts_after_restart_at_t: None,
        },
        scrape(0, 70.0, 0.0),
        progress(5, 0.0, 0.0),
        scrape(10, 300.0, 80.0),
        progress(15, 650.0, 10.0),
        scrape(20, 320.0, 95.0),
    ]
}

fn find<'a>(p: &'a Plots, file: &str) -> &'a Figure {
    p.figures
        .iter()
        .find(|f| f.file == file)
        .unwrap_or_else(|| {
            panic!(
                "no {file} among {:?}",
                p.figures.iter().map(|f| &f.file).collect::<Vec<_>>()
            )
        })
}

fn xy(s: &Series) -> Vec<(f64, f64)> {
    s.points.iter().map(|p| (p.x, p.y)).collect()
}

fn one_run() -> Plots {
    figures(&[Input {
        name: "ns/sweep".into(),
        doc: sweep(),
        timeseries: Some(series()),
    }])
}

#[test]
fn the_pareto_curves_hold_each_step_labelled_with_its_load() {
    let p = one_run();
    let f = find(&p, "throughput-vs-ttft-p99");
    assert_eq!(f.x.label, "TTFT p99 (ms)");
    assert_eq!(f.y.label, "output token throughput (tokens/s)");
    let [s] = f.series.as_slice() else {
        panic!("{:?}", f.series)
    };
    assert_eq!(s.name, "ns/sweep");
    assert_eq!(xy(s), [(20.0, 200.0), (30.0, 700.0), (45.0, 650.0)]);
    let labels: Vec<_> = s
        .points
        .iter()
        .map(|p| p.label.as_deref().unwrap())
        .collect();
    assert_eq!(labels, ["c=1", "c=4", "c=16"]);
    // 16 is slower than 4 and gives less: beaten on both axes.
    let dominated: Vec<_> = s.points.iter().map(|p| p.dominated).collect();
    assert_eq!(dominated, [false, false, true]);
    // Axes from 0 to 5 % past the largest value, and y a quarter past it
    // (room for the legend, top left).
    assert_eq!((f.x.min, f.x.max), (0.0, 45.0 * 1.05));
    assert_eq!((f.y.min, f.y.max), (0.0, 700.0 * 1.25));
    assert_eq!(f.legend, Corner::UpperLeft);
    assert!(p.notes.iter().any(|n| n
        == "throughput-vs-ttft-p99: ns/sweep at concurrency 32 is left out: its ttftP99Ms or outputTokenThroughput is withheld"));
    let itl = find(&p, "throughput-vs-itl-p99");
    assert_eq!(
        xy(&itl.series[0]),
        [(4.0, 200.0), (5.0, 700.0), (9.0, 650.0)]
    );
}

#[test]
fn tokens_per_joule_against_the_load_leaves_out_a_withheld_figure_and_says_so() {
    let p = one_run();
    let f = find(&p, "tokens-per-joule-vs-load");
    assert_eq!(f.x.label, "concurrency (requests in flight)");
    assert_eq!(f.y.label, "output tokens per joule (tokens/J)");
    assert_eq!(xy(&f.series[0]), [(1.0, 1.5), (4.0, 3.0)]);
    for c in [16, 32] {
        let note = format!(
            "tokens-per-joule-vs-load: ns/sweep at concurrency {c} is left out: its outputTokensPerJoule is withheld"
        );
        assert!(p.notes.contains(&note), "{note} not in {:#?}", p.notes);
    }
    // No objectives, no goodput: no plot, and a note why.
    assert!(!p.figures.iter().any(|f| f.file == "goodput-vs-load"));
    assert!(p.notes.iter().any(|n| n.starts_with("no goodput plot")));
}

#[test]
fn goodput_against_a_rate_sweep() {
    let mut d = doc("rates");
    d.steps = [(2.0, 1.9), (4.0, 3.5), (8.0, 2.0)]
        .iter()
        .enumerate()
        .map(|(i, &(rate, good))| StepResult {
            index: i as i32,
            request_rate: Some(rate),
            summary: Summary {
                goodput: Some(good),
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    let p = figures(&[Input {
        name: "ns/rates".into(),
        doc: d,
        timeseries: None,
    }]);
    let f = find(&p, "goodput-vs-load");
    assert_eq!(f.x.label, "request rate (req/s)");
    assert_eq!(xy(&f.series[0]), [(2.0, 1.9), (4.0, 3.5), (8.0, 2.0)]);
    let labels: Vec<_> = f.series[0]
        .points
        .iter()
        .map(|p| p.label.clone().unwrap())
        .collect();
    assert_eq!(labels, ["2/s", "4/s", "8/s"]);
    assert!(p.notes.iter().any(|n| n.contains("no plots over time")));
}

#[test]
fn percentile_curves_per_step_leave_out_a_step_some_workers_did_not_report() {
    let p = one_run();
    let f = find(&p, "ttft-percentiles");
    assert_eq!(f.x.label, "percentile (%)");
    assert_eq!(f.y.label, "TTFT (ms)");
    let names: Vec<_> = f.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["concurrency 1", "concurrency 4", "concurrency 16"]);
    // p1 … p99 of the first step: 0.2 × N ms.
    let expected: Vec<(f64, f64)> = [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0]
        .iter()
        .map(|&q| (q, 0.2 * q))
        .collect();
    for ((x, y), (ex, ey)) in xy(&f.series[0]).into_iter().zip(expected) {
        assert_eq!(x, ex);
        assert!((y - ey).abs() < 1e-9, "{y} vs {ey}");
    }
    assert!(p.notes.iter().any(|n| n.starts_with(
        "ttft-percentiles: ns/sweep concurrency 32 is left out: results from 1 of 2 load generators arrived"
    )));
    let lat = find(&p, "latency-percentiles");
    assert_eq!(lat.y.label, "request latency (ms)");
    assert!((lat.series[1].points[8].y - 0.3 * 20.0 * 99.0).abs() < 1e-9);
    assert!((find(&p, "itl-percentiles").series[0].points[4].y - 0.02 * 50.0).abs() < 1e-9);
}

#[test]
fn gpus_over_time_are_the_counted_ones_with_the_steps_marked() {
    let p = one_run();
    let f = find(&p, "gpu-power");
    assert_eq!(f.x.label, "time since the run's first record (s)");
    assert_eq!(f.y.label, "power (W)");
    let [s] = f.series.as_slice() else {
        panic!("{:?}", f.series)
    };
    assert_eq!(s.name, "GPU-aaaaaaaa");
    assert_eq!(s.style, Style::Line);
    assert_eq!(xy(s), [(0.0, 70.0), (10.0, 300.0), (20.0, 320.0)]);
    assert!(p.notes.iter().any(|n| n
        == "ns/sweep: 1 GPU(s) the exporters served but the results do not count (not the target's) are not plotted"));
    let marks: Vec<(f64, &str)> = f.markers.iter().map(|m| (m.x, m.label.as_str())).collect();
    assert_eq!(
        marks,
        [
            (2.0, "c=1"),
            (14.0, "c=4"),
            (26.0, "c=16"),
            (38.0, "c=32"),
            (48.0, "end")
        ]
    );
    // The markers are inside the x axis.
    assert!((f.x.max - 48.0 * 1.05).abs() < 1e-9, "{}", f.x.max);
    assert_eq!(f.legend, Corner::UpperRight);
    let u = find(&p, "gpu-utilization");
    assert_eq!(u.y.label, "GPU utilization (%)");
    assert_eq!(xy(&u.series[0]), [(0.0, 0.0), (10.0, 80.0), (20.0, 95.0)]);
    let c = find(&p, "client-tokens-per-second");
    // The first progress answer has no rate yet.
    assert_eq!(xy(&c.series[0]), [(15.0, 650.0)]);
}

#[test]
fn several_runs_overlay_with_their_names() {
    let mut b = sweep();
    b.run.name = "other".into();
    let p = figures(&[
        Input {
            name: "ns/sweep".into(),
            doc: sweep(),
            timeseries: Some(series()),
        },
        Input {
            name: "ns/other".into(),
            doc: b,
            timeseries: None,
        },
    ]);
    let f = find(&p, "throughput-vs-ttft-p99");
    let names: Vec<_> = f.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ns/sweep", "ns/other"]);
    let t = find(&p, "ttft-percentiles");
    assert_eq!(t.series[0].name, "ns/sweep concurrency 1");
    assert_eq!(t.series[3].name, "ns/other concurrency 1");
    let power = find(&p, "gpu-power");
    assert_eq!(power.series[0].name, "ns/sweep GPU-aaaaaaaa");
    assert_eq!(power.markers[0].label, "ns/sweep c=1");
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("ns/other: no plots over time"))
    );
}

#[test]
fn a_single_step_run_has_no_sweep_plots_and_says_why() {
    let mut d = sweep();
    d.steps.truncate(1);
    d.details.truncate(1);
    let p = figures(&[Input {
        name: "ns/one".into(),
        doc: d,
        timeseries: None,
    }]);
    assert!(!p.figures.iter().any(|f| f.file.contains("-vs-")));
    assert!(p.notes.iter().any(|n| n.starts_with("no sweep plots")));
    // One step: its curve is named after the run.
    assert_eq!(find(&p, "ttft-percentiles").series[0].name, "ns/one");
}

#[test]
fn trials_plot_the_means_of_each_sweep_step() {
    let mut d = sweep();
    let spread = |mean| crate::stats::trials::Spread {
        n: 3,
        mean,
        std: 1.0,
        ci95_low: mean - 1.0,
        ci95_high: mean + 1.0,
        cv: None,
    };
    d.trials = [(1, 210.0, 21.0), (4, 690.0, 31.0)]
        .iter()
        .enumerate()
        .map(|(i, &(c, tput, ttft))| crate::api::TrialsResult {
            index: i as i32,
            concurrency: Some(c),
            trials: 3,
            metrics: [
                ("outputTokenThroughput".to_string(), spread(tput)),
                ("ttftP99Ms".to_string(), spread(ttft)),
            ]
            .into(),
            ..Default::default()
        })
        .collect();
    let p = figures(&[Input {
        name: "ns/t".into(),
        doc: d,
        timeseries: None,
    }]);
    assert_eq!(
        xy(&find(&p, "throughput-vs-ttft-p99").series[0]),
        [(21.0, 210.0), (31.0, 690.0)]
    );
}

#[test]
fn the_timeseries_file_reads_back_and_a_bad_line_is_named() {
    let text: String = series()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    assert_eq!(read_timeseries(&text).unwrap(), series());
    let bad = text.clone() + "{\"type\":\"scrape\"}\n";
    let e = read_timeseries(&bad).unwrap_err();
    assert!(e.starts_with("timeseries line 7:"), "{e}");
}

/// The texts an SVG document draws.
fn texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim())
        })
        .collect()
}

#[test]
fn an_svg_shows_the_title_axes_legend_and_every_point() {
    let p = one_run();
    let f = find(&p, "throughput-vs-ttft-p99");
    let svg = draw::svg(f).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
    for text in [
        "Output token throughput against TTFT p99 (hollow: dominated)",
        "TTFT p99 (ms)",
        "output token throughput (tokens/s)",
        "ns/sweep",
        "c=1",
        "c=4",
        "c=16",
    ] {
        assert!(texts(&svg).contains(&text), "{text} missing");
    }
    assert_eq!(svg.matches("<circle").count(), 3, "one mark per point");
    // The markers of a plot over time are drawn and labelled.
    let power = draw::svg(find(&p, "gpu-power")).unwrap();
    for label in ["c=1", "c=4", "c=16", "end", "power (W)", "GPU-aaaaaaaa"] {
        assert!(texts(&power).contains(&label), "{label} missing");
    }
}

#[test]
fn a_png_is_written_at_the_figure_size() {
    let p = one_run();
    let dir = std::env::temp_dir().join(format!("benchrun-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f.png");
    draw::png(find(&p, "gpu-power"), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), draw::SIZE, "IHDR width and height");
}

/// The sweep `make demo` ran against the simulators (concurrency 1, 4, 16,
/// 32, a TTFT objective, its time series kept), saved as the plugin saves
/// a run: every figure's points are the document's own figures.
#[test]
fn a_recorded_simulator_sweep_plots_its_own_figures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plot/testdata/sweep");
    let run = crate::cli::plot::read_saved(&dir).unwrap();
    assert_eq!(run.name, "demo/qwen-sweep");
    let doc = run.doc.clone();
    let records = run
        .timeseries
        .clone()
        .expect("the demo keeps its time series");
    let p = figures(&[run]);
    // Every point inside its axes.
    for f in &p.figures {
        for s in &f.series {
            for pt in &s.points {
                assert!(
                    (f.x.min..=f.x.max).contains(&pt.x) && (f.y.min..=f.y.max).contains(&pt.y),
                    "{}: ({}, {}) outside its axes",
                    f.file,
                    pt.x,
                    pt.y
                );
            }
        }
    }
    assert_eq!(doc.steps.len(), 4);
    let pareto = &find(&p, "throughput-vs-ttft-p99").series[0];
    let expected: Vec<(f64, f64)> = doc
        .steps
        .iter()
        .filter_map(|s| Some((s.summary.ttft_p99_ms?, s.summary.output_token_throughput?)))
        .collect();
    assert_eq!(xy(pareto), expected);
    let labels: Vec<_> = pareto
        .points
        .iter()
        .map(|p| p.label.clone().unwrap())
        .collect();
    assert_eq!(labels, ["c=1", "c=4", "c=16", "c=32"]);
    let per_load = |file: &str, pick: fn(&Summary) -> Option<f64>| {
        let want: Vec<(f64, f64)> = doc
            .steps
            .iter()
            .filter_map(|s| Some((f64::from(s.concurrency?), pick(&s.summary)?)))
            .collect();
        assert!(!want.is_empty(), "{file}: the recording has the figure");
        assert_eq!(xy(&find(&p, file).series[0]), want, "{file}");
    };
    per_load("tokens-per-joule-vs-load", |s| s.output_tokens_per_joule);
    per_load("goodput-vs-load", |s| s.goodput);
    // A percentile curve per step, through the step's own percentiles.
    let ttft = find(&p, "ttft-percentiles");
    assert_eq!(ttft.series.len(), doc.details.len());
    for (s, d) in ttft.series.iter().zip(&doc.details) {
        let c = d.client.as_ref().unwrap();
        assert_eq!(s.points[4], Point::at(50.0, c.ttft_s.p50 * 1e3));
        assert_eq!(s.points[8], Point::at(99.0, c.ttft_s.p99 * 1e3));
    }
    // Over time: the GPU the results count, at every scrape that read it,
    // and each step's start and the end marked.
    let counted: Vec<&str> = doc.details[0]
        .gpus
        .iter()
        .map(|g| g.identity.uuid.as_deref().unwrap())
        .collect();
    let power = find(&p, "gpu-power");
    assert_eq!(power.series.len(), counted.len());
    let readings = records
        .iter()
        .filter(|r| matches!(r, Record::Scrape { gpus, .. } if gpus.iter().any(|g| g.gpu == counted[0] && g.power_w.is_some())))
        .count();
    assert_eq!(power.series[0].points.len(), readings);
    assert_eq!(power.markers.len(), doc.details.len() + 1);
    assert!(find(&p, "client-tokens-per-second").series[0].points.len() > 4);
}
