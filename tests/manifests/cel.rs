//! The CRDs' own CEL rules (`x-kubernetes-validations`), evaluated on our objects the way
//! an API server does at creation: each rule with `self` bound to the value at its schema
//! node. Transition rules (those reading `oldSelf`) apply to updates only and are skipped.

use serde_json::Value;

/// One rule that did not hold (or could not be evaluated), with where and why.
#[derive(Debug)]
pub(super) struct Violation {
    pub(super) path: String,
    pub(super) rule: String,
    pub(super) detail: String,
}

/// Every creation rule of `schema` on `v`, recursively; the rules evaluated are counted
/// in `checked`.
pub(super) fn violations(
    v: &Value,
    schema: &Value,
    path: &str,
    checked: &mut usize,
    out: &mut Vec<Violation>,
) {
    for r in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = r["rule"].as_str().expect("a rule is a string");
        if rule.contains("oldSelf") {
            continue;
        }
        *checked += 1;
        let message = r["message"].as_str().unwrap_or(rule);
        match evaluate(rule, v) {
            Ok(true) => {}
            Ok(false) => out.push(Violation {
                path: path.to_owned(),
                rule: rule.to_owned(),
                detail: message.to_owned(),
            }),
            Err(e) => out.push(Violation {
                path: path.to_owned(),
                rule: rule.to_owned(),
                detail: format!("not evaluated: {e}"),
            }),
        }
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let s = schema["properties"]
                    .get(k)
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(s) = s {
                    violations(child, s, &format!("{path}.{k}"), checked, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                violations(
                    item,
                    &schema["items"],
                    &format!("{path}[{i}]"),
                    checked,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// The violations, one line each: where, the rule, and the CRD's message or the error.
pub(super) fn describe(out: &[Violation]) -> String {
    out.iter()
        .map(|v| format!("{}: {} ({})", v.path, v.rule, v.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `rule` with `self` = `v`.
fn evaluate(rule: &str, v: &Value) -> Result<bool, String> {
    let program = cel_interpreter::Program::compile(rule).map_err(|e| e.to_string())?;
    let mut ctx = cel_interpreter::Context::default();
    ctx.add_variable(
        "self",
        cel_interpreter::to_value(v).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    match program.execute(&ctx).map_err(|e| e.to_string())? {
        cel_interpreter::Value::Bool(b) => Ok(b),
        other => Err(format!("a rule gave {other:?}, not a bool")),
    }
}
