//! `lake lint`: SQLMesh's linter rules over the project's models, the `linter:` configuration that picks
//! them, and where in its file each violation is.
//!
//! Column rules are checked by DuckDB's own binder (`schema::Binder`).

use std::collections::BTreeSet;

use serde::Serialize;
use sqlparser::ast::{Expr, SelectItem, SetExpr, Spanned, Statement};

use crate::config::linter::{LinterConfig, Severity};
use crate::error::{LakeError, Result, SourceFile};
use crate::project::macros::MacroContext;
use crate::project::model::ModelKind;
use crate::project::schema::{Binder, Bound};
use crate::project::{ModelId, Project};
use crate::sql::ModelName;

/// One rule broken by one model.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub rule: &'static str,
    pub severity: Severity,
    pub model: String,
    /// The model's file, relative to the project.
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Lints `models` (indices; all when empty) with the rules `config` turns on, in project order.
pub fn lint(
    project: &Project,
    config: &LinterConfig,
    models: &[ModelId],
) -> Result<Vec<Violation>> {
    let on = |rule: &str| config.severities.get(rule).copied();
    let selected: BTreeSet<ModelId> = if models.is_empty() {
        project.models().ids().collect()
    } else {
        models.iter().copied().collect()
    };
    let tested: BTreeSet<String> = if on("nomissingunittest").is_some() {
        crate::checks::unit_test::load(&project.root)?
            .into_iter()
            .filter_map(|t| ModelName::parse(&t.model).map(|m| m.to_string()))
            .collect()
    } else {
        BTreeSet::new()
    };
    let needs_binder =
        on("ambiguousorinvalidcolumn").is_some() || on("invalidselectstarexpansion").is_some();
    let mut binder = if needs_binder {
        Some(Binder::new(project)?)
    } else {
        None
    };
    let mut out = Vec::new();
    for &i in &project.order {
        let model = project.model(i);
        let bound = match binder.as_mut() {
            Some(b) => Some(b.bind(i)?),
            None => None,
        };
        if !selected.contains(&i) {
            continue;
        }
        let ignored = &model.meta.ignored_rules;
        let ignores = |rule: &str| {
            ignored
                .iter()
                .any(|r| r.eq_ignore_ascii_case(rule) || r.eq_ignore_ascii_case("all"))
        };
        let mut push = |rule: &'static str, offset: usize, message: String| {
            if let Some(severity) = on(rule).filter(|_| !ignores(rule)) {
                let (line, column) = model.file.line_col(offset);
                out.push(Violation {
                    rule,
                    severity,
                    model: model.meta.name.to_string(),
                    path: model.file.display_path.clone(),
                    line,
                    column,
                    message,
                });
            }
        };
        let name_at = model.name_span.0;
        let symbolic = matches!(model.meta.kind, ModelKind::Embedded | ModelKind::External);
        if model.meta.audits.is_empty() && !symbolic {
            push(
                "nomissingaudits",
                name_at,
                "the model has no audits: add `audits (not_null(columns := [...]), ...)` to test its data".into(),
            );
        }
        if model.meta.owner.is_none() {
            push(
                "nomissingowner",
                name_at,
                "the model has no owner: add `owner team_name`".into(),
            );
        }
        if !tested.contains(&model.meta.name.to_string()) && model.meta.kind.has_query() {
            push(
                "nomissingunittest",
                name_at,
                format!(
                    "no unit test in tests/*.yaml covers `{}` (`lake create-test` writes one from data)",
                    model.meta.name
                ),
            );
        }
        if let Some(Bound::Failed { offset, message }) = &bound {
            push("ambiguousorinvalidcolumn", *offset, message.clone());
        }
        let Some(query) = &model.query else { continue };
        let ctx = MacroContext::for_loading(&project.config.gateway, &project.config.variables);
        let Some(rendered) = project.render_query(i, &ctx)? else {
            continue;
        };
        let statements =
            crate::sql::parse(&rendered.sql).map_err(|e| LakeError::config(e.message))?;
        let index = SourceFile::new("", rendered.sql.as_str());
        let to_file = |span: sqlparser::tokenizer::Span| {
            let at = index.offset_of(span.start.line as usize, span.start.column as usize);
            if query.jinja {
                query.offset
            } else {
                query.offset + rendered.rendered.original_offset(at)
            }
        };
        for item in top_level_projection(&statements) {
            match item {
                SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) => {
                    let at = to_file(options.wildcard_token.0.span);
                    push(
                        "noselectstar",
                        at,
                        "the query selects `*`: list its columns so a change upstream cannot change this model's schema unnoticed".into(),
                    );
                    if let Some(Bound::Unknown(why)) = &bound {
                        push(
                            "invalidselectstarexpansion",
                            at,
                            format!("`*` cannot be expanded into columns: {why}"),
                        );
                    }
                }
                SelectItem::UnnamedExpr(expr)
                    if !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) =>
                {
                    push(
                        "noambiguousprojections",
                        to_file(expr.span()),
                        format!("`{expr}` has no alias: name it with `AS`"),
                    );
                }
                _ => {}
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.path, a.line, a.column, a.rule).cmp(&(&b.path, b.line, b.column, b.rule))
    });
    Ok(out)
}

/// The select items of the outermost SELECT(s) of a query; both sides of a top-level UNION.
fn top_level_projection(statements: &[Statement]) -> Vec<&SelectItem> {
    fn walk<'a>(body: &'a SetExpr, out: &mut Vec<&'a SelectItem>) {
        match body {
            SetExpr::Select(select) => out.extend(select.projection.iter()),
            SetExpr::Query(query) => walk(&query.body, out),
            SetExpr::SetOperation { left, right, .. } => {
                walk(left, out);
                walk(right, out);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(Statement::Query(query)) = statements.first() {
        walk(&query.body, &mut out);
    }
    out
}
