use super::*;
use crate::loadgen::plan::{Arrival, Step, StopCondition};

pub(crate) fn plan(endpoint: Endpoint, streaming: bool) -> LoadPlan {
    LoadPlan {
        schema_version: 1,
        urls: vec!["http://127.0.0.1:1".into()],
        model: "m".into(),
        endpoint,
        streaming,
        headers: Default::default(),
        api_key_from_env: false,
        headers_from_env: Default::default(),
        workers: 1,
        steps: vec![Step {
            concurrency: Some(2),
            rate: None,
        }],
        repeat: None,
        stop: StopCondition::Requests(4),
        warmup_requests: 0,
        arrival: Arrival::Constant,
        input: InputPlan::Synthetic {
            input_mean: 20,
            input_stddev: 5,
            output_mean: 8,
            output_stddev: 0,
        },
        conversations: None,
        extra_body: serde_json::Map::from_iter([
            ("ignore_eos".to_string(), json!(true)),
            ("max_tokens".to_string(), json!(3)),
        ]),
        seed: 7,
        goodput: None,
        tls: Default::default(),
        path: None,
        tokenizer: Default::default(),
        tokenizer_files: None,
        server_timings_file: None,
    }
}

#[test]
fn chat_bodies_stream_with_usage_and_take_the_extra_body_last() {
    let p = plan(Endpoint::Chat, true);
    let prompt = Prompts::new(p.seed, 0).next(&p.input);
    let b = body(&p, &[], &prompt);
    assert_eq!(b["messages"][0]["content"], prompt.text);
    assert_eq!(b["stream_options"]["include_usage"], true);
    assert_eq!(b["ignore_eos"], true);
    assert_eq!(b["max_tokens"], 3, "the user's extra body wins");
    assert_eq!(path(p.endpoint), "/v1/chat/completions");
}

#[test]
fn completions_bodies_carry_a_prompt_and_no_stream_when_off() {
    let mut p = plan(Endpoint::Completions, false);
    p.extra_body.clear();
    let prompt = Prompts::new(1, 0).next(&p.input);
    let b = body(&p, &[], &prompt);
    assert_eq!(b["prompt"], prompt.text);
    assert_eq!(b["max_tokens"], 8);
    assert!(b.get("stream").is_none());
}

#[test]
fn prompts_are_reproducible_per_seed_and_worker_and_follow_the_lengths() {
    let p = plan(Endpoint::Chat, true);
    let draw = |seed, worker| {
        let mut g = Prompts::new(seed, worker);
        (0..5).map(|_| g.next(&p.input).text).collect::<Vec<_>>()
    };
    let (a, b, c) = (draw(9, 0), draw(9, 0), draw(9, 1));
    assert_eq!(a, b);
    assert_ne!(a, c, "workers draw different prompts");
    let mut g = Prompts::new(3, 0);
    let n = 2000;
    let mean = (0..n).map(|_| g.next(&p.input).words as f64).sum::<f64>() / n as f64;
    assert!((mean - 20.0).abs() < 0.5, "mean input words {mean}");
}

#[test]
fn itl_and_gaps_come_from_the_token_times() {
    let r = Record {
        ok: true,
        error: None,
        ttft: Some(0.1),
        ttfat: Some(0.1),
        token_times: vec![0.15, 0.25],
        latency: 0.3,
        input_tokens: 5,
        output_tokens: 3,
        source: TokenSource::Usage,
        reasoning_tokens: 0,
        text: None,
        retried: false,
        server: None,
        asked_tokens: None,
    };
    let gaps: Vec<f64> = r.inter_token_gaps().collect();
    assert_eq!(gaps.len(), 2);
    assert!((gaps[0] - 0.05).abs() < 1e-12 && (gaps[1] - 0.1).abs() < 1e-12);
    assert!((r.itl().unwrap() - 0.1).abs() < 1e-12);
}
