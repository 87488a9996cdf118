//! From a container spec to a process: which program an image stands for, its
//! argv with `$(VAR)` references expanded, and its environment. Pure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};

/// Image → program table: an image whose repository's last path segment equals
/// a key runs that program (`ghcr.io/benchrun/benchrun:0.1` → `benchrun`).
#[derive(Clone, Debug, Default)]
pub struct Images(pub BTreeMap<String, PathBuf>);

impl Images {
    pub fn program(&self, image: &str) -> Option<(&str, &PathBuf)> {
        let repo = image.split('@').next().unwrap_or(image);
        // A tag follows the last ':' only when no '/' follows it (a registry port does).
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        let last = repo.rsplit('/').next().unwrap_or(repo);
        self.0.get_key_value(last).map(|(k, v)| (k.as_str(), v))
    }
}

/// The argv of a container: the image's program, then the container's command
/// (whose first word must name that program, as an image entrypoint would) or
/// nothing, then its args; `$(VAR)` expanded from `env`.
pub fn argv(
    images: &Images,
    container: &Container,
    env: &[(String, String)],
) -> Result<(PathBuf, Vec<String>), String> {
    let image = container.image.as_deref().unwrap_or_default();
    let (name, program) = images.program(image).ok_or_else(|| {
        format!(
            "the test kubelet has no program for image {image:?} (it runs: {})",
            images.0.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut words: Vec<String> = Vec::new();
    if let Some(command) = container.command.as_ref().filter(|c| !c.is_empty()) {
        let first = command[0].rsplit('/').next().unwrap_or(&command[0]);
        if first != name {
            return Err(format!(
                "the test kubelet runs image {image:?} as {name}; command {:?} names another program",
                command[0]
            ));
        }
        words.extend(command[1..].iter().cloned());
    }
    words.extend(container.args.iter().flatten().cloned());
    let words = words.iter().map(|w| expand(w, env)).collect();
    Ok((program.clone(), words))
}

/// Kubernetes' `$(VAR)` expansion: defined names are replaced, undefined ones
/// are left as written, and `$$` escapes a `$`.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The ConfigMaps and Secrets a pod's env refers to, fetched beforehand.
#[derive(Default, Debug)]
pub struct EnvSources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
}

/// Facts about the running pod that the downward API exposes.
pub struct PodFacts<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// The container's environment in kubelet order: `envFrom`, then `env` (later
/// entries win, and may reference earlier ones with `$(VAR)`).
pub fn environment(
    container: &Container,
    facts: &PodFacts<'_>,
    sources: &EnvSources,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, name, optional, kind) = if let Some(cm) = &from.config_map_ref {
            (
                sources.config_maps.get(&cm.name),
                &cm.name,
                cm.optional,
                "ConfigMap",
            )
        } else if let Some(s) = &from.secret_ref {
            (sources.secrets.get(&s.name), &s.name, s.optional, "Secret")
        } else {
            continue;
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    set(&mut env, format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional == Some(true) => {}
            None => return Err(format!("{kind} {name:?} not found")),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                Some(field(facts, &f.field_path)?)
            } else if let Some(r) = &from.config_map_key_ref {
                lookup(
                    &sources.config_maps,
                    &r.name,
                    &r.key,
                    r.optional,
                    "ConfigMap",
                )?
            } else if let Some(r) = &from.secret_key_ref {
                lookup(&sources.secrets, &r.name, &r.key, r.optional, "Secret")?
            } else {
                // resourceFieldRef: the fixture enforces no limits; leave unset.
                None
            }
        } else {
            Some(expand(var.value.as_deref().unwrap_or_default(), &env))
        };
        if let Some(value) = value {
            set(&mut env, var.name.clone(), value);
        }
    }
    Ok(env)
}

fn lookup(
    all: &BTreeMap<String, BTreeMap<String, String>>,
    name: &str,
    key: &str,
    optional: Option<bool>,
    kind: &str,
) -> Result<Option<String>, String> {
    match all.get(name).and_then(|d| d.get(key)) {
        Some(v) => Ok(Some(v.clone())),
        None if optional == Some(true) => Ok(None),
        None => Err(format!("couldn't find key {key} in {kind} {name:?}")),
    }
}

fn field(facts: &PodFacts<'_>, path: &str) -> Result<String, String> {
    let meta = &facts.pod.metadata;
    let spec = facts.pod.spec.as_ref();
    let from_map = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let bracket = |p: &str, prefix: &str| {
        p.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        p => {
            if let Some(k) = bracket(p, "metadata.labels") {
                from_map(&meta.labels, &k)
            } else if let Some(k) = bracket(p, "metadata.annotations") {
                from_map(&meta.annotations, &k)
            } else {
                return Err(format!("unsupported fieldRef {p:?}"));
            }
        }
    })
}

/// Without a mount namespace a file cannot appear at a container's mount
/// path: every environment value that names a path under one of the
/// container's ConfigMap mounts is pointed at the directory the volume was
/// written to instead (`mounts`: volume name → that directory).
pub fn relocate(
    container: &Container,
    mounts: &BTreeMap<String, PathBuf>,
    env: &mut [(String, String)],
) {
    for m in container.volume_mounts.iter().flatten() {
        let Some(local) = mounts.get(&m.name) else {
            continue;
        };
        let at = m.mount_path.trim_end_matches('/');
        for (_, value) in env.iter_mut() {
            if let Some(rest) = value.strip_prefix(at)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                *value = format!("{}{rest}", local.display());
            }
        }
    }
}

/// ConfigMap and Secret names the containers' env refers to.
pub fn referenced(containers: &[Container]) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (BTreeMap::new(), BTreeMap::new());
    for c in containers {
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.insert(r.name.clone(), ());
            }
            if let Some(r) = &f.secret_ref {
                secrets.insert(r.name.clone(), ());
            }
        }
        for v in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &v.config_map_key_ref {
                cms.insert(r.name.clone(), ());
            }
            if let Some(r) = &v.secret_key_ref {
                secrets.insert(r.name.clone(), ());
            }
        }
    }
    (cms.into_keys().collect(), secrets.into_keys().collect())
}

#[cfg(test)]
mod tests;
