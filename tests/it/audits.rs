//! Audits on real data: blocking failures stop a plan and leave prod as it was, non-blocking ones warn,
//! `lake audit` reports on demand, and bad audit calls are located errors.

use crate::common::{EXEC, Scratch, built_models, stderr, stdout};

/// The demo's full_model with these audits (and a different query from the template's, so it is rebuilt).
fn audit_full_model(s: &Scratch, audits: &str) {
    s.write(
        "models/full_model.sql",
        &format!(
            "MODEL (\n  name demo.full_model,\n  kind FULL,\n  grain item_id,\n  audits ({audits}),\n);\n\n\
             SELECT item_id, COUNT(DISTINCT id) AS num_orders\nFROM demo.incremental_model\nWHERE id > 0\nGROUP BY item_id\n"
        ),
    );
}

fn plan(s: &Scratch) -> std::process::Output {
    s.lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap()
}

#[test]
fn a_blocking_audit_failure_leaves_prod_unchanged() {
    let s = Scratch::init();
    let out = s.apply(EXEC);
    assert!(
        stderr(&out).contains("[full refresh, 3 rows, audits passed 1]"),
        "{}",
        stderr(&out)
    );
    let before = s.csv("select * from demo.full_model order by item_id");

    audit_full_model(
        &s,
        "assert_positive_order_ids, accepted_values(column := item_id, is_in := (1, 2))",
    );
    let out = plan(&s);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("audit `accepted_values` of model `demo.full_model` failed: 1 bad row(s)"),
        "{err}"
    );
    assert!(err.contains("skipped demo.view_model"), "{err}");
    assert!(
        err.contains("the environment `prod` was not updated"),
        "{err}"
    );
    assert_eq!(
        s.csv("select * from demo.full_model order by item_id"),
        before,
        "prod still serves the previous version"
    );

    // Fixing the audit lets the same plan through.
    audit_full_model(
        &s,
        "assert_positive_order_ids, accepted_values(column := item_id, is_in := (1, 2, 3))",
    );
    let out = plan(&s);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("audits passed 2"), "{}", stderr(&out));
}

#[test]
fn a_non_blocking_audit_warns_and_the_plan_goes_on() {
    let s = Scratch::init();
    audit_full_model(
        &s,
        "not_null_non_blocking(columns := [item_id]), accepted_values_non_blocking(column := item_id, is_in := [1])",
    );
    let out = s.apply(EXEC);
    let err = stderr(&out);
    assert!(
        err.contains("warning: audit `accepted_values_non_blocking` of demo.full_model found 2 bad row(s) (non-blocking)"),
        "{err}"
    );
    assert!(err.contains("audits passed 1"), "{err}");
    assert_eq!(built_models(&out).len(), 4);
}

#[test]
fn lake_audit_reports_bad_rows_with_a_sample() {
    let s = Scratch::init();
    audit_full_model(
        &s,
        "assert_positive_order_ids, number_of_rows_non_blocking(threshold := 10)",
    );
    s.apply(EXEC);
    // A blocking audit added after the data was built: `lake audit` finds what the data breaks.
    audit_full_model(
        &s,
        "assert_positive_order_ids, number_of_rows_non_blocking(threshold := 10), forall(criteria := [num_orders < 5])",
    );
    let out = s.lake().args(["audit"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("demo.full_model\n  ✔ assert_positive_order_ids\n  ⚠ number_of_rows_non_blocking: 1 bad row(s) (non-blocking)\n"), "{text}");
    assert!(
        text.contains("  ✘ forall: 1 bad row(s)\n    query: SELECT * FROM "),
        "{text}"
    );
    assert!(
        text.contains("item_id  num_orders\n          1           5"),
        "{text}"
    );
    assert!(
        text.ends_with("Audits: 1 passed, 1 failed, 1 warning(s)\n"),
        "{text}"
    );

    let out = s
        .lake()
        .args(["audit", "--model", "demo.full_model", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let forall = &doc["audits"][2];
    assert_eq!(forall["audit"], "forall");
    assert_eq!(forall["bad_rows"], 1);
    assert_eq!(
        forall["sample"],
        serde_json::json!([{"item_id": 1, "num_orders": 5}])
    );

    // Only the warning left: exit 0.
    audit_full_model(
        &s,
        "assert_positive_order_ids, number_of_rows_non_blocking(threshold := 10)",
    );
    let out = s.lake().args(["audit"]).output().unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
}

/// An incremental model's audits see only the batch just written; a failing batch is not recorded, so
/// the next run builds and audits it again.
#[test]
fn an_incremental_batch_that_fails_its_audit_is_not_recorded() {
    let s = Scratch::init();
    s.write(
        "models/events.sql",
        "MODEL (\n  name demo.events,\n  kind INCREMENTAL_BY_TIME_RANGE (time_column ds, batch_size 1),\n  start '2024-05-29',\n  cron '@daily',\n  audits (forall(criteria := [ds <> DATE '2024-06-02']))\n);\n\nSELECT d::DATE AS ds FROM generate_series(DATE '2024-05-29', DATE '2024-06-30', INTERVAL 1 DAY) AS t(d)\nWHERE d::DATE BETWEEN @start_date AND @end_date\n",
    );
    s.apply(EXEC);
    let out = s
        .lake()
        .args(["run", "--execution-time", "2024-06-04 12:00:00"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("audit `forall` of model `demo.events` failed"),
        "{}",
        stderr(&out)
    );
    let intervals = stdout(
        &s.lake()
            .args(["check-intervals", "--execution-time", "2024-06-04 12:00:00"])
            .output()
            .unwrap(),
    );
    assert!(
        intervals.contains(
            "demo.events\n  complete: 2024-05-29 - 2024-06-01\n  missing:  2024-06-02 - 2024-06-03"
        ),
        "the failed batch is still missing: {intervals}"
    );
}

/// An append cannot be undone: an INCREMENTAL_UNMANAGED run whose rows fail a blocking audit appends
/// nothing, so the rerun appends once, and the bad rows never reach the table.
#[test]
fn a_failed_append_is_not_appended_and_its_rerun_appends_once() {
    let s = Scratch::init();
    s.write(
        "external_models.yaml",
        "- name: raw.flag\n  columns:\n    v: int\n",
    );
    s.write(
        "models/appended.sql",
        "MODEL (\n  name demo.appended,\n  kind INCREMENTAL_UNMANAGED,\n  start '2024-05-29',\n  cron '@daily',\n  \
         audits (forall(criteria := [x > 0]))\n);\n\nSELECT @execution_ds AS run_ds, (SELECT max(v) FROM raw.flag) AS x\n",
    );
    let set_flag = |v: i32| {
        let sql = format!(
            "CREATE SCHEMA IF NOT EXISTS raw; CREATE OR REPLACE TABLE raw.flag AS SELECT {v} AS v"
        );
        let out = s.lake().args(["fetchdf", &sql]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let run = || {
        s.lake()
            .args(["run", "--execution-time", "2024-06-03 12:00:00"])
            .output()
            .unwrap()
    };
    set_flag(1);
    let out = plan(&s);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = s.csv("select run_ds, x from demo.appended order by all");
    assert_eq!(before, "run_ds,x\n2024-06-01,1\n");

    set_flag(-1);
    let out = run();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("audit `forall` of model `demo.appended` failed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select run_ds, x from demo.appended order by all"),
        before,
        "nothing appended"
    );

    set_flag(2);
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select run_ds, x from demo.appended order by all"),
        "run_ds,x\n2024-06-01,1\n2024-06-03,2\n"
    );
}

/// Audits that compare with another model (`to := …`) run after that model is built, on the version
/// this plan builds, even though the query does not read it.
#[test]
fn cross_model_audits_wait_for_the_other_model() {
    let s = Scratch::init();
    // Deeper in the DAG than full_model, so only the audit's dependency orders them.
    s.write(
        "models/z_items.sql",
        "MODEL (name demo.z_items, kind FULL);\nSELECT item_id FROM demo.incremental_model\n",
    );
    s.write(
        "models/z_item_catalog.sql",
        "MODEL (name demo.z_item_catalog, kind FULL);\nSELECT DISTINCT item_id FROM demo.z_items\n",
    );
    audit_full_model(
        &s,
        "relationship(to := demo.z_item_catalog, source_column := item_id), \
         equal_row_count(to := demo.z_item_catalog), fewer_rows_than_non_blocking(to := demo.z_item_catalog)",
    );
    let out = plan(&s);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let built = built_models(&out);
    let position = |m: &str| built.iter().position(|b| b == m).unwrap_or(usize::MAX);
    assert!(
        position("demo.z_item_catalog") < position("demo.full_model"),
        "{built:?}"
    );
    assert!(err.contains("audits passed 2"), "{err}");
    assert!(err.contains("fewer_rows_than_non_blocking"), "{err}");
}

#[test]
fn an_unknown_audit_is_a_located_error() {
    let s = Scratch::init();
    let text = s.read("models/full_model.sql").replace(
        "audits (assert_positive_order_ids)",
        "audits (not_nul(columns := [item_id]))",
    );
    s.write("models/full_model.sql", &text);
    let out = s.lake().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("unknown audit `not_nul`"), "{err}");
    assert!(err.contains("models/full_model.sql:6:"), "{err}");
    assert!(err.contains("did you mean `not_null`?"), "{err}");
}

/// `lake audit` audits the versions the project's files define: after a first plan whose blocking audit
/// failed (so `prod` was never created) it reports the failure and exits 1, as SQLMesh does.
#[test]
fn lake_audit_checks_versions_a_failed_plan_built_but_never_promoted() {
    let s = Scratch::init();
    audit_full_model(&s, "forall(criteria := [num_orders < 5])");
    let out = plan(&s);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = s.lake().args(["audit"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("demo.full_model\n  ✘ forall: 1 bad row(s)\n"),
        "{text}"
    );
}

/// `--start/--end` limit a time-range model's audit to the rows of that range.
#[test]
fn lake_audit_start_and_end_limit_time_range_models() {
    let s = Scratch::init();
    let events = |audits: &str| {
        format!(
            "MODEL (\n  name demo.events,\n  kind INCREMENTAL_BY_TIME_RANGE (time_column ds),\n  start '2024-05-29',\n  cron '@daily'{audits}\n);\n\n\
             SELECT d::DATE AS ds FROM generate_series(DATE '2024-05-29', DATE '2024-06-30', INTERVAL 1 DAY) AS t(d)\n\
             WHERE d::DATE BETWEEN @start_date AND @end_date\n"
        )
    };
    s.write("models/events.sql", &events(""));
    s.apply("2024-06-05 00:00:00");
    s.write(
        "models/events.sql",
        &events(",\n  audits (forall(criteria := [ds <> DATE '2024-06-02']))"),
    );
    let audit = |args: &[&str]| {
        let mut all = vec!["audit", "--model", "demo.events"];
        all.extend_from_slice(args);
        s.lake().args(all).output().unwrap()
    };
    let out = audit(&["--start", "2024-06-03", "--end", "2024-06-03"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = audit(&["--start", "2024-06-01", "--end", "2024-06-02"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("✘ forall: 1 bad row(s)"),
        "{}",
        stdout(&out)
    );
    let out = audit(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let out = audit(&["--start", "2024-06-03", "--end", "2024-06-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// The demo's full_model, auditing itself with `AUDIT` blocks written after its query in its own file.
fn full_model_with_inline_audits(s: &Scratch, max_item: u32) {
    s.write(
        "models/full_model.sql",
        &format!(
            "MODEL (\n  name demo.full_model,\n  kind FULL,\n  grain item_id,\n  \
             audits (few_items(max_item := {max_item}), assert_positive_order_ids),\n);\n\n\
             SELECT item_id, COUNT(DISTINCT id) AS num_orders\nFROM demo.incremental_model\nWHERE id > 0\nGROUP BY item_id;\n\n\
             AUDIT (name few_items);\nSELECT * FROM @this_model WHERE item_id > @max_item;\n\n\
             -- Same name as the project's audit: the model's own comes first.\n\
             AUDIT (name assert_positive_order_ids, blocking false);\nSELECT * FROM @this_model WHERE item_id > 0;\n"
        ),
    );
}

#[test]
fn audits_written_in_a_model_file_are_that_models_own() {
    let s = Scratch::init();
    full_model_with_inline_audits(&s, 2);
    let out = plan(&s);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("audit `few_items` of model `demo.full_model` failed: 1 bad row(s)"),
        "{err}"
    );

    full_model_with_inline_audits(&s, 3);
    let out = plan(&s);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // The inline `assert_positive_order_ids` (non-blocking, every row) ran, not the project's (no bad row).
    assert!(
        err.contains("warning: audit `assert_positive_order_ids` of demo.full_model found 3 bad row(s) (non-blocking)"),
        "{err}"
    );
    assert!(err.contains("audits passed 1"), "{err}");
    // The AUDIT blocks are not statements the model runs after its query.
    assert_eq!(
        s.csv("select count(*) from demo.full_model"),
        "count_star()\n3\n"
    );

    // Another model cannot use them.
    s.write(
        "models/view_model.sql",
        "MODEL (name demo.view_model, kind VIEW, audits (few_items(max_item := 1)));\nSELECT * FROM demo.full_model\n",
    );
    let out = plan(&s);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown audit `few_items`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn model_defaults_audits_run_on_every_model_before_its_own() {
    let s = Scratch::init();
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &config.replace(
            "  cron: '@daily'\n",
            "  cron: '@daily'\n  audits:\n    - \"number_of_rows_non_blocking(threshold := 100)\"\n",
        ),
    );
    let out = plan(&s);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for model in [
        "demo.seed_model",
        "demo.incremental_model",
        "demo.full_model",
    ] {
        assert!(
            err.contains(&format!(
                "warning: audit `number_of_rows_non_blocking` of {model} found"
            )),
            "{model}: {err}"
        );
    }

    s.write(
        "config.yaml",
        &config.replace("  cron: '@daily'\n", "  cron: '@daily'\n  audits: [1, 2]\n"),
    );
    let out = plan(&s);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("expected a list of audit calls"), "{err}");
    assert!(err.contains("config.yaml"), "{err}");

    s.write(
        "config.yaml",
        &config.replace(
            "  cron: '@daily'\n",
            "  cron: '@daily'\n  audits: [\"not_null(columns = [id]\"]\n",
        ),
    );
    let out = plan(&s);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("config.yaml (model_defaults.audits):1:"),
        "{err}"
    );
    assert!(
        !err.contains("errors in the project"),
        "one error, not one per model: {err}"
    );
}
