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

/// The top-level module a file belongs to; `None` for the crate roots (`lib.rs` and the binaries in `bin/`).
fn owning_module(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).expect("file under src/");
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    if first == "bin" {
        return None;
    }
    match first.strip_suffix(".rs") {
        Some("lib") => None,
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

/// The sibling modules a file's code names (its tests may use anything): `super::x` and
/// `crate::<its folder>::x`, where `x` is a file or folder beside it.
fn sibling_references(
    text: &str,
    folder_path: &str,
    siblings: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let qualified = format!("crate::{folder_path}::");
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for prefix in ["super::", qualified.as_str()] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                rest = &rest[at + prefix.len()..];
                let names: Vec<String> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split(['}', ','])
                        .map(|item| leading_ident(item.trim_start()))
                        .collect(),
                    None => vec![leading_ident(rest)],
                };
                found.extend(names.into_iter().filter(|n| siblings.contains(n)));
            }
        }
    }
    found
}

/// A circle of imports among the files of `folder`, if there is one.
fn circle_in(folder: &Path, src: &Path) -> Option<Vec<String>> {
    let mut modules = BTreeSet::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).expect("a readable folder") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_stem()?.to_string_lossy().to_string();
        if name == "mod" {
            continue;
        }
        if path.is_dir() {
            let root = path.join("mod.rs");
            if root.is_file() {
                modules.insert(name.clone());
                files.push((name, root));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            modules.insert(name.clone());
            files.push((name, path));
        }
    }
    let folder_path = folder
        .strip_prefix(src)
        .ok()?
        .to_string_lossy()
        .replace('/', "::");
    let edges: std::collections::BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(name, file)| {
            let text = std::fs::read_to_string(file).expect("a readable source file");
            let mut uses = sibling_references(&text, &folder_path, &modules);
            uses.remove(name);
            (name.clone(), uses)
        })
        .collect();
    // Depth-first search for a back edge; the path to it is the circle.
    fn visit(
        node: &str,
        edges: &std::collections::BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, &edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_folder_has_an_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut folders = vec![];
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable folder") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path.clone());
                folders.push(path);
            }
        }
    }
    folders.sort();
    let circles: Vec<String> = folders
        .iter()
        .filter_map(|folder| {
            let circle = circle_in(folder, &src)?;
            Some(format!(
                "{}: {}",
                folder.strip_prefix(&src).unwrap_or(folder).display(),
                circle.join(" → ")
            ))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "files that import each other (move what both need into a module below them):\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_top_of_src_stays_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let entries = std::fs::read_dir(&src).expect("src/ is readable").count();
    assert!(
        entries <= 20,
        "src/ has {entries} entries; a new top-level module belongs in the pipeline's folders"
    );
}

#[test]
fn the_drawing_in_architecture_md_is_the_layering_enforced_here() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md is readable");
    let drawing = page
        .split("```")
        .nth(1)
        .expect("architecture.md opens with the pipeline drawing");
    // The modules of a row are written left of the descriptions, which start at column 32.
    let drawn: Vec<Vec<String>> = drawing
        .lines()
        .map(|line| {
            let left: String = line.chars().take(31).collect();
            left.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|word| !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase()))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|row| !row.is_empty())
        .collect();
    let enforced: Vec<Vec<String>> = LAYERS
        .iter()
        .map(|row| row.iter().map(|m| m.to_string()).collect())
        .collect();
    assert_eq!(
        drawn, enforced,
        "docs/architecture.md draws other rows than LAYERS enforces"
    );
}
