//! The category of every change a plan finds, with its reason: the policy (overrides, forward-only plans and
//! kinds, dev_only models in place) and the automatic part, which compares two versions of a model query with
//! sqlparser and says whether the change breaks what downstream models read.

use sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Statement};

use super::columns::ColumnDiff;
use super::{Category, ChangeKind, PlanOptions};
use crate::project::model::ModelKind;
use crate::project::{ModelId, Project};
use crate::snapshot::{Snapshot, is_in_place};
use crate::state::{EnvSnapshot, StoredSnapshot};

/// A category and the reason a person can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Categorised {
    pub category: Category,
    pub reason: String,
    /// What the change does to each column, when only the query's columns changed (`None`: its rows, or
    /// something comparing the queries cannot tell apart, changed).
    pub columns: Option<ColumnDiff>,
}

/// Rows or existing columns may differ: children must be rebuilt.
fn breaking(reason: impl Into<String>) -> Categorised {
    Categorised {
        category: Category::Breaking,
        reason: reason.into(),
        columns: None,
    }
}

/// Existing columns keep their values: children need no rebuild.
fn non_breaking(reason: impl Into<String>) -> Categorised {
    Categorised {
        category: Category::NonBreaking,
        reason: reason.into(),
        columns: None,
    }
}

/// One model whose version differs from the base environment's, with what deciding its category needs.
pub(super) struct ChangedModel<'a> {
    pub project: &'a Project,
    /// Its index in `project.models`.
    pub model: ModelId,
    pub new: &'a Snapshot,
    pub previous: &'a EnvSnapshot,
    /// The stored record of `previous` (`None`: state no longer has it).
    pub stored: Option<&'a StoredSnapshot>,
    pub in_prod: bool,
    /// A parent changed in this plan breaks its children.
    pub breaking_parent: bool,
}

/// What a plan does with a changed model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub kind: ChangeKind,
    pub category: Category,
    pub reason: Option<String>,
    /// Prod's in-place table is rebuilt whole (`Some(true)`: dropped first).
    pub rebuild_in_place: Option<bool>,
    /// A direct change's effect on each column, when comparing the queries told it.
    pub columns: Option<ColumnDiff>,
}

impl ChangedModel<'_> {
    /// Its kind keeps its table whatever changed (SQLMesh's `forward_only true`). A change of kind is never
    /// forward-only: the old table does not fit the new kind.
    pub fn kind_keeps_table(&self) -> bool {
        self.project.model(self.model).meta.kind.forward_only()
            && self.previous.kind_name == self.new.kind_name
    }

    /// In prod, a forward-only kind keeps its table; a dev environment builds the change in a table of its
    /// own, so prod's is never written from dev.
    pub fn kind_forward_only(&self) -> bool {
        self.in_prod && self.kind_keeps_table()
    }

    /// Prod's table of a dev_only model is the model's name itself: every version writes it.
    pub fn in_place(&self) -> bool {
        self.in_prod && self.project.dev_only(self.model)
    }

    /// Directly or indirectly modified, its category and why, from what changed in its fingerprint.
    pub fn decide(&self, options: &PlanOptions) -> Decision {
        let old = self.stored.map(|p| &p.snapshot.fingerprint);
        let new = &self.new.fingerprint;
        let data_change = old.is_none_or(|p| p.data_hash != new.data_hash);
        let metadata_change = old.is_none_or(|p| p.metadata_hash != new.metadata_hash);
        let upstream_change = old.is_none_or(|p| p.parent_data_hash != new.parent_data_hash);
        let decision = |kind, category, reason| Decision {
            kind,
            category,
            reason,
            rebuild_in_place: None,
            columns: None,
        };
        if data_change && self.in_place() {
            let (categorised, rebuild) = self.in_place_category(options);
            return Decision {
                kind: ChangeKind::DirectlyModified,
                category: categorised.category,
                reason: Some(categorised.reason),
                rebuild_in_place: rebuild,
                columns: None,
            };
        }
        if data_change {
            let categorised = self.direct_category(options);
            return Decision {
                columns: categorised.columns,
                ..decision(
                    ChangeKind::DirectlyModified,
                    categorised.category,
                    Some(categorised.reason),
                )
            };
        }
        match (metadata_change, upstream_change) {
            (true, true) => decision(ChangeKind::DirectlyModified, self.indirect(), None),
            (true, false) => decision(ChangeKind::DirectlyModified, Category::Metadata, None),
            (false, true) => decision(ChangeKind::IndirectlyModified, self.indirect(), None),
            (false, false) => decision(ChangeKind::IndirectlyModified, Category::Metadata, None),
        }
    }

    /// The category of a model changed only through its parents.
    fn indirect(&self) -> Category {
        if self.kind_forward_only() {
            Category::ForwardOnly
        } else if self.breaking_parent && !self.in_place() {
            Category::IndirectBreaking
        } else {
            Category::IndirectNonBreaking
        }
    }

    /// The category of a model whose own data-affecting definition changed: the user's choice, the plan's or
    /// the kind's forward-only policy, or what comparing the two versions shows.
    fn direct_category(&self, options: &PlanOptions) -> Categorised {
        if let Some(chosen) = options.overrides.get(&self.new.name) {
            return Categorised {
                category: *chosen,
                reason: "chosen by you".into(),
                columns: None,
            };
        }
        let forward_only = |reason: &str| Categorised {
            category: Category::ForwardOnly,
            reason: reason.into(),
            columns: None,
        };
        if options.forward_only {
            return forward_only("the plan is forward-only (--forward-only or plan.forward_only)");
        }
        if self.kind_forward_only() {
            return forward_only("its kind is forward-only");
        }
        if self.in_prod && is_in_place(&self.previous.version) {
            return breaking(
                "virtual_environment_mode is `full` again: prod gets a versioned table behind its name",
            );
        }
        self.compared()
    }

    /// What comparing the stored version with the new one shows.
    fn compared(&self) -> Categorised {
        match self.stored {
            None => breaking("the previous version is not in state to compare with"),
            Some(previous) => compare_versions(self.project, self.model, self.new, previous),
        }
    }

    /// The category of a change to a dev_only model in prod, whose table lives in place under its name. As
    /// in SQLMesh, changes apply forward-only: the table keeps its rows and history, and its columns follow
    /// the query when the plan is applied. A change the table cannot carry (a new kind, the switch from
    /// versioned tables, a seed's new contents) rebuilds it in place; so does a view, which holds no data,
    /// and a category chosen by the user other than forward-only. With the category: whether the table is
    /// rebuilt (`Some(true)`: dropped first).
    fn in_place_category(&self, options: &PlanOptions) -> (Categorised, Option<bool>) {
        if !is_in_place(&self.previous.version) {
            return (
                breaking(
                    "virtual_environment_mode became `dev_only`: prod's table is built in place under the model's name",
                ),
                Some(true),
            );
        }
        if self.previous.kind_name != self.new.kind_name {
            return (
                breaking("changed the model kind: prod's table is rebuilt in place"),
                Some(true),
            );
        }
        if let Some(chosen) = options.overrides.get(&self.new.name) {
            let rebuild = (*chosen != Category::ForwardOnly).then_some(true);
            let categorised = Categorised {
                category: *chosen,
                reason: "chosen by you".into(),
                columns: None,
            };
            return (categorised, rebuild);
        }
        let kind = &self.project.model(self.model).meta.kind;
        if matches!(kind, ModelKind::Seed { .. } | ModelKind::View { .. }) {
            return (self.compared(), Some(false));
        }
        let categorised = Categorised {
            category: Category::ForwardOnly,
            reason: "virtual_environment_mode is `dev_only`: prod's table keeps its rows and the change applies going forward".into(),
            columns: None,
        };
        (categorised, None)
    }
}

/// The category of model `i` whose data-affecting definition changed from `previous` to `new`: breaking
/// unless only its query changed, and that only by added columns no child reads through `*`.
fn compare_versions(
    project: &Project,
    i: ModelId,
    new: &Snapshot,
    previous: &StoredSnapshot,
) -> Categorised {
    let old_parts = &previous.snapshot.fingerprint.data_parts;
    let new_parts = &new.fingerprint.data_parts;
    if old_parts.is_empty() {
        return breaking("the previous version was recorded without the detail needed to compare");
    }
    // A part only some versions have (`virtual_environment_mode`) changed when it appears or disappears.
    let mut changed: Vec<&str> = new_parts
        .iter()
        .filter(|(part, hash)| old_parts.get(*part) != Some(*hash))
        .map(|(part, _)| part.as_str())
        .chain(
            old_parts
                .keys()
                .filter(|part| !new_parts.contains_key(*part))
                .map(String::as_str),
        )
        .collect();
    changed.sort_unstable();
    if let Some(part) = changed.iter().find(|p| **p != "query") {
        return breaking(format!("changed {}", describe_part(part)));
    }
    let old_query = previous.node.query.as_deref().unwrap_or_default();
    let new_query = project
        .analysis(i)
        .normalized_query
        .as_deref()
        .unwrap_or_default();
    let categorised = compare_queries(old_query, new_query);
    if categorised.category == Category::NonBreaking
        && let Some(child) = child_reading_star(project, i)
    {
        // The columns that were there keep their values: only children reading `*` see the change.
        return Categorised {
            columns: categorised.columns,
            ..breaking(format!(
                "added a column that `{}` reads through `*`",
                project.model(child).meta.name
            ))
        };
    }
    categorised
}

/// A fingerprint part in words.
fn describe_part(part: &str) -> &str {
    match part {
        "kind" => "the model kind",
        "columns" => "the declared columns",
        "statements" => "the pre/post statements",
        "seed" => "the seed data",
        "physical" => "the physical properties",
        "dialect" => "the dialect",
        "stamp" => "the stamp",
        other => other,
    }
}

/// A child of model `i` that selects `*`, which an added column changes.
fn child_reading_star(project: &Project, i: ModelId) -> Option<ModelId> {
    project.dag.children(i).find(|&child| {
        let query = project
            .analysis(child)
            .normalized_query
            .as_deref()
            .unwrap_or_default();
        crate::sql::lineage::selects_star(query)
    })
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
pub fn compare_queries(old: &str, new: &str) -> Categorised {
    let (Some(old_query), Some(new_query)) = (single_query(old), single_query(new)) else {
        return breaking("changed the query");
    };
    let (SetExpr::Select(old_select), SetExpr::Select(new_select)) =
        (old_query.body.as_ref(), new_query.body.as_ref())
    else {
        return breaking("changed the query");
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
            return breaking(format!("changed {clause}"));
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
        return breaking("changed ORDER BY, LIMIT or another clause");
    }

    let old_items: Vec<Projected> = old_select.projection.iter().map(projected).collect();
    let new_items: Vec<Projected> = new_select.projection.iter().map(projected).collect();
    compare_projections(&old_items, &new_items)
}

/// A select item: its output name (lower-cased), its text and, for a cast, what is cast.
struct Projected {
    name: String,
    text: String,
    cast_of: Option<String>,
}

fn projected(item: &SelectItem) -> Projected {
    let (name, text) = projection(item);
    let expr = match item {
        SelectItem::ExprWithAlias { expr, .. } | SelectItem::UnnamedExpr(expr) => Some(expr),
        _ => None,
    };
    let cast_of = match expr {
        Some(Expr::Cast { expr, .. }) => Some(expr.to_string()),
        _ => None,
    };
    Projected {
        name,
        text,
        cast_of,
    }
}

/// The category of a change to the select list alone, with what it does to each column: added columns in
/// the old order keep the change non-breaking; anything else breaks.
fn compare_projections(old: &[Projected], new: &[Projected]) -> Categorised {
    fn named<'a>(items: &'a [Projected], name: &str) -> Option<&'a Projected> {
        items.iter().find(|i| i.name == name)
    }
    let unique = |items: &[Projected]| {
        let names: std::collections::HashSet<&str> =
            items.iter().map(|i| i.name.as_str()).collect();
        names.len() == items.len()
    };
    let mut diff = ColumnDiff::default();
    let mut first_breaking = None;
    for before in old {
        match named(new, &before.name) {
            None => {
                first_breaking.get_or_insert(format!("removed column `{}`", before.name));
                diff.removed.push(before.name.clone());
            }
            Some(after) if after.text == before.text => {}
            Some(after) => {
                let retyped = after.cast_of.is_some() && after.cast_of == before.cast_of;
                if retyped {
                    first_breaking
                        .get_or_insert(format!("changed the type of column `{}`", before.name));
                    diff.retyped.push(before.name.clone());
                } else {
                    first_breaking.get_or_insert(format!(
                        "changed the expression of column `{}`",
                        before.name
                    ));
                    diff.changed.push(before.name.clone());
                }
            }
        }
    }
    diff.added = new
        .iter()
        .filter(|i| named(old, &i.name).is_none())
        .map(|i| i.name.clone())
        .collect();
    let kept = |items: &[Projected], other: &[Projected]| -> Vec<String> {
        items
            .iter()
            .filter(|i| named(other, &i.name).is_some())
            .map(|i| i.name.clone())
            .collect()
    };
    let reordered = kept(old, new) != kept(new, old);
    let reason = first_breaking.or_else(|| match (reordered, diff.added.is_empty()) {
        (_, true) => Some("changed the order or number of columns".to_string()),
        (true, false) => Some("changed the order of columns".to_string()),
        (false, false) => None,
    });
    // Two columns of one name: which one a child reads cannot be told by name.
    let columns = (unique(old) && unique(new)).then_some(diff);
    let added = columns.as_ref().map_or_else(Vec::new, |d| d.added.clone());
    let mut categorised = match reason {
        Some(reason) => breaking(reason),
        None => non_breaking(format!(
            "added column{} {}",
            if added.len() == 1 { "" } else { "s" },
            added
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    };
    if categorised.category == Category::NonBreaking && columns.is_none() {
        return breaking("changed the order or number of columns");
    }
    categorised.columns = columns;
    categorised
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

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.seed_model WHERE id > 0 GROUP BY item_id";

    /// The category and reason of changing BASE to `new`, without the column detail.
    fn verdict(new: &str) -> Categorised {
        Categorised {
            columns: None,
            ..compare_queries(BASE, new)
        }
    }

    fn columns(new: &str) -> Option<ColumnDiff> {
        compare_queries(BASE, new).columns
    }

    #[test]
    fn a_select_list_change_names_the_columns_it_touches() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            columns(
                "SELECT item_id, count(id) AS num_orders, 1 AS extra FROM demo.seed_model WHERE id > 0 GROUP BY item_id"
            ),
            Some(ColumnDiff {
                added: names(&["extra"]),
                changed: names(&["num_orders"]),
                ..ColumnDiff::default()
            })
        );
        assert_eq!(
            columns(
                "SELECT CAST(item_id AS BIGINT) AS item_id FROM demo.seed_model WHERE id > 0 GROUP BY item_id"
            ),
            Some(ColumnDiff {
                removed: names(&["num_orders"]),
                changed: names(&["item_id"]),
                ..ColumnDiff::default()
            })
        );
        let cast = |t: &str| format!("SELECT CAST(a AS {t}) AS a, b FROM demo.seed_model");
        let retyped = compare_queries(&cast("INT"), &cast("BIGINT"));
        assert_eq!(retyped.reason, "changed the type of column `a`");
        assert_eq!(retyped.columns.unwrap().retyped, names(&["a"]));
        // A clause that selects rows changes every column: no column detail.
        assert_eq!(
            columns(
                "SELECT item_id, count(DISTINCT id) AS num_orders FROM demo.seed_model WHERE id > 1 GROUP BY item_id"
            ),
            None
        );
    }

    #[test]
    fn an_added_column_is_non_breaking() {
        assert_eq!(
            verdict(
                "SELECT item_id, count(DISTINCT id) AS num_orders, max(id) AS max_id FROM demo.seed_model WHERE id > 0 GROUP BY item_id"
            ),
            non_breaking("added column `max_id`")
        );
        assert_eq!(
            verdict(
                "SELECT 1 AS a, item_id, count(DISTINCT id) AS num_orders, 2 AS b FROM demo.seed_model WHERE id > 0 GROUP BY item_id"
            ),
            non_breaking("added columns `a`, `b`")
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
            assert_eq!(verdict(new), breaking(reason), "{new}");
        }
    }
}
