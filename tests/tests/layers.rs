//! The layers the folders show, checked: what must not depend on what.
//!
//! - `berth-core` (the domain and the store) depends on no wire protocol: not on tonic,
//!   prost or `berth-common` (the generated `berth.v1` types), in its manifest or in its
//!   code.
//! - In the server, only `api/` names tonic, prost or the generated protocol.
//! - No module of either crate imports, directly or through others, a module that
//!   imports it back.
//! - Within the core, the store and the error table name nothing above them, and `live`
//!   calls nothing of the domain (it may name its value types: ids, states, specs).
//!
//! These read the source as text: a rule broken in any file fails here with the file and
//! line, before review.

#![expect(clippy::unwrap_used, reason = "tests: a failure should fail the test")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates that speak the wire protocol; the domain must not name them.
const WIRE_CRATES: [&str; 6] = [
    "tonic",
    "tonic-prost",
    "tonic-health",
    "tonic-reflection",
    "prost",
    "prost-types",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, with its module path (`work::lifecycle`; `` for lib.rs).
fn modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                if !["mod", "lib", "main"].contains(&name.as_str()) {
                    module.push(name);
                }
                out.insert(module.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &[], &mut out);
    out
}

/// The lines of a file that are code: comments dropped, and everything from a
/// `#[cfg(test)]` on (unit tests may use what they like).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            // A `//` inside a string (a URL) is rare in these crates; good enough here.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        lines.push((i + 1, code.to_owned()));
    }
    lines
}

/// The modules of the same crate that each module names (`crate::a::b...`), resolved to
/// the longest module path that exists.
fn edges(modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<(String, usize)>> {
    let mut out = BTreeMap::new();
    for (module, path) in modules {
        let mut targets = BTreeSet::new();
        // Join the file so `use crate::work::{a, b}` across lines reads as one.
        let lines = code_lines(path);
        for (number, line) in &lines {
            let mut rest = line.as_str();
            while let Some(at) = rest.find("crate::") {
                let after = &rest[at + "crate::".len()..];
                for named in paths_named(after, &lines, *number) {
                    if let Some(target) = resolve(modules, &named)
                        && target != *module
                        && !target.is_empty()
                    {
                        targets.insert((target, *number));
                    }
                }
                rest = after;
            }
        }
        out.insert(module.clone(), targets);
    }
    out
}

/// The paths a `crate::` reference names: `a::b::c` gives one; `a::{b, c::d}` gives
/// `a::b` and `a::c::d` (a group may continue on the following lines).
fn paths_named(after: &str, lines: &[(usize, String)], number: usize) -> Vec<String> {
    let mut prefix = Vec::new();
    let mut chars = after;
    loop {
        let end = chars
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(chars.len());
        let segment = &chars[..end];
        if segment.is_empty() {
            break;
        }
        prefix.push(segment.to_owned());
        let next = &chars[end..];
        if let Some(stripped) = next.strip_prefix("::") {
            if let Some(group) = stripped.strip_prefix('{') {
                let mut body = group.to_owned();
                if !body.contains('}') {
                    for (_, line) in lines.iter().filter(|(n, _)| *n > number) {
                        body.push_str(line);
                        if line.contains('}') {
                            break;
                        }
                    }
                }
                let body = &body[..body.find('}').unwrap_or(body.len())];
                return body
                    .split(',')
                    .map(|item| {
                        let item = item.trim();
                        let first: String = item
                            .split(|c: char| c.is_whitespace())
                            .next()
                            .unwrap_or("")
                            .to_owned();
                        let mut path = prefix.clone();
                        path.extend(
                            first
                                .split("::")
                                .filter(|s| !s.is_empty() && *s != "self")
                                .map(str::to_owned),
                        );
                        path.join("::")
                    })
                    .collect();
            }
            chars = stripped;
        } else {
            break;
        }
    }
    vec![prefix.join("::")]
}

/// The longest existing module that `path` is in.
fn resolve(modules: &BTreeMap<String, PathBuf>, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").collect();
    while !parts.is_empty() {
        let candidate = parts.join("::");
        if modules.contains_key(&candidate) {
            return Some(candidate);
        }
        parts.pop();
    }
    None
}

/// A cycle among `edges`, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<(String, usize)>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<(String, usize)>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for (next, _) in edges.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, edges, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            let mut path = Vec::new();
            if let Some(cycle) = visit(node, edges, &mut marks, &mut path) {
                return Some(cycle);
            }
        }
    }
    None
}

/// `file:line: text` for every code line of `files` that names one of `words` as a path
/// (`word::`) or crate.
fn naming(files: &BTreeMap<String, PathBuf>, words: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for path in files.values() {
        for (number, line) in code_lines(path) {
            for word in words {
                let word = word.replace('-', "_");
                let named = line.match_indices(&word).any(|(at, _)| {
                    let before = line[..at].chars().next_back();
                    let after = &line[at + word.len()..];
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                        && (after.starts_with("::") || after.starts_with(';'))
                });
                if named {
                    found.push(format!("{}:{number}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_core_depends_on_no_wire_protocol_crate() {
    let manifest = workspace().join("core/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let parsed: toml::Table = text.parse().unwrap();
    let mut forbidden: Vec<&str> = WIRE_CRATES.to_vec();
    forbidden.push("berth-common");
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        let Some(deps) = parsed.get(section).and_then(|d| d.as_table()) else {
            continue;
        };
        for name in deps.keys() {
            assert!(
                !forbidden.contains(&name.as_str()),
                "{}: [{section}] names {name}; the domain must not know the wire protocol (convert at the API edge instead)",
                manifest.display()
            );
        }
    }
}

#[test]
fn no_core_source_names_the_wire_protocol() {
    let files = modules(&workspace().join("core/src"));
    assert!(
        files.len() > 20,
        "expected the core's modules, found {files:?}"
    );
    let mut words: Vec<&str> = WIRE_CRATES.to_vec();
    words.push("berth_common");
    let found = naming(&files, &words);
    assert!(
        found.is_empty(),
        "the domain names the wire protocol:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_api_edge_of_the_server_names_tonic_or_the_protocol() {
    let files = modules(&workspace().join("server/src"));
    let outside_api: BTreeMap<String, PathBuf> = files
        .into_iter()
        .filter(|(module, _)| module != "api" && !module.starts_with("api::"))
        .collect();
    let mut words: Vec<&str> = WIRE_CRATES.to_vec();
    words.push("proto");
    let found = naming(&outside_api, &words);
    assert!(
        found.is_empty(),
        "server code outside api/ names the wire protocol:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_module_imports_itself_back_through_others() {
    for krate in ["core", "server"] {
        let files = modules(&workspace().join(format!("{krate}/src")));
        let graph = edges(&files);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{krate}: modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_lower_rooms_of_the_core_name_nothing_above_them() {
    let files = modules(&workspace().join("core/src"));
    let graph = edges(&files);
    let value_types = ["work::ids", "work::state", "work::report", "work::spec"];
    // (room, what it may name besides itself)
    let rules: [(&str, Vec<&str>); 3] = [
        ("error", vec![]),
        (
            "store",
            vec!["error", "work::ids", "work::state", "work::spec"],
        ),
        (
            "live",
            [vec!["error", "store", "access::auth"], value_types.to_vec()].concat(),
        ),
    ];
    let inside =
        |module: &str, room: &str| module == room || module.starts_with(&format!("{room}::"));
    let mut broken = Vec::new();
    for (room, allowed) in &rules {
        for (module, targets) in graph.iter().filter(|(m, _)| inside(m, room)) {
            for (target, line) in targets {
                if !inside(target, room) && !allowed.iter().any(|a| inside(target, a)) {
                    broken.push(format!("{module} names {target} (line {line})"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "a lower room names a higher one:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_checks_see_imports_and_cycles() {
    // The parser and the cycle finder, on known input, so the tests above cannot pass by
    // seeing nothing.
    let lines = vec![(
        1,
        "use crate::work::{lifecycle, ids::AttemptKey};".to_owned(),
    )];
    assert_eq!(
        paths_named("work::{lifecycle, ids::AttemptKey};", &lines, 1),
        ["work::lifecycle", "work::ids::AttemptKey"]
    );
    let files = modules(&workspace().join("core/src"));
    let graph = edges(&files);
    let named = |from: &str, to: &str| graph[from].iter().any(|(t, _)| t == to);
    assert!(named("work::scheduler", "live::hub"));
    assert!(named("work::lifecycle", "work::deps"));
    let mut circle = BTreeMap::new();
    circle.insert("a".to_owned(), BTreeSet::from([("b".to_owned(), 1)]));
    circle.insert("b".to_owned(), BTreeSet::from([("a".to_owned(), 1)]));
    assert_eq!(
        find_cycle(&circle),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}
