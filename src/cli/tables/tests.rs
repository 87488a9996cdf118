use super::*;

/// The Steps table of `out`, and its rows (the header first).
fn step_rows(out: &str) -> (&str, Vec<&str>) {
    let steps = out.split("\nSteps\n").nth(1).unwrap();
    let rows = steps
        .lines()
        .take_while(|l| !l.starts_with('└'))
        .filter(|l| l.starts_with('│'))
        .collect();
    (steps, rows)
}

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
    let (steps, rows) = step_rows(&out);
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

/// Symptom of issue 33: a figure the status withholds was printed by the
/// wide tables and `kubectl benchrun results`. Now a step some load
/// generators' results are missing from shows its client figures withheld,
/// and one whose energy coverage has a gap (here, another run shared the
/// GPUs) shows its energy and tokens per joule withheld — in both.
#[test]
fn a_withheld_figure_is_withheld_in_the_tables_and_the_results_text() {
    let mut doc = recorded();
    let mut second = doc.details[0].clone();
    second.index = 1;
    doc.details.push(second);
    let shown = doc.details[0].client.as_ref().unwrap().requests_per_s;
    let shown = format!("{shown:.2} req/s");
    let text = crate::cli::results::render(&doc);
    assert!(text.contains(&shown), "{text}");
    // Step 0: one of two load generators missing; step 1: shared GPUs.
    let missing = Some(crate::results::WorkerCoverage {
        workers: 2,
        reported: 1,
    });
    doc.details[0].client_coverage = missing;
    let c = doc.details[0].coverage.get_or_insert_default();
    *c = c.clone().with_workers(missing);
    let c = doc.details[1].coverage.get_or_insert_default();
    *c = c.clone().with_shared(&["llm/other".to_string()]);
    let text = crate::cli::results::render(&doc);
    assert!(
        text.contains("client: withheld: results from 1 of 2 load generators arrived"),
        "{text}"
    );
    assert!(
        text.contains("energy: withheld: run llm/other loaded the same target"),
        "{text}"
    );
    assert!(!text.contains("tokens/J"), "{text}");
    let out = render(&doc, 160);
    let (steps, rows) = step_rows(&out);
    assert_eq!(rows[1].matches("withheld").count(), 7, "{steps}");
    assert_eq!(rows[2].matches("withheld").count(), 1, "{steps}");
    // The CSV has no client rows of the incomplete step.
    let files = doc.files().unwrap();
    let csv = &files["client_metrics.csv"];
    assert!(!csv.lines().any(|l| l.starts_with("0,")), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("1,")), "{csv}");
    // No output shows a withheld step's GPU energy: not the per-GPU table,
    // not the GPU tables, not the GPU CSV (its other readings stay).
    let joules = doc.details[0].gpus[0].energy.as_ref().unwrap().joules;
    let joules = format!("{joules:.1}");
    let before = crate::cli::results::render(&recorded());
    assert!(before.contains(&joules), "{before}");
    assert!(!text.contains(&joules), "{text}");
    let gpu_csv = &files["gpu_telemetry.csv"];
    let energy_rows = |step: &str| {
        gpu_csv
            .lines()
            .filter(|l| l.starts_with(step) && l.contains("energy_consumption"))
            .count()
    };
    assert_eq!(energy_rows("0,") + energy_rows("1,"), 0, "{gpu_csv}");
    assert!(gpu_csv.lines().any(|l| l.starts_with("1,")), "{gpu_csv}");
    assert!(!out.contains("Energy Consumption"), "{out}");
    let whole = render(&recorded(), 160);
    assert!(whole.contains("Energy Consumption"), "{whole}");
}
