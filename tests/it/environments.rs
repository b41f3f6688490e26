//! Plan semantics across environments: categorised changes, promotion without recompute, forward-only,
//! the environment lifecycle (invalidate, janitor) and the inspection commands (diff, table-name, table-diff).

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{EXEC, Scratch, built_models, stderr, stdout};

/// Every file under the warehouse with its size and modification time: equal maps mean nothing was written.
fn warehouse_files(project: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    walkdir::WalkDir::new(project.join("warehouse"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let meta = e.metadata().unwrap();
            (
                e.path().display().to_string(),
                (meta.len(), meta.modified().unwrap()),
            )
        })
        .collect()
}

fn run(s: &Scratch, args: &[&str]) -> std::process::Output {
    let out = s.lake().args(args).output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    out
}

fn edit(s: &Scratch, file: &str, from: &str, to: &str) {
    let text = s.read(file);
    assert!(text.contains(from), "{file} has no `{from}`");
    s.write(file, &text.replace(from, to));
}

#[test]
fn breaking_change_in_dev_leaves_prod_untouched_and_promotion_builds_nothing() {
    let s = Scratch::init();
    s.apply(EXEC);
    let prod_files = warehouse_files(&s.project);
    edit(
        &s,
        "models/full_model.sql",
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    let out = run(
        &s,
        &["plan", "dev", "--auto-apply", "--execution-time", EXEC],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains("- `demo__dev.full_model` (Breaking: changed the WHERE clause)"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "- `demo__dev.view_model` (Indirect Breaking) because of demo__dev.full_model"
        ),
        "{plan}"
    );
    assert_eq!(
        built_models(&out),
        ["demo__dev.full_model", "demo__dev.view_model"]
    );
    // Prod's files are exactly as they were: a dev plan writes new files only.
    let after_dev = warehouse_files(&s.project);
    for (path, stamp) in &prod_files {
        assert_eq!(after_dev.get(path), Some(stamp), "{path} changed");
    }
    s.assert_demo_results();
    assert_eq!(
        s.csv("select * from demo__dev.full_model order by 1"),
        "item_id,num_orders\n1,3\n"
    );

    // Promoting the same versions to prod repoints names and writes no data file.
    let out = run(&s, &["plan", "--auto-apply", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    let data_files = |files: &BTreeMap<String, (u64, std::time::SystemTime)>| {
        files
            .keys()
            .filter(|p| p.ends_with(".parquet"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let after_promotion = warehouse_files(&s.project);
    assert_eq!(data_files(&after_promotion), data_files(&after_dev));
    assert_eq!(
        s.csv("select * from demo.full_model order by 1"),
        "item_id,num_orders\n1,3\n"
    );
    // `table-name` shows both environments now use the same physical table.
    let prod_table = stdout(&run(&s, &["table-name", "demo.full_model"]));
    let dev_table = stdout(&run(&s, &["table-name", "demo.full_model", "--env", "dev"]));
    assert_eq!(prod_table, dev_table);
    assert!(
        prod_table.starts_with("lake__demo.demo__full_model__"),
        "{prod_table}"
    );
}

#[test]
fn diff_exits_1_when_the_project_differs() {
    let s = Scratch::init();
    s.apply(EXEC);
    let out = run(&s, &["diff"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "No differences: project files match the `prod` environment\n"
    );
    edit(
        &s,
        "models/view_model.sql",
        "num_orders > 1",
        "num_orders > 2",
    );
    let out = run(&s, &["diff"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("- `demo.view_model` (Breaking: changed the WHERE clause)"),
        "{text}"
    );
    assert!(
        text.contains("-  num_orders > 1\n+  num_orders > 2"),
        "{text}"
    );
    assert!(!text.contains("backfill"), "{text}");
}

#[test]
fn plan_json_is_one_document_for_ci() {
    let s = Scratch::init();
    let out = run(
        &s,
        &[
            "plan",
            "--format",
            "json",
            "--auto-apply",
            "--execution-time",
            EXEC,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["environment"], "prod");
    assert_eq!(doc["new_environment"], true);
    assert_eq!(doc["applied"], true);
    assert_eq!(doc["execution_time"], EXEC);
    assert_eq!(
        doc["built"],
        serde_json::json!([
            "demo.seed_model",
            "demo.incremental_model",
            "demo.full_model",
            "demo.view_model"
        ])
    );
    let first = &doc["changes"][0];
    assert_eq!(first["model"], "demo.seed_model");
    assert_eq!(first["change"], "added");
    assert_eq!(doc["backfills"][2]["action"], "full_refresh");
    assert!(
        doc["backfills"][2]["physical_table"]
            .as_str()
            .unwrap()
            .starts_with("lake__demo.demo__full_model__")
    );

    edit(
        &s,
        "models/full_model.sql",
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) AS num_orders,\n  MAX(id) AS max_id",
    );
    let out = run(&s, &["plan", "dev", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["applied"], false, "no --auto-apply: nothing applied");
    let change = &doc["changes"][0];
    assert_eq!(change["change"], "directly_modified");
    assert_eq!(change["category"], "non_breaking");
    assert_eq!(change["reason"], "added column `max_id`");
    assert_eq!(change["name_in_environment"], "demo__dev.full_model");
    assert_eq!(doc["changes"][1]["category"], "indirect_non_breaking");
    assert_eq!(
        doc["changes"][1]["because_of"],
        serde_json::json!(["demo.full_model"])
    );
}

#[test]
fn forward_only_keeps_the_table_and_applies_from_the_next_run() {
    let s = Scratch::init();
    s.apply(EXEC);
    let before = stdout(&run(&s, &["table-name", "demo.full_model"]));
    edit(
        &s,
        "models/full_model.sql",
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    // In dev the change is previewed in a table of its own; prod's is never written from dev.
    let out = run(
        &s,
        &[
            "plan",
            "dev",
            "--forward-only",
            "--auto-apply",
            "--execution-time",
            EXEC,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("`demo__dev.full_model` (Forward-only: the plan is forward-only (--forward-only or plan.forward_only))"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        built_models(&out),
        ["demo__dev.full_model", "demo__dev.view_model"]
    );
    let preview = stdout(&run(&s, &["table-name", "demo.full_model", "--env", "dev"]));
    assert_ne!(preview, before);
    assert!(preview.trim_end().ends_with("_preview"), "{preview}");
    // SQLMesh's forms: `--dev` is the table dev reads, `--prod` the one its version has once promoted.
    let table_name = |flag: &str| {
        stdout(&run(
            &s,
            &["table-name", "demo.full_model", "--env", "dev", flag],
        ))
    };
    assert_eq!(table_name("--dev"), preview);
    assert_eq!(table_name("--prod"), before);
    assert_eq!(
        s.csv("select * from demo__dev.full_model order by 1"),
        "item_id,num_orders\n1,3\n"
    );
    s.assert_demo_results();
    let out = run(
        &s,
        &[
            "plan",
            "--forward-only",
            "--auto-apply",
            "--execution-time",
            EXEC,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("- `demo.full_model` (Forward-only: the plan is forward-only (--forward-only or plan.forward_only))"),
        "{}",
        stdout(&out)
    );
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(stdout(&run(&s, &["table-name", "demo.full_model"])), before);
    // Old data until the next run; then the new logic, in the same table.
    s.assert_demo_results();
    let out = run(
        &s,
        &["run", "--ignore-cron", "--execution-time", "2024-06-02"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select * from demo.full_model order by 1"),
        "item_id,num_orders\n1,3\n"
    );
    assert_eq!(stdout(&run(&s, &["table-name", "demo.full_model"])), before);
    // `plan.forward_only` in config.yaml makes every plan forward-only, as the flag does.
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &format!("{config}\nplan:\n  forward_only: true\n"),
    );
    edit(&s, "models/full_model.sql", "WHERE id > 4", "WHERE id > 5");
    let out = run(
        &s,
        &[
            "plan",
            "dev",
            "--auto-apply",
            "--execution-time",
            "2024-06-02",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("`demo__dev.full_model` (Forward-only: the plan is forward-only"),
        "{}",
        stdout(&out)
    );
    let out = run(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-06-02"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(stdout(&run(&s, &["table-name", "demo.full_model"])), before);
}

#[test]
fn invalidate_and_janitor_remove_the_environment_and_its_tables() {
    let s = Scratch::init();
    s.apply(EXEC);
    edit(
        &s,
        "models/full_model.sql",
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    let out = run(
        &s,
        &["plan", "dev", "--auto-apply", "--execution-time", EXEC],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dev_table = stdout(&run(&s, &["table-name", "demo.full_model", "--env", "dev"]));
    let dev_dir = s
        .project
        .join("warehouse")
        .join(dev_table.trim().replace('.', "/"));
    assert!(dev_dir.exists(), "{}", dev_dir.display());

    let listed = stdout(&run(&s, &["environments"]));
    assert!(listed.starts_with("environment  updated (UTC)"), "{listed}");
    assert!(
        listed.contains("\nprod  ") && listed.contains("  never\n"),
        "{listed}"
    );
    assert!(listed.contains("\ndev   "), "{listed}");

    let out = run(&s, &["invalidate", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&s, &["invalidate", "dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The TTL of dev's snapshots (a week) has not passed: the names go, the tables stay.
    let out = run(&s, &["janitor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Removed environment `dev`\n");
    let out = run(&s, &["fetchdf", "select * from demo__dev.full_model"]);
    assert_eq!(out.status.code(), Some(1), "the dev name is gone");
    assert!(dev_dir.exists());
    let out = run(&s, &["janitor", "--ignore-ttl", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut dropped: Vec<String> = report["tables_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().rsplit_once("__").unwrap().0.to_string())
        .collect();
    dropped.sort();
    assert_eq!(
        dropped,
        ["lake__demo.demo__full_model", "lake__demo.demo__view_model"]
    );
    assert!(!dev_dir.exists(), "the dropped table's files are deleted");
    assert_eq!(
        stdout(&run(&s, &["environments"])).lines().count(),
        2,
        "only prod is left"
    );
    // Prod is intact and still has nothing to change.
    edit(
        &s,
        "models/full_model.sql",
        "FROM demo.incremental_model\nWHERE id > 4",
        "FROM demo.incremental_model",
    );
    s.assert_demo_results();
    s.assert_no_changes();
}

#[test]
fn table_diff_compares_a_model_between_environments() {
    let s = Scratch::init();
    s.apply(EXEC);
    edit(
        &s,
        "models/full_model.sql",
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) + (item_id = 1)::INT AS num_orders,\n  MAX(id) AS max_id",
    );
    let out = run(
        &s,
        &["plan", "dev", "--auto-apply", "--execution-time", EXEC],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&s, &["table-diff", "prod:dev", "demo.full_model"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Schema:\n  + max_id INTEGER (only in dev)\n\n\
         Rows: prod 3, dev 3\n\
         Joined on item_id: 3 in both, 0 only in prod, 0 only in dev\n\n\
         column      match\n\
         num_orders  66.7%\n"
    );
    let out = run(&s, &["table-diff", "prod-dev", "demo.full_model"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_category_chosen_on_the_terminal_replaces_the_automatic_one() {
    use lake::ops::Context;
    use lake::plan::{Category, PlanOptions};
    use lake::sql::ModelName;
    let s = Scratch::init();
    s.apply(EXEC);
    edit(
        &s,
        "models/full_model.sql",
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) AS num_orders,\n  MAX(id) AS max_id",
    );
    let ctx = Context::load(&s.project, None).unwrap();
    let now = lake::ops::execution_time(Some(EXEC)).unwrap();
    let automatic = ctx.plan(&PlanOptions::new("prod", now)).unwrap();
    let category = |plan: &lake::plan::Plan, model: &str| {
        plan.changes
            .iter()
            .find(|c| c.name.to_string() == model)
            .and_then(|c| c.category)
    };
    assert_eq!(
        category(&automatic, "demo.full_model"),
        Some(Category::NonBreaking)
    );
    let mut options = PlanOptions::new("prod", now);
    options
        .overrides
        .insert(ModelName::new("demo", "full_model"), Category::Breaking);
    let chosen = ctx.plan(&options).unwrap();
    assert_eq!(
        category(&chosen, "demo.full_model"),
        Some(Category::Breaking)
    );
    assert_eq!(
        category(&chosen, "demo.view_model"),
        Some(Category::IndirectBreaking),
        "the choice propagates to the children"
    );
}

#[test]
fn plan_and_run_target_default_target_environment_unless_told() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &format!("{}default_target_environment: dev\n", s.read("config.yaml")),
    );
    let out = run(&s, &["plan", "--auto-apply", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        built_models(&out).contains(&"demo__dev.full_model".to_string()),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select count(*) AS n from demo__dev.full_model"),
        "n\n3\n"
    );
    let envs = stdout(&run(&s, &["environments", "--json"]));
    assert!(
        envs.contains("\"dev\"") && !envs.contains("\"prod\""),
        "{envs}"
    );
    let out = run(&s, &["run", "--execution-time", EXEC]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Naming prod still plans prod.
    s.apply_env("prod", EXEC);
    s.assert_demo_results();
}

/// The environment names in lake's Iceberg catalog (`.lake/catalog.db`), leaving out the versions'
/// `lake__<schema>` namespaces.
fn catalog_names(s: &Scratch) -> Vec<String> {
    let catalog = rusqlite::Connection::open(s.project.join(".lake/catalog.db")).unwrap();
    let mut query = catalog
        .prepare("SELECT table_namespace || '.' || table_name FROM iceberg_tables ORDER BY 1")
        .unwrap();
    query
        .query_map([], |row| row.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|name| !name.starts_with("lake__"))
        .collect()
}

#[test]
fn environment_suffix_target_table_names_dev_views_in_prod_schemas_and_each_environment_keeps_its_naming()
 {
    let s = Scratch::init();
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &format!("{config}\nenvironment_suffix_target: table\n"),
    );
    s.apply(EXEC);
    edit(
        &s,
        "models/full_model.sql",
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    let out = run(
        &s,
        &["plan", "dev", "--auto-apply", "--execution-time", EXEC],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("- `demo.full_model__dev` (Breaking: changed the WHERE clause)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        built_models(&out),
        ["demo.full_model__dev", "demo.view_model__dev"]
    );
    assert_eq!(
        s.csv("select * from demo.full_model__dev order by 1"),
        "item_id,num_orders\n1,3\n"
    );
    let out = run(&s, &["fetchdf", "select * from demo__dev.full_model"]);
    assert_eq!(out.status.code(), Some(1), "no schema-suffixed name");
    let dev_names = |names: Vec<String>| -> Vec<String> {
        names.into_iter().filter(|n| n.contains("dev")).collect()
    };
    // VIEW models live in DuckDB only; the catalog names tables.
    assert_eq!(dev_names(catalog_names(&s)), ["demo.full_model__dev"]);
    s.assert_demo_results();

    // Back to the default: the next plan of dev moves every one of its names, and drops the old ones.
    s.write("config.yaml", &config);
    let out = run(
        &s,
        &["plan", "dev", "--auto-apply", "--execution-time", EXEC],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("No model changes; 4 virtual name(s) of `dev` will be repointed"),
        "{}",
        stdout(&out)
    );
    assert!(built_models(&out).is_empty(), "renaming builds nothing");
    assert_eq!(
        s.csv("select * from demo__dev.full_model order by 1"),
        "item_id,num_orders\n1,3\n"
    );
    let out = run(&s, &["fetchdf", "select * from demo.full_model__dev"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the table-suffixed name is gone"
    );
    assert_eq!(dev_names(catalog_names(&s)), ["demo__dev.full_model"]);

    // The janitor drops an environment's names as they were last planned, whatever config.yaml says now.
    s.write(
        "config.yaml",
        &format!("{config}\nenvironment_suffix_target: table\n"),
    );
    assert!(run(&s, &["invalidate", "dev"]).status.success());
    let out = run(&s, &["janitor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(dev_names(catalog_names(&s)), Vec::<String>::new());
    let out = run(&s, &["fetchdf", "select * from demo__dev.full_model"]);
    assert_eq!(out.status.code(), Some(1), "the dev name is gone");
    s.assert_demo_results();
}

#[test]
fn environment_suffix_target_catalog_or_a_misspelling_is_a_located_error() {
    let s = Scratch::init();
    let config = s.read("config.yaml");
    for (value, hint) in [
        ("catalog", "lake keeps every environment in one DuckDB file"),
        ("tabel", "`table` names them `db.users__dev`"),
    ] {
        s.write(
            "config.yaml",
            &format!("{config}\nenvironment_suffix_target: {value}\n"),
        );
        let out = run(&s, &["plan"]);
        assert!(!out.status.success());
        let message = crate::common::stderr_words(&out);
        let line = config.lines().count() + 2;
        assert!(
            message.contains(&format!("config.yaml:{line}:28"))
                && message.contains(&format!("expected `schema` or `table`, found `{value}`"))
                && message.contains(hint),
            "{message}"
        );
    }
}

/// `pinned_environments` are kept by the janitor even once expired, as SQLMesh keeps them; unpinned, the next
/// janitor removes them.
#[test]
fn the_janitor_keeps_pinned_environments() {
    let s = Scratch::init();
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &format!("{config}\npinned_environments: [Staging]\n"),
    );
    s.apply(EXEC);
    for environment in ["staging", "scratch"] {
        let out = run(
            &s,
            &[
                "plan",
                environment,
                "--include-unmodified",
                "--auto-apply",
                "--execution-time",
                EXEC,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(run(&s, &["invalidate", environment]).status.success());
    }
    let out = run(&s, &["janitor"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Removed environment `scratch`\n");
    assert_eq!(
        s.csv("select count(*) as n from demo__staging.full_model"),
        "n\n3\n"
    );

    s.write("config.yaml", &config);
    let out = run(&s, &["janitor"]);
    assert_eq!(stdout(&out), "Removed environment `staging`\n");
    let out = run(&s, &["fetchdf", "select * from demo__staging.full_model"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the unpinned environment's names are gone"
    );
}

/// `physical_schema_mapping` puts new versions' tables in the schema it names (in DuckDB, in the Iceberg
/// catalog and in the warehouse); a version keeps its schema when the mapping changes, new versions go to the
/// new one, and the janitor finds each where it is.
#[test]
fn physical_schema_mapping_places_new_versions_and_each_version_keeps_its_schema() {
    let s = Scratch::init();
    let config = s.read("config.yaml");
    let with_mapping = |target: &str| {
        s.write(
            "config.yaml",
            &format!(
                "{config}\nphysical_schema_mapping:\n  '^dem': {target}\n  '^other$': unused\n"
            ),
        );
    };
    with_mapping("demo_tables");
    s.apply(EXEC);
    let table_name = |env: &str| {
        stdout(&run(&s, &["table-name", "demo.full_model", "--env", env]))
            .trim()
            .to_string()
    };
    let prod_table = table_name("prod");
    assert!(
        prod_table.starts_with("demo_tables.demo__full_model__"),
        "{prod_table}"
    );
    assert!(
        s.project
            .join("warehouse")
            .join(prod_table.replace('.', "/"))
            .exists(),
        "the table's files are under its schema"
    );
    let physical_in = |schema: &str| -> Vec<String> {
        let catalog = rusqlite::Connection::open(s.project.join(".lake/catalog.db")).unwrap();
        let mut query = catalog
            .prepare("SELECT table_name FROM iceberg_tables WHERE table_namespace = ?1 ORDER BY 1")
            .unwrap();
        query
            .query_map([schema], |row| row.get::<_, String>(0))
            .unwrap()
            .map(|name| name.unwrap().rsplit_once("__").unwrap().0.to_string())
            .collect()
    };
    assert_eq!(
        physical_in("demo_tables"),
        [
            "demo__full_model",
            "demo__incremental_model",
            "demo__seed_model"
        ]
    );
    assert!(physical_in("lake__demo").is_empty());
    s.assert_demo_results();
    // The next plan finds every table where the mapping put it: nothing to build.
    s.assert_no_changes();

    // A new mapping moves no table; the next breaking change builds its version under the new schema.
    with_mapping("demo_v2");
    s.assert_no_changes();
    assert_eq!(table_name("prod"), prod_table);
    edit(
        &s,
        "models/full_model.sql",
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    let out = run(
        &s,
        &["plan", "dev", "--auto-apply", "--execution-time", EXEC],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        built_models(&out),
        ["demo__dev.full_model", "demo__dev.view_model"],
        "the parents under the earlier schema are found, not rebuilt"
    );
    let dev_table = table_name("dev");
    assert!(
        dev_table.starts_with("demo_v2.demo__full_model__"),
        "{dev_table}"
    );
    assert_eq!(
        s.csv("select * from demo__dev.full_model order by 1"),
        "item_id,num_orders\n1,3\n"
    );
    assert_eq!(table_name("prod"), prod_table);
    s.assert_demo_results();

    let out = run(&s, &["invalidate", "dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&s, &["janitor", "--ignore-ttl", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dropped: Vec<&str> = report["tables_dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        dropped.contains(&dev_table.as_str()),
        "{dropped:?} holds {dev_table}"
    );
    assert!(physical_in("demo_v2").is_empty());
    assert!(
        !s.project
            .join("warehouse")
            .join(dev_table.replace('.', "/"))
            .exists()
    );
    s.assert_demo_results();
    // `lake run` writes to prod's tables where they are, under the earlier mapping's schema.
    edit(
        &s,
        "models/full_model.sql",
        "FROM demo.incremental_model\nWHERE id > 4",
        "FROM demo.incremental_model",
    );
    let out = run(&s, &["run", "--execution-time", "2024-06-02 00:30:00"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        built_models(&out),
        ["demo.incremental_model", "demo.full_model"]
    );
    assert!(physical_in("lake__demo").is_empty());
    assert!(physical_in("demo_v2").is_empty());
    assert_eq!(table_name("prod"), prod_table);

    // Physical tables among the names environments expose are refused, at a model of that schema.
    for target in ["demo", "demo__dev"] {
        s.write(
            "config.yaml",
            &format!("{config}\nphysical_schema_mapping:\n  '^demo$': {target}\n"),
        );
        let out = run(&s, &["plan"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let message = crate::common::stderr_words(&out);
        assert!(
            message.contains("models/")
                && message.contains(&format!("puts physical tables in `{target}`")),
            "{message}"
        );
    }
    // A pattern that is not a regular expression is refused where it is written.
    s.write(
        "config.yaml",
        &format!("{config}\nphysical_schema_mapping:\n  '(demo': demo_tables\n"),
    );
    let out = run(&s, &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = crate::common::stderr_words(&out);
    assert!(
        message.contains("config.yaml:") && message.contains("`(demo` is not a regular expression"),
        "{message}"
    );
}

#[test]
fn create_from_starts_a_dev_environment_from_another_one_and_builds_nothing_it_has() {
    let s = Scratch::init();
    s.apply(EXEC);
    edit(
        &s,
        "models/full_model.sql",
        "COUNT(DISTINCT id) AS",
        "COUNT(DISTINCT id) * 3 AS",
    );
    s.apply_env("staging", EXEC);
    let out = run(
        &s,
        &[
            "plan",
            "pr_1",
            "--create-from",
            "staging",
            "--auto-apply",
            "--execution-time",
            EXEC,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("**New environment `pr_1` will be created from `staging`**"),
        "{}",
        stdout(&out)
    );
    // Staging built the change: the new environment reuses its tables.
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(
        stdout(&run(
            &s,
            &["table-name", "demo.full_model", "--env", "pr_1"]
        )),
        stdout(&run(
            &s,
            &["table-name", "demo.full_model", "--env", "staging"]
        ))
    );
    assert_eq!(
        s.csv("select * from demo__pr_1.full_model order by item_id"),
        "item_id,num_orders\n1,15\n2,3\n3,3\n"
    );
    // Without it, a new environment is compared with prod.
    let out = run(&s, &["plan", "pr_2", "--execution-time", EXEC]);
    assert!(
        stdout(&out).contains("created from `prod`"),
        "{}",
        stdout(&out)
    );
    for (args, message) in [
        (
            &["plan", "pr_3", "--create-from", "nope"][..],
            "environment `nope` to create `pr_3` from does not exist",
        ),
        (
            &["plan", "--create-from", "staging"][..],
            "prod is never created from another",
        ),
    ] {
        let out = run(&s, args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}
