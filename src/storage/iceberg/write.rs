//! Writing Iceberg tables: DuckDB's rows as Parquet data files (partitioned, rolled at the target size),
//! committed as one snapshot per write (whole, range rewrites, merges), and staged files for concurrent batches.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use iceberg::MetadataLocation;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use parquet::file::properties::WriterProperties;

use super::commit::{self, Removal};
use super::known::{self, Known};
use super::prune::TimePrune;
use super::views::read_parquet;
use super::{
    IcebergStorage, files_select, iceberg_err, partitioned, snapshot_write_id, with_arrow,
};
use crate::engine::Session;
use crate::error::{LakeError, LakehouseError, Result};
use crate::profile::{self, Phase};
use crate::snapshot::PhysicalTable;
use crate::storage::{StagedRows, StagedWrites, TimeRange, WriteStats};

impl IcebergStorage {
    /// `query` sorted so each of `table`'s partitions comes in one run (`partitioned::ordered`), or `None`
    /// when the table is not partitioned. The sort keys are found once per table.
    pub(super) fn ordered_by_partition(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<Option<String>> {
        let partitioning = self.partitioning(table);
        if partitioning.is_empty() {
            return Ok(None);
        }
        let cached = known::lock(&self.partition_order).get(table).cloned();
        let keys = match cached {
            Some(keys) => keys,
            None => {
                let described =
                    session.describe(query, || format!("reading the columns of {table}"))?;
                let columns: Vec<&str> = described.iter().map(|(name, _)| name.as_str()).collect();
                let keys = partitioned::order_keys(table, &columns, &partitioning)?;
                known::lock(&self.partition_order).insert(table.clone(), keys.clone());
                keys
            }
        };
        Ok(Some(partitioned::ordered(query, &keys)))
    }

    /// Writes a pending table's metadata as it is (no snapshot) and adds it to the catalog.
    pub(super) async fn create_empty(&self, pending: &Known) -> Result<Known> {
        let table = &pending.table;
        let context = || format!("creating {}", table.identifier());
        let location = pending
            .location()
            .parse::<MetadataLocation>()
            .map_err(iceberg_err(context()))?;
        table
            .metadata()
            .write_to(table.file_io(), &location)
            .await
            .map_err(iceberg_err(context()))?;
        let _timer = profile::time(Phase::CatalogCommit);
        self.catalog
            .insert_new(table.identifier(), pending.location())
            .await?;
        let created = Known {
            pending: false,
            ..pending.clone()
        };
        self.known.put(created.clone());
        Ok(created)
    }

    /// Runs `query` and writes its rows as Parquet data files of `table` (created on first use), batch by
    /// batch: only one batch and the open row group are in memory at a time. `base` is the table as the
    /// caller read it, when the write depends on that state (the commit then fails if it moved meanwhile).
    pub(super) fn write_files(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        base: Option<Known>,
    ) -> Result<(Known, Vec<DataFile>)> {
        let mut target: Option<(Known, Arc<ArrowSchema>)> = base.map(with_arrow).transpose()?;
        let ordered = self.ordered_by_partition(session, table, query)?;
        let sorted = ordered.is_some();
        let query = ordered.as_deref().unwrap_or(query);
        let mut writer = None;
        let query_timer = profile::time(Phase::Query);
        let schema = session.query_each(
            query,
            || format!("running the query for {table}"),
            &mut |schema, batch| {
                if target.is_none() {
                    target = Some(self.target(table, schema)?);
                }
                let Some((known, iceberg_arrow)) = target.as_ref() else {
                    return Ok(());
                };
                let _timer = profile::time(Phase::Parquet);
                if writer.is_none() {
                    writer = Some(self.runtime.block_on(new_writer(&known.table, sorted))?);
                }
                let batch = relabel(&batch, iceberg_arrow)
                    .map_err(|e| LakeError::lakehouse(format!("converting rows of {table}"), e))?;
                if let Some(w) = writer.as_mut() {
                    self.runtime
                        .block_on(w.write(batch))
                        .map_err(iceberg_err(format!("writing Parquet for {table}")))?;
                }
                Ok(())
            },
        )?;
        drop(query_timer);
        let (known, _) = match target {
            Some(t) => t,
            None => self.target(table, &schema)?,
        };
        let _timer = profile::time(Phase::Parquet);
        let files = match writer {
            Some(w) => self
                .runtime
                .block_on(w.close())
                .map_err(iceberg_err(format!("finishing Parquet files of {table}")))?,
            None => Vec::new(),
        };
        Ok((known, files))
    }

    pub(super) fn target(
        &self,
        table: &PhysicalTable,
        schema: &SchemaRef,
    ) -> Result<(Known, Arc<ArrowSchema>)> {
        let known = match self.known(table)? {
            Some(t) => t,
            None => self.new_table(table, schema)?,
        };
        with_arrow(known)
    }

    /// One snapshot adding `added` and removing what `removal` names, then the catalog compare-and-swap.
    /// Returns the new snapshot's id (`None`: nothing to commit) and the table as it now is.
    pub(super) fn commit(
        &self,
        table: &PhysicalTable,
        known: &Known,
        added: Vec<DataFile>,
        removal: Removal<'_>,
    ) -> Result<(Option<i64>, Known)> {
        let ident = Self::ident(table);
        self.runtime.block_on(async {
            let metadata_timer = profile::time(Phase::IcebergMetadata);
            let Some(written) = commit::write_snapshot(known, &self.known, added, removal).await?
            else {
                if known.pending {
                    return Ok((None, self.create_empty(known).await?));
                }
                return Ok((None, known.clone()));
            };
            drop(metadata_timer);
            let swap_timer = profile::time(Phase::CatalogCommit);
            let swapped = if known.pending {
                self.catalog.insert_new(&ident, &written.location).await
            } else {
                self.catalog
                    .swap(&ident, known.location(), &written.location)
                    .await
            };
            if let Err(e) = swapped {
                self.known.forget(&ident);
                return Err(e);
            }
            drop(swap_timer);
            let _timer = profile::time(Phase::IcebergMetadata);
            let committed = self
                .table_at(
                    written.metadata,
                    written.location,
                    ident,
                    known.table.file_io(),
                )
                .map_err(iceberg_err(format!("committing {table}")))?;
            for (path, entries) in written.written_entries {
                self.known.remember_manifest(path, entries);
            }
            let now = self
                .known
                .with_manifests(committed, written.manifests)
                .await?;
            self.known.put(now.clone());
            for file in &written.unreachable {
                // Best-effort: a file left behind wastes space, never correctness (nothing refers to it).
                let _ = known.table.file_io().delete(file).await;
            }
            Ok((Some(written.snapshot_id), now))
        })
    }

    /// Copy-on-write: the live files holding a row that `matches` are rewritten without those rows, together
    /// with `new_rows`, and the old files are removed, all in one overwrite snapshot. With `prune`, only the
    /// files whose recorded bounds may hold a row of its range are looked at (`matches` holds for none other).
    /// `matches` reads the table's row as `target`. Returns the stats, the files holding the new rows (as DuckDB
    /// reads them) and the table as it now is.
    pub(super) fn rewrite(
        &self,
        session: &Session,
        table: &PhysicalTable,
        new_rows: NewRows<'_>,
        matches: &str,
        prune: Option<TimePrune<'_>>,
    ) -> Result<(WriteStats, Vec<String>, Known)> {
        // One read of the table for the whole rewrite: the commit's compare-and-swap then refuses it if
        // another writer committed since, rather than keeping rows that writer added to the range.
        let base = self.known(table)?;
        let candidates: Vec<String> = match &base {
            None => Vec::new(),
            Some(existing) => {
                let schema = existing.table.metadata().current_schema();
                let pruned = prune.and_then(|p| Some((p, p.field_id(schema)?)));
                existing
                    .live
                    .iter()
                    .filter(|e| pruned.is_none_or(|(p, field)| p.may_hold(e.data_file(), field)))
                    .map(|e| duckdb_path(e.file_path()))
                    .collect()
            }
        };
        let affected: Vec<String> = match &base {
            Some(existing) if !candidates.is_empty() => {
                let _timer = profile::time(Phase::Query);
                session.query_strings(
                    &format!(
                        "SELECT DISTINCT filename FROM {} AS target WHERE {matches}",
                        read_parquet(existing, &candidates, true)
                    ),
                    || format!("finding the data files of {table} to rewrite"),
                )?
            }
            _ => Vec::new(),
        };
        // The rows the affected files keep, then the new rows: written separately so the new rows are counted
        // on their own, committed together.
        let mut files = Vec::new();
        if let Some(existing) = base.as_ref().filter(|_| !affected.is_empty()) {
            let kept = format!(
                "SELECT * FROM {} AS target WHERE ({matches}) IS NOT TRUE",
                read_parquet(existing, &affected, false)
            );
            files.extend(self.write_files(session, table, &kept, base.clone())?.1);
        }
        let (before, new_files) = match new_rows {
            NewRows::Query(query) => self.write_files(session, table, query, base)?,
            NewRows::Staged(staged) => {
                let Some(base) = base else {
                    self.discard_files(staged);
                    return Err(LakeError::lakehouse(
                        format!("committing staged rows to {table}"),
                        LakehouseError::Table("the table is no longer in the catalog".into()),
                    ));
                };
                if base.table.metadata().current_schema_id() != staged.schema_id {
                    self.discard_files(staged);
                    return Err(LakeError::lakehouse(
                        format!("committing staged rows to {table}"),
                        LakehouseError::Table(
                            "its columns changed after the rows were written; build it again"
                                .into(),
                        ),
                    ));
                }
                (base, staged.files)
            }
        };
        let rows = new_files.iter().map(|f| f.record_count()).sum();
        let written: Vec<String> = new_files
            .iter()
            .map(|f| duckdb_path(f.file_path()))
            .collect();
        files.extend(new_files);
        let removed: HashSet<String> = affected_locations(&before.table, &affected);
        let (snapshot_id, now) = self.commit(table, &before, files, Removal::Files(&removed))?;
        self.expose(session, table, &now)?;
        let stats = WriteStats {
            rows: Some(rows),
            write: snapshot_id.map(snapshot_write_id),
            ..WriteStats::default()
        };
        Ok((stats, written, now))
    }

    /// FULL refresh or append: the query's rows written as new files, the live ones removed or kept.
    pub(super) fn write_whole(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        removal: Removal<'_>,
    ) -> Result<WriteStats> {
        let (before, files) = self.write_files(session, table, query, None)?;
        let rows = files.iter().map(|f| f.record_count()).sum();
        let (snapshot_id, now) = self.commit(table, &before, files, removal)?;
        self.expose(session, table, &now)?;
        Ok(WriteStats {
            rows: Some(rows),
            write: snapshot_id.map(snapshot_write_id),
            ..WriteStats::default()
        })
    }
}

/// Where the rows a rewrite adds come from.
pub(super) enum NewRows<'q> {
    /// A query run by the rewrite.
    Query(&'q str),
    /// Files written before (`StagedWrites::stage_rows`).
    Staged(StagedFiles),
}

/// Rows written as data files of a table, not yet committed to it.
pub(super) struct StagedFiles {
    files: Vec<DataFile>,
    /// The table's schema when the files were written: a commit to another one is refused.
    schema_id: i32,
    /// Removes the files of rows never committed.
    file_io: iceberg::io::FileIO,
}

impl IcebergStorage {
    /// A range replacement: the rows the range held go, `new_rows` come, in one snapshot.
    pub(super) fn rewrite_range(
        &self,
        session: &Session,
        table: &PhysicalTable,
        new_rows: NewRows<'_>,
        range: TimeRange<'_>,
    ) -> Result<WriteStats> {
        let prune = range.bounds.map(|(start, end)| TimePrune {
            column: range.column,
            start,
            end,
        });
        let (mut stats, written, now) =
            self.rewrite(session, table, new_rows, range.predicate, prune)?;
        // The range's rows are now exactly the new rows: the rewritten files kept only rows outside it, and
        // the files left alone hold none of it (their bounds or DuckDB's filter said so).
        stats.range_rows = Some(format!("({})", files_select(&now, &written)));
        Ok(stats)
    }
}

impl StagedWrites for IcebergStorage {
    fn stage_rows(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<StagedRows> {
        // Staging writes into a table that exists: creating it here would race with the other batches.
        let Some(existing) = self.known(table)? else {
            return Err(LakeError::lakehouse(
                format!("writing rows of {table} ahead of their commit"),
                LakehouseError::Table("the table is not in the catalog".into()),
            ));
        };
        let (known, files) = self.write_files(session, table, query, Some(existing))?;
        Ok(StagedRows::new(StagedFiles {
            files,
            schema_id: known.table.metadata().current_schema_id(),
            file_io: known.table.file_io().clone(),
        }))
    }

    fn commit_time_range(
        &self,
        session: &Session,
        table: &PhysicalTable,
        staged: StagedRows,
        range: TimeRange<'_>,
    ) -> Result<WriteStats> {
        let Some(files) = staged.into_inner::<StagedFiles>() else {
            return Err(LakeError::lakehouse(
                format!("committing rows of {table}"),
                LakehouseError::Table("the rows were staged by another storage".into()),
            ));
        };
        self.rewrite_range(session, table, NewRows::Staged(files), range)
    }

    fn discard(&self, staged: StagedRows) {
        if let Some(files) = staged.into_inner::<StagedFiles>() {
            self.discard_files(files);
        }
    }
}

impl IcebergStorage {
    /// Deletes staged files that will never be committed (best-effort: nothing refers to them).
    pub(super) fn discard_files(&self, staged: StagedFiles) {
        self.runtime.block_on(async {
            for file in &staged.files {
                // Best-effort: an uncommitted file is never read, it only wastes space.
                let _ = staged.file_io.delete(file.file_path()).await;
            }
        });
    }
}

/// The manifest locations of files DuckDB reported by their DuckDB path.
pub(super) fn affected_locations(table: &Table, duckdb_paths: &[String]) -> HashSet<String> {
    let local = table.metadata().location().starts_with("file:");
    duckdb_paths
        .iter()
        .map(|p| {
            if local && p.starts_with('/') {
                format!("file://{p}")
            } else {
                p.clone()
            }
        })
        .collect()
}

pub(super) fn duckdb_path(location: &str) -> String {
    location
        .strip_prefix("file://")
        .unwrap_or(location)
        .to_string()
}

pub(super) type UnpartitionedWriter =
    iceberg::writer::base_writer::data_file_writer::DataFileWriter<
        ParquetWriterBuilder,
        DefaultLocationGenerator,
        DefaultFileNameGenerator,
    >;

pub(super) type FileWriterBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// A writer of `table`'s data files; `sorted`: rows come grouped by partition (`partitioned::ordered`).
pub(super) async fn new_writer(table: &Table, sorted: bool) -> Result<partitioned::Writer> {
    let context = || format!("preparing Parquet writes to {}", table.identifier());
    let parquet = ParquetWriterBuilder::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build(),
        table.metadata().current_schema().clone(),
    );
    let location =
        DefaultLocationGenerator::new(table.metadata()).map_err(iceberg_err(context()))?;
    let prefix = format!(
        "lake-{}",
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    // Files roll at Iceberg's default target size (512 MiB), so large models become several files.
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        parquet,
        table.file_io().clone(),
        location,
        DefaultFileNameGenerator::new(prefix, None, DataFileFormat::Parquet),
    );
    partitioned::Writer::new(table, DataFileWriterBuilder::new(rolling), sorted).await
}

/// Gives a DuckDB batch the Iceberg schema (with field ids), casting columns whose Arrow type differs.
pub(super) fn relabel(
    batch: &RecordBatch,
    schema: &Arc<ArrowSchema>,
) -> std::result::Result<RecordBatch, arrow::error::ArrowError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}
