use super::*;

fn samples(text: &str) -> (Vec<Sample<'_>>, ParseReport) {
    let mut p = Parser::new(text.as_bytes(), Format::Prometheus);
    let out = p
        .by_ref()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect();
    (out, p.into_report())
}

fn labels<'a>(s: &Sample<'a>) -> Vec<(&'a str, String)> {
    s.labels
        .iter()
        .map(|(k, v)| (k, v.text().into_owned()))
        .collect()
}

#[test]
fn names_with_colons_are_kept() {
    let (s, r) = samples("vllm:num_requests_running{model_name=\"m\"} 3\nsglang:x 1\n");
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].name, "vllm:num_requests_running");
    assert_eq!(s[0].value, 3.0);
    assert_eq!(s[1].name, "sglang:x");
    assert_eq!(r.skipped, 0);
}

#[test]
fn escaped_label_values_with_separators() {
    let text = r#"m{a="x,y=z}",b="q\"uo\\te",c="line\nbreak" , d = "sp" ,} 1.5"#;
    let (s, r) = samples(text);
    assert_eq!(r.skipped, 0, "{:?}", r.errors);
    assert_eq!(
        labels(&s[0]),
        vec![
            ("a", "x,y=z}".to_string()),
            ("b", "q\"uo\\te".to_string()),
            ("c", "line\nbreak".to_string()),
            ("d", "sp".to_string()),
        ]
    );
    assert!(s[0].labels.get("b").unwrap().is("q\"uo\\te"));
    assert!(s[0].labels.get("a").unwrap().is("x,y=z}"));
    assert_eq!(s[0].labels.len(), 4);
}

#[test]
fn special_values_and_timestamps() {
    let (s, r) = samples("a NaN\nb +Inf\nc -Inf 1700000000000\nd 1e-3\ne -0.5 17\n");
    assert_eq!(r.skipped, 0);
    assert!(s[0].value.is_nan());
    assert_eq!(s[1].value, f64::INFINITY);
    assert_eq!(s[2].value, f64::NEG_INFINITY);
    assert_eq!(s[2].timestamp_ms, Some(1.7e12));
    assert_eq!(s[3].value, 0.001);
    assert_eq!(s[4].timestamp_ms, Some(17.0));
}

#[test]
fn openmetrics_seconds_exemplars_and_eof() {
    let text = "# TYPE a counter\n# UNIT a seconds\na_total{x=\"1\"} 5 1700000000.5 # {trace_id=\"abc\"} 1 1700000000\nb 2 # {t=\"1\"} 3\n# EOF\n";
    let mut p = Parser::new(text.as_bytes(), Format::detect(None, text.as_bytes()));
    let entries: Vec<_> = p.by_ref().collect();
    let r = p.into_report();
    assert!(r.saw_eof);
    assert_eq!(r.skipped, 0, "{:?}", r.errors);
    assert_eq!(
        entries[1],
        Entry::Unit {
            name: "a",
            unit: "seconds"
        }
    );
    let Entry::Sample(s) = entries[2] else {
        panic!("{:?}", entries[2])
    };
    assert_eq!(s.timestamp_ms, Some(1_700_000_000_500.0));
    let Entry::Sample(b) = entries[3] else {
        panic!()
    };
    assert_eq!((b.value, b.timestamp_ms), (2.0, None));
}

#[test]
fn a_bad_line_costs_only_itself() {
    let text = "good 1\n1bad 2\nbad{x=\"unterminated} 3\nbad{x=1} 4\nbad 5 6 7\nbad notanumber\n# TYPE t nonsense\ngood2{a=\"b\"} 2\n\n\r\ngood3 3\r\n";
    let (s, r) = samples(text);
    let names: Vec<_> = s.iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["good", "good2", "good3"]);
    assert_eq!(r.skipped, 6);
    let kinds: Vec<_> = r.errors.iter().map(|e| (e.line, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (2, LineErrorKind::BadName),
            (3, LineErrorKind::BadLabels),
            (4, LineErrorKind::BadLabels),
            (5, LineErrorKind::BadTimestamp),
            (6, LineErrorKind::BadValue),
            (7, LineErrorKind::BadMetadata),
        ]
    );
}

#[test]
fn invalid_utf8_skips_the_line_only() {
    let mut text = b"a{x=\"".to_vec();
    text.extend_from_slice(&[0xff, 0xfe]);
    text.extend_from_slice(b"\"} 1\nb 2\n");
    let mut p = Parser::new(&text, Format::Prometheus);
    let n = p.by_ref().count();
    assert_eq!(n, 1);
    assert_eq!(p.report().errors[0].kind, LineErrorKind::InvalidUtf8);
}

#[test]
fn too_many_labels_is_refused() {
    let labels: Vec<String> = (0..200).map(|i| format!("l{i}=\"v\"")).collect();
    let text = format!("m{{{}}} 1\nok 1\n", labels.join(","));
    let (s, r) = samples(&text);
    assert_eq!(s.len(), 1);
    assert_eq!(r.errors[0].kind, LineErrorKind::TooManyLabels);
}

#[test]
fn content_after_eof_is_counted() {
    let (s, r) = samples("a 1\n# EOF\nb 2\n");
    assert_eq!(s.len(), 1);
    assert_eq!(r.errors[0].kind, LineErrorKind::AfterEof);
}

#[test]
fn plain_comments_and_blank_lines_are_ignored() {
    let (s, r) = samples("# just a comment\n#\n   \n  # HELP x some help\nx 1\n");
    assert_eq!(s.len(), 1);
    assert_eq!(r.skipped, 0);
    assert_eq!(r.lines, 5);
}

#[test]
fn kept_errors_are_bounded() {
    let text = "!\n".repeat(1000);
    let (_, r) = samples(&text);
    assert_eq!(r.skipped, 1000);
    assert_eq!(r.errors.len(), KEPT_ERRORS);
}

#[test]
fn every_label_is_walked_and_found() {
    let (s, _) = samples("m{a=\"1\", b=\"2\" ,c=\"3\"} 1\nn{a=\"1\",} 2\n");
    let names: Vec<_> = s[0].labels.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(s[0].labels.get("c").unwrap().is("3"));
    assert_eq!(s[0].labels.raw(), "a=\"1\", b=\"2\" ,c=\"3\"");
    assert_eq!(s[1].labels.iter().count(), 1);
    assert_eq!(Labels::EMPTY.iter().count(), 0);
}
