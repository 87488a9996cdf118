//! The bytes of a response: one SSE event per token (OpenAI's chunk shapes for
//! chat and completions), the usage event, or the whole non-streamed body. In
//! reasoning mode a chat reply's first tokens are reasoning, in the delta field
//! vLLM's reasoning parsers use.

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
    /// Reasoning mode (chat only): how many tokens reason first, and the
    /// field they are sent in.
    reasoning: Option<(u64, String)>,
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
            reasoning: None,
        }
    }

    /// Reasoning mode: the first `tokens` of a chat reply are sent in `field`.
    pub(super) fn reason(&mut self, tokens: u64, field: &str) {
        if matches!(self.api, Api::Chat) {
            self.reasoning = Some((tokens, field.to_string()));
        }
    }

    /// Whether token `index` (from 1) is reasoning.
    pub(super) fn is_reasoning(&self, index: u64) -> bool {
        self.reasoning.as_ref().is_some_and(|(n, _)| index <= *n)
    }

    pub(super) fn word(&self, index: u64) -> &'static str {
        WORDS[((self.id.wrapping_mul(7) + index) % WORDS.len() as u64) as usize]
    }

    /// One SSE event with token `index` (from 1); the last carries the finish
    /// reason.
    pub(super) fn token(&self, word: &str, index: u64, last: bool) -> Bytes {
        let finish = if last { r#""length""# } else { "null" };
        let field = match &self.reasoning {
            Some((n, field)) if index <= *n => field.as_str(),
            _ => "content",
        };
        let choice = match self.api {
            Api::Chat if index == 1 => {
                format!(
                    r#"{{"index":0,"delta":{{"role":"assistant","{field}":"{word}"}},"logprobs":null,"finish_reason":{finish}}}"#
                )
            }
            Api::Chat => format!(
                r#"{{"index":0,"delta":{{"{field}":"{word}"}},"logprobs":null,"finish_reason":{finish}}}"#
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

    /// The whole reply: `reasoning` is the reasoning text (empty outside
    /// reasoning mode), `text` the answer.
    pub(super) fn whole(&self, reasoning: &str, text: &str, usage: &serde_json::Value) -> Bytes {
        let (id, object, choice) = match self.api {
            Api::Chat => {
                let mut message = json!({"role": "assistant", "content": text});
                if let Some((_, field)) = &self.reasoning {
                    message[field.as_str()] = json!(reasoning);
                }
                (
                    format!("chatcmpl-{}", self.id),
                    "chat.completion",
                    json!({"index": 0, "message": message, "logprobs": null, "finish_reason": "length"}),
                )
            }
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
