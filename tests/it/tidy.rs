//! Repository hygiene that review would otherwise have to catch: every Rust file opens with a
//! `//!` doc saying what it owns, and there are no `mod.rs` files.

use std::path::{Path, PathBuf};

use crate::common::repo_root;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
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
