//! Building a model version on a Spark Connect engine: the query translated to Spark SQL, each kind's write
//! as one engine statement (one Iceberg snapshot) against the catalog lake shares with the engine, then the
//! commit adopted by lake (DuckDB's view, the snapshot id recorded with the interval) and the audits run.

use chrono::Utc;

use super::audits::{audited_relation, run_audits};
use super::render::{executable_query_for, macro_context, range_predicate};
use super::runner::built_interval;
use super::scd;
use super::{BuildContext, Observer};
use crate::config::SparkConnection;
use crate::engine::Session;
use crate::engine::spark::SparkEngine;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::{Backfill, BackfillAction};
use crate::project::macros::{self, MacroContext};
use crate::project::model::{Model, ModelKind, Statement, TimeColumn};
use crate::snapshot::PhysicalTable;
use crate::sql::quote_ident_always;
use crate::sql::spark::{Target, Untranslatable, transpile, transpile_expr};
use crate::state::Interval;
use crate::storage::{SharedCatalog, WriteStats};

/// Whether a model of this kind is built by the engine of its gateway (the others, SEED and VIEW models,
/// are built by lake itself into the same catalog).
pub fn runs_on_engine(kind: &ModelKind) -> bool {
    matches!(
        kind,
        ModelKind::Full
            | ModelKind::IncrementalByTimeRange { .. }
            | ModelKind::IncrementalByUniqueKey { .. }
            | ModelKind::IncrementalByPartition { .. }
            | ModelKind::IncrementalUnmanaged { .. }
            | ModelKind::ScdType2ByTime { .. }
            | ModelKind::ScdType2ByColumn { .. }
    )
}

/// DuckDB SQL of model `model` (rendered for execution) as Spark SQL, or a located error.
/// `columns_of` answers the columns of a table the query reads (for `* EXCLUDE`).
pub fn to_spark(
    model: &Model,
    connection: &SparkConnection,
    columns_of: &dyn Fn(&[String]) -> Option<Vec<String>>,
    duckdb_sql: &str,
) -> Result<String> {
    let target = Target {
        catalog: &connection.catalog,
        columns_of,
    };
    transpile(duckdb_sql, &target).map_err(|e| untranslatable(model, e))
}

/// The model's query rendered and translated for the engine, VIEW parents inlined (the engine cannot read
/// lake's DuckDB views).
pub fn spark_query(
    ctx: &BuildContext<'_>,
    model: usize,
    connection: &SparkConnection,
    macro_ctx: &MacroContext,
    columns_of: &dyn Fn(&[String]) -> Option<Vec<String>>,
) -> Result<String> {
    let duckdb = executable_query_for(ctx, model, macro_ctx, true)?;
    to_spark(&ctx.project.models[model], connection, columns_of, &duckdb)
}

/// An untranslatable construct, located in the model's file at its first mention.
pub fn untranslatable(model: &Model, e: Untranslatable) -> LakeError {
    // The construct's first word (a function, a keyword, the type's name) as the model's file spells it.
    let word = e
        .construct
        .trim_start_matches("the type ")
        .trim_start_matches("the strftime code ")
        .trim_start_matches("the ")
        .split([' ', '('])
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let text = model.file.text.to_lowercase();
    let body = model.query.as_ref().map_or(0, |q| q.offset);
    let at = text[body.min(text.len())..]
        .find(&word)
        .map_or(model.name_span.0, |i| body + i);
    LakeError::from(
        model
            .file
            .error(
                at,
                word.len().max(1),
                format!("{} cannot run on the Spark engine: {e}", model.meta.name),
            )
            .with_label("no Spark SQL translation")
            .with_help(format!(
                "{}; or pin the model to a DuckDB gateway (`gateway` in its MODEL block)",
                e.help
            )),
    )
}

fn spark_table(connection: &SparkConnection, table: &PhysicalTable) -> String {
    format!(
        "{}.{}.{}",
        backticked(&connection.catalog),
        backticked(&table.schema),
        backticked(&table.table)
    )
}

fn backticked(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Builds one model version on its gateway's engine, like `build::build_one` does on DuckDB: statements, the
/// write of each batch (recorded as soon as it is committed), audits on the written data.
pub(super) fn build_one(
    ctx: &BuildContext<'_>,
    connection: &SparkConnection,
    session: &Session,
    backfill: &Backfill,
    record: &dyn Fn(Interval) -> Result<()>,
    observer: &dyn Observer,
) -> Result<WriteStats> {
    let engine = ctx.spark.get(connection)?;
    let catalog = ctx.storage.shared_catalog().ok_or_else(|| {
        LakeError::unsupported(
            format!("building {} on a Spark gateway without Iceberg storage", backfill.name),
            "the engine writes lake's Iceberg catalog: remove `storage: {type: duckdb}` from config.yaml",
        )
    })?;
    let model = &ctx.project.models[backfill.model];
    let columns_of = |name: &[String]| match name {
        [.., schema, table] => catalog
            .columns(&PhysicalTable {
                schema: schema.clone(),
                table: table.clone(),
            })
            .ok()
            .flatten(),
        _ => None,
    };
    let writer = Writer {
        columns_of: &columns_of,
        ctx,
        engine: &engine,
        catalog,
        connection,
        backfill,
        model,
    };
    if backfill.batches.is_empty() {
        let macro_ctx = macro_context(ctx, backfill.model, &backfill.table, "evaluating");
        writer.statements(&model.pre_statements, &macro_ctx)?;
        let query = spark_query(ctx, backfill.model, connection, &macro_ctx, &columns_of)?;
        let rows = match (&model.meta.kind, backfill.action) {
            (kind @ (ModelKind::ScdType2ByTime { .. } | ModelKind::ScdType2ByColumn { .. }), _) => {
                writer.history(kind, &macro_ctx)?
            }
            (_, BackfillAction::CreateView) => {
                return Err(LakeError::Bug(format!(
                    "{} was sent to the Spark engine as a view",
                    backfill.name
                )));
            }
            _ => writer.overwrite(&query)?,
        };
        writer.statements(&model.post_statements, &macro_ctx)?;
        let snapshot_id = catalog.adopt_commit(session, &backfill.table)?;
        let stats = WriteStats {
            rows,
            snapshot_id,
            audits_passed: 0,
        };
        let audited = audited_relation(model, &backfill.table, None);
        let audits_passed = run_audits(ctx, session, backfill, &macro_ctx, &audited, observer)?;
        record(built_interval(ctx, backfill, stats.write_id()))?;
        return Ok(WriteStats {
            audits_passed,
            ..stats
        });
    }
    let mut total = WriteStats {
        rows: Some(0),
        ..WriteStats::default()
    };
    for &(start, end) in &backfill.batches {
        let mut macro_ctx = macro_context(ctx, backfill.model, &backfill.table, "evaluating");
        macro_ctx.start = start;
        macro_ctx.end = end;
        writer.statements(&model.pre_statements, &macro_ctx)?;
        let query = spark_query(ctx, backfill.model, connection, &macro_ctx, &columns_of)?;
        let rows = match &model.meta.kind {
            ModelKind::IncrementalByTimeRange { time_column, .. } => {
                writer.replace_range(&query, time_column, (start, end))?
            }
            ModelKind::IncrementalByUniqueKey {
                unique_key,
                when_matched,
                ..
            } => {
                if when_matched.is_some() {
                    return Err(LakeError::unsupported(
                        format!("`when_matched` of {}", model.meta.name),
                        "lake merges by replacing the whole matched row; remove when_matched for now",
                    ));
                }
                writer.merge(&query, unique_key)?
            }
            ModelKind::IncrementalByPartition { .. } => {
                writer.replace_partitions(&query, &model.meta.partitioned_by)?
            }
            ModelKind::IncrementalUnmanaged {
                insert_overwrite: true,
                ..
            } => writer.overwrite(&query)?,
            ModelKind::IncrementalUnmanaged { .. } => {
                if !ctx.project.audits[backfill.model].is_empty() {
                    return Err(LakeError::unsupported(
                        format!(
                            "audits of the appending model {} on a Spark gateway",
                            model.meta.name
                        ),
                        "an append cannot be taken back, and lake audits appends before writing only on DuckDB: pin the model to a DuckDB gateway",
                    ));
                }
                writer.append(&query)?
            }
            kind @ (ModelKind::ScdType2ByTime { .. } | ModelKind::ScdType2ByColumn { .. }) => {
                writer.history(kind, &macro_ctx)?
            }
            other => {
                return Err(LakeError::unsupported(
                    format!("building {} models in batches", other.name()),
                    "this kind is built in one piece",
                ));
            }
        };
        writer.statements(&model.post_statements, &macro_ctx)?;
        let snapshot_id = catalog.adopt_commit(session, &backfill.table)?;
        let audited = audited_relation(model, &backfill.table, Some((start, end)));
        total.audits_passed += run_audits(ctx, session, backfill, &macro_ctx, &audited, observer)?;
        total.rows = total.rows.zip(rows).map(|(a, b)| a + b);
        total.snapshot_id = snapshot_id.or(total.snapshot_id);
        record(Interval {
            name: backfill.name.clone(),
            version: backfill.version.clone(),
            start_ts: start.and_utc().timestamp_millis(),
            end_ts: end.and_utc().timestamp_millis(),
            created_ts: Utc::now().timestamp_millis(),
            write_id: snapshot_id.map(|id| format!("iceberg:{id}")),
        })?;
    }
    Ok(total)
}

/// The writes of one model version, each one engine statement and so one Iceberg snapshot.
struct Writer<'a> {
    ctx: &'a BuildContext<'a>,
    engine: &'a SparkEngine,
    catalog: &'a dyn SharedCatalog,
    connection: &'a SparkConnection,
    backfill: &'a Backfill,
    model: &'a Model,
    columns_of: &'a dyn Fn(&[String]) -> Option<Vec<String>>,
}

impl Writer<'_> {
    fn table(&self) -> String {
        spark_table(self.connection, &self.backfill.table)
    }

    /// Creates the physical table (in lake's catalog, at its place in the warehouse) with the query's
    /// columns, unless it exists.
    fn to_spark(&self, duckdb_sql: &str) -> Result<String> {
        to_spark(self.model, self.connection, self.columns_of, duckdb_sql)
    }

    fn ensure_table(&self, query: &str) -> Result<()> {
        let schema = self.engine.schema(query, || {
            format!("reading the columns of {}", self.backfill.name)
        })?;
        self.catalog.ensure_table(&self.backfill.table, &schema)
    }

    fn run(&self, sql: &str, what: &str) -> Result<Option<u64>> {
        self.engine
            .execute(sql, || format!("{what} {}", self.backfill.name))
            .map_err(|e| LakeError::Execution {
                model: self.backfill.name.to_string(),
                message: crate::error::error_chain(&e),
            })
    }

    fn overwrite(&self, query: &str) -> Result<Option<u64>> {
        self.ensure_table(query)?;
        self.run(
            &format!(
                "INSERT OVERWRITE {} SELECT * FROM ({query}) AS lake_rows",
                self.table()
            ),
            "writing",
        )
    }

    fn append(&self, query: &str) -> Result<Option<u64>> {
        self.ensure_table(query)?;
        self.run(
            &format!(
                "INSERT INTO {} SELECT * FROM ({query}) AS lake_rows",
                self.table()
            ),
            "appending to",
        )
    }

    /// Rows in the batch's range are replaced by the query's rows in that range, in one MERGE: every new row
    /// is inserted (nothing matches `ON false`), every old row of the range deleted.
    fn replace_range(
        &self,
        query: &str,
        time_column: &TimeColumn,
        (start, end): Range,
    ) -> Result<Option<u64>> {
        self.ensure_table(query)?;
        let spark = |column: &str| {
            transpile_expr(&range_predicate(column, time_column, start, end))
                .map_err(|e| untranslatable(self.model, e))
        };
        let in_range = spark(&quote_ident_always(&time_column.column))?;
        let target_in_range = spark(&format!(
            "lake_target.{}",
            quote_ident_always(&time_column.column)
        ))?;
        self.run(
            &format!(
                "MERGE INTO {} AS lake_target \
                 USING (SELECT * FROM ({query}) AS lake_batch WHERE {in_range}) AS lake_source ON false \
                 WHEN NOT MATCHED THEN INSERT * \
                 WHEN NOT MATCHED BY SOURCE AND {target_in_range} THEN DELETE",
                self.table()
            ),
            "writing a batch of",
        )
    }

    /// Rows whose keys match a new row are replaced by it; the others are inserted (MERGE, keys compared
    /// null-safely as DuckDB's writer does).
    fn merge(&self, query: &str, keys: &[String]) -> Result<Option<u64>> {
        self.ensure_table(query)?;
        let on = keys
            .iter()
            .map(|k| format!("lake_target.{k} <=> lake_source.{k}", k = backticked(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        self.run(
            &format!(
                "MERGE INTO {} AS lake_target USING ({query}) AS lake_source ON {on} \
                 WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
                self.table()
            ),
            "merging into",
        )
    }

    /// The partitions present in the query's rows are replaced by them: one overwrite of the table with its
    /// other partitions kept.
    fn replace_partitions(&self, query: &str, columns: &[String]) -> Result<Option<u64>> {
        if columns.is_empty() {
            return Err(LakeError::Config {
                message: format!(
                    "`{}` is INCREMENTAL_BY_PARTITION but has no partitioned_by",
                    self.model.meta.name
                ),
                help: Some("add `partitioned_by (column, ...)` to the MODEL block".into()),
            });
        }
        self.ensure_table(query)?;
        let same = columns
            .iter()
            .map(|c| format!("lake_new.{c} <=> lake_target.{c}", c = backticked(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        self.run(
            &format!(
                "INSERT OVERWRITE {table} WITH lake_new AS ({query}) \
                 SELECT * FROM {table} AS lake_target WHERE NOT EXISTS (SELECT 1 FROM lake_new WHERE {same}) \
                 UNION ALL SELECT * FROM lake_new",
                table = self.table()
            ),
            "replacing partitions of",
        )
    }

    /// SCD type 2: the new full history, computed by the engine from the current rows and the existing
    /// history, replaces the table in one overwrite.
    fn history(&self, kind: &ModelKind, macro_ctx: &MacroContext) -> Result<Option<u64>> {
        let Some(history) = scd::Scd2::for_kind(kind, self.ctx.execution_time) else {
            return Err(LakeError::unsupported(
                format!("building {} as history", kind.name()),
                "only SCD_TYPE_2 kinds keep history",
            ));
        };
        let duckdb_query = executable_query_for(self.ctx, self.backfill.model, macro_ctx, true)?;
        let spark_query = self.to_spark(&duckdb_query)?;
        let columns: Vec<String> = self
            .engine
            .schema(&spark_query, || {
                format!("reading the columns of {}", self.backfill.name)
            })?
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| c != history.valid_from && c != history.valid_to)
            .collect();
        for key in history.unique_key {
            if !columns.contains(key) {
                return Err(LakeError::Execution {
                    model: self.backfill.name.to_string(),
                    message: format!("the unique_key column `{key}` is not in the query's columns"),
                });
            }
        }
        let exists = self.catalog.table_exists(&self.backfill.table)?;
        let existing = format!(
            "{}.{}",
            quote_ident_always(&self.ctx.project.default_catalog),
            self.backfill.table.sql()
        );
        let duckdb_history =
            history.history_sql(&duckdb_query, &columns, exists.then_some(existing.as_str()));
        let spark_history = self.to_spark(&duckdb_history)?;
        self.overwrite(&spark_history)
    }

    /// Pre- and post-statements, rendered, translated and run on the engine.
    fn statements(&self, statements: &[Statement], macro_ctx: &MacroContext) -> Result<()> {
        for statement in statements {
            let source = self.ctx.project.jinja(self.model, statement, macro_ctx)?;
            let rendered = macros::render(&source, macro_ctx).map_err(|e| {
                let at = if statement.jinja { 0 } else { e.offset };
                LakeError::from(
                    self.model
                        .file
                        .error(statement.offset + at, e.len, e.message)
                        .with_optional_help(e.help),
                )
            })?;
            if rendered.sql.trim().is_empty() {
                continue;
            }
            let sql = self.to_spark(&rendered.sql)?;
            self.run(&sql, "running a statement of")?;
        }
        Ok(())
    }
}
