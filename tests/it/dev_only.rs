//! `virtual_environment_mode: dev_only`: prod's tables live in place under the model names and carry every
//! version's data forward, dev environments build preview tables prod never takes, and switching the mode
//! rebuilds prod in the other layout.

use serde_json::Value;

use crate::common::readers::{pyiceberg, read_project_catalog};
use crate::common::{Scratch, built_models, stderr, stderr_words, stdout};

const CONFIG: &str = "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: shop.db\n\
model_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n  cron: '@daily'\n";

const EVENTS: &str = "MODEL (name shop.events, kind INCREMENTAL_BY_TIME_RANGE (time_column day));\n\
SELECT id, amount, day FROM shop.raw WHERE day BETWEEN @start_ds AND @end_ds\n";

pub(crate) const EVENTS_DOUBLED: &str = "MODEL (name shop.events, kind INCREMENTAL_BY_TIME_RANGE (time_column day));\n\
SELECT id, amount, day, amount * 2 AS doubled FROM shop.raw WHERE day BETWEEN @start_ds AND @end_ds\n";

/// A seed, an incremental model over it, a FULL total and a view, in `mode`, stored as `storage` says.
pub(crate) fn project(mode: &str, storage: &str) -> Scratch {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        &format!("{CONFIG}virtual_environment_mode: {mode}\n{storage}"),
    );
    s.write(
        "seeds/raw.csv",
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n3,30,2024-01-03\n4,40,2024-01-04\n",
    );
    s.write(
        "models/raw.sql",
        "MODEL (name shop.raw, kind SEED (path '../seeds/raw.csv'), columns (id int, amount int, day date));\n",
    );
    s.write("models/events.sql", EVENTS);
    s.write(
        "models/total.sql",
        "MODEL (name shop.total, kind FULL);\nSELECT sum(amount) AS total FROM shop.events\n",
    );
    s.write(
        "models/ids.sql",
        "MODEL (name shop.ids, kind VIEW);\nSELECT id FROM shop.events\n",
    );
    s
}

fn lake(s: &Scratch, args: &[&str]) -> std::process::Output {
    let out = s.lake().args(args).output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    out
}

fn succeed(s: &Scratch, args: &[&str]) -> std::process::Output {
    let out = lake(s, args);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    out
}

fn table_name(s: &Scratch, model: &str, environment: &str) -> String {
    stdout(&succeed(s, &["table-name", model, "--env", environment]))
        .trim()
        .to_string()
}

fn set_mode(s: &Scratch, mode: &str) {
    let config = s.read("config.yaml");
    let line = config
        .lines()
        .find(|l| l.starts_with("virtual_environment_mode:"))
        .expect("the mode line");
    s.write(
        "config.yaml",
        &config.replace(line, &format!("virtual_environment_mode: {mode}")),
    );
}

/// How many snapshots the Iceberg table behind `name` has, and where its metadata lives, as pyiceberg reads
/// the catalog.
fn iceberg_history(python: &str, s: &Scratch, name: &str) -> (usize, String) {
    let tables = read_project_catalog(python, &s.project);
    let table = &tables[name];
    let operations = table["operations"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} in {tables}"));
    let metadata = table["metadata"].as_str().unwrap_or_default().to_string();
    (operations.len(), metadata)
}

#[test]
fn dev_only_prod_writes_tables_in_place_and_dev_previews_never_reach_prod() {
    let s = project("dev_only", "");
    succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-03"],
    );
    // Prod's table is the model's own name: no versioned table behind it.
    assert_eq!(table_name(&s, "shop.events", "prod"), "shop.events");
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n"
    );
    let python = pyiceberg();
    if let Some(python) = &python {
        let tables = read_project_catalog(python, &s.project);
        let names: Vec<&String> = tables.as_object().unwrap().keys().collect();
        assert!(
            names.iter().all(|n| !n.starts_with("lake__")),
            "no versioned tables in prod: {names:?}"
        );
        let (_, metadata) = iceberg_history(python, &s, "shop.events");
        assert!(
            metadata.contains("/warehouse/shop/events/metadata/"),
            "{metadata}"
        );
    }

    // In dev, the change is built in a preview table of its own; prod's table is not written.
    s.write("models/events.sql", EVENTS_DOUBLED);
    let out = succeed(
        &s,
        &[
            "plan",
            "dev",
            "--auto-apply",
            "--execution-time",
            "2024-01-03",
        ],
    );
    assert_eq!(built_models(&out), ["shop__dev.events", "shop__dev.ids"]);
    let preview = table_name(&s, "shop.events", "dev");
    assert!(
        preview.starts_with("lake__shop.shop__events__") && preview.ends_with("_preview"),
        "{preview}"
    );
    // The unchanged FULL child shows prod's in-place table in dev.
    assert_eq!(table_name(&s, "shop.total", "dev"), "shop.total");
    assert_eq!(
        s.csv("select * from shop__dev.events order by id"),
        "id,amount,day,doubled\n1,10,2024-01-01,20\n2,20,2024-01-02,40\n"
    );
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n"
    );
    let before_deploy = python
        .as_deref()
        .map(|p| iceberg_history(p, &s, "shop.events"));

    // Deployed to prod: forward-only, nothing rebuilt, the column added in place; dev's rows never reach prod.
    let out = succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-03"],
    );
    assert!(
        stdout(&out).contains(
            "- `shop.events` (Forward-only: virtual_environment_mode is `dev_only`: prod's table keeps its rows"
        ),
        "{}",
        stdout(&out)
    );
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(table_name(&s, "shop.events", "prod"), "shop.events");
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day,doubled\n1,10,2024-01-01,\n2,20,2024-01-02,\n"
    );
    succeed(&s, &["run", "--execution-time", "2024-01-05"]);
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day,doubled\n1,10,2024-01-01,\n2,20,2024-01-02,\n3,30,2024-01-03,60\n4,40,2024-01-04,80\n"
    );
    assert_eq!(s.csv("select * from shop.total"), "total\n100\n");
    if let (Some(python), Some((snapshots_before, metadata_before))) = (&python, before_deploy) {
        // One table with one history across versions: the run's commit follows the first build's.
        let (snapshots, metadata) = iceberg_history(python, &s, "shop.events");
        assert!(
            snapshots > snapshots_before,
            "{snapshots} <= {snapshots_before}"
        );
        let folder = |m: &str| m.rsplit_once('/').map(|(dir, _)| dir.to_string());
        assert_eq!(folder(&metadata), folder(&metadata_before));
    }

    // Reverting drops a column: a destructive change, refused unless allowed, as for any forward-only change.
    s.write("models/events.sql", EVENTS);
    let out = lake(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-05"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr_words(&out).contains("drops column `doubled`"),
        "{}",
        stderr(&out)
    );
    succeed(
        &s,
        &[
            "plan",
            "--auto-apply",
            "--execution-time",
            "2024-01-05",
            "--allow-destructive-model",
            "shop.events",
        ],
    );
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n3,30,2024-01-03\n4,40,2024-01-04\n"
    );

    // A new kind does not fit the table: prod's object is rebuilt in place, here as a view.
    s.write(
        "models/total.sql",
        "MODEL (name shop.total, kind VIEW);\nSELECT sum(amount) AS total FROM shop.events\n",
    );
    let out = succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-05"],
    );
    assert!(
        stdout(&out)
            .contains("(Breaking: changed the model kind: prod's table is rebuilt in place)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(built_models(&out), ["shop.total"]);
    assert_eq!(s.csv("select * from shop.total"), "total\n100\n");
    assert!(!s.project.join("warehouse/shop/total").exists());
    // Dev showed prod's table: it shows the rebuilt object, and no catalog name is left on deleted files.
    assert_eq!(s.csv("select * from shop__dev.total"), "total\n100\n");
    if let Some(python) = &python {
        let tables = read_project_catalog(python, &s.project);
        assert!(tables.get("shop__dev.total").is_none(), "{tables}");
    }

    // A model removed from prod takes its in-place object with it.
    std::fs::remove_file(s.project.join("models/ids.sql")).unwrap();
    succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-05"],
    );
    assert_eq!(
        s.csv(
            "select table_name from information_schema.tables where table_schema = 'shop' order by 1"
        ),
        "table_name\nevents\nraw\ntotal\n"
    );

    // The janitor never drops prod's in-place tables.
    succeed(&s, &["janitor", "--ignore-ttl"]);
    assert_eq!(s.csv("select count(*) AS n from shop.events"), "n\n4\n");

    // Back to `full`: prod gets versioned tables behind its names, and the in-place ones go.
    set_mode(&s, "full");
    let out = succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-05"],
    );
    assert_eq!(
        built_models(&out),
        ["shop.raw", "shop.events", "shop.total"]
    );
    let versioned = table_name(&s, "shop.events", "prod");
    assert!(
        versioned.starts_with("lake__shop.shop__events__"),
        "{versioned}"
    );
    assert!(!s.project.join("warehouse/shop/events").exists());
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n3,30,2024-01-03\n4,40,2024-01-04\n"
    );

    // And `dev_only` again: the names make room for in-place tables, rebuilt whole.
    set_mode(&s, "dev_only");
    succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-05"],
    );
    assert_eq!(table_name(&s, "shop.events", "prod"), "shop.events");
    assert_eq!(s.csv("select * from shop.total"), "total\n100\n");
    assert_eq!(
        stdout(&succeed(&s, &["plan", "--execution-time", "2024-01-05"])),
        "No changes to plan: project files match the `prod` environment\n"
    );
    // Another machine's DuckDB file (a fresh one) finds the in-place tables through state.
    std::fs::remove_file(s.project.join("shop.db")).unwrap();
    assert_eq!(s.csv("select count(*) AS n from shop.events"), "n\n4\n");
    if let Some(python) = &python {
        let tables: Value = read_project_catalog(python, &s.project);
        assert!(
            tables["shop.events"]["metadata"]
                .as_str()
                .is_some_and(|m| m.contains("/warehouse/shop/events/metadata/")),
            "{tables}"
        );
    }
}

#[test]
fn dev_only_with_duckdb_storage_makes_prod_base_tables_and_dev_views() {
    let s = project("dev_only", "storage:\n  type: duckdb\n");
    succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-03"],
    );
    s.write("models/events.sql", EVENTS_DOUBLED);
    succeed(
        &s,
        &[
            "plan",
            "dev",
            "--auto-apply",
            "--execution-time",
            "2024-01-03",
        ],
    );
    assert_eq!(
        s.csv(
            "select table_schema, table_type from information_schema.tables \
             where table_name = 'events' or table_name like 'shop\\_\\_events\\_\\_%' escape '\\' order by 1"
        ),
        "table_schema,table_type\nlake__shop,BASE TABLE\nshop,BASE TABLE\nshop__dev,VIEW\n"
    );
    succeed(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-03"],
    );
    succeed(&s, &["run", "--execution-time", "2024-01-05"]);
    assert_eq!(
        s.csv("select id, doubled from shop.events order by id"),
        "id,doubled\n1,\n2,\n3,60\n4,80\n"
    );
    // A restatement rebuilds the in-place table's data with the current logic.
    let out = succeed(
        &s,
        &[
            "plan",
            "--auto-apply",
            "--restate-model",
            "shop.events",
            "--execution-time",
            "2024-01-05",
        ],
    );
    assert!(
        built_models(&out).contains(&"shop.events".to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select id, doubled from shop.events order by id"),
        "id,doubled\n1,20\n2,40\n3,60\n4,80\n"
    );
    assert_eq!(
        s.csv("select table_type from information_schema.tables where table_schema = 'shop' and table_name = 'events'"),
        "table_type\nBASE TABLE\n"
    );
    // A dev environment's run never writes prod's in-place tables it shows.
    let out = succeed(&s, &["run", "dev", "--execution-time", "2024-01-05"]);
    assert!(
        built_models(&out).iter().all(|m| m != "shop__dev.total"),
        "{}",
        stderr(&out)
    );
}

/// Applies `project(from, storage)`, switches config.yaml to `to`, lets the switching apply die at
/// `before-promote`, then plans again, which must finish the switch; returns the project with the rows every
/// mode must show checked.
fn switch_with_a_crash_before_promotion(from: &str, to: &str, storage: &str) -> Scratch {
    let s = project(from, storage);
    let apply = ["plan", "--auto-apply", "--execution-time", "2024-01-05"];
    succeed(&s, &apply);
    set_mode(&s, to);
    let out = s
        .lake()
        .args(apply)
        .env("LAKE_FAILPOINT", "before-promote")
        .output()
        .unwrap();
    assert!(
        !out.status.success() && stderr(&out).contains("failpoint before-promote"),
        "{storage}: {}",
        stderr(&out)
    );
    succeed(&s, &apply);
    assert_eq!(
        s.csv("select * from shop.events order by id"),
        "id,amount,day\n1,10,2024-01-01\n2,20,2024-01-02\n3,30,2024-01-03\n4,40,2024-01-04\n",
        "{storage}"
    );
    assert_eq!(s.csv("select * from shop.total"), "total\n100\n");
    assert_eq!(
        s.csv("select count(*) AS n from shop.ids"),
        "n\n4\n",
        "{storage}"
    );
    s
}

#[test]
fn switching_to_dev_only_resumes_after_a_crash_before_promotion() {
    for storage in ["", "storage:\n  type: duckdb\n"] {
        // The in-place tables were built when the process died; the next plan makes them prod's names.
        let s = switch_with_a_crash_before_promotion("full", "dev_only", storage);
        assert_eq!(table_name(&s, "shop.events", "prod"), "shop.events");
    }
}

#[test]
fn switching_back_to_full_resumes_after_a_crash_before_promotion_and_keeps_every_table() {
    for storage in ["", "storage:\n  type: duckdb\n"] {
        // Versioned tables were built, the in-place ones dropped and prod's names pointed when the process
        // died; the next plan promotes without dropping what the names now show.
        let s = switch_with_a_crash_before_promotion("dev_only", "full", storage);
        let versioned = table_name(&s, "shop.events", "prod");
        assert!(versioned.starts_with("lake__shop."), "{versioned}");
        if storage.is_empty() {
            assert!(!s.project.join("warehouse/shop/events").exists());
            let folder = versioned.replace('.', "/");
            assert!(s.project.join("warehouse").join(folder).exists());
        }
    }
}
