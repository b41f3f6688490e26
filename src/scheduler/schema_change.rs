//! Column changes under a table that keeps its rows between builds (forward-only changes, children of
//! non-breaking ones, runs after either): found before a build's first write, checked against the model's
//! `on_destructive_change` / `on_additive_change`, applied by schema evolution, and the query fitted to the
//! table's columns so rows land in the right ones.

use super::{BuildContext, Observer};
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::plan::Backfill;
use crate::project::model::ModelKind;
use crate::project::model::kind::SchemaChangePolicy;
use crate::sql::quote_ident;
use crate::storage::ColumnChange;

/// How a build's queries are wrapped to give exactly the table's columns, in its order.
#[derive(Debug, Default)]
pub(super) struct Fit {
    /// The select list over the query's rows; `None` when the query already matches the table.
    projection: Option<String>,
}

impl Fit {
    pub fn apply(&self, query: String) -> String {
        match &self.projection {
            None => query,
            Some(columns) => format!("SELECT {columns} FROM ({query}) AS lake_fit"),
        }
    }
}

/// Compares `query`'s columns with those of the table `backfill` writes, when it exists; applies what the
/// model's policies allow and says how to fit its queries. An `error` policy stops the build before it
/// writes anything.
pub(super) fn reconcile(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    observer: &dyn Observer,
) -> Result<Fit> {
    let table = &backfill.table;
    let Some(changes) = ctx.storage.column_changes(session, table, query)? else {
        return Ok(Fit::default());
    };
    let model = ctx.project.model(backfill.model);
    let mut policies = model.meta.kind.schema_change_policies();
    let allowed = &ctx.allowed_schema_changes;
    if allowed.destructive.contains(&backfill.name) {
        policies.destructive = SchemaChangePolicy::Allow;
    }
    if allowed.additive.contains(&backfill.name) {
        policies.additive = SchemaChangePolicy::Allow;
    }
    let mut applied = Vec::new();
    let mut ignored = Vec::new();
    for (destructive, policy, key) in [
        (true, policies.destructive, "on_destructive_change"),
        (false, policies.additive, "on_additive_change"),
    ] {
        let class: Vec<&ColumnChange> = changes
            .iter()
            .filter(|c| c.is_destructive() == destructive)
            .collect();
        if class.is_empty() {
            continue;
        }
        match policy {
            SchemaChangePolicy::Error => {
                return Err(LakeError::SchemaChange {
                    model: backfill.name.to_string(),
                    table: table.to_string(),
                    changes: class
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    key,
                });
            }
            SchemaChangePolicy::Warn => {
                for change in &class {
                    observer.schema_change_warning(backfill, &change.to_string());
                }
                applied.extend(class.into_iter().cloned());
            }
            SchemaChangePolicy::Allow => applied.extend(class.into_iter().cloned()),
            SchemaChangePolicy::Ignore => ignored.extend(class.into_iter().cloned()),
        }
    }
    ctx.storage
        .evolve_columns(session, table, query, &applied)?;
    let table_columns = ctx.storage.columns(session, table)?.unwrap_or_default();
    let query_columns = session.describe(query, || {
        format!("reading the columns of the query for {}", backfill.name)
    })?;
    let same_order = table_columns.len() == query_columns.len()
        && table_columns
            .iter()
            .zip(&query_columns)
            .all(|((a, _), (b, _))| a == b);
    let ignored_retype = |name: &str| {
        ignored
            .iter()
            .any(|c| matches!(c, ColumnChange::Retyped { .. }) && c.column() == name)
    };
    if same_order && !table_columns.iter().any(|(name, _)| ignored_retype(name)) {
        return Ok(Fit::default());
    }
    let projection = table_columns
        .iter()
        .map(|(name, data_type)| {
            let column = quote_ident(name);
            if !query_columns.iter().any(|(n, _)| n == name) {
                format!("CAST(NULL AS {data_type}) AS {column}")
            } else if ignored_retype(name) {
                format!("CAST({column} AS {data_type}) AS {column}")
            } else {
                column
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Fit {
        projection: Some(projection),
    })
}

/// SCD type 2 tables hold the query's columns plus their validity columns, written by `write_history`, which
/// computes the whole history anew; their columns are not compared with the query's.
pub(super) fn keeps_history(kind: &ModelKind) -> bool {
    matches!(
        kind,
        ModelKind::ScdType2ByTime { .. } | ModelKind::ScdType2ByColumn { .. }
    )
}
