//! The gang across real container hosts: W rank containers on a user-defined Docker
//! network, named exactly as JobSet names pods (hostname `<jobset>-<rjob>-<job>-<pod>`,
//! reachable as `<hostname>.<subdomain>` through Docker's DNS), run as they run under the
//! restricted Pod Security profile (numeric non-root user, read-only root filesystem, all
//! capabilities dropped, no-new-privileges), configured by the JobSet environment alone.
//!
//! Needs Docker and the image `tests/containers/build-image.sh` builds, named by
//! `COOC_IMAGE`, so every test here is ignored by default; `.ci/run` builds the image and
//! runs them (`cargo test --release --test containers -- --ignored`). Run without those
//! prerequisites, a test fails saying which is missing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, p};
use cooc_model::Model;

const JOBSET: &str = "recommender-train";
const RJOB: &str = "rank";
/// What the manifests' securityContext declares, as `docker run` options: the numeric
/// non-root user, a read-only root filesystem, no capabilities, no privilege escalation.
const HARDENED: [&str; 7] = [
    "--user",
    "65532:65532",
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

fn image() -> String {
    let why = match std::env::var("COOC_IMAGE") {
        Err(_) => "COOC_IMAGE is not set (run tests/containers/build-image.sh and export its tag)"
            .to_owned(),
        Ok(tag) => match Command::new("docker")
            .args(["image", "inspect", &tag])
            .output()
        {
            Ok(o) if o.status.success() => return tag,
            Ok(_) => format!("image {tag} not found"),
            Err(e) => format!("docker is not usable: {e}"),
        },
    };
    panic!("the container tests cannot run: {why}");
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("running docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One gang's network and containers, removed on drop.
struct Gang {
    net: String,
    names: Vec<String>,
    dir: tempfile::TempDir,
}

impl Gang {
    fn new(test: &str) -> Gang {
        let net = format!("cooc-{test}-{}", std::process::id());
        docker(&["network", "create", &net]);
        let dir = tempfile::tempdir().unwrap();
        // The model volume: writable by the image's numeric user.
        std::fs::create_dir(dir.path().join("model")).unwrap();
        set_mode(&dir.path().join("model"), 0o777);
        let secret = dir.path().join("secret");
        std::fs::write(&secret, ok(&["secret"])).unwrap();
        set_mode(&secret, 0o644);
        Gang {
            net,
            names: Vec::new(),
            dir,
        }
    }

    fn model_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("model")
    }

    /// Starts rank `rank` of `world` with `args` after `cooc train --jobset`.
    fn start(&mut self, image: &str, rank: u32, world: u32, args: &[&str]) -> String {
        let host = format!("{JOBSET}-{RJOB}-0-{rank}");
        let name = format!("{}-{host}", self.net);
        let env = [
            format!("JOBSET_NAME={JOBSET}"),
            format!("JOBSET_UID=uid-{}", self.net),
            format!("JOBSET_REPLICATED_JOB={RJOB}"),
            format!("JOB_COMPLETION_INDEX={rank}"),
            "JOBSET_JOB_INDEX=0".into(),
            "JOBSET_JOB_GLOBAL_INDEX=0".into(),
            "JOBSET_GLOBAL_REPLICAS=1".into(),
            "JOBSET_RESTART_ATTEMPT=0".into(),
            format!("WORLD_SIZE={world}"),
            "COOC_SECRET_FILE=/run/cooc/secret".into(),
            "COOC_RENDEZVOUS_TIMEOUT=60s".into(),
            "RUST_LOG=info".into(),
        ];
        let secret = format!("{}:/run/cooc/secret:ro", p(&self.dir.path().join("secret")));
        let model = format!("{}:/model", p(&self.model_dir()));
        let alias = format!("{host}.{JOBSET}");
        let mut cmd: Vec<&str> = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &self.net,
            "--hostname",
            &host,
            "--network-alias",
            &alias,
            "-v",
            &secret,
            "-v",
            &model,
        ];
        cmd.extend(HARDENED);
        for e in &env {
            cmd.extend(["-e", e]);
        }
        cmd.extend([image, "train", "--jobset", "--model-dir", "/model"]);
        cmd.extend(args);
        docker(&cmd);
        self.names.push(name.clone());
        name
    }

    /// Waits for a container's exit code (at most `limit`).
    fn wait(&self, name: &str, limit: Duration) -> i32 {
        let out = Command::new("timeout")
            .args([&limit.as_secs().to_string(), "docker", "wait", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name} did not exit within {limit:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    fn logs(&self, name: &str) -> String {
        let out = Command::new("docker")
            .args(["logs", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
    }

    /// Blocks until `name` logs a line containing `needle`.
    fn await_log(&self, name: &str, needle: &str) {
        let mut child = Command::new("docker")
            .args(["logs", "-f", name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut r = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut seen = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap() == 0 {
                panic!("{name} ended before logging {needle:?}:\n{seen}");
            }
            seen += &line;
            if line.contains(needle) {
                break;
            }
        }
        child.kill().ok();
        child.wait().ok();
    }
}

impl Drop for Gang {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("docker").args(["rm", "-f", n]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.net])
            .output();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn live_model(dir: &Path) -> Model {
    let v = std::fs::read_to_string(dir.join("CURRENT")).expect("a CURRENT version");
    Model::open(&dir.join(v.trim()).join("model.cooc")).unwrap()
}

#[test]
#[ignore = "needs Docker and COOC_IMAGE (tests/containers/build-image.sh); .ci/run runs them"]
fn two_rank_containers_produce_the_single_process_artifact_and_serve_it() {
    let image = image();
    let mut g = Gang::new("normal");
    let args = ["--generate", "s", "--seed", "11", "--holdout", "last"];
    let names: Vec<String> = (0..2).map(|r| g.start(&image, r, 2, &args)).collect();
    for n in &names {
        assert_eq!(
            g.wait(n, Duration::from_secs(120)),
            0,
            "{n}:\n{}",
            g.logs(n)
        );
    }
    assert!(g.logs(&names[1]).contains("rank 0 confirmed the write"));
    let local = g.dir.path().join("local.cooc");
    let mut single = vec!["train", "--out", p(&local)];
    single.extend(args);
    ok(&single);
    let want = Model::open(&local).unwrap().identity_digest();
    assert_eq!(live_model(&g.model_dir()).identity_digest(), want);

    // cooc-serve from the same image on the model the gang wrote, as the Deployment runs
    // it: read-only root and model volume, no capabilities, published on loopback only.
    let name = format!("{}-serve", g.net);
    let model = format!("{}:/workspace/model:ro", p(&g.model_dir()));
    let mut cmd = vec!["run", "-d", "--name", &name, "--network", &g.net];
    cmd.extend(HARDENED);
    cmd.extend([
        "-v",
        &model,
        "-p",
        "127.0.0.1::8080",
        "--entrypoint",
        "/cooc-serve",
        &image,
    ]);
    docker(&cmd);
    g.names.push(name.clone());
    let port = docker(&["port", &name, "8080/tcp"]);
    let addr = port.lines().next().unwrap().trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        match ureq::get(&format!("http://{addr}/recommend?book_id=1&k=3")).call() {
            Ok(r) => break r.into_string().unwrap(),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("cooc-serve in a container: {e}\n{}", g.logs(&name)),
        }
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["book_id"], 1);
    assert_eq!(v["recommendations"].as_array().unwrap().len(), 3, "{body}");
    assert!(v["recommendations"][0]["title"].is_string(), "{body}");
}

#[test]
#[ignore = "needs Docker and COOC_IMAGE (tests/containers/build-image.sh); .ci/run runs them"]
fn a_killed_rank_container_fails_its_peers_with_exit_75() {
    let image = image();
    let mut g = Gang::new("kill");
    let args = ["--generate", "m", "--holdout", "last", "--threads", "1"];
    let names: Vec<String> = (0..3).map(|r| g.start(&image, r, 3, &args)).collect();
    g.await_log(&names[1], "own baskets");
    docker(&["kill", "--signal", "KILL", &names[1]]);
    let killed = Instant::now();
    for n in [&names[0], &names[2]] {
        assert_eq!(
            g.wait(n, Duration::from_secs(30)),
            75,
            "{n}:\n{}",
            g.logs(n)
        );
        assert!(
            g.logs(n).contains("lost rank 1 during"),
            "{n}:\n{}",
            g.logs(n)
        );
    }
    assert!(
        killed.elapsed() < Duration::from_secs(16),
        "peers exit within 15 s"
    );
    assert!(!g.model_dir().join("CURRENT").exists());
}

#[test]
#[ignore = "needs Docker and COOC_IMAGE (tests/containers/build-image.sh); .ci/run runs them"]
fn a_partitioned_rank_fails_the_whole_gang_with_exit_75() {
    let image = image();
    let mut g = Gang::new("partition");
    let args = ["--generate", "m", "--holdout", "last", "--threads", "1"];
    let names: Vec<String> = (0..3).map(|r| g.start(&image, r, 3, &args)).collect();
    g.await_log(&names[2], "own baskets");
    docker(&["network", "disconnect", &g.net, &names[2]]);
    let cut = Instant::now();
    for n in &names {
        assert_eq!(
            g.wait(n, Duration::from_secs(40)),
            75,
            "{n}:\n{}",
            g.logs(n)
        );
    }
    assert!(
        g.logs(&names[0]).contains("lost rank 2 during"),
        "{}",
        g.logs(&names[0])
    );
    assert!(cut.elapsed() < Duration::from_secs(25));
    assert!(!g.model_dir().join("CURRENT").exists());
}
