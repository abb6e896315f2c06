//! The trainer's layering, read from its source: every module imports only from its own
//! layer or the layers below (see `src/lib.rs`), no module imports from a module that
//! imports it back (directly or through others), the core never names an async runtime, a
//! network, a GPU or Kubernetes crate, and only the binary reaches the server crate.
//!
//! Imports are read from `use` lines and `crate::`/`super::` paths outside `#[cfg(test)]`
//! modules; each resolves to the deepest module file that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first; a module may import from its own layer and the ones below.
const LAYERS: [&[&str]; 7] = [
    &["error"],
    &["gen", "input", "csr", "kernel", "eval", "progress"],
    &["backend", "gpu", "postgres"],
    &["gang"],
    &["plan", "pipeline", "launch"],
    &["inspect", "demo", "k8s"],
    &["cli", "fuzz"],
];

/// External crates the core (layers 0-1) must never name.
const NOT_IN_CORE: [&str; 6] = ["tokio", "quinn", "cudarc", "kube", "cooc_serve", "axum"];

/// Modules of the crate the gang transport must never import: it moves bytes, not books.
const NOT_IN_GANG: [&str; 11] = [
    "input", "csr", "kernel", "eval", "gen", "plan", "pipeline", "launch", "k8s", "cli", "demo",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module path (`pipeline::share`) of every library source file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        let name = parts.join("::");
        if name == "main" || name == "lib" || name.ends_with("tests") {
            continue;
        }
        out.insert(name, f);
    }
    out
}

/// The source without its `#[cfg(test)]` items (test modules may reach anywhere).
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending = false;
    for line in text.lines() {
        let t = line.trim_start();
        if skip_depth.is_none() && t.starts_with("#[cfg(test)]") {
            pending = true;
            continue;
        }
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if pending {
            pending = false;
            if opens == 0 {
                // `#[cfg(test)] mod tests;` or a one-line item.
                continue;
            }
            skip_depth = Some(depth);
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        if !t.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The identifiers paths in `text` start with after `crate::` or `super::`s, resolved
/// against `module` to absolute module paths (not yet trimmed to a file).
fn paths(module: &str, is_mod_file: bool, text: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        let mut segs = Vec::new();
        let mut rest = s;
        loop {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            segs.push(rest[..end].to_owned());
            match rest[end..].strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        segs
    };
    let mut out = Vec::new();
    let base: Vec<String> = module.split("::").map(str::to_owned).collect();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        out.push(ident(&text[i + 7..]));
    }
    for (i, _) in text.match_indices("super::") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut ups = 1;
        let mut rest = &text[i + 7..];
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        // In `a/b.rs` (module a::b), `super` is `a`; in `a/mod.rs` (module a), the parent of a.
        let keep = base.len() as i32 - ups - i32::from(is_mod_file) + 1;
        let keep = keep.max(0) as usize;
        let mut p: Vec<String> = base[..keep.min(base.len())].to_vec();
        p.extend(ident(rest));
        out.push(p);
    }
    out
}

/// module -> the modules it imports from (other than itself and its own submodules).
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let mut g = BTreeMap::new();
    for (m, file) in &mods {
        let text = without_tests(&std::fs::read_to_string(file).unwrap());
        let is_mod = file.ends_with("mod.rs");
        let mut deps = BTreeSet::new();
        for p in paths(m, is_mod, &text) {
            // The deepest module file the path names.
            let target = (1..=p.len())
                .rev()
                .map(|n| p[..n].join("::"))
                .find(|t| mods.contains_key(t));
            if let Some(t) = target {
                if t != *m && !t.starts_with(&format!("{m}::")) {
                    deps.insert(t);
                }
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS
        .iter()
        .position(|l| l.contains(&top))
        .unwrap_or_else(|| {
            panic!("module {module} is in no layer: add it to LAYERS and src/lib.rs")
        })
}

#[test]
fn every_module_imports_only_from_its_layer_or_below() {
    let g = graph();
    assert!(g.len() > 30, "too few modules found: {g:?}");
    let mut bad = Vec::new();
    for (m, deps) in &g {
        for d in deps {
            if layer(d) > layer(m) {
                bad.push(format!(
                    "{m} (layer {}) imports {d} (layer {})",
                    layer(m),
                    layer(d)
                ));
            }
        }
    }
    assert!(bad.is_empty(), "imports that go up:\n{}", bad.join("\n"));
}

#[test]
fn no_module_imports_from_a_module_that_imports_it_back() {
    let g = graph();
    // Depth-first search for a cycle, reporting its path.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == d).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, &g, &mut state, &mut Vec::new()) {
                panic!("import cycle: {}", c.join(" -> "));
            }
        }
    }
}

#[test]
fn the_core_names_no_runtime_network_gpu_or_cluster_crate() {
    let mods = modules();
    let mut bad = Vec::new();
    for (m, file) in &mods {
        if layer(m) > 1 {
            continue;
        }
        let text = without_tests(&std::fs::read_to_string(file).unwrap());
        for c in NOT_IN_CORE {
            if text.contains(&format!("{c}::")) || text.contains(&format!("use {c}")) {
                bad.push(format!("{m} names {c}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_gang_transport_knows_no_books() {
    let g = graph();
    let mut bad = Vec::new();
    for (m, deps) in g.iter().filter(|(m, _)| m.starts_with("gang")) {
        for d in deps {
            let top = d.split("::").next().unwrap();
            if NOT_IN_GANG.contains(&top) {
                bad.push(format!("{m} imports {d}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn only_the_binary_reaches_the_server_crate() {
    let mods = modules();
    let users: Vec<&String> = mods
        .iter()
        .filter(|(_, f)| std::fs::read_to_string(f).unwrap().contains("cooc_serve"))
        .map(|(m, _)| m)
        .collect();
    assert!(
        users.is_empty(),
        "library modules use cooc_serve: {users:?}"
    );
    let main = std::fs::read_to_string(src().join("main.rs")).unwrap();
    assert!(
        main.contains("cooc_serve"),
        "the binary serves through cooc_serve"
    );
}
