//! `cooc submit` and `cooc status`: the run's JobSet from the arguments, the apiserver
//! calls, and what they print.

use super::{train_plan, Cli, Cmd, StatusArgs, SubmitArgs};
use crate::backend::Backend;
use crate::error::ConfigError;
use crate::k8s::render::Naming;
use clap::{Parser, ValueEnum};

/// One line of a run's progress, on stderr.
fn report(name: &str, p: &crate::k8s::state::Phase) {
    eprintln!(
        "{} {name}: {p}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    );
}

fn k8s_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(super) fn submit(a: SubmitArgs) -> anyhow::Result<u8> {
    use crate::k8s::render::{Input, RunSpec};
    let spec = RunSpec {
        naming: match a.name {
            Some(n) => Naming::Fixed(n),
            None => Naming::Generate(a.generate_name),
        },
        namespace: a.namespace,
        world_size: a.world_size,
        queue: a.queue,
        image: a.image.unwrap_or_else(|| {
            let repo = if a.gpu { "cooc-gpu" } else { "cooc" };
            format!("{repo}:{}", env!("CARGO_PKG_VERSION"))
        }),
        input: match (a.orders, a.postgres) {
            (Some(orders), _) => Input::Files {
                orders,
                books: a.books,
                claim: a.input_claim,
            },
            (None, Some(url)) => {
                if url.starts_with("$(") {
                    // Kubernetes leaves $(VAR) as is when VAR is unset: the CronJob's
                    // optional Secret key is missing.
                    return Err(ConfigError(format!(
                        "--postgres {url}: the variable is not set (is the Secret {} there, with a key `url`?)",
                        a.postgres_secret
                    ))
                    .into());
                }
                crate::postgres::check_conn(&url)?;
                Input::Postgres {
                    url,
                    secret: a.postgres_secret,
                    orders_table: a.orders_table,
                    books_table: a.books_table,
                }
            }
            (None, None) => Input::Generate {
                size: a
                    .generate
                    .to_possible_value()
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default(),
                seed: a.seed,
            },
        },
        priority_class: a.priority_class,
        train_args: (!a.train_args.is_empty()).then_some(a.train_args),
        gpu: a.gpu,
        model_store: a.model_dir,
    };
    let jobset = spec.render()?;
    // The ranks would refuse bad arguments only once admitted: refuse them here instead.
    let args = crate::k8s::render::container_args(&jobset);
    // Parsed as a rank parses them, then validated by the trainer's own plan builder.
    let invalid = |why: &str| {
        ConfigError(format!(
            "the ranks' arguments `cooc {}` are invalid: {why}",
            args.join(" ")
        ))
    };
    match Cli::try_parse_from(std::iter::once("cooc".to_owned()).chain(args.clone())) {
        Err(e) => {
            let why = e.to_string();
            let why = why.lines().next().unwrap_or_default();
            return Err(invalid(why.strip_prefix("error: ").unwrap_or(why)).into());
        }
        Ok(Cli {
            cmd: Cmd::Train(train),
        }) => {
            train_plan(&train, 1, Backend::Cpu).map_err(|e| invalid(&format!("{e:#}")))?;
        }
        Ok(_) => return Err(invalid("not a `cooc train` command line").into()),
    }
    if a.dry_run && matches!(spec.naming, Naming::Generate(_)) {
        eprintln!(
            "# generateName: create this with `kubectl create -f -`, not `kubectl apply` (or pass --name)"
        );
    }
    if a.dry_run {
        print!("{}", serde_yaml_ng::to_string(&jobset)?);
        return Ok(0);
    }
    k8s_runtime()?.block_on(async {
        let cluster = crate::k8s::cluster::Cluster::connect(&spec.namespace).await?;
        let created = cluster.submit(&jobset).await?;
        let name = created.name.clone();
        eprintln!(
            "jobset.jobset.x-k8s.io/{name} submitted to {}/{} ({} ranks)",
            spec.namespace, spec.queue, spec.world_size
        );
        println!("{name}");
        if a.no_wait {
            return Ok(0);
        }
        let end = cluster
            .follow(&name, a.poll, a.timeout, |_, p| report(&name, p))
            .await?;
        debug_assert!(end.is_terminal());
        Ok(0)
    })
}

pub(super) fn status(a: StatusArgs) -> anyhow::Result<u8> {
    use crate::k8s::state::phase;
    k8s_runtime()?.block_on(async {
        let cluster = crate::k8s::cluster::Cluster::connect(&a.namespace).await?;
        let Some(name) = a.name else {
            let runs = cluster.runs().await?;
            if runs.is_empty() {
                eprintln!("no cooc training runs in {}", a.namespace);
            } else {
                println!(
                    "{:<40} {:<14} {:>5} {:>8}  WORKLOAD",
                    "NAME", "PHASE", "READY", "RESTARTS"
                );
            }
            for o in runs {
                let ready: u32 = o.jobset.jobs.iter().map(|j| j.ready).sum();
                println!(
                    "{:<40} {:<14} {:>5} {:>8}  {}",
                    o.jobset.name,
                    phase(&o).name(),
                    format!("{ready}/{}", o.jobset.pods),
                    o.jobset.restarts,
                    o.workload.as_ref().map_or("-", |w| w.name.as_str())
                );
            }
            return Ok(0);
        };
        if a.watch {
            cluster
                .follow(&name, a.poll, a.timeout, |_, p| report(&name, p))
                .await?;
            return Ok(0);
        }
        let o = cluster.observe(&name).await?;
        println!("JobSet:    {}/{name}", a.namespace);
        println!("Phase:     {}", phase(&o));
        println!("Restarts:  {}", o.jobset.restarts);
        match &o.workload {
            Some(w) => println!(
                "Workload:  {} ({})",
                w.name,
                w.cluster_queue.as_deref().unwrap_or("no quota reserved")
            ),
            None => println!("Workload:  none yet"),
        }
        for j in &o.jobset.jobs {
            println!(
                "Jobs {}: {} active, {} ready, {} succeeded, {} failed, {} suspended",
                j.name, j.active, j.ready, j.succeeded, j.failed, j.suspended
            );
        }
        for c in o
            .jobset
            .conditions
            .iter()
            .chain(o.workload.iter().flat_map(|w| &w.conditions))
        {
            println!(
                "Condition: {}={} {} {}",
                c.type_, c.status, c.reason, c.message
            );
        }
        Ok(0)
    })
}
