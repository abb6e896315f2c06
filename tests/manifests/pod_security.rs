//! A checker for the Pod Security "restricted" profile, applied to every pod template the
//! manifests contain.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::kind;

/// Every pod template in the objects: (where, template).
pub(super) fn pod_templates(all: &[(PathBuf, Value)]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (_, v) in all {
        let name = format!(
            "{}/{}",
            kind(v),
            v["metadata"]["name"].as_str().unwrap_or("")
        );
        match kind(v) {
            "Deployment" | "Job" | "StatefulSet" | "DaemonSet" => {
                out.push((name, v["spec"]["template"].clone()))
            }
            "CronJob" => out.push((name, v["spec"]["jobTemplate"]["spec"]["template"].clone())),
            "JobSet" => {
                for rj in v["spec"]["replicatedJobs"].as_array().unwrap() {
                    out.push((
                        format!("{name}/{}", rj["name"].as_str().unwrap()),
                        rj["template"]["spec"]["template"].clone(),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

/// The Pod Security "restricted" rules (../shared/docs/platform.md) a pod template breaks.
pub(super) fn restricted_violations(template: &Value) -> Vec<String> {
    let spec = &template["spec"];
    let psc = &spec["securityContext"];
    let mut bad = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[host] == true {
            bad.push(format!("{host} is set"));
        }
    }
    let allowed_volumes = [
        "configMap",
        "downwardAPI",
        "emptyDir",
        "projected",
        "secret",
        "csi",
        "persistentVolumeClaim",
        "ephemeral",
        "image",
    ];
    for vol in spec["volumes"].as_array().into_iter().flatten() {
        for key in vol.as_object().unwrap().keys().filter(|k| *k != "name") {
            if !allowed_volumes.contains(&key.as_str()) {
                bad.push(format!("volume {} is {key}", vol["name"]));
            }
        }
    }
    let safe_sysctls = [
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    for s in psc["sysctls"].as_array().into_iter().flatten() {
        let n = s["name"].as_str().unwrap_or("");
        if !safe_sysctls.contains(&n) {
            bad.push(format!("unsafe sysctl {n}"));
        }
    }
    let seccomp = |sc: &Value| sc["seccompProfile"]["type"].as_str().map(str::to_owned);
    let containers: Vec<&Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect();
    if containers.is_empty() {
        bad.push("no containers".into());
    }
    for c in containers {
        let n = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        let non_root = sc["runAsNonRoot"]
            .as_bool()
            .or(psc["runAsNonRoot"].as_bool());
        if non_root != Some(true) {
            bad.push(format!("{n}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"] == 0 || (sc["runAsUser"].is_null() && psc["runAsUser"] == 0) {
            bad.push(format!("{n}: runAsUser 0"));
        }
        match seccomp(sc).or(seccomp(psc)).as_deref() {
            Some("RuntimeDefault") | Some("Localhost") => {}
            other => bad.push(format!("{n}: seccompProfile {other:?}")),
        }
        if sc["allowPrivilegeEscalation"] != false {
            bad.push(format!("{n}: allowPrivilegeEscalation is not set to false"));
        }
        if sc["privileged"] == true {
            bad.push(format!("{n}: privileged"));
        }
        let drops = sc["capabilities"]["drop"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !drops.contains(&json!("ALL")) {
            bad.push(format!("{n}: capabilities.drop lacks ALL"));
        }
        for add in sc["capabilities"]["add"].as_array().into_iter().flatten() {
            if add != "NET_BIND_SERVICE" {
                bad.push(format!("{n}: adds capability {add}"));
            }
        }
        if sc["procMount"].as_str().is_some_and(|p| p != "Default") {
            bad.push(format!("{n}: procMount {}", sc["procMount"]));
        }
        for p in c["ports"].as_array().into_iter().flatten() {
            if !p["hostPort"].is_null() && p["hostPort"] != 0 {
                bad.push(format!("{n}: hostPort {}", p["hostPort"]));
            }
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if !c[probe]["httpGet"]["host"].is_null() || !c[probe]["tcpSocket"]["host"].is_null() {
                bad.push(format!("{n}: {probe} sets host"));
            }
        }
        for hook in ["postStart", "preStop"] {
            let h = &c["lifecycle"][hook];
            if !h["httpGet"]["host"].is_null() || !h["tcpSocket"]["host"].is_null() {
                bad.push(format!("{n}: lifecycle {hook} sets host"));
            }
        }
    }
    bad
}
