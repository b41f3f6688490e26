//! Automatic change categorisation: compares two versions of a model query with sqlparser and says whether
//! the change breaks what downstream models read (and why).

use sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Statement, TableFactor};

/// The verdict on a directly modified model, with a reason a person can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Existing columns keep their values: children need no rebuild.
    NonBreaking(String),
    /// Rows or existing columns may differ: children must be rebuilt.
    Breaking(String),
}

fn single_query(sql: &str) -> Option<Query> {
    match crate::sql::parse(sql).ok()?.as_slice() {
        [Statement::Query(q)] => Some((**q).clone()),
        _ => None,
    }
}

/// A projection's output name and its full text.
fn projection(item: &SelectItem) -> (String, String) {
    let name = match item {
        SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
        SelectItem::UnnamedExpr(Expr::Identifier(ident)) => ident.value.clone(),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts
            .last()
            .map_or_else(|| item.to_string(), |p| p.value.clone()),
        other => other.to_string(),
    };
    (name.to_lowercase(), item.to_string())
}

/// Compares the old and new query of a model (normalised SQL text).
pub fn compare_queries(old: &str, new: &str) -> Verdict {
    let (Some(old_query), Some(new_query)) = (single_query(old), single_query(new)) else {
        return Verdict::Breaking("changed the query".into());
    };
    let (SetExpr::Select(old_select), SetExpr::Select(new_select)) =
        (old_query.body.as_ref(), new_query.body.as_ref())
    else {
        return Verdict::Breaking("changed the query".into());
    };
    let clauses: [(&str, String, String); 7] = [
        (
            "the WITH clause",
            display(&old_query.with),
            display(&new_query.with),
        ),
        (
            "DISTINCT",
            display(&old_select.distinct),
            display(&new_select.distinct),
        ),
        ("FROM/JOIN", list(&old_select.from), list(&new_select.from)),
        (
            "the WHERE clause",
            display(&old_select.selection),
            display(&new_select.selection),
        ),
        (
            "GROUP BY",
            old_select.group_by.to_string(),
            new_select.group_by.to_string(),
        ),
        (
            "HAVING",
            display(&old_select.having),
            display(&new_select.having),
        ),
        (
            "QUALIFY",
            display(&old_select.qualify),
            display(&new_select.qualify),
        ),
    ];
    for (clause, before, after) in &clauses {
        if before != after {
            return Verdict::Breaking(format!("changed {clause}"));
        }
    }
    // Anything else outside the projection (ORDER BY, LIMIT, windows, …): compare the rest as a whole.
    let without_projection = |query: &Query| {
        let mut q = query.clone();
        if let SetExpr::Select(select) = q.body.as_mut() {
            select.projection.clear();
        }
        q.to_string()
    };
    if without_projection(&old_query) != without_projection(&new_query) {
        return Verdict::Breaking("changed ORDER BY, LIMIT or another clause".into());
    }

    let old_items: Vec<(String, String)> = old_select.projection.iter().map(projection).collect();
    let new_items: Vec<(String, String)> = new_select.projection.iter().map(projection).collect();
    for (name, text) in &old_items {
        if new_items.iter().any(|(_, t)| t == text) {
            continue;
        }
        return Verdict::Breaking(if new_items.iter().any(|(n, _)| n == name) {
            format!("changed the expression of column `{name}`")
        } else {
            format!("removed column `{name}`")
        });
    }
    let added: Vec<&str> = new_items
        .iter()
        .filter(|(name, text)| {
            !old_items.iter().any(|(_, t)| t == text) && !old_items.iter().any(|(n, _)| n == name)
        })
        .map(|(name, _)| name.as_str())
        .collect();
    if added.is_empty() {
        return Verdict::Breaking("changed the order or number of columns".into());
    }
    let kept_in_order: Vec<&String> = new_items
        .iter()
        .filter(|(_, t)| old_items.iter().any(|(_, o)| o == t))
        .map(|(_, t)| t)
        .collect();
    if kept_in_order != old_items.iter().map(|(_, t)| t).collect::<Vec<_>>() {
        return Verdict::Breaking("changed the order of columns".into());
    }
    let names = added
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Verdict::NonBreaking(format!(
        "added column{} {names}",
        if added.len() == 1 { "" } else { "s" }
    ))
}

fn display<T: std::fmt::Display>(value: &Option<T>) -> String {
    value.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

fn list<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a query's output columns come from `*` somewhere (then a parent's new column changes its output).
pub fn selects_star(sql: &str) -> bool {
    match crate::sql::parse(sql) {
        Ok(statements) => statements.iter().any(|s| match s {
            Statement::Query(q) => query_has_star(q),
            _ => false,
        }),
        // Unknown shape: assume the worst.
        Err(_) => true,
    }
}

fn query_has_star(query: &Query) -> bool {
    let in_ctes = query
        .with
        .as_ref()
        .is_some_and(|w| w.cte_tables.iter().any(|cte| query_has_star(&cte.query)));
    in_ctes || set_expr_has_star(&query.body)
}

fn set_expr_has_star(expr: &SetExpr) -> bool {
    match expr {
        SetExpr::Select(select) => {
            select.projection.iter().any(|item| {
                matches!(
                    item,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            }) || select.from.iter().any(|t| {
                factor_has_star(&t.relation) || t.joins.iter().any(|j| factor_has_star(&j.relation))
            })
        }
        SetExpr::Query(q) => query_has_star(q),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_has_star(left) || set_expr_has_star(right)
        }
        _ => false,
    }
}

fn factor_has_star(factor: &TableFactor) -> bool {
    match factor {
        TableFactor::Derived { subquery, .. } => query_has_star(subquery),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.seed_model WHERE id > 0 GROUP BY item_id";

    fn verdict(new: &str) -> Verdict {
        compare_queries(BASE, new)
    }

    #[test]
    fn an_added_column_is_non_breaking() {
        assert_eq!(
            verdict(
                "SELECT item_id, count(DISTINCT id) AS num_orders, max(id) AS max_id FROM demo.seed_model WHERE id > 0 GROUP BY item_id"
            ),
            Verdict::NonBreaking("added column `max_id`".into())
        );
        assert_eq!(
            verdict(
                "SELECT 1 AS a, item_id, count(DISTINCT id) AS num_orders, 2 AS b FROM demo.seed_model WHERE id > 0 GROUP BY item_id"
            ),
            Verdict::NonBreaking("added columns `a`, `b`".into())
        );
    }

    #[test]
    fn other_changes_are_breaking_with_the_clause_named() {
        let cases = [
            (
                "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.seed_model WHERE id > 1 GROUP BY item_id",
                "changed the WHERE clause",
            ),
            (
                "SELECT item_id, count(id) AS num_orders FROM demo.seed_model WHERE id > 0 GROUP BY item_id",
                "changed the expression of column `num_orders`",
            ),
            (
                "SELECT item_id FROM demo.seed_model WHERE id > 0 GROUP BY item_id",
                "removed column `num_orders`",
            ),
            (
                "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.other WHERE id > 0 GROUP BY item_id",
                "changed FROM/JOIN",
            ),
            (
                "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.seed_model AS s JOIN demo.x AS x ON s.id = x.id WHERE id > 0 GROUP BY item_id",
                "changed FROM/JOIN",
            ),
            (
                "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.seed_model WHERE id > 0 GROUP BY item_id, id",
                "changed GROUP BY",
            ),
            (
                "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.seed_model WHERE id > 0 GROUP BY item_id LIMIT 5",
                "changed ORDER BY, LIMIT or another clause",
            ),
            (
                "SELECT count(DISTINCT id) AS num_orders, item_id FROM demo.seed_model WHERE id > 0 GROUP BY item_id",
                "changed the order or number of columns",
            ),
            ("SELECT 1 UNION ALL SELECT 2", "changed the query"),
        ];
        for (new, reason) in cases {
            assert_eq!(verdict(new), Verdict::Breaking(reason.into()), "{new}");
        }
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
}
