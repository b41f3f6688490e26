//! State in a real PostgreSQL: a project whose `state_connection` is PostgreSQL plans and applies, and
//! concurrent plans on one environment cannot both land.

use crate::common::{EXEC, Scratch, built_models, stderr, stdout};

/// A demo project whose state lives in a fresh PostgreSQL database, or `None` without a server.
fn project_on_postgres() -> Option<Scratch> {
    project_on_postgres_with("")
}

/// The same, with more `storage.catalog` keys (each line indented by four spaces).
fn project_on_postgres_with(catalog_keys: &str) -> Option<Scratch> {
    let uri = crate::common::pg::fresh_database()?;
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &format!(
            "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: db.db\n    state_connection:\n{}default_gateway: local\nmodel_defaults:\n  dialect: duckdb\n  start: 2020-01-01\n  cron: '@daily'\n\
             # One database holds everything: the Iceberg catalog sits beside the state.\n\
             storage:\n  catalog:\n{}{catalog_keys}",
            crate::common::pg::connection_yaml(&uri, "      "),
            crate::common::pg::connection_yaml(&uri, "    "),
        ),
    );
    Some(s)
}

/// Runs one SQL statement (or a `;`-separated batch) on a database, returning the first column of each row.
fn psql(uri: &str, sql: &str) -> Vec<String> {
    use sqlx::{Connection, Executor, Row};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(uri).await.expect("connect");
        let rows = conn.fetch_all(sql).await.expect(sql);
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
            .collect()
    })
}

/// The database URI a Scratch from `project_on_postgres` uses (the catalog's keys come last).
fn database_uri(s: &Scratch) -> String {
    let config = s.read("config.yaml");
    let field = |key: &str| {
        config
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .expect(key)
            .to_string()
    };
    format!(
        "postgres://{}@{}:{}/{}",
        field("user"),
        field("host"),
        field("port"),
        field("database")
    )
}

/// pg_lake's database has a read-only `pg_catalog.iceberg_tables` view of its own tables, found before any
/// other schema's table of that name. lake keeps its catalog in its own schema and never writes to the view;
/// state, catalog and pg_lake's view share one database.
#[test]
fn catalog_and_state_share_a_database_beside_pg_lakes_read_only_view() {
    let Some(s) = project_on_postgres_with("    schema: lake_catalog\n    name: analytics\n")
    else {
        return;
    };
    let uri = database_uri(&s);
    // The shape of pg_lake's view (no iceberg_type column), and like it not writable.
    psql(
        &uri,
        "SET allow_system_table_mods = on; \
         CREATE VIEW pg_catalog.iceberg_tables AS SELECT current_database()::text AS catalog_name, \
         'public'::text AS table_namespace, 'pg_lake_table'::text AS table_name, \
         's3://bucket/pg_lake/metadata.json'::text AS metadata_location, NULL::text AS previous_metadata_location",
    );
    s.apply(EXEC);
    s.assert_demo_results();
    s.assert_no_changes();
    assert_eq!(
        psql(&uri, "SELECT table_name FROM pg_catalog.iceberg_tables"),
        ["pg_lake_table"],
        "pg_lake's view is untouched"
    );
    let names = psql(
        &uri,
        "SELECT DISTINCT catalog_name || ':' || table_namespace FROM lake_catalog.iceberg_tables ORDER BY 1",
    );
    assert_eq!(
        names,
        ["analytics:demo", "analytics:lake__demo"],
        "lake's catalog sits in its own schema under its own name"
    );
    let state_tables = psql(
        &uri,
        "SELECT count(*)::text FROM information_schema.tables WHERE table_schema = 'lake'",
    );
    assert_ne!(state_tables, ["0"], "state sits in the `lake` schema");

    // An independent reader finds the tables by pinning the same search_path.
    let Some(python) = crate::common::readers::pyiceberg() else {
        return;
    };
    let reader_uri = format!(
        "{}?options=-csearch_path%3Dlake_catalog,pg_catalog",
        uri.replacen("postgres://", "postgresql+psycopg2://", 1)
    );
    let tables = crate::common::readers::read_catalog(
        &python,
        &reader_uri,
        &s.project.join("warehouse").display().to_string(),
        &serde_json::json!({"catalog_name": "analytics"}),
    );
    assert_eq!(
        tables["demo.full_model"]["rows"],
        serde_json::json!([[1, 5], [2, 1], [3, 1]]),
        "{tables}"
    );
}

#[test]
fn plans_and_applies_with_state_in_postgres() {
    let Some(s) = project_on_postgres() else {
        return;
    };
    s.apply(EXEC);
    s.assert_demo_results();
    assert!(
        !s.project.join(".lake/state.db").exists() && !s.project.join(".lake/catalog.db").exists(),
        "no embedded state or catalog when PostgreSQL holds them"
    );
    s.assert_no_changes();
    let info = stdout(&s.lake().args(["info"]).output().unwrap());
    assert!(info.contains("State: PostgreSQL, schema lake\n"), "{info}");

    let edited = s.read("models/full_model.sql").replace(
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    s.write("models/full_model.sql", &edited);
    s.apply_env("dev", EXEC);
    let out = s.apply(EXEC);
    assert!(
        built_models(&out).is_empty(),
        "promotion reuses dev's tables"
    );
    let listed = stdout(&s.lake().args(["environments"]).output().unwrap());
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

/// SQLMesh's `state_schema` puts state in the schema it names.
#[test]
fn state_schema_names_where_state_lives() {
    let Some(s) = project_on_postgres() else {
        return;
    };
    s.write(
        "config.yaml",
        &s.read("config.yaml").replacen(
            "    state_connection:\n",
            "    state_schema: sqlmesh_state\n    state_connection:\n",
            1,
        ),
    );
    s.apply(EXEC);
    s.assert_demo_results();
    let info = stdout(&s.lake().args(["info"]).output().unwrap());
    assert!(
        info.contains("State: PostgreSQL, schema sqlmesh_state\n"),
        "{info}"
    );
    let tables_in = |schema: &str| {
        psql(
            &database_uri(&s),
            &format!(
                "SELECT count(*)::text FROM information_schema.tables WHERE table_schema = '{schema}'"
            ),
        )
    };
    assert_ne!(tables_in("sqlmesh_state"), ["0"]);
    assert_eq!(tables_in("lake"), ["0"], "nothing in the default schema");
    s.assert_no_changes();
}

#[test]
fn concurrent_plans_on_one_environment_land_once() {
    let Some(s) = project_on_postgres() else {
        return;
    };
    s.apply(EXEC);
    let edited = s
        .read("models/view_model.sql")
        .replace("num_orders > 1", "num_orders > 2");
    s.write("models/view_model.sql", &edited);
    // Both plans are computed against the same environment state; the advisory lock serialises the applies
    // and the second sees that prod moved on.
    let first = s.spawn_apply(EXEC);
    let second = s.spawn_apply(EXEC);
    let outcomes = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let succeeded = outcomes.iter().filter(|o| o.status.success()).count();
    let stale = outcomes
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stderr).contains("was changed by another plan"))
        .count();
    assert!(
        (succeeded, stale) == (1, 1) || (succeeded, stale) == (2, 0),
        "{:?}",
        outcomes
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(s.csv("select count(*) as n from demo.view_model"), "n\n1\n");
    s.assert_no_changes();
}

#[test]
fn environment_locks_are_per_environment() {
    use lake::config::Secret;
    use lake::state::postgres::PostgresState;
    let Some(uri) = crate::common::pg::fresh_database() else {
        return;
    };
    let state = PostgresState::open(&Secret::new(uri.clone()), "lake").unwrap();
    let dev_a = state
        .lock_environment("dev_a", || panic!("dev_a is free"))
        .unwrap();
    // Another environment is not blocked by dev_a's lock.
    let dev_b = state
        .lock_environment("dev_b", || panic!("dev_b is free"))
        .unwrap();
    drop(dev_b);
    // The same environment waits until the holder lets go.
    let waited = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let other = PostgresState::open(&Secret::new(uri.clone()), "lake").unwrap();
            other
                .lock_environment("dev_a", || {
                    waited.store(true, std::sync::atomic::Ordering::SeqCst)
                })
                .unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(dev_a);
        drop(waiter.join().unwrap());
    });
    assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
}

/// A model with one row per day, to see appends made by another machine.
const EVENTS: &str = "MODEL (\n  name demo.events,\n  kind INCREMENTAL_BY_TIME_RANGE (time_column ds),\n  start '2024-05-29',\n  cron '@daily'\n);\n\nSELECT d::DATE AS ds\nFROM generate_series(DATE '2024-05-29', DATE '2024-06-30', INTERVAL 1 DAY) AS t(d)\nWHERE d::DATE BETWEEN @start_date AND @end_date\n";

fn plan_env(s: &Scratch, env: &str) -> std::process::Child {
    s.spawn(
        &["plan", env, "--auto-apply", "--execution-time", EXEC],
        std::process::Stdio::piped(),
    )
}

/// Two machines (two copies of one project, each with its own DuckDB file) share state, catalog and
/// warehouse: each sees what the other applied, plans of different environments run at the same time, and
/// a machine reads the tables another built instead of writing them again.
#[test]
fn two_machines_share_state_catalog_and_warehouse() {
    let Some(a) = project_on_postgres() else {
        return;
    };
    let shared = tempfile::tempdir().unwrap();
    let config = a.read("config.yaml").replace(
        "storage:\n",
        &format!("storage:\n  warehouse: {}\n", shared.path().display()),
    );
    let b = Scratch::init();
    for s in [&a, &b] {
        s.write("config.yaml", &config);
        s.write("models/events.sql", EVENTS);
    }
    a.apply(EXEC);
    let incremental_rows = a.csv("select count(*) as n from demo.incremental_model");

    // B never built anything, yet reads prod, and its plan finds nothing to do.
    b.assert_demo_results();
    assert_eq!(b.csv("select count(*) as n from demo.events"), "n\n3\n");
    b.assert_no_changes();

    // Different environments, planned at once from both machines. B's change reads the incremental
    // model A built: B must read it, not append its rows a second time.
    let edit = |s: &Scratch, file: &str, from: &str, to: &str| {
        let text = s.read(file);
        assert!(text.contains(from), "{text}");
        s.write(file, &text.replace(from, to));
    };
    edit(
        &a,
        "models/view_model.sql",
        "num_orders > 1",
        "num_orders > 0",
    );
    edit(
        &b,
        "models/full_model.sql",
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    let (on_a, on_b) = (plan_env(&a, "dev_a"), plan_env(&b, "dev_b"));
    let (on_a, on_b) = (
        on_a.wait_with_output().unwrap(),
        on_b.wait_with_output().unwrap(),
    );
    assert!(on_a.status.success(), "{}", stderr(&on_a));
    assert!(on_b.status.success(), "{}", stderr(&on_b));
    assert_eq!(built_models(&on_a), ["demo__dev_a.view_model"]);
    let mut built_on_b = built_models(&on_b);
    built_on_b.sort();
    assert_eq!(
        built_on_b,
        ["demo__dev_b.full_model", "demo__dev_b.view_model"]
    );
    assert_eq!(
        a.csv("select count(*) as n from demo.incremental_model"),
        incremental_rows,
        "nothing appended twice"
    );
    // Each machine sees the other's environment.
    assert_eq!(
        b.csv("select count(*) as n from demo__dev_a.view_model"),
        "n\n3\n"
    );
    assert_eq!(
        a.csv("select * from demo__dev_b.full_model order by item_id"),
        b.csv("select * from demo__dev_b.full_model order by item_id")
    );

    // A later run on A appends to a table B already exposes: B follows the new snapshot.
    edit(
        &a,
        "models/view_model.sql",
        "num_orders > 0",
        "num_orders > 1",
    );
    let out = a
        .lake()
        .args(["run", "--execution-time", "2024-06-03 12:00:00"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(a.csv("select count(*) as n from demo.events"), "n\n5\n");
    assert_eq!(b.csv("select count(*) as n from demo.events"), "n\n5\n");
}

/// State written by an older lake is refused (nothing written) until `lake migrate` upgrades it in one
/// transaction; state written by a newer lake is refused with the version it needs.
#[test]
fn older_state_is_migrated_and_newer_state_refused() {
    let Some(s) = project_on_postgres() else {
        return;
    };
    s.apply(EXEC);
    let uri = database_uri(&s);
    // Schema 2, as the lake before the promotion journal left it.
    psql(
        &uri,
        "DROP TABLE lake.pending_promotions; ALTER TABLE lake.environments DROP COLUMN suffix_target; \
         ALTER TABLE lake.snapshots DROP COLUMN physical_schema; \
         DELETE FROM lake._versions; \
         INSERT INTO lake._versions VALUES (2, '0.1.0')",
    );
    let version = "SELECT max(schema_version)::text FROM lake._versions";
    let out = s.lake().args(["plan", "--auto-apply"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has schema version 2, older than this lake's (5)")
            && stderr(&out).contains("run `lake migrate`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(psql(&uri, version), ["2"], "a refused run writes nothing");

    let out = s.lake().args(["migrate"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "State is at schema version 5.\n");
    assert_eq!(psql(&uri, version), ["5"]);
    s.assert_no_changes();
    s.assert_demo_results();

    // `lake rollback` undoes it: schema 2 again, without the columns and table the migration added.
    let out = s.lake().args(["rollback"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(psql(&uri, version), ["2"]);
    assert_eq!(
        psql(
            &uri,
            "SELECT count(*)::text FROM information_schema.columns WHERE table_schema = 'lake' \
             AND column_name IN ('suffix_target', 'physical_schema')"
        ),
        ["0"]
    );
    assert_eq!(
        psql(
            &uri,
            "SELECT count(*)::text FROM information_schema.tables WHERE table_schema = 'lake' \
             AND table_name IN ('pending_promotions', '_backup_snapshots')"
        ),
        ["0"],
        "the table the migration added is gone, and the copy is used up"
    );
    let out = s.lake().args(["rollback"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
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

    psql(&uri, "INSERT INTO lake._versions VALUES (9, '7.1.0')");
    let out = s.lake().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("schema version 9, newer than this lake")
            && stderr(&out).contains("use lake 7.1.0 or later"),
        "{}",
        stderr(&out)
    );
}

/// Two `lake run`s of one environment at the same moment (two cron jobs overlapping): the second waits for
/// the first, then finds nothing left to do, so no interval is written twice (SQLMesh issue #3866).
#[test]
fn overlapping_runs_never_duplicate_rows() {
    let Some(s) = project_on_postgres() else {
        return;
    };
    s.write("models/events.sql", EVENTS);
    s.apply(EXEC);
    let later = "2024-06-10 12:00:00";
    let runs = [
        s.spawn(
            &["run", "--execution-time", later],
            std::process::Stdio::piped(),
        ),
        s.spawn(
            &["run", "--execution-time", later],
            std::process::Stdio::piped(),
        ),
    ];
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        s.csv("select count(*) as n, count(distinct ds) as days from demo.events"),
        "n,days\n12,12\n"
    );
    assert_eq!(
        s.csv("select count(*) - count(distinct (id, event_date)) as duplicates from demo.incremental_model"),
        "duplicates\n0\n"
    );
}

/// Points the demo's gateway at PostgreSQL state in the database `uri` (its tables stay where they are).
fn move_state_to_postgres(s: &Scratch, uri: &str) {
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &config.replace(
            "      database: db.db\n",
            &format!(
                "      database: db.db\n    state_connection:\n{}",
                crate::common::pg::connection_yaml(uri, "      ")
            ),
        ),
    );
}

/// Moving state from the embedded SQLite file to PostgreSQL: export, point config.yaml at PostgreSQL,
/// import. The project then plans and runs on PostgreSQL as it did, and an export from there is the same
/// document.
#[test]
fn state_moves_from_sqlite_to_postgres_by_export_and_import() {
    let Some(uri) = crate::common::pg::fresh_database() else {
        return;
    };
    let s = Scratch::init();
    s.apply(EXEC);
    let model = s.read("models/full_model.sql");
    s.write(
        "models/full_model.sql",
        &model.replace("COUNT(DISTINCT id) AS", "COUNT(DISTINCT id) * 2 AS"),
    );
    s.apply_env("dev", EXEC);
    s.write("models/full_model.sql", &model);
    let lake = |args: &[&str]| {
        let out = s.lake().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    };
    let exported = s.dir.path().join("state.json");
    let exported_arg = exported.to_str().unwrap();
    let out = lake(&["state", "export", "-o", exported_arg]);
    assert!(
        stderr(&out).contains("Exported 2 environments"),
        "{}",
        stderr(&out)
    );

    move_state_to_postgres(&s, &uri);
    let out = lake(&["state", "import", exported_arg]);
    assert!(
        stdout(&out).starts_with("Imported 2 environments, "),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains(".lake/state.db"), "{}", stdout(&out));
    // The same state, now in PostgreSQL: nothing to plan in either environment.
    s.assert_no_changes();
    let out = lake(&["environments"]);
    assert!(stdout(&out).contains("dev"), "{}", stdout(&out));
    // Recorded intervals came along: a run a day later builds only what the new day makes due.
    let out = lake(&["run", "--execution-time", "2024-06-02 12:00:00"]);
    assert_eq!(
        built_models(&out),
        ["demo.incremental_model", "demo.full_model"],
        "{}",
        stderr(&out)
    );
    // A second import into the now filled state is refused, and changes nothing.
    let out = s
        .lake()
        .args(["state", "import", exported_arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("this state already has environments (dev, prod)"),
        "{}",
        stderr(&out)
    );
    s.assert_demo_results();
}

#[test]
fn an_export_round_trips_through_postgres_unchanged_and_a_stray_file_is_refused() {
    let Some(uri) = crate::common::pg::fresh_database() else {
        return;
    };
    let s = Scratch::init();
    s.apply(EXEC);
    let from_sqlite = stdout(&s.lake().args(["state", "export"]).output().unwrap());
    move_state_to_postgres(&s, &uri);
    let stray = s.dir.path().join("stray.json");
    std::fs::write(&stray, "{\"environments\": []}").unwrap();
    let out = s
        .lake()
        .args(["state", "import", stray.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a lake state export"),
        "{}",
        stderr(&out)
    );
    let out = s
        .lake()
        .args(["state", "import", "-"])
        .write_stdin(from_sqlite.clone())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let from_postgres = stdout(&s.lake().args(["state", "export"]).output().unwrap());
    assert_eq!(from_postgres, from_sqlite);
}
