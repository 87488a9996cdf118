//! A real inference engine: llama.cpp's `llama-server` (built by
//! e2e/tools/build.sh from the llama-cpp-python source distribution) serving
//! a tiny model with a real tokenizer vocabulary and chat template
//! (e2e/tools/llama-cpp/tiny_model.py). Its own accounting is the truth: the
//! token counts and timings it returns with each request, and its `/metrics`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use benchrun::api::BenchmarkRun;
use benchrun::loadgen::plan::{Endpoint, StopCondition, Tokenizer};
use benchrun_e2e::harness::{TestNamespace, client};
use kube::api::PostParams;
use serde_json::Value;

use crate::common::{Server, deploy, phase, run, sim_load, summary_json, wait_ended};

/// The folder with `llama-server` and the tiny models (scripts/cluster.sh
/// exports it).
fn tools() -> PathBuf {
    PathBuf::from(std::env::var_os("BENCHRUN_E2E_TOOLS").expect(
        "BENCHRUN_E2E_TOOLS names the folder of e2e/tools/build.sh (scripts/e2e.sh sets it)",
    ))
}

/// The server's arguments: `model` (a file beside the tools) as
/// `e2e/llama-tiny` on `host:port`, `slots` parallel sequences with
/// continuous batching, metrics on.
fn llama_args(model: &str, host: &str, port: u16, slots: u32) -> Vec<String> {
    let model = tools().join(model);
    [
        "-m",
        model.to_str().unwrap(),
        "--alias",
        "e2e/llama-tiny",
        "--host",
        host,
        "--port",
        &port.to_string(),
        "--parallel",
        &slots.to_string(),
        "--cont-batching",
        "--metrics",
        "-c",
        "8192",
        "-t",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

/// llama-server serving `model` on `port` with `slots` as the pod behind
/// Service `sim`, measured by run `name` (`load`, `extra` as
/// [`run`] takes them): the run succeeds; its results document.
async fn measured(
    ns: &TestNamespace,
    (model, port, slots): (&str, u16, u32),
    name: &str,
    load: &str,
    extra: &str,
) -> Value {
    deploy(
        ns,
        &Server {
            name: "sim",
            image: "registry.invalid/llama-server:0c1e570",
            args: llama_args(model, "0.0.0.0", port, slots),
            port: i32::from(port),
            gpus: 0,
            node: None,
            probe: "/health",
        },
    )
    .await
    .unwrap();
    succeeded(ns, name, load, extra).await
}

/// Run `name` against the llama-server already deployed: it succeeds; its
/// results document.
async fn succeeded(ns: &TestNamespace, name: &str, load: &str, extra: &str) -> Value {
    let mut r: BenchmarkRun = run(name, load, extra);
    r.spec.target.model = "e2e/llama-tiny".into();
    ns.api::<BenchmarkRun>()
        .create(&PostParams::default(), &r)
        .await
        .unwrap();
    let done = wait_ended(ns, name).await;
    assert_eq!(
        phase(Some(&done)).as_deref(),
        Some("Succeeded"),
        "{:#?}",
        done.status
    );
    summary_json(ns, name).await
}

/// One counter family's increase over a step, summed over its series.
fn increase(step: &Value, family: &str) -> f64 {
    step["server"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == family)
        .unwrap_or_else(|| panic!("no {family} in the step's server metrics"))["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["total"].as_f64().unwrap_or(0.0))
        .sum()
}

/// A concurrency sweep (1, 2, 4 streams; 4 slots) against llama-server as a
/// pod, its metrics found by selector: every step's requests succeed; the
/// prompts are the asked length in the engine's own tokens (sized through
/// its /tokenize and /apply-template, and counted by its usage); the outputs
/// are as asked; the engine's token counters moved by the client's counts;
/// and the client's first token never comes before the engine's own prompt
/// time.
#[tokio::test]
async fn a_sweep_against_llama_cpp_is_measured_in_its_own_tokens() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "llama").await.unwrap();
    let (asked_in, asked_out, per_step) = (64u64, 16u64, 24u64);
    let load = format!(
        "\n    requestCount: {per_step}\n    sweep: {{concurrency: [1, 2, 4]}}\n    extraInputs: {{ignore_eos: true}}\n    input: {{synthetic: {{tokenizer: server, inputTokens: {{mean: {asked_in}}}, outputTokens: {{mean: {asked_out}}}}}}}"
    );
    let extra = "  telemetry:\n    server:\n      selector: {matchLabels: {app: sim}}\n";
    let doc = measured(&ns, ("tiny-spm.gguf", 18411, 4), "llama", &load, extra).await;
    let steps = doc["details"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    for (k, step) in steps.iter().enumerate() {
        let c = &step["client"];
        assert_eq!(c["requests"].as_u64(), Some(per_step), "step {k}: {c:#}");
        assert_eq!(c["successes"].as_u64(), Some(per_step), "step {k}: {c:#}");
        assert!(
            c["errors"].as_object().is_none_or(|e| e.is_empty()),
            "step {k}: {c:#}"
        );
        // Sized in llama.cpp's own tokens, its chat template counted.
        let sizing = &c["promptSizing"];
        assert_eq!(sizing["method"], "server", "{sizing:#}");
        assert_eq!(sizing["check"]["counted"].as_u64(), Some(asked_in));
        assert!(
            sizing["note"].as_str().unwrap_or("").contains("llama.cpp"),
            "{sizing:#}"
        );
        let template = sizing["templateTokens"].as_u64().unwrap();
        assert!(template > 0, "a chat template costs tokens: {sizing:#}");
        let sent = &c["inputTokensPerRequest"];
        for bound in ["min", "max"] {
            assert_eq!(
                sent[bound].as_f64(),
                Some((asked_in + template) as f64),
                "step {k}: the engine's usage of every prompt: {sent:#}"
            );
        }
        assert_eq!(c["outputTokens"].as_u64(), Some(per_step * asked_out));
        assert!(c["stoppedEarly"].is_null(), "ignore_eos is honoured: {c:#}");
        assert_eq!(c["newConnectionPerRequest"], true, "{c:#}");
        // The engine's own counters over the step's telemetry window. The
        // first step's window opens at the workers' shared start instant,
        // before any request (their prompt sizing and connection probe come
        // before it): its count is exact. A later step's window opens when
        // the controller sees every worker measuring it and closes when it
        // sees them past it, milliseconds after the workers' own boundaries;
        // this engine answers a request in about as long, so such a window
        // may miss a first request's count or take in the next step's first
        // one: within one wave of streams (this step's at the start, the
        // next one's at the end). The per-request test below holds every
        // count exactly.
        let streams = c["concurrency"].as_u64().unwrap();
        let next = steps
            .get(k + 1)
            .map_or(0, |s| s["client"]["concurrency"].as_u64().unwrap());
        let predicted = increase(step, "llamacpp:tokens_predicted_total");
        let client_out = (per_step * asked_out) as f64;
        eprintln!(
            "llama.cpp step {k}: engine generated {predicted} tokens in the window, the client counted {client_out}"
        );
        if k == 0 {
            assert_eq!(predicted, client_out, "step 0");
        }
        assert!(
            predicted >= client_out - (streams * asked_out) as f64
                && predicted <= client_out + (next * asked_out) as f64,
            "step {k}: the engine generated {predicted} tokens in the window, the client counted {client_out}"
        );
        let prompts = increase(step, "llamacpp:prompt_tokens_total")
            + increase(step, "llamacpp:prompt_tokens_cached_total");
        let client_in = c["inputTokens"].as_f64().unwrap();
        let per_prompt = (asked_in + template) as f64;
        eprintln!(
            "llama.cpp step {k}: engine processed {prompts} prompt tokens in the window, the client sent {client_in}"
        );
        if k == 0 {
            assert_eq!(prompts, client_in, "step 0");
        }
        assert!(
            prompts >= client_in - streams as f64 * per_prompt
                && prompts <= client_in + next as f64 * per_prompt,
            "step {k}: the engine processed {prompts} prompt tokens, the client sent {client_in}"
        );
        // The client's first token comes after the engine's prompt time
        // (plus queueing and transport), never before.
        let prompt_s = increase(step, "llamacpp:prompt_seconds_total");
        let engine_prompt_ms = prompt_s * 1e3 / (prompts / per_prompt);
        let ttft_ms = c["ttftS"]["mean"].as_f64().unwrap() * 1e3;
        eprintln!(
            "llama.cpp step {k}: client TTFT mean {ttft_ms:.2} ms, engine prompt time mean {engine_prompt_ms:.2} ms"
        );
        assert!(ttft_ms >= engine_prompt_ms * 0.9, "step {k}");
    }
    // The engine's metrics in the console tables, each with its unit: a
    // throughput in tokens/s, a time in ms, a token counter in tokens.
    let parsed: benchrun::results::ResultsDocument = serde_json::from_value(doc.clone()).unwrap();
    let wide = benchrun::cli::tables::render(&parsed, 200);
    for row in [
        "llamacpp:prompt_tokens_seconds (tokens/s)",
        "llamacpp:predicted_tokens_seconds (tokens/s)",
        "llamacpp:tokens_predicted_total increase (tokens)",
        "llamacpp:requests_processing",
    ] {
        assert!(wide.contains(row), "{row} not in\n{wide}");
    }
    ns.delete().await.unwrap();
}

/// Kills the server when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts llama-server on loopback and waits for its `/health`.
async fn start_llama(model: &str, port: u16, slots: u32) -> Running {
    let args = llama_args(model, "127.0.0.1", port, slots);
    let child = Command::new(tools().join("llama-server"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("llama-server starts");
    let running = Running(child);
    let url = format!("http://127.0.0.1:{port}/health");
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if healthy(&url).await {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("llama-server on port {port} did not become healthy");
}

/// `GET url` answers 200 (llama-server's `/health` once its model is loaded).
async fn healthy(url: &str) -> bool {
    let client = benchrun::net::client::http_client(1);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.get(url.parse().unwrap())).await,
        Ok(Ok(resp)) if resp.status() == 200
    )
}

/// Per request, the engine's own timings against the client's, with the
/// second vocabulary (GPT-2's byte-pair encoding) on the completions
/// endpoint: every request succeeds; its prompt is the asked length by the
/// engine's count; its output tokens are the engine's; the client's TTFT is
/// the engine's prompt time plus queueing and transport, never less; the
/// client's inter-token latency is the engine's time per generated token.
#[tokio::test]
async fn every_request_agrees_with_llama_cpp_s_own_timings() {
    let port = 18412;
    let _server = start_llama("tiny-bpe.gguf", port, 4).await;
    let dir = tempfile_dir();
    let file = dir.join("timings.jsonl");
    let mut plan = sim_load(format!("http://127.0.0.1:{port}"), 4, 0, 100);
    plan.model = "e2e/llama-tiny".into();
    plan.endpoint = Endpoint::Completions;
    plan.stop = StopCondition::Requests(40);
    plan.tokenizer = Tokenizer::Server;
    plan.extra_body
        .insert("ignore_eos".into(), serde_json::json!(true));
    if let benchrun::loadgen::plan::InputPlan::Synthetic { output_mean, .. } = &mut plan.input {
        *output_mean = 16;
    }
    plan.server_timings_file = Some(file.clone());
    let steps = benchrun::loadgen::engine::run(&plan, 0, None)
        .await
        .unwrap();
    let s = &steps[0];
    assert_eq!((s.requests, s.successes), (40, 40), "{:?}", s.error_samples);
    assert_eq!(s.stopped_early, 0, "ignore_eos is honoured");
    let sizing = s.prompt_sizing.as_ref().unwrap();
    assert_eq!(format!("{:?}", sizing.method), "Server");
    let rows: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 40);
    let mut gaps = Vec::new();
    let mut itl_diff = Vec::new();
    for r in &rows {
        let server = &r["server"];
        assert!(server.is_object(), "llama.cpp reports timings: {r}");
        let n = |k: &str| server[k].as_u64().unwrap();
        let input = r["inputTokens"].as_u64().unwrap();
        assert_eq!(
            input,
            100 + sizing.template_tokens.unwrap_or(0),
            "the asked prompt, by the engine's usage: {r}"
        );
        assert_eq!(input, n("promptN") + n("cacheN"), "{r}");
        assert_eq!(r["outputTokens"].as_u64(), Some(n("predictedN")), "{r}");
        assert_eq!(n("predictedN"), 16);
        let ttft = r["ttftMs"].as_f64().unwrap();
        let prompt_ms = server["promptMs"].as_f64().unwrap();
        assert!(
            ttft >= prompt_ms,
            "TTFT {ttft} ms before the engine's prompt time {prompt_ms} ms: {r}"
        );
        gaps.push(ttft - prompt_ms);
        let per_token = server["predictedMs"].as_f64().unwrap() / (n("predictedN") - 1) as f64;
        itl_diff.push(r["itlMs"].as_f64().unwrap() - per_token);
    }
    gaps.sort_by(f64::total_cmp);
    itl_diff.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v[v.len() / 2];
    eprintln!(
        "llama.cpp per request: TTFT - engine prompt time p50 {:.2} ms (min {:.2}, max {:.2}); ITL - engine time per token p50 {:.3} ms (min {:.3}, max {:.3})",
        median(&gaps),
        gaps[0],
        gaps[gaps.len() - 1],
        median(&itl_diff),
        itl_diff[0],
        itl_diff[itl_diff.len() - 1]
    );
    // Queueing for a slot and transport, on a 2-core machine with the suite
    // beside it: tens of milliseconds at most.
    assert!(median(&gaps) < 50.0, "{gaps:?}");
    assert!(median(&itl_diff).abs() < 1.0, "{itl_diff:?}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("benchrun-llama-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The byte-pair model's tokenizer files as Hugging Face publishes them,
/// written from the same vocabulary (e2e/tools/llama-cpp/tokenizer_files.py).
fn tokenizer_files() -> PathBuf {
    tools().join("tiny-bpe-tokenizer")
}

/// A server without `/tokenize` is sized by the model's tokenizer files:
/// checked against llama.cpp's own `/tokenize` of the model written from the
/// same vocabulary. On both endpoints every vocabulary word costs the same
/// by the files as by the engine, and so does the chat template; and the
/// prompts sized by the files are the asked length by the engine's own
/// count of every request it served.
#[tokio::test]
async fn tokenizer_files_size_prompts_as_llama_cpp_counts_them() {
    use benchrun::loadgen::plan::{FilesAt, InputPlan, TokenizerFiles};
    use benchrun::loadgen::tokenize::{SizingMethod, sizing};
    let port = 18413;
    let _server = start_llama("tiny-bpe.gguf", port, 4).await;
    let client = benchrun::net::client::http_client(1);
    let tls = Default::default();
    let asked = 96;
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        let mut plan = sim_load(format!("http://127.0.0.1:{port}"), 4, 0, asked);
        plan.model = "e2e/llama-tiny".into();
        plan.endpoint = endpoint;
        plan.stop = StopCondition::Requests(16);
        plan.extra_body
            .insert("ignore_eos".into(), serde_json::json!(true));
        if let InputPlan::Synthetic { output_mean, .. } = &mut plan.input {
            *output_mean = 4;
        }
        plan.tokenizer = Tokenizer::Server;
        let (by_engine, engine_sizing) = sizing(&client, &plan, &[], &tls).await.unwrap();
        plan.tokenizer = Tokenizer::Files;
        plan.tokenizer_files = Some(TokenizerFiles {
            at: FilesAt::Dir(tokenizer_files()),
            origin: "tiny-bpe-tokenizer".into(),
        });
        let (by_files, files_sizing) = sizing(&client, &plan, &[], &tls).await.unwrap();
        assert_eq!(
            engine_sizing.unwrap().method,
            SizingMethod::Server,
            "{endpoint:?}"
        );
        let (by_engine, by_files) = (by_engine.unwrap(), by_files.unwrap());
        eprintln!(
            "{endpoint:?}: template {} tokens by the engine, {} by the files; {:.3} tokens per word by both",
            by_engine.template,
            by_files.template,
            by_files.tokens_per_word()
        );
        assert_eq!(
            by_files, by_engine,
            "{endpoint:?}: every word's cost and the template"
        );
        let files_sizing = files_sizing.unwrap();
        assert_eq!(files_sizing.method, SizingMethod::Files);
        assert_eq!(files_sizing.check.unwrap().counted, asked);

        // The load, sized by the files, as the engine counted it.
        let steps = benchrun::loadgen::engine::run(&plan, 0, None)
            .await
            .unwrap();
        let s = &steps[0];
        assert_eq!((s.requests, s.successes), (16, 16), "{:?}", s.error_samples);
        assert_eq!(
            s.prompt_sizing.as_ref().map(|p| p.method),
            Some(SizingMethod::Files)
        );
        let per_request = asked + by_engine.template;
        assert_eq!(
            (
                s.input_tokens_per_request.min,
                s.input_tokens_per_request.max
            ),
            (per_request as f64, per_request as f64),
            "{endpoint:?}: every prompt, by the engine's usage"
        );
    }
}

/// The same files from a ConfigMap, gzipped in its binaryData (a
/// `tokenizer.json` of GPT-2's 50k vocabulary is 1.5 MB, past a
/// ConfigMap's 1 MiB; gzipped it is about 0.6 MB), against llama-server as
/// a pod: the controller mounts them, the worker reads them, and the run's
/// prompts are the asked length in the engine's tokens, sized by `files`.
/// Then a ConfigMap that is not there, with `auto`.
#[tokio::test]
async fn a_run_sizes_prompts_by_tokenizer_files_from_a_config_map() {
    use std::io::Write;

    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ConfigMap;

    let client = client().await;
    let ns = TestNamespace::create(&client, "llama-files").await.unwrap();
    let read = |name: &str| std::fs::read(tokenizer_files().join(name)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&read("tokenizer.json")).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 1 << 20, "{} bytes gzipped", gz.len());
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("tiny-bpe-tokenizer".into()),
            ..Default::default()
        },
        binary_data: Some([("tokenizer.json".to_string(), ByteString(gz))].into()),
        data: Some(
            [(
                "tokenizer_config.json".to_string(),
                String::from_utf8(read("tokenizer_config.json")).unwrap(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let asked = 80u64;
    let load = format!(
        "\n    requestCount: 8\n    concurrency: 2\n    extraInputs: {{ignore_eos: true}}\n    input: {{synthetic: {{tokenizer: files, tokenizerFiles: {{configMapRef: {{name: tiny-bpe-tokenizer}}}}, inputTokens: {{mean: {asked}}}, outputTokens: {{mean: 4}}}}}}"
    );
    let doc = measured(&ns, ("tiny-bpe.gguf", 18414, 2), "files", &load, "").await;
    let c = &doc["details"][0]["client"];
    assert_eq!(c["successes"].as_u64(), Some(8), "{c:#}");
    let sizing = &c["promptSizing"];
    assert_eq!(sizing["method"], "files", "{sizing:#}");
    assert_eq!(sizing["check"]["counted"].as_u64(), Some(asked));
    let note = sizing["note"].as_str().unwrap_or("");
    assert!(
        note.contains("ConfigMap tiny-bpe-tokenizer") && note.contains("tokenizer_config.json"),
        "{sizing:#}"
    );
    let template = sizing["templateTokens"].as_u64().unwrap();
    assert!(template > 0, "the chat template's tokens: {sizing:#}");
    let sent = &c["inputTokensPerRequest"];
    for bound in ["min", "max"] {
        assert_eq!(
            sent[bound].as_f64(),
            Some((asked + template) as f64),
            "the engine's usage of every prompt: {sent:#}"
        );
    }
    // A ConfigMap that is not there holds no pod: the worker says so, and
    // `auto` sizes by the server's /tokenize instead, keeping the reason.
    let load = load
        .replace("tokenizer: files", "tokenizer: auto")
        .replace("name: tiny-bpe-tokenizer", "name: absent");
    let doc = succeeded(&ns, "absent", &load, "").await;
    let sizing = &doc["details"][0]["client"]["promptSizing"];
    assert_eq!(sizing["method"], "server", "{sizing:#}");
    assert!(
        sizing["note"]
            .as_str()
            .is_some_and(|n| n.contains("tokenizer files from ConfigMap absent could not be used")),
        "{sizing:#}"
    );
    ns.delete().await.unwrap();
}
