//! Incremental kinds over several days, each day a separate `plan` or `run`: what lands in the table, and
//! that only the missing intervals are built.

use crate::common::{Scratch, built_models, stderr, stderr_words, stdout};

/// A project whose models read `raw.events`, a table outside lake that the test fills day by day.
fn project() -> Scratch {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: shop.db\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n  cron: '@daily'\n",
    );
    s.write(
        "external_models.yaml",
        "- name: raw.events\n  columns:\n    id: int\n    customer: text\n    amount: int\n    day: date\n",
    );
    s.write(
        "models/by_time.sql",
        // No upper bound on purpose: rows after the batch must not be loaded.
        "MODEL (name shop.by_time, kind INCREMENTAL_BY_TIME_RANGE (time_column day));\n\
         SELECT id, customer, amount, day FROM raw.events WHERE day >= @start_ds\n",
    );
    s.write(
        "models/by_key.sql",
        "MODEL (name shop.by_key, kind INCREMENTAL_BY_UNIQUE_KEY (unique_key customer));\n\
         SELECT customer, sum(amount) AS total, max(day) AS last_day\n\
         FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds GROUP BY customer\n",
    );
    s.write(
        "models/by_partition.sql",
        "MODEL (name shop.by_partition, kind INCREMENTAL_BY_PARTITION, partitioned_by customer);\n\
         SELECT customer, count(*) AS orders, max(day) AS last_day\n\
         FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds GROUP BY customer\n",
    );
    s.write(
        "models/unmanaged.sql",
        "MODEL (name shop.unmanaged, kind INCREMENTAL_UNMANAGED);\n\
         SELECT id, day FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds\n",
    );
    for sql in [
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.events (id INT, customer TEXT, amount INT, day DATE)",
        "INSERT INTO raw.events VALUES \
         (1, 'a', 10, DATE '2024-01-01'), (2, 'b', 20, DATE '2024-01-01'), (3, 'a', 30, DATE '2024-01-02'), \
         (4, 'c', 40, DATE '2024-01-03'), (5, 'a', 50, DATE '2024-01-04')",
    ] {
        let out = s.lake().args(["fetchdf", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
    }
    s
}

fn run_at(s: &Scratch, time: &str) -> std::process::Output {
    let out = s
        .lake()
        .args(["run", "--execution-time", time])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// `lake check-intervals` at `time`: its output.
fn check_intervals(s: &Scratch, time: &str) -> String {
    let out = s
        .lake()
        .args(["check-intervals", "--execution-time", time])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn each_kind_over_several_days() {
    let s = project();
    // Day 1: the complete days are 01-01 and 01-02, built in one batch per model.
    let out = s.apply("2024-01-03 06:00:00");
    assert!(
        stdout(&out).contains("* `shop.by_time`: [2024-01-01 - 2024-01-02]"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        s.csv("select id, day from shop.by_time order by id"),
        "id,day\n1,2024-01-01\n2,2024-01-01\n3,2024-01-02\n",
        "rows after the batch's range are not loaded"
    );
    assert_eq!(
        s.csv("select * from shop.by_key order by customer"),
        "customer,total,last_day\na,40,2024-01-02\nb,20,2024-01-01\n"
    );

    // Day 2: only 01-03 is missing.
    let out = run_at(&s, "2024-01-04 06:00:00");
    let mut built = built_models(&out);
    built.sort();
    assert_eq!(
        built,
        [
            "shop.by_key",
            "shop.by_partition",
            "shop.by_time",
            "shop.unmanaged"
        ]
    );
    assert!(
        stderr(&out).contains("[insert 2024-01-03 - 2024-01-03, 1 rows]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.csv("select count(*) as n from shop.by_time"), "n\n4\n");
    // State records which Iceberg snapshot wrote each interval.
    let state = rusqlite::Connection::open(s.project.join(".lake/state.db")).unwrap();
    let write_ids: Vec<i64> = state
        .prepare("SELECT write_id FROM intervals WHERE name = 'shop.by_time' ORDER BY start_ts")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|id| {
            id.unwrap()
                .strip_prefix("iceberg:")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(write_ids.len(), 2, "one per write");
    let table = stdout(
        &s.lake()
            .args(["table-name", "shop.by_time"])
            .output()
            .unwrap(),
    );
    let metadata_dir = s
        .project
        .join("warehouse")
        .join(table.trim().replace('.', "/"))
        .join("metadata");
    let latest = walkdir::WalkDir::new(&metadata_dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().to_path_buf())
        .filter(|p| p.to_string_lossy().ends_with(".metadata.json"))
        .max()
        .unwrap();
    let metadata: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest).unwrap()).unwrap();
    let snapshots: Vec<i64> = metadata["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot-id"].as_i64().unwrap())
        .collect();
    assert!(
        write_ids.iter().all(|id| snapshots.contains(id)),
        "{write_ids:?} not in {snapshots:?}"
    );

    // Nothing is due again until the next day ends.
    let out = run_at(&s, "2024-01-04 23:00:00");
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));

    // Day 3: customer a buys again. The unique key upserts a's row from this batch; the partition of a is
    // replaced while b's (absent from the batch) survives; the unmanaged model appends.
    run_at(&s, "2024-01-05 06:00:00");
    assert_eq!(
        s.csv("select * from shop.by_key order by customer"),
        "customer,total,last_day\na,50,2024-01-04\nb,20,2024-01-01\nc,40,2024-01-03\n"
    );
    assert_eq!(
        s.csv("select * from shop.by_partition order by customer"),
        "customer,orders,last_day\na,1,2024-01-04\nb,1,2024-01-01\nc,1,2024-01-03\n"
    );
    assert_eq!(
        s.csv("select string_agg(id::text, ' ' order by id) as ids from shop.unmanaged"),
        "ids\n1 2 3 4 5\n"
    );

    // Late data for a day already built changes nothing until that day is restated: by_time keeps its
    // intervals. Two quiet days later, one run builds both missing days as one batch.
    let out = run_at(&s, "2024-01-07 06:00:00");
    assert!(
        stderr(&out).contains("[insert 2024-01-05 - 2024-01-06, 0 rows]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.csv("select count(*) as n from shop.by_time"), "n\n5\n");
}

#[test]
fn batch_size_splits_the_backfill_and_a_rerun_resumes() {
    let s = project();
    s.write(
        "models/by_time.sql",
        "MODEL (name shop.by_time, kind INCREMENTAL_BY_TIME_RANGE (time_column day, batch_size 2));\n\
         SELECT id, customer, amount, day FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds\n",
    );
    let out = s.apply("2024-01-06 00:00:00");
    let progress = stderr(&out);
    assert!(
        progress.contains("[insert 2024-01-01 - 2024-01-05, 5 rows]"),
        "{progress}"
    );
    assert_eq!(s.csv("select count(*) as n from shop.by_time"), "n\n5\n");
    // Each batch was recorded on its own: the plan has nothing left to build.
    let out = s
        .lake()
        .args(["plan", "--execution-time", "2024-01-06 00:00:00"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "No changes to plan: project files match the `prod` environment\n"
    );
}

#[test]
fn restatement_rebuilds_a_range_and_everything_downstream() {
    let s = project();
    s.write(
        "models/daily_totals.sql",
        "MODEL (name shop.daily_totals, kind FULL);\n\
         SELECT day, sum(amount) AS amount FROM shop.by_time GROUP BY day\n",
    );
    s.apply("2024-01-05 00:00:00");
    // Late data for 01-02: nothing changes until that day is restated.
    let out = s
        .lake()
        .args([
            "fetchdf",
            "INSERT INTO raw.events VALUES (6, 'b', 5, DATE '2024-01-02')",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_at(&s, "2024-01-05 01:00:00");
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));

    let out = s
        .lake()
        .args([
            "plan",
            "--restate-model",
            "shop.by_time",
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-02",
            "--auto-apply",
            "--execution-time",
            "2024-01-05 01:00:00",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("* `shop.by_time`: [2024-01-02 - 2024-01-02]"),
        "{}",
        stdout(&out)
    );
    assert_eq!(built_models(&out), ["shop.by_time", "shop.daily_totals"]);
    assert_eq!(
        s.csv("select amount from shop.daily_totals where day = '2024-01-02'"),
        "amount\n35\n"
    );
    assert_eq!(s.csv("select count(*) as n from shop.by_time"), "n\n6\n");

    // check-intervals: every day up to 01-04 is complete.
    let intervals = check_intervals(&s, "2024-01-06 00:00:00");
    assert!(
        intervals.contains(
            "shop.by_time\n  complete: 2024-01-01 - 2024-01-04\n  missing:  2024-01-05 - 2024-01-05\n"
        ),
        "{intervals}"
    );
}

#[test]
fn dev_start_end_and_run_selection() {
    let s = project();
    s.apply("2024-01-03 00:00:00");
    let out = s
        .lake()
        .args([
            "plan",
            "--start",
            "2024-01-01",
            "--execution-time",
            "2024-01-03",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "prod holds every interval");
    assert!(stderr(&out).contains("dev plans only"), "{}", stderr(&out));

    // A dev version of by_time built for one day only; promoting it to prod backfills the rest.
    let edited = s
        .read("models/by_time.sql")
        .replace("SELECT id,", "SELECT id, amount * 2 AS doubled,");
    s.write("models/by_time.sql", &edited);
    let out = s
        .lake()
        .args([
            "plan",
            "dev",
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-02",
            "--auto-apply",
            "--execution-time",
            "2024-01-03",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select count(*) as n from shop__dev.by_time"),
        "n\n1\n"
    );
    let out = s.apply("2024-01-03 00:00:00");
    assert!(
        stdout(&out).contains("* `shop.by_time`: [2024-01-01 - 2024-01-01]"),
        "{}",
        stdout(&out)
    );
    assert_eq!(s.csv("select count(*) as n from shop.by_time"), "n\n3\n");

    // run --select-model builds only the chosen model.
    let out = s
        .lake()
        .args([
            "run",
            "--select-model",
            "shop.unmanaged",
            "--execution-time",
            "2024-01-04 00:00:00",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(built_models(&out), ["shop.unmanaged"]);
}

#[test]
fn scd_type_2_history_after_an_update_and_a_hard_delete() {
    let s = project();
    s.write(
        "models/customers_history.sql",
        "MODEL (name shop.customers_history, kind SCD_TYPE_2_BY_TIME (unique_key id, invalidate_hard_deletes true));\n\
         SELECT id, name, updated_at FROM raw.customers\n",
    );
    s.write(
        "models/customers_by_column.sql",
        "MODEL (name shop.customers_by_column, kind SCD_TYPE_2_BY_COLUMN (unique_key id, columns [name]));\n\
         SELECT id, name FROM raw.customers\n",
    );
    s.write(
        "external_models.yaml",
        &(s.read("external_models.yaml")
            + "- name: raw.customers\n  columns:\n    id: int\n    name: text\n    updated_at: timestamp\n"),
    );
    for sql in [
        "CREATE TABLE raw.customers (id INT, name TEXT, updated_at TIMESTAMP)",
        "INSERT INTO raw.customers VALUES (1, 'ann', TIMESTAMP '2024-01-01 08:00'), (2, 'bob', TIMESTAMP '2024-01-01 09:00')",
    ] {
        let out = s.lake().args(["fetchdf", sql]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    s.apply("2024-01-02 00:00:00");
    for sql in [
        "UPDATE raw.customers SET name = 'anne', updated_at = TIMESTAMP '2024-01-02 10:00' WHERE id = 1",
        "DELETE FROM raw.customers WHERE id = 2",
    ] {
        let out = s.lake().args(["fetchdf", sql]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    run_at(&s, "2024-01-03 00:00:00");
    let history = |model: &str| {
        s.csv(&format!(
            "select id, name, strftime(valid_from, '%Y-%m-%d %H:%M') as valid_from, \
             strftime(valid_to, '%Y-%m-%d %H:%M') as valid_to from {model} order by id, valid_from"
        ))
    };
    assert_eq!(
        history("shop.customers_history"),
        "id,name,valid_from,valid_to\n\
         1,ann,1970-01-01 00:00,2024-01-02 10:00\n\
         1,anne,2024-01-02 10:00,\n\
         2,bob,1970-01-01 00:00,2024-01-03 00:00\n"
    );
    assert_eq!(
        history("shop.customers_by_column"),
        "id,name,valid_from,valid_to\n\
         1,ann,1970-01-01 00:00,2024-01-03 00:00\n\
         1,anne,2024-01-03 00:00,\n\
         2,bob,1970-01-01 00:00,\n"
    );
}

#[test]
fn embedded_models_are_inlined_never_built() {
    let s = project();
    s.write(
        "models/big_orders.sql",
        "MODEL (name shop.big_orders, kind EMBEDDED);\nSELECT * FROM raw.events WHERE amount >= 30\n",
    );
    s.write(
        "models/big_order_report.sql",
        "MODEL (name shop.big_order_report, kind FULL);\n\
         SELECT customer, count(*) AS orders FROM shop.big_orders GROUP BY customer\n",
    );
    let out = s.apply("2024-01-02 00:00:00");
    assert!(
        !built_models(&out).contains(&"shop.big_orders".to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select * from shop.big_order_report order by 1"),
        "customer,orders\na,2\nc,1\n"
    );
    let out = s
        .lake()
        .args(["fetchdf", "select * from shop.big_orders"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an embedded model has no table or name"
    );
    // Changing the embedded query rebuilds its readers.
    s.write(
        "models/big_orders.sql",
        "MODEL (name shop.big_orders, kind EMBEDDED);\nSELECT * FROM raw.events WHERE amount >= 40\n",
    );
    let out = s.apply("2024-01-02 00:00:00");
    assert!(
        built_models(&out).contains(&"shop.big_order_report".to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select * from shop.big_order_report order by 1"),
        "customer,orders\na,1\nc,1\n"
    );
}

#[test]
fn lookback_picks_up_late_rows_and_history_refuses_restatement() {
    let s = project();
    s.write(
        "models/by_time.sql",
        "MODEL (name shop.by_time, kind INCREMENTAL_BY_TIME_RANGE (time_column day, lookback 1));\n\
         SELECT id, customer, amount, day FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds\n",
    );
    s.write(
        "models/history.sql",
        "MODEL (name shop.history, kind SCD_TYPE_2_BY_COLUMN (unique_key customer, columns *));\n\
         SELECT customer, max(amount) AS top FROM raw.events GROUP BY customer\n",
    );
    s.apply("2024-01-03 00:00:00");
    let out = s
        .lake()
        .args([
            "fetchdf",
            "INSERT INTO raw.events VALUES (7, 'z', 1, DATE '2024-01-02')",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The run for 01-03 also rebuilds the day before it.
    let out = run_at(&s, "2024-01-04 00:00:00");
    assert!(
        stderr(&out).contains("[insert 2024-01-02 - 2024-01-03, 3 rows]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select count(*) as n from shop.by_time where customer = 'z'"),
        "n\n1\n"
    );
    let out = s
        .lake()
        .args([
            "plan",
            "--restate-model",
            "shop.history",
            "--execution-time",
            "2024-01-04 00:00:00",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`shop.history` has restatement disabled"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn create_external_models_declares_what_models_read() {
    let s = project();
    std::fs::remove_file(s.project.join("external_models.yaml")).unwrap();
    let out = s.lake().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "undeclared tables are an error");
    let out = s.lake().args(["create-external-models"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Wrote external_models.yaml: 1 table declared.\n"
    );
    let written = s.read("external_models.yaml");
    assert!(
        written.contains(
            "- name: raw.events\n  columns:\n    id: INTEGER\n    customer: VARCHAR\n    amount: INTEGER\n    day: DATE\n"
        ),
        "{written}"
    );
    s.apply("2024-01-02 00:00:00");
}

/// DuckDB's view of a batched model's table is re-created once its batches are written, not after each:
/// a statement reading `@this_model` still sees every batch before it, and when a batch fails the batches
/// written before it are visible.
#[test]
fn batches_show_in_the_table_view_for_statements_that_read_it_and_after_a_failure() {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: days.db\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n  cron: '@daily'\n",
    );
    s.write(
        "models/counted.sql",
        "MODEL (name days.counted, kind INCREMENTAL_BY_TIME_RANGE (time_column day, batch_size 1));\n\
         CREATE SCHEMA IF NOT EXISTS log;\n\
         CREATE TABLE IF NOT EXISTS log.seen (n BIGINT);\n\
         SELECT @start_ds::DATE AS day, 1 AS n;\n\
         INSERT INTO log.seen SELECT count(*) FROM @this_model;\n",
    );
    // The same through a project macro: the statement itself never says `this_model`.
    s.write(
        "macros/seen.sql",
        "@DEF(record_seen, INSERT INTO macro_log.seen SELECT count(*) FROM @this_model);\n",
    );
    s.write(
        "models/counted_by_macro.sql",
        "MODEL (name days.counted_by_macro, kind INCREMENTAL_BY_TIME_RANGE (time_column day, batch_size 1));\n\
         CREATE SCHEMA IF NOT EXISTS macro_log;\n\
         CREATE TABLE IF NOT EXISTS macro_log.seen (n BIGINT);\n\
         SELECT @start_ds::DATE AS day, 1 AS n;\n\
         @record_seen;\n",
    );
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", "2024-01-05"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select n from log.seen order by n"),
        "n\n1\n2\n3\n4\n"
    );
    assert_eq!(
        s.csv("select n from macro_log.seen order by n"),
        "n\n1\n2\n3\n4\n"
    );
    assert_eq!(
        s.csv("select count(*) as days from days.counted"),
        "days\n4\n"
    );
    s.write(
        "models/failing.sql",
        "MODEL (name days.failing, kind INCREMENTAL_BY_TIME_RANGE (time_column day, batch_size 1));\n\
         SELECT @start_ds::DATE AS day, CASE WHEN @start_ds = '2024-01-03' THEN error('no data for this day') ELSE 1 END AS n\n",
    );
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", "2024-01-05"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no data for this day"),
        "{}",
        stderr(&out)
    );
    let physical = |model: &str| {
        s.csv(&format!(
            "select table_name from information_schema.tables \
             where table_schema = 'lake__days' and table_name like 'days__{model}__%'"
        ))
        .lines()
        .nth(1)
        .map(|name| format!("lake__days.\"{name}\""))
        .expect("the model's table exists")
    };
    assert_eq!(
        s.csv(&format!(
            "select count(*) as days, max(day) as last from {}",
            physical("failing")
        )),
        "days,last\n2,2024-01-02\n"
    );
}

/// A model's batches evaluated on several sessions at once (`batch_concurrency`, else `concurrent_tasks`)
/// give the rows one-at-a-time batches give, each interval recorded. Each session's temporary sequence
/// counts the batches it evaluated, so the log tells how many sessions took part. A failing batch leaves the
/// ones before it committed, nothing after it, and no file of a batch that was never committed.
#[test]
fn batch_concurrency_evaluates_batches_at_once_and_commits_them_in_order() {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: days.db\n      concurrent_tasks: 4\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n  cron: '@daily'\n",
    );
    let model = |name: &str, kind_extra: &str, day_value: &str| {
        format!(
            "MODEL (name days.{name}, kind INCREMENTAL_BY_TIME_RANGE (time_column day, batch_size 1{kind_extra}));\n\
             CREATE TABLE IF NOT EXISTS log.{name} (batch_of_session BIGINT, day DATE);\n\
             CREATE TEMP SEQUENCE IF NOT EXISTS batches_of_session;\n\
             INSERT INTO log.{name} SELECT nextval('batches_of_session'), @start_ds::DATE;\n\
             SELECT d::DATE AS day, {day_value} AS n, 'row ' || h AS label\n\
             FROM generate_series(@start_ds::DATE, @start_ds::DATE, INTERVAL 1 DAY) AS t(d), range(3) AS r(h)\n"
        )
    };
    let apply = || {
        s.lake()
            .args(["plan", "--auto-apply", "--execution-time", "2024-01-13"])
            .output()
            .unwrap()
    };
    // The log's schema exists before the two models' statements create their tables in it at once.
    let out = s
        .lake()
        .args(["fetchdf", "CREATE SCHEMA log"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    s.write(
        "models/at_once.sql",
        &model("at_once", "", "dayofmonth(d) * 10 + h"),
    );
    s.write(
        "models/one_by_one.sql",
        &model(
            "one_by_one",
            ", batch_concurrency 1",
            "dayofmonth(d) * 10 + h",
        ),
    );
    let out = apply();
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = |table: &str| s.csv(&format!("select * from {table} order by day, n"));
    assert_eq!(rows("days.at_once"), rows("days.one_by_one"));
    assert_eq!(
        s.csv("select count(*) as n, count(distinct day) as days, min(day) as first, max(day) as last from days.at_once"),
        "n,days,first,last\n36,12,2024-01-01,2024-01-12\n"
    );
    // One session built `one_by_one`; `at_once` had its first batch alone, then up to four more sessions.
    let sessions = |table: &str| {
        s.csv(&format!(
            "select count(*) filter (where batch_of_session = 1) as sessions, count(*) as batches from log.{table}"
        ))
    };
    assert_eq!(sessions("one_by_one"), "sessions,batches\n1,12\n");
    let at_once = sessions("at_once");
    let used: usize = at_once
        .lines()
        .nth(1)
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!((2..=5).contains(&used), "{at_once}");
    assert!(at_once.ends_with(",12\n"), "{at_once}");
    // Every interval was recorded.
    let out = s
        .lake()
        .args(["plan", "--execution-time", "2024-01-13"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "No changes to plan: project files match the `prod` environment\n"
    );
    // It only says how fast the batches are built: changing it is a metadata change, nothing is rebuilt.
    s.write(
        "models/one_by_one.sql",
        &model(
            "one_by_one",
            ", batch_concurrency 2",
            "dayofmonth(d) * 10 + h",
        ),
    );
    let out = apply();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("- `days.one_by_one` (Metadata)"),
        "{}",
        stdout(&out)
    );
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    // Zero is refused where it is written, in the model and in model_defaults.
    s.write(
        "models/one_by_one.sql",
        &model(
            "one_by_one",
            ", batch_concurrency 0",
            "dayofmonth(d) * 10 + h",
        ),
    );
    let out = s.lake().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr_words(&out);
    assert!(
        err.contains("`batch_concurrency` expects a whole number of at least 1")
            && err.contains("models/one_by_one.sql:1:"),
        "{err}"
    );
    s.write(
        "models/one_by_one.sql",
        &model(
            "one_by_one",
            ", batch_concurrency 2",
            "dayofmonth(d) * 10 + h",
        ),
    );
    let config = s.read("config.yaml");
    s.write("config.yaml", &format!("{config}  batch_concurrency: 0\n"));
    let out = s.lake().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr_words(&out);
    assert!(
        err.contains("config.yaml:")
            && err.contains("batch_concurrency")
            && err.contains("expects a whole number of at least 1"),
        "{err}"
    );
    s.write("config.yaml", &config);

    s.write(
        "models/failing.sql",
        &model(
            "failing",
            ", batch_concurrency 3",
            "CASE WHEN d = DATE '2024-01-05' THEN error('no data for this day') ELSE 1 END",
        ),
    );
    let out = apply();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no data for this day"),
        "{}",
        stderr(&out)
    );
    let physical = s
        .csv(
            "select table_name from information_schema.tables \
             where table_schema = 'lake__days' and table_name like 'days__failing__%'",
        )
        .lines()
        .nth(1)
        .map(str::to_string)
        .expect("the model's table exists");
    assert_eq!(
        s.csv(&format!(
            "select count(distinct day) as days, max(day) as last from lake__days.\"{physical}\""
        )),
        "days,last\n4,2024-01-04\n"
    );
    // One file per committed day: the later days some sessions evaluated were discarded with their files.
    let files = walkdir::WalkDir::new(s.project.join("warehouse"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path().extension().is_some_and(|x| x == "parquet")
                && e.path().to_string_lossy().contains(&physical)
        })
        .count();
    assert_eq!(files, 4);
    // Fixed, it is a new version, and every day is built.
    s.write(
        "models/failing.sql",
        &model("failing", ", batch_concurrency 3", "1"),
    );
    let out = apply();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select count(distinct day) as days, count(*) as n from days.failing"),
        "days,n\n12,36\n"
    );
}

#[test]
fn a_run_with_a_later_end_refreshes_full_models_missing_its_intervals() {
    let s = project();
    s.write(
        "models/daily_totals.sql",
        "MODEL (name shop.daily_totals, kind FULL);\n\
         SELECT day, sum(amount) AS amount FROM shop.by_time GROUP BY day\n",
    );
    s.apply("2024-01-02 00:00:00");
    let run_until = |end: &str| {
        let out = s
            .lake()
            .args([
                "run",
                "--end",
                end,
                "--execution-time",
                "2024-01-06 00:00:00",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        built_models(&out)
    };
    assert!(run_until("2024-01-02").contains(&"shop.daily_totals".to_string()));
    assert_eq!(
        s.csv("select max(day) as last from shop.daily_totals"),
        "last\n2024-01-02\n"
    );
    // The same execution time, a later end: the parent gains two days and the FULL model follows.
    let built = run_until("2024-01-04");
    assert!(built.contains(&"shop.by_time".to_string()), "{built:?}");
    assert!(
        built.contains(&"shop.daily_totals".to_string()),
        "{built:?}"
    );
    assert_eq!(
        s.csv("select max(day) as last from shop.daily_totals"),
        "last\n2024-01-04\n"
    );
    // Nothing missing up to that end any more.
    assert!(!run_until("2024-01-04").contains(&"shop.daily_totals".to_string()));

    let intervals = check_intervals(&s, "2024-01-06 00:00:00");
    assert!(
        intervals.contains(
            "shop.daily_totals\n  complete: 2024-01-01 - 2024-01-04\n  missing:  2024-01-05 - 2024-01-05\n"
        ),
        "{intervals}"
    );
}

#[test]
fn an_incremental_model_reads_its_own_rows_through_this_model() {
    let s = project();
    // A running total: each daily batch adds its amounts to the last total the table holds.
    s.write(
        "models/running.sql",
        "MODEL (name shop.running, kind INCREMENTAL_BY_TIME_RANGE (time_column day, batch_size 1));\n\
         SELECT day::DATE AS day,\n\
           (COALESCE((SELECT max(total) FROM @this_model WHERE day < @start_ds), 0) + amount)::BIGINT AS total\n\
         FROM (SELECT day, sum(amount) AS amount FROM raw.events\n\
               WHERE day BETWEEN @start_ds AND @end_ds GROUP BY day)\n",
    );
    s.apply("2024-01-05 00:00:00");
    assert_eq!(
        s.csv("select day, total from shop.running order by day"),
        "day,total\n2024-01-01,30\n2024-01-02,60\n2024-01-03,100\n2024-01-04,150\n"
    );

    // Its column types must be known before the first batch, which reads the (empty) table.
    s.write(
        "models/running.sql",
        "MODEL (name shop.running, kind INCREMENTAL_BY_TIME_RANGE (time_column day));\n\
         SELECT day, (SELECT count(*) FROM @this_model) AS before FROM raw.events\n",
    );
    let out = s.lake().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("models/running.sql:2:35: model `shop.running` reads its own table")
            && message.contains("declare them with `columns (name TYPE, …)`"),
        "{message}"
    );
}

#[test]
fn when_matched_and_merge_filter_shape_unique_key_merges_on_both_storages() {
    for storage in ["", "storage:\n  type: duckdb\n"] {
        let s = project();
        s.write(
            "config.yaml",
            &format!("{}{storage}", s.read("config.yaml")),
        );
        // Totals that accumulate across batches, as SQLMesh users write it (qualified SET targets).
        s.write(
            "models/accumulated.sql",
            "MODEL (name shop.accumulated, kind INCREMENTAL_BY_UNIQUE_KEY (unique_key customer,\n\
             when_matched (WHEN MATCHED THEN UPDATE SET target.total = target.total + source.total, target.last_day = source.last_day)));\n\
             SELECT customer, sum(amount) AS total, max(day) AS last_day\n\
             FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds GROUP BY customer\n",
        );
        // Only rows whose total is below 30 are replaced; a new row for any other key is inserted beside it.
        s.write(
            "models/filtered.sql",
            "MODEL (name shop.filtered, kind INCREMENTAL_BY_UNIQUE_KEY (unique_key customer,\n\
             merge_filter target.total < 30 AND source.last_day >= @start_ds));\n\
             SELECT customer, sum(amount) AS total, max(day) AS last_day\n\
             FROM raw.events WHERE day BETWEEN @start_ds AND @end_ds GROUP BY customer\n",
        );
        s.apply("2024-01-03 06:00:00");
        run_at(&s, "2024-01-05 06:00:00");
        assert_eq!(
            s.csv("select customer, total, last_day from shop.accumulated order by customer"),
            "customer,total,last_day\na,90,2024-01-04\nb,20,2024-01-01\nc,40,2024-01-03\n",
            "{storage}"
        );
        assert_eq!(
            s.csv("select customer, total from shop.filtered order by customer, total"),
            "customer,total\na,40\na,50\nb,20\nc,40\n",
            "{storage}"
        );
    }

    // A when_matched that is not MERGE clauses is a located error when the project loads.
    let s = project();
    s.write(
        "models/accumulated.sql",
        "MODEL (name shop.accumulated, kind INCREMENTAL_BY_UNIQUE_KEY (unique_key customer,\n\
         when_matched (WHEN NOT MATCHED THEN INSERT VALUES (1))));\nSELECT 1 AS customer\n",
    );
    let out = s.lake().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr_words(&out);
    assert!(
        message.contains("models/accumulated.sql:2:15: `when_matched`: `WHEN NOT MATCHED THEN INSERT VALUES (1)` is not a WHEN MATCHED clause"),
        "{message}"
    );
}

/// `time_column_format` gives the format of time columns holding text or numbers that name no format of
/// their own, as SQLMesh does: a batch's bounds are written in it. Date columns are compared as dates.
#[test]
fn time_column_format_formats_the_bounds_of_text_and_number_time_columns() {
    let s = Scratch::empty();
    let config = "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: days.db\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n  cron: '@daily'\n";
    s.write("config.yaml", config);
    let model = |name: &str, columns: &str, ds: &str| {
        format!(
            "MODEL (name days.{name}, kind INCREMENTAL_BY_TIME_RANGE (time_column ds, batch_size 1){columns});\n\
             SELECT {ds} AS ds, dayofmonth(d) AS n\n\
             FROM generate_series(DATE '2024-01-01', DATE '2024-01-09', INTERVAL 1 DAY) AS t(d)\n\
             WHERE d BETWEEN @start_ds AND @end_ds\n"
        )
    };
    s.write(
        "models/as_text.sql",
        &model("as_text", "", "strftime(d, '%Y%m%d')"),
    );
    s.write(
        "models/as_number.sql",
        &model("as_number", "", "CAST(strftime(d, '%Y%m%d') AS INTEGER)"),
    );
    s.write(
        "models/declared.sql",
        &model(
            "declared",
            ", columns (ds TEXT, n BIGINT)",
            "strftime(d, '%Y%m%d')",
        ),
    );
    s.write("models/as_date.sql", &model("as_date", "", "d::DATE"));
    let apply = || {
        s.lake()
            .args(["plan", "--auto-apply", "--execution-time", "2024-01-04"])
            .output()
            .unwrap()
    };
    // Without it, `'20240101'` is compared with a timestamp, which DuckDB cannot read it as.
    let out = apply();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    s.write(
        "config.yaml",
        &format!("{config}time_column_format: '%Y%m%d'\n"),
    );
    let out = apply();
    assert!(out.status.success(), "{}", stderr(&out));
    for model in ["as_text", "as_number", "declared", "as_date"] {
        assert_eq!(
            s.csv(&format!(
                "select count(*) as days, sum(n) as n from days.{model}"
            )),
            "days,n\n3,6\n",
            "{model}"
        );
    }
    assert_eq!(
        s.csv("select min(ds) as first, max(ds) as last from days.as_text"),
        "first,last\n20240101,20240103\n"
    );
    let out = s
        .lake()
        .args(["plan", "--execution-time", "2024-01-04"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "No changes to plan: project files match the `prod` environment\n"
    );

    s.write(
        "config.yaml",
        &format!("{config}time_column_format: '%Y%Q'\n"),
    );
    let out = s.lake().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr_words(&out);
    assert!(
        err.contains("config.yaml:10:22") && err.contains("`%Y%Q` is not a time format"),
        "{err}"
    );
}
