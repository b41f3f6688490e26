//! Bad input gives a located, readable error and a meaningful exit code, never a panic.

use crate::common::{Scratch, stderr};

fn failing(s: &Scratch, args: &[&str]) -> (i32, String) {
    let out = s.lake().args(args).output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

#[test]
fn cycle_names_the_path_and_the_closing_reference() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/a.sql",
        "MODEL (name shop.a, kind FULL);\nSELECT * FROM shop.c\n",
    );
    s.write(
        "models/b.sql",
        "MODEL (name shop.b, kind FULL);\nSELECT * FROM shop.a\n",
    );
    s.write(
        "models/c.sql",
        "MODEL (name shop.c, kind FULL);\nSELECT *\nFROM shop.b\n",
    );
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("cycle", err);
}

#[test]
fn unknown_reference_is_located_with_a_hint() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/orders.sql",
        "MODEL (name shop.orders, kind FULL);\nSELECT 1 AS id\n",
    );
    s.write(
        "models/report.sql",
        "MODEL (\n  name shop.report,\n  kind FULL\n);\n\nSELECT o.id\nFROM shop.order AS o\n",
    );
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("unknown_reference", err);
}

#[test]
fn malformed_model_block_is_located() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/bad.sql",
        "MODEL (\n  name shop.bad\n  kind FULL\n);\nSELECT 1\n",
    );
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("malformed_block", err);
}

#[test]
fn unknown_property_suggests_the_right_one() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/bad.sql",
        "MODEL (\n  name shop.bad,\n  kind FULL,\n  gran id\n);\nSELECT 1 AS id\n",
    );
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!("unknown_property", err);
}

#[test]
fn query_syntax_error_is_located_in_the_file() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/bad.sql",
        "MODEL (name shop.bad, kind FULL);\n\nSELECT a,, b\nFROM t\n",
    );
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    assert!(err.contains("models/bad.sql:3:"), "{err}");
    assert!(
        err.contains("cannot parse the query of `shop.bad`"),
        "{err}"
    );
}

#[test]
fn several_broken_files_are_reported_together() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/a.sql",
        "MODEL (name shop.a, kind NOPE);\nSELECT 1\n",
    );
    s.write("models/b.sql", "SELECT 1\n");
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    assert!(err.contains("2 errors in the project"), "{err}");
    assert!(err.contains("models/a.sql:1:"), "{err}");
    assert!(err.contains("models/b.sql:1:1"), "{err}");
}

#[test]
fn bad_config_is_located_and_unknown_keys_are_reported() {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "model_defaults:\n  dialect: duckdb\ngatways:\n  local: {}\n",
    );
    s.write(
        "models/a.sql",
        "MODEL (name shop.a, kind FULL);\nSELECT 1 AS x\n",
    );
    // A misspelt top-level key stops the command, located, with the right name.
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("config.yaml:3:1: unknown key `gatways`"),
        "{err}"
    );
    assert!(err.contains("did you mean `gateways`?"), "{err}");
    s.write("config.yaml", "model_defualts:\n  dialect: duckdb\n");
    let (_, err) = failing(&s, &["plan"]);
    assert!(err.contains("did you mean `model_defaults`?"), "{err}");

    // A nested one is a located warning.
    s.write(
        "config.yaml",
        "model_defaults:\n  dialect: duckdb\n  dialectt: x\n",
    );
    let out = s.lake().args(["plan"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("config.yaml:3:3: unknown key `model_defaults.dialectt` is ignored"),
        "{}",
        stderr(&out)
    );

    s.write(
        "config.yaml",
        "model_defaults:\n  dialect: duckdb\n  cron: [1,\n",
    );
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    assert!(err.contains("config.yaml:"), "{err}");
}

#[test]
fn missing_project_and_bad_usage_exit_2_or_1() {
    let s = Scratch::empty();
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    assert!(err.contains("no config.yaml"), "{err}");
    assert!(err.contains("lake init"), "{err}");

    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    let (code, err) = failing(&s, &["plan", "dev-alice!"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid environment name"), "{err}");
    let (code, _) = failing(&s, &["plan", "--no-such-flag"]);
    assert_eq!(code, 2);
}

#[test]
fn unsupported_kind_is_refused_before_any_work() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/inc.sql",
        "MODEL (name shop.inc, kind MANAGED);\nSELECT 1 AS id\n",
    );
    let (code, err) = failing(&s, &["plan", "--auto-apply"]);
    assert_eq!(code, 1);
    assert!(err.contains("MANAGED"), "{err}");
    assert!(err.contains("not supported yet"), "{err}");
    assert!(!s.project.join("db.db").exists(), "the engine was touched");
}

#[test]
fn missing_seed_file_is_located() {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/s.sql",
        "MODEL (\n  name shop.s,\n  kind SEED (path '../seeds/nope.csv')\n);\n",
    );
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    assert!(err.contains("models/s.sql:3:20"), "{err}");
    assert!(err.contains("nope.csv does not exist"), "{err}");
}

/// A time column format chrono cannot write used to pass the load and panic in the middle of the build, when
/// the first batch formatted its range.
#[test]
fn an_invalid_time_column_format_is_a_located_load_error() {
    let s = Scratch::empty();
    s.write(
        "config.yaml",
        "model_defaults:\n  dialect: duckdb\n  start: 2024-01-01\n",
    );
    s.write(
        "models/events.sql",
        "MODEL (name shop.events, kind INCREMENTAL_BY_TIME_RANGE (time_column (ds, '%Q%Y')), cron '@daily');\n\
         SELECT strftime(DATE '2024-01-01', '%Y%m%d') AS ds\n",
    );
    let (code, err) = failing(
        &s,
        &["plan", "--auto-apply", "--execution-time", "2024-01-03"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("models/events.sql:1:") && err.contains("`%Q%Y` is not a time format"),
        "{err}"
    );
}

/// A mistyped `-p` says which folder is missing and how to get a project, with a usage exit code.
#[test]
fn a_missing_project_folder_says_so() {
    let s = Scratch::empty();
    let out = crate::common::lake(s.dir.path())
        .args(["-p", "nosuchdir", "plan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("there is no project folder `nosuchdir`") && err.contains("lake init"),
        "{err}"
    );
}

/// A mistyped environment is an error that names the nearest one, for `diff` and `audit -e` as for `run`.
#[test]
fn a_mistyped_environment_suggests_the_nearest_one() {
    let s = Scratch::init();
    s.apply(crate::common::EXEC);
    s.apply_env("dev_alice", crate::common::EXEC);
    for args in [
        &["diff", "dev_alise"][..],
        &["audit", "--env", "dev_alise"][..],
    ] {
        let out = s.lake().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("environment `dev_alise` does not exist")
                && err.contains("did you mean `dev_alice`?"),
            "{args:?}: {err}"
        );
    }
    // A project not planned yet still diffs against prod.
    let fresh = Scratch::init();
    let out = fresh.lake().args(["diff"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// A misspelt SELECT is named as such, not reported as a model without a query.
#[test]
fn a_misspelt_select_is_located_with_the_keyword() {
    let s = Scratch::init();
    let model = s
        .read("models/full_model.sql")
        .replacen("SELECT", "SELEC", 1);
    s.write("models/full_model.sql", &model);
    let (code, err) = failing(&s, &["plan"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("models/full_model.sql:9:1: model `demo.full_model` has no query: `SELEC` is not a SQL keyword"),
        "{err}"
    );
    assert!(err.contains("did you mean `SELECT`?"), "{err}");
}

/// A model typed without its schema gets the full name.
#[test]
fn a_model_named_without_its_schema_gets_the_full_name() {
    let s = Scratch::init();
    let (code, err) = failing(&s, &["render", "full_model"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did you mean `demo.full_model`?"), "{err}");
}

/// DuckDB's complaint about a model's query points into the model's file (not the rendered SQL), once,
/// without the C API's "Error code 1: Unknown error code".
#[test]
fn engine_errors_are_located_in_the_model_file_and_said_once() {
    let s = Scratch::init();
    assert!(s.apply(crate::common::EXEC).status.success());
    let model = s
        .read("models/full_model.sql")
        .replace("COUNT(DISTINCT id)", "COUNT(DISTINCT idd)");
    s.write("models/full_model.sql", &model);
    for args in [
        &["plan", "dev", "--auto-apply"][..],
        &["evaluate", "demo.full_model"][..],
    ] {
        let (code, _) = failing(&s, args);
        assert_eq!(code, 1, "{args:?}");
        let err = crate::common::stderr_words(&s.lake().args(args).output().unwrap());
        assert!(
            err.contains("models/full_model.sql:11:18: model `demo.full_model` failed: Binder Error: Referenced column \"idd\" not found"),
            "{args:?}: {err}"
        );
        assert!(err.contains("Candidate bindings: \"id\""), "{err}");
        assert!(!err.contains("Error code 1"), "{err}");
    }
    let (code, err) = failing(&s, &["fetchdf", "select nope from demo.full_model"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.matches("Referenced column \"nope\"").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("Error code 1"), "{err}");
}

/// `--config FILE` reads another configuration file of the project; a missing one is a usage error.
#[test]
fn config_names_another_configuration_file() {
    let s = Scratch::init();
    let config = s.read("config.yaml");
    s.write(
        "ci.yaml",
        &format!("{config}\nvariables:\n  from_ci: 'ci'\n"),
    );
    s.write(
        "models/ci_only.sql",
        "MODEL (name demo.ci_only, kind VIEW);\nSELECT @VAR('from_ci', 'default') AS source\n",
    );
    let render = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["render", "demo.ci_only"]);
        crate::common::stdout(&s.lake().args(&args).output().unwrap())
    };
    assert!(render(&[]).contains("'default'"), "{}", render(&[]));
    assert!(
        render(&["--config", "ci.yaml"]).contains("'ci'"),
        "{}",
        render(&["--config", "ci.yaml"])
    );
    let (code, err) = failing(&s, &["--config", "nope.yaml", "info"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("there is no configuration file"), "{err}");
}
