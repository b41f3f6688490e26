//! Iceberg lakehouse storage: model versions as Iceberg tables (SQL catalog, Parquet in a warehouse) read by DuckDB.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema as ArrowSchema, SchemaRef};
use futures::TryStreamExt;
use iceberg::spec::{
    DataFile, DataFileFormat, ManifestList, ManifestListWriter, ManifestWriterBuilder, Operation,
    Snapshot, SnapshotReference, SnapshotRetention, Summary,
};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{
    Catalog, CatalogBuilder, MetadataLocation, NamespaceIdent, TableCreation, TableIdent,
};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::model::quote_ident;
use crate::snapshot::PhysicalTable;
use crate::storage::duckdb_file::DuckDbStorage;
use crate::storage::{Storage, VirtualChange, WriteStats};

/// The catalog name in `iceberg_tables.catalog_name`; deliberately not a database name (pg_lake owns those).
pub const CATALOG_NAME: &str = "lake";

fn iceberg_err(context: impl Into<String>) -> impl FnOnce(iceberg::Error) -> LakeError {
    let context = context.into();
    move |e| LakeError::Lakehouse {
        context,
        message: e.to_string(),
    }
}

/// Physical tables as Iceberg tables in a local warehouse, registered in a SQLite SQL catalog. DuckDB runs the
/// queries and reads each table's current Parquet files through a view, so models and `fetchdf` work unchanged.
pub struct IcebergStorage {
    runtime: tokio::runtime::Runtime,
    catalog: SqlCatalog,
    catalog_db: PathBuf,
    /// Schemas, views and the virtual layer are DuckDB objects, as with DuckDB-file storage.
    duckdb: DuckDbStorage,
    duckdb_catalog: String,
}

impl IcebergStorage {
    /// Opens (creating on first use) the catalog database and the warehouse folder.
    pub fn open(catalog_db: &Path, warehouse: &Path, duckdb_catalog: &str) -> Result<Self> {
        std::fs::create_dir_all(warehouse).map_err(|e| LakeError::io(warehouse, e))?;
        if let Some(dir) = catalog_db.parent() {
            std::fs::create_dir_all(dir).map_err(|e| LakeError::io(dir, e))?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LakeError::io("tokio runtime", e))?;
        let warehouse = warehouse
            .canonicalize()
            .map_err(|e| LakeError::io(warehouse, e))?;
        let catalog = runtime
            .block_on(
                SqlCatalogBuilder::default()
                    .uri(format!("sqlite://{}?mode=rwc", catalog_db.display()))
                    .warehouse_location(format!("file://{}", warehouse.display()))
                    .sql_bind_style(SqlBindStyle::QMark)
                    .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
                    .load(CATALOG_NAME, HashMap::new()),
            )
            .map_err(iceberg_err("opening the Iceberg catalog"))?;
        Ok(IcebergStorage {
            runtime,
            catalog,
            catalog_db: catalog_db.to_path_buf(),
            duckdb: DuckDbStorage::new(duckdb_catalog),
            duckdb_catalog: duckdb_catalog.to_string(),
        })
    }

    fn ident(table: &PhysicalTable) -> TableIdent {
        TableIdent::new(
            NamespaceIdent::new(table.schema.clone()),
            table.table.clone(),
        )
    }

    fn exists(&self, table: &PhysicalTable) -> Result<bool> {
        self.runtime
            .block_on(self.catalog.table_exists(&Self::ident(table)))
            .map_err(iceberg_err(format!("looking up {table}")))
    }

    fn load(&self, table: &PhysicalTable) -> Result<Option<Table>> {
        if !self.exists(table)? {
            return Ok(None);
        }
        self.runtime
            .block_on(self.catalog.load_table(&Self::ident(table)))
            .map(Some)
            .map_err(iceberg_err(format!("loading {table}")))
    }

    fn create(&self, table: &PhysicalTable, schema: &ArrowSchema) -> Result<Table> {
        let iceberg_schema = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(schema)
            .map_err(iceberg_err(format!(
                "mapping the columns of {table} to Iceberg types"
            )))?;
        let namespace = NamespaceIdent::new(table.schema.clone());
        self.runtime.block_on(async {
            if !self
                .catalog
                .namespace_exists(&namespace)
                .await
                .map_err(iceberg_err("reading namespaces"))?
            {
                self.catalog
                    .create_namespace(&namespace, HashMap::new())
                    .await
                    .map_err(iceberg_err(format!("creating namespace {}", table.schema)))?;
            }
            let creation = TableCreation::builder()
                .name(table.table.clone())
                .schema(iceberg_schema)
                .build();
            self.catalog
                .create_table(&namespace, creation)
                .await
                .map_err(iceberg_err(format!("creating {table}")))
        })
    }

    /// Runs `query` and writes its rows as Parquet data files of `table` (created on first use), batch by batch.
    fn write_files(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<(Table, Vec<DataFile>)> {
        let mut target: Option<(Table, Arc<ArrowSchema>)> = None;
        let mut writer = None;
        let schema = session.query_each(
            query,
            || format!("running the query for {table}"),
            &mut |schema, batch| {
                if target.is_none() {
                    target = Some(self.target(table, schema)?);
                }
                let Some((iceberg_table, iceberg_arrow)) = target.as_ref() else {
                    return Ok(());
                };
                if writer.is_none() {
                    writer = Some(self.runtime.block_on(new_writer(iceberg_table))?);
                }
                let batch =
                    relabel(&batch, iceberg_arrow).map_err(|message| LakeError::Lakehouse {
                        context: format!("converting rows of {table}"),
                        message,
                    })?;
                if let Some(w) = writer.as_mut() {
                    self.runtime
                        .block_on(w.write(batch))
                        .map_err(iceberg_err(format!("writing Parquet for {table}")))?;
                }
                Ok(())
            },
        )?;
        let (iceberg_table, _) = match target {
            Some(t) => t,
            None => self.target(table, &schema)?,
        };
        let files = match writer.as_mut() {
            Some(w) => self
                .runtime
                .block_on(w.close())
                .map_err(iceberg_err(format!("finishing Parquet files of {table}")))?,
            None => Vec::new(),
        };
        Ok((iceberg_table, files))
    }

    fn target(
        &self,
        table: &PhysicalTable,
        schema: &SchemaRef,
    ) -> Result<(Table, Arc<ArrowSchema>)> {
        let iceberg_table = match self.load(table)? {
            Some(t) => t,
            None => self.create(table, schema)?,
        };
        let arrow =
            iceberg::arrow::schema_to_arrow_schema(iceberg_table.metadata().current_schema())
                .map_err(iceberg_err(format!("reading the schema of {table}")))?;
        Ok((iceberg_table, Arc::new(arrow)))
    }

    /// Commits `files` as the table's only live files, in one `overwrite` snapshot (or an append on an empty table).
    fn commit_replace(
        &self,
        table: &PhysicalTable,
        iceberg_table: &Table,
        files: Vec<DataFile>,
    ) -> Result<()> {
        let context = format!("committing {table}");
        if iceberg_table.metadata().current_snapshot().is_none() {
            if files.is_empty() {
                return Ok(());
            }
            return self.commit_append(table, iceberg_table, files);
        }
        let metadata = iceberg_table.metadata();
        let file_io = iceberg_table.file_io();
        let old_location = iceberg_table
            .metadata_location()
            .ok_or_else(|| LakeError::Lakehouse {
                context: context.clone(),
                message: "the table has no metadata location".into(),
            })?
            .to_string();
        self.runtime.block_on(async {
            let current = metadata
                .current_snapshot()
                .ok_or_else(|| LakeError::Lakehouse {
                    context: context.clone(),
                    message: "no current snapshot".into(),
                })?;
            let list_bytes = file_io
                .new_input(current.manifest_list())
                .map_err(iceberg_err(&context))?
                .read()
                .await
                .map_err(iceberg_err(&context))?;
            let list = ManifestList::parse_with_version(&list_bytes, metadata.format_version())
                .map_err(iceberg_err(&context))?;
            let snapshot_id = new_snapshot_id(table, metadata);
            let sequence = metadata.next_sequence_number();
            let manifest = |n: usize| {
                file_io
                    .new_output(format!(
                        "{}/metadata/{snapshot_id}-m{n}.avro",
                        metadata.location()
                    ))
                    .map(|out| {
                        ManifestWriterBuilder::new(
                            out,
                            Some(snapshot_id),
                            metadata.current_schema().clone(),
                            metadata.default_partition_spec().as_ref().clone(),
                        )
                        .build_v2_data()
                    })
                    .map_err(iceberg_err(&context))
            };
            let (mut deleted_files, mut deleted_records) = (0u64, 0u64);
            let mut removed = manifest(1)?;
            for manifest_file in list.entries() {
                let loaded = manifest_file
                    .load_manifest(file_io)
                    .await
                    .map_err(iceberg_err(&context))?;
                for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
                    deleted_files += 1;
                    deleted_records += entry.data_file().record_count();
                    removed
                        .add_delete_file(
                            entry.data_file().clone(),
                            entry.sequence_number().unwrap_or(0),
                            entry.file_sequence_number,
                        )
                        .map_err(iceberg_err(&context))?;
                }
            }
            let (added_files, added_records) = (
                files.len() as u64,
                files.iter().map(|f| f.record_count()).sum::<u64>(),
            );
            let mut manifests = Vec::new();
            if !files.is_empty() {
                let mut added = manifest(0)?;
                for file in files {
                    added
                        .add_file(file, sequence)
                        .map_err(iceberg_err(&context))?;
                }
                manifests.push(
                    added
                        .write_manifest_file()
                        .await
                        .map_err(iceberg_err(&context))?,
                );
            }
            if deleted_files > 0 {
                manifests.push(
                    removed
                        .write_manifest_file()
                        .await
                        .map_err(iceberg_err(&context))?,
                );
            }
            let list_path = format!("{}/metadata/snap-{snapshot_id}-0.avro", metadata.location());
            let mut list_writer = ManifestListWriter::v2(
                file_io
                    .new_output(list_path.clone())
                    .map_err(iceberg_err(&context))?
                    .writer()
                    .await
                    .map_err(iceberg_err(&context))?,
                snapshot_id,
                Some(current.snapshot_id()),
                sequence,
            );
            list_writer
                .add_manifests(manifests.into_iter())
                .map_err(iceberg_err(&context))?;
            list_writer.close().await.map_err(iceberg_err(&context))?;
            let summary = Summary {
                operation: Operation::Overwrite,
                additional_properties: HashMap::from([
                    ("added-data-files".to_string(), added_files.to_string()),
                    ("added-records".to_string(), added_records.to_string()),
                    ("deleted-data-files".to_string(), deleted_files.to_string()),
                    ("deleted-records".to_string(), deleted_records.to_string()),
                    ("total-data-files".to_string(), added_files.to_string()),
                    ("total-records".to_string(), added_records.to_string()),
                    ("total-delete-files".to_string(), "0".to_string()),
                ]),
            };
            let snapshot = Snapshot::builder()
                .with_manifest_list(list_path)
                .with_snapshot_id(snapshot_id)
                .with_parent_snapshot_id(Some(current.snapshot_id()))
                .with_sequence_number(sequence)
                .with_summary(summary)
                .with_schema_id(metadata.current_schema_id())
                .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
                .build();
            let new_metadata = metadata
                .clone()
                .into_builder(Some(old_location.clone()))
                .add_snapshot(snapshot)
                .map_err(iceberg_err(&context))?
                .set_ref(
                    "main",
                    SnapshotReference::new(
                        snapshot_id,
                        SnapshotRetention::branch(None, None, None),
                    ),
                )
                .map_err(iceberg_err(&context))?
                .build()
                .map_err(iceberg_err(&context))?
                .metadata;
            let next = old_location
                .parse::<MetadataLocation>()
                .map_err(iceberg_err(&context))?
                .with_next_version();
            new_metadata
                .write_to(file_io, &next)
                .await
                .map_err(iceberg_err(&context))?;
            self.swap_pointer(table, &old_location, &next.to_string())
        })
    }

    fn commit_append(
        &self,
        table: &PhysicalTable,
        iceberg_table: &Table,
        files: Vec<DataFile>,
    ) -> Result<()> {
        let context = format!("appending to {table}");
        let tx = Transaction::new(iceberg_table);
        let tx = tx
            .fast_append()
            .add_data_files(files)
            .apply(tx)
            .map_err(iceberg_err(&context))?;
        self.runtime
            .block_on(tx.commit(&self.catalog))
            .map_err(iceberg_err(&context))?;
        Ok(())
    }

    /// Compare-and-swap of the catalog's metadata pointer, exactly as the JDBC catalog protocol does it.
    fn swap_pointer(&self, table: &PhysicalTable, old: &str, new: &str) -> Result<()> {
        let conn = rusqlite::Connection::open(&self.catalog_db)
            .map_err(|e| LakeError::state("opening the Iceberg catalog", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| LakeError::state("opening the Iceberg catalog", e))?;
        let changed = conn
            .execute(
                "UPDATE iceberg_tables SET metadata_location = ?1, previous_metadata_location = ?2 \
                 WHERE catalog_name = ?3 AND table_namespace = ?4 AND table_name = ?5 AND metadata_location = ?2",
                rusqlite::params![new, old, CATALOG_NAME, table.schema, table.table],
            )
            .map_err(|e| LakeError::state(format!("committing {table}"), e))?;
        if changed == 1 {
            Ok(())
        } else {
            Err(LakeError::StateConflict {
                message: format!(
                    "another writer committed to {table} first; this commit was not applied"
                ),
                help: Some(
                    "rerun the command: the commit is retried from the table's new state".into(),
                ),
            })
        }
    }

    /// Points DuckDB's view of `table` at its current Parquet files (or an empty result shaped like `query`).
    fn refresh_view(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<()> {
        let Some(iceberg_table) = self.load(table)? else {
            return Ok(());
        };
        let files: Vec<String> = self.runtime.block_on(async {
            let scan = iceberg_table
                .scan()
                .select_all()
                .build()
                .map_err(iceberg_err(format!("scanning {table}")))?;
            let tasks: Vec<_> = scan
                .plan_files()
                .await
                .map_err(iceberg_err(format!("scanning {table}")))?
                .try_collect()
                .await
                .map_err(iceberg_err(format!("scanning {table}")))?;
            Ok::<_, LakeError>(
                tasks
                    .iter()
                    .map(|t| local_path(t.data_file_path()))
                    .collect(),
            )
        })?;
        let body = if files.is_empty() {
            format!("SELECT * FROM ({query}) AS q LIMIT 0")
        } else {
            let list = files
                .iter()
                .map(|f| format!("'{}'", f.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT * FROM read_parquet([{list}])")
        };
        let name = format!("{}.{}", quote_ident(&self.duckdb_catalog), table.sql());
        session.execute(&format!("CREATE OR REPLACE VIEW {name} AS {body}"), || {
            format!("exposing {table} to DuckDB")
        })
    }
}

fn local_path(location: &str) -> String {
    location
        .strip_prefix("file://")
        .unwrap_or(location)
        .to_string()
}

fn new_snapshot_id(table: &PhysicalTable, metadata: &iceberg::spec::TableMetadata) -> i64 {
    let mut attempt = 0u64;
    loop {
        let seed = format!(
            "{table}/{}/{}/{attempt}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            std::process::id()
        );
        let digest = Sha256::digest(seed.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        let id = (i64::from_le_bytes(bytes) & i64::MAX).max(1);
        if !metadata.snapshots().any(|s| s.snapshot_id() == id) {
            return id;
        }
        attempt += 1;
    }
}

type Writer = iceberg::writer::base_writer::data_file_writer::DataFileWriter<
    ParquetWriterBuilder,
    DefaultLocationGenerator,
    DefaultFileNameGenerator,
>;

async fn new_writer(table: &Table) -> Result<Writer> {
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
    let rolling = RollingFileWriterBuilder::new_with_default_file_size(
        parquet,
        table.file_io().clone(),
        location,
        DefaultFileNameGenerator::new(prefix, None, DataFileFormat::Parquet),
    );
    DataFileWriterBuilder::new(rolling)
        .build(None)
        .await
        .map_err(iceberg_err(context()))
}

/// Gives a DuckDB batch the Iceberg schema (with field ids), casting columns whose Arrow type differs.
fn relabel(
    batch: &RecordBatch,
    schema: &Arc<ArrowSchema>,
) -> std::result::Result<RecordBatch, String> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type()).map_err(|e| e.to_string())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

impl Storage for IcebergStorage {
    fn ensure_schema(&self, session: &Session, schema: &str) -> Result<()> {
        self.duckdb.ensure_schema(session, schema)
    }

    fn physical_tables(&self, session: &Session) -> Result<Vec<PhysicalTable>> {
        self.duckdb.physical_tables(session)
    }

    fn create_view(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<()> {
        self.duckdb.create_view(session, table, query)
    }

    fn replace_all(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<WriteStats> {
        let (iceberg_table, files) = self.write_files(session, table, query)?;
        let rows = files.iter().map(|f| f.record_count()).sum();
        self.commit_replace(table, &iceberg_table, files)?;
        self.refresh_view(session, table, query)?;
        Ok(WriteStats { rows: Some(rows) })
    }

    fn append(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<WriteStats> {
        let (iceberg_table, files) = self.write_files(session, table, query)?;
        let rows = files.iter().map(|f| f.record_count()).sum();
        if !files.is_empty() {
            self.commit_append(table, &iceberg_table, files)?;
        }
        self.refresh_view(session, table, query)?;
        Ok(WriteStats { rows: Some(rows) })
    }

    fn replace_time_range(
        &self,
        _: &Session,
        table: &PhysicalTable,
        _: &str,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<WriteStats> {
        Err(LakeError::unsupported(
            format!("replacing a time range of the Iceberg table {table}"),
            "incremental writes to Iceberg arrive with incremental models; use `storage: {type: duckdb}` meanwhile",
        ))
    }

    fn merge_by_key(
        &self,
        _: &Session,
        table: &PhysicalTable,
        _: &str,
        _: &[String],
    ) -> Result<WriteStats> {
        Err(LakeError::unsupported(
            format!("merging into the Iceberg table {table}"),
            "incremental writes to Iceberg arrive with incremental models; use `storage: {type: duckdb}` meanwhile",
        ))
    }

    fn update_virtual_layer(&self, session: &Session, changes: &[VirtualChange]) -> Result<()> {
        self.duckdb.update_virtual_layer(session, changes)
    }

    fn drop_physical(&self, session: &Session, table: &PhysicalTable) -> Result<()> {
        if self.exists(table)? {
            self.runtime
                .block_on(self.catalog.drop_table(&Self::ident(table)))
                .map_err(iceberg_err(format!("dropping {table}")))?;
        }
        self.duckdb.drop_physical(session, table)
    }
}
