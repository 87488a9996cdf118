//! One run per target at a time: which runs load the same thing, and where a
//! run stands in the queue for it. Pure.
//!
//! Two runs that load the same inference server at once measure each other:
//! each one's latencies carry the other's load, and each counts the same GPUs'
//! energy as its own. So a run whose target overlaps that of a run in
//! progress waits (`Queued`) until that run ends, in the order the runs were
//! created (`spec.concurrencyPolicy: Queue`, the default). A run with
//! `Allow` starts at once; it and every run it overlaps record the overlap
//! (`status.sharedWith`), and their energy and efficiency figures are withheld.
//!
//! The queue is derived from the runs alone (their specs and statuses, as the
//! controller's watch holds them), never kept in memory: a new controller
//! finds the same order.
//!
//! What "the same target" means, as keys two runs share:
//! - `service NS/NAME`: a `serviceRef`, or a URL whose host is a Service's
//!   cluster name (`NAME.NS.svc`, with or without `.cluster.local`);
//! - `endpoint HOST:PORT`: each address the run sends to (the ready pods a
//!   Service resolved to, or the URL's host and port), so two Services in
//!   front of the same pods, or a Service and a URL naming one of its pods,
//!   overlap. Loopback addresses are not keys: each pod has its own.
//!
//! GPUs shared by different pods (time-slicing, MPS) are not known before a run
//! starts; that is a limit of this check, said in the docs.
//!
//! **The owner's runs go first.** A run *owns* the keys that come from its
//! own namespace: a Service there (by `serviceRef` or by its cluster name),
//! and the addresses such a Service resolved to. A run from another
//! namespace whose overlap with a run of the owner's namespace lies only in
//! keys that run owns is a *guest* there: it never waits ahead of the
//! owner's runs, it waits for them whatever its policy (`Allow` does not let
//! it start beside them), and one that is running when an owner's run
//! arrives gives way ([`gives_way`]: it ends early, reason `Preempted`,
//! keeping what it measured). So a run in namespace B aimed at A's Service
//! or A's pod addresses cannot hold A's runs `Queued`, nor withhold their
//! energy by overlapping them.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{self, BenchmarkRun, ConcurrencyPolicy, Phase};

/// At most this many runs are named in `status.sharedWith`.
pub const SHARED_NAMES: usize = 8;

/// Another run, as the queue sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    /// `namespace/name`.
    pub name: String,
    pub uid: String,
    pub created: Option<Timestamp>,
    pub policy: ConcurrencyPolicy,
    /// When it was launched (its Job made), if it was.
    pub started: Option<Timestamp>,
    /// When it ended, if it has.
    pub ended: Option<Timestamp>,
    /// Not launched, and waiting to be (not ended, cancelled or being deleted).
    pub waiting: bool,
    /// Still looking its target up (`Discovering`): it holds no place in the
    /// installer's limit of runs measured at once until it has one.
    pub discovering: bool,
    pub keys: BTreeSet<String>,
    /// The keys it owns (they come from its own namespace).
    pub owned: BTreeSet<String>,
}

impl Peer {
    /// The run as a peer.
    pub fn of(run: &BenchmarkRun) -> Peer {
        let status = run.status.as_ref();
        let endpoints = status.map(|s| s.target_endpoints.as_slice()).unwrap_or(&[]);
        let owned = status
            .map(|s| s.owned_target_endpoints.as_slice())
            .unwrap_or(&[]);
        let started = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        let final_phase = status.and_then(|s| s.phase).is_some_and(Phase::is_final);
        // A run that ended without a completion time ended, as far as
        // overlap goes, when it was launched.
        let ended = final_phase.then(|| {
            status
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0)
                .or(started)
                .unwrap_or(Timestamp::UNIX_EPOCH)
        });
        Peer {
            started,
            ended,
            discovering: status.and_then(|s| s.phase) == Some(Phase::Discovering),
            waiting: started.is_none()
                && !final_phase
                && !run.spec.cancel
                && run.metadata.deletion_timestamp.is_none(),
            ..Peer::me(run, endpoints, owned)
        }
    }

    /// Launched and not ended: it holds its target.
    fn active(&self) -> bool {
        self.started.is_some() && self.ended.is_none()
    }

    /// The run itself, sending to `endpoints` (URLs or `host:port`s), of
    /// which it owns `owned` (`host:port`s of its own namespace's pods), as
    /// not yet launched.
    pub fn me(run: &BenchmarkRun, endpoints: &[String], owned_endpoints: &[String]) -> Peer {
        let ns = run.namespace().unwrap_or_default();
        let keys = keys(&ns, &run.spec.target, endpoints);
        Peer {
            owned: owned(&ns, &run.spec.target, &keys, owned_endpoints),
            uid: run.uid().unwrap_or_default(),
            created: run.metadata.creation_timestamp.as_ref().map(|t| t.0),
            policy: run.spec.concurrency_policy,
            started: None,
            ended: None,
            waiting: true,
            discovering: false,
            keys,
            name: format!("{ns}/{}", run.name_any()),
        }
    }

    fn namespace(&self) -> &str {
        self.name.split_once('/').map_or("", |(ns, _)| ns)
    }

    /// `self` is a guest of `owner`: they are in different namespaces, and
    /// where their targets overlap only `owner` owns anything.
    fn guest_of(&self, owner: &Peer) -> bool {
        if self.namespace() == owner.namespace() {
            return false;
        }
        let overlap: BTreeSet<&String> = self.keys.intersection(&owner.keys).collect();
        overlap.iter().any(|k| owner.owned.contains(*k))
            && !overlap.iter().any(|k| self.owned.contains(*k))
    }

    /// Created before `other` (the name breaks ties: creation times have
    /// one-second resolution).
    fn before(&self, other: &Peer) -> bool {
        (self.created, &self.name) < (other.created, &other.name)
    }
}

/// The keys of what a run in `ns` with `target` loads; `endpoints` are
/// the URLs it resolved to, or the `host:port`s its status recorded.
pub fn keys(ns: &str, target: &api::Target, endpoints: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(s) = &target.service_ref {
        out.insert(format!("service {ns}/{}", s.name));
    }
    let urls = target.url.iter().chain(endpoints);
    for hp in urls.filter_map(|u| crate::net::host_port(u)) {
        if let Some(service) = service_of_host(&hp) {
            out.insert(service);
        }
        if !loopback(&hp) {
            out.insert(format!("endpoint {hp}"));
        }
    }
    out
}

/// Of `keys`, those a run in `ns` with `target` owns: a Service in `ns`; the
/// addresses in `owned_endpoints` (`host:port`s of pods in `ns`, as the
/// controller checked when it resolved the target: an address written into
/// an EndpointSlice by hand is not one); and a URL target's own host when it
/// is a Service of `ns` by its cluster name.
pub fn owned(
    ns: &str,
    target: &api::Target,
    keys: &BTreeSet<String>,
    owned_endpoints: &[String],
) -> BTreeSet<String> {
    let own_service = format!("service {ns}/");
    let own_url = target
        .url
        .as_deref()
        .and_then(crate::net::host_port)
        .filter(|hp| service_of_host(hp).is_some_and(|s| s.starts_with(&own_service)));
    keys.iter()
        .filter(|k| {
            k.starts_with(&own_service)
                || k.strip_prefix("endpoint ").is_some_and(|hp| {
                    owned_endpoints.iter().any(|o| o == hp) || own_url.as_deref() == Some(hp)
                })
        })
        .cloned()
        .collect()
}

/// The `host:port` each URL sends to, to record in the status (no scheme,
/// path or credentials), sorted and without repeats.
pub fn endpoints(urls: &[String]) -> Vec<String> {
    let set: BTreeSet<String> = urls
        .iter()
        .filter_map(|u| crate::net::host_port(u))
        .collect();
    set.into_iter().collect()
}

/// `service NS/NAME` for a host that is a Service's cluster DNS name.
fn service_of_host(hp: &str) -> Option<String> {
    let host = hp.rsplit_once(':').map_or(hp, |(h, _)| h);
    let host = host.trim_end_matches('.');
    let host = host.strip_suffix(".cluster.local").unwrap_or(host);
    let rest = host.strip_suffix(".svc")?;
    let (name, ns) = rest.split_once('.')?;
    (!name.is_empty() && !ns.is_empty() && !ns.contains('.'))
        .then(|| format!("service {ns}/{name}"))
}

fn loopback(hp: &str) -> bool {
    let host = hp.rsplit_once(':').map_or(hp, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// It may start. `shared_with` names the runs in progress on the same
    /// target that it starts beside (only with `Allow`, or beside one that
    /// was allowed).
    Go { shared_with: Vec<String> },
    /// It waits: for `waits_for` (the run in progress, or the one ahead of
    /// it), at `position` (1: next to start).
    Wait { waits_for: String, position: usize },
    /// Its target is free, but as many runs as the installer allows are
    /// measured already: it waits at `position` among the runs that could
    /// start (1: next).
    Full { position: usize, limit: usize },
}

/// Where `me` stands when at most `limit` runs may be measured at once
/// (`None`: no limit): [`place`], then, free to start, behind the runs in
/// progress and the earlier waiting runs whose targets are free too. Runs
/// held by their target do not count ahead, so a busy server never keeps
/// the capacity idle; no more than `limit` runs ever start, since a waiting
/// run goes only when the runs ahead of it and those in progress leave it
/// room.
pub fn place_within(me: &Peer, peers: &[Peer], limit: Option<usize>) -> Place {
    let place = place(me, peers);
    let (Place::Go { .. }, Some(limit)) = (&place, limit) else {
        return place;
    };
    let others = || peers.iter().filter(|p| p.uid != me.uid);
    let active = others().filter(|p| p.active()).count();
    let ahead = others()
        .filter(|p| p.waiting && !p.discovering && p.before(me))
        .filter(|p| matches!(self::place(p, peers), Place::Go { .. }))
        .count();
    if active + ahead < limit {
        place
    } else {
        Place::Full {
            position: ahead + 1,
            limit,
        }
    }
}

/// Where `me` stands among `peers` (every other run the controller sees).
pub fn place(me: &Peer, peers: &[Peer]) -> Place {
    let overlapping: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.uid != me.uid && !p.keys.is_disjoint(&me.keys))
        .collect();
    // A run in progress holds the target (a guest of `me`'s only until it
    // has given way).
    let holders: Vec<&Peer> = overlapping.iter().copied().filter(|p| p.active()).collect();
    // The owner's runs, waiting or not, go before a guest.
    let owners_first = overlapping
        .iter()
        .any(|p| (p.active() || p.waiting) && me.guest_of(p));
    // A guest of `me`'s in progress is giving way: even an `Allow` run waits
    // for it rather than share its energy with it.
    let guest_running = holders.iter().any(|p| p.guest_of(me));
    if me.policy == ConcurrencyPolicy::Allow && !owners_first && !guest_running {
        return Place::Go {
            shared_with: names(me, &holders),
        };
    }
    // Earlier runs still waiting go first, so no run is passed over forever;
    // a guest's never do, and the owner's always do.
    let mut ahead: Vec<&Peer> = overlapping
        .iter()
        .copied()
        .filter(|p| p.waiting)
        .filter(|p| {
            me.guest_of(p)
                || (p.policy == ConcurrencyPolicy::Queue && p.before(me) && !p.guest_of(me))
        })
        .collect();
    ahead.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let waits_for = holders.first().or(ahead.first());
    match waits_for {
        None => Place::Go {
            shared_with: Vec::new(),
        },
        Some(p) => Place::Wait {
            waits_for: shown(me, p),
            position: ahead.len() + 1,
        },
    }
}

/// Whether `me`, in progress, must give way: a run of the namespace that
/// owns the part of its target it overlaps is waiting for it or running.
/// The run that gives way ends early (reason `Preempted`).
pub fn gives_way(me: &Peer, peers: &[Peer]) -> bool {
    me.active()
        && peers
            .iter()
            .filter(|p| p.uid != me.uid && (p.waiting || p.active()))
            .any(|p| me.guest_of(p))
}

/// The runs on `me`'s target that were in progress at some time since `me`
/// started (`me` is in progress): the ones it shares its target with. Runs
/// that have ended count too, so a short run beside a long one is seen
/// even when it began and ended between two looks; one that ended by the
/// time `me` started does not (a queued run starts after the one before it
/// has ended).
pub fn sharing(me: &Peer, peers: &[Peer]) -> Vec<String> {
    let Some(since) = me.started else {
        return Vec::new();
    };
    let beside: Vec<&Peer> = peers
        .iter()
        .filter(|p| p.uid != me.uid && !p.keys.is_disjoint(&me.keys))
        .filter(|p| p.started.is_some() && p.ended.is_none_or(|end| end > since))
        .collect();
    names(me, &beside)
}

/// `recorded` and `new`, sorted, without repeats, at most [`SHARED_NAMES`].
pub fn merge_shared(recorded: &[String], new: &[String]) -> Vec<String> {
    let all: BTreeSet<&String> = recorded.iter().chain(new).collect();
    all.into_iter().take(SHARED_NAMES).cloned().collect()
}

/// How `me` may name `peer`: by `namespace/name` in its own namespace; a run
/// in another namespace only as that (a tenant learns no other tenant's names).
fn shown(me: &Peer, peer: &Peer) -> String {
    let ns = |name: &str| name.split_once('/').map(|(n, _)| n.to_string());
    if ns(&me.name) == ns(&peer.name) {
        peer.name.clone()
    } else {
        ANOTHER_NAMESPACE.to_string()
    }
}

/// How a run in another namespace is named.
pub const ANOTHER_NAMESPACE: &str = "a run in another namespace";

fn names(me: &Peer, peers: &[&Peer]) -> Vec<String> {
    let mut out: Vec<String> = peers.iter().map(|p| shown(me, p)).collect();
    out.sort();
    out.dedup();
    out.truncate(SHARED_NAMES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: Option<&str>, service: Option<&str>) -> api::Target {
        serde_json::from_value(serde_json::json!({
            "url": url,
            "serviceRef": service.map(|s| serde_json::json!({"name": s})),
            "model": "m",
        }))
        .unwrap()
    }

    fn set(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_target_is_its_service_and_the_addresses_it_sends_to() {
        let svc = target(None, Some("vllm"));
        let urls = [
            "http://10.0.0.2:8000".to_string(),
            "http://10.0.0.1:8000".into(),
        ];
        assert_eq!(
            keys("llm", &svc, &urls),
            set(&[
                "endpoint 10.0.0.1:8000",
                "endpoint 10.0.0.2:8000",
                "service llm/vllm"
            ])
        );
        // The status records host:port; the keys are the same from them.
        assert_eq!(
            keys("llm", &svc, &endpoints(&urls)),
            keys("llm", &svc, &urls)
        );
        assert_eq!(endpoints(&urls), ["10.0.0.1:8000", "10.0.0.2:8000"]);
        // A URL: its host and port (the scheme's by default), lowercased,
        // without credentials or path; a Service's DNS name is that Service.
        let url = target(Some("https://user:pw@VLLM.llm.svc.cluster.local/v1"), None);
        assert_eq!(
            keys("other", &url, &[]),
            set(&[
                "endpoint vllm.llm.svc.cluster.local:443",
                "service llm/vllm"
            ])
        );
        let url = target(Some("http://vllm.llm.svc:8000"), None);
        assert!(keys("x", &url, &[]).contains("service llm/vllm"));
        let url = target(Some("http://[fd00::1]:8000/"), None);
        assert_eq!(keys("x", &url, &[]), set(&["endpoint [fd00::1]:8000"]));
        // Loopback is each pod's own: no key.
        for u in [
            "http://127.0.0.1:9",
            "http://localhost:8000",
            "http://[::1]:80",
        ] {
            assert!(keys("x", &target(Some(u), None), &[]).is_empty(), "{u}");
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// A run created at `created`; `active`: launched then, not ended.
    fn peer(name: &str, created: i64, active: bool, keys: &[&str]) -> Peer {
        Peer {
            name: name.into(),
            uid: name.into(),
            created: Some(at(created)),
            policy: ConcurrencyPolicy::Queue,
            started: active.then(|| at(created)),
            ended: None,
            waiting: !active,
            discovering: false,
            keys: set(keys),
            owned: BTreeSet::new(),
        }
    }

    fn started(p: &Peer, s: i64) -> Peer {
        Peer {
            started: Some(at(s)),
            waiting: false,
            ..p.clone()
        }
    }

    #[test]
    fn a_run_waits_for_the_run_in_progress_and_those_queued_before_it() {
        let running = peer("ns/a", 0, true, &["service ns/vllm"]);
        let queued = peer(
            "ns/b",
            1,
            false,
            &["service ns/vllm", "endpoint 10.0.0.1:80"],
        );
        let me = peer("ns/c", 2, false, &["endpoint 10.0.0.1:80"]);
        let elsewhere = peer("ns/d", 0, true, &["service ns/other"]);
        let peers = [
            running.clone(),
            queued.clone(),
            me.clone(),
            elsewhere.clone(),
        ];
        // b overlaps a by the Service: it waits for a, first in the queue.
        assert_eq!(
            place(&queued, &peers),
            Place::Wait {
                waits_for: "ns/a".into(),
                position: 1
            }
        );
        // c overlaps only b (by an address): it waits behind b.
        assert_eq!(
            place(&me, &peers),
            Place::Wait {
                waits_for: "ns/b".into(),
                position: 2
            }
        );
        // a ends: b goes; c now waits for b, which is in progress.
        let b_started = started(&queued, 3);
        let peers = [b_started.clone(), me.clone(), elsewhere.clone()];
        assert_eq!(
            place(&b_started, &[me.clone(), elsewhere.clone()]),
            Place::Go {
                shared_with: vec![]
            }
        );
        assert_eq!(
            place(&me, &peers),
            Place::Wait {
                waits_for: "ns/b".into(),
                position: 1
            }
        );
        // A run on another target never waits.
        assert_eq!(
            place(&elsewhere, &[running, queued, me]),
            Place::Go {
                shared_with: vec![]
            }
        );
    }

    #[test]
    fn the_order_is_the_runs_creation_then_their_names() {
        // Created in the same second: the name decides, the same way for both.
        let x = peer("ns/x", 5, false, &["service ns/vllm"]);
        let y = peer("ns/y", 5, false, &["service ns/vllm"]);
        let both = [x.clone(), y.clone()];
        assert_eq!(
            place(&x, &both),
            Place::Go {
                shared_with: vec![]
            }
        );
        // y is second in the queue: x, waiting too, is first.
        assert!(matches!(place(&y, &both), Place::Wait { position: 2, .. }));
        // An older run that allows overlap is not queued ahead of anyone.
        let allow = Peer {
            policy: ConcurrencyPolicy::Allow,
            ..peer("ns/a", 0, false, &["service ns/vllm"])
        };
        assert_eq!(
            place(&x, &[allow, y]),
            Place::Go {
                shared_with: vec![]
            }
        );
    }

    #[test]
    fn a_run_that_allows_overlap_starts_and_names_whom_it_shares_with() {
        let running = peer("ns/a", 0, true, &["service ns/vllm"]);
        let waiting = peer("ns/b", 1, false, &["service ns/vllm"]);
        let me = Peer {
            policy: ConcurrencyPolicy::Allow,
            ..peer("ns/c", 2, false, &["service ns/vllm"])
        };
        let peers = [running.clone(), waiting.clone()];
        assert_eq!(
            place(&me, &peers),
            Place::Go {
                shared_with: vec!["ns/a".into()]
            }
        );
        // Once it runs, the run it overlaps sees it too; the waiting one
        // shares nothing yet.
        let me_running = started(&me, 2);
        assert_eq!(
            sharing(&running, &[me_running.clone(), waiting.clone()]),
            ["ns/c"]
        );
        assert!(sharing(&running, std::slice::from_ref(&waiting)).is_empty());
        // Seen after it ended too, when it ended after `running` started;
        // not when it had ended before.
        let ended = |end: i64| Peer {
            ended: Some(at(end)),
            ..me_running.clone()
        };
        assert_eq!(sharing(&running, &[ended(4)]), ["ns/c"]);
        let later = started(&running, 4);
        assert!(sharing(&later, &[ended(4)]).is_empty());
        // A queued run waits for a run in progress that allowed overlap.
        assert!(matches!(
            place(&waiting, &[me_running]),
            Place::Wait { waits_for, .. } if waits_for == "ns/c"
        ));
    }

    #[test]
    fn runs_in_other_namespaces_are_not_named() {
        let theirs = peer("team-b/secret-project", 0, true, &["service llm/vllm"]);
        let mine = peer("team-a/r", 1, false, &["service llm/vllm"]);
        assert_eq!(
            place(&mine, std::slice::from_ref(&theirs)),
            Place::Wait {
                waits_for: ANOTHER_NAMESPACE.into(),
                position: 1
            }
        );
        let allowed = Peer {
            policy: ConcurrencyPolicy::Allow,
            ..mine
        };
        assert_eq!(
            place(&allowed, &[theirs]),
            Place::Go {
                shared_with: vec![ANOTHER_NAMESPACE.into()]
            }
        );
    }

    #[test]
    fn what_a_run_owns_is_what_comes_from_its_own_namespace() {
        let svc = target(None, Some("vllm"));
        let k = keys("a", &svc, &["http://10.0.0.1:8000".into()]);
        assert_eq!(owned("a", &svc, &k, &["10.0.0.1:8000".into()]), k);
        // Its Service resolved to an address no pod of its own holds (an
        // EndpointSlice written by hand): the Service is its, the address not.
        assert_eq!(owned("a", &svc, &k, &[]), set(&["service a/vllm"]));
        // A URL naming a Service of its own namespace: the Service and the name.
        let url = target(Some("http://vllm.a.svc:8000"), None);
        let k = keys("a", &url, &[]);
        assert_eq!(owned("a", &url, &k, &[]), k);
        // Another namespace's Service, its pods' addresses, an external
        // host: nothing.
        assert!(owned("b", &url, &keys("b", &url, &[]), &[]).is_empty());
        let ip = target(Some("http://10.0.0.1:8000"), None);
        assert!(owned("b", &ip, &keys("b", &ip, &[]), &[]).is_empty());
    }

    /// A run of `ns` on A's Service `vllm` (resolved to 10.0.0.1:8000) by
    /// `how`: "service" (its own), "dns" or "ip" (from another namespace).
    fn on_a(name: &str, created: i64, active: bool, how: &str) -> Peer {
        let ns = name.split_once('/').unwrap().0;
        let t = match how {
            "service" => target(None, Some("vllm")),
            "dns" => target(Some("http://vllm.a.svc:8000"), None),
            _ => target(Some("http://10.0.0.1:8000"), None),
        };
        let keys = keys(ns, &t, &["10.0.0.1:8000".into()]);
        // A's own Service resolves to A's pod; B's, by hand, to the same.
        let verified: Vec<String> = match (how, ns) {
            ("service", "a") => vec!["10.0.0.1:8000".into()],
            _ => vec![],
        };
        Peer {
            owned: owned(ns, &t, &keys, &verified),
            keys,
            ..peer(name, created, active, &[])
        }
    }

    #[test]
    fn a_run_from_another_namespace_never_holds_the_owner_s_runs() {
        // By A's Service name, by A's pod address, or through B's own Service
        // whose EndpointSlice B wrote by hand to A's pod address.
        for how in ["dns", "ip", "service"] {
            // B's long run, created first and running, on A's target.
            let guest = on_a("b/hold", 0, true, how);
            let owner = on_a("a/mine", 5, false, "service");
            // A's run waits only while B's gives way...
            assert!(matches!(
                place(&owner, std::slice::from_ref(&guest)),
                Place::Wait { .. }
            ));
            assert!(gives_way(&guest, std::slice::from_ref(&owner)), "{how}");
            // ...and B's queued runs never go ahead of A's.
            let queued_guest = on_a("b/early", 0, false, how);
            assert_eq!(
                place(&owner, std::slice::from_ref(&queued_guest)),
                Place::Go {
                    shared_with: vec![]
                },
                "{how}"
            );
            // The guest waits for the owner's run, waiting or running, even
            // with Allow (which would withhold the owner's energy).
            let allow = Peer {
                policy: ConcurrencyPolicy::Allow,
                ..queued_guest.clone()
            };
            // (Behind a waiting run of A's it is second; behind a running one, first.)
            for (o, position) in [(owner.clone(), 2), (started(&owner, 6), 1)] {
                assert_eq!(
                    place(&allow, std::slice::from_ref(&o)),
                    Place::Wait {
                        waits_for: ANOTHER_NAMESPACE.into(),
                        position
                    },
                    "{how}"
                );
                assert!(matches!(
                    place(&queued_guest, std::slice::from_ref(&o)),
                    Place::Wait { .. }
                ));
            }
            // With no run of A's about, the guest runs and keeps running.
            assert_eq!(
                place(&queued_guest, &[]),
                Place::Go {
                    shared_with: vec![]
                }
            );
            assert!(!gives_way(&guest, &[]));
            let ended = Peer {
                ended: Some(at(9)),
                ..started(&owner, 6)
            };
            assert!(!gives_way(&guest, &[ended]));
        }
        // The owner's Allow run does not start beside the guest giving way
        // (it would withhold its own energy): it waits for it.
        let guest = on_a("b/hold", 0, true, "ip");
        let allowing = Peer {
            policy: ConcurrencyPolicy::Allow,
            ..on_a("a/allow", 5, false, "service")
        };
        assert!(matches!(
            place(&allowing, std::slice::from_ref(&guest)),
            Place::Wait { .. }
        ));
        // Two runs of one namespace keep the order of creation.
        let first = on_a("a/first", 0, true, "service");
        let second = on_a("a/second", 1, false, "dns");
        assert!(matches!(
            place(&second, std::slice::from_ref(&first)),
            Place::Wait { .. }
        ));
        assert!(!gives_way(&first, &[second]));
        // Two guests of A's from different namespaces queue as before.
        let b = on_a("b/x", 0, true, "ip");
        let c = on_a("c/y", 1, false, "ip");
        assert!(matches!(
            place(&c, std::slice::from_ref(&b)),
            Place::Wait { .. }
        ));
        assert!(!gives_way(&b, &[c]));
    }

    #[test]
    fn no_more_runs_are_measured_at_once_than_the_installer_allows() {
        let running = |n: &str, k: &str| peer(n, 0, true, &[k]);
        let waiting = |n: &str, at: i64, k: &str| peer(n, at, false, &[k]);
        let peers = vec![
            running("a/1", "service a/x"),
            running("b/2", "service b/y"),
            waiting("c/3", 1, "service c/z"),
            // Held by its own target: it does not count ahead.
            waiting("a/4", 2, "service a/x"),
            waiting("d/5", 3, "service d/w"),
        ];
        let me = |n: &str| peers.iter().find(|p| p.name == n).unwrap().clone();
        // A run still looking its target up holds no place in the limit.
        let mut looking = peers.clone();
        looking.push(Peer {
            discovering: true,
            ..waiting("x/0", 0, "service x/none")
        });
        assert_eq!(
            place_within(&me("d/5"), &looking, Some(3)),
            place_within(&me("d/5"), &peers, Some(3))
        );
        // No limit: every free target goes.
        assert!(matches!(
            place_within(&me("d/5"), &peers, None),
            Place::Go { .. }
        ));
        // Room for three: c/3 goes first; d/5 waits behind it, a/4 for its target.
        assert!(matches!(
            place_within(&me("c/3"), &peers, Some(3)),
            Place::Go { .. }
        ));
        assert_eq!(
            place_within(&me("d/5"), &peers, Some(3)),
            Place::Full {
                position: 2,
                limit: 3
            }
        );
        assert!(matches!(
            place_within(&me("a/4"), &peers, Some(3)),
            Place::Wait { .. }
        ));
        // Room for four: both go, never a fifth.
        assert!(matches!(
            place_within(&me("d/5"), &peers, Some(4)),
            Place::Go { .. }
        ));
        let mut more = peers.clone();
        more.push(waiting("e/6", 4, "service e/v"));
        assert!(matches!(
            place_within(&more.last().unwrap().clone(), &more, Some(4)),
            Place::Full { position: 3, .. }
        ));
        // A run in progress ends: its target frees a/4, which came before
        // d/5 and now goes first; d/5 goes once there is room beside it.
        let ended = Peer {
            ended: Some(at(5)),
            ..me("a/1")
        };
        let after: Vec<Peer> = peers
            .iter()
            .map(|p| {
                if p.name == "a/1" {
                    ended.clone()
                } else {
                    p.clone()
                }
            })
            .collect();
        assert!(matches!(
            place_within(&me("a/4"), &after, Some(3)),
            Place::Go { .. }
        ));
        assert_eq!(
            place_within(&me("d/5"), &after, Some(3)),
            Place::Full {
                position: 3,
                limit: 3
            }
        );
        assert!(matches!(
            place_within(&me("d/5"), &after, Some(4)),
            Place::Go { .. }
        ));
    }

    #[test]
    fn what_was_shared_is_kept_and_bounded() {
        let recorded = vec!["ns/b".to_string()];
        assert_eq!(
            merge_shared(&recorded, &["ns/a".into(), "ns/b".into()]),
            ["ns/a", "ns/b"]
        );
        let many: Vec<String> = (0..20).map(|i| format!("ns/r{i:02}")).collect();
        assert_eq!(merge_shared(&recorded, &many).len(), SHARED_NAMES);
    }
}
