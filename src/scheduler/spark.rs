//! Building a model version on a Spark Connect engine: the query translated to Spark SQL, each kind's write
//! as one engine statement (one Iceberg snapshot) against the catalog lake shares with the engine, then the
//! commit adopted by lake (DuckDB's view, the snapshot id recorded with the interval) and the audits run.

use arrow::datatypes::Schema as ArrowSchema;

use super::audits::{audited_relation, run_audits};
use super::finish::{batch_interval, batch_macro_context, finish_in_one_piece, render_statement};
use super::render::{Inlining, executable_query_for, macro_context, range_predicate};
use super::scd;
use super::write::{self, KeyedMerge, KindWriter};
use super::{BuildContext, Observer};
use crate::config::SparkConnection;
use crate::engine::Session;
use crate::engine::spark::{SparkEngine, sql_type};
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::Backfill;
use crate::project::ModelId;
use crate::project::macros::MacroContext;
use crate::project::model::{Model, Statement, TimeColumn};
use crate::snapshot::PhysicalTable;
use crate::sql::quote_ident_always;
use crate::sql::spark::{Target, Untranslatable, qualify_names, transpile, transpile_expr};
use crate::state::Interval;
use crate::storage::{SharedCatalog, WriteStats};

/// Model `model`'s SQL (rendered for execution) as Spark SQL, or a located error: translated from DuckDB's
/// dialect, or, for a `dialect spark` model, as written with its table names resolved.
/// `columns_of` answers the columns of a table the query reads (for `* EXCLUDE`).
pub fn to_spark(
    model: &Model,
    connection: &SparkConnection,
    columns_of: &dyn Fn(&[String]) -> Option<Vec<String>>,
    duckdb_sql: &str,
) -> Result<String> {
    if writes_spark_sql(model) {
        return qualify_names(duckdb_sql, &connection.catalog)
            .map_err(|e| untranslatable(model, e));
    }
    let target = Target {
        catalog: &connection.catalog,
        columns_of,
    };
    transpile(duckdb_sql, &target).map_err(|e| untranslatable(model, e))
}

/// A model declared `dialect spark`: its SQL runs on the engine as written (only names are resolved).
fn writes_spark_sql(model: &Model) -> bool {
    matches!(
        model.meta.dialect.as_str(),
        "spark" | "spark2" | "databricks"
    )
}

/// The model's query rendered and translated for the engine, VIEW parents inlined (the engine cannot read
/// lake's DuckDB views).
pub fn spark_query(
    ctx: &BuildContext<'_>,
    model: ModelId,
    connection: &SparkConnection,
    macro_ctx: &MacroContext,
    columns_of: &dyn Fn(&[String]) -> Option<Vec<String>>,
) -> Result<String> {
    let duckdb = executable_query_for(ctx, model, macro_ctx, &Inlining::VIEWS)?;
    to_spark(ctx.project.model(model), connection, columns_of, &duckdb)
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
    // ASCII lowercasing keeps every byte offset of the file valid.
    let text = model.file.text.to_ascii_lowercase();
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

/// The columns of the catalog's table `…schema.table` (as a query names it), for expanding `* EXCLUDE`.
pub fn table_columns(catalog: &dyn SharedCatalog, name: &[String]) -> Option<Vec<String>> {
    let [.., schema, table] = name else {
        return None;
    };
    let table = PhysicalTable {
        schema: schema.clone(),
        table: table.clone(),
    };
    let schema = catalog.schema(&table).ok()??;
    Some(schema.fields().iter().map(|f| f.name().clone()).collect())
}

fn spark_table(connection: &SparkConnection, table: &PhysicalTable) -> String {
    format!(
        "{}.{}.{}",
        backticked(&connection.catalog),
        backticked(&table.schema),
        backticked(&table.table)
    )
}

/// `a.c <=> b.c AND …` over `columns`: equal, NULLs included (DuckDB's writer uses IS NOT DISTINCT FROM).
fn same_values(columns: &[String], a: &str, b: &str) -> String {
    columns
        .iter()
        .map(|c| format!("{a}.{c} <=> {b}.{c}", c = backticked(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
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
    let model = ctx.project.model(backfill.model);
    let columns_of = |name: &[String]| table_columns(catalog, name);
    let writer = Writer {
        columns_of: &columns_of,
        session,
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
        let query = writer.render(&macro_ctx)?;
        let mut stats =
            write::write_whole(&writer, model, backfill.action, &query, ctx.execution_time)?;
        writer.statements(&model.post_statements, &macro_ctx)?;
        stats.write = catalog.adopt_commit(session, &backfill.table)?;
        return finish_in_one_piece(ctx, session, backfill, &macro_ctx, stats, record, observer);
    }
    let mut total = WriteStats {
        rows: Some(0),
        ..WriteStats::default()
    };
    for &(start, end) in &backfill.batches {
        let macro_ctx = batch_macro_context(ctx, backfill, (start, end));
        writer.statements(&model.pre_statements, &macro_ctx)?;
        let query = writer.render(&macro_ctx)?;
        let written = write::write_batch(&writer, model, &query, (start, end), ctx.execution_time)?;
        writer.statements(&model.post_statements, &macro_ctx)?;
        let write = catalog.adopt_commit(session, &backfill.table)?;
        let audited = audited_relation(model, &backfill.table, Some((start, end)), None);
        let audits_passed = run_audits(ctx, session, backfill, &macro_ctx, &audited, observer)?;
        let stats = WriteStats {
            write,
            audits_passed,
            ..written
        };
        record(batch_interval(backfill, (start, end), stats.write_id()))?;
        total.absorb(stats);
    }
    Ok(total)
}

/// Renders and translates what each backfill of a Spark gateway's model will send to its engine, so a
/// construct Spark cannot express stops the plan, located in the model's file, instead of failing on the
/// cluster halfway through an apply.
pub fn check_translatable(ctx: &BuildContext<'_>, backfills: &[Backfill]) -> Result<()> {
    // Table columns are only known once parents are built; whether `* EXCLUDE` can be expanded is.
    let any_columns = |_: &[String]| Some(Vec::new());
    let mut errors = Vec::new();
    for backfill in backfills {
        let model = ctx.project.model(backfill.model);
        let Some(connection) = ctx.project.spark_gateway(backfill.model) else {
            continue;
        };
        let mut macro_ctx = macro_context(ctx, backfill.model, &backfill.table, "evaluating");
        if let Some(&(start, end)) = backfill.batches.first() {
            macro_ctx.start = start;
            macro_ctx.end = end;
        }
        let checked = spark_query(ctx, backfill.model, connection, &macro_ctx, &any_columns)
            .and_then(|_| {
                for statement in model.pre_statements.iter().chain(&model.post_statements) {
                    if let Some(sql) = render_statement(ctx.project, model, statement, &macro_ctx)?
                    {
                        to_spark(model, connection, &any_columns, &sql)?;
                    }
                }
                Ok(())
            });
        if let Err(e) = checked {
            errors.push(e);
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(LakeError::Many(errors)),
    }
}

/// The writes of one model version, each one engine statement and so one Iceberg snapshot.
struct Writer<'a> {
    ctx: &'a BuildContext<'a>,
    /// Lake's DuckDB, which reads every table of the catalog: it says what column types a query has, so a
    /// table the engine writes has the types the same model has on DuckDB.
    session: &'a Session,
    engine: &'a SparkEngine,
    catalog: &'a dyn SharedCatalog,
    connection: &'a SparkConnection,
    backfill: &'a Backfill,
    model: &'a Model,
    columns_of: &'a dyn Fn(&[String]) -> Option<Vec<String>>,
}

/// A model's query as DuckDB runs it (for its column types) and as the engine runs it.
struct Rendered {
    duckdb: String,
    spark: String,
}

impl Writer<'_> {
    fn table(&self) -> String {
        spark_table(self.connection, &self.backfill.table)
    }

    fn to_spark(&self, duckdb_sql: &str) -> Result<String> {
        to_spark(self.model, self.connection, self.columns_of, duckdb_sql)
    }

    fn render(&self, macro_ctx: &MacroContext) -> Result<Rendered> {
        let duckdb =
            executable_query_for(self.ctx, self.backfill.model, macro_ctx, &Inlining::VIEWS)?;
        let spark = self.to_spark(&duckdb)?;
        Ok(Rendered { duckdb, spark })
    }

    /// The physical table's columns: the table's own when it exists, else the ones DuckDB gives the query
    /// (nothing runs: DuckDB only binds it) or, for a `dialect spark` model, the engine's analyser; lake
    /// creates the table with them in its catalog.
    fn columns(&self, duckdb_query: &str) -> Result<ArrowSchema> {
        if let Some(schema) = self.catalog.schema(&self.backfill.table)? {
            return Ok(schema);
        }
        if writes_spark_sql(self.model) {
            let schema = self.engine.schema(&self.to_spark(duckdb_query)?, || {
                format!("reading the columns of {}", self.backfill.name)
            })?;
            self.catalog.ensure_table(&self.backfill.table, &schema)?;
            return Ok(schema);
        }
        let schema = self.session.query_each(
            &format!("SELECT * FROM ({duckdb_query}) AS lake_shape LIMIT 0"),
            || format!("reading the columns of {}", self.backfill.name),
            &mut |_, _| Ok(()),
        )?;
        self.catalog.ensure_table(&self.backfill.table, &schema)?;
        Ok(schema.as_ref().clone())
    }

    /// The engine's rows cast to the table's column types, by name and in the table's order: the engine's
    /// type rules (decimal precision, integer widths) differ from DuckDB's, the table's do not.
    fn shaped(&self, query: &Rendered) -> Result<String> {
        let schema = self.columns(&query.duckdb)?;
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                let name = backticked(f.name());
                let spark_type = sql_type(f.data_type()).ok_or_else(|| {
                    LakeError::unsupported(
                        format!("the {} column `{}` on a Spark engine", f.data_type(), f.name()),
                        "cast it to a standard type (numbers, strings, dates, timestamps, decimals, lists)",
                    )
                })?;
                Ok(format!("CAST({name} AS {spark_type}) AS {name}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(format!(
            "SELECT {} FROM ({}) AS lake_rows",
            columns.join(", "),
            query.spark
        ))
    }

    /// One write: the rows it wrote, when the engine says.
    fn write(&self, sql: &str, what: &str) -> Result<WriteStats> {
        Ok(WriteStats {
            rows: self.run(sql, what)?,
            ..WriteStats::default()
        })
    }

    fn run(&self, sql: &str, what: &str) -> Result<Option<u64>> {
        self.engine
            .execute(sql, || format!("{what} {}", self.backfill.name))
            .map_err(|e| LakeError::Execution {
                model: self.backfill.name.to_string(),
                message: crate::error::error_chain(&e),
            })
    }

    /// Pre- and post-statements, rendered, translated and run on the engine.
    fn statements(&self, statements: &[Statement], macro_ctx: &MacroContext) -> Result<()> {
        for statement in statements {
            if let Some(sql) = render_statement(self.ctx.project, self.model, statement, macro_ctx)?
            {
                self.run(&self.to_spark(&sql)?, "running a statement of")?;
            }
        }
        Ok(())
    }
}

/// Each write is one engine statement, and so one Iceberg snapshot.
impl KindWriter for Writer<'_> {
    type Query = Rendered;

    fn overwrite(&self, query: &Rendered) -> Result<WriteStats> {
        let rows = self.shaped(query)?;
        self.write(
            &format!("INSERT OVERWRITE {} {rows}", self.table()),
            "writing",
        )
    }

    /// An append cannot be taken back, and lake audits appends before writing only on DuckDB.
    fn append(&self, query: &Rendered) -> Result<WriteStats> {
        if !self
            .ctx
            .project
            .model_audits(self.backfill.model)
            .is_empty()
        {
            return Err(LakeError::unsupported(
                format!(
                    "audits of the appending model {} on a Spark gateway",
                    self.model.meta.name
                ),
                "an append cannot be taken back, and lake audits appends before writing only on DuckDB: pin the model to a DuckDB gateway",
            ));
        }
        let rows = self.shaped(query)?;
        self.write(
            &format!("INSERT INTO {} {rows}", self.table()),
            "appending to",
        )
    }

    /// Rows in the batch's range are replaced by the query's rows in that range, in one MERGE: every new row
    /// is inserted (nothing matches `ON false`), every old row of the range deleted.
    fn replace_range(
        &self,
        query: &Rendered,
        time_column: &TimeColumn,
        (start, end): Range,
    ) -> Result<WriteStats> {
        let rows = self.shaped(query)?;
        let spark = |column: &str| {
            transpile_expr(&range_predicate(column, time_column, start, end))
                .map_err(|e| untranslatable(self.model, e))
        };
        let in_range = spark(&quote_ident_always(&time_column.column))?;
        let target_in_range = spark(&format!(
            "lake_target.{}",
            quote_ident_always(&time_column.column)
        ))?;
        self.write(
            &format!(
                "MERGE INTO {} AS lake_target \
                 USING (SELECT * FROM ({rows}) AS lake_batch WHERE {in_range}) AS lake_source ON false \
                 WHEN NOT MATCHED THEN INSERT * \
                 WHEN NOT MATCHED BY SOURCE AND {target_in_range} THEN DELETE",
                self.table()
            ),
            "writing a batch of",
        )
    }

    /// Rows whose keys match a new row are replaced by it; the others are inserted (MERGE, keys compared
    /// null-safely as DuckDB's writer does).
    /// On a Spark engine lake merges by replacing the whole matched row, so `when_matched` and
    /// `merge_filter` are refused.
    fn merge(&self, query: &Rendered, merge: &KeyedMerge<'_>) -> Result<WriteStats> {
        if let Some(key) = [
            ("when_matched", merge.when_matched),
            ("merge_filter", merge.merge_filter),
        ]
        .into_iter()
        .find_map(|(key, value)| value.is_some().then_some(key))
        {
            return Err(LakeError::unsupported(
                format!("`{key}` of {} on a Spark gateway", self.model.meta.name),
                "on a Spark engine lake merges by replacing the whole matched row; build the model on DuckDB (its gateway) or remove the property",
            ));
        }
        let rows = self.shaped(query)?;
        let on = same_values(merge.unique_key, "lake_target", "lake_source");
        self.write(
            &format!(
                "MERGE INTO {} AS lake_target USING ({rows}) AS lake_source ON {on} \
                 WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
                self.table()
            ),
            "merging into",
        )
    }

    /// The partitions present in the query's rows are replaced by them: one overwrite of the table with its
    /// other partitions kept.
    fn replace_partitions(&self, query: &Rendered, columns: &[String]) -> Result<WriteStats> {
        let rows = self.shaped(query)?;
        let same = same_values(columns, "lake_new", "lake_target");
        self.write(
            &format!(
                "INSERT OVERWRITE {table} WITH lake_new AS ({rows}) \
                 SELECT * FROM {table} AS lake_target WHERE NOT EXISTS (SELECT 1 FROM lake_new WHERE {same}) \
                 UNION ALL SELECT * FROM lake_new",
                table = self.table()
            ),
            "replacing partitions of",
        )
    }

    /// SCD type 2: the new full history, computed by the engine from the current rows and the existing
    /// history, replaces the table in one overwrite.
    fn history(&self, query: &Rendered, history: &scd::Scd2<'_>) -> Result<WriteStats> {
        if writes_spark_sql(self.model) {
            return Err(LakeError::unsupported(
                format!(
                    "SCD type 2 history of the `dialect spark` model {}",
                    self.model.meta.name
                ),
                "lake computes history with DuckDB-dialect SQL it translates: write the model in DuckDB's dialect",
            ));
        }
        let columns: Vec<String> = self
            .session
            .query_each(
                &format!("SELECT * FROM ({}) AS lake_shape LIMIT 0", query.duckdb),
                || format!("reading the columns of {}", self.backfill.name),
                &mut |_, _| Ok(()),
            )?
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let columns = history.history_columns(columns, &self.backfill.name.to_string())?;
        let exists = self.catalog.schema(&self.backfill.table)?.is_some();
        let existing = format!(
            "{}.{}",
            quote_ident_always(&self.ctx.project.default_catalog),
            self.backfill.table.sql()
        );
        let duckdb =
            history.history_sql(&query.duckdb, &columns, exists.then_some(existing.as_str()));
        let spark = self.to_spark(&duckdb)?;
        self.overwrite(&Rendered { duckdb, spark })
    }

    fn create_view(&self, _query: &Rendered) -> Result<WriteStats> {
        Err(LakeError::Bug(format!(
            "{} was sent to the Spark engine as a view",
            self.backfill.name
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::spark::Target;

    #[test]
    fn scd2_history_translates_for_the_engine_without_duckdb_only_syntax() {
        let keys = ["id".to_string()];
        let checked = ["tier".to_string()];
        let history = scd::Scd2 {
            unique_key: &keys,
            valid_from: "valid_from",
            valid_to: "valid_to",
            invalidate_hard_deletes: false,
            detection: scd::ChangeDetection::ByColumn {
                columns: Some(&checked),
                execution_time_as_valid_from: false,
            },
            execution_time: crate::intervals::parse_datetime("2024-06-01").unwrap(),
        };
        let columns = ["id", "name", "tier"].map(String::from);
        let target = Target {
            catalog: "lake",
            columns_of: &|_| None,
        };
        for existing in [None, Some("\"db\".\"lake__shop\".\"h\"")] {
            let sql = history.history_sql(
                "SELECT id, name, tier FROM \"lake__shop\".\"c\"",
                &columns,
                existing,
            );
            let spark = transpile(&sql, &target).expect("the history SQL translates");
            // Spark has no DISTINCT ON and reads TIMESTAMP as one with a time zone.
            assert!(!spark.contains("DISTINCT ON"), "{spark}");
            assert!(spark.contains("AS __lake_qualify"), "{spark}");
            assert!(!spark.contains("AS TIMESTAMP)"), "{spark}");
            assert!(spark.contains("`lake`.`lake__shop`.`c`"), "{spark}");
            if existing.is_some() {
                assert!(spark.contains("`lake`.`lake__shop`.`h`"), "{spark}");
            }
        }
    }
}
