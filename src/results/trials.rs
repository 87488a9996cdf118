//! A run's trials (`spec.repeat`): per step of the sweep, every summary
//! figure across the trials — its mean, standard deviation, 95 % confidence
//! interval and coefficient of variation ([`crate::stats::trials`]) — and
//! the summary of means the status shows. Pure.
//!
//! A figure one trial withheld (its coverage was incomplete) has no mean at
//! all, rather than a mean over the trials that have it: the step's
//! `withheld` names it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::{StepResult, Summary, TrialsResult};
use crate::stats::trials::Spread;

/// A coefficient of variation above this makes a trial mean a warning.
pub const HIGH_CV: f64 = 0.10;

/// Summary figures that are counts: summed over the trials, not averaged.
const SUMMED: [&str; 2] = ["errorCount", "reasoningTokens"];
/// Summary figures that are the same thing counted again each trial.
const KEPT: [&str; 1] = ["gpuCount"];

/// `summaries` (one per trial) as one: each figure every trial has, as the
/// mean over the trials (counts summed; the GPU count the largest); a
/// figure some trial lacks is left out.
pub fn mean_summary(summaries: &[&Summary]) -> Summary {
    let maps = maps(summaries);
    let mut out = serde_json::Map::new();
    for key in keys(&maps) {
        let Some(values) = numbers(&maps, &key) else {
            continue;
        };
        let v = if SUMMED.contains(&key.as_str()) {
            Value::from(values.iter().sum::<f64>().round() as i64)
        } else if KEPT.contains(&key.as_str()) {
            Value::from(values.iter().copied().fold(0.0, f64::max).round() as i64)
        } else {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            Value::from((mean * 1e6).round() / 1e6)
        };
        out.insert(key, v);
    }
    serde_json::from_value(Value::Object(out)).unwrap_or_default()
}

fn maps(summaries: &[&Summary]) -> Vec<serde_json::Map<String, Value>> {
    summaries
        .iter()
        .filter_map(|s| match serde_json::to_value(s) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        })
        .collect()
}

fn keys(maps: &[serde_json::Map<String, Value>]) -> Vec<String> {
    let mut keys: Vec<String> = maps.iter().flat_map(|m| m.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The figure `key` of every map, when every one has it as a number.
fn numbers(maps: &[serde_json::Map<String, Value>], key: &str) -> Option<Vec<f64>> {
    maps.iter().map(|m| m.get(key)?.as_f64()).collect()
}

/// Which of a run's trials ran whole: each of the sweep's `sweep` steps
/// measured, with client results, and none cut short by a stop (cancel,
/// timeout). Returns the whole trials and the others, by trial number from
/// 0. A trial cut short measured less than the others did: its steps are
/// not averaged with theirs.
pub fn whole_trials(steps: &[super::StepDetail], sweep: usize) -> (Vec<usize>, Vec<usize>) {
    let sweep = sweep.max(1);
    let count = steps
        .iter()
        .map(|s| s.index as usize / sweep + 1)
        .max()
        .unwrap_or(0);
    (0..count).partition(|&trial| {
        (0..sweep).all(|place| {
            steps
                .iter()
                .find(|s| s.index as usize == trial * sweep + place)
                .and_then(|s| s.client.as_ref())
                .is_some_and(|c| !c.stopped)
        })
    })
}

/// The trials of a run of `sweep` steps per trial: its measured `steps`
/// grouped by their place in the sweep (`index % sweep`), each figure's
/// spread across them. With the warnings of figures that varied more than
/// [`HIGH_CV`].
pub fn trials(steps: &[StepResult], sweep: usize) -> (Vec<TrialsResult>, Vec<String>) {
    let sweep = sweep.max(1);
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for place in 0..sweep {
        let of_place: Vec<&StepResult> = steps
            .iter()
            .filter(|s| s.index as usize % sweep == place)
            .collect();
        let Some(first) = of_place.first() else {
            continue;
        };
        let summaries: Vec<&Summary> = of_place.iter().map(|s| &s.summary).collect();
        let maps = maps(&summaries);
        let mut metrics = BTreeMap::new();
        let mut withheld = Vec::new();
        for key in keys(&maps) {
            if SUMMED.contains(&key.as_str()) || KEPT.contains(&key.as_str()) {
                continue;
            }
            let Some(values) = numbers(&maps, &key) else {
                withheld.push(key);
                continue;
            };
            if let Some(spread) = Spread::of(&values) {
                if let Some(cv) = spread.cv.filter(|cv| *cv > HIGH_CV) {
                    warnings.push(format!(
                        "{key} of sweep step {place} varies across its {} trials (coefficient of variation {:.0} %): its mean is uncertain",
                        spread.n,
                        cv * 100.0
                    ));
                }
                metrics.insert(key, spread);
            }
        }
        out.push(TrialsResult {
            index: place as i32,
            concurrency: first.concurrency,
            request_rate: first.request_rate,
            trials: of_place.len() as i32,
            metrics,
            withheld,
        });
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: i32, ttft: f64, per_joule: Option<f64>, errors: i64) -> StepResult {
        StepResult {
            index,
            concurrency: Some(if index % 2 == 0 { 4 } else { 8 }),
            summary: Summary {
                ttft_p50_ms: Some(ttft),
                output_tokens_per_joule: per_joule,
                error_count: Some(errors),
                gpu_count: Some(1),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn each_step_of_the_sweep_is_summed_up_across_its_trials() {
        // Two sweep steps (4 and 8 streams), three trials: steps 0..6.
        let steps = [
            step(0, 10.0, Some(2.0), 0),
            step(1, 20.0, Some(1.0), 1),
            step(2, 12.0, Some(2.2), 0),
            step(3, 21.0, None, 0),
            step(4, 14.0, Some(2.4), 2),
            step(5, 22.0, Some(1.2), 0),
        ];
        let (t, warnings) = trials(&steps, 2);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].index, t[0].concurrency, t[0].trials), (0, Some(4), 3));
        let ttft = &t[0].metrics["ttftP50Ms"];
        assert_eq!((ttft.n, ttft.mean, ttft.std), (3, 12.0, 2.0));
        let half = 4.302_652_730 * 2.0 / 3f64.sqrt();
        assert!((ttft.ci95_high - 12.0 - half).abs() < 1e-6);
        // Trial 2 withheld step 1's tokens per joule: no mean of the other two.
        assert!(!t[1].metrics.contains_key("outputTokensPerJoule"));
        assert_eq!(t[1].withheld, ["outputTokensPerJoule"]);
        // Counts are not spread; a 16.7 % CV is a warning, a 4.8 % one is not.
        assert!(!t[0].metrics.contains_key("errorCount"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("ttftP50Ms of sweep step 0 varies across its 3 trials (coefficient of variation 17 %)"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_summary_of_trials_is_their_means_and_withholds_what_one_lacks() {
        let a = step(0, 10.0, Some(2.0), 1).summary;
        let b = step(2, 14.0, None, 2).summary;
        let m = mean_summary(&[&a, &b]);
        assert_eq!(m.ttft_p50_ms, Some(12.0));
        assert_eq!(m.output_tokens_per_joule, None, "one trial withheld it");
        assert_eq!(m.error_count, Some(3), "errors of every trial");
        assert_eq!(m.gpu_count, Some(1));
    }

    #[test]
    fn a_trial_is_whole_when_every_step_ran_to_its_end() {
        use crate::results::StepDetail;
        let step = |index: u32, stopped: Option<bool>| StepDetail {
            index,
            client: stopped.map(|stopped| crate::loadgen::engine::StepResult {
                stopped,
                ..Default::default()
            }),
            ..Default::default()
        };
        // Two steps per trial. Trial 0 whole; trial 1's second step stopped;
        // trial 2's first step without client results; trial 3 missing a step.
        let steps = [
            step(0, Some(false)),
            step(1, Some(false)),
            step(2, Some(false)),
            step(3, Some(true)),
            step(4, None),
            step(5, Some(false)),
            step(6, Some(false)),
        ];
        let (whole, cut) = whole_trials(&steps, 2);
        assert_eq!(whole, [0]);
        assert_eq!(cut, [1, 2, 3]);
        assert_eq!(whole_trials(&steps[..4], 2).1, [1]);
        assert!(whole_trials(&[], 2).0.is_empty());
    }
}
