//! The module graph of `src/`, read from the paths its code names (`crate::…`, `super::…`,
//! `use crate::{…}`; comments and unit-test modules left out): no cycle between the top-level
//! modules, none between the parts of `run/`, and the foundation modules (`digest`, `time`,
//! `git`) import nothing of the rest. The README's Development section shows the same map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;

/// Module path of a source file: `src/run/action/copy.rs` → `run::action::copy`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.as_slice(), [one] if one == "lib" || one == "main") {
        parts.clear();
    }
    parts
}

/// The code of a file without comments and without its `mod tests`.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path the code of module `module` names.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let ident = r"[a-z_][a-z0-9_]*";
    let absolute = Regex::new(&format!(r"\bcrate::((?:{ident}::)*{ident})")).unwrap();
    let group = Regex::new(r"\bcrate::\{([^}]*)\}").unwrap();
    let relative = Regex::new(&format!(r"\b((?:super::)+)((?:{ident}::)*{ident})")).unwrap();
    let split = |p: &str| p.split("::").map(str::to_string).collect::<Vec<_>>();
    let mut out: Vec<Vec<String>> = absolute.captures_iter(code).map(|c| split(&c[1])).collect();
    for g in group.captures_iter(code) {
        for item in g[1].split(',') {
            let item = item.trim();
            if !item.is_empty() {
                out.push(split(item.split([' ', '{']).next().unwrap_or(item)));
            }
        }
    }
    for c in relative.captures_iter(code) {
        let ups = c[1].matches("super::").count();
        let mut path: Vec<String> = module[..module.len().saturating_sub(ups)].to_vec();
        path.extend(split(&c[2]));
        out.push(path);
    }
    out
}

/// The graph whose nodes are the children of `parent` (`run` for `run/`, none for the
/// crate's top level); the parent's own file is the node `(parent)`.
fn graph(parent: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "rs") {
            let rel = entry.path().strip_prefix(&src).unwrap().to_path_buf();
            files.push((
                module_of(&rel),
                std::fs::read_to_string(entry.path()).unwrap(),
            ));
        }
    }
    let depth = parent.len();
    let nodes: BTreeSet<String> = files
        .iter()
        .filter(|(m, _)| m.len() > depth && m.starts_with(parent))
        .map(|(m, _)| m[depth].clone())
        .collect();
    let node = |path: &[String]| -> Option<String> {
        if !path.starts_with(parent) {
            return None;
        }
        match path.get(depth) {
            Some(n) if nodes.contains(n) => Some(n.clone()),
            _ if path.len() == depth && depth > 0 => Some("(parent)".into()),
            _ => None,
        }
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in &files {
        let Some(from) = node(module) else { continue };
        for r in references(module, &code(text)) {
            // `crate::run::plan` names an item of `run` itself: its file's node.
            let to = node(&r).or_else(|| node(&r[..r.len().saturating_sub(1)]));
            if let Some(to) = to.filter(|t| *t != from) {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// A cycle of `edges`, if there is one.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let edges = graph(&[]);
    assert!(
        edges.get("check").is_some_and(|e| e.contains("corpus")),
        "the graph is read at all: {edges:?}"
    );
    assert_eq!(cycle(&edges), None, "{edges:#?}");
}

#[test]
fn the_parts_of_run_form_no_cycle_and_targets_sit_below_actions() {
    let edges = graph(&["run".to_string()]);
    assert!(
        edges.get("action").is_some_and(|e| e.contains("target")),
        "actions use the targets: {edges:?}"
    );
    assert_eq!(cycle(&edges), None, "{edges:#?}");
    let below = graph(&["run".to_string(), "target".to_string()]);
    assert_eq!(cycle(&below), None, "{below:#?}");
}

#[test]
fn the_foundation_imports_nothing_of_the_rest() {
    let edges = graph(&[]);
    for foundation in ["digest", "time", "git"] {
        assert_eq!(
            edges.get(foundation),
            None,
            "{foundation} imports {edges:?}"
        );
    }
}

#[test]
fn a_cycle_is_found_where_there_is_one() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&edges).map(|c| c.len()), Some(4));
    let refs = references(
        &["run".into(), "action".into(), "copy".into()],
        "use super::super::stream::Error;\nuse crate::{corpus::Corpus, time};\n// crate::ignored\n",
    );
    assert!(refs.contains(&vec!["run".into(), "stream".into()]));
    assert!(refs.contains(&vec!["corpus".into(), "Corpus".into()]));
    assert!(refs.contains(&vec!["time".into()]));
    assert!(!code("// crate::ignored\nx").contains("ignored"));
}
