//! Unit tests in SQLMesh's YAML format, run by `lake test` and before every plan.

use crate::common::{EXEC, Scratch, stderr, stdout};

fn lake_test(s: &Scratch, args: &[&str]) -> std::process::Output {
    s.lake().arg("test").args(args).output().unwrap()
}

#[test]
fn the_template_test_passes_and_a_failing_one_shows_the_row_diff() {
    let s = Scratch::init_with_unit_tests();
    let out = lake_test(&s, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "✔ tests/test_full_model.yaml::test_full_model\nRan 1 test(s): 1 passed, 0 failed\n"
    );
    let broken = s
        .read("tests/test_full_model.yaml")
        .replace("num_orders: 1", "num_orders: 7");
    s.write("tests/test_full_model.yaml", &broken);
    let out = lake_test(&s, &["tests/test_full_model.yaml::test_full_model"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(stdout(&out), @r"
    ✘ tests/test_full_model.yaml::test_full_model (demo.full_model)
      query: 1 expected row(s) missing, 1 unexpected row(s)
        expected, not produced:
          item_id  num_orders
                2           7
        produced, not expected:
          item_id  num_orders
                2           1
    Ran 1 test(s): 0 passed, 1 failed
    ");

    // A failing test stops a plan before anything is planned or built.
    let out = s
        .lake()
        .args(["plan", "--auto-apply", "--execution-time", EXEC])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot plan: 1 of 1 unit test(s) failed"),
        "{}",
        stderr(&out)
    );
    assert!(!s.project.join("db.db").exists(), "nothing was built");
    let out = s
        .lake()
        .args([
            "plan",
            "--auto-apply",
            "--skip-tests",
            "--execution-time",
            EXEC,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn fixtures_from_rows_csv_and_queries_with_types_partial_outputs_and_ctes() {
    let s = Scratch::init_with_unit_tests();
    s.write(
        "models/orders_by_day.sql",
        "MODEL (name demo.orders_by_day, kind FULL);\n\
         WITH daily AS (\n  SELECT event_date, count(*) AS orders, max(note) AS note\n  FROM demo.incremental_model\n  GROUP BY event_date\n)\n\
         SELECT d.event_date, d.orders, d.note, s.item_id AS first_item\nFROM daily AS d\nLEFT JOIN demo.seed_model AS s ON s.id = d.orders\n",
    );
    s.write(
        "tests/test_orders_by_day.yaml",
        "test_rows_and_csv:\n  model: demo.orders_by_day\n  inputs:\n    demo.incremental_model:\n      columns:\n        note: VARCHAR\n      rows:\n      - {id: 1, item_id: 1, event_date: 2024-01-01}\n      - {id: 2, item_id: 1, event_date: 2024-01-01, note: x}\n      - {id: 3, item_id: 2, event_date: 2024-01-02}\n    demo.seed_model:\n      format: csv\n      rows: |\n        id,item_id,event_date\n        1,10,2024-01-01\n        2,20,2024-01-01\n  outputs:\n    query:\n      rows:\n      - {event_date: 2024-01-01, orders: 2, note: x, first_item: 20}\n      - {event_date: 2024-01-02, orders: 1, first_item: 10}\n    ctes:\n      daily:\n        partial: true\n        rows:\n        - {event_date: 2024-01-01, orders: 2}\n        - {event_date: 2024-01-02, orders: 1}\n\
         test_query_input_partial:\n  model: demo.orders_by_day\n  inputs:\n    demo.incremental_model:\n      query: SELECT 1 AS id, 1 AS item_id, DATE '2024-03-01' AS event_date, 'q' AS note\n    demo.seed_model:\n      rows: []\n      columns: {id: INT, item_id: INT, event_date: DATE}\n  outputs:\n    query:\n      partial: true\n      rows:\n      - {orders: 1, first_item: null}\n",
    );
    let out = lake_test(&s, &["tests/test_orders_by_day.yaml"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        "✔ tests/test_orders_by_day.yaml::test_rows_and_csv\n✔ tests/test_orders_by_day.yaml::test_query_input_partial\nRan 2 test(s): 2 passed, 0 failed\n"
    );

    // Without `partial`, an omitted output column is expected to be NULL.
    let strict = s.read("tests/test_orders_by_day.yaml").replace(
        "      partial: true\n      rows:\n      - {orders: 1",
        "      rows:\n      - {orders: 1",
    );
    s.write("tests/test_orders_by_day.yaml", &strict);
    let out = lake_test(&s, &["test_query_input_partial"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("query: 1 expected row(s) missing, 1 unexpected row(s)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn vars_set_the_interval_of_an_incremental_model() {
    let s = Scratch::init_with_unit_tests();
    s.write(
        "tests/test_incremental.yaml",
        "test_one_day:\n  model: demo.incremental_model\n  vars:\n    start: 2024-01-02\n    end: 2024-01-02\n  inputs:\n    demo.seed_model:\n      rows:\n      - {id: 1, item_id: 1, event_date: 2024-01-01}\n      - {id: 2, item_id: 1, event_date: 2024-01-02}\n      - {id: 3, item_id: 2, event_date: 2024-01-03}\n  outputs:\n    query:\n    - {id: 2, item_id: 1, event_date: 2024-01-02}\n",
    );
    let out = lake_test(&s, &["test_one_day"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn bad_tests_say_what_is_wrong() {
    let s = Scratch::init_with_unit_tests();
    s.write(
        "tests/test_bad.yaml",
        "test_missing_input:\n  model: demo.full_model\n  inputs: {}\n  outputs:\n    query: []\ntest_unknown_column:\n  model: demo.full_model\n  inputs:\n    demo.incremental_model:\n      rows: [{id: 1, item_id: 1}]\n  outputs:\n    query: [{item_id: 1, orders: 1}]\n",
    );
    let out = lake_test(&s, &["tests/test_bad.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("test_missing_input (demo.full_model): test `test_missing_input` gives no rows for `demo.incremental_model`"), "{text}");
    assert!(
        text.contains("expected column `orders` is not in the output (query)"),
        "{text}"
    );

    s.write(
        "tests/test_bad.yaml",
        "test_x:\n  model: demo.full_model\n  outputs: [unclosed\n",
    );
    let out = lake_test(&s, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("tests/test_bad.yaml:4:1: cannot read the test file"),
        "{}",
        stderr(&out)
    );

    let out = lake_test(&s, &["no_such_test"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn create_test_writes_a_passing_test_from_live_data() {
    let s = Scratch::init();
    s.apply(EXEC);
    let create = |extra: &[&str]| {
        s.lake()
            .args([
                "create-test",
                "demo.full_model",
                "--query",
                "demo.incremental_model",
            ])
            .arg("SELECT * FROM demo.incremental_model WHERE id < 5")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = create(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = s.read("tests/test_full_model.yaml");
    assert!(written.starts_with("test_full_model:\n  model: demo.full_model\n  inputs:\n    demo.incremental_model:\n      rows:\n      - id: 1\n"), "{written}");
    assert!(
        written.contains("      columns:\n        id: INTEGER\n"),
        "{written}"
    );
    assert!(
        written.contains(
            "  outputs:\n    query:\n      rows:\n      - item_id: 1\n        num_orders: 2\n"
        ),
        "{written}"
    );
    let out = lake_test(&s, &[]);
    assert!(out.status.success(), "{}", stdout(&out));

    // An existing test is kept unless --overwrite.
    let out = create(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--overwrite"), "{}", stderr(&out));
    assert!(create(&["--overwrite"]).status.success());
}

/// SQLMesh's create-test options: `--name` names the test and its file, `--var` sets a variable the model
/// reads, `--include-ctes` writes each CTE's rows; the written test passes.
#[test]
fn create_test_takes_a_name_vars_and_ctes() {
    let s = Scratch::init();
    s.write(
        "models/full_model.sql",
        "MODEL (name demo.full_model, kind FULL);\n\
         WITH small AS (SELECT id, item_id FROM demo.incremental_model WHERE id <= @VAR('max_id', 100))\n\
         SELECT item_id, COUNT(*) AS num_orders FROM small GROUP BY item_id\n",
    );
    s.apply(EXEC);
    let out = s
        .lake()
        .args([
            "create-test",
            "demo.full_model",
            "--name",
            "test_small_items",
        ])
        .args(["--query", "demo.incremental_model"])
        .arg("SELECT * FROM demo.incremental_model WHERE id < 5")
        .args(["--var", "max_id", "2", "--include-ctes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("tests/test_small_items.yaml"),
        "{}",
        stdout(&out)
    );
    let written = s.read("tests/test_small_items.yaml");
    assert!(written.starts_with("test_small_items:\n"), "{written}");
    assert!(written.contains("    max_id: '2'\n"), "{written}");
    assert!(
        written.contains("    ctes:\n      small:\n        rows:\n        - id: 1\n"),
        "{written}"
    );
    // Only ids 1 and 2 pass the variable's filter: one row per item among them.
    assert!(!written.contains("id: 3\n          item_id"), "{written}");
    let out = lake_test(&s, &["test_small_items"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 passed"), "{}", stdout(&out));
}

/// Fixture rows are typed like the upstream model, as SQLMesh types them: every column of it (NULL where
/// the test omits one) with the binder's types, so YAML numbers are DOUBLE where the upstream's are (a
/// public jaffle-shop test compares 31.0 with 10.33 × 3 within 0.01, true only in floating point).
#[test]
fn fixture_rows_take_the_upstream_columns_and_types() {
    let s = Scratch::init();
    s.write(
        "models/payments.sql",
        "MODEL (name demo.payments, kind FULL);\n\
         SELECT 1 AS order_id, 31.0::DOUBLE AS amount, 10.33::DOUBLE AS a, 10.33::DOUBLE AS b,\n\
         10.33::DOUBLE AS c, 0.0::DOUBLE AS d, 'card' AS method\n",
    );
    s.write(
        "models/payment_checks.sql",
        "MODEL (name demo.payment_checks, kind FULL);\n\
         SELECT order_id, ABS(amount - (a + b + c + d)) < 0.01 AS amounts_match, method IS NULL AS no_method\n\
         FROM demo.payments\n",
    );
    s.write(
        "tests/test_payment_checks.yaml",
        "test_payment_checks:\n  model: demo.payment_checks\n  inputs:\n    demo.payments:\n      rows:\n\
         \x20       - order_id: 1\n          amount: 31.0\n          a: 10.33\n          b: 10.33\n          c: 10.33\n          d: 0\n\
         \x20 outputs:\n    query:\n      rows:\n        - order_id: 1\n          amounts_match: true\n          no_method: true\n",
    );
    let out = lake_test(&s, &["tests/test_payment_checks.yaml"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
