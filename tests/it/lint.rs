//! `lake lint` and the linter before every plan: rules picked under `linter:`, column checks by DuckDB's
//! binder, located findings, `ignored_rules` per model, and a plan stopped by a lint error.

use crate::common::{EXEC, Scratch, stderr, stdout};

fn enable(s: &Scratch, rules: &str) {
    let config = s.read("config.yaml");
    s.write("config.yaml", &format!("{config}\nlinter:\n{rules}\n"));
}

#[test]
fn column_rules_are_checked_by_the_binder_and_located() {
    let s = Scratch::init();
    enable(
        &s,
        "  enabled: true\n  rules: [ambiguousorinvalidcolumn, invalidselectstarexpansion, noselectstar, noambiguousprojections]",
    );
    s.write(
        "models/typo.sql",
        "MODEL (name demo.typo, kind FULL);\n\nSELECT\n  item_id,\n  num_ordrs AS n\nFROM demo.full_model\n",
    );
    s.write(
        "models/ambiguous.sql",
        "MODEL (name demo.ambiguous, kind FULL);\n\nSELECT a.item_id, num_orders AS n, count(*)\nFROM demo.full_model AS a\nJOIN demo.full_model AS b ON a.item_id = b.item_id\nGROUP BY 1, 2\n",
    );
    // Reads a typo'd model: its columns are unknown, so its `*` cannot be expanded.
    s.write(
        "models/star.sql",
        "MODEL (name demo.star, kind VIEW);\n\nSELECT * FROM demo.typo\n",
    );
    // An expandable `*` breaks only noselectstar; the model opts out of it.
    s.write(
        "models/fine_star.sql",
        "MODEL (name demo.fine_star, kind VIEW, ignored_rules [noselectstar]);\n\nSELECT * FROM demo.full_model\n",
    );
    let out = s.lake().arg("lint").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    insta::assert_snapshot!("column_rules", stdout(&out));
    assert!(
        stderr(&out).contains("the linter found 5 error(s)"),
        "{}",
        stderr(&out)
    );

    let json = s
        .lake()
        .args(["lint", "--model", "demo.typo", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let violations = doc["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{doc}");
    assert_eq!(violations[0]["rule"], "ambiguousorinvalidcolumn");
    assert_eq!(violations[0]["line"], 5);
    assert_eq!(violations[0]["column"], 3);
    assert_eq!(violations[0]["severity"], "error");
}

#[test]
fn a_lint_error_stops_the_plan_and_warnings_do_not() {
    let s = Scratch::init();
    enable(
        &s,
        "  enabled: true\n  rules: ALL\n  warn_rules: [nomissingowner, nomissingunittest, nomissingaudits]",
    );
    s.write(
        "models/star.sql",
        "MODEL (name demo.star, kind VIEW);\n\nSELECT * FROM demo.full_model\n",
    );
    let plan = || {
        s.lake()
            .args(["plan", "--auto-apply", "--execution-time", EXEC])
            .output()
            .unwrap()
    };
    let out = plan();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Linter errors for models/star.sql:"), "{err}");
    assert!(
        err.contains(" - noselectstar (models/star.sql:3:8)"),
        "{err}"
    );
    assert!(err.contains("the linter found 1 error(s)"), "{err}");
    assert!(!err.contains("models built"), "nothing was built: {err}");

    let skipped = s
        .lake()
        .args([
            "plan",
            "--auto-apply",
            "--skip-linter",
            "--execution-time",
            EXEC,
        ])
        .output()
        .unwrap();
    assert!(skipped.status.success(), "{}", stderr(&skipped));

    s.write(
        "models/star.sql",
        "MODEL (name demo.star, kind VIEW);\n\nSELECT item_id, num_orders FROM demo.full_model\n",
    );
    let out = plan();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Linter warnings for models/star.sql:"),
        "{err}"
    );
    assert!(
        err.contains(" - nomissingowner (models/star.sql:1:13)"),
        "{err}"
    );
}

#[test]
fn linter_configuration_is_checked_at_load_and_off_by_default() {
    let s = Scratch::init();
    let off = s.lake().arg("lint").output().unwrap();
    assert!(off.status.success());
    assert!(
        stderr(&off).contains("The linter is off"),
        "{}",
        stderr(&off)
    );

    enable(&s, "  enabled: true\n  rules: [noselectstr]");
    let out = s.lake().arg("lint").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "unknown linter rule `noselectstr` in `linter.rules`; did you mean `noselectstar`?"
        ),
        "{}",
        stderr(&out)
    );
}
