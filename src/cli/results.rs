//! `kubectl benchrun results NAME`: a run's results ConfigMap as tables — the
//! client's latencies and throughput, energy and tokens per joule, one row per
//! GPU, the server's metrics, and the endpoints and notes.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::api::BenchmarkRun;
use crate::results::{ResultsDocument, StepDetail};
use crate::scrape::Kind;
use crate::stats::Summary;

#[derive(Parser, Debug)]
#[command(name = "kubectl benchrun", about = "benchrun's kubectl plugin")]
struct Plugin {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Print a run's results: client, energy, per-GPU and server tables.
    Results(ResultsOpts),
    /// Compare runs side by side, metric by metric, against the first.
    Compare(CompareOpts),
    /// Draw a run's results as images (SVG or PNG); several runs overlay.
    Plot(super::plot::PlotOpts),
}

#[derive(clap::Args, Debug)]
struct CompareOpts {
    /// The runs, `NAME` or `NAMESPACE/NAME`; the first is the baseline. One
    /// run: its sweep's steps side by side, the first step the baseline.
    #[arg(num_args = 1.., required = true)]
    runs: Vec<String>,
    /// The namespace of runs named without one (default: the kubeconfig's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = CompareOutput::Table)]
    output: CompareOutput,
    /// The relative change that still counts as the same: `5%` or `0.05`.
    #[arg(long, default_value = "5%", value_parser = fraction)]
    tolerance: f64,
    /// Exit 1 when any figure got worse than the baseline's past the tolerance.
    #[arg(long)]
    fail_on_regression: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CompareOutput {
    Table,
    Json,
    Csv,
    Markdown,
}

/// `5%` or `0.05`, at least 0.
fn fraction(s: &str) -> Result<f64, String> {
    let v = if s.trim().ends_with('%') {
        crate::api::percent(s).ok_or_else(|| format!("{s:?}: not a percentage"))?
    } else {
        s.trim().parse::<f64>().map_err(|e| format!("{s:?}: {e}"))?
    };
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: a tolerance is 0 or more"))
    }
}

#[derive(clap::Args, Debug)]
struct ResultsOpts {
    /// The BenchmarkRun.
    name: String,
    /// Its namespace (default: the kubeconfig's).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    /// The reference documents' console tables: endpoints reachable, a row
    /// per sweep step, a table per GPU and per server endpoint (as wide as
    /// `$COLUMNS`, else 132 columns).
    Wide,
    Json,
    /// The run's time series as JSON Lines (`spec.results.timeseries: true`),
    /// e.g. `-o timeseries > run.jsonl`.
    Timeseries,
}

/// Runs `kubectl benchrun ARGS`.
pub fn main(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("kubectl-benchrun".to_string()).chain(args);
    let plugin = match Plugin::try_parse_from(argv) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubectl benchrun: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = match plugin.command {
        PluginCommand::Results(opts) => opts,
        PluginCommand::Compare(opts) => return rt.block_on(compare(&opts)),
        PluginCommand::Plot(opts) => return rt.block_on(super::plot::main(&opts)),
    };
    let shown = rt
        .block_on(fetch(opts.namespace.as_deref(), &opts.name))
        .and_then(|files| match opts.output {
            Output::Timeseries => files
                .get(crate::measure::timeseries::FILE)
                .cloned()
                .ok_or_else(|| {
                    "the run kept no time series (set spec.results.timeseries: true)".to_string()
                }),
            Output::Table => document(&files).map(|doc| render(&doc)),
            Output::Wide => document(&files).map(|doc| {
                let width = std::env::var("COLUMNS")
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(132);
                super::tables::render(&doc, width)
            }),
            Output::Json => document(&files)
                .map(|doc| serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"),
        });
    match shown {
        Ok(text) => {
            crate::out!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubectl benchrun results {}: {e}", opts.name);
            ExitCode::FAILURE
        }
    }
}

/// `kubectl benchrun compare`: exit 0, 1 when asked to fail on a
/// regression and there is one, 2 when the runs cannot be compared.
async fn compare(opts: &CompareOpts) -> ExitCode {
    let c = match comparison(&opts.runs, opts.namespace.as_deref(), opts.tolerance).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kubectl benchrun compare: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match opts.output {
        CompareOutput::Table => super::compare::table(&c),
        CompareOutput::Markdown => super::compare::markdown(&c),
        CompareOutput::Csv => super::compare::csv(&c),
        CompareOutput::Json => serde_json::to_string_pretty(&c).unwrap_or_default() + "\n",
    };
    crate::out!("{text}");
    if opts.fail_on_regression && c.regressed() {
        for (step, metric, run) in c.worse() {
            eprintln!("regressed: {run} {metric} at {step}");
        }
        return ExitCode::from(1);
    }
    if opts.fail_on_regression && !c.judged_any() {
        // Nothing compared is not a pass.
        eprintln!("no figure could be compared: every one was withheld or missing on a side");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// The comparison of `runs` (`NAME` in `namespace`, else the kubeconfig's,
/// or `NAMESPACE/NAME`; the first is the baseline) from their results.
pub async fn comparison(
    runs: &[String],
    namespace: Option<&str>,
    tolerance: f64,
) -> Result<super::compare::Comparison, String> {
    let mut docs = Vec::new();
    for arg in runs {
        let doc = fetch_arg(arg, namespace)
            .await
            .and_then(|files| document(&files))
            .map_err(|e| format!("{arg}: {e}"))?;
        docs.push((format!("{}/{}", doc.run.namespace, doc.run.name), doc));
    }
    Ok(match docs.as_slice() {
        [(name, doc)] => super::compare::compare_steps(name, doc, tolerance),
        _ => super::compare::compare(&docs, tolerance),
    })
}

/// The results files of the run `arg` names: `NAME` in `namespace` (else
/// the kubeconfig's), or `NAMESPACE/NAME`.
pub(super) async fn fetch_arg(
    arg: &str,
    namespace: Option<&str>,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    match arg.split_once('/') {
        Some((ns, name)) => fetch(Some(ns), name).await,
        None => fetch(namespace, arg).await,
    }
}

/// The results files of run `name` (in `namespace`, else the kubeconfig's),
/// unpacked from its ConfigMap(s).
async fn fetch(
    namespace: Option<&str>,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let ns = namespace
        .map(str::to_string)
        .unwrap_or_else(|| client.default_namespace().to_string());
    let runs: Api<BenchmarkRun> = Api::namespaced(client.clone(), &ns);
    let run = runs
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no BenchmarkRun {name} in namespace {ns}"))?;
    let base = run
        .status
        .as_ref()
        .and_then(|s| s.results_config_map.clone())
        .ok_or("the run has no results yet (status.resultsConfigMap is empty)")?;
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    crate::results::read(&cms, &base).await
}

/// The results document, `summary.json`.
pub(super) fn document(
    files: &std::collections::BTreeMap<String, String>,
) -> Result<ResultsDocument, String> {
    let summary = files
        .get("summary.json")
        .ok_or("the results have no summary.json")?;
    serde_json::from_str(summary).map_err(|e| format!("summary.json: {e}"))
}

fn ms(s: &Summary) -> [String; 4] {
    [s.mean, s.p50, s.p90, s.p99].map(|v| format!("{:.2}", v * 1e3))
}

fn stat(d: &StepDetail, gpu: usize, key: &str, f: fn(&Summary) -> f64) -> String {
    d.gpus[gpu]
        .metrics
        .iter()
        .find(|m| m.key == key)
        .and_then(|m| m.stats.as_ref())
        .map_or_else(|| "-".to_string(), |s| format!("{:.1}", f(s)))
}

/// The tables, as `kubectl benchrun results` prints them.
pub fn render(doc: &ResultsDocument) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "run {}/{}: {} ({}{})",
        doc.run.namespace,
        doc.run.name,
        doc.phase,
        doc.reason,
        if doc.message.is_empty() {
            String::new()
        } else {
            format!(": {}", doc.message)
        }
    );
    if let Some(r) = doc.routing {
        let _ = writeln!(o, "requests went {}", r.describe());
    }
    render_trials(&mut o, doc);
    if let Some(g) = &doc.baseline {
        let (status, _, message) = g.condition();
        let verdict = match status {
            Some(true) => "regressed",
            Some(false) => "within tolerance",
            None => "not judged",
        };
        let _ = writeln!(o, "baseline: {verdict}: {message}");
    }
    for d in &doc.details {
        let span = d
            .window
            .map(|w| {
                format!(
                    "{:.1} s measured",
                    (w.end_unix_ms - w.start_unix_ms) as f64 / 1e3
                )
            })
            .unwrap_or_else(|| "no telemetry".into());
        let _ = writeln!(
            o,
            "\nstep {}  ({span}, GPU scope {})",
            d.index,
            or_dash(&d.gpu_scope)
        );
        // A figure withheld in the status is withheld here: client figures
        // of a step some load generators' results are missing from.
        if d.client.is_some()
            && !d.client_complete()
            && let Some(gap) = d.client_coverage.and_then(|w| w.gap())
        {
            let _ = writeln!(o, "  client: withheld: {}", gap.message);
        } else if let Some(c) = &d.client {
            let errors: u64 = c.errors.values().sum();
            let _ = writeln!(
                o,
                "  client: {} requests, {} ok, {} errors, {:.2} req/s, {:.1} output tokens/s{}",
                c.requests,
                c.successes,
                errors,
                c.requests_per_s,
                c.output_tokens_per_s,
                c.concurrency
                    .map(|n| format!(", {n} streams"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                o,
                "  {:<10} {:>10} {:>10} {:>10} {:>10}",
                "ms", "avg", "p50", "p90", "p99"
            );
            let answer =
                (c.reasoning_tokens > 0).then_some(("TTFT ans", &c.time_to_first_answer_token_s));
            for (name, s) in [("TTFT", &c.ttft_s)]
                .into_iter()
                .chain(answer)
                .chain([("ITL", &c.itl_s), ("latency", &c.latency_s)])
            {
                let [a, b, c2, e] = ms(s);
                let _ = writeln!(o, "  {name:<10} {a:>10} {b:>10} {c2:>10} {e:>10}");
            }
            if c.reasoning_tokens > 0 {
                let _ = writeln!(
                    o,
                    "  reasoning: {} of {} output tokens (TTFT: any first token; TTFT ans: the answer's)",
                    c.reasoning_tokens, c.output_tokens
                );
            }
            if let Some(s) = &c.prompt_sizing {
                let _ = writeln!(o, "  {}", s.describe(&c.input_tokens_per_request));
            }
        }
        if let Some(why) = d.efficiency.as_ref().and(d.energy_withheld()) {
            let _ = writeln!(o, "  energy: withheld: {why}");
        } else if let Some(e) = &d.efficiency {
            let _ = writeln!(
                o,
                "  energy: {} GPU(s), {:.1} J ({}{}), {:.1} W{}{}",
                e.gpu_count,
                e.total_gpu_energy_j,
                e.energy_source,
                e.energy_uncertainty_j
                    .map(|u| format!(", ±{u:.1} J"))
                    .unwrap_or_default(),
                e.total_gpu_power_w,
                e.output_tokens_per_joule
                    .map(|v| format!(", {v:.3} tokens/J"))
                    .unwrap_or_default(),
                e.energy_per_output_token_j
                    .map(|v| format!(", {v:.4} J/token"))
                    .unwrap_or_default(),
            );
        }
        let gpus = d.shown_gpus();
        if !gpus.is_empty() {
            let _ = writeln!(
                o,
                "  {:<4} {:<14} {:<24} {:<32} {:>8} {:>10} {:>7} {:>6} {:>9} {:>7}",
                "GPU",
                "UUID",
                "MODEL",
                "POD",
                "POWER W",
                "ENERGY J",
                "UTIL %",
                "SM %",
                "TENSOR %",
                "TEMP C"
            );
            for (i, g) in gpus.iter().enumerate() {
                let uuid = g.identity.uuid.as_deref().unwrap_or("-");
                let pods: Vec<String> = g.pods.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    o,
                    "  {:<4} {:<14} {:<24} {:<32} {:>8} {:>10} {:>7} {:>6} {:>9} {:>7}",
                    g.identity.index.as_deref().unwrap_or("?"),
                    uuid.chars().take(12).collect::<String>() + "..",
                    g.identity.model.as_deref().unwrap_or("-"),
                    or_dash(&pods.join(",")),
                    g.energy
                        .as_ref()
                        .map_or("-".into(), |e| format!("{:.1}", e.avg_power_w)),
                    g.energy
                        .as_ref()
                        .map_or("-".into(), |e| format!("{:.1}", e.joules)),
                    stat(d, i, "gpu_utilization", |s| s.mean),
                    stat(d, i, "sm_active", |s| s.mean),
                    stat(d, i, "tensor_active", |s| s.mean),
                    stat(d, i, "gpu_temperature", |s| s.max),
                );
                for w in &g.warnings {
                    let _ = writeln!(o, "       warning: {w}");
                }
            }
        }
        render_server(&mut o, d);
    }
    if !doc.endpoints.is_empty() {
        let _ = writeln!(o, "\nendpoints:");
        for e in &doc.endpoints {
            let _ = writeln!(
                o,
                "  {:<6} {:<44} {:<11} {} scrapes, {} failed{}",
                e.kind,
                e.url,
                if e.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                },
                e.scrapes,
                e.failures,
                e.longest_gap_s
                    .map(|g| format!(
                        ", longest gap {g:.1} s ({})",
                        e.last_error.as_deref().unwrap_or("")
                    ))
                    .unwrap_or_default()
            );
        }
    }
    for n in &doc.notes {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

/// Each step of the sweep across the trials: the figures' means with their
/// intervals, and the temperature each trial started at.
fn render_trials(o: &mut String, doc: &ResultsDocument) {
    if doc.trials.is_empty() {
        return;
    }
    let starts: Vec<String> = doc
        .steps
        .iter()
        .filter_map(|s| Some(format!("{:.0} °C", s.start_temperature_c?)))
        .collect();
    let _ = writeln!(
        o,
        "trials: {}{}",
        doc.trials.iter().map(|t| t.trials).max().unwrap_or(0),
        if starts.is_empty() {
            String::new()
        } else {
            format!(" (GPUs at {} as each began)", starts.join(", "))
        }
    );
    for t in &doc.trials {
        let load = t.load();
        let _ = writeln!(
            o,
            "  {load}: {:<24} {:>12} {:>25} {:>10} {:>7}",
            "figure", "mean", "95 % interval", "std", "CV"
        );
        for m in crate::api::SloMetric::ALL {
            let Some(s) = t.metrics.get(m.name()) else {
                continue;
            };
            let _ = writeln!(
                o,
                "    {:<24} {:>12.3} {:>25} {:>10.3} {:>7}",
                m.name(),
                s.mean,
                format!("[{:.3}, {:.3}]", s.ci95_low, s.ci95_high),
                s.std,
                s.cv.map_or("-".into(), |c| format!("{:.1}%", c * 100.0))
            );
        }
        if !t.withheld.is_empty() {
            let _ = writeln!(
                o,
                "    withheld (some trial lacks them): {}",
                t.withheld.join(", ")
            );
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Server families summed over series, one line each.
fn render_server(o: &mut String, d: &StepDetail) {
    if d.server.is_empty() {
        return;
    }
    let _ = writeln!(o, "  server metrics ({} families):", d.server.len());
    for f in &d.server {
        let mut line = String::new();
        match f.kind {
            Kind::Counter => {
                let total: f64 = f.series.iter().filter_map(|s| s.total).sum();
                let rate: f64 = f.series.iter().filter_map(|s| s.rate).sum();
                let _ = write!(line, "+{total:.6} ({rate:.6}/s)");
            }
            Kind::Histogram => {
                let h: Vec<_> = f
                    .series
                    .iter()
                    .filter_map(|s| s.histogram.as_ref())
                    .collect();
                let count: f64 = h.iter().map(|h| h.count).sum();
                let p = |f: fn(&crate::telemetry::server::HistogramResult) -> Option<f64>| {
                    h.iter()
                        .find_map(|h| f(h))
                        .map_or("-".into(), |v| format!("{v:.6}"))
                };
                let _ = write!(
                    line,
                    "count +{count}, p50 {}, p99 {}",
                    p(|h| h.p50),
                    p(|h| h.p99)
                );
            }
            _ => {
                let stats: Vec<_> = f.series.iter().filter_map(|s| s.stats.as_ref()).collect();
                if let Some(s) = stats.first() {
                    let _ = write!(line, "avg {:.6} max {:.6}", s.mean, s.max);
                    if stats.len() > 1 {
                        let _ = write!(line, " (first of {} series)", stats.len());
                    }
                }
            }
        }
        let line = line.replace(".000000", "");
        let _ = writeln!(
            o,
            "    {:<44} {:<10} {:<10} {line}",
            f.name,
            f.kind.as_str(),
            f.unit
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_parses_and_renders_a_document() {
        let p =
            Plugin::try_parse_from(["kubectl-benchrun", "results", "r1", "-n", "demo"]).unwrap();
        let PluginCommand::Results(o) = p.command else {
            panic!("results parsed as another command")
        };
        assert_eq!(
            (o.name.as_str(), o.namespace.as_deref()),
            ("r1", Some("demo"))
        );
        assert!(Plugin::try_parse_from(["kubectl-benchrun", "results"]).is_err());
        let p = Plugin::try_parse_from([
            "kubectl-benchrun",
            "compare",
            "a",
            "other/b",
            "-o",
            "markdown",
            "--tolerance",
            "2%",
            "--fail-on-regression",
        ])
        .unwrap();
        let PluginCommand::Compare(c) = p.command else {
            panic!("compare parsed as another command")
        };
        assert_eq!(c.runs, ["a", "other/b"]);
        assert_eq!(c.output, CompareOutput::Markdown);
        assert!((c.tolerance - 0.02).abs() < 1e-12 && c.fail_on_regression);
        assert!(Plugin::try_parse_from(["kubectl-benchrun", "compare", "a"]).is_ok());
        assert!(Plugin::try_parse_from(["kubectl-benchrun", "compare"]).is_err());
        assert_eq!(fraction("0.1"), Ok(0.1));
        assert!(fraction("-1%").is_err() && fraction("five").is_err());

        let json = include_str!("testdata/summary.json");
        let doc: ResultsDocument = serde_json::from_str(json).unwrap();
        let out = render(&doc);
        for want in [
            "run demo/qwen-c8: Succeeded (Completed: the load generators finished)",
            "client: 200 requests, 200 ok, 0 errors, 11.37 req/s",
            "TTFT",
            "energy: 1 GPU(s), 6288.3 J (counter, ±342.5 J), 351.3 W, 2.036 tokens/J",
            "demo/llm-57f7f99945-9kj2n",
            "vllm:generation_tokens_total",
            "reachable",
        ] {
            assert!(out.contains(want), "{want:?} not in:\n{out}");
        }
        assert!(
            !out.contains("requests went"),
            "recorded before routing was"
        );
        assert!(
            !out.contains("prompts:"),
            "recorded before prompt sizing was"
        );
        let mut doc = doc;
        doc.routing = Some(crate::results::Routing::Service);
        let client = doc.details[0].client.as_mut().unwrap();
        client.prompt_sizing = Some(crate::loadgen::tokenize::PromptSizing {
            method: crate::loadgen::tokenize::SizingMethod::Server,
            tokens_per_word: Some(1.6875),
            template_tokens: Some(5),
            check: None,
            note: None,
        });
        let out = render(&doc);
        assert!(
            out.contains("prompts: sized in the server's tokens (1.69 per word, +5 template)"),
            "{out}"
        );
        assert!(
            out.contains("requests went through the Service's name and virtual IP"),
            "{out}"
        );
        let mut tried = doc.clone();
        tried.steps = (0..2)
            .map(|k| crate::api::StepResult {
                index: k,
                trial: Some(k),
                start_temperature_c: Some(40.0 + f64::from(k)),
                ..Default::default()
            })
            .collect();
        tried.trials = crate::results::trials::trials(
            &[doc.summary.clone(), doc.summary.clone()]
                .into_iter()
                .enumerate()
                .map(|(k, mut summary)| {
                    summary.ttft_p50_ms = Some(98.0 + 2.0 * k as f64);
                    crate::api::StepResult {
                        index: k as i32,
                        summary,
                        ..Default::default()
                    }
                })
                .collect::<Vec<_>>(),
            1,
        )
        .0;
        let out = render(&tried);
        assert!(
            out.contains("trials: 2 (GPUs at 40 °C, 41 °C as each began)"),
            "{out}"
        );
        assert!(
            out.lines().any(|l| l.trim_start().starts_with("ttftP50Ms")
                && l.contains("99.000")
                && l.contains("[86.294, 111.706]")),
            "{out}"
        );
        let mut faster = doc.clone();
        faster.summary.ttft_p50_ms = Some(49.0);
        doc.baseline = Some(crate::results::compare::gate(
            "run demo/base",
            &faster,
            &doc,
            &[crate::api::Tolerance {
                metric: crate::api::SloMetric::TtftP50Ms,
                max_regression: "5%".into(),
            }],
        ));
        let out = render(&doc);
        assert!(
            out.contains("baseline: regressed: ttftP50Ms +101.6% (max 5%) against run demo/base"),
            "{out}"
        );
    }
}
