//! The module graph: ARCHITECTURE.md declares each room of `src/` and the rooms it may use;
//! this test reads every `crate::` path in `src/` (comments and string literals skipped) and
//! fails on any the declaration forbids, naming file and line. It also fails when a room is
//! missing from the declaration or the declared arrows form a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::common::repo_root;
use crate::tidy::rust_files;

/// The declared graph: room → the rooms it may use (`None` for `*`, every room).
type Graph = BTreeMap<String, Option<BTreeSet<String>>>;

/// Reads the fenced block after the `<!-- module-graph -->` marker of ARCHITECTURE.md: one
/// line per room, `room -> other other …` (nothing after `->` for a room that uses none).
fn declared_graph(architecture: &str) -> Graph {
    let start = architecture.find("<!-- module-graph -->").expect("ARCHITECTURE.md has the marker");
    let block = &architecture[start..];
    let body = block.split("```").nth(1).expect("a fenced block follows the marker");
    let mut graph = Graph::new();
    for line in body.lines().skip(1).map(str::trim).filter(|line| !line.is_empty()) {
        let (room, uses) = line.split_once("->").unwrap_or_else(|| panic!("no `->` in {line:?}"));
        let uses: Vec<&str> = uses.split_whitespace().collect();
        let uses =
            if uses == ["*"] { None } else { Some(uses.iter().map(|u| (*u).to_owned()).collect()) };
        assert!(graph.insert(room.trim().to_owned(), uses).is_none(), "{room} declared twice");
    }
    graph
}

/// Replaces comments, string literals and char literals with spaces, keeping line breaks, so
/// that only code is searched.
pub fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let skip = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            block_comment_len(rest)
        } else if rest[0] == '"' {
            string_len(rest)
        } else if rest[0] == 'r' && matches!(rest.get(1), Some('"' | '#')) {
            let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
            if rest.get(1 + hashes) == Some(&'"') { raw_string_len(rest, hashes) } else { 0 }
        } else if rest[0] == '\'' {
            char_literal_len(rest)
        } else {
            0
        };
        if skip == 0 {
            out.push(rest[0]);
            i += 1;
        } else {
            out.extend(rest[..skip].iter().copied().map(blank));
            i += skip;
        }
    }
    out
}

fn block_comment_len(rest: &[char]) -> usize {
    let (mut depth, mut i) = (0_usize, 0);
    while i < rest.len() {
        if rest[i..].starts_with(&['/', '*']) {
            depth += 1;
            i += 2;
        } else if rest[i..].starts_with(&['*', '/']) {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    rest.len()
}

/// A `"…"` literal, escapes honoured.
fn string_len(rest: &[char]) -> usize {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    rest.len()
}

fn raw_string_len(rest: &[char], hashes: usize) -> usize {
    let mut close = vec!['"'];
    close.extend(std::iter::repeat_n('#', hashes));
    let body = 2 + hashes;
    (body..rest.len())
        .find(|&i| rest[i..].starts_with(&close))
        .map_or(rest.len(), |i| i + close.len())
}

/// A char literal (`'a'`, `'\n'`, `'\u{1F600}'`); 0 for a lifetime or label.
fn char_literal_len(rest: &[char]) -> usize {
    match rest.get(1) {
        Some('\\') => rest.iter().skip(2).position(|&c| c == '\'').map_or(0, |i| i + 3),
        Some(_) if rest.get(2) == Some(&'\'') => 3,
        _ => 0,
    }
}

/// Every room a `crate::` path names, with its 1-based line: `crate::x::…` names `x`, and
/// `crate::{a::…, b}` names `a` and `b`.
fn crate_uses(code: &str) -> Vec<(usize, String)> {
    let mut uses = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || matches!(c, '_' | '$' | ':')) {
            continue;
        }
        let after = &code[at + "crate::".len()..];
        let line = code[..at].matches('\n').count() + 1;
        if let Some(group) = after.strip_prefix('{') {
            let (mut depth, mut item_start) = (0_i32, true);
            for (offset, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        item_start = false;
                        let name: String = group[offset..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        let line = line + group[..offset].matches('\n').count();
                        uses.push((line, name));
                    }
                    _ => {}
                }
            }
        } else {
            let name: String =
                after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            uses.push((line, name));
        }
    }
    uses
}

/// The room of a file under `src/`: its first path component without `.rs`.
fn room_of(src: &Path, path: &Path) -> String {
    let first = path.strip_prefix(src).unwrap().components().next().unwrap();
    first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// Every import the declaration forbids, as `file:line: room uses other`.
fn violations(graph: &Graph, src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let room = room_of(src, &path);
        if room == "lib" || room == "main" {
            continue;
        }
        let Some(allowed) = graph.get(&room) else {
            found.push(format!("{}: room `{room}` is not declared", path.display()));
            continue;
        };
        let code = code_only(&std::fs::read_to_string(&path).unwrap());
        for (line, used) in crate_uses(&code) {
            let ok = used == room || allowed.as_ref().is_none_or(|allowed| allowed.contains(&used));
            if !ok {
                let file = path.strip_prefix(src.parent().unwrap()).unwrap().display();
                found.push(format!("{file}:{line}: `{room}` may not use `crate::{used}`"));
            }
        }
    }
    found
}

/// A cycle among the declared arrows (rooms declared `*` excluded), if any.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        room: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|r| r == room) {
            return Some(path[at..].to_vec());
        }
        if done.contains(room) {
            return None;
        }
        path.push(room.to_owned());
        for next in graph.get(room).cloned().flatten().unwrap_or_default() {
            if let Some(found) = visit(graph, &next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(room.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|room| visit(graph, room, &mut Vec::new(), &mut done))
}

#[test]
fn every_crate_import_follows_the_declared_graph() {
    let root = repo_root();
    let graph = declared_graph(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    assert!(graph.len() > 10, "the declaration lists every room: {graph:?}");
    for (room, uses) in &graph {
        for used in uses.iter().flatten() {
            assert!(graph.contains_key(used), "`{room}` may use `{used}`, which is not declared");
        }
    }
    assert_eq!(cycle(&graph), None, "the declared arrows must not form a cycle");
    let found = violations(&graph, &root.join("src"));
    assert!(
        found.is_empty(),
        "imports against ARCHITECTURE.md's module graph:\n{}",
        found.join("\n")
    );
}

/// The checker itself catches what it must: a forbidden import in a `use` group spread over
/// lines, a path in an expression, and nothing inside comments or strings.
#[test]
fn the_checker_sees_code_and_skips_comments_and_strings() {
    let source = "use crate::{\n    keys::Keys,\n    run::Context,\n};\n// crate::ops in a comment\n\
                  let s = \"crate::worker in a string\";\nlet c = '\"'; crate::api::call();\n\
                  /* crate::sim */ let r = r#\"crate::demo\"#; x::crate::no;";
    let uses = crate_uses(&code_only(source));
    let expect = [(2, "keys"), (3, "run"), (7, "api")].map(|(line, room)| (line, room.to_owned()));
    assert_eq!(uses, expect);
    let graph =
        declared_graph("<!-- module-graph -->\n```text\na -> b\nb -> c\nc -> a\nd -> *\n```");
    assert_eq!(cycle(&graph), Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]));
}
