//! The simulator over real HTTP, driven by the project's own load generator.

use clap::Parser as _;

use super::*;
use crate::loadgen::engine::run as load;
use crate::loadgen::plan::{Endpoint, InputPlan, LoadPlan, Step, StopCondition};
use crate::loadgen::request::tests::plan;
use crate::net::testing::get;
use crate::scrape::{Entry, Format, Parser};

/// The simulator's options: model `m` on loopback, and `extra`.
pub(crate) fn opts(extra: &[&str]) -> InferenceOpts {
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        o: InferenceOpts,
    }
    let mut args = vec!["sim", "--model", "m", "--host", "127.0.0.1", "--port", "0"];
    args.extend_from_slice(extra);
    Wrap::parse_from(args).o
}

async fn start(o: InferenceOpts) -> String {
    crate::net::testing::start(router(o)).await
}

fn load_plan(url: &str, concurrency: u32, requests: u64, output: u64) -> LoadPlan {
    let mut p = plan(Endpoint::Chat, true);
    p.urls = vec![url.to_string()];
    p.steps = vec![Step {
        concurrency: Some(concurrency),
        rate: None,
    }];
    p.stop = StopCondition::Requests(requests);
    p.extra_body.clear();
    p.input = InputPlan::Synthetic {
        input_mean: 64,
        input_stddev: 16,
        output_mean: output,
        output_stddev: 0,
    };
    p
}

/// The server's records of the requests a step measured, and of those it
/// served before (the load generator's connection probe: one short streamed
/// request before the first step).
fn split_truth<'t>(
    truth: &'t serde_json::Value,
    r: &crate::loadgen::engine::StepResult,
) -> (Vec<&'t serde_json::Value>, Vec<&'t serde_json::Value>) {
    truth["records"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|x| x["receivedUnixMs"].as_u64().unwrap() >= r.started_unix_ms)
}

fn sum(records: &[&serde_json::Value], key: &str) -> u64 {
    records.iter().map(|x| x[key].as_u64().unwrap()).sum()
}

fn metric(page: &str, name: &str) -> f64 {
    let mut total = 0.0;
    for e in Parser::new(page.as_bytes(), Format::Prometheus) {
        if let Entry::Sample(s) = e
            && s.name == name
        {
            total += s.value;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_tokens_metrics_and_truth_agree() {
    let url = start(opts(&["--ttft", "20ms", "--itl", "2ms"])).await;
    let r = &load(&load_plan(&url, 4, 24, 16), 0, None).await.unwrap()[0];
    assert_eq!((r.requests, r.successes), (24, 24), "{:?}", r.error_samples);
    assert!(!r.tokens_counted, "usage is sent");

    let truth: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}/sim/truth")).await).unwrap();
    let (measured, before) = split_truth(&truth, r);
    assert_eq!(measured.len(), 24);
    assert_eq!(before.len(), 1, "the connection probe, before the step");
    let probe_out = sum(&before, "outputTokens");
    assert!(
        probe_out <= crate::loadgen::preflight::PROBE_TOKENS,
        "a short one"
    );
    assert_eq!(truth["succeeded"], 25);
    assert_eq!(sum(&measured, "outputTokens"), r.output_tokens);
    assert_eq!(sum(&measured, "promptTokens"), r.input_tokens);

    // The server's counters hold the probe too.
    let page = get(&format!("{url}/metrics")).await;
    assert_eq!(
        metric(&page, "vllm:generation_tokens_total"),
        (r.output_tokens + probe_out) as f64
    );
    assert_eq!(
        metric(&page, "vllm:prompt_tokens_total"),
        (r.input_tokens + sum(&before, "promptTokens")) as f64
    );
    assert_eq!(metric(&page, "vllm:request_success_total"), 25.0);
    assert_eq!(
        metric(&page, "vllm:time_to_first_token_seconds_count"),
        25.0
    );
    assert_eq!(
        metric(&page, "vllm:inter_token_latency_seconds_count"),
        (24 * 15 + probe_out - 1) as f64
    );

    // The fixed schedule is kept, and the client sees it.
    let t_ttft = truth["ttftS"]["p50"].as_f64().unwrap();
    let t_itl = truth["itlS"]["p50"].as_f64().unwrap();
    assert!((t_ttft - 0.020).abs() < 0.002, "server TTFT p50 {t_ttft}");
    assert!((t_itl - 0.002).abs() < 0.001, "server ITL p50 {t_itl}");
    // The client's own delay on a loaded machine (a build beside the tests)
    // comes on top; the e2e fidelity test holds the medians to 1 ms.
    assert!(
        (r.ttft_s.p50 - t_ttft).abs() < 0.004,
        "client {} server {t_ttft}",
        r.ttft_s.p50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_grows_with_load_over_http() {
    let url = start(opts(&[
        "--decode-base",
        "2ms",
        "--decode-per-seq",
        "200us",
        "--max-batch",
        "64",
    ]))
    .await;
    let light = &load(&load_plan(&url, 1, 4, 8), 0, None).await.unwrap()[0];
    let heavy = &load(&load_plan(&url, 32, 64, 8), 0, None).await.unwrap()[0];
    assert_eq!(heavy.successes, 64);
    assert!(
        heavy.itl_s.p50 > light.itl_s.p50 * 1.5,
        "ITL p50 at 32 streams {} vs 1 stream {}",
        heavy.itl_s.p50,
        light.itl_s.p50
    );
    let page = get(&format!("{url}/metrics")).await;
    assert_eq!(
        metric(&page, "vllm:num_requests_running"),
        0.0,
        "idle after the run"
    );
    assert_eq!(metric(&page, "vllm:kv_cache_usage_perc"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_are_counted_on_both_sides() {
    let url = start(opts(&[
        "--ttft",
        "1ms",
        "--itl",
        "1ms",
        "--error-rate",
        "0.3",
        "--truncate-rate",
        "0.3",
        "--seed",
        "3",
    ]))
    .await;
    let r = &load(&load_plan(&url, 4, 40, 6), 0, None).await.unwrap()[0];
    let summary: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}/sim/truth?records=0")).await).unwrap();
    assert!(summary.get("records").is_none());
    let truth: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}/sim/truth")).await).unwrap();
    let (measured, _probe) = split_truth(&truth, r);
    let count = |outcome: &str| measured.iter().filter(|x| x["outcome"] == outcome).count() as u64;
    let (injected, truncated) = (count("injectedError"), count("truncated"));
    assert!(injected > 0 && truncated > 0, "{truth}");
    assert_eq!(r.successes, count("ok"));
    use crate::loadgen::request::ErrorKind;
    assert_eq!(
        r.errors.get(&ErrorKind::HttpStatus).copied().unwrap_or(0),
        injected
    );
    assert_eq!(
        r.errors
            .get(&ErrorKind::MalformedStream)
            .copied()
            .unwrap_or(0),
        truncated
    );
}

#[tokio::test]
async fn refusals_models_and_non_streaming() {
    let url = start(opts(&[
        "--ttft",
        "1ms",
        "--itl",
        "1ms",
        "--kv-cache-tokens",
        "100",
    ]))
    .await;
    let models: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}/v1/models")).await).unwrap();
    assert_eq!(models["data"][0]["id"], "m");

    let client = crate::net::client::http_client(4);
    let post = |body: &'static str, path: &'static str| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let req = http::Request::post(format!("{url}{path}"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(Bytes::from_static(
                    body.as_bytes(),
                )))
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let status = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap();
            (status, String::from_utf8(body.to_bytes().to_vec()).unwrap())
        }
    };
    let (s, b) = post(
        r#"{"model":"m","prompt":"a b","max_tokens":500}"#,
        "/v1/completions",
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("maximum context is 100 tokens"), "{b}");
    let (s, b) = post(r#"{"model":"x","prompt":"a"}"#, "/v1/completions").await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = post(
        r#"{"model":"m","prompt":"a b c","max_tokens":3}"#,
        "/v1/completions",
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(
        v["choices"][0]["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .count(),
        3
    );
    let truth: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}/sim/truth")).await).unwrap();
    assert_eq!(
        (truth["refused"].as_u64(), truth["succeeded"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_carry_history_and_datasets_send_their_entries() {
    let url = start(opts(&["--ttft", "2ms", "--itl", "1ms"])).await;
    let mut p = load_plan(&url, 2, 9, 4);
    p.conversations = Some(crate::loadgen::plan::ConversationPlan { count: 3, turns: 3 });
    let r = &load(&p, 0, None).await.unwrap()[0];
    assert_eq!((r.requests, r.successes), (9, 9), "{:?}", r.error_samples);
    let truth: serde_json::Value =
        serde_json::from_str(&get(&format!("{url}/sim/truth")).await).unwrap();
    let prompts: Vec<u64> = truth["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["promptTokens"].as_u64().unwrap())
        .collect();
    // A third turn carries two user turns and two answers of 4 tokens before it.
    let (min, max) = (prompts.iter().min().unwrap(), prompts.iter().max().unwrap());
    assert!(*max >= 3 * *min, "prompts {prompts:?}");

    let dir = std::env::temp_dir().join(format!("benchrun-dataset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("d.jsonl");
    std::fs::write(&file, "{\"prompt\":\"one two three\",\"max_tokens\":2}\n{\"messages\":[{\"role\":\"user\",\"content\":\"four five\"}],\"max_tokens\":3}\n").unwrap();
    let mut p = load_plan(&url, 1, 4, 8);
    p.input = InputPlan::Dataset {
        path: file.display().to_string(),
    };
    let r = &load(&p, 0, None).await.unwrap()[0];
    assert_eq!(r.successes, 4);
    assert_eq!(
        (r.input_tokens, r.output_tokens),
        (3 + 2 + 3 + 2, 2 + 3 + 2 + 3)
    );
    p.input = InputPlan::Dataset {
        path: dir.join("missing.jsonl").display().to_string(),
    };
    let e = load(&p, 0, None).await.unwrap_err();
    assert!(e.contains("missing.jsonl"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goodput_counts_requests_within_the_objectives_and_the_second_token_is_timed() {
    use crate::loadgen::plan::Goodput;
    let url = start(opts(&["--ttft", "20ms", "--itl", "20ms"])).await;
    let mut p = load_plan(&url, 4, 12, 6);
    p.goodput = Some(Goodput {
        ttft_ms: Some(10.0),
        ..Default::default()
    });
    let tight = &load(&p, 0, None).await.unwrap()[0];
    assert_eq!(
        tight.goodput_requests,
        Some(0),
        "TTFT 20 ms misses a 10 ms bound"
    );
    p.goodput = Some(Goodput {
        ttft_ms: Some(100.0),
        itl_ms: Some(50.0),
        latency_ms: Some(1000.0),
    });
    let loose = &load(&p, 0, None).await.unwrap()[0];
    assert_eq!(loose.goodput_requests, Some(12));
    assert!(loose.goodput_per_s.unwrap() > 0.0);
    // 20 ms to the first token and 20 ms to the next; a loaded machine only
    // adds (4.5 ms with a build beside the tests, once), and the first
    // token's time (20 ms) or two gaps (60 ms) fall outside.
    let tt2t = loose.time_to_second_token_s.p50;
    assert!(
        (0.039..0.055).contains(&tt2t),
        "second token at {tt2t} s, injected 40 ms"
    );
}

/// Reasoning mode against the project's load generator: the first token is
/// the first reasoning token, the first answer token comes after the
/// reasoning, and the reasoning tokens are counted, each as the simulator
/// recorded it; a reply that only reasons is not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_replies_are_timed_and_counted_as_the_server_sent_them() {
    let median = |records: &[&serde_json::Value], key: &str| -> f64 {
        let mut v: Vec<f64> = records.iter().filter_map(|r| r[key].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for field in ["reasoning_content", "reasoning"] {
        let url = start(opts(&[
            "--ttft",
            "20ms",
            "--itl",
            "10ms",
            "--reasoning-tokens",
            "3",
            "--reasoning-field",
            field,
        ]))
        .await;
        let r = &load(&load_plan(&url, 2, 9, 6), 0, None).await.unwrap()[0];
        assert_eq!((r.requests, r.successes), (9, 9), "{:?}", r.error_samples);
        assert_eq!(r.output_tokens, 9 * 6);
        assert_eq!(
            r.reasoning_tokens,
            9 * 3,
            "{field}: counted from the deltas"
        );
        let truth: serde_json::Value =
            serde_json::from_str(&get(&format!("{url}/sim/truth")).await).unwrap();
        let (records, _probe) = split_truth(&truth, r);
        assert_eq!(sum(&records, "reasoningTokens"), r.reasoning_tokens);
        let (t_ttft, t_ttfat) = (median(&records, "ttftS"), median(&records, "ttfatS"));
        // The answer starts three tokens (two gaps after the first) later.
        assert!(
            (t_ttfat - t_ttft - 0.030).abs() < 0.004,
            "{t_ttft} {t_ttfat}"
        );
        let (c_ttft, c_ttfat) = (r.ttft_s.p50, r.time_to_first_answer_token_s.p50);
        assert!(
            (c_ttft - t_ttft).abs() < 0.002,
            "TTFT client {c_ttft} server {t_ttft}"
        );
        assert!(
            (c_ttfat - t_ttfat).abs() < 0.002,
            "first answer token: client {c_ttfat} server {t_ttfat}"
        );
        assert_eq!(r.time_to_first_answer_token_s.count, 9);

        // Three tokens asked for, three reasoning: no answer, and no error.
        let only = &load(&load_plan(&url, 2, 4, 3), 0, None).await.unwrap()[0];
        assert_eq!(
            (only.successes, only.errors.len()),
            (4, 0),
            "{:?}",
            only.error_samples
        );
        assert_eq!((only.output_tokens, only.reasoning_tokens), (12, 12));
        assert_eq!(only.time_to_first_answer_token_s.count, 0);
        assert_eq!(only.ttft_s.count, 4);
    }
}

/// Prompts sized in the server's tokens: against a simulator whose
/// tokenizer is not words (⌈characters/4⌉ per word, a chat template), every
/// request's prompt is the asked length plus the template, by the server's
/// own count; sized in words, it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_sized_with_the_server_s_tokenizer_are_the_asked_length() {
    use crate::loadgen::plan::Tokenizer as PromptTokenizer;
    use crate::loadgen::tokenize::SizingMethod;
    let url = start(opts(&[
        "--ttft",
        "1ms",
        "--itl",
        "1ms",
        "--tokenizer",
        "subword",
    ]))
    .await;
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        let mut p = load_plan(&url, 2, 12, 4);
        p.endpoint = endpoint;
        p.input = InputPlan::Synthetic {
            input_mean: 200,
            input_stddev: 0,
            output_mean: 4,
            output_stddev: 0,
        };
        let r = &load(&p, 0, None).await.unwrap()[0];
        assert_eq!(r.successes, 12, "{:?}", r.error_samples);
        let sizing = r.prompt_sizing.clone().unwrap();
        assert_eq!(sizing.method, SizingMethod::Server, "{sizing:?}");
        let template = match endpoint {
            Endpoint::Chat => 3 + 2,
            Endpoint::Completions => 1,
        };
        assert_eq!(sizing.template_tokens, Some(template));
        let check = sizing.check.unwrap();
        assert_eq!((check.asked, check.counted), (200, 200));
        // Every request, by the server's usage: the asked length and the template.
        let sent = &r.input_tokens_per_request;
        assert_eq!(r.input_tokens, 12 * (200 + template));
        assert!(
            (sent.min - (200 + template) as f64).abs() < 1e-9
                && (sent.max - (200 + template) as f64).abs() < 1e-9,
            "{sent:?}"
        );
        let per_word = sizing.tokens_per_word.unwrap();
        assert!(per_word > 1.5, "{per_word}");

        // Words: the same 200 words are about 1.7 times as many tokens.
        p.tokenizer = PromptTokenizer::Words;
        let r = &load(&p, 0, None).await.unwrap()[0];
        assert_eq!(
            r.prompt_sizing.as_ref().unwrap().method,
            SizingMethod::Words
        );
        let mean = r.input_tokens as f64 / 12.0;
        assert!(mean > 300.0, "{mean}");
    }
    // No tokenizer to ask (here, no server at all): `auto` sizes in words
    // and says why; `server` fails the worker with the reason.
    let mut p = load_plan("http://127.0.0.1:1", 1, 1, 4);
    let r = &load(&p, 0, None).await.unwrap()[0];
    let sizing = r.prompt_sizing.as_ref().unwrap();
    assert_eq!(sizing.method, SizingMethod::Words);
    assert!(
        sizing.note.as_ref().unwrap().contains("could not be asked"),
        "{sizing:?}"
    );
    p.tokenizer = PromptTokenizer::Server;
    let e = load(&p, 0, None).await.unwrap_err();
    assert!(e.contains("tokenizer is server"), "{e}");
}
