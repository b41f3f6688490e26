//! Spark Connect gateways on a real engine: Sail (`pysail`), with `lake serve --allow-writes` as the Iceberg
//! REST catalog the engine and lake share. The same projects built on DuckDB give the reference rows.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::readers::pysail;
use crate::common::{EXEC, Scratch, built_models, stderr};
use crate::serve::Server;

/// A Sail server started for one test, reading and writing lake's catalog through `lake serve`.
struct Sail {
    child: Child,
    port: u16,
    /// Sail's catalog, kept alive as long as Sail.
    catalog: Server,
}

impl Drop for Sail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `lake serve --allow-writes` on `s`, and Sail on a free loopback port with it as catalog `lake`; `None`
/// when Sail is not installed and CI does not require it.
fn start_sail(s: &Scratch) -> Option<Sail> {
    let python = pysail()?;
    let catalog = Server::start_with(s, &["--allow-writes"]);
    let sail = Path::new(&python)
        .parent()
        .expect("the venv's bin folder")
        .join("sail");
    let port = free_port();
    let workdir = s.dir.path().join("sail");
    std::fs::create_dir_all(&workdir).expect("sail's working folder");
    let child = Command::new(sail)
        .args(["spark", "server", "--ip", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("-C")
        .arg(&workdir)
        .env(
            "SAIL_CATALOG__LIST",
            format!(
                r#"[{{type="iceberg-rest", name="lake", uri="{}"}}]"#,
                catalog.uri()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sail");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sail did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Sail {
        child,
        port,
        catalog,
    })
}

/// Makes `cluster` (Sail at `port`, with `extra` URL parameters) the project's default gateway, the DuckDB
/// gateway `local` kept for models that pin it.
fn use_cluster(s: &Scratch, remote: &str) {
    let config = s.read("config.yaml");
    let config = config
        .replacen(
            "gateways:\n",
            &format!(
                "gateways:\n  cluster:\n    connection:\n      type: spark\n      remote: {remote}\n      catalog: lake\n"
            ),
            1,
        )
        .replace("default_gateway: local", "default_gateway: cluster");
    assert!(config.contains("default_gateway: cluster"), "{config}");
    s.write("config.yaml", &config);
}

/// A copy of a project in a new scratch folder (the same files, no state).
fn twin(s: &Scratch) -> Scratch {
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir
        .path()
        .join(s.project.file_name().expect("project folder"));
    let files = walkdir::WalkDir::new(&s.project)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file());
    for entry in files {
        let entry = entry.path();
        let relative = entry.strip_prefix(&s.project).expect("inside the project");
        let first = relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        if matches!(first.as_deref(), Some(".lake" | "warehouse" | "sail"))
            || relative.to_string_lossy().ends_with(".db")
        {
            continue;
        }
        let target = project.join(relative);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(entry, &target).expect("copy a project file");
    }
    Scratch {
        dir,
        project,
        env: Vec::new(),
    }
}

/// A model's rows, sorted, as text fields.
fn rows(s: &Scratch, name: &str) -> Vec<Vec<String>> {
    let csv = s.csv(&format!("SELECT * FROM {name} ORDER BY ALL"));
    csv.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Fails unless both projects hold the same rows in `name` (numbers equal within 1e-9 relative).
fn assert_same_rows(spark: &Scratch, duckdb: &Scratch, name: &str) {
    let (a, b) = (rows(spark, name), rows(duckdb, name));
    assert_eq!(a.len(), b.len(), "{name}: row counts differ");
    assert!(a.len() > 1, "{name} has no rows to compare");
    for (row_a, row_b) in a.iter().zip(&b) {
        assert_eq!(row_a.len(), row_b.len(), "{name}: {row_a:?} vs {row_b:?}");
        for (x, y) in row_a.iter().zip(row_b) {
            let same = x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                    _ => false,
                };
            assert!(same, "{name}: Spark {row_a:?} vs DuckDB {row_b:?}");
        }
    }
}

fn run(s: &Scratch, args: &[&str]) -> std::process::Output {
    s.lake().args(args).output().expect("run lake")
}

#[test]
fn the_demo_on_sail_matches_duckdb_through_dev_promotion_run_and_restatement() {
    let s = Scratch::init();
    let reference = twin(&s);
    let Some(sail) = start_sail(&s) else {
        return;
    };
    use_cluster(&s, &format!("sc://127.0.0.1:{}", sail.port));
    let out = s.apply(EXEC);
    reference.apply(EXEC);
    let plan = stderr(&out);
    assert!(
        plan.contains("demo.full_model") && built_models(&out).len() == 4,
        "{plan}"
    );
    for model in [
        "demo.seed_model",
        "demo.incremental_model",
        "demo.full_model",
        "demo.view_model",
    ] {
        assert_same_rows(&s, &reference, model);
    }
    s.assert_demo_results();

    // The engine's commits are ordinary snapshots of lake's tables, whose ids the intervals record.
    let recorded = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3, sys; print('\\n'.join(r[0] for r in sqlite3.connect(sys.argv[1]).execute(\"SELECT write_id FROM intervals WHERE name IN ('demo.incremental_model', 'demo.full_model')\")))")
        .arg(s.project.join(".lake/state.db"))
        .output()
        .expect("read the state with python3");
    let recorded = String::from_utf8_lossy(&recorded.stdout).into_owned();
    let (_, tables) = sail
        .catalog
        .request("GET", "/v1/namespaces/lake__demo/tables", None);
    let mut snapshots = Vec::new();
    for table in tables["identifiers"].as_array().expect("tables") {
        let path = format!(
            "/v1/namespaces/lake__demo/tables/{}",
            table["name"].as_str().expect("a name")
        );
        let (_, loaded) = sail.catalog.request("GET", &path, None);
        for snapshot in loaded["metadata"]["snapshots"]
            .as_array()
            .expect("snapshots")
        {
            snapshots.push(format!("iceberg:{}", snapshot["snapshot-id"]));
        }
    }
    assert_eq!(recorded.lines().count(), 2, "{recorded}");
    for id in recorded.lines() {
        assert!(
            snapshots.iter().any(|s| s == id),
            "{id} not among {snapshots:?}"
        );
    }

    // A dev environment builds the changed model on the engine; promoting it rebuilds nothing.
    for p in [&s, &reference] {
        let model = p
            .read("models/full_model.sql")
            .replace("  item_id,\n", "  item_id,\n  item_id * 1.5 AS weight,\n");
        p.write("models/full_model.sql", &model);
        p.apply_env("dev", EXEC);
    }
    assert_same_rows(&s, &reference, "demo__dev.full_model");
    // Audits and table diffs read what the engine wrote as they read DuckDB's.
    for args in [
        &["audit", "--execution-time", EXEC][..],
        &[
            "table-diff",
            "prod:dev",
            "demo.full_model",
            "--on",
            "item_id",
        ][..],
    ] {
        let (on_sail, on_duckdb) = (run(&s, args), run(&reference, args));
        assert_eq!(
            on_sail.status.code(),
            on_duckdb.status.code(),
            "{}",
            stderr(&on_sail)
        );
        assert_eq!(on_sail.stdout, on_duckdb.stdout, "{args:?}");
        assert!(!on_sail.stdout.is_empty(), "{args:?}");
    }
    let promoted = s.apply(EXEC);
    assert_eq!(
        built_models(&promoted),
        Vec::<String>::new(),
        "{}",
        stderr(&promoted)
    );
    reference.apply(EXEC);
    assert_same_rows(&s, &reference, "demo.full_model");

    // A run two days on fills the new intervals; a restatement rebuilds one range.
    for p in [&s, &reference] {
        let out = run(p, &["run", "--execution-time", "2024-06-03 12:00:00"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(
            p,
            &[
                "plan",
                "--restate-model",
                "demo.incremental_model",
                "--start",
                "2020-01-01",
                "--end",
                "2020-01-05",
                "--auto-apply",
                "--execution-time",
                "2024-06-03 12:00:00",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_same_rows(&s, &reference, "demo.incremental_model");
    assert_same_rows(&s, &reference, "demo.full_model");
}

#[test]
fn a_generated_project_on_sail_gives_the_rows_it_gives_on_duckdb() {
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen_project.py");
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("gen");
    let status = Command::new("python3")
        .arg(&generator)
        .arg(&project)
        .args(["--models", "60"])
        .status()
        .expect("run gen_project.py");
    assert!(status.success());
    let s = Scratch {
        dir,
        project,
        env: Vec::new(),
    };
    let reference = twin(&s);
    let Some(sail) = start_sail(&s) else {
        return;
    };
    use_cluster(&s, &format!("sc://127.0.0.1:{}", sail.port));
    let out = s.apply(EXEC);
    assert_eq!(built_models(&out).len(), 60, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("on cluster (spark)"),
        "{}",
        stderr(&out)
    );
    reference.apply(EXEC);
    let mut names: Vec<String> = std::fs::read_dir(s.project.join("models"))
        .expect("models")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".sql").map(|n| format!("bench.{n}"))
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 60);
    for name in &names {
        assert_same_rows(&s, &reference, name);
    }
}

/// `QUALIFY` sits in `shop.report`, not beside the WHERE of `shop.latest`: DuckDB 1.5.5 itself fails with an
/// internal binder error on `WHERE` + `QUALIFY` over a `read_parquet` view (reproduced in Python's duckdb).
const MIXED_MODELS: [(&str, &str); 6] = [
    (
        "models/customers.sql",
        "MODEL (name shop.customers, kind SEED (path '../seeds/customers.csv'));\n",
    ),
    (
        "models/latest.sql",
        "MODEL (name shop.latest, kind INCREMENTAL_BY_UNIQUE_KEY (unique_key id), cron '@daily', start '2024-01-01');\n\
         SELECT id, name, tier::VARCHAR AS tier, score::INTEGER AS score FROM shop.customers\n\
         WHERE day BETWEEN @start_ds AND @end_ds\n",
    ),
    (
        "models/history.sql",
        "MODEL (name shop.history, kind SCD_TYPE_2_BY_COLUMN (unique_key id, columns [tier]), start '2024-01-01');\n\
         SELECT id, name, tier FROM shop.latest\n",
    ),
    (
        "models/by_tier.sql",
        "MODEL (name shop.by_tier, kind INCREMENTAL_BY_PARTITION, partitioned_by (tier), cron '@daily', start '2024-01-01');\n\
         SELECT tier, count(*) AS customers, max(score) AS top FROM shop.latest GROUP BY tier\n",
    ),
    (
        "models/tiers.sql",
        "MODEL (name shop.tiers, kind FULL, gateway local);\n\
         SELECT tier, count(*) AS n, string_agg(name, '|' ORDER BY name) AS names FROM shop.latest GROUP BY ALL\n",
    ),
    (
        "models/report.sql",
        "MODEL (name shop.report, kind FULL);\n\
         SELECT t.* EXCLUDE (names), strftime(DATE '2024-01-01' + INTERVAL 1 DAY, '%Y/%m/%d') AS day,\n\
         length(names) AS width FROM shop.tiers AS t\n\
         QUALIFY row_number() OVER (ORDER BY n DESC, tier) <= 2 ORDER BY width\n",
    ),
];

/// A project mixing both engines once `use_cluster` makes Sail its default: a unique-key merge and SCD2
/// history on Sail, a model pinned to DuckDB reading them, and a Sail model reading that one.
fn mixed_project() -> Scratch {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: db.db\ndefault_gateway: local\n\
         model_defaults:\n  dialect: duckdb\n  start: '2024-01-01'\n  cron: '@daily'\n",
    );
    s.write(
        "seeds/customers.csv",
        "id,name,tier,score,day\n1,ann,gold,9.6,2024-05-30\n2,bob,silver,3.2,2024-05-30\n3,cid,gold,7.5,2024-05-31\n\
         4,dee,,2.5,2024-05-31\n2,bob,gold,3.5,2024-06-01\n5,eve,silver,4.4,2024-06-01\n",
    );
    for (path, text) in MIXED_MODELS {
        s.write(path, text);
    }
    s
}

#[test]
fn one_project_mixes_duckdb_and_sail_with_merges_and_history_on_the_engine() {
    let s = mixed_project();
    let Some(sail) = start_sail(&s) else {
        return;
    };
    use_cluster(&s, &format!("sc://127.0.0.1:{}", sail.port));
    let reference = mixed_project();
    // Written in Spark SQL (functions DuckDB lacks, or has under other names): runs as written on Sail.
    s.write(
        "models/spark_side.sql",
        "MODEL (name shop.spark_side, kind FULL, dialect spark);\n\
         SELECT tier, size(collect_list(name)) AS members, date_format(to_date('2024-01-02'), 'yyyy/MM/dd') AS day\n\
         FROM shop.latest WHERE tier IS NOT NULL GROUP BY tier\n",
    );
    let out = s.apply(EXEC);
    let log = stderr(&out);
    assert!(
        log.contains("shop.latest") && log.contains("on cluster (spark)"),
        "{log}"
    );
    reference.apply(EXEC);
    for model in [
        "shop.latest",
        "shop.history",
        "shop.by_tier",
        "shop.tiers",
        "shop.report",
    ] {
        assert_same_rows(&s, &reference, model);
    }
    // A day later bob's tier changes: the merge replaces his row, the history closes his old version.
    for p in [&s, &reference] {
        let out = run(p, &["run", "--execution-time", "2024-06-02 12:00:00"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for model in ["shop.latest", "shop.by_tier", "shop.tiers", "shop.report"] {
        assert_same_rows(&s, &reference, model);
    }
    assert_eq!(
        s.csv("SELECT * FROM shop.spark_side ORDER BY tier"),
        "tier,members,day\ngold,3,2024/01/02\nsilver,1,2024/01/02\n"
    );
    let history = |p: &Scratch| {
        p.csv("SELECT id, tier, valid_to IS NULL AS current FROM shop.history ORDER BY ALL")
    };
    assert_eq!(history(&s), history(&reference));
    assert!(history(&s).contains("2,silver,false"), "{}", history(&s));
}

/// A series made with DuckDB's `range`/`generate_series` and dates moved by a computed interval: Spark names
/// the series' column `id` and has no `INTERVAL (expr) DAY`, so both are translated, and the rows match.
#[test]
fn series_and_computed_intervals_on_sail_match_duckdb() {
    let project = || {
        let s = Scratch::empty();
        s.write(
            "config.yaml",
            "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: db.db\ndefault_gateway: local\n\
             model_defaults:\n  dialect: duckdb\n  start: '2024-01-01'\n",
        );
        s.write(
            "models/days.sql",
            "MODEL (name gen.days, kind FULL);\n\
             SELECT range AS n, DATE '2024-01-01' + INTERVAL (range % 365) DAY AS d,\n\
             TIMESTAMP '2024-01-01' - INTERVAL (range % 7) HOUR AS t FROM range(3000)\n",
        );
        s.write(
            "models/weeks.sql",
            "MODEL (name gen.weeks, kind FULL);\n\
             SELECT w.k, DATE '2024-01-01' + INTERVAL (w.k) WEEK AS d FROM generate_series(1, 10) AS w(k)\n",
        );
        s.write(
            "models/by_day.sql",
            "MODEL (name gen.by_day, kind FULL);\n\
             SELECT d, count(*) AS c, sum(n) AS total, max(t) AS latest FROM gen.days GROUP BY d\n",
        );
        s
    };
    let s = project();
    let Some(sail) = start_sail(&s) else {
        return;
    };
    use_cluster(&s, &format!("sc://127.0.0.1:{}", sail.port));
    let reference = project();
    let out = s.apply(EXEC);
    assert!(
        stderr(&out).contains("on cluster (spark)"),
        "{}",
        stderr(&out)
    );
    reference.apply(EXEC);
    for model in ["gen.days", "gen.weeks", "gen.by_day"] {
        assert_same_rows(&s, &reference, model);
    }
    assert_eq!(
        s.csv("SELECT count(*) AS n, max(d) AS last FROM gen.days"),
        "n,last\n3000,2024-12-30 00:00:00\n"
    );

    // A series of timestamps has no Spark `range`: the plan stops, located, before anything runs.
    s.write(
        "models/hours.sql",
        "MODEL (name gen.hours, kind FULL);\nSELECT *\nFROM range(TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-02', INTERVAL 1 HOUR)\n",
    );
    let out = run(&s, &["plan", "--execution-time", EXEC]);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains("models/hours.sql:3:6") && log.contains("sequence()"),
        "{log}"
    );
}

#[test]
fn what_spark_cannot_run_stops_the_plan_located_in_the_model() {
    let s = Scratch::init();
    // No engine needs to listen: the check happens while planning.
    use_cluster(&s, &format!("sc://127.0.0.1:{}", free_port()));
    let model = s.read("models/full_model.sql").replace(
        "  item_id,\n",
        "  item_id,\n  epoch_ms(TIMESTAMP '2024-01-01') AS ms,\n",
    );
    s.write("models/full_model.sql", &model);
    let out = run(&s, &["plan", "--execution-time", EXEC]);
    assert!(!out.status.success());
    let log = stderr(&out);
    let line = model
        .lines()
        .position(|l| l.contains("epoch_ms"))
        .expect("the edited line")
        + 1;
    assert!(
        log.contains(&format!("models/full_model.sql:{line}:3")),
        "{log}"
    );
    assert!(
        log.contains("epoch_ms") && log.contains("unix_millis"),
        "{log}"
    );
    // Nothing was created: prod does not exist.
    let state = run(&s, &["fetchdf", "SELECT 1 FROM demo.full_model"]);
    assert!(!state.status.success());
}

#[test]
fn an_engine_failure_stops_the_apply_promotes_nothing_and_a_rerun_resumes() {
    let s = Scratch::init();
    let Some(sail) = start_sail(&s) else {
        return;
    };
    // The credential in the URL is never printed.
    use_cluster(
        &s,
        &format!(
            "sc://127.0.0.1:{}/;token=s3cr3t-t0ken;use_ssl=false",
            sail.port
        ),
    );
    let original = s.read("models/full_model.sql");
    // DuckDB binds it and lake translates it; the engine has no such function.
    s.write(
        "models/full_model.sql",
        &original.replace("  item_id,\n", "  item_id,\n  list_sum([1, 2]) AS total,\n"),
    );
    let out = run(&s, &["plan", "--auto-apply", "--execution-time", EXEC]);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains("demo.full_model") && log.contains("list_sum"),
        "{log}"
    );
    assert!(!log.contains("s3cr3t-t0ken"), "{log}");
    assert!(log.contains("token=***"), "{log}");
    assert!(
        !run(&s, &["fetchdf", "SELECT 1 FROM demo.full_model"])
            .status
            .success()
    );
    // The engine goes away: the plan fails to connect and still says which engine, without the token.
    drop(sail);
    let info = run(&s, &["info"]);
    let shown = String::from_utf8_lossy(&info.stdout);
    assert!(
        shown.contains("Gateway: cluster — spark (sc://127.0.0.1:"),
        "{shown}"
    );
    assert!(
        shown.contains("Data warehouse connection failed"),
        "{shown}"
    );
    assert!(
        shown.contains("token=***") && !shown.contains("s3cr3t-t0ken"),
        "{shown}"
    );
    s.write("models/full_model.sql", &original);
    let out = run(&s, &["plan", "--auto-apply", "--execution-time", EXEC]);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(log.contains("cannot reach the Spark engine"), "{log}");
    assert!(
        log.contains("token=***") && !log.contains("s3cr3t-t0ken"),
        "{log}"
    );
    // Back up: the rerun resumes, reusing what was built, and prod appears whole.
    let sail = start_sail(&s).expect("sail again");
    let config = s.read("config.yaml");
    let old_port = config
        .split("sc://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the port in config.yaml")
        .to_string();
    s.write(
        "config.yaml",
        &config.replace(
            &format!("127.0.0.1:{old_port}"),
            &format!("127.0.0.1:{}", sail.port),
        ),
    );
    let out = s.apply(EXEC);
    let built = built_models(&out);
    assert!(
        built.contains(&"demo.full_model".to_string()),
        "{}",
        stderr(&out)
    );
    assert!(
        !built.contains(&"demo.seed_model".to_string()),
        "{}",
        stderr(&out)
    );
    s.assert_demo_results();
}

#[test]
fn an_apply_on_sail_killed_at_any_failpoint_resumes_to_the_same_end() {
    // One Sail per project; the previous project's Sail stops when the next project starts.
    let current = std::cell::RefCell::new(None);
    let make = || {
        let s = Scratch::init();
        let sail = start_sail(&s)?;
        use_cluster(&s, &format!("sc://127.0.0.1:{}", sail.port));
        current.replace(Some(sail));
        Some(s)
    };
    crate::crash::crash_then_resume_after(&make, &|_| {});
}
