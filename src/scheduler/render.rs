//! Rendering for execution: a model's macro context for an interval, and its query with references
//! resolved to physical tables.

use chrono::NaiveDateTime;

use super::BuildContext;
use crate::error::{LakeError, Result};
use crate::project::ModelId;
use crate::project::RefTarget;
use crate::project::macros::MacroContext;
use crate::project::model::{Model, ModelKind};
use crate::snapshot::{PhysicalTable, Snapshot};
use crate::sql;
use crate::sql::{quote_ident, quote_literal};

/// How a query names a model version's table. An in-place table has its model's own schema, which may share
/// the DuckDB database's name (`shop.db` holding schema `shop`): in a query DuckDB runs for model `reader`, the
/// catalog is spelled out so DuckDB cannot take the schema for the catalog.
pub(super) fn table_reference(
    ctx: &BuildContext<'_>,
    reader: ModelId,
    snapshot: &Snapshot,
    table: &PhysicalTable,
) -> String {
    if crate::snapshot::is_in_place(&snapshot.version)
        && ctx.project.spark_gateway(reader).is_none()
    {
        format!(
            "{}.{}",
            quote_ident(&ctx.project.default_catalog),
            table.sql()
        )
    } else {
        table.sql()
    }
}

/// The macro context for building one model version.
pub fn macro_context(
    ctx: &BuildContext<'_>,
    model: ModelId,
    table: &PhysicalTable,
    stage: &'static str,
) -> MacroContext {
    let project = ctx.project;
    let mut m = MacroContext::for_loading(&project.config.gateway, &project.config.variables);
    if let Some(start) = &project.model(model).meta.start {
        m.start = start.resolve(ctx.execution_time);
    }
    m.end = ctx.execution_time;
    m.execution_time = ctx.execution_time;
    m.this_model = table_reference(ctx, model, &ctx.snapshots[model], table);
    m.catalog = project.default_catalog.clone();
    m.runtime_stage = stage;
    // The model's `@DEF`s; one that fails is reported, located, when the query is rendered.
    project.macro_scope(model, &m).unwrap_or(m)
}

/// The model's query with macros rendered and every model reference pointing at its physical table.
pub fn executable_query(
    ctx: &BuildContext<'_>,
    model: ModelId,
    macro_ctx: &MacroContext,
) -> Result<String> {
    executable_query_for(ctx, model, macro_ctx, &Inlining::default())
}

/// Which upstream models a rendered query reads as subqueries of their own queries instead of their tables
/// (EMBEDDED models always are).
#[derive(Debug, Clone, Copy, Default)]
pub struct Inlining<'a> {
    /// VIEW models too, for engines that read lake's tables but not its DuckDB views.
    pub views: bool,
    /// These models too (`lake render --expand`).
    pub models: &'a [ModelId],
}

impl Inlining<'_> {
    pub const VIEWS: Inlining<'static> = Inlining {
        views: true,
        models: &[],
    };

    fn inlines(&self, model: &Model, id: ModelId) -> bool {
        matches!(model.meta.kind, ModelKind::Embedded)
            || self.views && matches!(model.meta.kind, ModelKind::View { .. })
            || self.models.contains(&id)
    }
}

/// `executable_query`, with the upstream models `inlining` names inlined as subqueries.
pub fn executable_query_for(
    ctx: &BuildContext<'_>,
    model: ModelId,
    macro_ctx: &MacroContext,
    inlining: &Inlining<'_>,
) -> Result<String> {
    let _timer = crate::profile::time(crate::profile::Phase::Render);
    let m = ctx.project.model(model);
    if let ModelKind::Seed { .. } = m.meta.kind {
        return seed_query(m);
    }
    let Some(rendered) = ctx.project.render_query(model, macro_ctx)? else {
        return Err(LakeError::Execution {
            model: m.meta.name.to_string(),
            message: "the model has no query".into(),
        });
    };
    let edits = rendered
        .refs
        .iter()
        .filter_map(|(r, target)| match target {
            RefTarget::Model(p) if inlining.inlines(ctx.project.model(*p), *p) => {
                // Inlined as a subquery, rendered in the same context.
                let inlined = match executable_query_for(ctx, *p, macro_ctx, inlining) {
                    Ok(sql) => sql,
                    Err(e) => return Some(Err(e)),
                };
                let text = if r.has_alias {
                    format!("({inlined})")
                } else {
                    let alias = r.parts.last().map(|p| p.value.as_str()).unwrap_or_default();
                    format!("({inlined}) AS {}", quote_ident(alias))
                };
                Some(Ok((r.offset, r.len, text)))
            }
            RefTarget::Model(p) => {
                let s = &ctx.snapshots[*p];
                let physical = table_reference(ctx, model, s, &PhysicalTable::of(s));
                // Keep the reference's own name as alias so `orders.id` still resolves.
                let text = if r.has_alias {
                    physical
                } else {
                    let alias = r.parts.last().map(|p| p.value.as_str()).unwrap_or_default();
                    format!("{physical} AS {}", quote_ident(alias))
                };
                Some(Ok((r.offset, r.len, text)))
            }
            _ => None,
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(sql::replace_spans(&rendered.sql, edits))
}

/// DuckDB's CSV reader over a SEED model's file, with the model's declared column types.
pub(super) fn seed_query(model: &Model) -> Result<String> {
    let ModelKind::Seed { csv_settings, .. } = &model.meta.kind else {
        return Err(LakeError::Execution {
            model: model.meta.name.to_string(),
            message: "not a SEED model".into(),
        });
    };
    let path = model
        .seed_path
        .as_ref()
        .ok_or_else(|| LakeError::Execution {
            model: model.meta.name.to_string(),
            message: "the SEED model has no path".into(),
        })?;
    let mut options = csv_options(model, csv_settings)?;
    let columns = &model.meta.columns;
    if columns.is_empty() {
        return Ok(format!(
            "SELECT * FROM read_csv({}, {})",
            quote_literal(&path.to_string_lossy()),
            options.join(", ")
        ));
    }
    let types = columns
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                quote_literal(&c.name),
                quote_literal(&c.data_type)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    options.push(format!("types = {{{types}}}"));
    let select = columns
        .iter()
        .map(|c| {
            format!(
                "CAST({} AS {}) AS {}",
                quote_ident(&c.name),
                c.data_type,
                quote_ident(&c.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "SELECT {select} FROM read_csv({}, {})",
        quote_literal(&path.to_string_lossy()),
        options.join(", ")
    ))
}

/// The strings pandas reads as missing by default, and so SQLMesh's seeds: each is NULL in any column.
const PANDAS_NA_VALUES: &[&str] = &[
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
];

/// DuckDB `read_csv` options for a seed's `csv_settings` (pandas' names), reading missing values as pandas
/// does: its default NA strings, plus `na_values`, unless `keep_default_na false`.
fn csv_options(model: &Model, csv_settings: &[(String, String)]) -> Result<Vec<String>> {
    let mut options = vec!["header = true".to_string()];
    let mut null_strings: Vec<String> = Vec::new();
    let mut keep_default_na = true;
    for (key, value) in csv_settings {
        let option = match key.as_str() {
            "delimiter" | "sep" => "delim",
            "quotechar" => "quote",
            "escapechar" => "escape",
            "header" => "header",
            "encoding" => "encoding",
            "na_values" | "nullstr" => {
                null_strings.extend(listed_strings(value));
                continue;
            }
            "keep_default_na" => {
                keep_default_na = !value.eq_ignore_ascii_case("false");
                continue;
            }
            "skip_rows" | "skiprows" => "skip",
            other => {
                return Err(LakeError::unsupported(
                    format!("csv_settings `{other}` of SEED model {}", model.meta.name),
                    "lake supports delimiter, quotechar, escapechar, header, encoding, na_values, keep_default_na and skiprows",
                ));
            }
        };
        let rendered = if value.chars().all(|c| c.is_ascii_digit())
            || ["true", "false"].contains(&value.to_ascii_lowercase().as_str())
        {
            value.clone()
        } else {
            quote_literal(value)
        };
        options.retain(|o| !o.starts_with(&format!("{option} =")));
        options.push(format!("{option} = {rendered}"));
    }
    if keep_default_na {
        null_strings.extend(PANDAS_NA_VALUES.iter().map(|s| s.to_string()));
    }
    if !null_strings.is_empty() {
        let listed: Vec<String> = null_strings.iter().map(|s| quote_literal(s)).collect();
        options.push(format!("nullstr = [{}]", listed.join(", ")));
    }
    Ok(options)
}

/// The strings of a setting written as one string (`'x'`) or a list (`['x', 'y']`, `('x', 'y')`).
fn listed_strings(value: &str) -> Vec<String> {
    let inner = value
        .trim()
        .trim_start_matches(['[', '('])
        .trim_end_matches([']', ')']);
    inner
        .split(',')
        .map(|s| s.trim().trim_matches('\'').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `time_column` within `[start, end)`: compared as timestamps, or as formatted text when the model gives
/// the column's format (`time_column (ds, '%Y%m%d')`).
pub fn time_range_predicate(
    time_column: &crate::project::model::TimeColumn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> String {
    range_predicate(&quote_ident(&time_column.column), time_column, start, end)
}

/// `time_range_predicate` over `column` (SQL naming the time column, possibly qualified).
pub fn range_predicate(
    column: &str,
    time_column: &crate::project::model::TimeColumn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> String {
    match &time_column.format {
        Some(format) => {
            let last = end - chrono::Duration::microseconds(1);
            format!(
                "{column} BETWEEN {} AND {}",
                quote_literal(&start.format(format).to_string()),
                quote_literal(&last.format(format).to_string())
            )
        }
        None => format!(
            "{column} >= CAST({} AS TIMESTAMP) AND {column} < CAST({} AS TIMESTAMP)",
            quote_literal(&start.format("%Y-%m-%d %H:%M:%S").to_string()),
            quote_literal(&end.format("%Y-%m-%d %H:%M:%S").to_string())
        ),
    }
}
