//! `cooc inspect`, `cooc recommend` and `cooc export`: read a model and show what it
//! answers, or dump it.
//!
//! A model is named by its file, or by a model store directory (its `CURRENT` version).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cooc_model::store::{ModelStore, MODEL_FILE};
use cooc_model::{Key, Model};
use serde_json::json;

use crate::error::ConfigError;

/// Opens a model file, or the live model of a store (a directory, or an object-store URL
/// such as `s3://bucket/prefix`).
pub fn open(path: &Path) -> anyhow::Result<(Option<String>, Model)> {
    if let Some(url) = path.to_str().filter(|p| p.contains("://")) {
        let store = ModelStore::open(url).map_err(|e| ConfigError(e.to_string()))?;
        let (v, m) = store.load_current()?;
        return Ok((Some(v), m));
    }
    if path.is_dir() {
        let store = ModelStore::new(path);
        if let Some(v) = store.current()? {
            let m = store.open_model(&v)?;
            return Ok((Some(v), m));
        }
        let direct = path.join(MODEL_FILE);
        if direct.is_file() {
            return Ok((None, Model::open(&direct)?));
        }
        return Err(ConfigError(format!(
            "{}: neither a model store with CURRENT nor a version directory",
            path.display()
        ))
        .into());
    }
    Ok((None, Model::open(path)?))
}

fn parse_key<'a>(model: &Model, flag: &str, raw: &'a str) -> anyhow::Result<Key<'a>> {
    if model.int_keys() {
        let v = raw
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("--{flag} {raw:?}: this model has integer keys")))?;
        Ok(Key::Int(v))
    } else {
        Ok(Key::Str(raw))
    }
}

fn neighbours_json(model: &Model, i: usize) -> serde_json::Value {
    let (ids, scores) = model.neighbours(i);
    ids.iter()
        .zip(scores)
        .enumerate()
        .map(|(r, (&j, &s))| {
            json!({
                "rank": r + 1,
                "book_id": model.key(j as usize),
                "score": s,
                "title": model.title(j as usize),
                "author": model.author(j as usize),
            })
        })
        .collect()
}

/// Prints a summary, or one book's neighbours.
pub fn inspect(path: &Path, book: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    let (version, model) = open(path)?;
    let mut out = std::io::stdout().lock();
    if let Some(raw) = book {
        let key = parse_key(&model, "book", raw)?;
        let i = model.find(key).ok_or_else(|| {
            ConfigError(format!("book {raw} is not in {}", model.path().display()))
        })?;
        if as_json {
            let v = json!({
                "book_id": key,
                "title": model.title(i),
                "author": model.author(i),
                "neighbours": neighbours_json(&model, i),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        } else {
            writeln!(
                out,
                "{key}  {}  ({})",
                model.title(i).unwrap_or("-"),
                model.author(i).unwrap_or("-")
            )?;
            let (ids, scores) = model.neighbours(i);
            for (r, (&j, &s)) in ids.iter().zip(scores).enumerate() {
                let j = j as usize;
                writeln!(
                    out,
                    "{:>4}  {:<10} {:.6}  {}  ({})",
                    r + 1,
                    model.key(j).to_string(),
                    s,
                    model.title(j).unwrap_or("-"),
                    model.author(j).unwrap_or("-")
                )?;
            }
        }
        return Ok(());
    }
    let meta = model.meta();
    let prov = model.provenance();
    if as_json {
        let v = json!({
            "path": model.path(),
            "version": version,
            "bytes": model.file_len(),
            "identity_crc32": format!("{:08x}", model.identity_digest()),
            "meta": meta,
            "provenance": prov,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(out, "model        {}", model.path().display())?;
    if let Some(v) = version {
        writeln!(out, "version      {v}")?;
    }
    writeln!(
        out,
        "similarity   {} (top {}{}{})",
        meta.similarity.as_str(),
        meta.top_k,
        match meta.min_support {
            1 => String::new(),
            s => format!(", pairs in at least {s} baskets"),
        },
        meta.max_basket
            .map_or_else(String::new, |m| format!(", baskets sampled to {m} items")),
    )?;
    writeln!(out, "items        {}", meta.n_items)?;
    writeln!(out, "baskets      {}", meta.n_baskets)?;
    writeln!(
        out,
        "input rows   {} ({} distinct basket-item pairs)",
        meta.n_rows, meta.n_pairs
    )?;
    writeln!(out, "neighbours   {}", meta.nnz)?;
    writeln!(out, "dataset      {}", meta.dataset_fingerprint)?;
    writeln!(out, "avg top-1    {:.6}", meta.avg_top1_score)?;
    if let Some(e) = &meta.evaluation {
        writeln!(
            out,
            "evaluation   hold-out last order, {} customers, K={}",
            e.users, e.k
        )?;
        writeln!(
            out,
            "             model:   hit rate {:.4}  recall {:.4}  ndcg {:.4}  coverage {:.4}",
            e.hit_rate, e.recall, e.ndcg, e.coverage
        )?;
        writeln!(
            out,
            "             popular: hit rate {:.4}  recall {:.4}  ndcg {:.4}  coverage {:.4}",
            e.baseline_hit_rate, e.baseline_recall, e.baseline_ndcg, e.baseline_coverage
        )?;
    }
    writeln!(
        out,
        "created      {} by cooc {} ({} rank(s), {} thread(s))",
        prov.created_at, prov.tool_version, prov.world_size, prov.threads
    )?;
    writeln!(
        out,
        "size         {} bytes, identity crc32 {:08x}",
        model.file_len(),
        model.identity_digest()
    )?;
    Ok(())
}

/// `cooc recommend`'s settings.
pub struct BasketArgs<'a> {
    /// Seed book keys, as typed.
    pub books: &'a [String],
    /// A weight per seed, or none (1 each).
    pub weights: &'a [f32],
    /// Book keys never to recommend.
    pub exclude: &'a [String],
    /// How many to recommend.
    pub k: u32,
}

/// Prints the basket recommendations the server's `:recommend` gives for `args`.
pub fn recommend(path: &Path, args: &BasketArgs<'_>, as_json: bool) -> anyhow::Result<()> {
    use cooc_model::basket::{Answer, Source};
    if !(1..=100).contains(&args.k) {
        return Err(ConfigError(format!("--k {} is outside 1..=100", args.k)).into());
    }
    if !args.weights.is_empty() && args.weights.len() != args.books.len() {
        return Err(ConfigError(format!(
            "--weights has {} values for {} --books",
            args.weights.len(),
            args.books.len()
        ))
        .into());
    }
    if let Some(w) = args.weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(ConfigError(format!(
            "--weights {w}: a weight must be positive and finite"
        ))
        .into());
    }
    let (version, model) = open(path)?;
    let seeds = args
        .books
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let w = args.weights.get(i).copied().unwrap_or(1.0);
            parse_key(&model, "books", b).map(|k| (k, w))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let exclude = args
        .exclude
        .iter()
        .map(|b| parse_key(&model, "exclude", b))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let name = version.unwrap_or_else(|| model.path().display().to_string());
    let answer = Answer::new(&model, &name, &seeds, &exclude, args.k as usize);
    let mut out = std::io::stdout().lock();
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
        return Ok(());
    }
    if !answer.unknown.is_empty() {
        let list: Vec<String> = answer.unknown.iter().map(|k| k.to_string()).collect();
        eprintln!("cooc: not in the model, ignored: {}", list.join(", "));
    }
    if model.popular().is_none() {
        eprintln!(
            "cooc: {} lists no popular books (format version {}): no popularity backfill",
            model.path().display(),
            model.format_version()
        );
    }
    for (r, rec) in answer.recommendations.iter().enumerate() {
        let why = match rec.source {
            Source::Similar => {
                let by: Vec<String> = rec.because.iter().map(|k| k.to_string()).collect();
                format!("{:.6}  because {}", rec.score, by.join(", "))
            }
            Source::Popular => "popular".to_string(),
        };
        writeln!(
            out,
            "{:>4}  {:<10} {}  {}  ({})",
            r + 1,
            rec.book_id.to_string(),
            why,
            rec.title.unwrap_or("-"),
            rec.author.unwrap_or("-")
        )?;
    }
    Ok(())
}

/// Writes `book_id,rank,neighbour_id,score` rows (rank 1..K).
pub fn export_csv(path: &Path, out: Option<&PathBuf>) -> anyhow::Result<()> {
    let (_, model) = open(path)?;
    let sink: Box<dyn Write> = match out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::new(sink);
    writeln!(w, "book_id,rank,neighbour_id,score")?;
    let mut key = String::new();
    for i in 0..model.n_items() {
        key.clear();
        csv_field(&mut key, model.key(i));
        let (ids, scores) = model.neighbours(i);
        for (r, (&j, &s)) in ids.iter().zip(scores).enumerate() {
            let mut nb = String::new();
            csv_field(&mut nb, model.key(j as usize));
            writeln!(w, "{key},{},{nb},{s}", r + 1)?;
        }
    }
    w.flush()?;
    Ok(())
}

fn csv_field(buf: &mut String, key: Key<'_>) {
    use std::fmt::Write as _;
    match key {
        Key::Int(v) => {
            let _ = write!(buf, "{v}");
        }
        Key::Str(s) if s.contains([',', '"', '\n', '\r']) => {
            buf.push('"');
            buf.push_str(&s.replace('"', "\"\""));
            buf.push('"');
        }
        Key::Str(s) => buf.push_str(s),
    }
}
