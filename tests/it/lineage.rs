//! `lake lineage`: column lineage traced from the models' rendered queries, on the example and the
//! demo.

use crate::common::{Scratch, stderr, stdout};

/// The example: a parent with two children, one reading `a`, the other `c` and filtering on `b`.
fn parent_and_children() -> Scratch {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write(
        "models/parent.sql",
        "MODEL (name s.parent, kind FULL);\nSELECT 1 AS id, 2 AS a, 20 AS b, 3 AS c\n",
    );
    s.write(
        "models/reads_a.sql",
        "MODEL (name s.reads_a, kind FULL);\nSELECT a, COUNT(*) AS n FROM s.parent GROUP BY a\n",
    );
    s.write(
        "models/reads_c.sql",
        "MODEL (name s.reads_c, kind FULL);\nSELECT id, c FROM s.parent WHERE b > 10\n",
    );
    s.write(
        "models/everything.sql",
        "MODEL (name s.everything, kind VIEW);\nSELECT * EXCLUDE (b) FROM s.parent\n",
    );
    s
}

fn lineage(s: &Scratch, args: &[&str]) -> std::process::Output {
    let mut all = vec!["lineage"];
    all.extend_from_slice(args);
    s.lake().args(&all).output().expect("lake")
}

#[test]
fn downstream_of_a_column_lists_exactly_the_columns_that_read_it() {
    let s = parent_and_children();
    let out = lineage(&s, &["s.parent.c", "--downstream"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "s.parent.c\n├── s.reads_c.c (copied)\n└── s.everything.c (copied)\n"
    );
    let out = lineage(&s, &["s.parent.b", "--downstream"]);
    assert_eq!(
        stdout(&out),
        "s.parent.b\n└── s.reads_c (its rows: filtered, joined or grouped by it)\n"
    );
}

#[test]
fn upstream_of_a_model_shows_each_column_and_what_selects_its_rows() {
    let s = parent_and_children();
    let out = lineage(&s, &["s.reads_a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "s.reads_a.a\n├── s.parent.a (copied)\n└── s.parent.a (selects rows)\n\
         s.reads_a.n\n└── s.parent.a (selects rows)\n"
    );
    // The star expanded from the parent's traced columns, EXCLUDE applied.
    let out = lineage(&s, &["s.everything", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let columns: Vec<&str> = doc
        .as_array()
        .expect("roots")
        .iter()
        .filter_map(|n| n["column"].as_str())
        .collect();
    assert_eq!(columns, ["id", "a", "c"]);
    assert_eq!(doc[2]["children"][0]["use"]["how"], "copied");
}

#[test]
fn the_demo_traces_to_its_seed_and_depth_stops_the_walk() {
    let s = Scratch::init();
    let out = lineage(&s, &["demo.full_model.num_orders"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "demo.full_model.num_orders\n├── demo.incremental_model.id (aggregate)\n│   └── \
         demo.seed_model.id (copied) [seed]\n└── demo.incremental_model.item_id (selects rows)\n"
    );
    let out = lineage(&s, &["demo.full_model.num_orders", "--depth", "1"]);
    assert!(!stdout(&out).contains("seed_model"), "{}", stdout(&out));
}

#[test]
fn an_unknown_model_or_column_is_a_usage_error_with_the_nearest_name() {
    let s = Scratch::init();
    let out = lineage(&s, &["demo.full_model.num_order"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("did you mean `num_orders`?"),
        "{}",
        stderr(&out)
    );
    let out = lineage(&s, &["demo.ful_model.num_orders"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("demo.full_model"), "{}", stderr(&out));
}

#[test]
fn an_environment_shows_the_lineage_of_the_versions_it_has() {
    let s = parent_and_children();
    s.apply(crate::common::EXEC);
    // The files now read `a` where prod's version reads `c`.
    s.write(
        "models/reads_c.sql",
        "MODEL (name s.reads_c, kind FULL);\nSELECT id, a AS c FROM s.parent WHERE b > 10\n",
    );
    let files = stdout(&lineage(&s, &["s.reads_c.c"]));
    assert_eq!(
        files,
        "s.reads_c.c\n├── s.parent.a (renamed)\n└── s.parent.b (selects rows)\n"
    );
    let out = lineage(&s, &["s.reads_c.c", "--environment", "prod"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "s.reads_c.c\n├── s.parent.c (copied)\n└── s.parent.b (selects rows)\n"
    );
    // A star over an environment's model expands from its recorded query too.
    let out = lineage(&s, &["s.everything", "--env", "prod", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc.as_array().map(Vec::len), Some(3), "{doc}");

    let out = lineage(&s, &["s.reads_c", "--environment", "prd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("environment `prd` does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("prod"), "{}", stderr(&out));
    let out = lineage(&s, &["s.not_there", "--environment", "prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("model `s.not_there` not found in environment `prod`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dot_and_mermaid_draw_the_same_edges() {
    let s = Scratch::init();
    let dot = stdout(&lineage(
        &s,
        &["demo.full_model.num_orders", "--format", "dot"],
    ));
    assert!(
        dot.contains(
            "\"demo.incremental_model.id\" -> \"demo.full_model.num_orders\" [label=\"aggregate\"];"
        ),
        "{dot}"
    );
    assert!(dot.starts_with("digraph lineage {"), "{dot}");
    let mermaid = stdout(&lineage(
        &s,
        &["demo.full_model.num_orders", "--format", "mermaid"],
    ));
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(
        mermaid.contains(
            "c0[\"demo.incremental_model.id\"] -->|aggregate| c1[\"demo.full_model.num_orders\"]"
        ),
        "{mermaid}"
    );
}
