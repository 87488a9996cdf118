use super::*;

fn recorded() -> ResultsDocument {
    serde_json::from_str(include_str!("../testdata/summary.json")).unwrap()
}

/// Compares `got` with the golden file `name` under `src/cli/testdata`
/// (`UPDATE_GOLDEN=1` rewrites it).
fn golden(name: &str, got: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/cli/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "{name} differs (UPDATE_GOLDEN=1 rewrites it):\n{got}"
    );
}

#[test]
fn the_reference_layout_at_a_wide_and_a_narrow_width() {
    let doc = recorded();
    let wide = render(&doc, 132);
    golden("wide-132.txt", &wide);
    let narrow = render(&doc, 80);
    golden("wide-80.txt", &narrow);
    for out in [&wide, &narrow] {
        assert!(out.contains("1/1 GPU endpoints reachable"), "{out}");
        assert!(out.contains("1/1 server endpoints reachable"), "{out}");
        assert!(out.contains("198.18.64.2:9400 | GPU 0 |"), "{out}");
        assert!(out.contains("GPU Power Usage (W)"), "{out}");
        assert!(
            out.contains("198.18.64.5:8000 | demo/llm-57f7f99945-9kj2n"),
            "{out}"
        );
    }
    // Every table line of the narrow layout fits 80 columns; the wide one
    // keeps every statistic.
    for line in narrow
        .lines()
        .filter(|l| l.starts_with(['│', '┌', '├', '└']))
    {
        assert!(line.chars().count() <= 80, "{line}");
    }
    assert!(narrow.contains("left out to fit 80 columns"), "{narrow}");
    assert!(wide.contains("│ avg │") || wide.contains(" avg "), "{wide}");
    assert!(!wide.contains("left out"), "{wide}");
}

#[test]
fn sweeps_are_one_table_with_a_row_per_step() {
    let mut doc = recorded();
    let mut second = doc.details[0].clone();
    second.index = 1;
    if let Some(c) = second.client.as_mut() {
        c.concurrency = Some(16);
    }
    second.efficiency = None;
    doc.details.push(second);
    let out = render(&doc, 132);
    let steps = out.split("\nSteps\n").nth(1).unwrap();
    let rows: Vec<&str> = steps
        .lines()
        .take_while(|l| !l.starts_with('└'))
        .filter(|l| l.starts_with('│'))
        .collect();
    assert_eq!(rows.len(), 3, "a header and two steps:\n{steps}");
    assert!(
        rows[1].contains("8 streams") && rows[2].contains("16 streams"),
        "{steps}"
    );
    assert!(
        rows[2].contains("withheld"),
        "no efficiency: withheld, not zero"
    );
    assert!(out.contains("== step 1"), "{out}");
}

#[test]
fn numbers_are_grouped_as_the_references_print_them() {
    assert_eq!(num(1755.0), "1,755.00");
    assert_eq!(num(79.575), "79.58");
    assert_eq!(num(-1234567.891), "-1,234,567.89");
    assert_eq!(num(0.0), "0.00");
    assert_eq!(num(-0.001), "0.00");
}
