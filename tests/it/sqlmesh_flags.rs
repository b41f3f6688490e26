//! The `plan` and `run` flags SQLMesh users type: what is backfilled (`--skip-backfill`/`--dry-run`,
//! `--empty-backfill`, `--backfill-model`), `--explain`, `--diff-rendered`, `--no-auto-categorization`, and
//! `run --select-model` selectors, `--no-auto-upstream`, `--exit-on-env-update` and the janitor after a run.

use crate::common::{EXEC, Scratch, built_models, stderr, stdout};

fn lake(s: &Scratch, args: &[&str]) -> std::process::Output {
    s.lake().args(args).output().expect("run lake")
}

fn rows(s: &Scratch, table: &str) -> String {
    s.csv(&format!("select count(*) as n from {table}"))
}

#[test]
fn a_skipped_backfill_creates_empty_tables_that_the_next_run_fills() {
    let s = Scratch::init();
    let out = plan_text(&s, &["--dry-run", "--auto-apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no rows: missing until run"),
        "{}",
        stdout(&out)
    );
    assert_eq!(rows(&s, "demo.full_model"), "n\n0\n");
    assert_eq!(rows(&s, "demo.incremental_model"), "n\n0\n");
    let out = lake(&s, &["run", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.assert_demo_results();
    s.assert_no_changes();
}

#[test]
fn an_empty_backfill_records_the_intervals_so_nothing_is_ever_built() {
    let s = Scratch::init();
    let out = plan_text(&s, &["--empty-backfill", "--auto-apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows(&s, "demo.seed_model"), "n\n0\n");
    let out = lake(&s, &["run", "--execution-time", EXEC]);
    assert!(stderr(&out).contains("Nothing to run"), "{}", stderr(&out));
    assert_eq!(rows(&s, "demo.full_model"), "n\n0\n");
    s.assert_no_changes();
    let out = plan_text(&s, &["--empty-backfill", "--skip-backfill"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `--backfill-model` fills the selected models and their upstream; the others of the dev plan are created
/// empty, and prod refuses the flag.
#[test]
fn backfill_model_fills_only_the_selection_and_its_upstream_in_dev() {
    let s = incremental_changed();
    let out = plan_text(
        &s,
        &[
            "dev",
            "--backfill-model",
            "demo.incremental_*",
            "--auto-apply",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select count(*) > 0 as filled from demo__dev.incremental_model"),
        "filled\ntrue\n"
    );
    assert_eq!(rows(&s, "demo__dev.full_model"), "n\n0\n");
    // Selecting the child takes its upstream along.
    let out = plan_text(
        &s,
        &[
            "dev2",
            "--backfill-model",
            "+demo.full_model",
            "--auto-apply",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rows(&s, "demo__dev2.full_model"), "n\n3\n");
    let out = plan_text(&s, &["--backfill-model", "demo.full_model"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("dev plans only"), "{}", stderr(&out));
    let out = plan_text(&s, &["dev3", "--backfill-model", "demo.nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`demo.nope` selects no model"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn explain_says_why_each_model_is_in_the_plan_and_applies_nothing() {
    let s = Scratch::init();
    s.apply(EXEC);
    filter_full_model(&s);
    let out = plan_text(&s, &["dev", "--explain", "--auto-apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for expected in [
        "Why each model is in the plan for `dev` (compared with `prod`); nothing is applied",
        "demo.full_model\n  change:   directly modified",
        "category: Breaking: existing rows may change",
        "demo.view_model\n  change:   indirectly modified: it depends on demo.full_model, which changed",
        "category: Indirect Breaking",
        "build:    [full refresh] into lake__demo.demo__full_model__",
    ] {
        assert!(shown.contains(expected), "`{expected}` in:\n{shown}");
    }
    let out = lake(&s, &["environments"]);
    assert!(!stdout(&out).contains("dev"), "{}", stdout(&out));
}

#[test]
fn diff_rendered_diffs_the_queries_macros_expanded() {
    let s = Scratch::init();
    s.apply(EXEC);
    filter_full_model(&s);
    let out = plan_text(&s, &["dev", "--diff-rendered"]);
    let shown = stdout(&out);
    assert!(
        shown.contains("models/full_model.sql (rendered)") && shown.contains("+WHERE"),
        "{shown}"
    );
    assert!(
        !shown.contains("MODEL ("),
        "only queries are diffed:\n{shown}"
    );
}

#[test]
fn no_auto_categorization_needs_a_person_to_choose() {
    let s = Scratch::init();
    s.apply(EXEC);
    let full = s.read("models/full_model.sql");
    s.write(
        "models/full_model.sql",
        &full.replace("  item_id,", "  item_id,\n  MAX(id) AS max_id,"),
    );
    let out = plan_text(&s, &["dev", "--no-auto-categorization", "--auto-apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs a category chosen on a terminal"),
        "{}",
        stderr(&out)
    );
    let Some(python) = crate::common::readers::python_with_pty() else {
        return;
    };
    // At a terminal no category is offered; an answer that is not one is asked again.
    let answers = serde_json::json!([
        ["Choose [b]reaking, [n]on-breaking or [f]orward-only", ""],
        ["Choose [b]reaking, [n]on-breaking or [f]orward-only", "b"],
    ]);
    let out = std::process::Command::new(python)
        .current_dir(&s.project)
        .env("NO_COLOR", "1")
        .arg(crate::common::readers::support("pty_session.py"))
        .arg(answers.to_string())
        .arg(assert_cmd::cargo::cargo_bin("lake"))
        .args([
            "plan",
            "dev",
            "--no-auto-categorization",
            "--auto-apply",
            "--execution-time",
            EXEC,
        ])
        .output()
        .unwrap();
    let shown = stdout(&out);
    assert!(out.status.success(), "{shown}{}", stderr(&out));
    assert!(
        shown.contains("demo__dev.view_model"),
        "breaking: the child is rebuilt too:\n{shown}"
    );
}

/// `run --select-model` takes SQLMesh's selectors and the selection's upstream, unless `--no-auto-upstream`.
#[test]
fn run_selects_models_with_their_upstream_unless_told_not_to() {
    let s = Scratch::init();
    s.write(
        "models/full_model.sql",
        &s.read("models/full_model.sql")
            .replace("kind FULL,", "kind FULL,\n  tags (reporting),"),
    );
    s.apply(EXEC);
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--ignore-cron", "--execution-time", "2024-06-03"];
        all.extend_from_slice(args);
        let out = lake(&s, &all);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut built = built_models(&out);
        built.sort();
        built
    };
    assert_eq!(
        run(&["--select-model", "tag:reporting", "--no-auto-upstream"]),
        ["demo.full_model"]
    );
    assert_eq!(
        run(&["--select-model", "demo.full_*"]),
        ["demo.full_model", "demo.incremental_model"]
    );
    let out = lake(&s, &["run", "--select-model", "demo.ful_model"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("demo.full_model"), "{}", stderr(&out));
}

/// After a run the janitor removes expired environments, as SQLMesh's run does; `--skip-janitor` leaves them.
#[test]
fn run_ends_with_the_janitor_unless_skipped() {
    let s = Scratch::init();
    s.apply(EXEC);
    s.apply_env("dev", EXEC);
    assert!(lake(&s, &["invalidate", "dev"]).status.success());
    let out = lake(&s, &["run", "--skip-janitor", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&lake(&s, &["environments"])).contains("dev"));
    let out = lake(&s, &["run", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Janitor: removed 1 expired environment"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&lake(&s, &["environments"])).contains("dev"));
}

/// A run that waited for the environment while a plan changed it stops with the code asked for.
#[test]
fn a_run_waiting_through_an_environment_update_exits_with_the_code_asked() {
    let Some(python) = crate::common::readers::python_with_pty() else {
        return;
    };
    let s = Scratch::init();
    s.apply(EXEC);
    // Holds the apply lock as a plan does, changes prod's plan id meanwhile, then lets go.
    let script = r#"
import fcntl, sqlite3, sys, time
lock = open(sys.argv[1] + "/apply.lock", "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
db = sqlite3.connect(sys.argv[1] + "/state.db")
db.execute("UPDATE environments SET plan_id = 'changed-by-another-plan' WHERE name = 'prod'")
db.commit()
fcntl.flock(lock, fcntl.LOCK_UN)
"#;
    let mut holder = std::process::Command::new(python)
        .args(["-c", script])
        .arg(s.project.join(".lake"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let mut run = s.spawn(
        &[
            "run",
            "--exit-on-env-update",
            "75",
            "--execution-time",
            EXEC,
        ],
        std::process::Stdio::piped(),
    );
    // The run's first words are that it waits for the lock; then the other "plan" lands.
    let mut run_stderr = std::io::BufReader::new(run.stderr.take().unwrap());
    let mut said = String::new();
    std::io::BufRead::read_line(&mut run_stderr, &mut said).unwrap();
    assert!(said.contains("Waiting for another lake process"), "{said}");
    use std::io::{Read, Write};
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(holder.wait().unwrap().success());
    run_stderr.read_to_string(&mut said).unwrap();
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(75), "{said}");
    assert!(
        said.contains("A plan updated `prod` while this run waited"),
        "{said}"
    );
}

/// The demo with a new version of its incremental model (every interval of it rebuilt by default).
fn incremental_changed() -> Scratch {
    let s = Scratch::init();
    s.apply(EXEC);
    let incremental = s.read("models/incremental_model.sql");
    s.write(
        "models/incremental_model.sql",
        &incremental.replace("  item_id,", "  item_id + 0 AS item_id,"),
    );
    s
}

/// A breaking change to the demo's FULL model: a new WHERE clause.
fn filter_full_model(s: &Scratch) {
    let full = s.read("models/full_model.sql");
    s.write(
        "models/full_model.sql",
        &full.replace("GROUP BY", "WHERE id > 1\nGROUP BY"),
    );
}

fn plan_text(s: &Scratch, args: &[&str]) -> std::process::Output {
    let mut all = vec!["plan", "--no-prompts", "--execution-time", EXEC];
    all.extend_from_slice(args);
    lake(s, &all)
}

#[test]
fn min_intervals_widens_a_dev_plans_start_per_model() {
    let s = incremental_changed();
    let narrow = stdout(&plan_text(&s, &["dev", "--start", "2024-05-31"]));
    assert!(
        narrow.contains("`demo__dev.incremental_model`: [2024-05-31 - 2024-05-31]"),
        "{narrow}"
    );
    let wide = stdout(&plan_text(
        &s,
        &["dev", "--start", "2024-05-31", "--min-intervals", "3"],
    ));
    assert!(
        wide.contains("`demo__dev.incremental_model`: [2024-05-29 - 2024-05-31]"),
        "{wide}"
    );
}

#[test]
fn no_gaps_refuses_a_new_version_missing_what_the_old_one_has() {
    let s = incremental_changed();
    let out = plan_text(&s, &["dev", "--start", "2024-05-01", "--no-gaps"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--no-gaps: the new version of demo.incremental_model would lack"),
        "{}",
        stderr(&out)
    );
    let out = plan_text(&s, &["dev", "--no-gaps"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A forward-only change keeps prod's table; `--effective-from` also rebuilds its intervals from that date
/// (and what reads them) with the new logic, in the same table.
#[test]
fn effective_from_applies_a_forward_only_change_from_a_date() {
    let s = incremental_changed();
    let table = stdout(&lake(&s, &["table-name", "demo.incremental_model"]));
    let out = plan_text(&s, &["--effective-from", "2024-05-30"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no forward-only change"),
        "{}",
        stderr(&out)
    );
    let out = plan_text(
        &s,
        &[
            "--forward-only",
            "--effective-from",
            "2024-05-30",
            "--auto-apply",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("`demo.incremental_model`: [2024-05-30 - 2024-05-31]"),
        "{shown}"
    );
    assert!(shown.contains("`demo.full_model`"), "{shown}");
    assert_eq!(
        stdout(&lake(&s, &["table-name", "demo.incremental_model"])),
        table
    );
    s.assert_demo_results();
}

/// `plan.enable_preview: false`: a forward-only change is not previewed in dev, which shows prod's table as
/// it is and builds nothing for it; `--enable-preview` turns the preview back on for one plan.
#[test]
fn without_preview_dev_shows_prods_table_for_a_forward_only_change() {
    let s = incremental_changed();
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &format!("{config}\nplan:\n  enable_preview: false\n"),
    );
    let prod_table = stdout(&lake(&s, &["table-name", "demo.incremental_model"]));
    let out = plan_text(&s, &["dev", "--forward-only", "--auto-apply"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(
        stdout(&lake(
            &s,
            &["table-name", "demo.incremental_model", "--env", "dev"]
        )),
        prod_table
    );
    let out = plan_text(
        &s,
        &["dev2", "--forward-only", "--enable-preview", "--auto-apply"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        built_models(&out).contains(&"demo__dev2.incremental_model".to_string()),
        "{}",
        stderr(&out)
    );
}

/// `plan --select-model` plans only the selected models' changes: the others keep the environment's versions
/// (and what reads them sees those), as SQLMesh does. A new model left out cannot be kept, and says so.
#[test]
fn select_model_plans_only_the_selected_changes() {
    let s = incremental_changed();
    filter_full_model(&s);
    let prod_incremental = stdout(&lake(&s, &["table-name", "demo.incremental_model"]));
    let out = plan_text(
        &s,
        &["dev", "--select-model", "demo.full_model", "--auto-apply"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("`demo__dev.full_model`"), "{shown}");
    assert!(!shown.contains("demo__dev.incremental_model"), "{shown}");
    assert_eq!(
        built_models(&out),
        ["demo__dev.full_model", "demo__dev.view_model"]
    );
    assert_eq!(
        stdout(&lake(
            &s,
            &["table-name", "demo.incremental_model", "--env", "dev"]
        )),
        prod_incremental
    );
    // The full model's new query ran on prod's incremental rows.
    assert_eq!(
        s.csv("select * from demo__dev.full_model order by item_id"),
        "item_id,num_orders\n1,5\n3,1\n"
    );
    // Without the selection, the incremental change is planned too.
    let shown = stdout(&plan_text(&s, &["dev"]));
    assert!(shown.contains("demo__dev.incremental_model"), "{shown}");

    s.write(
        "models/new_model.sql",
        "MODEL (name demo.new_model, kind FULL);\nSELECT 1 AS x\n",
    );
    let out = plan_text(&s, &["dev", "--select-model", "demo.full_model"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("leaves out `demo.new_model`"),
        "{}",
        stderr(&out)
    );
}

/// `render` and `evaluate` take SQLMesh's `-s/--start`, `-e/--end` (dates, or relative times as MODEL
/// `start` takes them) and `render --expand`; a bad date says what is accepted.
#[test]
fn render_and_evaluate_take_an_interval_and_expand_upstream_models() {
    let s = Scratch::init();
    assert!(s.apply(EXEC).status.success());
    let render = |args: &[&str]| {
        let mut all = vec!["render", "demo.incremental_model", "--execution-time", EXEC];
        all.extend_from_slice(args);
        lake(&s, &all)
    };
    let out = render(&["-s", "2024-05-01", "-e", "2024-05-02"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sql = stdout(&out);
    assert!(
        sql.contains("2024-05-01") && sql.contains("2024-05-02"),
        "{sql}"
    );
    let out = render(&["--start", "yesterday"]);
    assert!(stdout(&out).contains("2024-05-31"), "{}", stdout(&out));
    // Without --expand the seed is read as its table; with it, as its own query over the CSV file.
    assert!(!sql.contains("read_csv"), "{sql}");
    let expanded = stdout(&render(&["--expand"]));
    assert!(expanded.contains("read_csv"), "{expanded}");
    let out = render(&["--expand", "demo.full_model"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not read it"),
        "{}",
        stderr(&out)
    );
    let out = render(&["--start", "someday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("relative time such as `yesterday`"),
        "{}",
        stderr(&out)
    );

    let out = lake(
        &s,
        &[
            "evaluate",
            "demo.incremental_model",
            "-s",
            "2020-01-01",
            "-e",
            "2020-01-01",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 3, "{}", stdout(&out));
}

/// `table-diff --where`, `--skip-columns` and `--show-sample`, as in SQLMesh.
#[test]
fn table_diff_filters_skips_columns_and_shows_samples() {
    let s = Scratch::init();
    assert!(s.apply(EXEC).status.success());
    let model = s.read("models/full_model.sql").replace(
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) * 10 AS num_orders",
    );
    s.write("models/full_model.sql", &model);
    assert!(s.apply_env("dev", EXEC).status.success());
    let diff = |extra: &[&str]| {
        let mut args = vec!["table-diff", "prod:dev", "demo.full_model"];
        args.extend_from_slice(extra);
        let out = lake(&s, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let sampled = diff(&["--show-sample"]);
    assert!(
        sampled.contains("Rows whose values differ (sample):\nitem_id  source.num_orders  target.num_orders\n1        "),
        "{sampled}"
    );
    assert!(
        sampled.contains("Rows only in prod (sample):\n  none\n"),
        "{sampled}"
    );
    let skipped = diff(&["--skip-columns", "num_orders"]);
    assert!(skipped.contains("identical (1 columns)"), "{skipped}");
    assert!(!skipped.contains("num_orders"), "{skipped}");
    let filtered = diff(&["--where", "item_id = 1"]);
    assert!(filtered.contains("Rows: prod 1, dev 1"), "{filtered}");
}

/// `--debug` adds the error's internals to what a failure prints.
#[test]
fn debug_shows_the_errors_internals() {
    let s = Scratch::init();
    let out = lake(&s, &["--debug", "render", "nosuch.model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("UnknownModel"), "{}", stderr(&out));
}
