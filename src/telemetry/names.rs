//! Display names and units for metrics discovered at run time.
//!
//! `vllm:time_to_first_token_seconds` becomes "vLLM Time To First Token" in
//! seconds; `sglang:num_running_reqs` becomes "SGLang Num Running Reqs".
//! Words split on `_` and `:`; known acronyms keep their spelling; a unit
//! suffix moves from the name into the unit.

/// Words written in a fixed way rather than capitalised.
const SPELLINGS: &[(&str, &str)] = &[
    ("vllm", "vLLM"),
    ("sglang", "SGLang"),
    ("trtllm", "TRT-LLM"),
    ("nim", "NIM"),
    ("kv", "KV"),
    ("kvstats", "KVStats"),
    ("gpu", "GPU"),
    ("cpu", "CPU"),
    ("ttft", "TTFT"),
    ("itl", "ITL"),
    ("tpot", "TPOT"),
    ("e2e", "E2E"),
    ("http", "HTTP"),
    ("api", "API"),
    ("grpc", "gRPC"),
    ("lora", "LoRA"),
    ("dcgm", "DCGM"),
    ("fi", "FI"),
    ("dev", "DEV"),
    ("sm", "SM"),
    ("fb", "FB"),
    ("pcie", "PCIe"),
    ("nvlink", "NVLink"),
    ("ecc", "ECC"),
    ("xid", "XID"),
    ("id", "ID"),
    ("nv", "NV"),
    ("mig", "MIG"),
    ("ms", "ms"),
    ("us", "µs"),
    ("io", "IO"),
    ("ipc", "IPC"),
    ("uuid", "UUID"),
    ("rpc", "RPC"),
    ("llm", "LLM"),
    ("fp8", "FP8"),
    ("fp16", "FP16"),
    ("fp32", "FP32"),
    ("fp64", "FP64"),
    ("dram", "DRAM"),
];

/// Name suffixes that are units: `(suffix words, unit)`, longest first.
const UNIT_SUFFIXES: &[(&[&str], &str)] = &[
    // llama.cpp's throughputs: `llamacpp:prompt_tokens_seconds` is tokens
    // per second (its HELP says so); a duration is never counted in tokens.
    (&["tokens", "seconds"], "tokens/s"),
    (&["seconds", "total"], "seconds"),
    (&["bytes", "total"], "bytes"),
    (&["tokens", "total"], "tokens"),
    (&["seconds"], "seconds"),
    (&["milliseconds"], "milliseconds"),
    (&["ms"], "milliseconds"),
    (&["microseconds"], "microseconds"),
    (&["us"], "microseconds"),
    (&["bytes"], "bytes"),
    (&["percent"], "percent"),
    (&["percentage"], "percent"),
    (&["perc"], "ratio"),
    (&["ratio"], "ratio"),
    (&["celsius"], "celsius"),
    (&["watts"], "watts"),
    (&["joules"], "joules"),
    (&["tokens"], "tokens"),
    (&["toks", "per", "s"], "tokens/s"),
];

/// The words of a metric name, without the `_total`/`_created` suffix.
fn words(name: &str) -> Vec<&str> {
    let mut w: Vec<&str> = name.split(['_', ':']).filter(|w| !w.is_empty()).collect();
    if w.len() > 1 && matches!(w.last(), Some(&"total") | Some(&"created")) {
        w.pop();
    }
    w
}

/// A human name: "vLLM Num Requests Running".
pub fn display_name(name: &str) -> String {
    let words = words(name);
    let mut out = String::with_capacity(name.len() + 4);
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let lower = w.to_ascii_lowercase();
        match SPELLINGS.iter().find(|(k, _)| *k == lower) {
            Some((_, s)) => out.push_str(s),
            None => {
                let mut chars = w.chars();
                if let Some(c) = chars.next() {
                    out.push(c.to_ascii_uppercase());
                    out.push_str(chars.as_str());
                }
            }
        }
    }
    out
}

/// The unit: from `# UNIT` when given, else from the name's suffix, else from
/// the HELP text ("(in %)", "in seconds"...), else `count`.
pub fn unit(name: &str, help: Option<&str>, declared: Option<&str>) -> String {
    if let Some(u) = declared.filter(|u| !u.is_empty()) {
        return u.to_string();
    }
    let lower = name.to_ascii_lowercase();
    let all: Vec<&str> = lower.split(['_', ':']).filter(|w| !w.is_empty()).collect();
    for (suffix, unit) in UNIT_SUFFIXES {
        if all.ends_with(suffix) {
            return (*unit).to_string();
        }
    }
    // Units in the middle of the name: `*_seconds_*`, `*_bytes_*`.
    for (word, unit) in [
        ("seconds", "seconds"),
        ("bytes", "bytes"),
        ("percent", "percent"),
        // `llamacpp:tokens_predicted_total`, `n_tokens_max`.
        ("tokens", "tokens"),
    ] {
        if all.contains(&word) {
            return unit.to_string();
        }
    }
    if let Some(h) = help.map(str::to_ascii_lowercase) {
        for (pat, unit) in [
            ("(in %)", "percent"),
            ("percent", "percent"),
            ("in seconds", "seconds"),
            ("(in s)", "seconds"),
            ("in milliseconds", "milliseconds"),
            ("(in ms)", "milliseconds"),
            ("in bytes", "bytes"),
            ("(in mib)", "MiB"),
            ("(in w)", "watts"),
            ("(in mhz)", "MHz"),
            ("(in c)", "celsius"),
        ] {
            if h.contains(pat) {
                return unit.to_string();
            }
        }
    }
    "count".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_acronym_aware() {
        assert_eq!(
            display_name("vllm:num_requests_running"),
            "vLLM Num Requests Running"
        );
        assert_eq!(
            display_name("kvstats_gpu_cache_usage_percent"),
            "KVStats GPU Cache Usage Percent"
        );
        assert_eq!(
            display_name("sglang:time_to_first_token_seconds"),
            "SGLang Time To First Token Seconds"
        );
        assert_eq!(
            display_name("vllm:prompt_tokens_total"),
            "vLLM Prompt Tokens"
        );
        assert_eq!(
            display_name("nv_inference_request_success"),
            "NV Inference Request Success"
        );
        assert_eq!(display_name("http_requests_total"), "HTTP Requests");
        assert_eq!(display_name("total"), "Total");
    }

    #[test]
    fn units_from_names_help_and_declarations() {
        assert_eq!(
            unit("vllm:e2e_request_latency_seconds", None, None),
            "seconds"
        );
        assert_eq!(unit("vllm:prompt_tokens_total", None, None), "tokens");
        assert_eq!(unit("vllm:gpu_cache_usage_perc", None, None), "ratio");
        assert_eq!(unit("component_request_bytes_total", None, None), "bytes");
        assert_eq!(unit("x_seconds_bucket_thing", None, None), "seconds");
        // llama.cpp's server: throughputs named `*_tokens_seconds`, times
        // named `*_seconds_total`.
        let help = Some("Average prompt throughput in tokens/s");
        assert_eq!(
            unit("llamacpp:prompt_tokens_seconds", help, None),
            "tokens/s"
        );
        assert_eq!(
            unit("llamacpp:predicted_tokens_seconds", None, None),
            "tokens/s"
        );
        assert_eq!(unit("llamacpp:prompt_seconds_total", None, None), "seconds");
        assert_eq!(
            unit("llamacpp:tokens_predicted_seconds_total", None, None),
            "seconds"
        );
        assert_eq!(unit("llamacpp:prompt_tokens_total", None, None), "tokens");
        assert_eq!(
            unit("llamacpp:tokens_predicted_total", None, None),
            "tokens"
        );
        assert_eq!(unit("llamacpp:n_tokens_max", None, None), "tokens");
        assert_eq!(
            unit(
                "nv_gpu_utilization",
                Some("GPU utilization rate [0.0 - 1.0)"),
                None
            ),
            "count"
        );
        assert_eq!(
            unit(
                "DCGM_FI_DEV_GPU_UTIL",
                Some("GPU utilization (in %)."),
                None
            ),
            "percent"
        );
        assert_eq!(
            unit("nv_inference_request_duration_us", None, None),
            "microseconds"
        );
        assert_eq!(unit("requests_running", None, None), "count");
        assert_eq!(unit("a", None, Some("seconds")), "seconds");
    }
}
