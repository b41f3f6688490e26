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
