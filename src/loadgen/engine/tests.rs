use super::*;
use crate::loadgen::plan::Endpoint;
use crate::loadgen::request::ErrorKind;
use crate::loadgen::request::tests::plan;
use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;

/// A tiny OpenAI-style server: `behaviour` picks what every request gets.
async fn server(behaviour: &'static str) -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            let chunk = |c: &str| format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"{c}\"}}}}]}}\n\n");
            match behaviour {
                "ok" => {
                    let body = format!(
                        "{}{}{}data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":11,\"completion_tokens\":3}}}}\n\ndata: [DONE]\n\n",
                        chunk("a"),
                        chunk("b"),
                        chunk("c")
                    );
                    (StatusCode::OK, Body::from(body))
                }
                "truncated" => (StatusCode::OK, Body::from(format!("{}data: {{\"cho", chunk("a")))),
                _ => (StatusCode::SERVICE_UNAVAILABLE, Body::from("overloaded")),
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

fn plan_for(url: String, requests: u64) -> LoadPlan {
    let mut p = plan(Endpoint::Chat, true);
    p.urls = vec![url];
    p.stop = StopCondition::Requests(requests);
    p.warmup_requests = 2;
    p
}

#[tokio::test]
async fn a_closed_loop_runs_exactly_its_requests_with_usage_tokens() {
    let p = plan_for(server("ok").await, 6);
    let r = &run(&p, 0, None).await.unwrap()[0];
    assert_eq!((r.requests, r.successes), (6, 6), "warmup excluded");
    assert_eq!((r.input_tokens, r.output_tokens), (66, 18));
    assert!(!r.tokens_counted);
    assert_eq!(r.ttft_s.count, 6);
    assert_eq!(r.inter_token_gap_s.count, 12);
    assert!(r.latency_s.min >= r.ttft_s.min);
}

#[tokio::test]
async fn bad_servers_are_counted_by_kind_never_fatal() {
    let r = &run(&plan_for(server("503").await, 3), 0, None)
        .await
        .unwrap()[0];
    assert_eq!((r.successes, r.errors[&ErrorKind::HttpStatus]), (0, 3));
    assert!(
        r.error_samples[0].contains("HTTP 503: overloaded"),
        "{:?}",
        r.error_samples
    );

    let r = &run(&plan_for(server("truncated").await, 2), 0, None)
        .await
        .unwrap()[0];
    assert_eq!(r.errors[&ErrorKind::MalformedStream], 2);

    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let r = &run(&plan_for(url, 2), 0, None).await.unwrap()[0];
    assert_eq!(r.errors[&ErrorKind::Connect], 2);
}

#[tokio::test]
async fn an_open_loop_sends_at_the_rate_for_its_duration() {
    let mut p = plan_for(server("ok").await, 0);
    p.warmup_requests = 0;
    p.steps = vec![Step {
        concurrency: None,
        rate: Some(50.0),
    }];
    p.stop = StopCondition::DurationMs(400);
    let r = &run(&p, 0, None).await.unwrap()[0];
    // 50/s for 0.4 s: sends due at 0, 20, ..., 380 ms.
    assert_eq!(r.requests, 20, "{r:?}");
    assert_eq!(r.send_lateness_s.as_ref().unwrap().count, 20);
}

#[test]
fn shares_split_totals_exactly() {
    assert_eq!(
        (0..3).map(|i| share(10, 3, i)).collect::<Vec<_>>(),
        [4, 3, 3]
    );
    assert_eq!((0..4).map(|i| share(10, 4, i)).sum::<u64>(), 10);
    assert_eq!(share(5, 0, 0), 5);
}

#[test]
fn each_worker_reports_its_own_part_and_the_parts_add_up_to_the_step() {
    // concurrency 8 over 2 workers: 4 streams each, reported as 4 each, merged 8.
    let step = Step {
        concurrency: Some(8),
        rate: None,
    };
    let parts: Vec<Step> = (0..2).map(|i| worker_step(&step, 2, i)).collect();
    assert_eq!(parts[0].concurrency, Some(4));
    assert_eq!(parts[1].concurrency, Some(4));
    let results: Vec<StepResult> = parts
        .iter()
        .map(|p| summarize(p, &[], 1.0, None, None))
        .collect();
    assert_eq!(StepResult::merge(&results).unwrap().concurrency, Some(8));
    // Uneven splits and rates add up too.
    for (c, w) in [(7, 3), (64, 5), (3, 3)] {
        let step = Step {
            concurrency: Some(c),
            rate: Some(10.0),
        };
        let parts: Vec<Step> = (0..w).map(|i| worker_step(&step, w, i)).collect();
        let total: u32 = parts.iter().filter_map(|p| p.concurrency).sum();
        let rate: f64 = parts.iter().filter_map(|p| p.rate).sum();
        assert_eq!(total, c, "{c} over {w}");
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");
    }
    // One worker runs and reports the whole step.
    assert_eq!(worker_step(&step, 1, 0), step);
}

fn record(i: u32) -> Record {
    let ttft = 0.01 + f64::from(i % 13) * 0.001;
    Record {
        ok: !i.is_multiple_of(10),
        error: i
            .is_multiple_of(10)
            .then(|| (ErrorKind::Timeout, "slow".to_string())),
        ttft: Some(ttft),
        // Every third reasons for two tokens before it answers.
        ttfat: Some(if i.is_multiple_of(3) {
            ttft + 0.004
        } else {
            ttft
        }),
        token_times: (1..4).map(|k| ttft + f64::from(k) * 0.002).collect(),
        latency: ttft + 0.006,
        input_tokens: 10,
        output_tokens: 4,
        source: crate::loadgen::request::TokenSource::Usage,
        reasoning_tokens: if i.is_multiple_of(3) { 2 } else { 0 },
        text: None,
        retried: false,
        server: None,
        asked_tokens: None,
    }
}

#[test]
fn merging_workers_equals_one_worker_that_saw_everything() {
    let step = Step {
        concurrency: Some(4),
        rate: None,
    };
    let all: Vec<Record> = (0..200).map(record).collect();
    let whole = summarize(&step, &all, 2.0, None, None);
    let mut a = summarize(&step, &all[..70], 2.0, None, None);
    let mut b = summarize(&step, &all[70..], 2.0, None, None);
    (a.started_unix_ms, a.ended_unix_ms) = (1_000, 3_000);
    (b.started_unix_ms, b.ended_unix_ms) = (1_000, 2_900);
    let merged = StepResult::merge(&[a, b]).unwrap();
    assert_eq!(
        (
            merged.requests,
            merged.successes,
            merged.output_tokens,
            merged.reasoning_tokens
        ),
        (
            whole.requests,
            whole.successes,
            whole.output_tokens,
            whole.reasoning_tokens
        )
    );
    assert!(whole.reasoning_tokens > 0);
    assert_eq!(merged.errors[&ErrorKind::Timeout], 20);
    assert_eq!(merged.concurrency, Some(8), "each worker's share adds up");
    assert_eq!(merged.duration_s, 2.0, "first start to last end");
    assert!((merged.requests_per_s - whole.requests_per_s).abs() < 1e-9);
    for (m, w) in [
        (&merged.ttft_s, &whole.ttft_s),
        (&merged.inter_token_gap_s, &whole.inter_token_gap_s),
        (&merged.latency_s, &whole.latency_s),
        (
            &merged.time_to_first_answer_token_s,
            &whole.time_to_first_answer_token_s,
        ),
    ] {
        assert_eq!(
            (m.count, m.p50, m.p99, m.min, m.max),
            (w.count, w.p50, w.p99, w.min, w.max)
        );
        assert!((m.mean - w.mean).abs() < 1e-12 && (m.std - w.std).abs() < 1e-9);
    }
    // The result travels as JSON and merges the same after the trip.
    let json = serde_json::to_string(&merged).unwrap();
    let back: StepResult = serde_json::from_str(&json).unwrap();
    assert_eq!(StepResult::merge(&[back]).unwrap().ttft_s, merged.ttft_s);
}

/// A stop (cancel, timeout) ends the step under way with what it measured,
/// and no later step runs.
#[tokio::test]
async fn a_stop_ends_the_run_with_what_was_measured() {
    let url = server("ok").await;
    for rate in [None, Some(400.0)] {
        let mut p = plan_for(url.clone(), 1_000_000);
        p.warmup_requests = 0;
        let step = p.steps[0].clone();
        p.steps = vec![
            Step {
                concurrency: Some(2),
                rate,
            },
            step,
        ];
        let progress = Arc::new(Progress::default());
        let stopper = progress.clone();
        tokio::spawn(async move {
            while stopper.done.load(Ordering::Relaxed) < 20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stopper.stop.cancel();
        });
        let steps = tokio::time::timeout(Duration::from_secs(20), run_with(&p, 0, None, progress))
            .await
            .expect("the stop ends the run")
            .unwrap();
        assert_eq!(steps.len(), 1, "no step after the stop ({rate:?})");
        let r = &steps[0];
        assert!(r.stopped, "{rate:?}");
        assert!(
            r.requests >= 20 && r.requests < 1_000_000,
            "{} ({rate:?})",
            r.requests
        );
        assert_eq!(
            r.successes, r.requests,
            "in-flight requests are dropped, not failed"
        );
        assert!(r.ended_unix_ms >= r.started_unix_ms);
    }
}

/// The next step and its warmup are one change, seen at once: a reader never
/// finds the new step still "measuring" (which opened its telemetry window
/// before the warmup, as a benchmark of 50 steps showed).
#[test]
fn a_new_step_and_its_phase_change_together() {
    let p = Progress::default();
    p.enter(WorkerPhase::Measuring, 0);
    let before = p.snapshot();
    p.enter(WorkerPhase::Warmup, 1);
    let after = p.snapshot();
    assert_eq!((after.phase, after.step), (WorkerPhase::Warmup, 1));
    assert_eq!(after.seq, before.seq + 1, "one change, one event");
    // Entering where it already is changes nothing.
    p.enter(WorkerPhase::Warmup, 1);
    assert_eq!(p.snapshot().seq, after.seq);
    p.set(WorkerPhase::Done);
    assert_eq!(p.position(), (WorkerPhase::Done, 1));
}

/// Headers from the plan, from Secrets (through the environment) and the API
/// key all reach the server on every request.
#[tokio::test]
async fn every_request_carries_the_plans_and_the_secrets_headers() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|h: axum::http::HeaderMap| async move {
            let is = |k: &str, v: &str| h.get(k).is_some_and(|x| x == v);
            if is("x-team", "bench")
                && is("x-gateway-key", "gk-1")
                && is("authorization", "Bearer sk-1")
            {
                let body =
                    "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
                (StatusCode::OK, Body::from(body))
            } else {
                (StatusCode::UNAUTHORIZED, Body::from("who are you"))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

    let mut p = plan_for(url, 4);
    p.headers.insert("X-Team".into(), "bench".into());
    p.headers_from_env
        .insert("X-Gateway-Key".into(), "BENCHRUN_HEADER_0".into());
    p.resolve_env_headers(|v| (v == "BENCHRUN_HEADER_0").then(|| "gk-1\n".to_string()))
        .unwrap();
    let r = &run(&p, 0, Some("sk-1")).await.unwrap()[0];
    assert_eq!((r.requests, r.successes), (4, 4), "{:?}", r.error_samples);
    // Without the Secret's header the same server refuses every request.
    let mut q = plan_for(p.urls[0].clone(), 2);
    q.headers.insert("X-Team".into(), "bench".into());
    let r = &run(&q, 0, Some("sk-1")).await.unwrap()[0];
    assert_eq!(r.successes, 0);
}

/// A worker asked for far more than it can send (an open loop of 200 000
/// requests a second on one thread that also serves them) falls behind its
/// schedule, and its step says the client was the bottleneck.
#[test]
fn a_worker_driven_past_its_capacity_says_it_was_the_bottleneck() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let mut p = plan_for(server("ok").await, 0);
        p.warmup_requests = 0;
        p.steps = vec![Step {
            concurrency: None,
            rate: Some(200_000.0),
        }];
        p.stop = StopCondition::Requests(1500);
        run(&p, 0, None).await.unwrap().remove(0)
    });
    let load = r.client_load.as_ref().expect("the client's load figures");
    assert!(r.client_saturated, "{load:?}");
    let late = load.send_lateness_p99_s.expect("open loop: send lateness");
    assert!(late > 0.010, "sends {late} s late at p99: {load:?}");
}

/// A gateway that routes a prefix of its own to the server: `path` sends
/// every request there; the endpoint's OpenAI path alone finds nothing.
#[tokio::test]
async fn requests_go_to_the_path_the_plan_gives() {
    let gateway = Router::new().nest(
        "/openai/llama",
        Router::new().route(
            "/chat",
            post(|| async {
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"
            }),
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, gateway).await.unwrap() });
    let mut p = plan_for(url, 3);
    let unrouted = &run(&p, 0, None).await.unwrap()[0];
    assert_eq!(unrouted.successes, 0, "nothing at /v1/chat/completions");
    p.path = Some("/openai/llama/chat".into());
    assert_eq!(p.request_path(), "/openai/llama/chat");
    let routed = &run(&p, 0, None).await.unwrap()[0];
    assert_eq!(
        (routed.requests, routed.successes),
        (3, 3),
        "{:?}",
        routed.error_samples
    );
}

/// A success shorter than it asked for was stopped by the server (an
/// end-of-sequence token): counted per step and summed across workers;
/// a failure, or a request whose ask is unknown, is not.
#[test]
fn requests_the_server_stopped_early_are_counted() {
    let step = Step {
        concurrency: Some(2),
        rate: None,
    };
    let asked = |i: u32, n: Option<u64>| Record {
        asked_tokens: n,
        ..record(i)
    };
    // Each record has 4 output tokens; record 10 failed.
    let part = [
        asked(1, Some(4)),
        asked(2, Some(16)),
        asked(3, None),
        asked(10, Some(16)),
    ];
    let one = summarize(&step, &part, 1.0, None, None);
    assert_eq!(one.stopped_early, 1);
    let both = StepResult::merge(&[one.clone(), one]).unwrap();
    assert_eq!(both.stopped_early, 2);
}
