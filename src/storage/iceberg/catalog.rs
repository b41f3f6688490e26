//! The Iceberg SQL catalog (JDBC layout): iceberg-catalog-sql for tables and namespaces, plus lake's own
//! compare-and-swap commits and environment names, on the same SQLite or PostgreSQL database.

mod changes;
mod external;

pub use external::{
    CommitRefusal, Committed, Dropped, NamespaceDropRefusal, PropertyChanges, RegisterRefusal,
    RenameRefusal, TableChange,
};

use std::collections::HashMap;

use iceberg::table::Table;

use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use super::iceberg_err;
use crate::config::{CatalogSettings, IcebergSettings};
use crate::error::{LakeError, Result};

pub struct LakeCatalog {
    tables: SqlCatalog,
    /// lake's own connection for what iceberg-catalog-sql does not offer: commits of our own snapshots,
    /// and environment names that share a physical table's metadata.
    pool: AnyPool,
    postgres: bool,
    /// `catalog_name` of lake's rows.
    name: String,
    describe: String,
    /// The warehouse location (`file:///…` or `s3://…`, no trailing slash): where new tables go, and the only
    /// place other engines may put tables or point registrations at.
    warehouse: String,
    /// Reads and writes metadata files of tables the SQL catalog has not loaded (staged creates, registers).
    file_io: iceberg::io::FileIO,
    /// Where each namespace this process has created tables in keeps them: looked up once, not per table.
    namespace_locations: std::sync::Mutex<HashMap<String, String>>,
    /// Whether the database keeps the change counter (`changes.rs`).
    counted: bool,
}

fn sqlx_err(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> LakeError {
    let context = context.into();
    move |e| LakeError::lakehouse(context, e)
}

/// One row of `iceberg_tables`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub namespace: String,
    pub name: String,
    pub metadata_location: String,
}

pub fn ident(namespace: &str, name: &str) -> TableIdent {
    TableIdent::new(NamespaceIdent::new(namespace.to_string()), name.to_string())
}

impl LakeCatalog {
    /// Connects to the catalog database, creating its tables on first use. `file_io` holds the storage
    /// settings (S3 endpoint and credentials) that data and metadata files are read and written with.
    pub async fn open(
        settings: &IcebergSettings,
        file_io: HashMap<String, String>,
    ) -> Result<LakeCatalog> {
        let postgres = matches!(settings.catalog, CatalogSettings::Postgres { .. });
        let uri = settings.catalog.uri();
        let describe = settings.catalog.describe();
        // Our pool connects first, with a short timeout: iceberg-catalog-sql's own pool retries an unreachable
        // server for 30 seconds before it reports anything.
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(uri.expose())
            .await
            .map_err(sqlx_err(format!("connecting to the {describe}")))?;
        if !postgres {
            // Write-ahead logging: a commit is one append and one fsync of the log instead of a rollback
            // journal created, synced and deleted beside the database (equally durable at the default
            // synchronous=FULL). The mode is stored in the file, so iceberg-catalog-sql's connections and
            // other readers use it too. Best-effort: while another process holds the file the mode stays
            // as it is, which is as correct, only slower.
            let _ = sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await;
        }
        if let CatalogSettings::Postgres { schema, .. } = &settings.catalog {
            // The schema is a plain identifier (checked with the config); concurrent first runs may race here,
            // and IF NOT EXISTS can still lose that race with a unique violation, after which it exists.
            let created = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&pool)
                .await;
            if let Err(e) = created {
                let exists: bool = sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                )
                .bind(schema.as_str())
                .fetch_one(&pool)
                .await
                .unwrap_or(false);
                if !exists {
                    return Err(sqlx_err(format!(
                        "creating schema {schema} of the {describe}"
                    ))(e));
                }
            }
        }
        let file_io_handle =
            iceberg::io::FileIOBuilder::new(super::storage_factory(&settings.warehouse))
                .with_props(file_io.clone())
                .build();
        let tables = SqlCatalogBuilder::default()
            .uri(uri.expose())
            .warehouse_location(settings.warehouse.location())
            .sql_bind_style(if postgres {
                SqlBindStyle::DollarNumeric
            } else {
                SqlBindStyle::QMark
            })
            .props(file_io)
            .with_storage_factory(super::storage_factory(&settings.warehouse))
            .load(&settings.catalog_name, HashMap::new())
            .await
            .map_err(iceberg_err(format!("opening the {describe}")))?;
        let counted = changes::install(&pool, postgres).await;
        Ok(LakeCatalog {
            tables,
            pool,
            postgres,
            name: settings.catalog_name.clone(),
            describe,
            warehouse: settings
                .warehouse
                .location()
                .trim_end_matches('/')
                .to_string(),
            file_io: file_io_handle,
            namespace_locations: std::sync::Mutex::default(),
            counted,
        })
    }

    /// A number that moves whenever any write to the catalog's tables commits, read in one small query; `None`
    /// when the database has no change counter (see `changes::install`).
    pub async fn changes(&self) -> Result<Option<i64>> {
        if !self.counted {
            return Ok(None);
        }
        let changes = changes::read(&self.pool).await.map_err(sqlx_err(format!(
            "reading the change counter of the {}",
            self.describe
        )))?;
        Ok(Some(changes))
    }

    /// SQL written with `?` placeholders, in the database's own placeholder style.
    fn sql(&self, text: &str) -> String {
        if !self.postgres {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 8);
        let mut n = 0;
        for c in text.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    }

    pub async fn load(&self, table: &TableIdent) -> Result<Option<Table>> {
        let exists = self
            .tables
            .table_exists(table)
            .await
            .map_err(iceberg_err(format!("looking up {table}")))?;
        if !exists {
            return Ok(None);
        }
        self.tables
            .load_table(table)
            .await
            .map(Some)
            .map_err(iceberg_err(format!("loading {table}")))
    }

    /// The table's current metadata file, in one query (`None`: no such table): tells whether a table lake
    /// holds in memory is still current without reading its metadata.
    pub async fn current_location(&self, table: &TableIdent) -> Result<Option<String>> {
        let row = sqlx::query(&self.sql(
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND \
             table_namespace = ? AND table_name = ? AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
        ))
        .bind(&self.name)
        .bind(table.namespace().join("."))
        .bind(table.name())
        .fetch_optional(&self.pool)
        .await
        .map_err(sqlx_err(format!("looking up {table}")))?;
        row.map(|row| row.try_get::<Option<String>, _>(0))
            .transpose()
            .map(Option::flatten)
            .map_err(sqlx_err(format!(
                "reading the metadata location of {table}"
            )))
    }

    /// Every namespace: those created explicitly and those holding tables (environment names included),
    /// read from the database on each call so a plan applied meanwhile is seen.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .tables
            .list_namespaces(None)
            .await
            .map_err(iceberg_err("listing namespaces"))?
            .into_iter()
            .map(|ns| ns.join("."))
            .collect();
        names.extend(
            self.tables_with_prefix("")
                .await?
                .into_iter()
                .map(|t| t.namespace),
        );
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Whether a namespace exists: created explicitly, or holding a table (an environment's names).
    pub async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        let ident = NamespaceIdent::new(namespace.to_string());
        if self
            .tables
            .namespace_exists(&ident)
            .await
            .map_err(iceberg_err("reading namespaces"))?
        {
            return Ok(true);
        }
        Ok(!self.table_names(namespace, Some(1)).await?.is_empty())
    }

    /// A namespace's properties, or `None` when it does not exist.
    pub async fn namespace_properties(
        &self,
        namespace: &str,
    ) -> Result<Option<HashMap<String, String>>> {
        if !self.namespace_exists(namespace).await? {
            return Ok(None);
        }
        let ident = NamespaceIdent::new(namespace.to_string());
        match self.tables.get_namespace(&ident).await {
            Ok(found) => {
                let mut properties = found.properties().clone();
                properties.remove(external::EXISTS_PROPERTY);
                Ok(Some(properties))
            }
            // A namespace that only holds environment names has no properties row.
            Err(_) => Ok(Some(HashMap::new())),
        }
    }

    /// The names of the tables in one namespace, sorted; at most `limit` of them.
    pub async fn table_names(&self, namespace: &str, limit: Option<u32>) -> Result<Vec<String>> {
        let limit = limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
        let rows = sqlx::query(&self.sql(&format!(
            "SELECT table_name FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? \
             ORDER BY table_name{limit}"
        )))
        .bind(&self.name)
        .bind(namespace)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err(format!(
            "listing the tables of namespace {namespace}"
        )))?;
        rows.iter()
            .map(|row| {
                row.try_get::<String, _>(0)
                    .map_err(sqlx_err("reading iceberg_tables"))
            })
            .collect()
    }

    /// Creates a namespace with `properties` (the caller checked it does not exist yet).
    pub async fn create_namespace(
        &self,
        namespace: &str,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.tables
            .create_namespace(&NamespaceIdent::new(namespace.to_string()), properties)
            .await
            .map(|_| ())
            .map_err(iceberg_err(format!("creating namespace {namespace}")))
    }

    pub async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        let ident = NamespaceIdent::new(namespace.to_string());
        let exists = self
            .tables
            .namespace_exists(&ident)
            .await
            .map_err(iceberg_err("reading namespaces"))?;
        if exists {
            return Ok(());
        }
        match self.tables.create_namespace(&ident, HashMap::new()).await {
            Ok(_) => Ok(()),
            // Another worker (or process) created it between our check and our insert: that is success.
            Err(e) => match self.tables.namespace_exists(&ident).await {
                Ok(true) => Ok(()),
                _ => Err(iceberg_err(format!("creating namespace {namespace}"))(e)),
            },
        }
    }

    pub async fn create(&self, table: &TableIdent, creation: TableCreation) -> Result<Table> {
        self.ensure_namespace(&table.namespace().join(".")).await?;
        self.tables
            .create_table(table.namespace(), creation)
            .await
            .map_err(iceberg_err(format!("creating {table}")))
    }

    /// Where a new table of `namespace` goes (the namespace's `location` property, else beside its name in
    /// the warehouse), creating the namespace when it does not exist yet.
    pub async fn new_table_location(&self, table: &TableIdent) -> Result<String> {
        let namespace = table.namespace().join(".");
        let known = super::known::lock(&self.namespace_locations)
            .get(&namespace)
            .cloned();
        let base = match known {
            Some(base) => base,
            None => {
                self.ensure_namespace(&namespace).await?;
                let location = self
                    .tables
                    .get_namespace(table.namespace())
                    .await
                    .ok()
                    .and_then(|found| found.properties().get("location").cloned());
                let base = location
                    .unwrap_or_else(|| format!("{}/{}", self.warehouse, namespace))
                    .trim_end_matches('/')
                    .to_string();
                super::known::lock(&self.namespace_locations).insert(namespace, base.clone());
                base
            }
        };
        Ok(format!("{base}/{}", table.name()))
    }

    /// Adds a table whose first metadata file is already written: one catalog write creates it together with
    /// its first snapshot. A table of that name created meanwhile by another writer is a commit conflict.
    pub async fn insert_new(&self, table: &TableIdent, metadata_location: &str) -> Result<()> {
        let inserted = sqlx::query(&self.sql(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, \
             previous_metadata_location, iceberg_type) VALUES (?, ?, ?, ?, NULL, 'TABLE') \
             ON CONFLICT DO NOTHING",
        ))
        .bind(&self.name)
        .bind(table.namespace().join("."))
        .bind(table.name())
        .bind(metadata_location)
        .execute(&self.pool)
        .await
        .map_err(sqlx_err(format!(
            "creating {table} in the {}",
            self.describe
        )))?
        .rows_affected();
        if inserted != 1 {
            return Err(LakeError::CommitConflict {
                table: table.to_string(),
            });
        }
        Ok(())
    }

    /// Removes the table from the catalog; its files stay (environment names or readers may still use them).
    pub async fn drop(&self, table: &TableIdent) -> Result<()> {
        sqlx::query(&self.sql(
            "DELETE FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        ))
        .bind(&self.name)
        .bind(table.namespace().join("."))
        .bind(table.name())
        .execute(&self.pool)
        .await
        .map_err(sqlx_err(format!("dropping {table}")))?;
        Ok(())
    }

    /// Removes the environment names that show a table stored under `location` (which is being dropped), so
    /// no name is left pointing at deleted files.
    pub async fn drop_names_into(&self, location: &str) -> Result<()> {
        let prefix = format!("{}/", location.trim_end_matches('/'));
        sqlx::query(&self.sql(
            "DELETE FROM iceberg_tables WHERE catalog_name = ? AND substr(metadata_location, 1, ?) = ?",
        ))
        .bind(&self.name)
        .bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
        .bind(&prefix)
        .execute(&self.pool)
        .await
        .map_err(sqlx_err(format!("dropping the names that show {location}")))?;
        Ok(())
    }

    /// Every table in namespaces whose name starts with `prefix`, with its current metadata file.
    pub async fn tables_with_prefix(&self, prefix: &str) -> Result<Vec<CatalogEntry>> {
        let rows = sqlx::query(&self.sql(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
             WHERE catalog_name = ?",
        ))
        .bind(&self.name)
        .fetch_all(&self.pool)
        .await
        .map_err(sqlx_err(format!(
            "listing the tables of the {}",
            self.describe
        )))?;
        let mut out = Vec::new();
        for row in rows {
            let read = sqlx_err("reading iceberg_tables");
            let namespace: String = row.try_get(0).map_err(read)?;
            if !namespace.starts_with(prefix) {
                continue;
            }
            let read = sqlx_err("reading iceberg_tables");
            let name: String = row.try_get(1).map_err(read)?;
            let read = sqlx_err("reading iceberg_tables");
            let metadata_location: Option<String> = row.try_get(2).map_err(read)?;
            out.push(CatalogEntry {
                namespace,
                name,
                metadata_location: metadata_location.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Commits a new metadata file: the table's pointer moves from `old` to `new` only if it still is `old`
    /// (the JDBC catalog protocol). Environment names that showed `old` move with it, in the same transaction,
    /// so every engine reading them sees the new snapshot too.
    pub async fn swap(&self, table: &TableIdent, old: &str, new: &str) -> Result<()> {
        let context = || format!("committing {table} to the {}", self.describe);
        let mut tx = self.pool.begin().await.map_err(sqlx_err(context()))?;
        if !self.swap_in(&mut tx, table, old, new).await? {
            tx.rollback().await.map_err(sqlx_err(context()))?;
            return Err(LakeError::CommitConflict {
                table: table.to_string(),
            });
        }
        tx.commit().await.map_err(sqlx_err(context()))
    }

    /// The compare-and-swap of [`LakeCatalog::swap`] inside the caller's transaction; `false` (and nothing
    /// changed) when the pointer is no longer `old`.
    async fn swap_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        table: &TableIdent,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let context = || format!("committing {table} to the {}", self.describe);
        let changed = sqlx::query(&self.sql(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
        ))
        .bind(new)
        .bind(old)
        .bind(&self.name)
        .bind(table.namespace().join("."))
        .bind(table.name())
        .bind(old)
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err(context()))?
        .rows_affected();
        if changed != 1 {
            return Ok(false);
        }
        sqlx::query(&self.sql(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND metadata_location = ?",
        ))
        .bind(new)
        .bind(old)
        .bind(&self.name)
        .bind(old)
        .execute(&mut **tx)
        .await
        .map_err(sqlx_err(context()))?;
        Ok(true)
    }

    /// Points each environment name at its target table's current metadata (zero copy), or removes it
    /// (`None`), all in one transaction. A target that is not an Iceberg table (a VIEW model) removes the name.
    pub async fn set_names(&self, names: &[(TableIdent, Option<TableIdent>)]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let mut namespaces: Vec<String> = names
            .iter()
            .filter(|(_, target)| target.is_some())
            .map(|(name, _)| name.namespace().join("."))
            .collect();
        namespaces.sort();
        namespaces.dedup();
        for namespace in &namespaces {
            self.ensure_namespace(namespace).await?;
        }
        let context = || format!("updating environment names in the {}", self.describe);
        // Locking the target row keeps a concurrent commit from moving it between our read and our insert.
        let read_target = self.sql(&format!(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?{}",
            if self.postgres { " FOR UPDATE" } else { "" }
        ));
        let delete = self.sql(
            "DELETE FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        );
        let insert = self.sql(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, \
             previous_metadata_location, iceberg_type) VALUES (?, ?, ?, ?, NULL, 'TABLE')",
        );
        let mut tx = self.pool.begin().await.map_err(sqlx_err(context()))?;
        for (name, target) in names {
            sqlx::query(&delete)
                .bind(&self.name)
                .bind(name.namespace().join("."))
                .bind(name.name())
                .execute(&mut *tx)
                .await
                .map_err(sqlx_err(context()))?;
            let Some(target) = target else { continue };
            let location: Option<String> = sqlx::query(&read_target)
                .bind(&self.name)
                .bind(target.namespace().join("."))
                .bind(target.name())
                .fetch_optional(&mut *tx)
                .await
                .map_err(sqlx_err(context()))?
                .map(|row| row.try_get::<String, _>(0))
                .transpose()
                .map_err(sqlx_err(context()))?;
            if let Some(location) = location {
                sqlx::query(&insert)
                    .bind(&self.name)
                    .bind(name.namespace().join("."))
                    .bind(name.name())
                    .bind(location)
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_err(context()))?;
            }
        }
        tx.commit().await.map_err(sqlx_err(context()))
    }
}
