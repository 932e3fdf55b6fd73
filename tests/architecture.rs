//! The dependency rules of ARCHITECTURE.md, read from the source: each
//! layer of the library uses only the layers below it (`connected` and
//! `far` never use each other), and no two modules use each other,
//! directly or round a longer cycle.

// Test helpers panic on failure, like the tests that call them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first, and which each may use.
const LAYERS: [(&str, &[&str]); 5] = [
    ("base", &["base"]),
    ("format", &["base", "format"]),
    ("shared", &["base", "format", "shared"]),
    ("connected", &["base", "format", "shared", "connected"]),
    ("far", &["base", "format", "shared", "far"]),
];

/// Every library source file, as (module `layer::name`, path).
fn sources() -> Vec<(String, PathBuf)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for (layer, _) in LAYERS {
        for e in walkdir::WalkDir::new(src.join(layer)) {
            let e = e.unwrap();
            if e.path().extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = e.path().strip_prefix(src.join(layer)).unwrap();
            let name = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_str()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            let module = match name.as_str() {
                "mod" => layer.to_owned(),
                _ => format!("{layer}::{name}"),
            };
            out.push((module, e.path().to_owned()));
        }
    }
    out
}

/// The modules a source file names through `crate::LAYER::MODULE`
/// outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut found = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let mut parts = rest.split("::");
        let layer = parts.next().unwrap_or_default();
        if !LAYERS.iter().any(|(l, _)| *l == layer) {
            continue;
        }
        let name: String = parts
            .next()
            .unwrap_or_default()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        match name.is_empty() || name.starts_with(char::is_uppercase) {
            true => found.insert(layer.to_owned()),
            false => found.insert(format!("{layer}::{name}")),
        };
    }
    found
}

fn layer_of(module: &str) -> &str {
    module.split("::").next().unwrap()
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let mut bad = Vec::new();
    for (module, path) in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let layer = layer_of(&module);
        let allowed = LAYERS.iter().find(|(l, _)| *l == layer).unwrap().1;
        for used in uses(&text) {
            if !allowed.contains(&layer_of(&used)) {
                bad.push(format!("{} uses {used}", path.display()));
            }
        }
    }
    assert!(bad.is_empty(), "forbidden edges:\n{}", bad.join("\n"));
}

#[test]
fn no_two_modules_depend_on_each_other() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        for used in uses(&text) {
            // A folder's mod.rs only declares its modules.
            if used != module && used.contains("::") && module.contains("::") {
                edges.insert(used);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| p == m).unwrap();
                let mut cycle = path[at..].to_vec();
                cycle.push(m.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.to_owned(), 1);
        path.push(m.to_owned());
        for n in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(n, graph, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut state, &mut Vec::new()) {
            panic!("an import cycle: {}", cycle.join(" -> "));
        }
    }
    assert!(graph.len() > 20, "found only {} modules", graph.len());
}
