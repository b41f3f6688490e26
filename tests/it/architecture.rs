//! The source layout follows the pipeline: a module imports only modules below it (docs/architecture.md).
//!
//! Checked by reading `crate::` paths in `src/`, so a new upward import, a circle between folders or a new
//! top-level module that has no place in the pipeline fails here with the file and the path that broke it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules from the top of the pipeline down. A module may use modules of lower rows only; modules
/// sharing a row are independent of each other.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["serve"],
    &["ops"],
    &["checks", "format"],
    &["scheduler"],
    &["plan"],
    &["project"],
    &["state", "storage"],
    &["snapshot"],
    &["engine"],
    &["config"],
    &["intervals"],
    &["sql"],
    &["error", "failpoint", "profile"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|row| row.contains(&module))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to; `None` for the crate roots (`lib.rs` and the binaries' mains).
fn owning_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("file under src/");
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    match first.strip_suffix(".rs") {
        Some("lib" | "main" | "engine_main") => None,
        Some(stem) => Some(stem.to_string()),
        None => Some(first),
    }
}

/// The top-level modules a file's code names through `crate::` (comments skipped), with their line numbers.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b}`: the first name of each item, at the group's top level.
                let mut depth = 0;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                            found.push((index + 1, leading_ident(&group[i..])));
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                found.push((index + 1, leading_ident(rest)));
            }
        }
    }
    found
}

fn leading_ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn modules_import_only_modules_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut modules = BTreeSet::new();
    for file in &files {
        let Some(module) = owning_module(&src, file) else {
            continue;
        };
        modules.insert(module.clone());
        let Some(own_layer) = layer_of(&module) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for (line, target) in crate_references(&text) {
            // Items of the crate root (`crate::PROD`) and the module itself are always in reach.
            if target == module || target.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            match layer_of(&target) {
                Some(target_layer) if target_layer > own_layer => {}
                Some(_) => problems.push(format!(
                    "{}:{line}: `{module}` uses `crate::{target}`, which is not below it",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                None => problems.push(format!(
                    "{}:{line}: `crate::{target}` is not a module of the pipeline",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
            }
        }
    }
    for module in &modules {
        if layer_of(module).is_none() {
            problems.push(format!(
                "src/{module} has no place in LAYERS (tests/it/architecture.rs) nor in docs/architecture.md"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_says_what_it_owns() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let undocumented: Vec<String> = files
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file).expect("a readable source file");
            !text.starts_with("//! ")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a `//!` line saying what they own:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn the_reference_scanner_reads_paths_and_groups() {
    let text = "use crate::sql::{ModelName, quote_ident};\n// crate::cli in a comment\nuse crate::{plan::Plan, ops};\nlet x = crate::engine::Engine::in_memory();";
    let found: Vec<(usize, String)> = crate_references(text);
    assert_eq!(
        found,
        vec![
            (1, "sql".to_string()),
            (3, "plan".to_string()),
            (3, "ops".to_string()),
            (4, "engine".to_string())
        ]
    );
}
