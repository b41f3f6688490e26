//! Unit tests of column lineage: the issue's example, kinds of use, scopes, stars and what stays opaque.

use std::collections::HashMap;

use super::*;

struct Known(HashMap<&'static str, Vec<&'static str>>);

impl UpstreamColumns for Known {
    fn columns_of(&self, table: &str) -> Option<Vec<String>> {
        self.0
            .get(table)
            .map(|cs| cs.iter().map(|c| c.to_string()).collect())
    }
}

fn lineage(sql: &str) -> QueryLineage {
    let known = Known(HashMap::from([
        ("s.parent", vec!["id", "a", "b", "c"]),
        ("s.other", vec!["id", "d"]),
    ]));
    let statements = crate::sql::parse(sql).expect("parses");
    let sqlparser::ast::Statement::Query(query) = &statements[0] else {
        panic!("a query")
    };
    query_lineage(query, &known)
}

fn src(table: &str, column: &str) -> Source {
    Source {
        table: table.into(),
        column: column.into(),
    }
}

/// `name: table.column how, …` for each output column, to compare in one line.
fn shown(l: &QueryLineage) -> Vec<String> {
    l.columns
        .iter()
        .map(|c| {
            let sources: Vec<String> = c
                .sources
                .iter()
                .map(|(s, how)| format!("{}.{} {how:?}", s.table, s.column))
                .collect();
            let opaque = if c.opaque { " (opaque)" } else { "" };
            format!("{}: {}{opaque}", c.name, sources.join(", "))
        })
        .collect()
}

#[test]
fn the_issues_example_children_read_what_they_read() {
    let reads_a = lineage("SELECT a, COUNT(*) AS n FROM s.parent GROUP BY a");
    assert_eq!(shown(&reads_a), ["a: s.parent.a Copied", "n: "]);
    assert_eq!(reads_a.row_sources, [src("s.parent", "a")]);
    let reads_c = lineage("SELECT id, c FROM s.parent WHERE b > 10");
    assert_eq!(
        shown(&reads_c),
        ["id: s.parent.id Copied", "c: s.parent.c Copied"]
    );
    assert_eq!(reads_c.row_sources, [src("s.parent", "b")]);
    assert!(!reads_c.columns_opaque && !reads_c.rows_opaque);
}

#[test]
fn kinds_of_use_are_told_apart() {
    let l = lineage(
        "SELECT id AS key, CAST(a AS VARCHAR) AS a_text, a + b AS ab, SUM(c) AS total, \
         ROW_NUMBER() OVER (PARTITION BY b ORDER BY c) AS rn FROM s.parent GROUP BY id, a, b, c",
    );
    assert_eq!(
        shown(&l),
        [
            "key: s.parent.id Renamed",
            "a_text: s.parent.a Cast",
            "ab: s.parent.a Expression, s.parent.b Expression",
            "total: s.parent.c Aggregate",
            "rn: s.parent.b Window, s.parent.c Window",
        ]
    );
}

#[test]
fn ctes_subqueries_joins_and_unions_are_traced() {
    let l = lineage(
        "WITH p AS (SELECT id, a AS x FROM s.parent WHERE c IS NOT NULL) \
         SELECT p.x, o.d FROM p JOIN (SELECT id, d FROM s.other) AS o ON p.id = o.id \
         UNION ALL SELECT b, id FROM s.parent",
    );
    assert_eq!(
        shown(&l),
        [
            "x: s.parent.a Renamed, s.parent.b Copied",
            "d: s.other.d Copied, s.parent.id Copied",
        ]
    );
    // The CTE's filter, the join keys and (a union compares rows) every column select rows.
    for column in ["c", "id", "a", "b"] {
        assert!(
            l.row_sources.contains(&src("s.parent", column)),
            "{column}: {l:?}"
        );
    }
    assert!(l.row_sources.contains(&src("s.other", "id")));
}

#[test]
fn stars_expand_from_known_columns_with_exclude_and_replace() {
    let l = lineage("SELECT * EXCLUDE (b) REPLACE (a * 2 AS a) FROM s.parent");
    assert_eq!(
        shown(&l),
        [
            "id: s.parent.id Copied",
            "a: s.parent.a Expression",
            "c: s.parent.c Copied",
        ]
    );
    let l = lineage("SELECT o.* FROM s.parent AS p JOIN s.other AS o ON p.id = o.id");
    assert_eq!(shown(&l), ["id: s.other.id Copied", "d: s.other.d Copied"]);
    // An upstream whose columns lake does not know: the star is opaque, not guessed.
    let l = lineage("SELECT * FROM s.unknown");
    assert!(l.columns_opaque && l.columns.is_empty(), "{l:?}");
}

#[test]
fn what_cannot_be_traced_is_opaque_not_invented() {
    // `x` is in neither table lake knows the columns of.
    let l = lineage("SELECT x FROM s.parent JOIN s.other ON parent.id = other.id");
    assert!(
        l.columns[0].opaque && l.columns[0].sources.is_empty(),
        "{l:?}"
    );
    let l = lineage("SELECT a FROM s.parent JOIN s.other USING (id)");
    assert!(l.rows_opaque, "{l:?}");
    let l = lineage("SELECT id FROM s.parent LIMIT 3");
    assert!(l.rows_opaque, "{l:?}");
    let l = lineage("SELECT id FROM s.parent ORDER BY a LIMIT 3");
    assert!(
        !l.rows_opaque && l.row_sources == [src("s.parent", "a")],
        "{l:?}"
    );
}

#[test]
fn correlated_subqueries_read_the_outer_query() {
    let l = lineage(
        "SELECT id, (SELECT MAX(d) FROM s.other AS o WHERE o.id = p.id) AS top FROM s.parent AS p",
    );
    assert_eq!(
        shown(&l),
        ["id: s.parent.id Copied", "top: s.other.d Expression"]
    );
    assert!(l.row_sources.contains(&src("s.parent", "id")), "{l:?}");
}

#[test]
fn distinct_and_group_by_all_select_rows_by_their_columns() {
    let l = lineage("SELECT DISTINCT a FROM s.parent");
    assert_eq!(l.row_sources, [src("s.parent", "a")]);
    let l = lineage("SELECT a, b, SUM(c) AS total FROM s.parent GROUP BY ALL");
    assert_eq!(l.row_sources, [src("s.parent", "a"), src("s.parent", "b")]);
}

#[test]
fn star_projections_are_found_anywhere_that_shapes_the_output() {
    assert!(selects_star("SELECT * FROM demo.a"));
    assert!(selects_star("SELECT a.* FROM demo.a AS a"));
    assert!(selects_star(
        "WITH x AS (SELECT * FROM demo.a) SELECT id FROM x"
    ));
    assert!(selects_star("SELECT id FROM (SELECT * FROM demo.a) AS s"));
    assert!(!selects_star(
        "SELECT id, count(*) AS n FROM demo.a GROUP BY id"
    ));
}

#[test]
fn a_star_anywhere_in_the_query_is_recorded() {
    assert!(lineage("SELECT * FROM s.parent").reads_star);
    assert!(lineage("SELECT id FROM (SELECT p.* FROM s.parent AS p) AS x").reads_star);
    assert!(!lineage("SELECT a, COUNT(*) AS n FROM s.parent GROUP BY a").reads_star);
}
