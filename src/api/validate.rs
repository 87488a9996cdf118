//! Validation the controller repeats before acting on a run.
//!
//! Three layers, in the order the API server applies them: the OpenAPI schema of the
//! CRD (types, ranges, enums, patterns), its CEL rules, then checks that neither can
//! express (regular expressions that must compile). The first two run against the
//! schema generated from our own types, so the controller and the API server cannot
//! disagree; a run admitted under an older CRD still gets a clear message instead of
//! a failure deep in the load generator.

use std::sync::LazyLock;

use serde_json::Value;

use super::BenchmarkRun;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Dotted path from the object root, e.g. `spec.load.concurrency`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Everything wrong with a spec, for the `Failed` condition's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid spec: {}", join(.0))]
pub struct InvalidSpec(pub Vec<FieldError>);

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl InvalidSpec {
    fn one(field: &str, message: String) -> Self {
        InvalidSpec(vec![FieldError {
            field: field.into(),
            message,
        }])
    }
}

/// The CRD's root schema (for CEL) and its compiled `spec` schema, built once.
struct Schemas {
    root: Value,
    spec: jsonschema::Validator,
}

static SCHEMAS: LazyLock<Result<Schemas, String>> = LazyLock::new(|| {
    let crd = serde_json::to_value(super::crd()).map_err(|e| e.to_string())?;
    let root = crd
        .pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .ok_or("the CRD has no openAPIV3Schema")?;
    let spec_schema = root.pointer("/properties/spec").ok_or("no spec schema")?;
    let spec = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(spec_schema)
        .map_err(|e| e.to_string())?;
    Ok(Schemas { root, spec })
});

/// Validates a typed run: the controller's check before it acts.
pub fn validate(run: &BenchmarkRun) -> Result<(), InvalidSpec> {
    let value = serde_json::to_value(run)
        .map_err(|e| InvalidSpec::one("spec", format!("does not serialize: {e}")))?;
    validate_json(&value).map(drop)
}

/// Validates a run as JSON the way admission would, plus the checks admission cannot
/// make, and returns it typed. Every problem found is reported, not just the first.
pub fn validate_json(object: &Value) -> Result<BenchmarkRun, InvalidSpec> {
    let schemas = SCHEMAS
        .as_ref()
        .map_err(|e| InvalidSpec::one("spec", format!("internal error in the CRD schema: {e}")))?;
    let spec = object.get("spec").unwrap_or(&Value::Null);
    let mut errors: Vec<FieldError> = schemas
        .spec
        .iter_errors(spec)
        .map(|e| FieldError {
            field: dotted("spec", &e.instance_path().to_string()),
            message: e.to_string(),
        })
        .collect();
    if let Some(spec_schema) = schemas.root.pointer("/properties/spec") {
        unknown_fields(spec_schema, spec, "spec", &mut errors);
    }
    if let Err(cel) = kube::core::cel::Validator::new().validate(&schemas.root, object, None) {
        errors.extend(cel.into_iter().map(|e| FieldError {
            field: e.field_path,
            message: e.message,
        }));
    }
    if !errors.is_empty() {
        return Err(InvalidSpec(errors));
    }
    let run: BenchmarkRun = serde_json::from_value(object.clone())
        .map_err(|e| InvalidSpec::one("spec", e.to_string()))?;
    pattern_errors(&run, &mut errors);
    if errors.is_empty() {
        Ok(run)
    } else {
        Err(InvalidSpec(errors))
    }
}

/// Fields the schema does not know. The API server drops them silently (or
/// with a warning); `kubectl apply`'s strict field validation refuses them, and
/// so does this check: a field that would vanish (a pod template's
/// `securityContext`, say) must not read as accepted.
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<FieldError>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(fields) => {
            let known = schema.get("properties").and_then(Value::as_object);
            let rest = schema.get("additionalProperties").filter(|v| v.is_object());
            for (name, v) in fields {
                match (known.and_then(|k| k.get(name)), rest) {
                    (Some(s), _) | (None, Some(s)) => {
                        unknown_fields(s, v, &format!("{path}.{name}"), out);
                    }
                    // Worded as the API server's strict field validation.
                    (None, None) if known.is_some() => out.push(FieldError {
                        field: path.to_string(),
                        message: format!("unknown field \"{path}.{name}\""),
                    }),
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// `spec` + `/load/concurrency` → `spec.load.concurrency`.
fn dotted(root: &str, pointer: &str) -> String {
    std::iter::once(root)
        .chain(pointer.split('/').filter(|s| !s.is_empty()))
        .collect::<Vec<_>>()
        .join(".")
}

fn pattern_errors(run: &BenchmarkRun, out: &mut Vec<FieldError>) {
    // HTTP header names are case-insensitive; CEL compares them exactly.
    let target = &run.spec.target;
    let mut seen = std::collections::BTreeSet::new();
    let names = target
        .headers
        .keys()
        .chain(target.headers_from.iter().map(|h| &h.name));
    for name in names {
        if !seen.insert(name.to_ascii_lowercase()) {
            out.push(FieldError {
                field: "spec.target.headersFrom".into(),
                message: format!(
                    "header {name} is given twice (header names are case-insensitive)"
                ),
            });
        }
    }
    // Admission caps the keys; the size needs the whole value.
    if let Some(extra) = &run.spec.load.extra_inputs {
        let size = serde_json::to_string(extra).map_or(0, |s| s.len());
        if size > super::load::MAX_EXTRA_INPUTS_BYTES {
            out.push(FieldError {
                field: "spec.load.extraInputs".into(),
                message: format!(
                    "{size} bytes of JSON, more than the {} allowed",
                    super::load::MAX_EXTRA_INPUTS_BYTES
                ),
            });
        }
    }
    let server = &run.spec.telemetry.server;
    for (list, name) in [(&server.include, "include"), (&server.exclude, "exclude")] {
        for (i, pattern) in list.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                out.push(FieldError {
                    field: format!("spec.telemetry.server.{name}[{i}]"),
                    message: format!("not a valid regular expression: {e}"),
                });
            }
        }
    }
    // A discovery selector is a tenant's word for which pods the controller
    // lists and scrapes: one that names nothing matches nearly every pod.
    let telemetry = &run.spec.telemetry;
    for (selector, field) in [
        (&telemetry.gpu.selector, "spec.telemetry.gpu.selector"),
        (&telemetry.server.selector, "spec.telemetry.server.selector"),
    ] {
        if selector.as_ref().is_some_and(selects_nearly_everything) {
            out.push(FieldError {
                field: field.into(),
                message: "selects nearly every pod: name at least one label (a matchLabels entry, or an In or Exists expression), or leave the selector out for the default".into(),
            });
        }
    }
}

/// A selector with no label it requires: empty, or only `NotIn` and
/// `DoesNotExist` expressions (which every unrelated pod satisfies).
pub fn selects_nearly_everything(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> bool {
    let labels = selector
        .match_labels
        .as_ref()
        .is_some_and(|m| !m.is_empty());
    let requires = selector
        .match_expressions
        .iter()
        .flatten()
        .any(|e| matches!(e.operator.as_str(), "In" | "Exists"));
    !labels && !requires
}

#[cfg(test)]
mod tests;
