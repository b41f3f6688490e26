//! Iceberg lakehouse storage: model versions as Iceberg tables (SQL catalog, Parquet in a local or S3
//! warehouse) that DuckDB writes through Arrow batches and reads through views over the live data files.

pub mod catalog;
mod commit;
mod known;
mod local_fs;
mod partitioned;
mod prune;
mod schema;
mod setup;
mod views;
mod write;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::TableMetadataBuilder;
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableCreation, TableIdent};

use crate::config::IcebergSettings;
use crate::engine::Session;
use crate::error::{LakeError, LakehouseError, Result};
use crate::profile::{self, Phase};
use crate::snapshot::{PhysicalTable, VirtualName};
use crate::sql::quote_ident;
use crate::storage::duckdb_file::DuckDbStorage;
use crate::storage::duckdb_file::duckdb_widening;
use crate::storage::{
    ColumnChange, Merge, SharedCatalog, StagedWrites, Storage, TimeRange, VirtualChange, WriteId,
    WriteStats, column_changes,
};
use catalog::LakeCatalog;
use commit::Removal;
use known::{Known, TableCache};

pub use catalog::ident;
use schema::{duckdb_type, empty_select, evolved_schema, query_iceberg_schema, schema_columns};
use setup::{file_io_properties, prepared, storage_factory};
pub use setup::{open_catalog, prepare_engine};
use views::read_parquet;
use write::{FileWriterBuilder, NewRows, UnpartitionedWriter, duckdb_path};

/// Marks the DuckDB views that expose an Iceberg table, so they are told apart from VIEW models. The comment
/// goes on with the metadata file the view shows: when another machine commits to the shared catalog, the
/// locations differ and the view is refreshed.
const PROXY_COMMENT: &str = "lake:iceberg";

/// How state records an Iceberg commit beside the interval it wrote.
fn snapshot_write_id(snapshot_id: i64) -> WriteId {
    WriteId::new(format!("iceberg:{snapshot_id}"))
}

fn proxy_comment(metadata_location: &str) -> String {
    format!("{PROXY_COMMENT} {metadata_location}")
}

fn iceberg_err(context: impl Into<String>) -> impl FnOnce(iceberg::Error) -> LakeError {
    let context = context.into();
    move |e| LakeError::lakehouse(context, e)
}

/// Physical tables as Iceberg tables in a warehouse, registered in an Iceberg SQL catalog. DuckDB runs the
/// queries and reads each table's live Parquet files through a view, so models and `fetchdf` work unchanged;
/// environment names are registered in the catalog too, so any Iceberg engine reads them.
pub struct IcebergStorage {
    runtime: tokio::runtime::Runtime,
    catalog: LakeCatalog,
    /// Schemas, views and the DuckDB side of the virtual layer are DuckDB objects.
    duckdb: DuckDbStorage,
    duckdb_catalog: String,
    /// The warehouse location (`file:///…` or `s3://…`) and a FileIO for it, to delete dropped tables' files.
    warehouse: String,
    file_io: iceberg::io::FileIO,
    /// Tables and manifests read or written by this process, reused while the catalog still names them.
    known: TableCache,
    /// Tables whose DuckDB view is re-created once their batches are written (`Storage::defer_views`).
    deferred_views: Mutex<HashSet<PhysicalTable>>,
    /// DuckDB schemas that exist (created or checked by this process).
    duckdb_schemas: Mutex<HashSet<String>>,
    /// Table properties of tables not created yet (`Storage::declare_properties`).
    table_properties: Mutex<HashMap<PhysicalTable, HashMap<String, String>>>,
    /// How tables are partitioned (`Storage::declare_partitioning`): their spec when created, and the order
    /// their rows are written in.
    table_partitioning:
        Mutex<HashMap<PhysicalTable, Vec<crate::storage::partition::PartitionTerm>>>,
    /// The `ORDER BY` keys of partitioned tables' writes, found from their columns once per table (every
    /// write of a table has its columns): a model's thousandth daily batch does not describe its query again.
    partition_order: Mutex<HashMap<PhysicalTable, Vec<String>>>,
}

impl IcebergStorage {
    /// Opens (creating on first use) the catalog and, for a local warehouse, its folder.
    /// `duckdb` says where physical tables live besides `lake__*` (mapped schemas, in-place tables); lake's
    /// DuckDB views of the catalog's tables go in its catalog.
    pub fn open(settings: &IcebergSettings, duckdb: DuckDbStorage) -> Result<Self> {
        let duckdb_catalog = duckdb.catalog().to_string();
        let settings = prepared(settings)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| LakeError::io("tokio runtime", e))?;
        let properties = file_io_properties(&settings.warehouse);
        let catalog = runtime.block_on(LakeCatalog::open(&settings, properties.clone()))?;
        let file_io = iceberg::io::FileIOBuilder::new(storage_factory(&settings.warehouse))
            .with_props(properties)
            .build();
        Ok(IcebergStorage {
            runtime,
            catalog,
            duckdb,
            duckdb_catalog,
            warehouse: settings.warehouse.location(),
            file_io,
            known: TableCache::default(),
            deferred_views: Mutex::default(),
            duckdb_schemas: Mutex::default(),
            table_properties: Mutex::default(),
            table_partitioning: Mutex::default(),
            partition_order: Mutex::default(),
        })
    }

    /// The table as `metadata`, written at `location`, reads it; lake keeps its own cache of tables.
    fn table_at(
        &self,
        metadata: iceberg::spec::TableMetadata,
        location: String,
        ident: TableIdent,
        file_io: &iceberg::io::FileIO,
    ) -> iceberg::Result<Table> {
        Table::builder()
            .metadata(metadata)
            .metadata_location(location)
            .identifier(ident)
            .file_io(file_io.clone())
            .runtime(iceberg::Runtime::new(&self.runtime))
            .disable_cache()
            .build()
    }

    fn ident(table: &PhysicalTable) -> TableIdent {
        ident(&table.schema, &table.table)
    }

    /// The table as the catalog names it now: from memory when it is still the metadata file last read or
    /// committed here (one catalog query), else read with its manifests.
    fn known(&self, table: &PhysicalTable) -> Result<Option<Known>> {
        let _timer = profile::time(Phase::CatalogRead);
        let ident = Self::ident(table);
        self.runtime.block_on(async {
            let Some(location) = self.catalog.current_location(&ident).await? else {
                self.known.forget(&ident);
                return Ok(None);
            };
            if let Some(known) = self.known.get(&ident, &location) {
                return Ok(Some(known));
            }
            let Some(loaded) = self.catalog.load(&ident).await? else {
                return Ok(None);
            };
            let known = self.known.read(loaded).await?;
            self.known.put(known.clone());
            Ok(Some(known))
        })
    }

    /// A new table, in memory only ([`Known::pending`]): its first commit puts it in the catalog with its
    /// first snapshot, and a write that fails before leaves nothing behind. Its namespace is created now.
    fn new_table(&self, table: &PhysicalTable, schema: &ArrowSchema) -> Result<Known> {
        let _timer = profile::time(Phase::IcebergMetadata);
        let context = || format!("creating {table}");
        let ident = Self::ident(table);
        let iceberg_schema = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(schema)
            .map_err(iceberg_err(format!(
                "mapping the columns of {table} to Iceberg types"
            )))?;
        let location = self
            .runtime
            .block_on(self.catalog.new_table_location(&ident))?;
        let properties = known::lock(&self.table_properties)
            .get(table)
            .cloned()
            .unwrap_or_default();
        let partitioning = self.partitioning(table);
        let spec = partitioned::spec(table, &iceberg_schema, &partitioning)?;
        let creation = TableCreation::builder()
            .name(table.table.clone())
            .location(location.clone())
            .schema(iceberg_schema)
            .properties(properties)
            .partition_spec_opt(spec)
            .build();
        let metadata = TableMetadataBuilder::from_table_creation(creation)
            .and_then(|builder| builder.build())
            .map_err(iceberg_err(context()))?
            .metadata;
        let metadata_location = MetadataLocation::new_with_metadata(location, &metadata);
        let table = self
            .table_at(
                metadata,
                metadata_location.to_string(),
                ident,
                &self.file_io,
            )
            .map_err(iceberg_err(context()))?;
        Ok(Known {
            table,
            manifests: Arc::default(),
            live: Arc::default(),
            pending: true,
        })
    }

    /// The partitioning declared for `table` (none when not declared).
    fn partitioning(&self, table: &PhysicalTable) -> Vec<crate::storage::partition::PartitionTerm> {
        known::lock(&self.table_partitioning)
            .get(table)
            .cloned()
            .unwrap_or_default()
    }
}

impl SharedCatalog for IcebergStorage {
    fn ensure_table(&self, table: &PhysicalTable, columns: &ArrowSchema) -> Result<()> {
        if self.known(table)?.is_none() {
            let pending = self.new_table(table, columns)?;
            self.runtime.block_on(self.create_empty(&pending))?;
        }
        Ok(())
    }

    fn schema(&self, table: &PhysicalTable) -> Result<Option<ArrowSchema>> {
        self.known(table)?
            .map(|t| {
                iceberg::arrow::schema_to_arrow_schema(t.table.metadata().current_schema())
                    .map_err(iceberg_err(format!("reading the schema of {table}")))
            })
            .transpose()
    }

    fn adopt_commit(&self, session: &Session, table: &PhysicalTable) -> Result<Option<WriteId>> {
        let Some(known) = self.known(table)? else {
            return Err(LakeError::lakehouse(
                format!("adopting the engine's commit to {table}"),
                LakehouseError::Table("the table is not in the catalog".into()),
            ));
        };
        self.expose(session, table, &known)?;
        Ok(known
            .table
            .metadata()
            .current_snapshot_id()
            .map(snapshot_write_id))
    }
}

impl Storage for IcebergStorage {
    fn ensure_schema(&self, session: &Session, schema: &str) -> Result<()> {
        self.runtime
            .block_on(self.catalog.ensure_namespace(schema))?;
        self.duckdb.ensure_schema(session, schema)
    }

    /// Tables in the catalog (each exposed to DuckDB first), plus VIEW models' DuckDB views.
    fn physical_tables(&self, session: &Session) -> Result<Vec<PhysicalTable>> {
        self.sync_proxies(session)?;
        self.duckdb.physical_tables(session)
    }

    fn shared_catalog(&self) -> Option<&dyn SharedCatalog> {
        Some(self)
    }

    fn staged_writes(&self) -> Option<&dyn StagedWrites> {
        Some(self)
    }

    fn catalog_fingerprint(&self) -> Result<Option<u64>> {
        use std::hash::{Hash, Hasher};
        if let Some(changes) = self.runtime.block_on(self.catalog.changes())? {
            return Ok(Some(changes as u64));
        }
        let mut entries: Vec<(String, String, String)> = self
            .runtime
            .block_on(self.catalog.tables_with_prefix(""))?
            .into_iter()
            .filter(|e| self.duckdb.is_physical(&e.namespace, &e.name))
            .map(|e| (e.namespace, e.name, e.metadata_location))
            .collect();
        entries.sort();
        let mut hasher = std::hash::DefaultHasher::new();
        entries.hash(&mut hasher);
        Ok(Some(hasher.finish()))
    }

    fn sync_local(&self, session: &Session, names: &[(VirtualName, PhysicalTable)]) -> Result<()> {
        self.sync_proxies(session)?;
        self.duckdb.sync_names(session, names)
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
        self.write_whole(session, table, query, Removal::All)
    }

    fn append(&self, session: &Session, table: &PhysicalTable, query: &str) -> Result<WriteStats> {
        self.write_whole(session, table, query, Removal::Nothing)
    }

    fn replace_time_range(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        range: TimeRange<'_>,
    ) -> Result<WriteStats> {
        self.rewrite_range(session, table, NewRows::Query(query), range)
    }

    fn merge_by_key(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        merge: &Merge<'_>,
    ) -> Result<WriteStats> {
        // The new rows are read twice (to find the files holding their keys, then to write them), so they
        // are materialised once in a temporary table of this session.
        let staging = format!("lake_merge_{}", std::process::id());
        session.execute(
            &format!("CREATE OR REPLACE TEMPORARY TABLE {staging} AS {query}"),
            || format!("staging the new rows of {table}"),
        )?;
        let matches = merge.matched_in(&staging);
        let merged = format!("lake_merged_{}", std::process::id());
        // A table not written yet has no rows to match.
        let when_matched = merge
            .when_matched
            .filter(|_| matches!(self.known(table), Ok(Some(_))));
        let result = match when_matched {
            None => Ok(format!("SELECT * FROM {staging}")),
            // The table's matched rows go through DuckDB's MERGE with the model's clauses, together with the
            // new rows; what comes out replaces them.
            Some(clauses) => session
                .execute(
                    &format!(
                        "CREATE OR REPLACE TEMPORARY TABLE {merged} AS \
                         SELECT * FROM {}.{} AS target WHERE {matches};\n\
                         MERGE INTO {merged} AS target USING {staging} AS source ON {} {clauses} \
                         WHEN NOT MATCHED THEN INSERT BY NAME;",
                        quote_ident(&self.duckdb_catalog),
                        table.sql(),
                        merge.on()
                    ),
                    || format!("merging the new rows of {table}"),
                )
                .map(|()| format!("SELECT * FROM {merged}")),
        }
        .and_then(|new_rows| {
            self.rewrite(session, table, NewRows::Query(&new_rows), &matches, None)
        });
        let dropped = session.execute(
            &format!("DROP TABLE IF EXISTS {staging}; DROP TABLE IF EXISTS {merged};"),
            || format!("dropping the staged rows of {table}"),
        );
        let (stats, _, _) = result?;
        dropped?;
        Ok(stats)
    }

    fn declare_partitioning(
        &self,
        table: &PhysicalTable,
        terms: &[crate::storage::partition::PartitionTerm],
    ) {
        let mut declared = known::lock(&self.table_partitioning);
        if terms.is_empty() {
            declared.remove(table);
        } else {
            declared.insert(table.clone(), terms.to_vec());
        }
    }

    fn declare_properties(&self, table: &PhysicalTable, properties: &[(String, String)]) {
        let mut declared = known::lock(&self.table_properties);
        if properties.is_empty() {
            declared.remove(table);
        } else {
            declared.insert(table.clone(), properties.iter().cloned().collect());
        }
    }

    fn defer_views(&self, table: &PhysicalTable) {
        self.views_deferred().insert(table.clone());
    }

    fn publish_views(&self, session: &Session, table: &PhysicalTable) -> Result<()> {
        let was_deferred = self.views_deferred().remove(table);
        if was_deferred {
            self.refresh_view(session, table)?;
        }
        Ok(())
    }

    fn columns(
        &self,
        _session: &Session,
        table: &PhysicalTable,
    ) -> Result<Option<Vec<(String, String)>>> {
        Ok(self
            .known(table)?
            .map(|known| schema_columns(known.table.metadata().current_schema())))
    }

    fn column_changes(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
    ) -> Result<Option<Vec<ColumnChange>>> {
        let Some(known) = self.known(table)? else {
            return Ok(None);
        };
        // Compared as Iceberg stores them, so a type DuckDB has and Iceberg lacks (UTINYINT, say) is not
        // taken for a change at every write.
        let wanted = query_iceberg_schema(session, table, query)?;
        Ok(Some(column_changes(
            &schema_columns(known.table.metadata().current_schema()),
            &schema_columns(&wanted),
            duckdb_widening,
        )))
    }

    fn evolve_columns(
        &self,
        session: &Session,
        table: &PhysicalTable,
        query: &str,
        changes: &[ColumnChange],
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let context = || format!("changing the columns of {table}");
        let Some(known) = self.known(table)? else {
            return Err(LakeError::lakehouse(
                context(),
                LakehouseError::Table("the table is not in the catalog".into()),
            ));
        };
        let wanted = query_iceberg_schema(session, table, query)?;
        let metadata = known.table.metadata();
        let evolved = evolved_schema(
            metadata.current_schema(),
            &wanted,
            changes,
            metadata.last_column_id(),
        )
        .map_err(iceberg_err(context()))?;
        let ident = Self::ident(table);
        let old_location = known.location().to_string();
        let now = self.runtime.block_on(async {
            let _timer = profile::time(Phase::IcebergMetadata);
            let built = metadata
                .clone()
                .into_builder(Some(old_location.clone()))
                .add_current_schema(evolved)
                .and_then(|builder| builder.build())
                .map_err(iceberg_err(context()))?;
            let next = old_location
                .parse::<MetadataLocation>()
                .map_err(iceberg_err(context()))?
                .with_next_version();
            built
                .metadata
                .write_to(known.table.file_io(), &next)
                .await
                .map_err(iceberg_err(context()))?;
            let swapped = self
                .catalog
                .swap(&ident, &old_location, &next.to_string())
                .await;
            if let Err(e) = swapped {
                self.known.forget(&ident);
                return Err(e);
            }
            let table = self
                .table_at(
                    built.metadata,
                    next.to_string(),
                    ident,
                    known.table.file_io(),
                )
                .map_err(iceberg_err(context()))?;
            // The data files are the same: only the schema readers map them through changed.
            Ok(Known {
                table,
                ..known.clone()
            })
        })?;
        self.known.put(now.clone());
        self.expose(session, table, &now)
    }

    fn update_virtual_layer(&self, session: &Session, changes: &[VirtualChange]) -> Result<()> {
        let _timer = profile::time(Phase::EnvironmentViews);
        let names: Vec<(TableIdent, Option<TableIdent>)> = changes
            .iter()
            .map(|change| match change {
                VirtualChange::Point { name, target } => {
                    (virtual_ident(name), Some(Self::ident(target)))
                }
                VirtualChange::Drop { name } => (virtual_ident(name), None),
            })
            .collect();
        self.runtime.block_on(self.catalog.set_names(&names))?;
        self.duckdb.update_virtual_layer(session, changes)
    }

    /// Removes the table from the catalog, then deletes its data and metadata files (the janitor calls this
    /// only for versions no environment uses).
    fn drop_physical(&self, session: &Session, table: &PhysicalTable) -> Result<()> {
        // Catalog first (no reader finds the table any more), then its files, then DuckDB's view; a rerun
        // after a failure at any step finishes the rest.
        let location = match self.known(table)? {
            Some(existing) => existing.table.metadata().location().to_string(),
            None => format!("{}/{}/{}", self.warehouse, table.schema, table.table),
        };
        self.known.forget(&Self::ident(table));
        self.runtime
            .block_on(self.catalog.drop(&Self::ident(table)))?;
        // Every table lake creates lives in a folder named after it. An entry elsewhere is an environment name
        // showing another table, whose files are not this drop's to delete.
        let own_folder = location
            .trim_end_matches('/')
            .ends_with(&format!("/{}", table.table));
        if !own_folder {
            return self.duckdb.drop_physical(session, table);
        }
        // Names other environments still have for it would point at deleted files; they go with it.
        self.runtime
            .block_on(self.catalog.drop_names_into(&location))?;
        self.runtime
            .block_on(
                self.file_io
                    .delete_prefix(format!("{}/", location.trim_end_matches('/'))),
            )
            .map_err(iceberg_err(format!("deleting the files of {table}")))?;
        self.duckdb.drop_physical(session, table)
    }
}

/// The table with its current schema as Arrow (with Iceberg field ids), which written batches are given.
fn with_arrow(known: Known) -> Result<(Known, Arc<ArrowSchema>)> {
    let arrow = iceberg::arrow::schema_to_arrow_schema(known.table.metadata().current_schema())
        .map_err(iceberg_err(format!(
            "reading the schema of {}",
            known.table.identifier()
        )))?;
    Ok((known, Arc::new(arrow)))
}

/// The rows of these data files of the table (no files: no rows, in the table's columns).
fn files_select(known: &Known, files: &[String]) -> String {
    if files.is_empty() {
        empty_select(known.table.metadata().current_schema())
    } else {
        format!("SELECT * FROM {}", read_parquet(known, files, false))
    }
}

fn virtual_ident(name: &VirtualName) -> TableIdent {
    ident(&name.schema, &name.name)
}

#[cfg(test)]
mod tests {
    use super::setup::s3_secret_sql;
    use super::*;
    use crate::config::CatalogSettings;
    use crate::config::{S3Settings, Warehouse};
    use crate::engine::Engine;

    struct Fixture {
        _dir: tempfile::TempDir,
        settings: IcebergSettings,
        _engine: Engine,
        session: Session,
        storage: IcebergStorage,
        table: PhysicalTable,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = IcebergSettings {
            warehouse: Warehouse::Local(dir.path().join("warehouse")),
            catalog: CatalogSettings::Sqlite(dir.path().join("catalog.db")),
            catalog_name: "lake".into(),
            duckdb_extension_directory: None,
        };
        let engine = Engine::in_memory().expect("in-memory DuckDB");
        let session = engine.session().expect("session");
        let storage =
            IcebergStorage::open(&settings, DuckDbStorage::new("memory")).expect("catalog");
        storage
            .ensure_schema(&session, "lake__demo")
            .expect("schema");
        Fixture {
            _dir: dir,
            settings,
            _engine: engine,
            session,
            storage,
            table: PhysicalTable {
                schema: "lake__demo".into(),
                table: "demo__t__1".into(),
            },
        }
    }

    fn rows(f: &Fixture, from: &str) -> Vec<String> {
        let mut out = f
            .session
            .query_strings(&format!("SELECT id || v || d FROM memory.{from}"), || {
                "reading".into()
            })
            .expect("rows");
        out.sort();
        out
    }

    fn operations(f: &Fixture) -> Vec<String> {
        let table = f
            .storage
            .known(&f.table)
            .unwrap()
            .expect("table exists")
            .table;
        let mut snapshots: Vec<_> = table.metadata().snapshots().cloned().collect();
        snapshots.sort_by_key(|s| s.sequence_number());
        snapshots
            .iter()
            .map(|s| {
                let summary = s.summary();
                format!(
                    "{} total={}",
                    summary.operation.as_str(),
                    summary.additional_properties["total-records"]
                )
            })
            .collect()
    }

    #[test]
    fn every_write_kind_is_one_snapshot() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        let row =
            |id: i32, v: &str, d: &str| format!("SELECT {id} AS id, '{v}' AS v, DATE '{d}' AS d");
        f.storage
            .replace_all(
                s,
                t,
                &format!(
                    "{} UNION ALL {}",
                    row(1, "a", "2024-01-01"),
                    row(2, "b", "2024-01-02")
                ),
            )
            .unwrap();
        f.storage.append(s, t, &row(3, "c", "2024-01-03")).unwrap();
        let stats = f
            .storage
            .replace_time_range(
                s,
                t,
                &row(4, "d", "2024-01-02"),
                crate::storage::second_of_january(),
            )
            .unwrap();
        assert_eq!(
            stats.rows,
            Some(1),
            "the new row; the rewritten file's kept row is not counted"
        );
        assert_eq!(
            rows(&f, &t.sql()),
            ["1a2024-01-01", "3c2024-01-03", "4d2024-01-02"]
        );
        f.storage
            .merge_by_key(
                s,
                t,
                &format!(
                    "{} UNION ALL {}",
                    row(3, "z", "2024-01-03"),
                    row(5, "e", "2024-01-05")
                ),
                &Merge::by_keys(&["id".into()]),
            )
            .unwrap();
        assert_eq!(
            rows(&f, &t.sql()),
            [
                "1a2024-01-01",
                "3z2024-01-03",
                "4d2024-01-02",
                "5e2024-01-05"
            ]
        );
        f.storage
            .replace_all(s, t, &row(9, "n", "2024-01-09"))
            .unwrap();
        assert_eq!(rows(&f, &t.sql()), ["9n2024-01-09"]);
        assert_eq!(
            operations(&f),
            [
                "append total=2",
                "append total=3",
                "overwrite total=3",
                "overwrite total=4",
                "overwrite total=1"
            ]
        );
        assert_eq!(f.storage.physical_tables(s).unwrap(), vec![t.clone()]);
    }

    /// Files of the table's metadata folder whose names end with `suffix`.
    /// The entries kept in memory for the manifests a commit wrote are exactly what reading them back gives:
    /// added, kept, deleted and merged entries with their inherited snapshot ids and sequence numbers.
    #[test]
    fn manifests_kept_in_memory_match_the_files_written() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        let day = |n: u32| format!("SELECT {n} AS id, 'v' AS v, DATE '2024-01-01' + {n} AS d");
        f.storage.replace_all(s, t, &day(0)).unwrap();
        // Enough commits for the small manifests to be merged, and range rewrites deleting files.
        for n in 1..40 {
            f.storage.append(s, t, &day(n)).unwrap();
        }
        f.storage
            .replace_time_range(s, t, &day(1), crate::storage::second_of_january())
            .unwrap();
        f.storage
            .merge_by_key(s, t, &day(7), &Merge::by_keys(&["id".into()]))
            .unwrap();
        let known = f.storage.known(t).unwrap().expect("table exists");
        let file_io = known.table.file_io();
        let mut compared = 0;
        for manifest in known.manifests.iter() {
            let remembered = f
                .storage
                .known
                .cached_manifest(&manifest.manifest_path)
                .expect("every manifest of the snapshot was written by this process");
            let on_disk = f
                .storage
                .runtime
                .block_on(manifest.load_manifest(file_io))
                .unwrap();
            assert_eq!(
                remembered.as_slice(),
                on_disk.entries(),
                "{}",
                manifest.manifest_path
            );
            compared += remembered.len();
        }
        assert!(compared >= 40, "{compared} entries compared");
        assert!(
            known.manifests.len() < 16,
            "small manifests were merged: {}",
            known.manifests.len()
        );
    }

    fn metadata_files(known: &Known, suffix: &str) -> usize {
        let folder = format!("{}/metadata", known.table.metadata().location());
        std::fs::read_dir(duckdb_path(&folder))
            .expect("the metadata folder")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .count()
    }

    #[test]
    fn a_long_daily_history_reads_only_the_range_and_keeps_metadata_bounded() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        let day = |n: i64| {
            (crate::storage::midnight("2024-01-01") + chrono::Duration::days(n))
                .format("%Y-%m-%d")
                .to_string()
        };
        // Batch n replaces days n-1 and n (a lookback of one day) with rows tagged n.
        let batches = 150;
        for n in 0..batches {
            let (start, end) = (day(n - 1), day(n + 1));
            let predicate = format!("d >= DATE '{start}' AND d < DATE '{end}'");
            let query = format!(
                "SELECT {n} AS id, 'x' AS v, DATE '{}' AS d UNION ALL SELECT {n}, 'x', DATE '{}'",
                day(n - 1),
                day(n)
            );
            let stats = f
                .storage
                .replace_time_range(
                    s,
                    t,
                    &query,
                    TimeRange {
                        predicate: &predicate,
                        column: "d",
                        bounds: Some((
                            crate::storage::midnight(&start),
                            crate::storage::midnight(&end),
                        )),
                    },
                )
                .unwrap();
            let audited = stats.range_rows.expect("the range's rows are named");
            assert_eq!(
                read(s, &format!("SELECT id || '@' || d FROM {audited} AS r")),
                [format!("{n}@{}", day(n - 1)), format!("{n}@{}", day(n))],
                "batch {n}: the range's rows are the new rows"
            );
        }
        // Every day holds the row of the last batch that covered it.
        let summary = read(
            s,
            &format!(
                "SELECT count(*) || ' ' || count(DISTINCT d) || ' ' || sum(id) FROM memory.{}",
                t.sql()
            ),
        );
        let expected: i64 = (1..batches).sum::<i64>() + (batches - 1);
        assert_eq!(
            summary,
            [format!("{} {} {expected}", batches + 1, batches + 1)]
        );

        let known = f.storage.known(t).unwrap().expect("the table");
        let metadata = known.table.metadata();
        assert_eq!(metadata.snapshots().len(), 100, "older snapshots expire");
        assert!(
            known.manifests.len() < 40,
            "manifests are merged: {}",
            known.manifests.len()
        );
        assert_eq!(
            known.live.len(),
            batches as usize,
            "each batch's file, rewritten by the next to its first day"
        );
        assert!(metadata.metadata_log().len() <= 100);
        assert!(
            metadata_files(&known, ".metadata.json") <= 102,
            "metadata files that left the log are deleted"
        );
        let lists = std::fs::read_dir(duckdb_path(&format!("{}/metadata", metadata.location())))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("snap-"))
            .count();
        assert_eq!(lists, 100, "expired snapshots' manifest lists are deleted");

        // A fresh process (no cache) reads the same table.
        let (_engine, other, storage) = second_machine(&f);
        storage.sync_local(&other, &[]).unwrap();
        assert_eq!(
            read(
                &other,
                &format!("SELECT count(*) || ' ' || sum(id) FROM memory.{}", t.sql())
            ),
            [format!("{} {expected}", batches + 1)]
        );
    }

    #[test]
    fn a_lost_commit_race_is_a_retryable_error_and_loses_nothing() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        f.storage
            .replace_all(s, t, "SELECT 1 AS id, 'a' AS v, DATE '2024-01-01' AS d")
            .unwrap();
        // Two writers start from the same table state; the first to swap the catalog pointer wins.
        let (stale, files) = f
            .storage
            .write_files(
                s,
                t,
                "SELECT 2 AS id, 'b' AS v, DATE '2024-01-02' AS d",
                None,
            )
            .unwrap();
        f.storage
            .append(s, t, "SELECT 3 AS id, 'c' AS v, DATE '2024-01-03' AS d")
            .unwrap();
        let err = f
            .storage
            .commit(t, &stale, files, Removal::All)
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(
            err.to_string().contains("committed to the Iceberg table"),
            "{err}"
        );
        f.storage.refresh_view(s, t).unwrap();
        assert_eq!(rows(&f, &t.sql()), ["1a2024-01-01", "3c2024-01-03"]);
    }

    #[test]
    fn a_new_table_enters_the_catalog_with_its_first_snapshot_or_not_at_all() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        // A query failing after the table's columns are known leaves no table and no metadata behind.
        let failed = f.storage.replace_all(
            s,
            t,
            "SELECT i AS id, 'a' AS v, DATE '2024-01-01' AS d FROM range(3) r(i) \
             WHERE error('boom') IS NULL OR i < 0",
        );
        assert!(failed.is_err(), "{failed:?}");
        assert!(f.storage.known(t).unwrap().is_none());
        f.storage
            .replace_all(s, t, "SELECT 1 AS id, 'a' AS v, DATE '2024-01-01' AS d")
            .unwrap();
        let known = f.storage.known(t).unwrap().expect("created");
        assert!(!known.pending);
        // One metadata file, with the snapshot, and no log entry naming a file that was never written.
        assert_eq!(metadata_files(&known, ".metadata.json"), 1);
        assert_eq!(known.table.metadata().metadata_log().len(), 0);
        assert_eq!(operations(&f), ["append total=1"]);
        assert_eq!(rows(&f, &t.sql()), ["1a2024-01-01"]);

        // Two writers creating the same table: the second's creation is a retryable conflict.
        let other = PhysicalTable {
            schema: "lake__demo".into(),
            table: "demo__u__1".into(),
        };
        let (stale, files) = f
            .storage
            .write_files(s, &other, "SELECT 2 AS id", None)
            .unwrap();
        assert!(stale.pending);
        f.storage.append(s, &other, "SELECT 3 AS id").unwrap();
        let err = f
            .storage
            .commit(&other, &stale, files, Removal::Nothing)
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let values = f
            .session
            .query_strings(
                &format!("SELECT id::VARCHAR FROM memory.{}", other.sql()),
                || "reading".into(),
            )
            .unwrap();
        assert_eq!(values, ["3"]);
    }

    #[test]
    fn environment_names_share_the_physical_metadata_and_follow_commits() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        f.storage
            .replace_all(s, t, "SELECT 1 AS id, 'a' AS v, DATE '2024-01-01' AS d")
            .unwrap();
        let name = VirtualName {
            schema: "demo__dev".into(),
            name: "t".into(),
        };
        f.storage
            .update_virtual_layer(
                s,
                &[VirtualChange::Point {
                    name: name.clone(),
                    target: t.clone(),
                }],
            )
            .unwrap();
        f.storage
            .append(s, t, "SELECT 2 AS id, 'b' AS v, DATE '2024-01-02' AS d")
            .unwrap();
        let physical = f.storage.known(t).unwrap().unwrap().table;
        let alias = f
            .storage
            .runtime
            .block_on(f.storage.catalog.load(&virtual_ident(&name)))
            .unwrap()
            .expect("the environment name is registered");
        assert_eq!(alias.metadata_location(), physical.metadata_location());
        assert_eq!(rows(&f, &name.sql()), ["1a2024-01-01", "2b2024-01-02"]);
        f.storage
            .update_virtual_layer(s, &[VirtualChange::Drop { name: name.clone() }])
            .unwrap();
        let gone = f
            .storage
            .runtime
            .block_on(f.storage.catalog.load(&virtual_ident(&name)))
            .unwrap();
        assert!(gone.is_none());
        assert!(
            f.storage.known(t).unwrap().is_some(),
            "dropping a name keeps the table"
        );
    }

    #[test]
    fn concurrent_workers_creating_one_namespace_all_succeed() {
        let f = fixture();
        for round in 0..5 {
            let namespace = format!("lake__raced{round}");
            let results: Vec<Result<()>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            f.storage
                                .runtime
                                .block_on(f.storage.catalog.ensure_namespace(&namespace))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("no panic"))
                    .collect()
            });
            assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        }
    }

    #[test]
    fn s3_secret_carries_endpoint_style_and_keys() {
        let s3 = S3Settings {
            endpoint: Some("http://127.0.0.1:9000/".into()),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: Some(crate::config::Secret::new("AK")),
            secret_access_key: Some(crate::config::Secret::new("SK'q")),
            session_token: None,
        };
        assert_eq!(
            s3_secret_sql("s3://bucket/prefix", &s3),
            "CREATE OR REPLACE TEMPORARY SECRET lake_warehouse (TYPE s3, REGION 'us-east-1', SCOPE 's3://bucket', ENDPOINT '127.0.0.1:9000', USE_SSL false, URL_STYLE 'path', KEY_ID 'AK', SECRET 'SK''q')"
        );
    }

    /// Another machine: its own (in-memory) DuckDB on the same catalog and warehouse.
    fn second_machine(f: &Fixture) -> (Engine, Session, IcebergStorage) {
        let engine = Engine::in_memory().expect("in-memory DuckDB");
        let session = engine.session().expect("session");
        let storage =
            IcebergStorage::open(&f.settings, DuckDbStorage::new("memory")).expect("catalog");
        (engine, session, storage)
    }

    fn read(session: &Session, sql: &str) -> Vec<String> {
        let mut out = session
            .query_strings(sql, || "reading".into())
            .expect("rows");
        out.sort();
        out
    }

    #[test]
    fn another_machine_sees_commits_and_drops_through_the_catalog() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        f.storage
            .append(s, t, "SELECT 1 AS id, 'a' AS v, DATE '2024-01-01' AS d")
            .unwrap();
        let (_engine, other, storage) = second_machine(&f);
        let name = VirtualName {
            schema: "demo".into(),
            name: "t".into(),
        };
        let names = [(name, t.clone())];
        storage.sync_local(&other, &names).unwrap();
        let count = "SELECT count(*)::VARCHAR FROM memory.demo.t";
        assert_eq!(read(&other, count), ["1"]);
        assert_eq!(storage.physical_tables(&other).unwrap(), vec![t.clone()]);

        // A commit elsewhere moves the catalog pointer; the next sync follows it.
        f.storage
            .append(s, t, "SELECT 2 AS id, 'b' AS v, DATE '2024-01-02' AS d")
            .unwrap();
        assert_eq!(read(&other, count), ["1"], "a cache until synced");
        storage.sync_local(&other, &names).unwrap();
        assert_eq!(read(&other, count), ["2"]);

        // Dropped elsewhere (the janitor): the view and the name go here too.
        f.storage.drop_physical(s, t).unwrap();
        storage.sync_local(&other, &[]).unwrap();
        assert!(storage.physical_tables(&other).unwrap().is_empty());
        assert!(
            read(
                &other,
                "SELECT view_name FROM duckdb_views() WHERE NOT internal"
            )
            .is_empty()
        );
    }

    #[test]
    fn an_empty_table_is_exposed_with_its_columns() {
        let f = fixture();
        let (s, t) = (&f.session, &f.table);
        f.storage
            .append(
                s,
                t,
                "SELECT 1 AS id, [1.5] AS xs, {'k': 'v'} AS st, MAP {'a': 1} AS m, \
                 TIMESTAMP '2024-01-01' AS ts, 1.25::DECIMAL(9, 2) AS amount LIMIT 0",
            )
            .unwrap();
        let (_engine, other, storage) = second_machine(&f);
        storage.sync_local(&other, &[]).unwrap();
        let columns = read(
            &other,
            &format!(
                "SELECT column_name || ' ' || data_type FROM information_schema.columns \
                 WHERE table_schema = 'lake__demo' AND table_name = '{}'",
                t.table
            ),
        );
        assert_eq!(
            columns,
            [
                "amount DECIMAL(9,2)",
                "id INTEGER",
                "m MAP(VARCHAR, INTEGER)",
                "st STRUCT(k VARCHAR)",
                "ts TIMESTAMP",
                "xs DECIMAL(2,1)[]",
            ]
        );
    }

    #[test]
    fn evolved_schemas_keep_the_ids_of_kept_and_widened_columns() {
        use iceberg::spec::{NestedField, PrimitiveType as P, Schema, StructType, Type};
        let field = |id, name: &str, t: Type| Arc::new(NestedField::optional(id, name, t));
        let current = Schema::builder()
            .with_fields([
                field(1, "id", Type::Primitive(P::Int)),
                field(2, "name", Type::Primitive(P::String)),
                field(3, "amount", Type::Primitive(P::Float)),
                field(4, "gone", Type::Primitive(P::Date)),
            ])
            .build()
            .unwrap();
        // As a query's columns arrive: ids from 1, in the query's order.
        let wanted = Schema::builder()
            .with_fields([
                field(1, "amount", Type::Primitive(P::Double)),
                field(2, "name", Type::Primitive(P::Long)),
                field(3, "id", Type::Primitive(P::Int)),
                field(
                    4,
                    "tags",
                    Type::Struct(StructType::new(vec![field(
                        5,
                        "k",
                        Type::Primitive(P::String),
                    )])),
                ),
            ])
            .build()
            .unwrap();
        let changes = crate::storage::column_changes(
            &schema_columns(&current),
            &schema_columns(&wanted),
            duckdb_widening,
        );
        let evolved = evolved_schema(&current, &wanted, &changes, 4).unwrap();
        let ids: Vec<(i32, String, String)> = evolved
            .as_struct()
            .fields()
            .iter()
            .map(|f| (f.id, f.name.clone(), duckdb_type(&f.field_type)))
            .collect();
        assert_eq!(
            ids,
            [
                (1, "id".into(), "INTEGER".into()),
                // VARCHAR to BIGINT loses values: a new column under the old name.
                (5, "name".into(), "BIGINT".into()),
                // FLOAT to DOUBLE widens: same field, so old files keep supplying it.
                (3, "amount".into(), "DOUBLE".into()),
                (6, "tags".into(), "STRUCT(k VARCHAR)".into()),
            ]
        );
        // Nested fields get ids of their own past every other.
        let Type::Struct(tags) = evolved.as_struct().fields()[3].field_type.as_ref() else {
            panic!("tags is a struct");
        };
        assert_eq!(tags.fields()[0].id, 7);
        assert_eq!(evolved.highest_field_id(), 7);
    }
}
