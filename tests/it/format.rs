//! `lake format`: files rewritten in the canonical style, `--check` for CI, and formatting that never
//! changes what a model means (no plan change afterwards).

use crate::common::{EXEC, Scratch, stdout};

const MESSY_MODEL: &str = "-- Orders per item, for the dashboard.
model (name demo.full_model, kind full, cron '@daily', grain item_id, audits (assert_positive_order_ids),);

select item_id, -- the grain
  count(distinct id) as num_orders /* distinct orders */
from demo.incremental_model where id > 0 and item_id between 0 and @VAR('max_item', 100)
group by item_id order by item_id
";

const CANONICAL_MODEL: &str = "-- Orders per item, for the dashboard.
MODEL (
  name demo.full_model,
  kind full,
  cron '@daily',
  grain item_id,
  audits (assert_positive_order_ids)
);

SELECT
  item_id, -- the grain
  count(DISTINCT id) AS num_orders /* distinct orders */
FROM demo.incremental_model
WHERE
  id > 0
  AND item_id BETWEEN 0 AND @VAR('max_item', 100)
GROUP BY
  item_id
ORDER BY
  item_id
";

#[test]
fn check_reports_then_format_rewrites_without_changing_the_plan() {
    let s = Scratch::init();
    s.write("models/full_model.sql", MESSY_MODEL);
    assert!(s.apply(EXEC).status.success());

    let check = s.lake().args(["format", "--check"]).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
    insta::assert_snapshot!("check", stdout(&check));
    assert_eq!(
        s.read("models/full_model.sql"),
        MESSY_MODEL,
        "--check changes nothing"
    );

    let format = s.lake().arg("format").output().unwrap();
    assert!(format.status.success(), "{}", stdout(&format));
    assert_eq!(s.read("models/full_model.sql"), CANONICAL_MODEL);

    let again = s.lake().args(["format", "--check"]).output().unwrap();
    assert!(again.status.success());
    assert!(stdout(&again).contains("All 5 file(s) are formatted."));
    // Layout, keyword case and comments are not changes: nothing to plan, nothing to rebuild.
    s.assert_no_changes();
}

#[test]
fn a_new_project_is_already_formatted() {
    let s = Scratch::init_with_unit_tests();
    let out = s.lake().args(["format", "--check"]).output().unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_statement_that_does_not_parse_is_kept_and_reported() {
    let s = Scratch::init();
    let broken = "MODEL (name demo.odd, kind VIEW);\n\nselect 1 as x fro nowhere where\n";
    s.write("models/odd.sql", broken);
    let out = s
        .lake()
        .args(["format", "--check", "--json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let odd = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "models/odd.sql")
        .unwrap();
    assert_eq!(odd["changed"], true, "the MODEL block is still formatted");
    let kept = odd["kept"][0].as_str().unwrap();
    assert!(
        kept.starts_with("line 3: statement kept as written: it does not parse"),
        "{kept}"
    );
    assert!(s.lake().arg("format").output().unwrap().status.success());
    assert_eq!(
        s.read("models/odd.sql"),
        "MODEL (\n  name demo.odd,\n  kind VIEW\n);\n\nselect 1 as x fro nowhere where\n"
    );
}
