//! Repository hygiene that review would otherwise have to catch: every Rust file opens with a
//! `//!` doc saying what it owns; there are no `mod.rs` files; no file of `src/` is over 400
//! lines; no two files in different rooms share a name (except the documented mirrors); and
//! nothing points at a document outside the repository. The module graph is `tidy_graph.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::repo_root;

/// Every `.rs` file under `dir`, recursively, appended to `out`.
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        let dir = repo_root().join(dir);
        if dir.exists() {
            rust_files(&dir, &mut files);
        }
    }
    assert!(files.len() > 10, "found only {files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().trim_start().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "files without a leading //! doc: {missing:?}");
    let mod_rs: Vec<_> = files.iter().filter(|path| path.ends_with("mod.rs")).collect();
    assert!(mod_rs.is_empty(), "use name.rs + name/ instead of mod.rs: {mod_rs:?}");
}

/// Files of `src/` longer than this are split along their natural seams (unit tests included).
const MAX_LINES: usize = 400;

#[test]
fn no_source_file_is_over_the_line_limit() {
    let mut files = Vec::new();
    rust_files(&repo_root().join("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .map(|path| (path, std::fs::read_to_string(path).unwrap().lines().count()))
        .filter(|(_, n_lines)| *n_lines > MAX_LINES)
        .map(|(path, n_lines)| format!("{} ({n_lines} lines)", path.display()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

/// A name may repeat only where ARCHITECTURE.md says the repetition is the point: a command's
/// file in `cli/` is named after the room it drives, and `sim/` mirrors the client it fakes.
#[test]
fn no_two_rooms_have_files_of_the_same_name() {
    let src = repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        by_name.entry(name).or_default().push(relative);
    }
    let mirrors = |path: &String| path.starts_with("cli/") || path.starts_with("sim/");
    let clashes: Vec<_> = by_name
        .into_iter()
        .filter(|(name, paths)| {
            name != "tests.rs" && paths.iter().filter(|p| !mirrors(p)).count() > 1
        })
        .collect();
    assert!(clashes.is_empty(), "files of the same name in different rooms: {clashes:?}");
}

#[test]
fn nothing_points_at_documents_outside_the_repository() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["src", "tests", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.extend(["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md"].map(|name| root.join(name)));
    let section_sign = '\u{a7}';
    // The team's design notes and the vendors' specs live beside the repository, not in it.
    let outside = [concat!("DESIGN", ".md"), concat!("shared", "/"), concat!("spec", "/")];
    let found: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let hits: Vec<String> = text
                .lines()
                .enumerate()
                .filter(|(_, line)| {
                    line.contains(section_sign)
                        || outside.iter().any(|document| line.contains(document))
                })
                .map(|(i, _)| format!("{}:{}", path.display(), i + 1))
                .collect();
            hits
        })
        .collect();
    assert!(found.is_empty(), "references to documents outside the repository: {found:?}");
}

/// Every `src/` file with its path relative to `src/` and its text.
fn sources() -> Vec<(String, String)> {
    let src = repo_root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            (relative, std::fs::read_to_string(path).unwrap())
        })
        .collect()
}

/// `file:line` of every line of `text` (comments skipped) for which `hit` holds.
fn lines_where(file: &str, text: &str, hit: impl Fn(&str) -> bool) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//") && hit(line))
        .map(|(i, _)| format!("src/{file}:{}", i + 1))
        .collect()
}

#[test]
fn no_key_is_formatted_outside_keys_rs() {
    let key_shapes = ["format!(\"{}:", "format!(\"{prefix}:"];
    let found: Vec<String> = sources()
        .iter()
        .filter(|(file, _)| file != "keys.rs" && !file.starts_with("keys/"))
        .flat_map(|(file, text)| {
            lines_where(file, text, |line| key_shapes.iter().any(|shape| line.contains(shape)))
        })
        .collect();
    assert!(found.is_empty(), "Redis keys formatted outside src/keys.rs: {found:?}");
}

#[test]
fn the_environment_is_read_only_in_config() {
    let conventional = ["\"NO_COLOR\"", "\"PATH\"", "\"RUST_LOG\""];
    let reads = ["env::var(", "env::var_os(", "env::vars("];
    // The OpenTelemetry variables (`OTEL_*`) are the SDK's own, and the SDK reads most of them
    // itself; `telemetry/trace.rs` reads the few that decide whether it starts at all.
    let found: Vec<String> = sources()
        .iter()
        .filter(|(file, _)| !file.starts_with("config") && file != "telemetry/trace.rs")
        .flat_map(|(file, text)| {
            lines_where(file, text, |line| {
                reads.iter().any(|read| line.contains(read))
                    && !conventional.iter().any(|name| line.contains(name))
            })
        })
        .collect();
    assert!(found.is_empty(), "environment read outside src/config: {found:?}");
}

#[test]
fn apalis_stays_in_the_backend_and_the_worker() {
    let found: Vec<String> = sources()
        .iter()
        .filter(|(file, _)| file != "queue/backend.rs" && !file.starts_with("worker"))
        .filter(|(_, text)| crate::tidy_graph::code_only(text).contains("apalis"))
        .map(|(file, _)| format!("src/{file}"))
        .collect();
    assert!(found.is_empty(), "apalis used outside queue/backend.rs and worker/: {found:?}");
}

/// Every metric the code records has `# HELP` text (the table in `telemetry/metrics/help.rs`).
#[test]
fn every_metric_family_has_help_text() {
    let recorded =
        regex::Regex::new(r#"(?:counter|gauge|histogram)!\(\s*"(agentcron_[a-z_]+)""#).unwrap();
    let help =
        std::fs::read_to_string(crate::common::repo_root().join("src/telemetry/metrics/help.rs"))
            .unwrap();
    let mut missing: Vec<String> = sources()
        .iter()
        .flat_map(|(_, text)| {
            recorded.captures_iter(text).map(|c| c[1].to_owned()).collect::<Vec<_>>()
        })
        .filter(|name| !help.contains(&format!("\"{name}\",")))
        .collect();
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "metrics without HELP text: {missing:?}");
}
