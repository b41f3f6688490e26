//! Column-aware plans: a child reading none of the columns a breaking change touches keeps its table, one
//! reading them (as output, filter, grouping or through `*`) is rebuilt, and every table then holds exactly
//! what a full rebuild gives (a property test over generated projects and edits).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use crate::common::{EXEC, Scratch, built_models, stderr, stdout};

const PARENT: &str = "MODEL (name s.parent, kind FULL);\n\
    SELECT id, a, b, c FROM (VALUES (1, 5, 20, 7), (2, 6, 5, 8), (3, 5, 30, 9)) AS t(id, a, b, c)\n";

/// The example: a parent with two children, one reading `a`, the other `c` and filtering on `b`.
fn parent_and_children() -> Scratch {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    s.write("models/parent.sql", PARENT);
    s.write(
        "models/reads_a.sql",
        "MODEL (name s.reads_a, kind FULL);\nSELECT a, COUNT(*) AS n FROM s.parent GROUP BY a\n",
    );
    s.write(
        "models/reads_c.sql",
        "MODEL (name s.reads_c, kind FULL);\nSELECT id, c FROM s.parent WHERE b > 10\n",
    );
    s.apply(EXEC);
    s
}

fn edit_parent(s: &Scratch, from: &str, to: &str) {
    let text = s.read("models/parent.sql");
    assert!(text.contains(from), "{text}");
    s.write("models/parent.sql", &text.replacen(from, to, 1));
}

/// The models a plan built, in name order (independent ones build concurrently).
fn built(out: &std::process::Output) -> Vec<String> {
    let mut names = built_models(out);
    names.sort();
    names
}

fn plan_dev(s: &Scratch) -> std::process::Output {
    s.apply_args(&[
        "plan",
        "dev",
        "--auto-apply",
        "--no-diff",
        "--execution-time",
        EXEC,
    ])
}

/// The plan printed `line` and built exactly `models`.
fn assert_plan(out: &std::process::Output, line: &str, models: &[&str]) {
    assert!(stdout(out).contains(line), "{}", stdout(out));
    assert_eq!(built(out), models);
}

#[test]
fn a_changed_column_rebuilds_only_the_children_that_read_it() {
    let s = parent_and_children();
    edit_parent(&s, "b, c FROM", "b, c * 10 AS c FROM");
    let out = plan_dev(&s);
    let text = stdout(&out);
    assert!(
        text.contains(
            "- `s__dev.parent` (Breaking: changed the expression of column `c`)\n  - columns: changed `c`\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "- `s__dev.reads_c` (Indirect Breaking) because of s__dev.parent\n  - columns: `c` reads changed `s.parent.c`\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "- `s__dev.reads_a` (Indirect Non-breaking: reads none of the changed columns) because of s__dev.parent\n"
        ),
        "{text}"
    );
    assert_eq!(built(&out), ["s__dev.parent", "s__dev.reads_c"]);
    assert_eq!(s.csv("SELECT * FROM s__dev.reads_c"), "id,c\n1,70\n3,90\n");
    assert_eq!(
        s.csv("SELECT * FROM s__dev.reads_a ORDER BY a"),
        "a,n\n5,2\n6,1\n"
    );
    // Promoting keeps prod's table of `reads_a` too: only what dev built is reused, nothing is rebuilt.
    let promoted = s.apply(EXEC);
    assert_eq!(built(&promoted), Vec::<String>::new());
    assert_eq!(s.csv("SELECT * FROM s.reads_c"), "id,c\n1,70\n3,90\n");
}

#[test]
fn a_filter_on_the_changed_column_or_a_star_over_the_parent_rebuilds_the_child() {
    let s = parent_and_children();
    s.write(
        "models/star.sql",
        "MODEL (name s.star, kind FULL);\nSELECT * FROM s.parent\n",
    );
    s.apply(EXEC);
    edit_parent(&s, "a, b, c FROM", "a, b + 1 AS b, c FROM");
    let out = plan_dev(&s);
    let text = stdout(&out);
    assert!(
        text.contains(
            "- `s__dev.reads_c` (Indirect Breaking: selects its rows by `s.parent.b`, which changed)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "- `s__dev.star` (Indirect Breaking: reads `*`, whose columns follow `s.parent`'s)"
        ),
        "{text}"
    );
    assert_eq!(
        built(&out),
        ["s__dev.parent", "s__dev.reads_c", "s__dev.star"]
    );
}

#[test]
fn a_changed_row_filter_rebuilds_every_child() {
    let s = parent_and_children();
    edit_parent(&s, "AS t(id, a, b, c)", "AS t(id, a, b, c) WHERE id > 1");
    let out = plan_dev(&s);
    assert_plan(
        &out,
        "- `s__dev.reads_a` (Indirect Breaking) because of s__dev.parent\n",
        &["s__dev.parent", "s__dev.reads_a", "s__dev.reads_c"],
    );
    assert_eq!(
        s.csv("SELECT * FROM s__dev.reads_a ORDER BY a"),
        "a,n\n5,1\n6,1\n"
    );
}

#[test]
fn column_aware_false_in_config_rebuilds_every_child() {
    let s = parent_and_children();
    s.write(
        "config.yaml",
        "model_defaults:\n  dialect: duckdb\nplan:\n  column_aware: false\n",
    );
    edit_parent(&s, "b, c FROM", "b, c * 10 AS c FROM");
    let out = plan_dev(&s);
    assert_plan(
        &out,
        "- `s__dev.reads_a` (Indirect Breaking) because of s__dev.parent\n",
        &["s__dev.parent", "s__dev.reads_a", "s__dev.reads_c"],
    );
}

/// A child changed itself (a new column: non-breaking) and through its parent: it is rebuilt with the
/// parent's new values, so its own children must be too. They used to keep tables built from the old ones.
#[test]
fn a_non_breaking_child_of_a_breaking_change_passes_the_change_on() {
    let s = parent_and_children();
    s.write(
        "models/grand.sql",
        "MODEL (name s.grand, kind FULL);\nSELECT a, n FROM s.reads_a\n",
    );
    s.apply(EXEC);
    edit_parent(&s, "a, b, c FROM", "a * 10 AS a, b, c FROM");
    s.write(
        "models/reads_a.sql",
        "MODEL (name s.reads_a, kind FULL);\nSELECT a, COUNT(*) AS n, 1 AS x FROM s.parent GROUP BY a\n",
    );
    let out = plan_dev(&s);
    assert!(
        stdout(&out).contains("- `s__dev.grand` (Indirect Breaking) because of"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        s.csv("SELECT * FROM s__dev.grand ORDER BY a"),
        "a,n\n50,2\n60,1\n"
    );
}

#[test]
fn the_json_plan_names_the_columns_of_each_change() {
    let s = parent_and_children();
    edit_parent(
        &s,
        "a, b, c FROM",
        "a, b, CAST(c AS BIGINT) AS c, a + b AS d FROM",
    );
    let out = s
        .lake()
        .args(["plan", "dev", "--format", "json", "--execution-time", EXEC])
        .output()
        .expect("lake");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json plan");
    let changes = doc["changes"].as_array().expect("changes");
    let of = |name: &str| {
        changes
            .iter()
            .find(|c| c["model"] == name)
            .unwrap_or_else(|| panic!("{name} in {doc}"))
    };
    assert_eq!(
        of("s.parent")["columns"],
        serde_json::json!({"added": ["d"], "removed": [], "retyped": [], "changed": ["c"], "reads_changed": []})
    );
    assert_eq!(
        of("s.reads_c")["columns"]["reads_changed"],
        serde_json::json!([{"column": "c", "upstream": ["s.parent.c"]}])
    );
    assert_eq!(of("s.reads_a")["category"], "indirect_non_breaking");
    assert_eq!(of("s.reads_a")["columns"], serde_json::Value::Null);
}

// The property: after any sequence of edits, planned column-aware into dev and then promoted, every table
// holds exactly what building the edited project from nothing gives.

/// A child of the parent, each shape reading the parent's columns differently.
#[derive(Debug, Clone)]
enum Child {
    GroupBy(usize),
    Filter { out: usize, by: usize, above: i64 },
    Sum(usize),
    Star,
    Join { left: usize, right: usize },
    Distinct(usize),
    TopTwo { out: usize, by: usize },
    Running(usize),
    Combined(usize, usize),
}

const COLUMNS: [&str; 3] = ["a", "b", "c"];

impl Child {
    /// Its query, and the name of its first output column (which a grandchild reads).
    fn query(&self) -> (String, &'static str) {
        let col = |i: &usize| COLUMNS[*i];
        match self {
            Child::GroupBy(c) => (
                format!(
                    "SELECT {0}, COUNT(*) AS n FROM s.parent GROUP BY {0}",
                    col(c)
                ),
                COLUMNS[*c],
            ),
            Child::Filter { out, by, above } => (
                format!(
                    "SELECT id, {} AS v FROM s.parent WHERE {} > {above}",
                    col(out),
                    col(by)
                ),
                "id",
            ),
            Child::Sum(c) => (
                format!("SELECT SUM({}) AS total FROM s.parent", col(c)),
                "total",
            ),
            Child::Star => ("SELECT * FROM s.parent".into(), "id"),
            Child::Join { left, right } => (
                format!(
                    "SELECT p.id, p.{} AS l, q.{} AS r FROM s.parent AS p JOIN s.src AS q ON p.id = q.id",
                    col(left),
                    col(right)
                ),
                "id",
            ),
            Child::Distinct(c) => (
                format!("SELECT DISTINCT {} AS v FROM s.parent", col(c)),
                "v",
            ),
            Child::TopTwo { out, by } => (
                format!(
                    "SELECT id, {} AS v FROM s.parent ORDER BY {}, id LIMIT 2",
                    col(out),
                    col(by)
                ),
                "id",
            ),
            Child::Running(c) => (
                format!(
                    "SELECT id, SUM({}) OVER (ORDER BY id) AS running FROM s.parent",
                    col(c)
                ),
                "id",
            ),
            Child::Combined(x, y) => (
                format!("SELECT id, {} + {} AS v FROM s.parent", col(x), col(y)),
                "id",
            ),
        }
    }
}

/// One edit of the parent (or of a child), planned into dev on its own.
#[derive(Debug, Clone)]
enum Edit {
    /// `column := src.column * factor + offset`.
    Recompute {
        column: usize,
        offset: i64,
    },
    Retype(usize),
    AddColumn,
    RowFilter(i64),
    /// A child gets a new column of its own.
    ChildAddsColumn(usize),
}

#[derive(Debug, Clone)]
struct Generated {
    rows: Vec<[i64; 3]>,
    children: Vec<(Child, Option<bool>)>,
    edits: Vec<Edit>,
}

fn child() -> impl Strategy<Value = Child> {
    let c = || 0..3usize;
    prop_oneof![
        c().prop_map(Child::GroupBy),
        (c(), c(), 0..20i64).prop_map(|(out, by, above)| Child::Filter { out, by, above }),
        c().prop_map(Child::Sum),
        Just(Child::Star),
        (c(), c()).prop_map(|(left, right)| Child::Join { left, right }),
        c().prop_map(Child::Distinct),
        (c(), c()).prop_map(|(out, by)| Child::TopTwo { out, by }),
        c().prop_map(Child::Running),
        (c(), c()).prop_map(|(x, y)| Child::Combined(x, y)),
    ]
}

fn edit(children: usize) -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (0..3usize, 1..5i64).prop_map(|(column, offset)| Edit::Recompute { column, offset }),
        1 => (0..3usize).prop_map(Edit::Retype),
        1 => Just(Edit::AddColumn),
        1 => (0..3i64).prop_map(Edit::RowFilter),
        1 => (0..children).prop_map(Edit::ChildAddsColumn),
    ]
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        proptest::collection::vec(proptest::array::uniform3(0..15i64), 3..7),
        proptest::collection::vec((child(), proptest::option::of(any::<bool>())), 2..6),
    )
        .prop_flat_map(|(rows, children)| {
            let n = children.len();
            proptest::collection::vec(edit(n), 1..4).prop_map(move |edits| Generated {
                rows: rows.clone(),
                children: children.clone(),
                edits,
            })
        })
}

/// The project's files after the first `edits` of `g`.
fn files(g: &Generated, edits: &[Edit]) -> Vec<(String, String)> {
    let values: Vec<String> = g
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| format!("({}, {}, {}, {})", i + 1, r[0], r[1], r[2]))
        .collect();
    let mut files = vec![(
        "models/src.sql".to_string(),
        format!(
            "MODEL (name s.src, kind FULL);\nSELECT id, a, b, c FROM (VALUES {}) AS t(id, a, b, c)\n",
            values.join(", ")
        ),
    )];
    let mut exprs = ["a".to_string(), "b".to_string(), "c".to_string()];
    let (mut extra, mut filter) = (String::new(), String::new());
    let mut child_extra = vec![false; g.children.len()];
    for e in edits {
        match e {
            Edit::Recompute { column, offset } => {
                exprs[*column] = format!("{} * 2 + {offset}", COLUMNS[*column]);
            }
            Edit::Retype(column) => {
                exprs[*column] = format!("CAST({} AS DOUBLE)", exprs[*column]);
            }
            Edit::AddColumn => extra = ", a + b AS d".into(),
            Edit::RowFilter(above) => filter = format!(" WHERE id > {above}"),
            Edit::ChildAddsColumn(i) => child_extra[*i] = true,
        }
    }
    let projection: Vec<String> = exprs
        .iter()
        .zip(COLUMNS)
        .map(|(e, c)| format!("{e} AS {c}"))
        .collect();
    files.push((
        "models/parent.sql".into(),
        format!(
            "MODEL (name s.parent, kind FULL);\nSELECT id, {}{extra} FROM s.src{filter}\n",
            projection.join(", ")
        ),
    ));
    for (i, (child, grandchild)) in g.children.iter().enumerate() {
        let (query, first) = child.query();
        let query = if child_extra[i] {
            query.replacen(" FROM s.parent", ", 42 AS own FROM s.parent", 1)
        } else {
            query
        };
        files.push((
            format!("models/child{i}.sql"),
            format!("MODEL (name s.child{i}, kind FULL);\n{query}\n"),
        ));
        let grand = match grandchild {
            None => continue,
            Some(true) => format!("SELECT * FROM s.child{i}"),
            Some(false) => format!("SELECT {first} AS v FROM s.child{i} WHERE {first} IS NOT NULL"),
        };
        files.push((
            format!("models/grand{i}.sql"),
            format!("MODEL (name s.grand{i}, kind FULL);\n{grand}\n"),
        ));
    }
    files
}

fn models_of(files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .map(|(path, _)| {
            path.trim_start_matches("models/")
                .trim_end_matches(".sql")
                .to_string()
        })
        .collect()
}

/// Every model's rows (and column names) in `schema`, sorted, one line per model.
fn contents(s: &Scratch, schema: &str, models: &[String]) -> String {
    let parts: Vec<String> = models
        .iter()
        .map(|m| {
            format!(
                "SELECT '{m}' AS model, (SELECT string_agg(CAST(t AS VARCHAR), ' | ' ORDER BY CAST(t AS VARCHAR)) FROM {schema}.{m} AS t) AS rows_held"
            )
        })
        .collect();
    s.csv(&format!("{} ORDER BY model", parts.join(" UNION ALL ")))
}

fn write_all(s: &Scratch, files: &[(String, String)]) {
    for (path, text) in files {
        s.write(path, text);
    }
}

fn run(s: &Scratch, args: &[&str]) -> Result<std::process::Output, TestCaseError> {
    let out = s.lake().args(args).output().expect("run lake");
    if !out.status.success() {
        return Err(TestCaseError::fail(format!(
            "lake {args:?} failed: {}",
            stderr(&out)
        )));
    }
    Ok(out)
}

/// Applies `g`'s edits one dev plan at a time, then promotes; after each, compares every table with a fresh
/// build of the same files. Returns how many children kept their tables.
fn column_aware_matches_a_full_rebuild(g: &Generated) -> Result<usize, TestCaseError> {
    let s = Scratch::empty();
    s.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
    write_all(&s, &files(g, &[]));
    run(&s, &["plan", "--auto-apply", "--execution-time", EXEC])?;
    let mut kept = 0;
    for n in 1..=g.edits.len() {
        let edited = files(g, &g.edits[..n]);
        write_all(&s, &edited);
        let plan = run(
            &s,
            &[
                "plan",
                "dev",
                "--auto-apply",
                "--no-diff",
                "--include-unmodified",
                "--execution-time",
                EXEC,
            ],
        )?;
        kept += stdout(&plan)
            .matches("reads none of the changed columns")
            .count();
        let fresh = Scratch::empty();
        fresh.write("config.yaml", "model_defaults:\n  dialect: duckdb\n");
        write_all(&fresh, &edited);
        run(&fresh, &["plan", "--auto-apply", "--execution-time", EXEC])?;
        let models = models_of(&edited);
        let expected = contents(&fresh, "s", &models);
        prop_assert_eq!(
            contents(&s, "s__dev", &models),
            expected.clone(),
            "after edit {}",
            n
        );
        if n == g.edits.len() {
            run(&s, &["plan", "--auto-apply", "--execution-time", EXEC])?;
            prop_assert_eq!(contents(&s, "s", &models), expected, "after promotion");
        }
    }
    Ok(kept)
}

#[test]
fn column_aware_plans_give_the_rows_a_full_rebuild_gives() {
    let cases: u32 = std::env::var("LAKE_COLUMN_AWARE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    // LAKE_FUZZ_SEED picks other cases, as for tests/it/fuzz.rs.
    let seed: u8 = std::env::var("LAKE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(7, |v| (v % 251) as u8);
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let kept = std::cell::Cell::new(0);
    runner
        .run(&generated(), |g| {
            kept.set(kept.get() + column_aware_matches_a_full_rebuild(&g)?);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // The property says something only if some plans kept children's tables.
    assert!(kept.get() > 0, "no generated plan kept a child's table");
}
