//! Streams as inference servers send them, replayed through the reader and
//! the tally: one event every 10 ms, so each time says which event it was.

use super::*;

/// The record of `stream` received one line per 10 ms (the first at 10 ms).
fn replay(stream: &str) -> (Record, Tally) {
    let mut rec = unanswered(3);
    let mut sse = SseReader::default();
    let mut tally = Tally::default();
    for (i, line) in stream.lines().enumerate() {
        let at = (i + 1) as f64 * 0.01;
        sse.feed(format!("{line}\n").as_bytes(), |e| {
            tally.apply(e, at, &mut rec)
        });
        tally.check().expect("no malformed event");
    }
    (rec, tally)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

fn finished(stream: &str) -> (Record, bool) {
    let (mut rec, tally) = replay(stream);
    let done = tally.done;
    tally.finish(&mut rec);
    (rec, done)
}

/// vLLM with a reasoning parser (DeepSeek-R1, Qwen3): an empty role chunk,
/// `reasoning_content` deltas, then the answer; usage in its own chunk,
/// without a reasoning count.
#[test]
fn vllm_reasoning_stream_times_the_first_token_and_the_first_answer_token() {
    let (rec, done) = finished(concat!(
        r#"data: {"id":"chatcmpl-9c1","object":"chat.completion.chunk","created":1764460000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
        "\n",
        "\n",
        r#"data: {"id":"chatcmpl-9c1","object":"chat.completion.chunk","created":1764460000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"reasoning_content":"Okay"},"logprobs":null,"finish_reason":null}]}"#,
        "\n",
        r#"data: {"id":"chatcmpl-9c1","object":"chat.completion.chunk","created":1764460000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"reasoning_content":", France"},"logprobs":null,"finish_reason":null}]}"#,
        "\n",
        r#"data: {"id":"chatcmpl-9c1","object":"chat.completion.chunk","created":1764460000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"content":"Paris"},"logprobs":null,"finish_reason":null}]}"#,
        "\n",
        r#"data: {"id":"chatcmpl-9c1","object":"chat.completion.chunk","created":1764460000,"model":"Qwen/Qwen3-8B","choices":[{"index":0,"delta":{"content":"."},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}"#,
        "\n",
        r#"data: {"id":"chatcmpl-9c1","object":"chat.completion.chunk","created":1764460000,"model":"Qwen/Qwen3-8B","choices":[],"usage":{"prompt_tokens":12,"total_tokens":17,"completion_tokens":5}}"#,
        "\n",
        "data: [DONE]\n",
    ));
    assert!(done);
    assert!(
        close(rec.ttft, 0.03),
        "first token: the first reasoning piece"
    );
    assert!(close(rec.ttfat, 0.05), "first answer token");
    assert_eq!(
        rec.token_times.len(),
        3,
        "every token after the first, reasoning included"
    );
    assert_eq!((rec.input_tokens, rec.output_tokens), (12, 5));
    assert_eq!(
        rec.reasoning_tokens, 2,
        "counted: vLLM's usage has no split"
    );
    assert_eq!(rec.source, TokenSource::Usage);
}

/// Later vLLM (and gpt-oss servers) name the delta `reasoning`; OpenAI-style
/// usage reports `completion_tokens_details.reasoning_tokens`, which wins
/// over the count (a reasoning chunk may hold several tokens).
#[test]
fn the_reasoning_field_and_the_servers_reasoning_count() {
    let (rec, _) = finished(concat!(
        r#"data: {"choices":[{"index":0,"delta":{"role":"assistant","reasoning":"Let me think"}}]}"#,
        "\n",
        r#"data: {"choices":[{"index":0,"delta":{"content":"42"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"completion_tokens_details":{"reasoning_tokens":6}}}"#,
        "\n",
        "data: [DONE]\n",
    ));
    assert!(close(rec.ttft, 0.01) && close(rec.ttfat, 0.02));
    assert_eq!((rec.output_tokens, rec.reasoning_tokens), (7, 6));
}

/// A reply that only reasoned (the token budget ran out before the answer)
/// has a first token and tokens: it is not an empty response.
#[test]
fn a_reply_that_only_reasons_has_tokens_but_no_answer_token() {
    let (rec, done) = finished(concat!(
        r#"data: {"choices":[{"index":0,"delta":{"reasoning_content":"Hmm"}}]}"#,
        "\n",
        r#"data: {"choices":[{"index":0,"delta":{"reasoning_content":" so"},"finish_reason":"length"}]}"#,
        "\n",
        "data: [DONE]\n",
    ));
    assert!(done);
    assert!(close(rec.ttft, 0.01));
    assert_eq!(rec.ttfat, None);
    assert_eq!((rec.output_tokens, rec.reasoning_tokens), (2, 2));
    assert_eq!(rec.source, TokenSource::Counted);
}

/// SGLang: every delta names every field, most of them null; usage rides on
/// a chunk of its own after the finish.
#[test]
fn sglang_stream_with_null_fields() {
    let (rec, done) = finished(concat!(
        r#"data: {"id":"5f2a","object":"chat.completion.chunk","created":1764460000,"model":"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B","choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
        "\n",
        r#"data: {"id":"5f2a","object":"chat.completion.chunk","created":1764460000,"model":"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B","choices":[{"index":0,"delta":{"role":null,"content":null,"reasoning_content":"The user","tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
        "\n",
        r#"data: {"id":"5f2a","object":"chat.completion.chunk","created":1764460000,"model":"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B","choices":[{"index":0,"delta":{"role":null,"content":"Hello","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
        "\n",
        r#"data: {"id":"5f2a","object":"chat.completion.chunk","created":1764460000,"model":"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B","choices":[{"index":0,"delta":{"role":null,"content":null,"reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":"stop","matched_stop":151645}],"usage":null}"#,
        "\n",
        r#"data: {"id":"5f2a","object":"chat.completion.chunk","created":1764460000,"model":"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B","choices":[],"usage":{"prompt_tokens":8,"total_tokens":12,"completion_tokens":4,"prompt_tokens_details":null,"reasoning_tokens":0}}"#,
        "\n",
        "data: [DONE]\n",
    ));
    assert!(done);
    assert!(close(rec.ttft, 0.02) && close(rec.ttfat, 0.03));
    assert_eq!((rec.output_tokens, rec.reasoning_tokens), (4, 1));
}

/// TensorRT-LLM's server with speculative decoding: one chunk carries several
/// tokens. With usage the count is the server's; without, the chunks are
/// counted and the record says so (`Counted`).
#[test]
fn trtllm_chunks_with_several_tokens() {
    let body = concat!(
        r#"data: {"id":"chatcmpl-3f","object":"chat.completion.chunk","created":1764460000,"model":"llama-3.1-8b","choices":[{"index":0,"delta":{"role":"assistant","content":"The quick brown"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
        "\n",
        r#"data: {"id":"chatcmpl-3f","object":"chat.completion.chunk","created":1764460000,"model":"llama-3.1-8b","choices":[{"index":0,"delta":{"content":" fox jumps"},"logprobs":null,"finish_reason":"length"}],"usage":null}"#,
        "\n",
    );
    let usage = concat!(
        r#"data: {"id":"chatcmpl-3f","object":"chat.completion.chunk","created":1764460000,"model":"llama-3.1-8b","choices":[],"usage":{"prompt_tokens":5,"total_tokens":10,"completion_tokens":5}}"#,
        "\n",
        "data: [DONE]\n",
    );
    let (rec, _) = finished(&format!("{body}{usage}"));
    assert_eq!((rec.output_tokens, rec.source), (5, TokenSource::Usage));
    let (rec, done) = finished(body);
    assert!(!done, "a server that closes without [DONE]");
    assert_eq!((rec.output_tokens, rec.source), (2, TokenSource::Counted));
}

/// NIM: usage on the chunk that finishes; keep-alive comments and blank
/// `data:` lines between events are not errors.
#[test]
fn nim_stream_with_keepalives_and_usage_on_the_last_chunk() {
    let (rec, done) = finished(concat!(
        ": ping\n",
        r#"data: {"id":"chat-1a2b","object":"chat.completion.chunk","created":1764460000,"model":"meta/llama-3.1-8b-instruct","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"logprobs":null,"finish_reason":null}]}"#,
        "\n",
        "data:\n",
        "data: \n",
        r#"data: {"id":"chat-1a2b","object":"chat.completion.chunk","created":1764460000,"model":"meta/llama-3.1-8b-instruct","choices":[{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":6,"total_tokens":8,"completion_tokens":2}}"#,
        "\n",
        "data: [DONE]\n",
    ));
    assert!(done);
    assert!(
        close(rec.ttft, 0.02) && close(rec.ttfat, 0.02),
        "no reasoning: the same"
    );
    assert_eq!(rec.token_times, [0.05]);
    assert_eq!((rec.output_tokens, rec.reasoning_tokens), (2, 0));
}

/// A whole (non-streamed) reply from a reasoning model: the reasoning and the
/// answer in one message; the conversation keeps the answer only.
#[test]
fn a_whole_reasoning_reply_counts_and_keeps_only_the_answer() {
    let v: serde_json::Value = serde_json::from_str(
        r#"{"choices":[{"index":0,"message":{"role":"assistant","reasoning_content":"think","content":"Paris"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":9}}"#,
    )
    .unwrap();
    let mut rec = unanswered(3);
    let mut tally = Tally::default();
    let mut text = String::new();
    chunk_events(&v, Some(&mut text), &mut |e| tally.apply(e, 0.5, &mut rec));
    tally.finish(&mut rec);
    assert_eq!(text, "Paris");
    assert!(close(rec.ttft, 0.5) && close(rec.ttfat, 0.5));
    assert_eq!((rec.output_tokens, rec.reasoning_tokens), (9, 1));
}
