//! Column-level lineage of one query: the upstream columns each output column comes from and how, and the
//! columns that only select rows. What cannot be traced is marked opaque, never guessed.

use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{
    ExcludeSelectItem, Expr, Function, GroupByExpr, JoinConstraint, JoinOperator, Query, Select,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableWithJoins,
    Visit, Visitor, WildcardAdditionalOptions,
};

/// A column of an upstream table, the table named as the query names it (lower-cased, dotted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Source {
    pub table: String,
    pub column: String,
}

/// How an output column is made from a source column, from the least to the most transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    Copied,
    Renamed,
    Cast,
    Expression,
    Aggregate,
    Window,
}

/// One output column: its sources, and whether part of it could not be traced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnLineage {
    pub name: String,
    pub sources: Vec<(Source, How)>,
    pub opaque: bool,
}

/// The lineage of a query: its output columns, the source columns that select its rows (WHERE, JOIN … ON,
/// GROUP BY, HAVING, QUALIFY, DISTINCT, ORDER BY with LIMIT, at any depth), and whether its columns or rows
/// depend on something lake cannot trace (an unexpandable `*`, USING, a table function…).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct QueryLineage {
    pub columns: Vec<ColumnLineage>,
    pub row_sources: Vec<Source>,
    pub columns_opaque: bool,
    pub rows_opaque: bool,
    /// Some select list at any depth reads `*` (or `t.*`): its columns follow its sources' columns.
    pub reads_star: bool,
}

/// The columns of an upstream table, named as the query names it; `None` when they are not known.
pub trait UpstreamColumns {
    fn columns_of(&self, table: &str) -> Option<Vec<String>>;
}

/// The lineage of `query`, with upstream tables' columns from `upstream` (for `*`).
pub fn query_lineage(query: &Query, upstream: &dyn UpstreamColumns) -> QueryLineage {
    let mut tracer = Tracer {
        upstream,
        ctes: Vec::new(),
        row_sources: Vec::new(),
        rows_opaque: false,
        columns_opaque: false,
        reads_star: false,
        last_from: Vec::new(),
    };
    let columns = tracer.query(query, &[]);
    let mut row_sources = tracer.row_sources;
    row_sources.sort();
    row_sources.dedup();
    QueryLineage {
        columns: columns
            .into_iter()
            .map(|c| ColumnLineage {
                name: c.name,
                sources: merged(c.origins),
                opaque: c.opaque,
            })
            .collect(),
        row_sources,
        columns_opaque: tracer.columns_opaque,
        rows_opaque: tracer.rows_opaque,
        reads_star: tracer.reads_star,
    }
}

/// A column of a relation in scope, with where it comes from.
#[derive(Debug, Clone)]
struct Col {
    name: String,
    origins: Vec<(Source, How)>,
    opaque: bool,
}

/// A relation a SELECT reads: a named upstream table (columns maybe unknown) or a derived one.
#[derive(Debug, Clone)]
struct Rel {
    alias: String,
    kind: RelKind,
}

#[derive(Debug, Clone)]
enum RelKind {
    Base {
        table: String,
        columns: Option<Vec<String>>,
    },
    Derived(Vec<Col>),
}

impl Rel {
    /// Column `name` of this relation, as a `Col`; `None` when the relation surely lacks it.
    fn column(&self, name: &str) -> Option<Col> {
        match &self.kind {
            RelKind::Base { table, columns } => {
                let known = columns.as_ref().map(|cs| cs.iter().find(|c| eq(c, name)));
                match known {
                    Some(None) => None,
                    Some(Some(c)) => Some(base_col(table, c)),
                    None => Some(base_col(table, name)),
                }
            }
            RelKind::Derived(cols) => cols.iter().find(|c| eq(&c.name, name)).cloned(),
        }
    }

    fn surely_has(&self, name: &str) -> bool {
        match &self.kind {
            RelKind::Base { columns, .. } => columns
                .as_ref()
                .is_some_and(|cs| cs.iter().any(|c| eq(c, name))),
            RelKind::Derived(cols) => cols.iter().any(|c| eq(&c.name, name)),
        }
    }

    /// Every column, for `*`; `None` when they are not known.
    fn all_columns(&self) -> Option<Vec<Col>> {
        match &self.kind {
            RelKind::Base { table, columns } => columns
                .as_ref()
                .map(|cs| cs.iter().map(|c| base_col(table, c)).collect()),
            RelKind::Derived(cols) => Some(cols.clone()),
        }
    }
}

fn base_col(table: &str, column: &str) -> Col {
    Col {
        name: column.to_string(),
        origins: vec![(
            Source {
                table: table.to_string(),
                column: column.to_ascii_lowercase(),
            },
            How::Copied,
        )],
        opaque: false,
    }
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

struct Tracer<'a> {
    upstream: &'a dyn UpstreamColumns,
    /// CTEs in scope, innermost last.
    ctes: Vec<(String, Vec<Col>)>,
    row_sources: Vec<Source>,
    rows_opaque: bool,
    columns_opaque: bool,
    reads_star: bool,
    /// The FROM relations of the SELECT traced last (for its query's ORDER BY).
    last_from: Vec<Rel>,
}

impl Tracer<'_> {
    /// The output columns of `query`; `outer` holds the relations of enclosing queries (correlation).
    fn query(&mut self, query: &Query, outer: &[Rel]) -> Vec<Col> {
        let scope = self.ctes.len();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let cols = self.query(&cte.query, outer);
                let cols = renamed(cols, &cte.alias.columns);
                self.ctes.push((cte.alias.name.value.clone(), cols));
            }
        }
        let cols = self.set_expr(&query.body, outer);
        let limited = query.limit_clause.is_some() || query.fetch.is_some();
        if limited && let Some(order_by) = &query.order_by {
            // Which rows a LIMIT keeps depends on the ordering, over the last SELECT's FROM or its aliases.
            let from = match query.body.as_ref() {
                SetExpr::Select(_) => std::mem::take(&mut self.last_from),
                _ => Vec::new(),
            };
            let mut refs = References::default();
            let _ = order_by.visit(&mut refs);
            let aliases_then_outer = aliases_then(&cols, outer);
            self.add_row_sources(&refs, &from, &aliases_then_outer);
        }
        if limited && query.order_by.is_none() {
            self.rows_opaque = true;
        }
        self.ctes.truncate(scope);
        cols
    }

    fn set_expr(&mut self, body: &SetExpr, outer: &[Rel]) -> Vec<Col> {
        match body {
            SetExpr::Select(select) => self.select(select, outer),
            SetExpr::Query(query) => self.query(query, outer),
            SetExpr::SetOperation { left, right, .. } => {
                let left = self.set_expr(left, outer);
                let right = self.set_expr(right, outer);
                // Set operations compare whole rows: every column selects rows.
                for c in left.iter().chain(&right) {
                    self.row_sources
                        .extend(c.origins.iter().map(|(s, _)| s.clone()));
                }
                if left.len() != right.len() {
                    self.columns_opaque = true;
                }
                left.into_iter()
                    .zip(right.into_iter().map(Some).chain(std::iter::repeat(None)))
                    .map(|(mut l, r)| {
                        if let Some(r) = r {
                            l.origins.extend(r.origins);
                            l.opaque |= r.opaque;
                        }
                        l
                    })
                    .collect()
            }
            SetExpr::Values(values) => {
                let width = values.rows.first().map_or(0, |row| row.content.len());
                (1..=width)
                    .map(|i| Col {
                        name: format!("col{i}"),
                        origins: Vec::new(),
                        opaque: false,
                    })
                    .collect()
            }
            _ => {
                self.columns_opaque = true;
                self.rows_opaque = true;
                Vec::new()
            }
        }
    }

    fn select(&mut self, select: &Select, outer: &[Rel]) -> Vec<Col> {
        let mut rels = Vec::new();
        for from in &select.from {
            self.from(from, &mut rels, outer);
        }
        let mut cols = Vec::new();
        for item in &select.projection {
            self.projection(item, &rels, outer, &mut cols);
        }
        // What selects rows: the filters, the grouping, DISTINCT.
        let mut refs = References::default();
        for expr in select
            .selection
            .iter()
            .chain(&select.having)
            .chain(&select.qualify)
        {
            let _ = expr.visit(&mut refs);
        }
        match &select.group_by {
            GroupByExpr::Expressions(exprs, _) => {
                for expr in exprs {
                    let _ = expr.visit(&mut refs);
                }
            }
            GroupByExpr::All(_) => self.group_by_all(select, &rels, outer),
        }
        // GROUP BY, HAVING and QUALIFY may name the SELECT's own aliases, when FROM has no such column.
        let aliases_then_outer = aliases_then(&cols, outer);
        self.add_row_sources(&refs, &rels, &aliases_then_outer);
        if select.distinct.is_some() {
            for c in &cols {
                self.row_sources
                    .extend(c.origins.iter().map(|(s, _)| s.clone()));
            }
        }
        self.last_from = rels;
        cols
    }

    /// `GROUP BY ALL` groups by every output that is not an aggregate.
    fn group_by_all(&mut self, select: &Select, rels: &[Rel], outer: &[Rel]) {
        for item in &select.projection {
            let expr = match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                _ => continue,
            };
            if how_made(expr) < How::Aggregate {
                let mut refs = References::default();
                let _ = expr.visit(&mut refs);
                self.add_row_sources(&refs, rels, outer);
            }
        }
    }

    fn from(&mut self, from: &TableWithJoins, rels: &mut Vec<Rel>, outer: &[Rel]) {
        self.table_factor(&from.relation, rels, outer);
        for join in &from.joins {
            self.table_factor(&join.relation, rels, outer);
            if joins_on_unwritten_columns(&join.join_operator) {
                self.rows_opaque = true;
            }
            let mut refs = References::default();
            let _ = join.join_operator.visit(&mut refs);
            let visible: Vec<Rel> = rels.clone();
            self.add_row_sources(&refs, &visible, outer);
        }
    }

    fn table_factor(&mut self, factor: &TableFactor, rels: &mut Vec<Rel>, outer: &[Rel]) {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let table = name
                    .0
                    .iter()
                    .map(|part| {
                        part.as_ident()
                            .map_or_else(|| part.to_string(), |i| i.value.clone())
                            .to_ascii_lowercase()
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                if args.is_some() {
                    // A table function (`range(10)`, `read_csv(…)`): its columns are its own.
                    self.columns_opaque = true;
                }
                let cte = (name.0.len() == 1)
                    .then(|| {
                        self.ctes
                            .iter()
                            .rev()
                            .find(|(n, _)| eq(n, &table))
                            .map(|(_, cols)| cols.clone())
                    })
                    .flatten();
                let kind = match cte {
                    Some(cols) => RelKind::Derived(cols),
                    None => RelKind::Base {
                        columns: self.upstream.columns_of(&table),
                        table: table.clone(),
                    },
                };
                let last = table.rsplit('.').next().unwrap_or(&table).to_string();
                let mut rel = Rel {
                    alias: alias.as_ref().map_or(last, |a| a.name.value.clone()),
                    kind,
                };
                if let Some(alias) = alias.as_ref().filter(|a| !a.columns.is_empty()) {
                    rel = Rel {
                        kind: RelKind::Derived(renamed(
                            rel.all_columns().unwrap_or_default(),
                            &alias.columns,
                        )),
                        ..rel
                    };
                }
                rels.push(rel);
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // A LATERAL subquery sees the relations before it.
                let visible: Vec<Rel> = outer.iter().chain(rels.iter()).cloned().collect();
                let cols = self.query(subquery, &visible);
                let cols = match alias {
                    Some(a) => renamed(cols, &a.columns),
                    None => cols,
                };
                rels.push(Rel {
                    alias: alias
                        .as_ref()
                        .map_or(String::new(), |a| a.name.value.clone()),
                    kind: RelKind::Derived(cols),
                });
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.from(table_with_joins, rels, outer),
            _ => {
                // UNNEST, table functions, PIVOT…: traced no further.
                self.columns_opaque = true;
                self.rows_opaque = true;
            }
        }
    }

    fn projection(&mut self, item: &SelectItem, rels: &[Rel], outer: &[Rel], cols: &mut Vec<Col>) {
        match item {
            SelectItem::UnnamedExpr(expr) => {
                let name = output_name(expr);
                cols.push(self.expression(expr, name, rels, outer));
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                cols.push(self.expression(expr, alias.value.clone(), rels, outer));
            }
            SelectItem::Wildcard(options) => {
                let all: Vec<&Rel> = rels.iter().collect();
                self.star(&all, options, rels, outer, cols);
            }
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                options,
            ) => {
                let alias = last_part(name);
                let matching: Vec<&Rel> = rels.iter().filter(|r| eq(&r.alias, &alias)).collect();
                if matching.is_empty() {
                    self.columns_opaque = true;
                }
                self.star(&matching, options, rels, outer, cols);
            }
            _ => self.columns_opaque = true,
        }
    }

    /// `*` over `over`, with EXCLUDE and REPLACE applied.
    fn star(
        &mut self,
        over: &[&Rel],
        options: &WildcardAdditionalOptions,
        rels: &[Rel],
        outer: &[Rel],
        cols: &mut Vec<Col>,
    ) {
        self.reads_star = true;
        let excluded: Vec<String> = match &options.opt_exclude {
            Some(ExcludeSelectItem::Single(name)) => vec![last_part(name)],
            Some(ExcludeSelectItem::Multiple(names)) => names.iter().map(last_part).collect(),
            None => Vec::new(),
        };
        if options.opt_except.is_some()
            || options.opt_rename.is_some()
            || options.opt_ilike.is_some()
        {
            self.columns_opaque = true;
        }
        for rel in over {
            let Some(all) = rel.all_columns() else {
                self.columns_opaque = true;
                continue;
            };
            for col in all {
                if excluded.iter().any(|x| eq(x, &col.name)) {
                    continue;
                }
                let replacement = options
                    .opt_replace
                    .as_ref()
                    .and_then(|r| r.items.iter().find(|i| eq(&i.column_name.value, &col.name)));
                match replacement {
                    Some(r) => cols.push(self.expression(&r.expr, col.name.clone(), rels, outer)),
                    None => cols.push(col),
                }
            }
        }
    }

    /// The output column `name` made by `expr`.
    fn expression(&mut self, expr: &Expr, name: String, rels: &[Rel], outer: &[Rel]) -> Col {
        let mut refs = References::default();
        let _ = expr.visit(&mut refs);
        let how = how_made(expr);
        let mut col = Col {
            name: name.clone(),
            origins: Vec::new(),
            opaque: refs.unsupported,
        };
        for parts in &refs.columns {
            let Some(found) = resolve(parts, rels, outer) else {
                col.opaque = true;
                continue;
            };
            col.opaque |= found.opaque;
            let outer_how = match how {
                How::Copied if !eq(&found.name, &name) => How::Renamed,
                other => other,
            };
            col.origins.extend(
                found
                    .origins
                    .into_iter()
                    .map(|(s, inner)| (s, outer_how.max(inner))),
            );
        }
        for subquery in &refs.subqueries {
            let visible: Vec<Rel> = outer.iter().chain(rels.iter()).cloned().collect();
            for c in self.query(subquery, &visible) {
                col.origins
                    .extend(c.origins.into_iter().map(|(s, _)| (s, How::Expression)));
                col.opaque |= c.opaque;
            }
        }
        col
    }

    fn add_row_sources(&mut self, refs: &References, rels: &[Rel], outer: &[Rel]) {
        self.rows_opaque |= refs.unsupported;
        for parts in &refs.columns {
            match resolve(parts, rels, outer) {
                Some(c) => {
                    self.rows_opaque |= c.opaque;
                    self.row_sources
                        .extend(c.origins.into_iter().map(|(s, _)| s));
                }
                None => self.rows_opaque = true,
            }
        }
        for subquery in &refs.subqueries {
            let visible: Vec<Rel> = outer.iter().chain(rels.iter()).cloned().collect();
            for c in self.query(subquery, &visible) {
                self.rows_opaque |= c.opaque;
                self.row_sources
                    .extend(c.origins.into_iter().map(|(s, _)| s));
            }
        }
    }
}

/// The column a reference (`c`, `t.c`, `schema.t.c`) names among `rels`, then among the enclosing
/// queries' relations; `None` when it names none, or more than one could hold it.
fn resolve(parts: &[String], rels: &[Rel], outer: &[Rel]) -> Option<Col> {
    let found = match parts {
        [column] => {
            let sure: Vec<&Rel> = rels.iter().filter(|r| r.surely_has(column)).collect();
            match sure.as_slice() {
                [one] => one.column(column),
                [] if rels.len() == 1 => rels[0].column(column),
                _ => None,
            }
        }
        [.., table, column] => rels
            .iter()
            .find(|r| eq(&r.alias, table))
            .and_then(|r| r.column(column)),
        [] => None,
    };
    match found {
        Some(col) => Some(col),
        None if !outer.is_empty() => resolve(parts, outer, &[]),
        None => None,
    }
}

/// The output columns of a SELECT as a relation, then `outer`: where a name FROM lacks is looked up.
fn aliases_then(cols: &[Col], outer: &[Rel]) -> Vec<Rel> {
    std::iter::once(Rel {
        alias: String::new(),
        kind: RelKind::Derived(cols.to_vec()),
    })
    .chain(outer.iter().cloned())
    .collect()
}

/// The last part of a (possibly qualified) name, as written without quotes: `t."Col"` is `Col`.
fn last_part(name: &sqlparser::ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map_or_else(String::new, |ident| ident.value.clone())
}

/// Output columns renamed by a `(a, b, …)` column list.
fn renamed(cols: Vec<Col>, names: &[sqlparser::ast::TableAliasColumnDef]) -> Vec<Col> {
    cols.into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            if let Some(n) = names.get(i) {
                c.name = n.name.value.clone();
            }
            c
        })
        .collect()
}

/// The name DuckDB gives an unaliased select item: the column's own name, else the expression's text.
fn output_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// How `expr` transforms what it reads: a bare column is copied, a cast casts, an OVER is a window, an
/// aggregate function aggregates, anything else is an expression.
fn how_made(expr: &Expr) -> How {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => How::Copied,
        Expr::Cast { expr, .. }
            if matches!(**expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) =>
        {
            How::Cast
        }
        Expr::Nested(inner) => how_made(inner),
        _ => {
            let mut kinds = FunctionKinds::default();
            let _ = expr.visit(&mut kinds);
            if kinds.window {
                How::Window
            } else if kinds.aggregate {
                How::Aggregate
            } else {
                How::Expression
            }
        }
    }
}

#[derive(Default)]
struct FunctionKinds {
    aggregate: bool,
    window: bool,
}

impl Visitor for FunctionKinds {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(Function { name, over, .. }) = expr {
            let short = name
                .0
                .last()
                .map(|p| p.to_string().to_ascii_lowercase())
                .unwrap_or_default();
            if over.is_some() {
                self.window = true;
            } else if super::AGGREGATE_FUNCTIONS.contains(&short.as_str()) {
                self.aggregate = true;
            }
        }
        ControlFlow::Continue(())
    }
}

/// The column references of an expression outside its subqueries, and those subqueries (traced in their
/// own scope); `unsupported` when it holds something whose inputs cannot be read off (`COLUMNS(…)`, a
/// lambda).
#[derive(Default)]
struct References {
    columns: Vec<Vec<String>>,
    subqueries: Vec<Query>,
    depth: usize,
    unsupported: bool,
}

impl Visitor for References {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self.depth == 0 {
            self.subqueries.push(query.clone());
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.depth > 0 {
            return ControlFlow::Continue(());
        }
        match expr {
            Expr::Identifier(ident) => self.columns.push(vec![ident.value.clone()]),
            Expr::CompoundIdentifier(parts) => self
                .columns
                .push(parts.iter().map(|p| p.value.clone()).collect()),
            Expr::Lambda(_) => self.unsupported = true,
            Expr::Function(Function { name, .. })
                if name.to_string().eq_ignore_ascii_case("columns") =>
            {
                self.unsupported = true
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Sources merged: one entry per source column, with the most transformed way it is used.
fn merged(origins: Vec<(Source, How)>) -> Vec<(Source, How)> {
    let mut out: Vec<(Source, How)> = Vec::new();
    for (source, how) in origins {
        match out.iter_mut().find(|(s, _)| *s == source) {
            Some(entry) => entry.1 = entry.1.max(how),
            None => out.push((source, how)),
        }
    }
    out.sort();
    out
}

/// Whether a join matches rows on columns it does not write out (`USING`, `NATURAL`), or is a kind lake
/// does not read (APPLY, ARRAY JOIN): its rows then depend on what lineage cannot see.
fn joins_on_unwritten_columns(operator: &JoinOperator) -> bool {
    use JoinOperator as J;
    let constraint = match operator {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::CrossJoin(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c)
        | J::StraightJoin(c)
        | J::AsOf { constraint: c, .. } => c,
        _ => return true,
    };
    !matches!(constraint, JoinConstraint::On(_) | JoinConstraint::None)
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
mod tests;
