//! Audits during a build: each audit rendered against the table being built and its bad rows counted.

use super::render::{table_reference, time_range_predicate};
use super::{BuildContext, Observer};
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::Backfill;
use crate::project::ModelId;
use crate::project::macros::MacroContext;
use crate::project::model::{Model, ModelKind};
use crate::snapshot::PhysicalTable;

/// Model references in the audits of model `.1` (`relationship(to := …)`, `FROM main.customers` in an audit's
/// query, with or without the default catalog) name the versions this build reads.
pub(super) struct BuildResolver<'a, 'b>(&'a BuildContext<'b>, ModelId);

impl crate::project::audit::ModelResolver for BuildResolver<'_, '_> {
    fn table_of(&self, model: &str) -> Option<String> {
        let BuildResolver(ctx, reader) = self;
        let i = ctx.project.model_id_named(model)?;
        let s = &ctx.snapshots[i];
        Some(table_reference(ctx, *reader, s, &PhysicalTable::of(s)))
    }
}

/// What a model's audits read after a write: the table, or for a time-range batch that batch's rows
/// (`range_rows` when the storage named them, else the table filtered by the range).
pub(super) fn audited_relation(
    model: &Model,
    table: &PhysicalTable,
    batch: Option<Range>,
    range_rows: Option<&str>,
) -> String {
    match (&model.meta.kind, batch, range_rows) {
        (ModelKind::IncrementalByTimeRange { .. }, Some(_), Some(rows)) => {
            format!("{rows} AS this_model")
        }
        (ModelKind::IncrementalByTimeRange { time_column, .. }, Some((start, end)), None) => {
            format!(
                "(SELECT * FROM {} WHERE {}) AS this_model",
                table.sql(),
                time_range_predicate(time_column, start, end)
            )
        }
        _ => table.sql(),
    }
}

/// Runs the model's audits on `this_model` (see `audited_relation`). A blocking audit that finds bad rows
/// fails the model; a non-blocking one is reported. Returns how many passed.
pub(super) fn run_audits(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    macro_ctx: &MacroContext,
    this_model: &str,
    observer: &dyn Observer,
) -> Result<usize> {
    let _timer = crate::profile::time(crate::profile::Phase::Audits);
    let audits = ctx.project.model_audits(backfill.model);
    if audits.is_empty() {
        return Ok(0);
    }
    let model = ctx.project.model(backfill.model);
    let mut passed = 0;
    for audit in audits {
        let (query, rows) = audit_rows(ctx, session, audit, this_model, macro_ctx, backfill.model)?;
        if rows == 0 {
            passed += 1;
        } else if audit.blocking {
            return Err(LakeError::AuditFailed {
                model: model.meta.name.to_string(),
                audit: audit.name.clone(),
                rows,
                query,
            });
        } else {
            observer.audit_warning(backfill, &audit.name, rows);
        }
    }
    Ok(passed)
}

/// An audit's query and how many bad rows it finds.
pub fn audit_rows(
    ctx: &BuildContext<'_>,
    session: &Session,
    audit: &crate::project::audit::ModelAudit,
    this_model: &str,
    macro_ctx: &MacroContext,
    model: ModelId,
) -> Result<(String, u64)> {
    let resolver = BuildResolver(ctx, model);
    let model = &ctx.project.model(model).meta.name;
    let query = crate::project::audit::render(audit, this_model, macro_ctx, &resolver).map_err(
        |message| LakeError::Execution {
            model: model.to_string(),
            message: format!("audit `{}`: {message}", audit.name),
        },
    )?;
    let rows = session.query_count(
        &format!("SELECT count(*) FROM ({query}) AS audit_rows"),
        || format!("running audit `{}` of {model}", audit.name),
    )?;
    Ok((query, rows))
}
