//! The bytes of a response: one SSE event per token (OpenAI's chunk shapes for
//! chat and completions), the usage event, or the whole non-streamed body.

use axum::body::Bytes;
use serde_json::json;

use super::request::Api;
use crate::clock::unix_ms;

/// Builds the response chunks of one request.
pub(super) struct Chunks {
    prefix: String,
    api: Api,
    id: u64,
    created: u64,
    /// The model name, unquoted (the prefix has it as JSON).
    model: String,
}

const WORDS: [&str; 16] = [
    " the",
    " model",
    " serves",
    " tokens",
    " fast",
    " on",
    " a",
    " simulated",
    " gpu",
    " with",
    " power",
    " and",
    " energy",
    " in",
    " every",
    " step",
];

impl Chunks {
    pub(super) fn new(model: &str, api: Api, id: u64) -> Self {
        let quoted = serde_json::to_string(model).unwrap_or_default();
        let (kind, object) = match api {
            Api::Chat => ("chatcmpl", "chat.completion.chunk"),
            Api::Completions => ("cmpl", "text_completion"),
        };
        let created = unix_ms() / 1000;
        Self {
            prefix: format!(
                r#"{{"id":"{kind}-{id}","object":"{object}","created":{created},"model":{quoted},"#
            ),
            api,
            id,
            created,
            model: model.to_string(),
        }
    }

    pub(super) fn word(&self, index: u64) -> &'static str {
        WORDS[((self.id.wrapping_mul(7) + index) % WORDS.len() as u64) as usize]
    }

    /// One SSE event with one token; the last carries the finish reason.
    pub(super) fn token(&self, word: &str, first: bool, last: bool) -> Bytes {
        let finish = if last { r#""length""# } else { "null" };
        let choice = match self.api {
            Api::Chat if first => {
                format!(
                    r#"{{"index":0,"delta":{{"role":"assistant","content":"{word}"}},"logprobs":null,"finish_reason":{finish}}}"#
                )
            }
            Api::Chat => format!(
                r#"{{"index":0,"delta":{{"content":"{word}"}},"logprobs":null,"finish_reason":{finish}}}"#
            ),
            Api::Completions => {
                format!(r#"{{"index":0,"text":"{word}","logprobs":null,"finish_reason":{finish}}}"#)
            }
        };
        Bytes::from(format!("data: {}\"choices\":[{choice}]}}\n\n", self.prefix))
    }

    pub(super) fn usage(&self, usage: &serde_json::Value) -> Bytes {
        Bytes::from(format!(
            "data: {}\"choices\":[],\"usage\":{usage}}}\n\n",
            self.prefix
        ))
    }

    pub(super) fn whole(&self, text: &str, usage: &serde_json::Value) -> Bytes {
        let (id, object, choice) = match self.api {
            Api::Chat => (
                format!("chatcmpl-{}", self.id),
                "chat.completion",
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "length"}),
            ),
            Api::Completions => (
                format!("cmpl-{}", self.id),
                "text_completion",
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": "length"}),
            ),
        };
        Bytes::from(
            json!({"id": id, "object": object, "created": self.created, "model": self.model,
                   "choices": [choice], "usage": usage})
            .to_string(),
        )
    }
}
