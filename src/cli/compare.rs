//! `kubectl benchrun compare A B [C…]`: runs side by side, metric by metric;
//! `kubectl benchrun compare A`: the steps of one sweep side by side. The
//! comparison itself is [`crate::results::compare`]; here are its renderings.

use std::fmt::Write as _;

pub use crate::results::compare::*;

fn value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v != 0.0 && v.abs() < 0.01 => format!("{v:.3e}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn change(c: &Cell) -> String {
    match (c.verdict, c.change) {
        (Verdict::Baseline, _) => String::new(),
        (Verdict::Missing, _) => "(missing)".into(),
        (v, Some(ch)) => match c.p {
            Some(p) => format!("({:+.1}% {}, p={p:.3})", ch * 100.0, v.as_str()),
            None => format!("({:+.1}% {})", ch * 100.0, v.as_str()),
        },
        (v, None) => format!("({})", v.as_str()),
    }
}

fn header(c: &Comparison) -> String {
    format!(
        "baseline {}; tolerance {:.1}%; {}",
        c.runs.first().map(String::as_str).unwrap_or("-"),
        c.tolerance * 100.0,
        c.test
    )
}

/// Aligned columns for a terminal.
pub fn table(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}", header(c));
    for s in &c.steps {
        let _ = writeln!(o, "\n{}", s.step);
        let mut lines: Vec<Vec<String>> = vec![
            std::iter::once("metric".to_string())
                .chain(c.runs.iter().cloned())
                .collect(),
        ];
        for r in &s.rows {
            let arrow = if r.higher_is_better { "↑" } else { "↓" };
            lines.push(
                std::iter::once(format!("{} {arrow}", r.metric))
                    .chain(
                        r.cells
                            .iter()
                            .map(|cell| format!("{} {}", value(cell.value), change(cell))),
                    )
                    .map(|t| t.trim_end().to_string())
                    .collect(),
            );
        }
        let widths: Vec<usize> = (0..=c.runs.len())
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l.get(i).map_or(0, |t| t.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for l in &lines {
            let cells: Vec<String> = l
                .iter()
                .zip(&widths)
                .map(|(t, w)| format!("{t:<w$}"))
                .collect();
            let _ = writeln!(o, "  {}", cells.join("  ").trim_end());
        }
    }
    notes(&mut o, c);
    o
}

fn notes(o: &mut String, c: &Comparison) {
    for n in &c.notes {
        let _ = writeln!(o, "note: {n}");
    }
}

/// A Markdown table per step, for a pull request's comment.
pub fn markdown(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "_{}_", header(c));
    for s in &c.steps {
        let _ = writeln!(o, "\n**{}**\n", s.step);
        let _ = writeln!(o, "| metric | {} |", c.runs.join(" | "));
        let _ = writeln!(o, "|---|{}", "---:|".repeat(c.runs.len()));
        for r in &s.rows {
            let arrow = if r.higher_is_better { "↑" } else { "↓" };
            let cells: Vec<String> = r
                .cells
                .iter()
                .map(|cell| {
                    let shown = format!("{} {}", value(cell.value), change(cell));
                    let shown = shown.trim_end().to_string();
                    match cell.verdict {
                        Verdict::Worse => format!("**{shown}**"),
                        _ => shown,
                    }
                })
                .collect();
            let _ = writeln!(o, "| {} {arrow} | {} |", r.metric, cells.join(" | "));
        }
    }
    if !c.notes.is_empty() {
        let _ = writeln!(o);
        for n in &c.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}

/// One line per step, metric and run.
pub fn csv(c: &Comparison) -> String {
    use crate::results::csv_opt as opt;
    let mut rows = Vec::new();
    for s in &c.steps {
        for r in &s.rows {
            for (cell, run) in r.cells.iter().zip(&c.runs) {
                rows.push(vec![
                    s.step.clone(),
                    r.metric.to_string(),
                    run.clone(),
                    opt(cell.value),
                    opt(cell.change),
                    cell.verdict.as_str().to_string(),
                    opt(cell.p),
                ]);
            }
        }
    }
    crate::results::csv_write(
        &["step", "metric", "run", "value", "change", "verdict", "p"],
        rows,
    )
}

#[cfg(test)]
mod tests;
