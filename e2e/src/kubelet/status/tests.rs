use super::*;

fn phase(cs: &[ContainerRun]) -> String {
    pod_status(cs, Some("198.18.0.2"), "198.19.255.1", None)
        .phase
        .unwrap()
}

fn terminated(s: &ContainerStatus) -> &ContainerStateTerminated {
    s.state.as_ref().unwrap().terminated.as_ref().unwrap()
}

#[test]
fn a_pod_is_pending_until_its_containers_start() {
    let mut c = ContainerRun::new("main", "benchrun");
    assert_eq!(phase(std::slice::from_ref(&c)), "Pending");
    c.started(Some(42));
    let s = pod_status(std::slice::from_ref(&c), Some("198.18.0.2"), "h", None);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(
        s.container_statuses.unwrap()[0].container_id.as_deref(),
        Some("benchrun-e2e://42")
    );
    assert_eq!(s.pod_ip.as_deref(), Some("198.18.0.2"));
}

#[test]
fn never_restart_pods_end_succeeded_or_failed_with_the_message() {
    let mut ok = ContainerRun::new("a", "benchrun");
    ok.started(None);
    ok.exited(
        Exit {
            code: 0,
            message: None,
        },
        "Never",
    );
    assert_eq!(phase(std::slice::from_ref(&ok)), "Succeeded");

    let mut bad = ContainerRun::new("b", "benchrun");
    bad.started(None);
    bad.exited(
        Exit {
            code: 3,
            message: Some("boom".into()),
        },
        "Never",
    );
    let s = pod_status(&[ok, bad], None, "h", None);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let statuses = s.container_statuses.unwrap();
    let t = terminated(&statuses[1]);
    assert_eq!(
        (t.exit_code, t.reason.as_deref(), t.message.as_deref()),
        (3, Some("Error"), Some("boom"))
    );
    assert_eq!(
        terminated(&statuses[0]).reason.as_deref(),
        Some("Completed")
    );
}

#[test]
fn always_restart_containers_back_off_and_count_restarts() {
    let mut c = ContainerRun::new("a", "benchrun");
    c.started(None);
    c.exited(
        Exit {
            code: 1,
            message: None,
        },
        "Always",
    );
    assert!(!c.is_finished());
    assert_eq!(phase(std::slice::from_ref(&c)), "Running");
    assert!(!c.restart_due(), "the first restart waits for the back-off");
    c.restart_at = Some(Instant::now());
    assert!(c.restart_due());
    c.started(None);
    let st = c.status();
    assert_eq!(st.restart_count, 1);
    assert_eq!(st.last_state.unwrap().terminated.unwrap().exit_code, 1);
    assert_eq!(c.backoff, FIRST_BACKOFF * 2);
}

#[test]
fn on_failure_restarts_only_failures() {
    let mut c = ContainerRun::new("a", "benchrun");
    c.started(None);
    c.exited(
        Exit {
            code: 0,
            message: None,
        },
        "OnFailure",
    );
    assert!(c.is_finished());
    let mut d = ContainerRun::new("b", "benchrun");
    d.started(None);
    d.exited(
        Exit {
            code: 2,
            message: None,
        },
        "OnFailure",
    );
    assert!(!d.is_finished());
}

#[test]
fn ready_needs_every_container_ready() {
    let mut a = ContainerRun::new("a", "x");
    let mut b = ContainerRun::new("b", "x");
    a.started(None);
    b.started(None);
    a.set_ready(true);
    let ready = |cs: &[ContainerRun]| {
        pod_status(cs, Some("1.2.3.4"), "h", None)
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .status
    };
    assert_eq!(ready(&[a.clone(), b.clone()]), "False");
    b.set_ready(true);
    assert_eq!(ready(&[a, b]), "True");
}

#[test]
fn a_start_error_keeps_the_pod_pending_with_the_reason() {
    let mut c = ContainerRun::new("a", "nginx");
    c.cannot_start("no program for image");
    let s = pod_status(&[c], None, "h", Some("no program for image"));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let w = s.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(w.reason.as_deref(), Some("CreateContainerConfigError"));
    assert_eq!(w.message.as_deref(), Some("no program for image"));
}

#[test]
fn probes_run_fast_until_the_first_success_then_at_their_period() {
    let probe = Probe {
        period_seconds: Some(60),
        ..Default::default()
    };
    let mut c = ContainerRun::new("a", "x");
    assert!(!c.probe_due(&probe), "not running yet");
    c.started(None);
    assert!(c.probe_due(&probe));
    assert!(!c.probe_due(&probe), "just probed");
    c.last_probe = Some(Instant::now() - FAST_PROBE);
    assert!(c.probe_due(&probe), "no success yet: fast retries");
    c.set_ready(true);
    c.last_probe = Some(Instant::now() - FAST_PROBE);
    assert!(
        !c.probe_due(&probe),
        "after a success: the probe's own period"
    );
}
