//! DuckDB's views of Iceberg tables: each table exposed as a view over its live Parquet files (or no rows in
//! its columns), refreshed after commits, and kept in step with a catalog other machines commit to.

use std::collections::{HashMap, HashSet};

use super::{
    IcebergStorage, Known, PROXY_COMMENT, duckdb_path, duckdb_type, files_select, known,
    proxy_comment,
};
use crate::engine::Session;
use crate::error::Result;
use crate::profile::{self, Phase};
use crate::snapshot::PhysicalTable;
use crate::sql::{quote_ident, quote_literal};
use crate::storage::duckdb_file::in_transaction;

impl IcebergStorage {
    /// Points DuckDB's view of `table` at its current Parquet files.
    pub(super) fn refresh_view(&self, session: &Session, table: &PhysicalTable) -> Result<()> {
        match self.known(table)? {
            Some(known) => self.expose(session, table, &known),
            None => Ok(()),
        }
    }

    /// (Re)creates DuckDB's view of an Iceberg table: its live files, or no rows in its columns when it has
    /// none (DuckDB cannot read an empty list of files).
    pub(super) fn expose(
        &self,
        session: &Session,
        table: &PhysicalTable,
        known: &Known,
    ) -> Result<()> {
        if self.views_deferred().contains(table) {
            return Ok(());
        }
        let _timer = profile::time(Phase::Views);
        let files: Vec<String> = known
            .live
            .iter()
            .map(|e| duckdb_path(e.file_path()))
            .collect();
        let body = files_select(known, &files);
        let name = format!("{}.{}", quote_ident(&self.duckdb_catalog), table.sql());
        let comment = proxy_comment(known.location());
        let context = || format!("exposing {table} to DuckDB");
        // DuckDB schemas are never dropped, so one this process has made or seen needs no statement again.
        if !known::lock(&self.duckdb_schemas).contains(&table.schema) {
            session.execute(
                &format!(
                    "CREATE SCHEMA IF NOT EXISTS {}.{}",
                    quote_ident(&self.duckdb_catalog),
                    quote_ident(&table.schema),
                ),
                context,
            )?;
            known::lock(&self.duckdb_schemas).insert(table.schema.clone());
        }
        // One transaction, so one write to DuckDB's log: the view and the comment that names its metadata.
        in_transaction(
            session,
            &format!(
                "CREATE OR REPLACE VIEW {name} AS {body};\n\
                 COMMENT ON VIEW {name} IS {};",
                quote_literal(&comment)
            ),
            context,
        )
    }

    pub(super) fn views_deferred(&self) -> std::sync::MutexGuard<'_, HashSet<PhysicalTable>> {
        // Each operation on the set is one insert or remove, so it stays valid whatever panicked.
        known::lock(&self.deferred_views)
    }

    /// Makes this machine's DuckDB views of the Iceberg tables match the shared catalog: tables committed
    /// elsewhere (or since the DuckDB file was made) are exposed or refreshed, and views of tables dropped
    /// from the catalog go. Only views whose metadata file differs are touched.
    pub(super) fn sync_proxies(&self, session: &Session) -> Result<()> {
        let _timer = profile::time(Phase::Views);
        let mut local: HashMap<PhysicalTable, String> = session
            .query_rows(
                &format!(
                    "SELECT schema_name, view_name, comment FROM duckdb_views() \
                     WHERE database_name = {} AND starts_with(comment, {})",
                    quote_literal(&self.duckdb_catalog),
                    quote_literal(PROXY_COMMENT)
                ),
                || "listing Iceberg tables exposed to DuckDB".into(),
            )?
            .into_iter()
            .filter_map(PhysicalTable::with_text)
            .collect();
        let entries = self.runtime.block_on(self.catalog.tables_with_prefix(""))?;
        // A table this file already shows through a proxy is one of lake's (an in-place table created since
        // the storage was opened, too); environment names are never proxies.
        let tables: Vec<(PhysicalTable, String)> = entries
            .into_iter()
            .map(|e| {
                let table = PhysicalTable {
                    schema: e.namespace,
                    table: e.name,
                };
                (table, e.metadata_location)
            })
            .filter(|(t, _)| self.duckdb.is_physical(&t.schema, &t.table) || local.contains_key(t))
            .collect();
        for (table, metadata_location) in tables {
            if local.remove(&table) == Some(proxy_comment(&metadata_location)) {
                continue;
            }
            self.refresh_view(session, &table)?;
        }
        for gone in local.keys() {
            session.execute(
                &format!(
                    "DROP VIEW IF EXISTS {}.{}",
                    quote_ident(&self.duckdb_catalog),
                    gone.sql()
                ),
                || format!("dropping DuckDB's view of {gone}, which left the catalog"),
            )?;
        }
        Ok(())
    }
}

/// DuckDB reading some of the table's data files. Once the table's columns have changed, files are read
/// through its current schema by Iceberg field id, as any Iceberg reader does: a column a file predates reads
/// NULL, a widened one is cast, a dropped one is not read.
pub(super) fn read_parquet(known: &Known, files: &[String], with_filename: bool) -> String {
    let list = files
        .iter()
        .map(|f| quote_literal(f))
        .collect::<Vec<_>>()
        .join(", ");
    let filename = if with_filename {
        ", filename = true"
    } else {
        ""
    };
    let metadata = known.table.metadata();
    if metadata.schemas_iter().len() <= 1 {
        return format!("read_parquet([{list}]{filename})");
    }
    let mapping = metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {{name: {}, type: {}, default_value: NULL}}",
                f.id,
                quote_literal(&f.name),
                quote_literal(&duckdb_type(&f.field_type))
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("read_parquet([{list}]{filename}, schema = MAP {{{mapping}}})")
}
