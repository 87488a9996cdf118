//! What each request asks for: a synthetic prompt, an entry of a JSONL
//! dataset, or the next turn of a conversation. Pure apart from reading the
//! dataset file.
//!
//! A dataset line is a request payload: an object with `messages` (chat),
//! `prompt` or `text`, and any other body fields (`max_tokens`, `temperature`,
//! ...), which are kept. The plan's model, streaming settings and extra body
//! are set on top. A `messages` entry sent to `/v1/completions` becomes one
//! prompt of its contents; a `prompt`/`text` entry sent to chat becomes one
//! user message. Workers take disjoint entries in turn (entry `t × workers +
//! worker` for their request number `t`), cycling when the dataset runs out.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::plan::{Endpoint, InputPlan, LoadPlan};
use super::request::{Prompt, Prompts, body, finish_body};
use super::tokenize::Costs;

/// One request to send.
pub struct Request {
    pub body: Bytes,
    /// Prompt length in words (the token count when the server sends no usage).
    pub words: u64,
    /// The user text of this turn (conversations carry it forward).
    pub user_text: String,
    /// The output tokens it asks for (`max_tokens` or
    /// `max_completion_tokens` of the body as sent).
    pub max_tokens: Option<u64>,
}

/// The output tokens a request body asks for.
fn asked_tokens(b: &Value) -> Option<u64> {
    ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| b.get(*k).and_then(Value::as_u64))
}

/// Where a worker's requests come from.
pub enum Workload {
    /// A worker's prompts, and the costs they are sized by (conversations
    /// size each turn's prompts by them too).
    Synthetic(Box<Mutex<Prompts>>, Option<Arc<Costs>>),
    Dataset(Vec<Map<String, Value>>),
}

impl Workload {
    /// The workload of worker `index`, its synthetic prompts sized by
    /// `costs` (see [`super::tokenize`]); reads the dataset file when there is one.
    pub fn load(
        plan: &LoadPlan,
        index: u32,
        costs: Option<Arc<Costs>>,
    ) -> Result<Workload, String> {
        match &plan.input {
            InputPlan::Synthetic { .. } => Ok(Workload::Synthetic(
                Box::new(Mutex::new(Prompts::sized(plan.seed, index, costs.clone()))),
                costs,
            )),
            InputPlan::Dataset { path } => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading the dataset {path}: {e}"))?;
                parse_dataset(&text).map(Workload::Dataset)
            }
        }
    }

    /// Request number `ticket` of worker `index`, alone (no conversation).
    pub fn request(&self, plan: &LoadPlan, index: u32, ticket: u64) -> Request {
        match self {
            Workload::Synthetic(..) => self.turn(plan, &[]),
            Workload::Dataset(entries) => {
                let n = entries.len() as u64;
                let i = (ticket * u64::from(plan.workers.max(1)) + u64::from(index)) % n.max(1);
                dataset_request(plan, &entries[i as usize])
            }
        }
    }

    /// Turn `turn` of conversation `conversation` (of the plan's distinct
    /// conversations), whose earlier turns are `history`. A conversation's
    /// prompts depend only on the seed, the conversation and the turn, so
    /// the pool holds exactly `conversations.count` distinct conversations,
    /// reused when the run needs more (as a chat service sees returning users).
    pub fn conversation_turn(
        &self,
        plan: &LoadPlan,
        conversation: u64,
        turn: u32,
        history: &[String],
    ) -> Request {
        let seed = plan.seed ^ conversation.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(turn);
        let costs = match self {
            Workload::Synthetic(_, costs) => costs.clone(),
            Workload::Dataset(_) => None,
        };
        let prompt = Prompts::sized(seed, turn, costs).next(&plan.input);
        self.request_for(plan, history, prompt)
    }

    /// Which of the `count` distinct conversations worker `index` of `workers`
    /// runs as its `n`-th: workers take disjoint ones in turn, cycling.
    pub fn conversation_id(n: u64, workers: u32, index: u32, count: u64) -> u64 {
        (n * u64::from(workers.max(1)) + u64::from(index)) % count.max(1)
    }

    /// The next turn of a conversation whose earlier turns are `history`
    /// (alternating user and assistant texts).
    pub fn turn(&self, plan: &LoadPlan, history: &[String]) -> Request {
        let prompt = match self {
            Workload::Synthetic(p, _) => p
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next(&plan.input),
            // Validation keeps datasets and conversations apart; answer sensibly anyway.
            Workload::Dataset(_) => Prompt {
                text: "continue".into(),
                words: 1,
                max_tokens: 64,
            },
        };
        self.request_for(plan, history, prompt)
    }

    fn request_for(&self, plan: &LoadPlan, history: &[String], prompt: Prompt) -> Request {
        let words = history
            .iter()
            .map(|t| t.split_whitespace().count() as u64)
            .sum::<u64>()
            + prompt.words;
        let b = body(plan, history, &prompt);
        Request {
            body: to_bytes(&b),
            words,
            user_text: prompt.text,
            max_tokens: asked_tokens(&b),
        }
    }
}

fn to_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// Reads JSONL: one object per non-empty line.
pub fn parse_dataset(text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => {
                let has_input = ["messages", "prompt", "text"]
                    .iter()
                    .any(|k| m.contains_key(*k));
                if !has_input {
                    return Err(format!(
                        "dataset line {}: an entry needs `messages`, `prompt` or `text`",
                        i + 1
                    ));
                }
                out.push(m);
            }
            Ok(_) => return Err(format!("dataset line {}: not a JSON object", i + 1)),
            Err(e) => return Err(format!("dataset line {}: {e}", i + 1)),
        }
    }
    if out.is_empty() {
        return Err("the dataset has no entries".into());
    }
    Ok(out)
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.as_str().or_else(|| p.get("text").and_then(Value::as_str)))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The body for one dataset entry.
pub fn dataset_request(plan: &LoadPlan, entry: &Map<String, Value>) -> Request {
    let mut b = entry.clone();
    let messages = b.remove("messages");
    let prompt = b.remove("prompt").or_else(|| b.remove("text"));
    let user_text = match (&messages, &prompt) {
        (Some(Value::Array(ms)), _) => ms
            .iter()
            .filter_map(|m| m.get("content"))
            .map(content_text)
            .collect::<Vec<_>>()
            .join("\n"),
        (_, Some(p)) => content_text(p),
        _ => String::new(),
    };
    match plan.endpoint {
        Endpoint::Chat => {
            let messages = match messages {
                Some(m @ Value::Array(_)) => m,
                _ => json!([{ "role": "user", "content": user_text }]),
            };
            b.insert("messages".into(), messages);
        }
        Endpoint::Completions => {
            b.insert("prompt".into(), Value::String(user_text.clone()));
        }
    }
    b.insert("model".into(), Value::String(plan.model.clone()));
    let mut b = Value::Object(b);
    finish_body(plan, &mut b);
    Request {
        body: to_bytes(&b),
        words: user_text.split_whitespace().count() as u64,
        user_text,
        max_tokens: asked_tokens(&b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::request::tests::plan;

    fn body(r: &Request) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn conversations_are_a_pool_of_count_distinct_ones() {
        let p = plan(Endpoint::Chat, true);
        let w = Workload::load(&p, 0, None).unwrap();
        let text = |c: u64, t: u32| w.conversation_turn(&p, c, t, &[]).user_text;
        // The same conversation and turn: the same prompt; another: another.
        assert_eq!(text(3, 0), text(3, 0));
        assert_ne!(text(3, 0), text(4, 0));
        assert_ne!(text(3, 0), text(3, 1));
        // Two workers take disjoint conversations, cycling through the count.
        let of = |index: u32| -> Vec<u64> {
            (0..4)
                .map(|n| Workload::conversation_id(n, 2, index, 5))
                .collect()
        };
        assert_eq!(of(0), [0, 2, 4, 1]);
        assert_eq!(of(1), [1, 3, 0, 2]);
        let all: std::collections::BTreeSet<u64> = (0..10)
            .flat_map(|n| [0, 1].map(|i| Workload::conversation_id(n, 2, i, 5)))
            .collect();
        assert_eq!(all.len(), 5, "exactly count distinct conversations");
    }

    #[test]
    fn dataset_lines_become_requests_for_either_endpoint() {
        let text = "{\"messages\":[{\"role\":\"user\",\"content\":\"the model serves\"}],\"temperature\":0.5}\n\n{\"prompt\":\"a b c d\",\"max_tokens\":9}\n";
        let entries = parse_dataset(text).unwrap();
        assert_eq!(entries.len(), 2);
        let mut p = plan(Endpoint::Chat, true);
        p.extra_body.clear();
        let chat = dataset_request(&p, &entries[0]);
        let b = body(&chat);
        assert_eq!(b["model"], "m");
        assert_eq!(b["temperature"], 0.5);
        assert_eq!(b["messages"][0]["content"], "the model serves");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(chat.words, 3);
        let from_prompt = body(&dataset_request(&p, &entries[1]));
        assert_eq!(from_prompt["messages"][0]["content"], "a b c d");
        assert_eq!(from_prompt["max_tokens"], 9);
        assert!(from_prompt.get("prompt").is_none());

        let c = plan(Endpoint::Completions, false);
        let b = body(&dataset_request(&c, &entries[0]));
        assert_eq!(b["prompt"], "the model serves");
        assert!(b.get("messages").is_none() && b.get("stream").is_none());
        assert_eq!(b["ignore_eos"], true, "extra body merged last");
    }

    #[test]
    fn bad_datasets_say_which_line() {
        for (text, want) in [
            ("{\"prompt\":\"x\"}\n[1]\n", "line 2: not a JSON object"),
            ("{\"prompt\":\"x\"}\n{oops\n", "line 2:"),
            ("{\"max_tokens\":3}\n", "line 1: an entry needs"),
            ("\n\n", "no entries"),
        ] {
            let e = parse_dataset(text).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn workers_take_disjoint_entries_and_cycle() {
        let text: String = (0..5)
            .map(|i| format!("{{\"prompt\":\"entry {i}\"}}\n"))
            .collect();
        let w = Workload::Dataset(parse_dataset(&text).unwrap());
        let mut p = plan(Endpoint::Completions, false);
        p.workers = 2;
        let seen = |index: u32, ticket: u64| {
            body(&w.request(&p, index, ticket))["prompt"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(seen(0, 0), "entry 0");
        assert_eq!(seen(1, 0), "entry 1");
        assert_eq!(seen(0, 1), "entry 2");
        assert_eq!(seen(1, 2), "entry 0", "5 entries, request 5 wraps");
    }

    #[test]
    fn conversation_turns_carry_the_history() {
        let w = Workload::load(&plan(Endpoint::Chat, true), 0, None).unwrap();
        let p = plan(Endpoint::Chat, true);
        let first = w.turn(&p, &[]);
        let history = vec![first.user_text.clone(), "the answer".to_string()];
        let second = body(&w.turn(&p, &history));
        let messages = second["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["content"], first.user_text.as_str());
        assert_eq!(
            (
                messages[1]["role"].as_str(),
                messages[1]["content"].as_str()
            ),
            (Some("assistant"), Some("the answer"))
        );
        assert_eq!(messages[2]["role"], "user");
    }
}
