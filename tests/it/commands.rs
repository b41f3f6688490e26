//! The inspection commands: fetchdf formats, render, evaluate, dag, info, run; and loading real SQLMesh projects.

use crate::common::{EXEC, Scratch, built_models, stderr, stdout};

#[test]
fn fetchdf_formats() {
    let s = Scratch::init();
    s.apply(EXEC);
    let sql =
        "select item_id, num_orders, 'x' || item_id as label from demo.full_model order by item_id";
    let out = s.lake().args(["fetchdf", sql]).output().unwrap();
    assert_eq!(
        stdout(&out),
        "item_id  num_orders  label\n      1           5  x1\n      2           1  x2\n      3           1  x3\n"
    );
    let out = s
        .lake()
        .args(["fetchdf", "--format", "json", sql])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows[0],
        serde_json::json!({"item_id": 1, "num_orders": 5, "label": "x1"})
    );
    let out = s
        .lake()
        .args(["fetchdf", "--format", "csv", "select 1 as a where false"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "a\n");
    // Results spanning several Arrow batches stream as one CSV (one header) and one JSON array.
    let many = "select range as n from range(5000)";
    let out = s
        .lake()
        .args(["fetchdf", "--format", "csv", many])
        .output()
        .unwrap();
    let csv = stdout(&out);
    assert_eq!(csv.lines().count(), 5001);
    assert_eq!(csv.lines().filter(|l| *l == "n").count(), 1, "one header");
    let out = s
        .lake()
        .args(["fetchdf", "--format", "json", many])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 5000);
    assert_eq!(rows[4999], serde_json::json!({"n": 4999}));
    let out = s
        .lake()
        .args(["fetchdf", "--format", "json", "select 1 as a where false"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "[]\n");
    let out = s
        .lake()
        .args(["fetchdf", "select * from nowhere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
}

#[test]
fn render_and_evaluate_use_physical_tables() {
    let s = Scratch::init();
    let out = s
        .lake()
        .args(["render", "demo.full_model"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sql = stdout(&out);
    assert!(
        sql.contains("FROM lake__demo.demo__incremental_model__"),
        "{sql}"
    );
    assert!(sql.contains(" AS incremental_model"), "{sql}");

    let out = s
        .lake()
        .args(["evaluate", "demo.full_model"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "evaluating before the parent is built is a usage error"
    );
    s.apply(EXEC);
    let out = s
        .lake()
        .args([
            "evaluate",
            "demo.full_model",
            "--format",
            "csv",
            "--limit",
            "2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "item_id,num_orders\n1,5\n2,1\n");

    let out = s
        .lake()
        .args(["render", "demo.ful_model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did you mean `demo.full_model`?"),
        "{}",
        stderr(&out)
    );
}

/// `mermaid` is a Mermaid flowchart whose node ids are plain words (`m3`), with an edge `from --> to`.
fn assert_mermaid_edge(mermaid: &str, from: &str, to: &str) {
    let mut lines = mermaid.lines();
    assert_eq!(lines.next(), Some("graph LR"), "{mermaid}");
    let mut ids = std::collections::HashMap::new();
    let mut edges = Vec::new();
    for line in lines {
        let line = line.trim();
        if let Some((id, label)) = line.split_once("[\"") {
            ids.insert(label.trim_end_matches("\"]").to_string(), id.to_string());
        } else if let Some((a, b)) = line.split_once(" --> ") {
            edges.push((a.to_string(), b.to_string()));
        } else {
            panic!("not a Mermaid node or edge: {line:?} in\n{mermaid}");
        }
    }
    for id in ids.values().chain(edges.iter().flat_map(|(a, b)| [a, b])) {
        assert!(
            id.starts_with('m') && id[1..].chars().all(|c| c.is_ascii_digit()),
            "node id {id:?} is not a plain word in\n{mermaid}"
        );
    }
    let edge = (ids[from].clone(), ids[to].clone());
    assert!(
        edges.contains(&edge),
        "no edge {from} --> {to} in\n{mermaid}"
    );
}

#[test]
fn dag_and_info() {
    let s = Scratch::init();
    let out = s.lake().args(["dag"]).output().unwrap();
    assert_eq!(
        stdout(&out),
        "demo.seed_model\ndemo.incremental_model <- demo.seed_model\ndemo.full_model <- demo.incremental_model\ndemo.view_model <- demo.full_model\n"
    );
    let out = s.lake().args(["dag", "--format", "dot"]).output().unwrap();
    assert!(stdout(&out).contains("\"demo.incremental_model\" -> \"demo.full_model\";"));
    let out = s
        .lake()
        .args(["dag", "--format", "mermaid"])
        .output()
        .unwrap();
    assert_mermaid_edge(&stdout(&out), "demo.incremental_model", "demo.full_model");
    let out = s.lake().args(["info"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let info = stdout(&out);
    assert!(info.contains("Models: 4\n"), "{info}");
    assert!(
        info.contains("Data warehouse connection succeeded"),
        "{info}"
    );
    let root = s.project.canonicalize().unwrap();
    assert!(
        info.contains(&format!(
            "Storage: Iceberg tables in file://{}/warehouse, SQLite catalog {}/.lake/catalog.db — reachable\n",
            root.display(),
            s.project.display()
        )),
        "{info}"
    );
    let out = s.lake().args(["info", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["models"], 4);
    assert_eq!(json["storage_ok"], true);

    // A catalog that cannot be reached makes `info` fail (exit 1) and say which part failed.
    s.write(
        "config.yaml",
        &(s.read("config.yaml") + "\nstorage:\n  catalog: {type: postgres, host: 127.0.0.1, port: 1, database: none}\n"),
    );
    let out = s.lake().args(["info"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("Storage: Iceberg tables in file://")
            && stdout(&out).contains("PostgreSQL catalog (schema public) — cannot be opened"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn run_builds_what_the_cron_makes_due() {
    let s = Scratch::init();
    s.lake()
        .args([
            "plan",
            "--auto-apply",
            "--execution-time",
            "2024-06-01 12:00:00",
        ])
        .assert()
        .success();
    let out = s
        .lake()
        .args(["run", "--execution-time", "2024-06-01 18:00:00"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        built_models(&out).is_empty(),
        "not due yet: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Nothing to run"));

    let out = s
        .lake()
        .args(["run", "--execution-time", "2024-06-02 00:30:00"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // A day passed: the incremental model gets its new day, the daily FULL model is rebuilt; the seed and
    // the view never need a rerun.
    assert_eq!(
        built_models(&out),
        ["demo.incremental_model", "demo.full_model"]
    );
    assert!(
        stderr(&out).contains("[insert 2024-06-01 - 2024-06-01, 0 rows]"),
        "{}",
        stderr(&out)
    );

    s.write(
        "models/full_model.sql",
        &s.read("models/full_model.sql")
            .replace("ORDER BY", "ORDER BY num_orders,"),
    );
    let out = s.lake().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("differ from environment `prod`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_refuses_a_non_empty_directory() {
    let s = Scratch::init();
    let out = crate::common::lake(s.dir.path())
        .args(["init", "demo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"));
    crate::common::lake(s.dir.path())
        .args(["init", "demo", "--force"])
        .assert()
        .success();
}

#[test]
fn generated_sqlmesh_project_loads_and_applies_unchanged() {
    let generator =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen_project.py");
    assert!(
        generator.exists(),
        "{} is missing: CI runs with ../shared beside the clone",
        generator.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("gen");
    let status = std::process::Command::new("python3")
        .arg(&generator)
        .arg(&project)
        // The generator's default mix: 40 % INCREMENTAL_BY_TIME_RANGE models.
        .args(["--models", "50"])
        .status()
        .unwrap();
    assert!(status.success());
    let run = |args: &[&str]| {
        crate::common::lake(dir.path())
            .arg("-p")
            .arg(&project)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["plan", "--auto-apply", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(built_models(&out).len(), 50);
    let out = run(&["plan", "--execution-time", EXEC]);
    assert_eq!(
        stdout(&out),
        "No changes to plan: project files match the `prod` environment\n"
    );
    // A day later, a run builds the new day of each incremental model and refreshes the FULL ones.
    let out = run(&["run", "--execution-time", "2024-06-02 01:00:00"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inserted = stderr(&out)
        .lines()
        .filter(|l| l.contains("[insert 2024-06-01 - 2024-06-01"))
        .count();
    assert!(inserted > 0, "{}", stderr(&out));
    // Every model's rows are queryable through prod's names.
    let out = run(&[
        "fetchdf",
        "--format",
        "csv",
        "select count(*) as n from bench.seed_000",
    ]);
    assert_eq!(stdout(&out), "n\n1000\n");

    let status = std::process::Command::new("python3")
        .arg(&generator)
        .arg(&project)
        .args(["--mutate", "leaf"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = run(&["plan", "--auto-apply", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(built_models(&out).len(), 1, "{}", stderr(&out));
}

#[test]
fn example_shop_project_builds() {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shop");
    let s = Scratch::empty();
    for entry in walkdir::WalkDir::new(&source)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let relative = entry.path().strip_prefix(&source).unwrap();
        if entry.file_type().is_file() {
            s.write(
                relative.to_str().unwrap(),
                &std::fs::read_to_string(entry.path()).unwrap(),
            );
        }
    }
    s.apply(EXEC);
    assert_eq!(
        s.csv("select customer_id, revenue, orders from marts.customer_revenue order by 1"),
        "customer_id,revenue,orders\n1,65.50,2\n2,21.00,1\n3,99.90,1\n"
    );
}

#[test]
fn older_state_is_refused_until_lake_migrate() {
    let s = Scratch::init();
    s.apply(EXEC);
    {
        // Turn the state back into schema 1, as an older lake left it.
        let conn = rusqlite::Connection::open(s.project.join(".lake/state.db")).unwrap();
        conn.execute_batch(
            "ALTER TABLE intervals DROP COLUMN write_id; ALTER TABLE environments DROP COLUMN suffix_target; \
             ALTER TABLE snapshots DROP COLUMN physical_schema; \
             DELETE FROM _versions; INSERT INTO _versions VALUES (1, '0.1.0');",
        )
        .unwrap();
    }
    let out = s.lake().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("run `lake migrate`"),
        "{}",
        stderr(&out)
    );
    let out = s.lake().args(["migrate"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "State is at schema version 5.\n");
    s.assert_no_changes();
    s.assert_demo_results();

    // `lake rollback` undoes the migration: schema 1's columns and rows, as the older lake left them.
    let columns = |table: &str| {
        let conn = rusqlite::Connection::open(s.project.join(".lake/state.db")).unwrap();
        let mut statement = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap();
        statement
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    let out = s.lake().args(["rollback"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("back at schema version 1"),
        "{}",
        stdout(&out)
    );
    assert!(!columns("intervals").contains(&"write_id".to_string()));
    assert!(!columns("snapshots").contains(&"physical_schema".to_string()));
    assert!(
        columns("_backup_intervals").is_empty(),
        "the copy is used up"
    );
    let out = s.lake().args(["plan"]).output().unwrap();
    assert!(
        stderr(&out).contains("run `lake migrate`"),
        "{}",
        stderr(&out)
    );
    let out = s.lake().args(["rollback"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no migration to roll back"),
        "{}",
        stderr(&out)
    );
    // Migrating again finds the same state.
    assert!(
        s.lake()
            .args(["migrate"])
            .output()
            .unwrap()
            .status
            .success()
    );
    s.assert_no_changes();
    s.assert_demo_results();
}

/// `--profile` says on stderr where an apply's time went, phase by phase, and leaves stdout as it was.
#[test]
fn profile_breaks_an_apply_down_by_phase() {
    let s = Scratch::init();
    let out = s
        .lake()
        .args([
            "--profile",
            "plan",
            "--auto-apply",
            "--execution-time",
            EXEC,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let report = &err[err
        .find("profile (own time per phase, summed over threads):")
        .unwrap_or_else(|| panic!("no profile in:\n{err}"))..];
    for phase in [
        "load project",
        "DuckDB queries",
        "Parquet encoding",
        "Iceberg metadata writes",
        "catalog commits",
        "DuckDB views",
        "environment names",
        "audits",
        "state writes",
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no `{phase}` in:\n{report}"));
        let count: u64 = line.split_whitespace().last().unwrap().parse().unwrap();
        assert!(count >= 1, "{line}");
    }
    assert!(report.contains("\nwall: "), "{report}");
    assert!(!stdout(&out).contains("profile"), "{}", stdout(&out));

    // JSON output stays parseable with the profile on.
    let out = s
        .lake()
        .args(["info", "--json", "--profile"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["models"], 4);
    assert!(stderr(&out).contains("load project"), "{}", stderr(&out));
}

/// `lake` answers `--version`, `--help` and usage errors without loading DuckDB, and hands every other command
/// to `lake-engine` from its own folder; without that binary it says so instead of failing obscurely.
#[test]
fn lake_starts_without_duckdb_and_runs_commands_through_its_engine() {
    let lake = assert_cmd::cargo::cargo_bin("lake");
    let out = std::process::Command::new(&lake)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("lake {}\n", env!("CARGO_PKG_VERSION"))
    );
    // glibc's loader lists what a binary loads, without running it.
    let loaded = std::process::Command::new(&lake)
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .unwrap();
    let loaded = stdout(&loaded);
    assert!(loaded.contains("libc."), "{loaded}");
    assert!(!loaded.contains("duckdb"), "{loaded}");

    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("lake");
    std::fs::copy(&lake, &copy).unwrap();
    let help = std::process::Command::new(&copy)
        .args(["plan", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success(), "{}", stderr(&help));
    assert!(
        stdout(&help).contains("Usage: lake plan"),
        "{}",
        stdout(&help)
    );
    let usage = std::process::Command::new(&copy)
        .args(["plan", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2), "{}", stderr(&usage));
    let missing = std::process::Command::new(&copy)
        .args(["-p", alone.path().to_str().unwrap(), "plan"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("lake-engine") && stderr(&missing).contains("hint:"),
        "{}",
        stderr(&missing)
    );

    // Through the engine: the exit code and output are the command's own.
    let s = Scratch::init();
    let out = s.lake().args(["plan", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = s.lake().args(["info", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["models"], 4);
}
