//! The upstream JobSet and Kueue CRDs as the tests read them (pinned in `tests/crds/`, so
//! every clone checks them), and the structural-schema pruning an API server would apply.

use serde_json::Value;

/// The upstream CRDs: (apiVersion, kind) -> openAPIV3Schema.
pub(super) fn crd_schemas() -> Vec<(String, String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crds");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let crd: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let group = crd["spec"]["group"].as_str().unwrap();
        let k = crd["spec"]["names"]["kind"].as_str().unwrap();
        for ver in crd["spec"]["versions"].as_array().unwrap() {
            out.push((
                format!("{group}/{}", ver["name"].as_str().unwrap()),
                k.to_owned(),
                ver["schema"]["openAPIV3Schema"].clone(),
            ));
        }
    }
    assert!(out.len() >= 5, "tests/crds holds the JobSet and Kueue CRDs");
    out
}

/// Fields the API server would prune: present in `v`, absent from the structural schema.
pub(super) fn pruned(v: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema["properties"].as_object();
            for (k, child) in m {
                if path.is_empty() && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                match props.and_then(|p| p.get(k)) {
                    Some(s) => pruned(child, s, &format!("{path}.{k}"), out),
                    None if schema["additionalProperties"].is_object() => pruned(
                        child,
                        &schema["additionalProperties"],
                        &format!("{path}.{k}"),
                        out,
                    ),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                pruned(item, &schema["items"], &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}
