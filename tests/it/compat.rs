//! SQLMesh projects written by others, in small: what each needed from lake to run unchanged (audits reading
//! other models, float tolerance in unit tests, Jinja comments in plain SQL, pandas' NULL strings in seeds).

use crate::common::{EXEC, Scratch, stderr, stdout};

/// A shop whose DuckDB file is `shop.duckdb` (so its default catalog is `shop`): two seeds and a total, with
/// audits naming other models in each way SQLMesh accepts.
fn shop() -> Scratch {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: shop.duckdb\n\
         default_gateway: local\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n",
    );
    s.write(
        "seeds/customers.csv",
        "customer_id,name,signup_date,age,notes\n1,Ann,2024-01-02,30,x\n2,Bob,null,NULL,y\n3,Cy,N/A,NaN,\n",
    );
    s.write(
        "seeds/orders.csv",
        "order_id,customer_id,amount\n10,1,10.33\n11,1,10.33\n12,2,10.33\n13,3,1.5\n",
    );
    s.write(
        "models/customers.sql",
        "MODEL (\n  name main.customers,\n  kind SEED (path '../seeds/customers.csv'),\n  \
         columns (customer_id INTEGER, name TEXT, signup_date DATE, age INTEGER)\n);\n",
    );
    // An inline audit (a converted dbt `relationships` test) naming the model with the default catalog.
    s.write(
        "models/orders.sql",
        "MODEL (\n  name main.orders,\n  kind SEED (path '../seeds/orders.csv'),\n  \
         columns (order_id INTEGER, customer_id INTEGER, amount DOUBLE),\n  \
         audits (orders_have_customers, orders_have_known_customers)\n);\n\n\
         AUDIT (name orders_have_customers);\nSELECT o.* FROM @this_model AS o\n\
         LEFT JOIN \"shop\".\"main\".\"customers\" AS c ON o.customer_id = c.customer_id\n\
         WHERE c.customer_id IS NULL;\n\n\
         AUDIT (name orders_have_known_customers);\nSELECT * FROM @this_model\n\
         WHERE customer_id NOT IN (SELECT customer_id FROM \"main\".\"customers\");\n",
    );
    s.write(
        "audits/customers_known.sql",
        "AUDIT (name customers_known);\n\
         SELECT * FROM @this_model WHERE customer_id NOT IN (SELECT customer_id FROM main.customers)\n",
    );
    // A Jinja comment in a model without JINJA_QUERY_BEGIN, and a query naming a model with the catalog.
    s.write(
        "models/totals.sql",
        "MODEL (\n  name main.totals,\n  kind FULL,\n  audits (customers_known)\n);\n\
         {#- totals per customer; carried over from dbt #}\n\
         SELECT c.customer_id, SUM(o.amount) + 0.0 AS calculated_total\n\
         FROM \"shop\".\"main\".\"orders\" AS o JOIN main.customers AS c ON o.customer_id = c.customer_id\n\
         {# grouped by customer #}\nGROUP BY c.customer_id\n",
    );
    s
}

#[test]
fn audits_read_other_models_in_the_plans_environment() {
    let s = shop();
    let out = s.apply(EXEC);
    let err = stderr(&out);
    assert!(
        err.contains("main.orders") && err.contains("audits passed 2"),
        "{err}"
    );
    assert!(err.contains("audits passed 1"), "{err}");

    // Customer 2 leaves the seed in a dev environment: the orders' audits read dev's customers, not prod's.
    s.write(
        "seeds/customers.csv",
        "customer_id,name,signup_date,age,notes\n1,Ann,2024-01-02,30,x\n3,Cy,N/A,NaN,\n",
    );
    let out = s
        .lake()
        .args(["plan", "dev", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("audit `orders_have_customers` of model `main.orders` failed: 1 bad row(s)"),
        "{err}"
    );
    assert_eq!(
        s.csv("select count(*) as n from main.customers"),
        "n\n3\n",
        "prod still reads its own customers"
    );
}

#[test]
fn seeds_read_pandas_null_strings_as_null_and_drop_undeclared_columns() {
    let s = shop();
    s.apply(EXEC);
    assert_eq!(
        s.csv("select * from main.customers order by customer_id"),
        "customer_id,name,signup_date,age\n1,Ann,2024-01-02,30\n2,Bob,,\n3,Cy,,\n"
    );
    // `keep_default_na false` keeps the strings, so a DATE column holding `null` is a located failure.
    s.write(
        "models/customers.sql",
        "MODEL (\n  name main.customers,\n  kind SEED (path '../seeds/customers.csv', csv_settings (keep_default_na false, na_values ['N/A', 'NaN', 'NULL'])),\n  \
         columns (customer_id INTEGER, name TEXT, signup_date DATE, age INTEGER)\n);\n",
    );
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Could not convert string \"null\" to 'DATE'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn jinja_comments_in_a_plain_sql_model_render_away() {
    let s = shop();
    s.apply(EXEC);
    assert_eq!(
        s.csv("select * from main.totals order by customer_id"),
        "customer_id,calculated_total\n1,20.66\n2,10.33\n3,1.5\n"
    );
    let out = s.lake().args(["render", "main.totals"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("{#"), "{}", stdout(&out));
}

/// The test's expected total is written as a person would; the query's floating-point sum is off in the
/// last digit. SQLMesh compares floats with pandas' default tolerance; a real difference still fails.
#[test]
fn unit_tests_compare_floats_within_a_tolerance() {
    let s = shop();
    let test = |expected: &str| {
        format!(
            "test_totals:\n  model: main.totals\n  inputs:\n    main.orders:\n      rows:\n\
             \x20       - {{order_id: 1, customer_id: 1, amount: 10.33}}\n\
             \x20       - {{order_id: 2, customer_id: 1, amount: 10.33}}\n\
             \x20       - {{order_id: 3, customer_id: 1, amount: 10.33}}\n\
             \x20   shop.main.customers:\n      rows:\n        - {{customer_id: 1, name: a}}\n\
             \x20 outputs:\n    query:\n      rows:\n        - {{customer_id: 1, calculated_total: {expected}}}\n"
        )
    };
    s.write("tests/test_totals.yaml", &test("30.99"));
    let out = s.lake().arg("test").output().unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    s.write("tests/test_totals.yaml", &test("30.98"));
    let out = s.lake().arg("test").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let shown = stdout(&out);
    assert!(
        shown.contains("30.98") && shown.contains("30.990000000000002"),
        "both values are shown: {shown}"
    );
}

/// A project whose DuckDB file (`bench.db`) and schema (`bench`) share a name: DESCRIBE, SUMMARIZE and SHOW of
/// a model work as its SELECT does, and CSV prints timestamps as DuckDB and SQLMesh do.
#[test]
fn fetchdf_describes_models_and_prints_timestamps_as_duckdb_does() {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "gateways:\n  local:\n    connection:\n      type: duckdb\n      database: bench.db\n\
         default_gateway: local\nmodel_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n",
    );
    s.write(
        "models/m.sql",
        "MODEL (name bench.m_01_0000, kind FULL);\n\
         SELECT 1 AS id, TIMESTAMP '2024-01-01 10:00:00' AS at, TIMESTAMP '2024-01-01 10:00:00.25' AS precise\n",
    );
    s.apply(EXEC);
    assert_eq!(
        s.csv("select * from bench.m_01_0000"),
        "id,at,precise\n1,2024-01-01 10:00:00,2024-01-01 10:00:00.250\n"
    );
    let describe = s.csv("describe bench.m_01_0000");
    assert!(
        describe.starts_with("column_name,column_type") && describe.contains("at,TIMESTAMP"),
        "{describe}"
    );
    for sql in [
        "summarize bench.m_01_0000",
        "show bench.m_01_0000",
        "DESC bench.m_01_0000;",
    ] {
        let out = s.lake().args(["fetchdf", sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        assert!(stdout(&out).contains("precise"), "{sql}: {}", stdout(&out));
    }
}

/// `lake test -k` selects by part of a test's name (or a glob); `--preserve-fixtures` keeps each test's inputs
/// in a DuckDB file, which `lake clean` removes with the caches.
#[test]
fn test_selects_by_pattern_keeps_fixtures_and_clean_removes_them() {
    let s = Scratch::init_with_unit_tests();
    let test = s.read("tests/test_full_model.yaml");
    s.write(
        "tests/test_full_model.yaml",
        &format!(
            "{test}\n{}",
            test.replace("test_full_model:", "test_other_totals:")
        ),
    );
    let names = |args: &[&str]| {
        let out = s.lake().arg("test").args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let all = names(&[]);
    assert!(all.contains("Ran 2 test(s)"), "{all}");
    let some = names(&["-k", "other"]);
    assert!(
        some.contains("::test_other_totals") && some.contains("Ran 1 test(s)"),
        "{some}"
    );
    assert!(names(&["-k", "test_full_*"]).contains("::test_full_model"));
    assert!(names(&["-k", "nothing_like_it"]).contains("Ran 0 test(s)"));

    names(&["-k", "other", "--preserve-fixtures"]);
    let kept = s
        .project
        .join(".lake/test-fixtures/tests_test_full_model_yaml__test_other_totals.duckdb");
    assert!(kept.exists(), "{}", kept.display());
    // The kept database holds the test's inputs, as an independent DuckDB reads it.
    if let Some(python) = crate::common::readers::pyiceberg() {
        let tables = std::process::Command::new(python)
            .args([
                "-c",
                "import duckdb,sys; print(duckdb.connect(sys.argv[1], read_only=True).sql(\"select table_schema || '.' || table_name from information_schema.tables\").fetchall())",
            ])
            .arg(&kept)
            .output()
            .unwrap();
        assert!(tables.status.success(), "{}", stderr(&tables));
        assert!(
            stdout(&tables).contains("demo.incremental_model"),
            "{}",
            stdout(&tables)
        );
    }
    s.apply(EXEC);
    assert!(s.project.join(".lake/cache").exists());
    let out = s.lake().arg("clean").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!kept.exists() && !s.project.join(".lake/cache").exists());
    // The state is not a cache: prod is still there.
    s.assert_no_changes();
}

/// `lake destroy` removes every environment's views, every version's table and the state's records; it asks
/// first, and without a terminal it needs `--yes`. Objects a user made beside lake's stay.
#[test]
fn destroy_removes_what_the_project_made_and_nothing_else() {
    let s = Scratch::init();
    s.apply(EXEC);
    s.apply_env("dev", EXEC);
    s.lake()
        .args(["fetchdf", "CREATE TABLE demo.kept_by_user AS SELECT 1 AS x"])
        .assert()
        .success();
    let out = s.lake().arg("destroy").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(
        s.csv("select count(*) as n from demo.full_model")
            .contains('3')
    );

    // At a terminal it asks; anything but yes deletes nothing.
    if let Some(python) = crate::common::readers::python_with_pty() {
        let answers = serde_json::json!([["Delete every table, view and state record", "n"]]);
        let out = std::process::Command::new(python)
            .current_dir(&s.project)
            .env("NO_COLOR", "1")
            .arg(crate::common::readers::support("pty_session.py"))
            .arg(answers.to_string())
            .arg(assert_cmd::cargo::cargo_bin("lake"))
            .arg("destroy")
            .output()
            .unwrap();
        assert!(
            stdout(&out).contains("Nothing was deleted."),
            "{}",
            stdout(&out)
        );
        assert!(
            s.csv("select count(*) as n from demo.full_model")
                .contains('3')
        );
    }
    let out = s.lake().args(["destroy", "--yes"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("destroyed 2 environments"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.csv("select table_schema, table_name from information_schema.tables order by all"),
        "table_schema,table_name\ndemo,kept_by_user\n"
    );
    let out = s.lake().args(["environments"]).output().unwrap();
    assert!(stdout(&out).contains("No environments"), "{}", stdout(&out));
    // A fresh start builds everything again.
    let out = s.apply(EXEC);
    assert_eq!(crate::common::built_models(&out).len(), 4);
}

/// `lake dag FILE` writes one HTML page, as `sqlmesh dag FILE` does, that needs nothing from elsewhere:
/// headless Chromium shows the graph, a click lights up the lineage and fills the side panel, the search
/// finds a model, and a link with `#model=` opens with it selected. Screenshots go to
/// `LAKE_TEST_SCREENSHOTS` when set (to look at), else beside the project.
#[test]
fn dag_file_is_a_page_a_browser_can_click_through() {
    let s = Scratch::init();
    let page = s.project.join("dag.html");
    let out = s.lake().args(["dag"]).arg(&page).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("demo.full_model"));
    // A selection keeps only what it selects.
    let out = s
        .lake()
        .args([
            "dag",
            "--format",
            "text",
            "--select-model",
            "+demo.full_model",
        ])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out),
        "demo.seed_model\ndemo.incremental_model <- demo.seed_model\ndemo.full_model <- demo.incremental_model\n"
    );
    let Some(python) = crate::common::readers::browser() else {
        return;
    };
    let shots = std::env::var("LAKE_TEST_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| s.project.join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let seen: serde_json::Value = serde_json::from_str(&crate::common::readers::run_python(
        &python,
        "dag_page.py",
        &[
            page.to_str().unwrap(),
            shots.to_str().unwrap(),
            "demo.full_model",
        ],
    ))
    .unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["elsewhere"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["nodes"].as_array().map(Vec::len), Some(4), "{seen}");
    let class = |model: &str| {
        seen["classes"][model]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(class("demo.full_model").contains("selected"), "{seen}");
    assert!(
        class("demo.incremental_model").contains("upstream"),
        "{seen}"
    );
    assert!(class("demo.seed_model").contains("upstream"), "{seen}");
    assert!(class("demo.view_model").contains("downstream"), "{seen}");
    let details = seen["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("FULL") && details.contains("models/full_model.sql"),
        "{details}"
    );
    // Headings are upper-cased by the page's style, which the browser's text shows.
    let headings = details.to_lowercase();
    assert!(
        headings.contains("parents (1)") && headings.contains("all upstream (2)"),
        "{details}"
    );
    assert_eq!(seen["after_link"], "demo.incremental_model", "{seen}");
    assert_eq!(
        seen["matches"],
        serde_json::json!(["demo.view_model"]),
        "{seen}"
    );
    assert_eq!(seen["searched"], "demo.view_model", "{seen}");
    assert_eq!(seen["linked"], "demo.full_model", "{seen}");
    for shot in ["dag-overview.png", "dag-selected.png", "dag-search.png"] {
        assert!(shots.join(shot).exists(), "{shot}");
    }
}
