//! Which GPU serves what: assignments of GPUs to inference servers (from
//! `--serve` flags or from the pods on this node), and the load read from a
//! server's `/metrics`. Pure, apart from the pod listing in [`super::run`].

use std::collections::BTreeSet;

use crate::scrape::{Entry, Format, Parser};

use super::model::Load;

pub use crate::expose::dcgm::PodRef;

/// GPUs serving one inference server.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub gpus: Vec<usize>,
    /// The server's metrics URL.
    pub url: String,
    pub pod: Option<PodRef>,
}

/// Parses `--serve GPUS=URL[@NAMESPACE/POD/CONTAINER]`, GPUS a list of
/// indices and ranges (`0`, `0-3`, `0,2`), for a node with `n` GPUs.
pub fn parse_serve(s: &str, n: usize) -> Result<Assignment, String> {
    let (gpus, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("--serve {s:?}: expected GPUS=URL[@NAMESPACE/POD/CONTAINER]"))?;
    let mut set = BTreeSet::new();
    for part in gpus.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = match (a.trim().parse(), b.trim().parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => {
                return Err(format!(
                    "--serve {s:?}: {part:?} is not a GPU index or range"
                ));
            }
        };
        if b >= n {
            return Err(format!(
                "--serve {s:?}: GPU {b} does not exist (--gpus {n})"
            ));
        }
        set.extend(a..=b);
    }
    let (url, pod) = match rest.rsplit_once('@') {
        Some((url, pod)) => {
            let parts: Vec<&str> = pod.split('/').collect();
            let [namespace, name, container] = parts[..] else {
                return Err(format!(
                    "--serve {s:?}: the pod must be NAMESPACE/POD/CONTAINER, not {pod:?}"
                ));
            };
            let pod = PodRef {
                namespace: namespace.into(),
                name: name.into(),
                container: container.into(),
            };
            (url, Some(pod))
        }
        None => (rest, None),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("--serve {s:?}: {url:?} is not an http(s) URL"));
    }
    Ok(Assignment {
        gpus: set.into_iter().collect(),
        url: url.to_string(),
        pod,
    })
}

/// A pod on this node that holds GPUs.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    pub pod: PodRef,
    pub gpus: usize,
    pub url: String,
}

/// Gives every claim GPUs: claims already placed keep theirs (a pod's GPUs do
/// not move while it lives), new ones take the lowest free indices in the
/// order given. Claims that do not fit are returned as the second value.
pub fn place(current: &[Assignment], claims: &[Claim], n: usize) -> (Vec<Assignment>, Vec<PodRef>) {
    let mut out: Vec<Assignment> = Vec::new();
    let mut used = vec![false; n];
    let mut pending = Vec::new();
    for c in claims {
        match current
            .iter()
            .find(|a| a.pod.as_ref() == Some(&c.pod) && a.gpus.len() == c.gpus)
        {
            Some(a) => {
                for &g in &a.gpus {
                    used[g] = true;
                }
                out.push(Assignment {
                    url: c.url.clone(),
                    ..a.clone()
                });
            }
            None => pending.push(c),
        }
    }
    let mut unplaced = Vec::new();
    for c in pending {
        let free: Vec<usize> = (0..n).filter(|&g| !used[g]).take(c.gpus).collect();
        if free.len() < c.gpus {
            unplaced.push(c.pod.clone());
            continue;
        }
        for &g in &free {
            used[g] = true;
        }
        out.push(Assignment {
            gpus: free,
            url: c.url.clone(),
            pod: Some(c.pod.clone()),
        });
    }
    out.sort_by_key(|a| a.gpus.first().copied());
    (out, unplaced)
}

/// What a server's page says about its load.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    pub running: f64,
    pub kv_usage: f64,
    pub prompt_tokens: f64,
    pub generation_tokens: f64,
}

/// Reads vLLM's (V0 and V1) and SGLang's metric names; `None` when the page has
/// none of the running-requests gauges, so it is not an inference server we know.
pub fn read(body: &[u8], format: Format) -> Option<Reading> {
    let mut r = Reading::default();
    let mut known = false;
    for e in Parser::new(body, format) {
        let Entry::Sample(s) = e else { continue };
        if !s.value.is_finite() {
            continue;
        }
        match s.name {
            "vllm:num_requests_running" | "sglang:num_running_reqs" => {
                known = true;
                r.running += s.value;
            }
            "vllm:kv_cache_usage_perc" | "vllm:gpu_cache_usage_perc" | "sglang:token_usage" => {
                r.kv_usage = r.kv_usage.max(s.value);
            }
            "vllm:prompt_tokens_total" | "sglang:prompt_tokens_total" => {
                r.prompt_tokens += s.value;
            }
            "vllm:generation_tokens_total" | "sglang:generation_tokens_total" => {
                r.generation_tokens += s.value;
            }
            _ => {}
        }
    }
    known.then_some(r)
}

/// Turns successive readings of one server into loads (token rates from the
/// counters' deltas; a counter that went down restarted, and counts from zero).
#[derive(Debug, Default)]
pub struct Watch {
    last: Option<(f64, Reading)>,
}

impl Watch {
    pub fn update(&mut self, t: f64, r: Reading) -> Load {
        let rate = |now: f64, before: f64, dt: f64| {
            let d = if now >= before { now - before } else { now };
            if dt > 0.0 { d / dt } else { 0.0 }
        };
        let (p, g) = match self.last {
            Some((t0, r0)) => (
                rate(r.prompt_tokens, r0.prompt_tokens, t - t0),
                rate(r.generation_tokens, r0.generation_tokens, t - t0),
            ),
            None => (0.0, 0.0),
        };
        self.last = Some((t, r));
        Load {
            running: r.running,
            kv_usage: r.kv_usage,
            prompt_tokens_per_s: p,
            generation_tokens_per_s: g,
            multi_gpu: false,
            serving: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_flags_parse_with_ranges_and_pods() {
        let a = parse_serve("0-1,3=http://10.0.0.5:8000/metrics@demo/llm-0/vllm", 4).unwrap();
        assert_eq!(a.gpus, vec![0, 1, 3]);
        assert_eq!(a.url, "http://10.0.0.5:8000/metrics");
        assert_eq!(a.pod.unwrap().container, "vllm");
        let a = parse_serve("2=http://h:1/metrics", 4).unwrap();
        assert_eq!((a.gpus, a.pod), (vec![2], None));
        for (bad, why) in [
            ("http://h/metrics", "GPUS=URL"),
            ("4=http://h/metrics", "does not exist"),
            ("a=http://h/metrics", "not a GPU index"),
            ("0=h:1/metrics", "not an http(s) URL"),
            ("0=http://h/m@ns/pod", "NAMESPACE/POD/CONTAINER"),
        ] {
            let e = parse_serve(bad, 4).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    fn claim(name: &str, gpus: usize) -> Claim {
        Claim {
            pod: PodRef {
                namespace: "ns".into(),
                name: name.into(),
                container: "c".into(),
            },
            gpus,
            url: format!("http://{name}/metrics"),
        }
    }

    #[test]
    fn placement_is_stable_and_fills_the_lowest_free_gpus() {
        let (a, none) = place(&[], &[claim("a", 2), claim("b", 1)], 4);
        assert!(none.is_empty());
        assert_eq!(
            a.iter().map(|x| x.gpus.clone()).collect::<Vec<_>>(),
            [vec![0, 1], vec![2]]
        );
        // a goes away, c comes: b keeps GPU 2, c takes 0 and 1.
        let (a2, _) = place(&a, &[claim("b", 1), claim("c", 2)], 4);
        let of = |n: &str| {
            a2.iter()
                .find(|x| x.pod.as_ref().unwrap().name == n)
                .unwrap()
                .gpus
                .clone()
        };
        assert_eq!((of("b"), of("c")), (vec![2], vec![0, 1]));
        // No room: reported, not placed.
        let (a3, none) = place(&a2, &[claim("b", 1), claim("c", 2), claim("d", 2)], 4);
        assert_eq!(a3.len(), 2);
        assert_eq!(none[0].name, "d");
    }

    #[test]
    fn readings_from_vllm_and_sglang_pages_and_rates() {
        let fixtures = std::env::var("BENCHRUN_FIXTURES")
            .unwrap_or_else(|_| "../shared/fixtures/metrics".into());
        for name in ["datadog-vllm-v0-v1-mixed.txt", "datadog-sglang-v0.5.10.txt"] {
            let Ok(body) = std::fs::read(format!("{fixtures}/{name}")) else {
                continue;
            };
            let r = read(&body, Format::Prometheus).unwrap_or_else(|| panic!("{name}"));
            assert!(r.prompt_tokens > 0.0, "{name}: {r:?}");
        }
        assert_eq!(read(b"DCGM_FI_DEV_GPU_UTIL 3\n", Format::Prometheus), None);
        let page = |run: u32, p: u32, g: u32| {
            format!(
                "vllm:num_requests_running{{model_name=\"m\"}} {run}\nvllm:prompt_tokens_total {p}\nvllm:generation_tokens_total {g}\nvllm:kv_cache_usage_perc 0.25\n"
            )
        };
        let mut w = Watch::default();
        let l = w.update(
            0.0,
            read(page(2, 100, 10).as_bytes(), Format::Prometheus).unwrap(),
        );
        assert_eq!(
            (l.running, l.prompt_tokens_per_s, l.kv_usage),
            (2.0, 0.0, 0.25)
        );
        let l = w.update(
            0.5,
            read(page(3, 300, 60).as_bytes(), Format::Prometheus).unwrap(),
        );
        assert_eq!(
            (l.prompt_tokens_per_s, l.generation_tokens_per_s),
            (400.0, 100.0)
        );
        // A restarted server: counts from zero, never a negative rate.
        let l = w.update(
            1.0,
            read(page(0, 50, 5).as_bytes(), Format::Prometheus).unwrap(),
        );
        assert_eq!(
            (l.prompt_tokens_per_s, l.generation_tokens_per_s),
            (100.0, 10.0)
        );
    }
}
