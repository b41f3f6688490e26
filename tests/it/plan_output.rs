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
