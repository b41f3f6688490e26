//! Building one model version: per-kind writes of each batch (full refresh, time ranges, merges, SCD type 2
//! history, audited appends) with the model's pre- and post-statements.

use super::audits::run_audits;
use super::batches;
use super::finish::{
    batch_macro_context, finish_batch, finish_in_one_piece, rows_in_range, run_statements,
    time_range,
};
use super::render::{executable_query, macro_context};
use super::scd;
use super::schema_change;
use super::{BuildContext, Observer};
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::{Backfill, BackfillAction};
use crate::project::Project;
use crate::project::macros::{self, MacroContext};
use crate::project::model::{Model, ModelKind};
use crate::sql::{quote_ident, quote_literal};
use crate::state::Interval;
use crate::storage::{Merge, WriteStats};

/// Builds one model version: pre-statements, the write, post-statements; for incremental kinds, once per
/// batch, each recorded in state by `record` as soon as it is written (a rerun resumes after the last one).
pub(super) fn build_one(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    record: &dyn Fn(Interval) -> Result<()>,
    observer: &dyn Observer,
) -> Result<WriteStats> {
    let model = &ctx.project.models[backfill.model];
    if backfill.recreate {
        // Prod's in-place table whose kind or layout changed: what was under the name does not fit the
        // new version, which builds it from nothing (state forgot its intervals before the build began).
        ctx.storage.drop_physical(session, &backfill.table)?;
    }
    if let Some(connection) = ctx.project.spark_gateway(backfill.model) {
        return super::spark::build_one(ctx, connection, session, backfill, record, observer);
    }
    ctx.storage
        .declare_properties(&backfill.table, &model.meta.physical_properties);
    ctx.storage
        .declare_partitioning(&backfill.table, &model.meta.partitioning);
    if backfill.batches.is_empty() {
        let macro_ctx = macro_context(ctx, backfill.model, &backfill.table, "evaluating");
        run_statements(
            ctx.project,
            session,
            model,
            &model.pre_statements,
            &macro_ctx,
        )?;
        let query = executable_query(ctx, backfill.model, &macro_ctx)?;
        let stats = match backfill.action {
            BackfillAction::CreateView => {
                ctx.storage.create_view(session, &backfill.table, &query)?;
                WriteStats::default()
            }
            BackfillAction::FullRefresh | BackfillAction::InsertSeed | BackfillAction::Insert => {
                let fit = if schema_change::keeps_history(&model.meta.kind) {
                    schema_change::Fit::default()
                } else {
                    schema_change::reconcile(ctx, session, backfill, &query, observer)?
                };
                ctx.storage
                    .replace_all(session, &backfill.table, &fit.apply(query))
                    .map_err(|e| located_seed_error(ctx.project, model, e))?
            }
        };
        run_statements(
            ctx.project,
            session,
            model,
            &model.post_statements,
            &macro_ctx,
        )?;
        return finish_in_one_piece(ctx, session, backfill, &macro_ctx, stats, record, observer);
    }
    // A time-range model whose statements never name its own table (themselves or through a project
    // macro) is audited on the files each batch wrote, so DuckDB's view of the table is needed only once
    // its batches are done.
    let project = ctx.project;
    let has_statements = !model.pre_statements.is_empty() || !model.post_statements.is_empty();
    let statements_may_read_the_table = model
        .pre_statements
        .iter()
        .chain(&model.post_statements)
        .any(|statement| mentions_this_model(&statement.text))
        || (has_statements
            && (mentions_this_model(&project.jinja_macros)
                || project
                    .macro_definitions
                    .iter()
                    .any(|(_, definition)| mentions_this_model(&definition.text))));
    let defer_views = matches!(model.meta.kind, ModelKind::IncrementalByTimeRange { .. })
        && !statements_may_read_the_table;
    if defer_views {
        ctx.storage.defer_views(&backfill.table);
    }
    let written = write_batches(ctx, session, backfill, record, observer);
    // Published whether or not a batch failed: the batches before it are committed and recorded.
    let published = ctx.storage.publish_views(session, &backfill.table);
    let total = written?;
    published?;
    Ok(total)
}

/// DuckDB's CSV reader names the line of a seed file it could not read (`CSV Error on Line: 4`): the error then
/// points at that line of the file, with DuckDB's reason, instead of at the query lake ran.
fn located_seed_error(project: &Project, model: &Model, error: LakeError) -> LakeError {
    let (LakeError::Engine { source, .. }, Some(path)) = (&error, &model.seed_path) else {
        return error;
    };
    let detail = source.to_string();
    let Some(line) = detail
        .split("CSV Error on Line: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return error;
    };
    let Ok(bytes) = std::fs::read(path) else {
        return error;
    };
    // DuckDB's reason follows the quoted line; the sniffer settings after it say nothing about the file.
    let reason = detail
        .lines()
        .skip_while(|l| !l.starts_with("Original Line:"))
        .nth(1)
        .filter(|l| !l.trim().is_empty())
        .unwrap_or("DuckDB could not read this line")
        .to_string();
    let display = path
        .strip_prefix(&project.root)
        .unwrap_or(path)
        .display()
        .to_string();
    let file = crate::error::SourceFile::new(display, String::from_utf8_lossy(&bytes).as_ref());
    let at = file.offset_of(line, 1);
    let width = file.text[at..]
        .find('\n')
        .unwrap_or(file.text.len() - at)
        .max(1);
    LakeError::from(
        file.error(
            at,
            width,
            format!("seed of `{}`: {reason}", model.meta.name),
        )
        .with_label("this row")
        .with_help("fix the value, or declare the column's type in the model's `columns (…)`"),
    )
}

fn mentions_this_model(text: &str) -> bool {
    text.to_ascii_lowercase().contains("this_model")
}

/// The batches of an incremental model version, each audited and recorded once written. Once the first
/// batch has created the table and fitted the query to it, the others may be evaluated concurrently
/// (`batch_concurrency`), still committed in order.
fn write_batches(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    record: &dyn Fn(Interval) -> Result<()>,
    observer: &dyn Observer,
) -> Result<WriteStats> {
    let model = &ctx.project.models[backfill.model];
    let mut total = WriteStats {
        rows: Some(0),
        ..WriteStats::default()
    };
    let mut fit: Option<schema_change::Fit> = None;
    for (done, &(start, end)) in backfill.batches.iter().enumerate() {
        let macro_ctx = batch_macro_context(ctx, backfill, (start, end));
        run_statements(
            ctx.project,
            session,
            model,
            &model.pre_statements,
            &macro_ctx,
        )?;
        let query = executable_query(ctx, backfill.model, &macro_ctx)?;
        let reads_itself = query.contains(backfill.table.table.as_str());
        if reads_itself {
            // The query reads the table itself (through `@this_model` or a macro): it sees every batch before.
            create_empty_own_table(ctx, session, backfill)?;
            ctx.storage.publish_views(session, &backfill.table)?;
        }
        // Every batch of a version has the same columns: the first decides how they fit the table.
        let fit = match &mut fit {
            Some(fit) => fit,
            None => fit.insert(if schema_change::keeps_history(&model.meta.kind) {
                schema_change::Fit::default()
            } else {
                schema_change::reconcile(ctx, session, backfill, &query, observer)?
            }),
        };
        let query = fit.apply(query);
        let appends = matches!(
            model.meta.kind,
            ModelKind::IncrementalUnmanaged {
                insert_overwrite: false,
                ..
            }
        );
        let audit_before_write = appends && !ctx.project.audits[backfill.model].is_empty();
        let stats = if audit_before_write {
            // An append cannot be taken back, and a rerun of a missing interval appends again: the rows
            // are staged and audited together with the table's before anything is appended.
            total.audits_passed +=
                stage_and_audit_append(ctx, session, backfill, &query, &macro_ctx, observer)?;
            let stats = write_batch(
                ctx,
                session,
                backfill,
                &format!("SELECT * FROM {PENDING_APPEND}"),
                (start, end),
            )?;
            session.execute(&format!("DROP TABLE {PENDING_APPEND}"), || {
                "dropping the staged rows".into()
            })?;
            stats
        } else {
            write_batch(ctx, session, backfill, &query, (start, end))?
        };
        let audited = !audit_before_write;
        finish_batch(
            ctx,
            session,
            backfill,
            (start, end),
            &macro_ctx,
            stats,
            audited,
            &mut total,
            record,
            observer,
        )?;
        let rest = &backfill.batches[done + 1..];
        let lanes = batches::lanes(ctx, model, reads_itself, rest.len());
        if lanes > 1
            && let Some(stager) = ctx.storage.staged_writes()
        {
            // This model's own slot evaluates one batch; the others come from slots no model is using.
            let borrowed = ctx.slots.borrow(lanes - 1);
            let lanes = batches::Lanes {
                count: 1 + borrowed.count,
                stager,
                fit,
            };
            batches::write_concurrently(
                ctx, session, backfill, rest, &lanes, &mut total, record, observer,
            )?;
            break;
        }
    }
    Ok(total)
}

/// Before the first batch of a model that reads its own table, that table exists, empty, in the columns the
/// model declares (see `Analysis::own_columns`), as SQLMesh creates it.
fn create_empty_own_table(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
) -> Result<()> {
    let Some(columns) = &ctx.project.analyses[backfill.model].own_columns else {
        return Ok(());
    };
    let table = &backfill.table;
    let exists = session.query_count(
        &format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            quote_literal(&table.schema),
            quote_literal(&table.table)
        ),
        || format!("looking for {table}"),
    )? > 0;
    if exists {
        return Ok(());
    }
    let empty = columns
        .iter()
        .map(|(name, data_type)| format!("CAST(NULL AS {data_type}) AS {}", quote_ident(name)))
        .collect::<Vec<_>>()
        .join(", ");
    ctx.storage
        .append(session, table, &format!("SELECT {empty} LIMIT 0"))?;
    Ok(())
}

/// Temporary table holding the rows of an append until its audits pass.
pub(super) const PENDING_APPEND: &str = "_lake_pending_append";

/// Stages the rows an append would add in `PENDING_APPEND` and runs the model's audits on the table as it
/// would be after the append; returns how many passed.
pub(super) fn stage_and_audit_append(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    macro_ctx: &MacroContext,
    observer: &dyn Observer,
) -> Result<usize> {
    session.execute(
        &format!("CREATE OR REPLACE TEMP TABLE {PENDING_APPEND} AS {query}"),
        || format!("staging the rows to append to {}", backfill.name),
    )?;
    // The first append creates the table.
    let exists = session.query_strings(
        &format!(
            "SELECT count(*)::VARCHAR FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            crate::sql::quote_literal(&backfill.table.schema),
            crate::sql::quote_literal(&backfill.table.table)
        ),
        || format!("looking for {}", backfill.table),
    )? != ["0"];
    let pending = if exists {
        format!(
            "(SELECT * FROM {} UNION ALL BY NAME SELECT * FROM {PENDING_APPEND}) AS this_model",
            backfill.table.sql()
        )
    } else {
        format!("{PENDING_APPEND} AS this_model")
    };
    run_audits(ctx, session, backfill, macro_ctx, &pending, observer)
}

/// One batch of an incremental model, written the way its kind says.
pub(super) fn write_batch(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    (start, end): Range,
) -> Result<WriteStats> {
    let model = &ctx.project.models[backfill.model];
    let table = &backfill.table;
    match &model.meta.kind {
        ModelKind::IncrementalByTimeRange { time_column, .. } => {
            let (filtered, in_range) = rows_in_range(time_column, query, (start, end));
            let range = time_range(time_column, &in_range, (start, end));
            ctx.storage
                .replace_time_range(session, table, &filtered, range)
        }
        ModelKind::IncrementalByUniqueKey {
            unique_key,
            when_matched,
            merge_filter,
            ..
        } => {
            let failed = |message: String| LakeError::Execution {
                model: model.meta.name.to_string(),
                message,
            };
            // Checked when the project loaded; a failure here is reported, never unwrapped.
            let clauses = when_matched
                .as_deref()
                .map(crate::sql::merge_clauses)
                .transpose()
                .map_err(|e| failed(format!("when_matched: {}", e.message)))?;
            let filter = merge_filter
                .as_deref()
                .map(|written| {
                    let macro_ctx = batch_macro_context(ctx, backfill, (start, end));
                    macros::render(crate::sql::without_outer_parens(written), &macro_ctx)
                        .map(|rendered| rendered.sql)
                        .map_err(|e| failed(format!("merge_filter: {}", e.message)))
                })
                .transpose()?;
            let merge = Merge {
                keys: unique_key,
                when_matched: clauses.as_deref(),
                filter: filter.as_deref(),
            };
            ctx.storage.merge_by_key(session, table, query, &merge)
        }
        ModelKind::IncrementalByPartition { .. } => {
            if model.meta.partitioned_by.is_empty() {
                return Err(LakeError::Config {
                    message: format!(
                        "`{}` is INCREMENTAL_BY_PARTITION but has no partitioned_by",
                        model.meta.name
                    ),
                    help: Some("add `partitioned_by (column, ...)` to the MODEL block".into()),
                });
            }
            // Replacing the partitions present in the result is a merge keyed on the partition columns.
            ctx.storage.merge_by_key(
                session,
                table,
                query,
                &Merge::by_keys(&model.meta.partitioned_by),
            )
        }
        ModelKind::IncrementalUnmanaged {
            insert_overwrite, ..
        } => {
            if *insert_overwrite {
                ctx.storage.replace_all(session, table, query)
            } else {
                ctx.storage.append(session, table, query)
            }
        }
        kind @ (ModelKind::ScdType2ByTime { .. } | ModelKind::ScdType2ByColumn { .. }) => {
            match scd::Scd2::for_kind(kind, ctx.execution_time) {
                Some(history) => write_history(ctx, session, backfill, query, &history),
                None => Err(LakeError::unsupported(
                    format!("building {} as history", kind.name()),
                    "only SCD_TYPE_2 kinds keep history",
                )),
            }
        }
        other => Err(LakeError::unsupported(
            format!("building {} models in batches", other.name()),
            "this kind is built in one piece",
        )),
    }
}

/// SCD type 2: the table becomes its new full history (one overwrite), computed from the current rows and
/// the existing history.
pub(super) fn write_history(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    scd: &scd::Scd2<'_>,
) -> Result<WriteStats> {
    let table = &backfill.table;
    let catalog = &ctx.project.default_catalog;
    let columns: Vec<String> = session
        .query_strings(
            &format!("SELECT column_name FROM (DESCRIBE SELECT * FROM ({query}) AS q)"),
            || format!("reading the columns of {}", backfill.name),
        )?
        .into_iter()
        .filter(|c| c != scd.valid_from && c != scd.valid_to)
        .collect();
    for key in scd.unique_key {
        if !columns.contains(key) {
            return Err(LakeError::Execution {
                model: backfill.name.to_string(),
                message: format!("the unique_key column `{key}` is not in the query's columns"),
            });
        }
    }
    if let scd::ChangeDetection::ByTime { updated_at, .. } = &scd.detection
        && !columns.iter().any(|c| c == updated_at)
    {
        return Err(LakeError::Execution {
            model: backfill.name.to_string(),
            message: format!(
                "the query has no `{updated_at}` column (set updated_at_name to the column that holds the change time)"
            ),
        });
    }
    let exists = !session
        .query_strings(
            &format!(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_catalog = {} AND table_schema = {} AND table_name = {}",
                quote_literal(catalog),
                quote_literal(&table.schema),
                quote_literal(&table.table)
            ),
            || format!("looking up {table}"),
        )?
        .is_empty();
    let qualified = format!("{}.{}", quote_ident(catalog), table.sql());
    let sql = scd.history_sql(query, &columns, exists.then_some(qualified.as_str()));
    ctx.storage.replace_all(session, table, &sql)
}
