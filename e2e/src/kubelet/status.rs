//! Container state machines and the pod status built from them. Pure.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// How a process ended.
#[derive(Clone, Debug)]
pub struct Exit {
    pub code: i32,
    /// The termination message (the log tail, under FallbackToLogsOnError).
    pub message: Option<String>,
}

#[derive(Clone, Debug)]
enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        since: Timestamp,
    },
    Terminated {
        exit: Exit,
        started: Timestamp,
        finished: Timestamp,
    },
}

/// One container across its restarts.
#[derive(Clone, Debug)]
pub struct ContainerRun {
    pub name: String,
    image: String,
    state: State,
    last: Option<State>,
    restarts: i32,
    ready: bool,
    pid: Option<i32>,
    first_start: Option<Timestamp>,
    restart_at: Option<Instant>,
    backoff: Duration,
    last_probe: Option<Instant>,
    probed_ok: bool,
}

/// First restart delay; doubled per crash up to [`MAX_BACKOFF`]. Shorter than
/// the kubelet's 10 s and 5 min so that tests of crash loops stay quick.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Until the first success a probe runs this often, whatever its period.
const FAST_PROBE: Duration = Duration::from_millis(250);

impl ContainerRun {
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_string(),
            image: image.to_string(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last: None,
            restarts: 0,
            ready: false,
            pid: None,
            first_start: None,
            restart_at: None,
            backoff: FIRST_BACKOFF,
            last_probe: None,
            probed_ok: false,
        }
    }

    pub fn started(&mut self, pid: Option<i32>) {
        let now = Timestamp::now();
        self.first_start.get_or_insert(now);
        self.state = State::Running { since: now };
        self.pid = pid;
        self.ready = false;
        self.last_probe = None;
        self.probed_ok = false;
    }

    pub fn cannot_start(&mut self, message: &str) {
        self.state = State::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some(message.to_string()),
        };
        self.restart_at = None;
    }

    /// Records an exit; schedules a restart when the policy asks for one.
    pub fn exited(&mut self, exit: Exit, restart_policy: &str) {
        let started = match &self.state {
            State::Running { since } => *since,
            _ => return,
        };
        let restart = match restart_policy {
            "Always" => true,
            "OnFailure" => exit.code != 0,
            _ => false,
        };
        let terminated = State::Terminated {
            exit,
            started,
            finished: Timestamp::now(),
        };
        self.ready = false;
        self.pid = None;
        if restart {
            self.last = Some(terminated);
            self.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
            };
            self.restart_at = Some(Instant::now() + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        } else {
            self.state = terminated;
        }
    }

    /// Whether a scheduled restart is due now (and counts it).
    pub fn restart_due(&mut self) -> bool {
        match self.restart_at {
            Some(at) if Instant::now() >= at => {
                self.restart_at = None;
                self.restarts += 1;
                true
            }
            _ => false,
        }
    }

    pub fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Ended for good (a restart the policy asked for is still pending otherwise).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Terminated { .. }) && self.restart_at.is_none()
    }

    /// Whether the readiness probe should run now.
    pub fn probe_due(&mut self, probe: &Probe) -> bool {
        let now = Instant::now();
        let State::Running { since } = self.state else {
            return false;
        };
        let age = Timestamp::now().duration_since(since);
        let delay = probe.initial_delay_seconds.unwrap_or(0).max(0) as i64;
        if age.as_secs() < delay {
            return false;
        }
        let every = if self.probed_ok {
            Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64)
        } else {
            FAST_PROBE
        };
        let due = self
            .last_probe
            .is_none_or(|t| now.duration_since(t) >= every);
        if due {
            self.last_probe = Some(now);
        }
        due
    }

    pub fn set_ready(&mut self, ready: bool) {
        self.probed_ok |= ready;
        self.ready = ready;
    }

    fn status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: String::new(),
            container_id: self.pid.map(|p| format!("benchrun-e2e://{p}")),
            ready: self.ready,
            started: Some(self.running()),
            restart_count: self.restarts,
            state: Some(state(&self.state)),
            last_state: self.last.as_ref().map(state),
            ..Default::default()
        }
    }
}

fn state(s: &State) -> ContainerState {
    match s {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        State::Running { since } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*since)),
            }),
            ..Default::default()
        },
        State::Terminated {
            exit,
            started,
            finished,
        } => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.code,
                reason: Some(if exit.code == 0 { "Completed" } else { "Error" }.into()),
                message: exit.message.clone().filter(|m| !m.is_empty()),
                started_at: Some(Time(*started)),
                finished_at: Some(Time(*finished)),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// The pod's status: phase from the containers (Pending until every container
/// has started once, Succeeded or Failed once all have ended for good),
/// addresses, and the Initialized, ContainersReady and Ready conditions.
pub fn pod_status(
    containers: &[ContainerRun],
    pod_ip: Option<&str>,
    host_ip: &str,
    start_error: Option<&str>,
) -> PodStatus {
    let all_finished = containers.iter().all(ContainerRun::is_finished);
    let phase = if start_error.is_some() || containers.iter().any(|c| c.first_start.is_none()) {
        "Pending"
    } else if all_finished {
        let ok = containers
            .iter()
            .all(|c| matches!(&c.state, State::Terminated { exit, .. } if exit.code == 0));
        if ok { "Succeeded" } else { "Failed" }
    } else {
        "Running"
    };
    let ready = phase == "Running" && containers.iter().all(|c| c.ready);
    let condition = |type_: &str, ok: bool| PodCondition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: (!ok && type_.ends_with("Ready")).then(|| "ContainersNotReady".to_string()),
        ..Default::default()
    };
    PodStatus {
        phase: Some(phase.to_string()),
        message: start_error.map(str::to_string),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: pod_ip.map(str::to_string),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
        start_time: containers
            .iter()
            .filter_map(|c| c.first_start)
            .min()
            .map(Time),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", pod_ip.is_some()),
            condition("Initialized", true),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ]),
        container_statuses: Some(containers.iter().map(ContainerRun::status).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
