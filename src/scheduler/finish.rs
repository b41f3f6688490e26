//! What every write of a model version or batch shares around its rows: the batch's macro context and
//! range, the pre- and post-statements, the audits, and the interval recorded in state once they pass.

use super::audits::{audited_relation, run_audits};
use super::render::{macro_context, time_range_predicate};
use super::{BuildContext, Observer};
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::Backfill;
use crate::profile::{self, Phase};
use crate::project::Project;
use crate::project::macros::{self, MacroContext};
use crate::project::model::{Model, TimeColumn};
use crate::state::Interval;
use crate::storage::{TimeRange, WriteStats};

/// After one batch is written: the model's post-statements, its audits when `audit` (they run before the
/// interval is recorded: a blocking failure leaves it missing, so it is rebuilt and audited again by the next
/// plan or run), then its interval recorded and its figures added to `total`.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_batch(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    range: Range,
    macro_ctx: &MacroContext,
    stats: WriteStats,
    audit: bool,
    total: &mut WriteStats,
    record: &dyn Fn(Interval) -> Result<()>,
    observer: &dyn Observer,
) -> Result<()> {
    let model = ctx.project.model(backfill.model);
    run_statements(
        ctx.project,
        session,
        model,
        &model.post_statements,
        macro_ctx,
    )?;
    if audit {
        let audited = audited_relation(
            model,
            &backfill.table,
            Some(range),
            stats.range_rows.as_deref(),
        );
        total.audits_passed += run_audits(ctx, session, backfill, macro_ctx, &audited, observer)?;
    }
    record(batch_interval(backfill, range, stats.write_id()))?;
    total.absorb(stats);
    Ok(())
}

/// The rows of `query` inside one batch of a time-range model (as SQLMesh does, rows the query returns
/// outside the batch are not loaded), and the predicate that selects the batch's rows of the table.
pub(super) fn rows_in_range(
    time_column: &TimeColumn,
    query: &str,
    (start, end): Range,
) -> (String, String) {
    let in_range = time_range_predicate(time_column, start, end);
    let filtered = format!("SELECT * FROM ({query}) AS lake_batch WHERE {in_range}");
    (filtered, in_range)
}

/// What a range replacement of one batch replaces.
pub(super) fn time_range<'a>(
    time_column: &'a TimeColumn,
    in_range: &'a str,
    (start, end): Range,
) -> TimeRange<'a> {
    TimeRange {
        predicate: in_range,
        column: &time_column.column,
        bounds: time_column.format.is_none().then_some((start, end)),
    }
}

/// The macro context of one batch of a model version.
pub(super) fn batch_macro_context(
    ctx: &BuildContext<'_>,
    backfill: &Backfill,
    (start, end): Range,
) -> MacroContext {
    let mut macro_ctx = macro_context(ctx, backfill.model, &backfill.table, "evaluating");
    macro_ctx.start = start;
    macro_ctx.end = end;
    macro_ctx
}

/// After a model version built in one piece is written: its audits, then its interval recorded (a blocking
/// audit failure leaves it unrecorded, so the next plan rebuilds it).
pub(super) fn finish_in_one_piece(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    macro_ctx: &MacroContext,
    stats: WriteStats,
    record: &dyn Fn(Interval) -> Result<()>,
    observer: &dyn Observer,
) -> Result<WriteStats> {
    let model = ctx.project.model(backfill.model);
    let audited = audited_relation(model, &backfill.table, None, None);
    let audits_passed = run_audits(ctx, session, backfill, macro_ctx, &audited, observer)?;
    record(built_interval(ctx, backfill, stats.write_id()))?;
    Ok(WriteStats {
        audits_passed,
        ..stats
    })
}

/// Runs `statements` of `model` (pre- or post-statements, rendered in `ctx`); one that renders to nothing is
/// skipped.
pub(super) fn run_statements(
    project: &Project,
    session: &Session,
    model: &Model,
    statements: &[crate::project::model::Statement],
    ctx: &MacroContext,
) -> Result<()> {
    for statement in statements {
        let render = profile::time(Phase::Render);
        let rendered = render_statement(project, model, statement, ctx)?;
        drop(render);
        let Some(sql) = rendered else {
            continue;
        };
        let _query = profile::time(Phase::Query);
        session.execute(&sql, || {
            format!("running a statement of {}", model.meta.name)
        })?;
    }
    Ok(())
}

/// A pre- or post-statement rendered; `None` when it renders to nothing (a statement made only of macros,
/// such as an `@IF(cond, …)` that is false). Errors point into the statement in the model's file.
pub(super) fn render_statement(
    project: &Project,
    model: &Model,
    statement: &crate::project::model::Statement,
    ctx: &MacroContext,
) -> Result<Option<String>> {
    let source = project.jinja(model, statement, ctx)?;
    let rendered = macros::render(&source, ctx).map_err(|e| {
        let at = if statement.jinja { 0 } else { e.offset };
        LakeError::from(
            statement
                .file(&model.file)
                .error(statement.offset + at, e.len, e.message)
                .with_optional_help(e.help),
        )
    })?;
    Ok((!rendered.sql.trim().is_empty()).then_some(rendered.sql))
}

/// The interval one batch of an incremental model wrote.
pub(super) fn batch_interval(
    backfill: &Backfill,
    range: crate::intervals::Range,
    write_id: Option<String>,
) -> Interval {
    Interval::written(
        backfill.name.clone(),
        backfill.version.clone(),
        range,
        write_id,
    )
}

/// The interval a version built in one piece covers: from its `start` up to now (or the plan's end).
pub(super) fn built_interval(
    ctx: &BuildContext<'_>,
    backfill: &Backfill,
    write_id: Option<String>,
) -> Interval {
    let model = ctx.project.model(backfill.model);
    let start = model
        .meta
        .start
        .as_ref()
        .map_or(chrono::DateTime::UNIX_EPOCH.naive_utc(), |start| {
            start.resolve(ctx.execution_time)
        });
    let end = ctx
        .intervals_end
        .map_or(ctx.execution_time, |end| end.min(ctx.execution_time));
    Interval::written(
        backfill.name.clone(),
        backfill.version.clone(),
        (start.min(end), end),
        write_id,
    )
}
