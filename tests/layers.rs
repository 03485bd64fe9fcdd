//! The architecture, checked: every folder of `src/` is a layer, and a
//! layer uses only the layers before it in `mmpool::LAYERS` (the table
//! `lib.rs` documents); no two modules use each other, directly or
//! through others.
//!
//! The test reads the sources: every path `crate::a::b...` (in `use`
//! declarations and in expressions), `super::...` and `self::...`, and
//! `use x::...` of a child module, resolved to the deepest module that
//! exists. Comments are ignored. `lib.rs` is the crate root and may use
//! everything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`["heap", "types"]`) -> source file, for every module.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read src/") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            let last = parts.pop().unwrap();
            let stem = last.trim_end_matches(".rs");
            if stem != "mod" && stem != "lib" {
                parts.push(stem.to_string());
            }
            out.insert(parts, p);
        }
    }
    out
}

/// The source without comments (line, block and doc comments).
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        if in_str {
            if b[i] == b'\\' {
                i += 2;
                continue;
            }
            if b[i] == b'"' {
                in_str = false;
            }
            out.push(b[i] as char);
            i += 1;
        } else if b[i] == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Read a path `a::b::c` (with `{...}` groups expanded) at `chars[i..]`;
/// returns the paths and the index after them.
fn read_paths(chars: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut segs = Vec::new();
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i < chars.len() && chars[i] == '{' {
            // A group: each item is a path under `segs`.
            let mut out = Vec::new();
            i += 1;
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    return (out, i + 1);
                }
                let (items, next) = read_paths(chars, i);
                for item in items {
                    let mut full = segs.clone();
                    if item != ["self"] {
                        full.extend(item);
                    }
                    out.push(full);
                }
                i = next;
                // Skip `as name`.
                while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < chars.len() && (is_ident(chars[i]) || chars[i] == '*') {
            i += 1;
        }
        if i == start {
            return (vec![segs], i);
        }
        segs.push(chars[start..i].iter().collect::<String>());
        if i + 1 < chars.len() && chars[i] == ':' && chars[i + 1] == ':' {
            i += 2;
        } else {
            return (vec![segs], i);
        }
    }
}

/// Every path used by `text`, module `me`, as absolute segments. Inline
/// modules (`mod tests { ... }`) are followed, so `super::` inside them
/// names the file's own module.
fn paths_used(text: &str, me: &[String], known: &BTreeSet<Vec<String>>) -> Vec<Vec<String>> {
    let code = strip_comments(text);
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut depth = 0usize;
    // (brace depth inside the module, its name)
    let mut inline: Vec<(usize, String)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((depth, name));
                }
                i += 1;
                continue;
            }
            '}' => {
                if inline.last().is_some_and(|(d, _)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            ';' => pending_mod = None,
            _ => {}
        }
        if !is_ident(chars[i]) || (i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':')) {
            i += 1;
            continue;
        }
        let (paths, next) = read_paths(&chars, i);
        i = next.max(i + 1);
        let mut here = me.to_vec();
        here.extend(inline.iter().map(|(_, n)| n.clone()));
        for segs in paths {
            if segs.len() == 1 && segs[0] == "mod" {
                // `mod name {`: the name follows.
                let (name, after) = read_paths(&chars, i);
                if let Some(n) = name.first().and_then(|n| n.first()) {
                    pending_mod = Some(n.clone());
                }
                i = after.max(i);
                continue;
            }
            if segs.len() < 2 {
                continue;
            }
            let abs: Vec<String> = match segs[0].as_str() {
                "crate" => segs[1..].to_vec(),
                "super" => {
                    let mut base = here.clone();
                    let mut k = 0;
                    while k < segs.len() && segs[k] == "super" {
                        base.pop();
                        k += 1;
                    }
                    base.extend_from_slice(&segs[k..]);
                    base
                }
                "self" => {
                    let mut base = here.clone();
                    base.extend_from_slice(&segs[1..]);
                    base
                }
                first => {
                    // `use child::...` of a child module of this one.
                    let mut child = here.clone();
                    child.push(first.to_string());
                    if !known.contains(&child) {
                        continue;
                    }
                    let mut base = here.clone();
                    base.extend_from_slice(&segs);
                    base
                }
            };
            out.push(abs);
        }
    }
    out
}

/// The deepest known module that `path` names or lies in.
fn module_of(path: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| known.contains(m))
}

struct Graph {
    /// module -> modules it uses (other than itself).
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn graph(src: &Path) -> Graph {
    let mods = modules(src);
    let known: BTreeSet<Vec<String>> = mods.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (m, file) in &mods {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let mut used = BTreeSet::new();
        for p in paths_used(&text, m, &known) {
            if let Some(target) = module_of(&p, &known) {
                // A module's own items are not a dependency.
                if target != *m {
                    used.insert(target);
                }
            }
        }
        edges.insert(m.clone(), used);
    }
    Graph { edges }
}

fn layer_index(m: &[String]) -> Option<usize> {
    m.first()
        .and_then(|l| mmpool::LAYERS.iter().position(|x| x == l))
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_folder_is_a_layer_of_the_table() {
    let mut folders = BTreeSet::new();
    for e in std::fs::read_dir(src_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            folders.insert(p.file_name().unwrap().to_string_lossy().into_owned());
        } else {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                name, "lib.rs",
                "src/{name}: every module belongs in a layer folder"
            );
        }
    }
    let table: BTreeSet<String> = mmpool::LAYERS.iter().map(|s| s.to_string()).collect();
    assert_eq!(folders, table, "src/ folders and mmpool::LAYERS differ");
}

/// The upward uses in a graph, as readable lines.
fn upward_uses(g: &Graph) -> Vec<String> {
    let mut bad = Vec::new();
    for (m, used) in &g.edges {
        let Some(mine) = layer_index(m) else { continue };
        for t in used {
            if let Some(theirs) = layer_index(t) {
                if theirs > mine {
                    bad.push(format!(
                        "{} uses {} (a higher layer)",
                        m.join("::"),
                        t.join("::")
                    ));
                }
            }
        }
    }
    bad
}

/// Every cycle found (each as a module chain).
fn cycles(g: &Graph) -> Vec<String> {
    // Tarjan's strongly connected components.
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        on: BTreeSet<&'a Vec<String>>,
        stack: Vec<&'a Vec<String>>,
        next: usize,
        found: Vec<String>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.edges.get(v).into_iter().flatten() {
            let Some((w, _)) = s.g.edges.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.join("::"));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp.join(" <-> "));
            }
        }
    }
    let mut s = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in g.edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_layer_uses_a_layer_above_it() {
    let bad = upward_uses(&graph(&src_dir()));
    assert!(bad.is_empty(), "upward uses:\n{}", bad.join("\n"));
}

#[test]
fn no_module_cycle() {
    let found = cycles(&graph(&src_dir()));
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

/// The checker itself: a tree with a deliberate upward use and a cycle
/// is caught (so the two tests above cannot pass by reading nothing).
#[test]
fn the_checker_catches_an_upward_use_and_a_cycle() {
    let dir = std::env::temp_dir().join(format!("mmpool-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (f, text) in [
        ("lib.rs", "mod os; mod core;"),
        (
            "os/mod.rs",
            "pub(crate) mod pages; pub(crate) mod clock; pub(crate) mod env;",
        ),
        // An inline module's `super::*` is the file's own module: no edge.
        (
            "os/env.rs",
            "pub fn v() {} #[cfg(test)] mod tests { use super::*; }",
        ),
        // os uses core: upward.
        ("os/pages.rs", "fn f() { crate::core::slab::x(); }"),
        // clock <-> pages2 through a `use` and a `super::` path.
        (
            "os/clock.rs",
            "use crate::os::{self, pages::{y, z as w}}; // crate::core::slab::ignored",
        ),
        ("core/mod.rs", "pub(crate) mod slab;"),
        (
            "core/slab.rs",
            "use crate::os::clock::now; fn x() { super::super::os::clock::t(); }",
        ),
    ] {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let g = graph(&dir);
    let up = upward_uses(&g);
    assert_eq!(up, ["os::pages uses core::slab (a higher layer)"]);
    let c = cycles(&g);
    assert_eq!(c, ["core::slab <-> os::clock <-> os::pages"], "{c:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `Uses:` sentence of a module's opening `//!` block: the modules
/// it names in backquotes (`None` when there is no such sentence).
fn declared_uses(text: &str) -> Option<BTreeSet<Vec<String>>> {
    let doc: Vec<&str> = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect();
    let joined = doc.join(" ");
    let start = joined.find("Uses: ")?;
    let rest = &joined[start + 6..];
    let end = rest.find(". ").map_or(rest.len(), |e| e + 1);
    let sentence = &rest[..end];
    Some(
        sentence
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|m| m.split("::").map(str::to_string).collect())
            .collect(),
    )
}

/// The `Uses:` line a module should carry.
fn uses_line(used: &BTreeSet<Vec<String>>) -> String {
    if used.is_empty() {
        return "//! Uses: nothing of this crate.".to_string();
    }
    let names: Vec<String> = used.iter().map(|m| format!("`{}`", m.join("::"))).collect();
    format!("//! Uses: {}.", names.join(", "))
}

#[test]
fn every_module_says_truly_what_it_uses() {
    let src = src_dir();
    let g = graph(&src);
    let mut wrong = Vec::new();
    for (m, file) in modules(&src) {
        if m.is_empty() {
            continue; // lib.rs: the crate map
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let used = &g.edges[&m];
        if used.is_empty() && file.ends_with("mod.rs") {
            continue; // a layer's head: its doc says what the layer uses
        }
        if declared_uses(&text).as_ref() != Some(used) {
            wrong.push(format!("{}: {}", file.display(), uses_line(used)));
        }
    }
    assert!(
        wrong.is_empty(),
        "module docs whose `Uses:` sentence is missing or untrue:\n{}",
        wrong.join("\n")
    );
}
