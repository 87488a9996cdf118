use std::io::Write;
use std::path::PathBuf;

use axum::Router;
use axum::routing::get as route_get;
use serde_json::{Value, json};

use super::*;
use crate::loadgen::plan::{FilesAt, InputPlan, LoadPlan, Tokenizer, TokenizerFiles};
use crate::loadgen::tokenize::{Counter, SizingMethod, VOCAB, sizing};

/// A small real tokenizer: byte-pair merges over letters, so "the",
/// "model" and "cache" are one token each and every other word one per
/// letter; whitespace pre-tokenization (so word costs add up); `<s>` added
/// in front of every sequence by its post-processor; ChatML's markers as
/// special tokens.
fn tokenizer_json() -> Value {
    let mut vocab = serde_json::Map::new();
    let mut add = |t: &str| {
        let id = vocab.len();
        vocab.entry(t.to_string()).or_insert(json!(id));
    };
    for special in ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"] {
        add(special);
    }
    for c in 'a'..='z' {
        add(&c.to_string());
    }
    let merges = [
        ("t", "h"),
        ("th", "e"),
        ("m", "o"),
        ("mo", "d"),
        ("mod", "e"),
        ("mode", "l"),
        ("c", "a"),
        ("ca", "c"),
        ("cac", "h"),
        ("cach", "e"),
    ];
    for (a, b) in merges {
        add(&format!("{a}{b}"));
    }
    let id = |t: &str| vocab[t].clone();
    let special = |t: &str, i| {
        json!({"id": i, "content": t, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            special("<unk>", 0), special("<s>", 1), special("</s>", 2),
            special("<|im_start|>", 3), special("<|im_end|>", 4),
        ],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [id("<s>")], "tokens": ["<s>"]}},
        },
        "decoder": null,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab,
            "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>(),
        },
    })
}

/// ChatML with the BOS in front, written as the template's own text.
const CHATML: &str = "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn files(config: Option<Value>, template: Option<&str>) -> Files {
    Files {
        tokenizer: serde_json::to_vec(&tokenizer_json()).unwrap(),
        config: config.map(|c| serde_json::to_vec(&c).unwrap()),
        template: template.map(|t| t.as_bytes().to_vec()),
    }
}

fn chatml_config() -> Value {
    json!({"bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "</s>"}, "chat_template": CHATML})
}

fn tokenizer(config: Option<Value>, template: Option<&str>) -> FileTokenizer {
    FileTokenizer::new(&files(config, template), "test".into()).unwrap()
}

#[test]
fn a_completion_is_its_text_and_the_bos() {
    let t = tokenizer(None, None);
    // <s> the model: the merged words are one token each.
    assert_eq!(t.count("the model", Endpoint::Completions), Ok(3));
    // g p u: a word the merges do not cover is one token per letter.
    assert_eq!(t.count("gpu", Endpoint::Completions), Ok(4));
    assert_eq!(t.count("", Endpoint::Completions), Ok(1));
}

/// A chat prompt is counted through the template, whose BOS (from the
/// config, an AddedToken's content for the EOS) is its own: none is added.
#[test]
fn a_chat_prompt_is_counted_through_its_template() {
    let t = tokenizer(Some(chatml_config()), None);
    // <s> <|im_start|> u s e r [text] <|im_end|> <|im_start|> a s s i s t a n t
    let empty = 1 + 1 + 4 + 1 + 1 + 9;
    assert_eq!(t.count("", Endpoint::Chat), Ok(empty));
    assert_eq!(t.count("the cache", Endpoint::Chat), Ok(empty + 2));
    assert!(t.describe(Endpoint::Chat).contains(CONFIG));
    // The config's EOS, an AddedToken object, is read by its content.
    let eos = tokenizer(
        Some(json!({"eos_token": {"content": "</s>"}, "chat_template": "{{ eos_token }}"})),
        None,
    );
    assert_eq!(eos.count("", Endpoint::Chat), Ok(1));
}

/// `chat_template.jinja` wins over the config's template; a config's list
/// of named templates gives the one named `default`.
#[test]
fn the_template_comes_from_its_file_or_the_config_s_default() {
    let jinja = tokenizer(Some(chatml_config()), Some("{{ messages[0]['content'] }}"));
    assert_eq!(jinja.count("the model", Endpoint::Chat), Ok(2));
    assert!(jinja.describe(Endpoint::Chat).contains(TEMPLATE));
    let listed = tokenizer(
        Some(json!({"chat_template": [
            {"name": "tool_use", "template": "{{ 'x y z' }}"},
            {"name": "default", "template": "{{ messages[0]['content'] | upper | lower }}"},
        ]})),
        None,
    );
    assert_eq!(listed.count("cache", Endpoint::Chat), Ok(1));
    let none_default = tokenizer(
        Some(json!({"chat_template": [{"name": "tool_use", "template": "x"}]})),
        None,
    );
    let e = none_default.count("x", Endpoint::Chat).unwrap_err();
    assert!(e.contains("none named default"), "{e}");
}

/// Without a template a chat prompt's tokens are unknown: an error that
/// says so, while completions still count.
#[test]
fn no_template_no_chat_count() {
    let t = tokenizer(Some(json!({"bos_token": "<s>"})), None);
    let e = t.count("the", Endpoint::Chat).unwrap_err();
    assert!(e.contains("no chat template"), "{e}");
    assert_eq!(t.count("the", Endpoint::Completions), Ok(2));
}

/// What templates use beyond Jinja's core: Python's string methods,
/// `raise_exception` (an error with the template's message), loop
/// controls; and a template that runs without end is stopped.
#[test]
fn templates_run_as_hugging_face_renders_them_and_are_bounded() {
    let py = tokenizer(
        None,
        Some(
            "{% for m in messages %}{% if m.role != 'user' %}{{ raise_exception('only user') }}{% endif %}{{ m.content.strip().split(' ')[0] }}{% endfor %}",
        ),
    );
    assert_eq!(py.count("  the model  ", Endpoint::Chat), Ok(1));
    let raises = tokenizer(
        None,
        Some("{{ raise_exception('Conversation roles must alternate') }}"),
    );
    let e = raises.count("x", Endpoint::Chat).unwrap_err();
    assert!(e.contains("Conversation roles must alternate"), "{e}");
    let dated = tokenizer(
        None,
        Some("{% if strftime_now('%Y') | int > 2000 %}the{% endif %}"),
    );
    assert_eq!(dated.count("", Endpoint::Chat), Ok(1), "today's year");
    let endless = tokenizer(
        None,
        Some("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
    );
    let e = endless.count("x", Endpoint::Chat).unwrap_err();
    assert!(e.contains("fuel"), "{e}");
    let broken = FileTokenizer::new(&files(None, Some("{% for %}")), "test".into()).unwrap();
    let e = broken.count("x", Endpoint::Chat).unwrap_err();
    assert!(e.contains("does not parse"), "{e}");
}

/// Rendered with Hugging Face's whitespace options (a block tag's line
/// and its newline vanish) and the language real templates use:
/// `namespace`, `loop.last`, `.items()`, `tojson`, `is defined`, and
/// `tools` given as none.
#[test]
fn templates_render_as_hugging_face_s_renderer_does() {
    let template = "\
{% set ns = namespace(n=0) %}
{% for m in messages %}
    {% set ns.n = ns.n + 1 %}
[{{ m.role }}:{{ m.content }}]{% if loop.last %}!{% endif %}
{% endfor %}
{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}
{{ {'x': [1]} | tojson }}
{% if tools is not none %}TOOLS{% endif %}
{% if custom_tools is defined %}CUSTOM{% endif %}
{{ ns.n }}{{ bos_token }}";
    let t = ChatTemplate::new(Some(template.as_bytes()), Some(&chatml_config())).unwrap();
    assert_eq!(
        t.render("hi").unwrap(),
        "[user:hi]!a=1{\"x\": [1]}\n1<s>",
        "as Jinja2 renders it with trim_blocks and lstrip_blocks"
    );
}

/// A rendering bigger than any prompt is refused, not counted 34 times.
#[test]
fn a_template_that_renders_without_bound_is_refused() {
    let t = tokenizer(None, Some("{{ 'x' * 20000000 }}"));
    let e = t.count("the", Endpoint::Chat).unwrap_err();
    assert!(e.contains("rendered 20000000 bytes"), "{e}");
    // Built up instead, the string runs the template out of fuel first.
    let doubling = "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}";
    let e = tokenizer(None, Some(doubling))
        .count("the", Endpoint::Chat)
        .unwrap_err();
    assert!(e.contains("fuel"), "{e}");
}

#[test]
fn files_that_do_not_parse_are_named() {
    let bad = Files {
        tokenizer: b"{\"model\": 1}".to_vec(),
        ..Files::default()
    };
    let e = FileTokenizer::new(&bad, "ConfigMap tok".into())
        .err()
        .unwrap();
    assert!(e.contains("tokenizer.json from ConfigMap tok"), "{e}");
    let mut f = files(None, None);
    f.config = Some(b"not json".to_vec());
    let e = FileTokenizer::new(&f, "x".into()).err().unwrap();
    assert!(e.contains(CONFIG), "{e}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Gzipped files are read decompressed, and bounded after decompression:
/// a small gzip of a large file is refused, as is a large plain one.
#[test]
fn gzip_is_read_and_bounded() {
    assert_eq!(decompressed(gzip(b"abc"), "f", 3), Ok(b"abc".to_vec()));
    assert_eq!(decompressed(b"abc".to_vec(), "f", 3), Ok(b"abc".to_vec()));
    let bomb = gzip(&vec![b'a'; 1 << 20]);
    assert!(bomb.len() < 4096);
    let e = decompressed(bomb, "tokenizer.json", 1000).unwrap_err();
    assert!(e.contains("larger than 1000 bytes"), "{e}");
    assert!(decompressed(vec![b'a'; 1001], "f", 1000).is_err());
    let e = decompressed(vec![0x1f, 0x8b, 0, 0], "f", 1000).unwrap_err();
    assert!(e.contains("does not decompress"), "{e}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("benchrun-tok-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A folder (a mounted ConfigMap): tokenizer.json needed, gzipped or not;
/// the config and template when there.
#[test]
fn a_folder_is_read() {
    let dir = temp_dir("dir");
    let e = read_dir(&dir).err().unwrap();
    assert!(e.contains("no tokenizer.json"), "{e}");
    let f = files(Some(chatml_config()), None);
    std::fs::write(dir.join(TOKENIZER), gzip(&f.tokenizer)).unwrap();
    std::fs::write(dir.join(CONFIG), f.config.as_ref().unwrap()).unwrap();
    let read = read_dir(&dir).unwrap();
    assert_eq!(read.tokenizer, f.tokenizer);
    assert_eq!(read.config, f.config);
    assert!(read.template.is_none());
    let _ = std::fs::remove_dir_all(dir);
}

/// A server of `f`'s tokenizer and config under `/m/`.
fn serving_under_m(f: &Files) -> Router {
    let (tok, cfg) = (f.tokenizer.clone(), f.config.clone().unwrap());
    Router::new()
        .route("/m/tokenizer.json", route_get(move || async move { tok }))
        .route(
            "/m/tokenizer_config.json",
            route_get(move || async move { cfg }),
        )
}

/// Over HTTP: the files under a base URL, found through redirects; a 404
/// or 403 for an optional one is none, for tokenizer.json an error, as is
/// any other status; a body past the bound is refused; credentials in the
/// URL are refused, not silently dropped.
#[tokio::test]
async fn files_are_fetched_from_a_base_url() {
    let f = files(Some(chatml_config()), None);
    let app = serving_under_m(&f)
        .route(
            "/broken/tokenizer.json",
            route_get(|| async { (axum::http::StatusCode::FORBIDDEN, "no") }),
        )
        .route(
            "/hub/tokenizer.json",
            route_get(|| async { axum::response::Redirect::to("/store/blob") }),
        )
        .route(
            "/store/blob",
            route_get(|| async { axum::response::Redirect::to("../m/tokenizer.json") }),
        )
        .route(
            "/hub/tokenizer_config.json",
            route_get(|| async { (axum::http::StatusCode::FORBIDDEN, "AccessDenied") }),
        )
        .route(
            "/loop/tokenizer.json",
            route_get(|| async { axum::response::Redirect::to("/loop/tokenizer.json") }),
        );
    let base = crate::net::testing::start(app).await;
    let client = crate::net::client::http_client(1);
    let fetched = fetch(&client, &format!("{base}/m/")).await.unwrap();
    assert_eq!(fetched.tokenizer, f.tokenizer);
    assert_eq!(fetched.config, f.config);
    assert!(fetched.template.is_none());
    let e = fetch(&client, &format!("{base}/none")).await.err().unwrap();
    assert!(e.contains("404"), "{e}");
    let e = fetch(&client, &format!("{base}/broken"))
        .await
        .err()
        .unwrap();
    assert!(e.contains("HTTP 403"), "{e}");
    let e = get(&client, &format!("{base}/m/tokenizer.json"), 100)
        .await
        .err()
        .unwrap();
    assert!(e.contains("at most 100 bytes"), "{e}");
    // Two redirects, the second relative; a 403 for the optional config.
    let hub = fetch(&client, &format!("{base}/hub")).await.unwrap();
    assert_eq!(hub.tokenizer, f.tokenizer);
    assert!(hub.config.is_none());
    let e = fetch(&client, &format!("{base}/loop")).await.err().unwrap();
    assert!(e.contains("more than 5 redirects"), "{e}");
    let with_user = base.replace("http://", "http://user:pw@");
    let e = fetch(&client, &with_user).await.err().unwrap();
    assert!(
        e.contains("credentials in the URL") && !e.contains("pw"),
        "{e}"
    );
}

#[test]
fn file_urls_keep_a_signed_query_and_redirects_resolve() {
    assert_eq!(
        join("https://h/m/", TOKENIZER),
        "https://h/m/tokenizer.json"
    );
    assert_eq!(
        join("https://h/m", CONFIG),
        "https://h/m/tokenizer_config.json"
    );
    assert_eq!(
        join("https://h/m/?sig=a%2Fb", TOKENIZER),
        "https://h/m/tokenizer.json?sig=a%2Fb"
    );
    let from: hyper::Uri = "https://hub.example/org/m/resolve/main/tokenizer.json"
        .parse()
        .unwrap();
    for (to, at) in [
        (
            "https://cdn.example/x?y=1",
            Some("https://cdn.example/x?y=1"),
        ),
        ("/api/x", Some("https://hub.example/api/x")),
        ("//cdn.example/x", Some("https://cdn.example/x")),
        ("blob", Some("https://hub.example/org/m/resolve/main/blob")),
        ("../../x/y?z=1", Some("https://hub.example/org/m/x/y?z=1")),
        ("./b", Some("https://hub.example/org/m/resolve/main/b")),
        ("file:///etc/passwd", None),
    ] {
        assert_eq!(redirected(&from, to).as_deref(), at, "{to}");
    }
}

/// Calibrated by the files, prompts are the asked length in the model's
/// tokens, word by word as the tokenizer splits them.
#[tokio::test]
async fn the_files_calibrate_the_vocabulary() {
    let t = tokenizer(Some(chatml_config()), None);
    let (costs, check) = Counter::Files(&t, Endpoint::Chat)
        .calibrate(7, 50)
        .await
        .unwrap();
    assert_eq!((check.asked, check.counted), (50, 50));
    assert_eq!(costs.template, 17);
    let at = |w: &str| VOCAB.iter().position(|v| *v == w).unwrap();
    for (w, cost) in [
        ("the", 1),
        ("model", 1),
        ("cache", 1),
        ("gpu", 3),
        ("energy", 6),
    ] {
        assert_eq!(costs.after[at(w)], cost, "{w}");
        assert_eq!(costs.first[at(w)], cost, "{w}");
    }
}

fn plan(dir: &std::path::Path, tokenizer: Tokenizer, endpoint: Endpoint) -> LoadPlan {
    let mut p = crate::loadgen::request::tests::plan(endpoint, true);
    // Nothing listens here: the server cannot be asked.
    p.urls = vec!["http://127.0.0.1:9".into()];
    p.tokenizer = tokenizer;
    p.tokenizer_files = Some(TokenizerFiles {
        at: FilesAt::Dir(dir.to_path_buf()),
        origin: "ConfigMap tok".into(),
    });
    p.input = InputPlan::Synthetic {
        input_mean: 40,
        input_stddev: 0,
        output_mean: 8,
        output_stddev: 0,
    };
    p
}

/// The run's sizing by files: `files` says so and names them; files that
/// cannot be used fail `files`, and `auto` falls back (here to words, the
/// server being down) naming both reasons: never `files` or `server`.
#[tokio::test]
async fn sizing_by_files_says_so_and_falls_back_honestly() {
    let client = crate::net::client::http_client(1);
    let tls = crate::net::tls::TlsOptions::default();
    let dir = temp_dir("sizing");
    let f = files(Some(chatml_config()), None);
    std::fs::write(dir.join(TOKENIZER), &f.tokenizer).unwrap();
    std::fs::write(dir.join(CONFIG), f.config.as_ref().unwrap()).unwrap();
    for tokenizer in [Tokenizer::Files, Tokenizer::Auto] {
        let p = plan(&dir, tokenizer, Endpoint::Chat);
        let (costs, s) = sizing(&client, &p, &[], &tls).await.unwrap();
        let s = s.unwrap();
        assert_eq!(s.method, SizingMethod::Files, "{tokenizer:?}");
        assert_eq!(s.check.unwrap().counted, 40);
        assert_eq!(s.template_tokens, Some(17));
        assert_eq!(costs.unwrap().template, 17);
        let note = s.note.unwrap();
        assert!(
            note.contains("ConfigMap tok") && note.contains(CONFIG),
            "{note}"
        );
    }
    // A config without a chat template: chat cannot be counted.
    std::fs::write(dir.join(CONFIG), b"{}").unwrap();
    let e = sizing(
        &client,
        &plan(&dir, Tokenizer::Files, Endpoint::Chat),
        &[],
        &tls,
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("tokenizer is files") && e.contains("no chat template"),
        "{e}"
    );
    let (costs, s) = sizing(
        &client,
        &plan(&dir, Tokenizer::Auto, Endpoint::Chat),
        &[],
        &tls,
    )
    .await
    .unwrap();
    let s = s.unwrap();
    assert!(costs.is_none());
    assert_eq!(s.method, SizingMethod::Words);
    let note = s.note.unwrap();
    assert!(
        note.contains("tokenizer files from ConfigMap tok could not be used")
            && note.contains("no chat template")
            && note.contains("the target's tokenizer could not be asked"),
        "{note}"
    );
    // A server that counts: `auto` sizes by it, and still says why the
    // files were not used.
    let server = crate::net::testing::start(Router::new().route(
        "/tokenize",
        axum::routing::post(|axum::Json(b): axum::Json<Value>| async move {
            let text = b["messages"][0]["content"].as_str().unwrap_or("");
            axum::Json(json!({"count": text.split_whitespace().count() + 3}))
        }),
    ))
    .await;
    let mut p = plan(&dir, Tokenizer::Auto, Endpoint::Chat);
    p.urls = vec![server];
    let (_, s) = sizing(&client, &p, &[], &tls).await.unwrap();
    let s = s.unwrap();
    assert_eq!(s.method, SizingMethod::Server);
    let note = s.note.unwrap();
    assert!(
        note.contains("tokenizer files from ConfigMap tok could not be used"),
        "{note}"
    );
    // The folder named by a variable that is not set.
    let mut p = plan(&dir, Tokenizer::Files, Endpoint::Chat);
    p.tokenizer_files.as_mut().unwrap().at = FilesAt::Env("BENCHRUN_TEST_UNSET_DIR".into());
    let e = sizing(&client, &p, &[], &tls).await.unwrap_err();
    assert!(e.contains("BENCHRUN_TEST_UNSET_DIR names no folder"), "{e}");
    // The same files size completions, which need no template.
    let (_, s) = sizing(
        &client,
        &plan(&dir, Tokenizer::Files, Endpoint::Completions),
        &[],
        &tls,
    )
    .await
    .unwrap();
    let s = s.unwrap();
    assert_eq!(s.method, SizingMethod::Files);
    assert_eq!(s.template_tokens, Some(1), "the BOS");
    let _ = std::fs::remove_dir_all(dir);
}

/// Files at a URL size the run as files in a folder do.
#[tokio::test]
async fn sizing_by_files_at_a_url() {
    let f = files(Some(chatml_config()), None);
    let base = crate::net::testing::start(serving_under_m(&f)).await;
    let mut p = plan(
        std::path::Path::new("/unused"),
        Tokenizer::Files,
        Endpoint::Chat,
    );
    p.tokenizer_files = Some(TokenizerFiles {
        at: FilesAt::Url(format!("{base}/m/")),
        origin: base.clone(),
    });
    let client = crate::net::client::http_client(1);
    let (_, s) = sizing(&client, &p, &[], &Default::default()).await.unwrap();
    let s = s.unwrap();
    assert_eq!(s.method, SizingMethod::Files);
    assert_eq!(
        (s.template_tokens, s.check.map(|c| c.counted)),
        (Some(17), Some(40))
    );
    assert!(s.note.unwrap().contains(&base));
}
