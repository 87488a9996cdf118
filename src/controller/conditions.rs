//! Standard `metav1.Condition` bookkeeping.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types a run carries.
pub const ACCEPTED: &str = "Accepted";
pub const QUEUED: &str = "Queued";
pub const DISCOVERED: &str = "Discovered";
pub const RUNNING: &str = "Running";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";
pub const TELEMETRY: &str = "TelemetryDiscovered";
pub const SLO_MET: &str = "SLOMet";
pub const MEASUREMENT_VALID: &str = "MeasurementValid";
pub const WARNINGS: &str = "Warnings";
/// The run against its baseline (`spec.baseline`): True when a gated
/// metric got worse past its tolerance, Unknown when it could not be judged.
pub const REGRESSED: &str = "Regressed";

/// Sets a condition, keeping `lastTransitionTime` unless its status flips, so that
/// re-applying the same state writes nothing new.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    set_status(
        conditions,
        type_,
        Some(status),
        reason,
        message,
        generation,
        now,
    );
}

/// [`set`], with `None` for status Unknown.
pub fn set_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Option<bool>,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = match status {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    // Messages quote servers, workers and specs: no credential of a URL
    // reaches the status.
    let message = crate::net::redact_text(&message.into());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The condition of a type, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = Time(Timestamp::from_second(1_000).unwrap());
        let t1 = Time(Timestamp::from_second(2_000).unwrap());
        let mut cs = Vec::new();
        set(&mut cs, RUNNING, true, "Started", "go", Some(1), &t0);
        set(
            &mut cs,
            RUNNING,
            true,
            "Started",
            "still going",
            Some(1),
            &t1,
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, t0);
        assert_eq!(cs[0].message, "still going");
        set(&mut cs, RUNNING, false, "Done", "stopped", Some(1), &t1);
        assert_eq!(cs[0].last_transition_time, t1);
        assert_eq!(get(&cs, RUNNING).map(|c| c.status.as_str()), Some("False"));
    }

    /// Whatever a message quotes, a URL's credentials never reach the status.
    #[test]
    fn messages_never_carry_a_url_s_credentials() {
        let t = Time(Timestamp::from_second(1_000).unwrap());
        let mut cs = Vec::new();
        set(
            &mut cs,
            FAILED,
            true,
            "PreflightFailed",
            "https://user:hunter3@llm.ns.svc:8443/v1/models did not answer",
            Some(1),
            &t,
        );
        assert_eq!(
            cs[0].message,
            "https://***@llm.ns.svc:8443/v1/models did not answer"
        );
    }
}
