//! The exact shape of plan output: the terminal tree and the Markdown a pipe gets, as insta snapshots.

use crate::common::{EXEC, Scratch, stderr, stdout};
use lake::cli::output::{Audience, render_plan};
use lake::ops::Context;
use lake::plan::PlanOptions;

/// A project with one non-breaking change (full_model gains a column) and one breaking change (a filter in
/// view_model), planned for a new dev environment.
fn changed_project() -> Scratch {
    let s = Scratch::init();
    s.apply(EXEC);
    let full = s.read("models/full_model.sql").replace(
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) AS num_orders,\n  MAX(id) AS max_id",
    );
    s.write("models/full_model.sql", &full);
    let view = s
        .read("models/view_model.sql")
        .replace("num_orders > 1", "num_orders > 2");
    s.write("models/view_model.sql", &view);
    s
}

#[test]
fn markdown_plan_for_a_pipe() {
    let s = changed_project();
    let out = s
        .lake()
        .args(["plan", "dev", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("markdown_dev_plan", stdout(&out));
}

#[test]
fn terminal_plan_is_a_tree() {
    let s = changed_project();
    let ctx = Context::load(&s.project, None).unwrap();
    let execution_time = lake::ops::execution_time(Some(EXEC)).unwrap();
    let plan = ctx.plan(&PlanOptions::new("dev", execution_time)).unwrap();
    console::set_colors_enabled(false);
    insta::assert_snapshot!("terminal_dev_plan", render_plan(&plan, Audience::Terminal));
}

/// At a terminal the plan shows its summary and diff, then asks which category each change gets, then shows
/// what it builds and asks whether to apply, as SQLMesh does (here a category is chosen, so it re-plans).
#[test]
fn a_terminal_plan_asks_about_changes_after_showing_them() {
    let Some(python) = crate::common::readers::python_with_pty() else {
        return;
    };
    let s = changed_project();
    // An answer that is no choice is asked again, at both questions.
    let answers = serde_json::json!([
        ["Keep it, or choose", "x"],
        ["Please answer b, n or f, or press Enter to keep it.", "b"],
        ["Keep it, or choose", ""],
        ["Apply this plan to `dev`?", "maybe"],
        ["Please answer y or n.", "n"]
    ]);
    let lake = assert_cmd::cargo::cargo_bin("lake");
    let out = std::process::Command::new(python)
        .current_dir(&s.project)
        .env("NO_COLOR", "1")
        .arg(crate::common::readers::support("pty_session.py"))
        .arg(answers.to_string())
        .arg(&lake)
        .args(["plan", "dev", "--execution-time", EXEC])
        .output()
        .unwrap();
    let shown = stdout(&out);
    assert!(out.status.success(), "{shown}{}", stderr(&out));
    let at = |text: &str| {
        shown
            .find(text)
            .unwrap_or_else(|| panic!("`{text}` not shown:\n{shown}"))
    };
    let diff = at("MAX(id) AS max_id");
    let question = at("Keep it, or choose");
    let backfill = at("Models needing backfill");
    let confirm = at("Apply this plan to `dev`?");
    assert!(
        diff < question && question < backfill && backfill < confirm,
        "diff, category question, backfill, confirmation in that order:\n{shown}"
    );
    assert!(
        !shown[question..].contains("MAX(id) AS max_id"),
        "the diff is shown once:\n{shown}"
    );
    let question_line = shown[..question].lines().last().unwrap_or_default();
    assert!(
        question_line.contains("demo.full_model") && question_line.contains("Non-breaking"),
        "the question names the change and its automatic category:\n{shown}"
    );
    assert!(
        shown[backfill..confirm].contains("demo__dev.full_model: [full refresh]"),
        "the re-planned backfill still builds the changed model:\n{shown}"
    );
    // The changes are shown again with the chosen category before the backfill.
    let again = at("With your choices:");
    assert!(question < again && again < backfill, "{shown}");
    assert!(
        shown[again..backfill].contains("demo__dev.full_model (Breaking"),
        "{shown}"
    );
    assert!(
        shown[confirm..].contains("Not applied: `dev` is unchanged."),
        "{shown}"
    );
    let listed = crate::common::stdout(&s.lake().args(["environments"]).output().unwrap());
    assert!(!listed.contains("dev "), "{listed}");
}

#[test]
fn a_model_changed_only_through_its_audit_shows_no_empty_diff() {
    let s = Scratch::init();
    s.apply(EXEC);
    s.write(
        "audits/assert_positive_order_ids.sql",
        &s.read("audits/assert_positive_order_ids.sql")
            .replace("item_id < 0", "item_id <= 0"),
    );
    let out = s
        .lake()
        .args(["plan", "--execution-time", EXEC])
        .output()
        .unwrap();
    let shown = stdout(&out);
    assert!(shown.contains("`demo.full_model` (Metadata)"), "{shown}");
    assert!(!shown.contains("```diff"), "{shown}");
}
