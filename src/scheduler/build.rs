//! Building one model version: per-kind writes of each batch (full refresh, time ranges, merges, SCD type 2
//! history, audited appends) with the model's pre- and post-statements.

use super::audits::run_audits;
use super::batches;
use super::finish::{
    batch_interval, batch_macro_context, built_interval, finish_batch, finish_in_one_piece,
    rows_in_range, run_statements, time_range,
};
use super::render::{executable_query, macro_context};
use super::scd;
use super::schema_change;
use super::write::{self, KeyedMerge, KindWriter};
use super::{BuildContext, Observer};
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::{Backfill, BackfillAction, Fill};
use crate::project::Project;
use crate::project::macros::{self, MacroContext};
use crate::project::model::{Model, ModelKind, TimeColumn};
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
    let model = ctx.project.model(backfill.model);
    if backfill.recreate {
        // Prod's in-place table whose kind or layout changed: what was under the name does not fit the
        // new version, which builds it from nothing (state forgot its intervals before the build began).
        ctx.storage.drop_physical(session, &backfill.table)?;
    }
    if let Fill::Empty { record_intervals } = backfill.fill {
        return build_without_rows(ctx, session, backfill, record_intervals, record);
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
        let mut query = executable_query(ctx, backfill.model, &macro_ctx)?;
        if backfill.action != BackfillAction::CreateView
            && !schema_change::keeps_history(&model.meta.kind)
        {
            query =
                schema_change::reconcile(ctx, session, backfill, &query, observer)?.apply(query);
        }
        let writer = DuckDbWriter {
            ctx,
            session,
            backfill,
            batch: None,
        };
        let stats = write::write_whole(&writer, model, backfill.action, &query, ctx.execution_time)
            .map_err(|e| located_seed_error(ctx.project, model, e))?;
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

/// A build that writes no rows (`--skip-backfill`, `--empty-backfill`, a model `--backfill-model` leaves
/// out): the table is created with the query's columns through the kind's writer (so history kinds get
/// their validity columns), and its intervals are recorded as built only when `record_intervals`.
fn build_without_rows(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    record_intervals: bool,
    record: &dyn Fn(Interval) -> Result<()>,
) -> Result<WriteStats> {
    let model = ctx.project.model(backfill.model);
    if ctx.project.spark_gateway(backfill.model).is_some() {
        return Err(LakeError::unsupported(
            format!(
                "creating {} without rows on a Spark gateway",
                model.meta.name
            ),
            "backfill the models that run on a Spark gateway (leave out --skip-backfill, --empty-backfill, or select them with --backfill-model)",
        ));
    }
    let first = backfill.batches.first().copied();
    let macro_ctx = match first {
        Some(range) => batch_macro_context(ctx, backfill, range),
        None => macro_context(ctx, backfill.model, &backfill.table, "evaluating"),
    };
    let query = executable_query(ctx, backfill.model, &macro_ctx)?;
    let no_rows = format!("SELECT * FROM ({query}) AS lake_no_rows LIMIT 0");
    let stats = match first {
        Some(range) => write_duckdb_batch(ctx, session, backfill, &no_rows, range)?,
        None => {
            let writer = DuckDbWriter {
                ctx,
                session,
                backfill,
                batch: None,
            };
            write::write_whole(
                &writer,
                model,
                backfill.action,
                &no_rows,
                ctx.execution_time,
            )?
        }
    };
    if record_intervals {
        if backfill.batches.is_empty() {
            record(built_interval(ctx, backfill, stats.write_id()))?;
        }
        for &range in &backfill.batches {
            record(batch_interval(backfill, range, stats.write_id()))?;
        }
    }
    Ok(WriteStats {
        rows: Some(0),
        ..stats
    })
}

/// DuckDB's CSV reader names the line of a seed file it could not read (`CSV Error on Line: 4`): the error then
/// points at that line of the file, with DuckDB's reason, instead of at the query lake ran.
fn located_seed_error(project: &Project, model: &Model, error: LakeError) -> LakeError {
    let (LakeError::Engine { cause, .. }, Some(path)) = (&error, &model.seed_path) else {
        return error;
    };
    let detail = crate::error::engine_message(cause);
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
    let model = ctx.project.model(backfill.model);
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
        let audit_before_write = appends && !ctx.project.model_audits(backfill.model).is_empty();
        let stats = if audit_before_write {
            // An append cannot be taken back, and a rerun of a missing interval appends again: the rows
            // are staged and audited together with the table's before anything is appended.
            total.audits_passed +=
                stage_and_audit_append(ctx, session, backfill, &query, &macro_ctx, observer)?;
            let stats = write_duckdb_batch(
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
            write_duckdb_batch(ctx, session, backfill, &query, (start, end))?
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
    let Some(columns) = &ctx.project.analysis(backfill.model).own_columns else {
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

/// DuckDB's writes of one model version (through lake's storage), for one batch's macro context.
struct DuckDbWriter<'a> {
    ctx: &'a BuildContext<'a>,
    session: &'a Session,
    backfill: &'a Backfill,
    /// The batch written (`None`: the whole version).
    batch: Option<Range>,
}

impl DuckDbWriter<'_> {
    fn failed(&self, message: String) -> LakeError {
        LakeError::Execution {
            model: self.backfill.name.to_string(),
            message,
        }
    }

    fn table(&self) -> &crate::snapshot::PhysicalTable {
        &self.backfill.table
    }

    /// The macro context `merge_filter` renders in: the batch's.
    fn macro_context(&self) -> MacroContext {
        match self.batch {
            Some(range) => batch_macro_context(self.ctx, self.backfill, range),
            None => macro_context(self.ctx, self.backfill.model, self.table(), "evaluating"),
        }
    }
}

impl KindWriter for DuckDbWriter<'_> {
    type Query = str;

    fn overwrite(&self, query: &str) -> Result<WriteStats> {
        self.ctx
            .storage
            .replace_all(self.session, self.table(), query)
    }

    fn append(&self, query: &str) -> Result<WriteStats> {
        self.ctx.storage.append(self.session, self.table(), query)
    }

    fn replace_range(
        &self,
        query: &str,
        time_column: &TimeColumn,
        range: Range,
    ) -> Result<WriteStats> {
        let (filtered, in_range) = rows_in_range(time_column, query, range);
        let range = time_range(time_column, &in_range, range);
        self.ctx
            .storage
            .replace_time_range(self.session, self.table(), &filtered, range)
    }

    fn merge(&self, query: &str, merge: &KeyedMerge<'_>) -> Result<WriteStats> {
        // Checked when the project loaded; a failure here is reported, never unwrapped.
        let clauses = merge
            .when_matched
            .map(crate::sql::merge_clauses)
            .transpose()
            .map_err(|e| self.failed(format!("when_matched: {}", e.message)))?;
        let filter = merge
            .merge_filter
            .map(|written| {
                macros::render(
                    crate::sql::without_outer_parens(written),
                    &self.macro_context(),
                )
                .map(|rendered| rendered.sql)
                .map_err(|e| self.failed(format!("merge_filter: {}", e.message)))
            })
            .transpose()?;
        let merge = Merge {
            keys: merge.unique_key,
            when_matched: clauses.as_deref(),
            filter: filter.as_deref(),
        };
        self.ctx
            .storage
            .merge_by_key(self.session, self.table(), query, &merge)
    }

    fn replace_partitions(&self, query: &str, columns: &[String]) -> Result<WriteStats> {
        // Replacing the partitions present in the result is a merge keyed on the partition columns.
        self.ctx
            .storage
            .merge_by_key(self.session, self.table(), query, &Merge::by_keys(columns))
    }

    /// The table becomes its new full history (one overwrite).
    fn history(&self, query: &str, scd: &scd::Scd2<'_>) -> Result<WriteStats> {
        let table = self.table();
        let catalog = &self.ctx.project.default_catalog;
        let columns = self.session.query_strings(
            &format!("SELECT column_name FROM (DESCRIBE SELECT * FROM ({query}) AS q)"),
            || format!("reading the columns of {}", self.backfill.name),
        )?;
        let columns = scd.history_columns(columns, &self.backfill.name.to_string())?;
        let exists = !self
            .session
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
        self.ctx.storage.replace_all(self.session, table, &sql)
    }

    fn create_view(&self, query: &str) -> Result<WriteStats> {
        self.ctx
            .storage
            .create_view(self.session, self.table(), query)?;
        Ok(WriteStats::default())
    }
}

/// One batch of an incremental model on DuckDB.
fn write_duckdb_batch(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    range: Range,
) -> Result<WriteStats> {
    let writer = DuckDbWriter {
        ctx,
        session,
        backfill,
        batch: Some(range),
    };
    let model = ctx.project.model(backfill.model);
    write::write_batch(&writer, model, query, range, ctx.execution_time)
}
