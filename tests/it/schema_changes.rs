//! Column changes under tables that keep their rows: forward-only changes (by `--forward-only` or by a
//! kind's `forward_only true`) evolve the Iceberg table's schema as `on_destructive_change` /
//! `on_additive_change` say, and rows always land in the columns their names say.

use serde_json::json;

use crate::common::readers::{pyiceberg, read_project_catalog};
use crate::common::{Scratch, built_models, stderr, stderr_words, stdout};

/// An incremental model over `raw.events` (a table outside lake), with a FULL child reading `SELECT *`.
fn project(extra_kind: &str) -> Scratch {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: shop.db\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n  cron: '@daily'\n",
    );
    s.write(
        "external_models.yaml",
        "- name: raw.events\n  columns:\n    id: int\n    amount: int\n    day: date\n",
    );
    s.write(
        "models/events.sql",
        &events_model(extra_kind, "id, amount, day"),
    );
    s.write(
        "models/latest.sql",
        "MODEL (name shop.latest, kind FULL);\nSELECT * FROM shop.events\n",
    );
    for sql in [
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.events (id INT, amount INT, day DATE)",
        "INSERT INTO raw.events VALUES (1, 10, DATE '2024-01-01'), (2, 20, DATE '2024-01-02'), \
         (3, 30, DATE '2024-01-03'), (4, 40, DATE '2024-01-04')",
    ] {
        let out = s.lake().args(["fetchdf", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
    }
    s
}

fn events_model(extra_kind: &str, columns: &str) -> String {
    format!(
        "MODEL (name shop.events, kind INCREMENTAL_BY_TIME_RANGE (time_column day{extra_kind}));\n\
         SELECT {columns} FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds\n"
    )
}

fn lake(s: &Scratch, args: &[&str]) -> std::process::Output {
    s.lake().args(args).output().unwrap()
}

/// `lake plan --forward-only --auto-apply` at `time`.
fn forward_only_plan(s: &Scratch, time: &str) -> std::process::Output {
    lake(
        s,
        &[
            "plan",
            "--forward-only",
            "--auto-apply",
            "--execution-time",
            time,
        ],
    )
}

fn table_name(s: &Scratch) -> String {
    stdout(&lake(s, &["table-name", "shop.events"]))
}

#[test]
fn forward_only_changes_evolve_the_kept_table_as_its_policies_say() {
    let s = project("");
    s.apply("2024-01-03");
    let table = table_name(&s);

    // Added column: additive, allowed by default. The table keeps its rows and gains the column when the plan
    // is applied; rows written from then on fill it.
    s.write(
        "models/events.sql",
        &events_model("", "id, amount, day, amount * 2 AS doubled"),
    );
    let out = forward_only_plan(&s, "2024-01-03");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(built_models(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(table_name(&s), table);
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day,doubled\n1,10,2024-01-01,\n2,20,2024-01-02,\n"
    );
    let out = lake(&s, &["run", "--execution-time", "2024-01-05"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day,doubled\n1,10,2024-01-01,\n2,20,2024-01-02,\n3,30,2024-01-03,60\n4,40,2024-01-04,80\n"
    );
    // The FULL child reads `SELECT *`: its refresh took the new column too.
    assert_eq!(
        s.csv("select * from shop.latest order by id"),
        "id,amount,day,doubled\n1,10,2024-01-01,\n2,20,2024-01-02,\n3,30,2024-01-03,60\n4,40,2024-01-04,80\n"
    );

    // Dropped column: destructive, an error by default, found before anything is written or promoted.
    s.write(
        "models/events.sql",
        &events_model("", "id, day, amount * 2 AS doubled"),
    );
    let out = forward_only_plan(&s, "2024-01-05");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let message = stderr_words(&out);
    assert!(
        message.contains("its query drops column `amount` INTEGER of")
            && message.contains("on_destructive_change is `error`")
            && message.contains("set `on_destructive_change warn` or `allow`"),
        "{message}"
    );
    assert_eq!(
        s.csv("select amount from shop.events order by id"),
        "amount\n10\n20\n30\n40\n"
    );

    // `warn` applies it and says so; a restatement then rewrites files written before the change.
    s.write(
        "models/events.sql",
        &events_model(
            ", on_destructive_change warn",
            "id, day, amount * 2 AS doubled",
        ),
    );
    let out = forward_only_plan(&s, "2024-01-05");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("warning: shop.events drops column `amount` INTEGER in the table it keeps")
            || stderr(&out).contains(
                "warning: shop.events drops column `amount` INTEGER in the table it keeps"
            ),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(table_name(&s), table);
    let out = lake(
        &s,
        &[
            "plan",
            "--restate-model",
            "shop.events",
            "--start",
            "2024-01-01",
            "--end",
            "2024-01-01",
            "--auto-apply",
            "--execution-time",
            "2024-01-05",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let expected =
        "id,day,doubled\n1,2024-01-01,20\n2,2024-01-02,\n3,2024-01-03,60\n4,2024-01-04,80\n";
    assert_eq!(s.csv("select * from shop.events order by id"), expected);

    // An independent reader sees the evolved table with the same rows.
    let Some(python) = pyiceberg() else { return };
    let tables = read_project_catalog(&python, &s.project);
    let events = &tables["shop.events"];
    assert_eq!(
        events["columns"],
        json!(["id:int", "day:date", "doubled:int"])
    );
    assert_eq!(
        events["rows"],
        json!([
            [1, "2024-01-01", 20],
            [2, "2024-01-02", null],
            [3, "2024-01-03", 60],
            [4, "2024-01-04", 80]
        ])
    );
}

#[test]
fn ignore_keeps_the_table_columns_and_policies_come_from_model_defaults() {
    let s = project("");
    s.write(
        "config.yaml",
        &format!(
            "{}  on_additive_change: ignore\n  on_destructive_change: IGNORE\n",
            s.read("config.yaml")
        ),
    );
    s.apply("2024-01-03");
    // Reordered, one column added and one dropped: the table keeps its columns, in its order; the dropped one
    // reads NULL in new rows and the added one is not stored.
    s.write(
        "models/events.sql",
        &events_model("", "day, 'new' AS note, id"),
    );
    let out = forward_only_plan(&s, "2024-01-03");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lake(&s, &["run", "--execution-time", "2024-01-04"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n3,,2024-01-03\n"
    );

    // A policy lake does not know is a located error.
    s.write(
        "models/events.sql",
        &events_model(", on_additive_change maybe", "id, amount, day"),
    );
    let out = lake(&s, &["plan"]);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains(
            "models/events.sql:1:94: `on_additive_change` expects error, warn, allow or ignore"
        ),
        "{message}"
    );
}

#[test]
fn a_kept_table_gets_each_value_under_its_own_name_when_the_query_reorders_its_columns() {
    let s = project("");
    s.apply("2024-01-03");
    // A forward-only change that only reorders the FULL child's columns keeps its table; its next refresh
    // must put each value under its own column, not shift them by position.
    s.write(
        "models/latest.sql",
        "MODEL (name shop.latest, kind FULL);\nSELECT day, amount, id FROM shop.events\n",
    );
    let out = forward_only_plan(&s, "2024-01-03");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = lake(
        &s,
        &["run", "--ignore-cron", "--execution-time", "2024-01-04"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select * from shop.latest order by id"),
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n3,30,2024-01-03\n"
    );
}

#[test]
fn a_forward_only_kind_keeps_its_table_in_prod_and_builds_its_own_in_dev() {
    let s = project(", forward_only true");
    s.apply("2024-01-03");
    let prod_table = table_name(&s);
    s.write(
        "models/events.sql",
        &events_model(", forward_only true", "id, amount * 100 AS amount, day"),
    );
    // Dev gets a table of its own, built with the new logic; prod's is untouched.
    let out = s.apply_env("dev", "2024-01-03");
    assert_eq!(
        built_models(&out),
        vec!["shop__dev.events", "shop__dev.latest"],
        "{}",
        stdout(&out)
    );
    assert_eq!(
        s.csv("select amount from shop__dev.events order by id"),
        "amount\n1000\n2000\n"
    );
    assert_eq!(
        s.csv("select amount from shop.events order by id"),
        "amount\n10\n20\n"
    );
    // Prod keeps its table: the change applies to what is built from now on.
    let out = s.apply("2024-01-03");
    assert!(
        stdout(&out).contains("`shop.events` (Forward-only: its kind is forward-only)"),
        "{}",
        stdout(&out)
    );
    assert!(
        !built_models(&out).contains(&"shop.events".to_string()),
        "{}",
        stdout(&out)
    );
    assert_eq!(table_name(&s), prod_table);
    // Nor does prod take over the child dev built from the preview's rows: it keeps reading prod's table.
    assert_eq!(
        s.csv("select amount from shop.latest order by id"),
        "amount\n10\n20\n"
    );
    let out = lake(&s, &["run", "--execution-time", "2024-01-04"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select amount from shop.events order by id"),
        "amount\n10\n20\n3000\n"
    );
    // A change of kind is never forward-only: the model is rebuilt in a new table.
    s.write(
        "models/events.sql",
        "MODEL (name shop.events, kind FULL);\nSELECT id, amount, day FROM raw.events\n",
    );
    let out = s.apply("2024-01-04");
    assert!(
        built_models(&out).contains(&"shop.events".to_string()),
        "{}",
        stdout(&out)
    );
    assert_ne!(table_name(&s), prod_table);
}

#[test]
fn allow_destructive_model_applies_a_refused_change_for_one_plan() {
    let s = project("");
    s.apply("2024-01-03");
    s.write("models/events.sql", &events_model("", "id, day"));
    let forward_only = [
        "plan",
        "--forward-only",
        "--auto-apply",
        "--execution-time",
        "2024-01-03",
    ];
    let out = lake(&s, &forward_only);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = lake(
        &s,
        &[
            &forward_only[..],
            &["--allow-destructive-model", "shop.nope"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("model `shop.nope` not found"),
        "{}",
        stderr(&out)
    );
    let out = lake(
        &s,
        &[
            &forward_only[..],
            &["--allow-destructive-model", "shop.events"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,day\n1,2024-01-01\n2,2024-01-02\n"
    );
}
