//! The examples of README.md and docs/ run as written, so they cannot drift from what lake does.

use std::path::{Path, PathBuf};

use crate::common::{Scratch, stderr, stdout};

/// The edit README's walkthrough asks for, and the line that asks for it.
const README_EDIT: &str = "add `WHERE item_id IS NOT NULL` above `GROUP BY`";

fn repository_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of the first fenced block (opening with "```" + `fence`) after `heading` in `text`.
fn fenced_block<'a>(text: &'a str, heading: &str, fence: &str) -> Vec<&'a str> {
    let after = &text[text.find(heading).expect("the heading")..];
    let mut lines = after.lines().skip_while(|l| *l != format!("```{fence}"));
    lines.next().expect("the block's opening fence");
    lines.take_while(|l| *l != "```").collect()
}

/// Every fenced block (opening with "```" + `fence`) of the section under `heading`, up to the next heading
/// of its level, each as one text.
fn section_blocks(text: &str, heading: &str, fence: &str) -> Vec<String> {
    let level = heading.split(' ').next().unwrap_or("#").to_string() + " ";
    let after = &text[text.find(heading).expect("the heading") + heading.len()..];
    let section = after
        .find(&format!("\n{level}"))
        .map_or(after, |end| &after[..end]);
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while lines.any(|l| l == format!("```{fence}")) {
        blocks.push(
            lines
                .by_ref()
                .take_while(|l| *l != "```")
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    blocks
}

/// The block of `blocks` holding `marker`.
fn block_with<'a>(blocks: &'a [String], marker: &str) -> &'a str {
    blocks
        .iter()
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no example holds `{marker}`: {blocks:?}"))
}

/// The folder holding the `lake` binary under test, to put first on PATH as a user's install would.
fn lake_bin_dir() -> PathBuf {
    assert_cmd::cargo::cargo_bin("lake")
        .parent()
        .expect("the binary's folder")
        .to_path_buf()
}

/// Runs one line of the walkthrough with `sh` in `dir`, as typed into a shell (no terminal: plans that
/// would ask only print).
fn run_line(line: &str, dir: &Path) -> std::process::Output {
    let path = format!(
        "{}:{}",
        lake_bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sh")
}

#[test]
fn readme_walkthrough_runs_top_to_bottom() {
    let readme = repository_file("README.md");
    let block = fenced_block(&readme, "## Using lake", "sh");
    assert!(block.len() > 20, "the walkthrough is there: {block:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("demo");
    let mut edited = false;
    for line in block {
        if line.starts_with("# edit models/full_model.sql") {
            assert!(
                line.contains(README_EDIT),
                "the edit the test makes: {line}"
            );
            let model = project.join("models/full_model.sql");
            let text = std::fs::read_to_string(&model).expect("full_model.sql");
            assert!(text.contains("GROUP BY"), "{text}");
            std::fs::write(
                &model,
                text.replace("GROUP BY", "WHERE item_id IS NOT NULL\nGROUP BY"),
            )
            .expect("edit");
            edited = true;
            continue;
        }
        // The first line creates the project and moves into it; the others run inside it.
        let (command, cwd) = match line.strip_prefix("lake init demo && cd demo") {
            Some(_) => ("lake init demo", dir.path()),
            None => (line, project.as_path()),
        };
        let output = run_line(command, cwd);
        assert!(
            output.status.success(),
            "README line `{line}` exited {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status.code(),
            stdout(&output),
            stderr(&output)
        );
    }
    assert!(edited, "the walkthrough asks for an edit");
    // The edit reached prod through dev: the filter is in prod's query.
    let rendered = run_line("lake render demo.full_model", &project);
    assert!(
        stdout(&rendered).contains("IS NOT NULL"),
        "{}",
        stdout(&rendered)
    );
}

#[test]
fn walkthrough_restatement_says_what_it_restates() {
    let s = Scratch::init_with_unit_tests();
    assert!(s.apply(crate::common::EXEC).status.success());
    let output = s
        .lake()
        .args([
            "plan",
            "--restate-model",
            "demo.incremental_model",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-31",
            "--execution-time",
            crate::common::EXEC,
        ])
        .output()
        .expect("lake");
    let out = stdout(&output);
    assert!(
        out.starts_with(
            "No model changes: project files match the `prod` environment; restating 3 model(s)\n"
        ),
        "{out}"
    );
}

#[test]
fn models_md_unit_test_example_passes_on_the_demo() {
    let docs = repository_file("docs/models.md");
    let yaml = fenced_block(&docs, "## Unit tests", "yaml").join("\n");
    let s = Scratch::init_with_unit_tests();
    s.write("tests/test_docs_example.yaml", &yaml);
    let output = s
        .lake()
        .args(["test", "tests/test_docs_example.yaml"])
        .output()
        .expect("lake");
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("Ran 2 test(s): 2 passed"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn models_md_model_example_plans_on_the_demo() {
    let docs = repository_file("docs/models.md");
    let model = fenced_block(&docs, "# Models", "sql").join("\n");
    assert!(model.contains("SET threads = 4;"), "{model}");
    let s = Scratch::init();
    s.write("models/full_model.sql", &model);
    let output = s.apply(crate::common::EXEC);
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert_eq!(s.csv("SELECT COUNT(*) AS n FROM demo.full_model"), "n\n3\n");
}

/// The audit examples of docs/models.md: a project audit with defaults, used by a model, and a model file
/// carrying its own audit after its query.
#[test]
fn models_md_audit_examples_run() {
    let docs = repository_file("docs/models.md");
    let blocks = section_blocks(&docs, "## Audits", "sql");
    let s = Scratch::init();
    s.write(
        "audits/no_negative.sql",
        block_with(&blocks, "AUDIT (name no_negative"),
    );
    let full = s.read("models/full_model.sql").replace(
        "audits (assert_positive_order_ids)",
        "audits (assert_positive_order_ids, no_negative(column := num_orders))",
    );
    s.write("models/full_model.sql", &full);
    s.write(
        "models/raw_orders.sql",
        "MODEL (name raw.orders, kind FULL);\nSELECT 1 AS id, 5.0 AS amount\n",
    );
    s.write("models/orders.sql", block_with(&blocks, "name shop.orders"));
    let out = s.apply(crate::common::EXEC);
    assert!(out.status.success(), "{}", stderr(&out));
    let audited = stdout(&s.lake().args(["audit"]).output().expect("lake"));
    assert!(
        audited.contains("no_negative") && audited.contains("positive_amount"),
        "{audited}"
    );
    // The inline audit is the model's own: a bad row fails it.
    s.write(
        "models/raw_orders.sql",
        "MODEL (name raw.orders, kind FULL);\nSELECT 1 AS id, -5.0 AS amount\n",
    );
    let out = s
        .lake()
        .args([
            "plan",
            "--auto-apply",
            "--execution-time",
            crate::common::EXEC,
        ])
        .output()
        .expect("lake");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("audit `positive_amount` of model `shop.orders` failed"),
        "{}",
        stderr(&out)
    );
}

/// docs/models.md's linter settings read as written: `lake lint` runs the rules (findings exit 1, a bad
/// setting would be a configuration error).
#[test]
fn models_md_linter_example_reads() {
    let docs = repository_file("docs/models.md");
    let linter = block_with(&section_blocks(&docs, "## Linting", "yaml"), "linter:").to_string();
    let s = Scratch::init();
    let config = s.read("config.yaml");
    s.write("config.yaml", &format!("{config}\n{linter}\n"));
    let out = s.lake().args(["lint"]).output().expect("lake");
    let err = stderr(&out);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    assert!(!err.contains("config.yaml:"), "{err}");
    // `nomissingowner` is only a warning, `nomissingunittest` never checked.
    let shown = format!("{}{err}", stdout(&out));
    assert!(shown.contains("nomissingowner"), "{shown}");
    assert!(!shown.contains("nomissingunittest"), "{shown}");
}

/// docs/configuration.md's default storage, written out, is what lake does anyway.
#[test]
fn configuration_md_storage_example_plans() {
    let docs = repository_file("docs/configuration.md");
    let storage = block_with(
        &section_blocks(&docs, "## Storage (lake's own key)", "yaml"),
        "type: sqlite",
    )
    .to_string();
    let s = Scratch::init();
    let config = s.read("config.yaml");
    s.write("config.yaml", &format!("{config}\n{storage}\n"));
    let out = s.apply(crate::common::EXEC);
    assert!(out.status.success(), "{}", stderr(&out));
    s.assert_demo_results();
}
