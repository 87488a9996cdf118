//! Properties of the exposition parser and the engine on generated input:
//! what is written is read back, nothing panics, and a bad line never costs
//! a good one.

use benchrun::scrape::{Entry, Format, Parser};
use benchrun::telemetry::{Filter, GpuTelemetry, ServerMetrics};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Line {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,30}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,15}"
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        (-1e6f64..1e6),
        (0u32..100000).prop_map(f64::from),
    ]
}

fn line() -> impl Strategy<Value = Line> {
    (
        name(),
        prop::collection::vec((label_name(), any::<String>()), 0..6),
        value(),
    )
        .prop_map(|(name, labels, value)| Line {
            name,
            labels,
            value,
        })
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render(l: &Line, spaced: bool) -> String {
    let sep = if spaced { ", " } else { "," };
    let labels: Vec<String> = l
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let value = if l.value.is_nan() {
        "NaN".to_string()
    } else if l.value.is_infinite() {
        if l.value > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{:?}", l.value)
    };
    if labels.is_empty() {
        format!("{} {value}", l.name)
    } else {
        format!("{}{{{}}} {value}", l.name, labels.join(sep))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn what_is_written_is_read_back(lines in prop::collection::vec(line(), 1..20), spaced in any::<bool>()) {
        let text: String = lines.iter().map(|l| render(l, spaced) + "\n").collect();
        let mut p = Parser::new(text.as_bytes(), Format::Prometheus);
        let got: Vec<_> = p.by_ref().filter_map(|e| match e { Entry::Sample(s) => Some(s), _ => None }).collect();
        prop_assert_eq!(p.report().skipped, 0, "{:?}\n{}", p.report().errors, text);
        prop_assert_eq!(got.len(), lines.len());
        for (s, l) in got.iter().zip(&lines) {
            prop_assert_eq!(s.name, l.name.as_str());
            prop_assert!(s.value == l.value || s.value.is_nan() && l.value.is_nan());
            let labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.to_string(), v.text().into_owned())).collect();
            prop_assert_eq!(&labels, &l.labels);
        }
    }

    #[test]
    fn garbage_between_good_lines_costs_only_itself(
        lines in prop::collection::vec(line(), 1..10),
        junk in prop::collection::vec("[^\n#]{1,40}", 1..10),
    ) {
        // Junk lines that happen to be valid samples are fine: they are counted
        // as samples, and the good lines must all still be there, in order.
        let mut text = String::new();
        for (i, l) in lines.iter().enumerate() {
            text += &junk[i % junk.len()];
            text += "\n";
            text += &render(l, false);
            text += "\n";
        }
        let mut p = Parser::new(text.as_bytes(), Format::Prometheus);
        let names: Vec<String> = p.by_ref().filter_map(|e| match e { Entry::Sample(s) => Some(s.name.to_string()), _ => None }).collect();
        let mut it = names.iter();
        for l in &lines {
            prop_assert!(it.any(|n| *n == l.name), "{} lost in\n{}", l.name, text);
        }
        let r = p.report();
        prop_assert!(r.samples + r.skipped <= r.lines);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut p = Parser::new(&bytes, Format::Prometheus);
        let n = p.by_ref().count() as u32;
        prop_assert!(n <= p.report().lines);
        let mut g = GpuTelemetry::default();
        g.ingest("e", 0.0, &bytes, Format::OpenMetrics);
        let mut s = ServerMetrics::new(Filter::default());
        s.ingest("e", 0.0, &bytes, Format::Prometheus);
        let _ = s.results();
        for gpu in &g.gpus {
            let _ = gpu.result();
        }
    }

    #[test]
    fn mutated_exposition_never_panics(
        lines in prop::collection::vec(line(), 1..8),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes: Vec<u8> = lines.iter().map(|l| render(l, true) + "\n").collect::<String>().into_bytes();
        for (at, b) in cuts {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let mut s = ServerMetrics::new(Filter::default());
        s.ingest("e", 0.0, &bytes, Format::Prometheus);
        s.ingest("e", 1.0, &bytes, Format::Prometheus);
        let _ = s.results();
    }
}
