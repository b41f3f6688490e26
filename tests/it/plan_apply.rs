//! End-to-end: init → plan → query, no-op plans, edits rebuilding only what changed, dev environments.

use crate::common::{EXEC, Scratch, built_models, stderr, stdout};

#[test]
fn init_plan_and_query_the_demo() {
    let s = Scratch::init();
    let out = s.apply(EXEC);
    let plan = stdout(&out);
    insta::assert_snapshot!("first_plan", plan);
    let mut built = built_models(&out);
    built.sort();
    assert_eq!(
        built,
        [
            "demo.full_model",
            "demo.incremental_model",
            "demo.seed_model",
            "demo.view_model"
        ]
    );

    s.assert_demo_results();
    // The seed honours the declared column types.
    assert_eq!(
        s.csv(
            "select typeof(id) as t_id, typeof(event_date) as t_date from demo.seed_model limit 1"
        ),
        "t_id,t_date\nINTEGER,DATE\n"
    );
    // Physical tables live in lake__demo, one per model version.
    let tables = s.csv(
        "select count(*) as n from information_schema.tables where table_schema = 'lake__demo'",
    );
    assert_eq!(tables, "n\n4\n");
}

#[test]
fn second_plan_is_a_no_op() {
    let s = Scratch::init();
    s.apply(EXEC);
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "No changes to plan: project files match the `prod` environment\n"
    );
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn editing_a_leaf_rebuilds_only_it_and_repoints_prod() {
    let s = Scratch::init();
    s.apply(EXEC);
    let before = s.csv("select table_name from information_schema.tables where table_schema = 'lake__demo' order by 1");

    let view = s
        .read("models/view_model.sql")
        .replace("num_orders > 1", "num_orders >= 1");
    s.write("models/view_model.sql", &view);
    let out = s.apply(EXEC);
    let plan = stdout(&out);
    assert!(
        plan.contains(
            "**Directly Modified:**\n- `demo.view_model` (Breaking: changed the WHERE clause)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("-  num_orders > 1\n+  num_orders >= 1"),
        "{plan}"
    );
    assert!(
        plan.contains("* `demo.view_model`: [create view]"),
        "{plan}"
    );
    assert_eq!(built_models(&out), ["demo.view_model"]);
    assert_eq!(s.csv("select count(*) as n from demo.view_model"), "n\n3\n");

    // The previous version's table is kept (for rollback and other environments), not overwritten.
    let after = s.csv("select table_name from information_schema.tables where table_schema = 'lake__demo' order by 1");
    assert_eq!(
        after.lines().count(),
        before.lines().count() + 1,
        "{before}\n{after}"
    );
}

#[test]
fn a_breaking_parent_edit_rebuilds_its_children_too() {
    let s = Scratch::init();
    s.apply(EXEC);
    let full = s.read("models/full_model.sql").replace(
        "FROM demo.incremental_model",
        "FROM demo.incremental_model\nWHERE id > 4",
    );
    s.write("models/full_model.sql", &full);
    let out = s.apply(EXEC);
    let plan = stdout(&out);
    assert!(
        plan.contains("- `demo.full_model` (Breaking: changed the WHERE clause)"),
        "{plan}"
    );
    assert!(plan.contains("**Indirectly Modified:**\n- `demo.view_model` (Indirect Breaking) because of demo.full_model"), "{plan}");
    let mut built = built_models(&out);
    built.sort();
    assert_eq!(built, ["demo.full_model", "demo.view_model"]);
    assert_eq!(
        s.csv("select num_orders from demo.full_model where item_id = 1"),
        "num_orders\n3\n"
    );
    assert_eq!(
        s.csv("select * from demo.view_model"),
        "item_id,num_orders\n1,3\n"
    );
}

#[test]
fn a_non_breaking_parent_edit_leaves_materialised_children_alone() {
    let s = Scratch::init();
    s.write(
        "models/full_child.sql",
        "MODEL (name demo.full_child, kind FULL);\nSELECT item_id, num_orders FROM demo.full_model\n",
    );
    s.apply(EXEC);
    let child_table = || {
        s.csv("select table_name from information_schema.tables where table_schema = 'lake__demo' and table_name like 'demo__full_child__%'")
    };
    let child_before = child_table();
    let full = s.read("models/full_model.sql").replace(
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) AS num_orders,\n  MAX(id) AS max_id",
    );
    s.write("models/full_model.sql", &full);
    let out = s.apply(EXEC);
    let plan = stdout(&out);
    assert!(
        plan.contains("- `demo.full_model` (Non-breaking: added column `max_id`)"),
        "{plan}"
    );
    assert!(
        plan.contains("- `demo.full_child` (Indirect Non-breaking) because of demo.full_model"),
        "{plan}"
    );
    // The FULL child keeps its table; the VIEW child is recreated over the new parent (free).
    let mut built = built_models(&out);
    built.sort();
    assert_eq!(built, ["demo.full_model", "demo.view_model"]);
    assert_eq!(
        child_table(),
        child_before,
        "the child keeps its physical table"
    );
    assert_eq!(
        s.csv("select max_id from demo.full_model where item_id = 1"),
        "max_id\n7\n"
    );
    assert_eq!(
        s.csv("select * from demo.full_child order by 1"),
        "item_id,num_orders\n1,5\n2,1\n3,1\n"
    );
    s.assert_no_changes();
    // A later run rebuilds the child from the new parent version.
    let out = s
        .lake()
        .args(["run", "--ignore-cron", "--execution-time", "2024-06-02"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.csv("select count(*) as n from demo.full_child"), "n\n3\n");
}

#[test]
fn an_added_column_read_through_star_is_breaking() {
    let s = Scratch::init();
    s.write(
        "models/star_model.sql",
        "MODEL (name demo.star_model, kind FULL);\nSELECT * FROM demo.full_model\n",
    );
    s.apply(EXEC);
    let full = s.read("models/full_model.sql").replace(
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) AS num_orders,\n  MAX(id) AS max_id",
    );
    s.write("models/full_model.sql", &full);
    let out = s.apply(EXEC);
    let plan = stdout(&out);
    assert!(
        plan.contains("- `demo.full_model` (Breaking: added a column that `demo.star_model` reads through `*`)"),
        "{plan}"
    );
    let mut built = built_models(&out);
    built.sort();
    assert_eq!(
        built,
        ["demo.full_model", "demo.star_model", "demo.view_model"]
    );
    assert_eq!(
        s.csv("select max_id from demo.star_model where item_id = 1"),
        "max_id\n7\n"
    );
}

#[test]
fn metadata_only_change_rebuilds_nothing() {
    let s = Scratch::init();
    s.apply(EXEC);
    let view = s
        .read("models/view_model.sql")
        .replace("Items ordered more than once", "Repeat items");
    s.write("models/view_model.sql", &view);
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("- `demo.view_model` (Metadata)"),
        "{}",
        stdout(&out)
    );
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    s.assert_no_changes();
}

#[test]
fn dev_environment_is_isolated_and_promotion_rebuilds_nothing() {
    let s = Scratch::init();
    s.apply(EXEC);
    let full = s
        .read("models/full_model.sql")
        .replace("COUNT(DISTINCT id)", "COUNT(DISTINCT id) * 10");
    s.write("models/full_model.sql", &full);

    let out = s.apply_env("dev", EXEC);
    let plan = stdout(&out);
    assert!(
        plan.starts_with("**New environment `dev` will be created from `prod`**"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "`demo__dev.full_model` (Breaking: changed the expression of column `num_orders`)"
        ),
        "{plan}"
    );
    let mut built = built_models(&out);
    built.sort();
    assert_eq!(built, ["demo__dev.full_model", "demo__dev.view_model"]);

    assert_eq!(
        s.csv("select num_orders from demo__dev.full_model where item_id = 1"),
        "num_orders\n50\n"
    );
    // Prod is untouched by a dev plan.
    assert_eq!(
        s.csv("select num_orders from demo.full_model where item_id = 1"),
        "num_orders\n5\n"
    );
    // Only changed models get dev names; the unchanged seed stays in prod only.
    assert_eq!(
        s.csv("select table_name from information_schema.tables where table_schema = 'demo__dev' order by 1"),
        "table_name\nfull_model\nview_model\n"
    );

    // Promoting the same versions to prod reuses dev's tables.
    let out = s.apply(EXEC);
    assert!(
        built_models(&out).is_empty(),
        "promotion rebuilt: {}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select num_orders from demo.full_model where item_id = 1"),
        "num_orders\n50\n"
    );
}

#[test]
fn without_auto_apply_or_terminal_nothing_is_applied() {
    let s = Scratch::init();
    let out = s
        .lake()
        .args(["plan", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).contains("Models needing backfill"));
    assert!(stderr(&out).contains("Not applied"));
    let again = s
        .lake()
        .args(["plan", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(
        stdout(&again).contains("`prod` environment will be initialized"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn removed_model_disappears_from_the_environment() {
    let s = Scratch::init();
    s.apply(EXEC);
    std::fs::remove_file(s.project.join("models/view_model.sql")).unwrap();
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("**Removed Models:**\n- `demo.view_model`"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        s.csv("select count(*) as n from information_schema.tables where table_schema = 'demo' and table_name = 'view_model'"),
        "n\n0\n"
    );
}

#[test]
fn a_failing_model_leaves_prod_as_it_was_and_a_rerun_resumes() {
    let s = Scratch::init();
    s.apply(EXEC);
    // A runtime error (not caught when loading): casting text to an integer.
    let full = s.read("models/full_model.sql").replace(
        "COUNT(DISTINCT id) AS num_orders",
        "COUNT(DISTINCT id) + CAST('x' AS INT) AS num_orders",
    );
    s.write("models/full_model.sql", &full);
    s.write(
        "models/other.sql",
        "MODEL (name demo.other, kind FULL);\nSELECT 42 AS answer\n",
    );
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("model `demo.full_model` failed"), "{err}");
    assert!(
        err.contains("skipped demo.view_model (upstream demo.full_model failed)"),
        "{err}"
    );
    assert!(
        err.contains("the environment `prod` was not updated"),
        "{err}"
    );
    // Prod still shows the old data, and the new model is not exposed yet.
    assert_eq!(
        s.csv("select num_orders from demo.full_model where item_id = 1"),
        "num_orders\n5\n"
    );
    assert_eq!(
        s.csv("select count(*) as n from information_schema.tables where table_schema = 'demo' and table_name = 'other'"),
        "n\n0\n"
    );

    let fixed = full.replace(" + CAST('x' AS INT)", "");
    s.write("models/full_model.sql", &fixed);
    let out = s.apply(EXEC);
    // demo.other was built by the failed attempt and is not rebuilt.
    let built = built_models(&out);
    assert!(!built.contains(&"demo.other".to_string()), "{built:?}");
    assert_eq!(s.csv("select answer from demo.other"), "answer\n42\n");
}

#[test]
fn deleted_warehouse_is_rebuilt_before_promotion() {
    let s = Scratch::init();
    s.apply(EXEC);
    std::fs::remove_file(s.project.join("db.db")).unwrap();
    let _ = std::fs::remove_file(s.project.join("db.db.wal"));
    let view = s
        .read("models/view_model.sql")
        .replace("num_orders > 1", "num_orders > 0");
    s.write("models/view_model.sql", &view);
    s.apply(EXEC);
    assert_eq!(s.csv("select count(*) as n from demo.view_model"), "n\n3\n");
}

#[test]
fn killed_apply_resumes_without_rebuilding_finished_models() {
    use std::io::{BufRead, BufReader};
    let s = Scratch::init();
    // A slow model keeps the apply busy after the fast ones have finished.
    s.write(
        "models/slow.sql",
        "MODEL (name demo.slow, kind FULL);\nSELECT sum(hash(range)) AS h FROM range(400000000)\n",
    );
    let mut child = s.spawn_apply(EXEC);
    let stderr_pipe = child.stderr.take().unwrap();
    let mut finished = Vec::new();
    for line in BufReader::new(stderr_pipe).lines() {
        let line = line.unwrap();
        if line.starts_with('[') {
            finished.push(line.split_whitespace().nth(1).unwrap().to_string());
            if finished.iter().any(|m| m == "demo.full_model") {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !finished.contains(&"demo.slow".to_string()),
        "the slow model finished before the kill"
    );

    // Nothing was promoted: prod does not exist yet.
    let out = s
        .lake()
        .args(["plan", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("`prod` environment will be initialized"),
        "{}",
        stdout(&out)
    );

    let out = s.apply(EXEC);
    let rebuilt = built_models(&out);
    for model in &finished {
        assert!(
            !rebuilt.contains(model),
            "{model} was built before the kill and rebuilt: {rebuilt:?}"
        );
    }
    assert!(rebuilt.contains(&"demo.slow".to_string()), "{rebuilt:?}");
    assert_eq!(
        s.csv("select * from demo.full_model order by item_id"),
        "item_id,num_orders\n1,5\n2,1\n3,1\n"
    );
    s.assert_no_changes();
}

#[test]
fn concurrent_applies_never_promote_a_stale_plan() {
    use std::io::{BufRead, BufReader};
    let s = Scratch::init();
    s.write(
        "models/slow.sql",
        "MODEL (name demo.slow, kind FULL);\nSELECT sum(hash(range)) AS h FROM range(400000000)\n",
    );
    let spawn = || s.spawn_apply(EXEC);
    let mut first = spawn();
    // Wait until the first apply holds the lock and is building.
    let mut first_err = BufReader::new(first.stderr.take().unwrap());
    let mut line = String::new();
    while first_err.read_line(&mut line).unwrap() > 0 && !line.starts_with('[') {
        line.clear();
    }
    // The second plan is computed against the same (empty) state, then waits for the lock.
    let second = spawn().wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut first_err, &mut rest).unwrap();
    assert!(first.wait().unwrap().success(), "{line}{rest}");
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("was changed by another plan"), "{err}");
    // Prod is exactly the first apply's result and the project matches it.
    s.assert_no_changes();
    assert_eq!(
        s.csv("select num_orders from demo.full_model where item_id = 1"),
        "num_orders\n5\n"
    );
}

#[test]
fn duckdb_file_storage_is_an_explicit_opt_in() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &(s.read("config.yaml") + "\nstorage:\n  type: duckdb\n"),
    );
    s.apply(EXEC);
    s.assert_demo_results();
    assert!(!s.project.join("warehouse").exists());
    assert!(!s.project.join(".lake/catalog.db").exists());
    assert_eq!(
        s.csv("select table_type, count(*) as n from information_schema.tables where table_schema = 'lake__demo' group by 1 order by 1"),
        "table_type,n\nBASE TABLE,3\nVIEW,1\n"
    );
}

/// `ON_VIRTUAL_UPDATE_BEGIN; … ON_VIRTUAL_UPDATE_END;` statements run when the model's name in an
/// environment moves to a new table, with `@this_model` naming that environment's view.
#[test]
fn on_virtual_update_statements_run_when_a_name_moves() {
    let s = Scratch::init();
    let view = |threshold: u32| {
        format!(
            "MODEL (name demo.view_model, kind VIEW);\n\n\
             SELECT item_id, num_orders FROM demo.full_model WHERE num_orders > {threshold};\n\n\
             ON_VIRTUAL_UPDATE_BEGIN;\n\
             CREATE SCHEMA IF NOT EXISTS log;\n\
             CREATE TABLE IF NOT EXISTS log.promotions (stage TEXT, n BIGINT);\n\
             INSERT INTO log.promotions SELECT @runtime_stage, count(*) FROM @this_model;\n\
             ON_VIRTUAL_UPDATE_END;\n"
        )
    };
    s.write("models/view_model.sql", &view(1));
    s.apply(EXEC);
    let prod_rows = s.csv("select count(*) as n from demo.view_model");
    assert_eq!(
        s.csv("select n from log.promotions"),
        prod_rows,
        "run once, on prod's view"
    );

    s.write("models/view_model.sql", &view(0));
    s.apply_env("dev", EXEC);
    let dev_rows = s.csv("select count(*) as n from demo__dev.view_model");
    assert_ne!(dev_rows, prod_rows, "the dev view shows more items");
    let logged = s.csv("select stage, n from log.promotions order by rowid");
    let n = |csv: &str| csv.lines().nth(1).unwrap_or_default().to_string();
    assert_eq!(
        logged,
        format!(
            "stage,n\npromoting,{}\npromoting,{}\n",
            n(&prod_rows),
            n(&dev_rows)
        )
    );

    s.write(
        "models/view_model.sql",
        "MODEL (name demo.view_model, kind VIEW);\nSELECT 1 AS x;\nON_VIRTUAL_UPDATE_BEGIN;\nSELECT 1;\n",
    );
    let out = s.lake().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ON_VIRTUAL_UPDATE_BEGIN has no ON_VIRTUAL_UPDATE_END"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn model_defaults_statements_run_around_every_model_before_its_own() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &format!(
            "{}  pre_statements:\n    - CREATE TABLE IF NOT EXISTS main.hooks (what TEXT, kind TEXT)\n    - \"INSERT INTO main.hooks VALUES ('default pre', @model_kind_name)\"\n  post_statements: [\"INSERT INTO main.hooks VALUES ('default post', @model_kind_name)\"]\n",
            s.read("config.yaml")
        ),
    );
    s.write(
        "models/full_model.sql",
        &format!(
            "{};\nINSERT INTO main.hooks VALUES ('own post', @model_kind_name)\n",
            s.read("models/full_model.sql").replacen(
                ");\n",
                ");\nINSERT INTO main.hooks VALUES ('own pre', @model_kind_name);\n",
                1
            )
        ),
    );
    s.apply(EXEC);
    s.assert_demo_results();
    assert_eq!(
        s.csv("select what from main.hooks where kind = 'FULL' order by rowid"),
        "what\ndefault pre\nown pre\ndefault post\nown post\n"
    );

    // A statement in config.yaml that does not render is located there.
    s.write(
        "config.yaml",
        &s.read("config.yaml")
            .replace("'default pre', @model_kind_name", "'default pre', @nope"),
    );
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let message = stderr(&out);
    assert!(
        message.contains("config.yaml (model_defaults.pre_statements):2:")
            && message.contains("@nope"),
        "{message}"
    );
}

/// `model_defaults.on_virtual_update` runs for every model whose name moves, before the model's own.
#[test]
fn model_defaults_on_virtual_update_runs_for_every_moved_name() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &format!(
            "{}  on_virtual_update:\n    - CREATE TABLE IF NOT EXISTS main.moved (kind TEXT, n BIGINT, what TEXT)\n    - \"INSERT INTO main.moved SELECT @model_kind_name, count(*), 'default' FROM @this_model\"\n",
            s.read("config.yaml")
        ),
    );
    s.write(
        "models/full_model.sql",
        &format!(
            "{};\nON_VIRTUAL_UPDATE_BEGIN;\nINSERT INTO main.moved SELECT 'FULL', 0, 'own';\nON_VIRTUAL_UPDATE_END;\n",
            s.read("models/full_model.sql").trim_end().trim_end_matches(';')
        ),
    );
    s.apply(EXEC);
    s.assert_demo_results();
    assert_eq!(
        s.csv("select kind, n, what from main.moved order by rowid"),
        "kind,n,what\nSEED,7,default\nINCREMENTAL_BY_TIME_RANGE,7,default\nFULL,3,default\nFULL,0,own\n\
         VIEW,1,default\n"
    );
    // Nothing moves in a no-op plan, so nothing runs.
    s.apply(EXEC);
    assert_eq!(s.csv("select count(*) as n from main.moved"), "n\n5\n");
}

#[test]
fn before_all_and_after_all_run_around_each_applied_plan_and_run() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &format!(
            "{}before_all:\n  - CREATE TABLE IF NOT EXISTS main.env_log (moment TEXT, env TEXT, views INT, schemas TEXT)\n  - \"INSERT INTO main.env_log VALUES (@runtime_stage, @this_env, NULL, NULL)\"\nafter_all:\n  - \"INSERT INTO main.env_log VALUES (@runtime_stage, @this_env, len(@views), array_to_string(@schemas, ','))\"\n",
            s.read("config.yaml")
        ),
    );
    s.apply(EXEC);
    s.write(
        "models/full_model.sql",
        &s.read("models/full_model.sql").replace(
            "FROM demo.incremental_model",
            "FROM demo.incremental_model WHERE id > 1",
        ),
    );
    s.apply_env("dev", EXEC);
    // A plan that is only shown runs nothing.
    let out = s
        .lake()
        .args(["plan", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s
        .lake()
        .args(["run", "dev", "--execution-time", "2024-06-02"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select * from main.env_log"),
        "moment,env,views,schemas\n\
         before_all,prod,,\nafter_all,prod,4,demo\n\
         before_all,dev,,\nafter_all,dev,2,demo__dev\n\
         before_all,dev,,\nafter_all,dev,2,demo__dev\n"
    );

    // A statement that does not render is located in config.yaml and stops the run before it builds.
    s.write(
        "config.yaml",
        &s.read("config.yaml")
            .replace("@this_env, len(@views)", "@nope, len(@views)"),
    );
    let out = s
        .lake()
        .args(["run", "dev", "--execution-time", "2024-06-03"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("config.yaml (after_all):1:50: unknown macro variable @nope"),
        "{}",
        stderr(&out)
    );
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(s.csv("select count(*) AS n from main.env_log"), "n\n6\n");
}

/// config.yaml's `plan:` section gives `lake plan`'s flags their defaults, as SQLMesh's does: here it applies
/// without `--auto-apply` and a dev environment exposes unmodified models too.
#[test]
fn the_plan_section_of_config_yaml_sets_the_flags_defaults() {
    let s = Scratch::init();
    // `lake plan [ENV]` with no flag but the execution time.
    let plan = |environment: &[&str]| {
        s.lake()
            .arg("plan")
            .args(environment)
            .args(["--execution-time", EXEC])
            .output()
            .unwrap()
    };
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &format!(
            "{config}\nplan:\n  auto_apply: true\n  include_unmodified: true\n  enable_preview: true\n"
        ),
    );
    let out = plan(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("Not applied"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("unknown"), "{}", stderr(&out));
    s.assert_demo_results();
    let out = plan(&["dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        built_models(&out).is_empty(),
        "nothing changed: nothing is built"
    );
    assert_eq!(
        s.csv("select * from demo__dev.full_model order by item_id"),
        s.csv("select * from demo.full_model order by item_id")
    );

    // Without the section, the same dev plan is not applied and names nothing.
    s.write("config.yaml", &config);
    let out = plan(&["dev2"]);
    assert!(stderr(&out).contains("Not applied"), "{}", stderr(&out));
    let out = s
        .lake()
        .args(["fetchdf", "select * from demo__dev2.full_model"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "dev2 has no names");
}

#[test]
fn no_diff_leaves_out_the_text_of_changes_and_plan_no_diff_makes_it_the_default() {
    let s = Scratch::init();
    s.apply(EXEC);
    let model = s.read("models/full_model.sql");
    s.write(
        "models/full_model.sql",
        &model.replace("COUNT(DISTINCT id) AS", "COUNT(DISTINCT id) * 2 AS"),
    );
    let plan = |args: &[&str]| {
        let out = s.lake().args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let with_diff = plan(&["plan", "dev", "--execution-time", EXEC]);
    assert!(with_diff.contains("```diff"), "{with_diff}");
    let without = plan(&["plan", "dev", "--no-diff", "--execution-time", EXEC]);
    assert!(
        !without.contains("```diff") && !without.contains("COUNT"),
        "{without}"
    );
    assert!(
        without.contains(
            "- `demo__dev.full_model` (Breaking: changed the expression of column `num_orders`)"
        ),
        "{without}"
    );
    let json = plan(&[
        "plan",
        "dev",
        "--no-diff",
        "--format",
        "json",
        "--execution-time",
        EXEC,
    ]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        doc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["diff"].is_null()),
        "{doc}"
    );
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &format!("{config}\nplan:\n  no_diff: true\n"),
    );
    assert_eq!(plan(&["plan", "dev", "--execution-time", EXEC]), without);
}

#[test]
fn plan_run_builds_what_is_due_after_applying_and_only_for_prod() {
    let s = Scratch::init();
    s.apply(EXEC);
    // A day later nothing changed in the project: the plan has nothing to apply, and --run builds the
    // incremental model's new day and refreshes the FULL model whose cron is due.
    let next_day = "2024-06-02 12:00:00";
    let apply_and_run = || {
        let out = s
            .lake()
            .args([
                "plan",
                "--auto-apply",
                "--run",
                "--execution-time",
                next_day,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out
    };
    let out = apply_and_run();
    assert_eq!(
        built_models(&out),
        ["demo.incremental_model", "demo.full_model"],
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("built in `prod`"), "{}", stderr(&out));
    // Nothing due any more the same day.
    let out = apply_and_run();
    assert!(built_models(&out).is_empty(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Nothing to run: every model of `prod` is up to date."),
        "{}",
        stderr(&out)
    );
    // --run is prod's: a dev plan with it is refused before anything is planned.
    let out = s
        .lake()
        .args([
            "plan",
            "dev",
            "--run",
            "--auto-apply",
            "--execution-time",
            next_day,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--run builds prod's due models"),
        "{}",
        stderr(&out)
    );
    let environments = s.lake().args(["environments"]).output().unwrap();
    assert!(
        !stdout(&environments).contains("dev"),
        "{}",
        stdout(&environments)
    );
}
