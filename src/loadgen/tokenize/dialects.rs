//! Prompt sizing against servers that speak each `/tokenize` dialect, or
//! neither: the method the results claim is the one that held.

use axum::Json;
use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};

use super::*;
use crate::loadgen::plan::{Endpoint, InputPlan, Tokenizer};

/// Whitespace-separated words are tokens; `add_special` adds a BOS.
fn words(text: &str, bos: bool) -> Vec<u64> {
    let n = text.split_whitespace().count() + usize::from(bos);
    (0..n as u64).collect()
}

/// llama.cpp's dialect: `{"content", "add_special"}` → `{"tokens"}` (a body
/// without `content` tokenizes nothing, as llama.cpp does), and its chat
/// template through `/apply-template` (two marker words around the text).
fn llama_cpp() -> Router {
    Router::new()
        .route(
            "/tokenize",
            post(|Json(b): Json<Value>| async move {
                let text = b["content"].as_str().unwrap_or("");
                let bos = b["add_special"].as_bool().unwrap_or(false);
                let tokens = if b.get("content").is_some() {
                    words(text, bos)
                } else {
                    Vec::new()
                };
                Json(json!({ "tokens": tokens }))
            }),
        )
        .route(
            "/apply-template",
            post(|Json(b): Json<Value>| async move {
                let text = b["messages"][0]["content"].as_str().unwrap_or("");
                Json(json!({ "prompt": format!("<|user|>\n{text}\n<|assistant|>\n") }))
            }),
        )
}

/// A server that answers every `/tokenize` with no tokens.
fn counts_nothing() -> Router {
    Router::new().route(
        "/tokenize",
        post(|| async { Json(json!({ "tokens": [] })) }),
    )
}

/// vLLM's dialect, but a whole text is counted by its characters (⌈len/6⌉
/// plus one): word costs do not add up to a prompt's.
fn not_additive() -> Router {
    Router::new().route(
        "/tokenize",
        post(|Json(b): Json<Value>| async move {
            let text = b["prompt"].as_str().unwrap_or("");
            Json(json!({ "count": text.len().div_ceil(6) + 1 }))
        }),
    )
}

fn plan_for(url: String, endpoint: Endpoint, tokenizer: Tokenizer) -> LoadPlan {
    let mut p = crate::loadgen::request::tests::plan(endpoint, true);
    p.urls = vec![url];
    p.tokenizer = tokenizer;
    p.input = InputPlan::Synthetic {
        input_mean: 64,
        input_stddev: 0,
        output_mean: 8,
        output_stddev: 0,
    };
    p
}

async fn size(
    app: Router,
    endpoint: Endpoint,
    tokenizer: Tokenizer,
) -> Result<(Option<Arc<Costs>>, Option<PromptSizing>), String> {
    let url = crate::net::testing::start(app).await;
    let plan = plan_for(url, endpoint, tokenizer);
    sizing(
        &crate::net::client::http_client(1),
        &plan,
        &[],
        &Default::default(),
    )
    .await
}

/// llama.cpp counts nothing when asked as vLLM is; asked in its own
/// dialect, its chat template (through `/apply-template`) and its BOS are
/// counted, and the check holds: `server`, saying how it was counted.
#[tokio::test]
async fn llama_cpp_is_asked_in_its_own_dialect() {
    let (costs, sizing) = size(llama_cpp(), Endpoint::Chat, Tokenizer::Auto)
        .await
        .unwrap();
    let (costs, sizing) = (costs.unwrap(), sizing.unwrap());
    assert_eq!(sizing.method, SizingMethod::Server);
    // BOS, and the template's marker words and newlines: "<|user|>" and
    // "<|assistant|>".
    assert_eq!(costs.template, 3);
    assert_eq!(sizing.template_tokens, Some(3));
    assert_eq!(
        sizing.check,
        Some(SizingCheck {
            asked: 64,
            counted: 64
        })
    );
    assert!(sizing.note.unwrap().contains("llama.cpp"));
    // Completions: no template, the BOS only.
    let (costs, _) = size(llama_cpp(), Endpoint::Completions, Tokenizer::Server)
        .await
        .unwrap();
    assert_eq!(costs.unwrap().template, 1);
}

/// A server whose counts cannot be a tokenizer's of the text sent is no
/// tokenizer: `auto` sizes in words and says why, for each dialect; `server`
/// fails with the same reasons. Never `method: server` with `counted: 0`.
#[tokio::test]
async fn a_server_that_counts_nothing_is_not_a_tokenizer() {
    let (costs, sizing) = size(counts_nothing(), Endpoint::Completions, Tokenizer::Auto)
        .await
        .unwrap();
    assert!(costs.is_none());
    let sizing = sizing.unwrap();
    assert_eq!(sizing.method, SizingMethod::Words);
    assert_eq!(sizing.check, None);
    let note = sizing.note.unwrap();
    assert!(
        note.contains("asked as vLLM is") && note.contains("asked as llama.cpp is"),
        "{note}"
    );
    assert!(note.contains("did not tokenize the text sent"), "{note}");
    let err = size(counts_nothing(), Endpoint::Completions, Tokenizer::Server)
        .await
        .unwrap_err();
    assert!(
        err.contains("tokenizer is server") && err.contains("did not tokenize"),
        "{err}"
    );
}

/// A tokenizer whose word costs do not add up to a prompt's fails its own
/// check: the prompts are not claimed to be the asked length in its tokens.
#[tokio::test]
async fn costs_that_do_not_add_up_fail_the_check() {
    let (costs, sizing) = size(not_additive(), Endpoint::Completions, Tokenizer::Auto)
        .await
        .unwrap();
    assert!(costs.is_none());
    let sizing = sizing.unwrap();
    assert_eq!(sizing.method, SizingMethod::Words);
    let note = sizing.note.unwrap();
    assert!(note.contains("a prompt built to 64 tokens"), "{note}");
}
