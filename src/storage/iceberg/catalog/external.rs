//! Catalog changes other engines ask for through `lake serve`: commits of one or many tables (all or
//! nothing, creates staged in a transaction included), registers, renames, drops, namespace properties, and
//! the check that keeps their table locations inside the warehouse and apart from every other table's.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use iceberg::spec::{
    FormatVersion, SortOrder, TableMetadata, TableMetadataBuilder, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent, TableRequirement, TableUpdate};

use super::{LakeCatalog, sqlx_err};
use crate::error::{LakeError, LakehouseError, Result};
use crate::storage::iceberg::iceberg_err;

/// Namespace property that iceberg-catalog-sql (like pyiceberg) stores so a namespace exists without other
/// properties. It is bookkeeping, not the client's: loads leave it out and removals keep it.
pub const EXISTS_PROPERTY: &str = "exists";

/// One table's part of a commit: what must still hold, and what to change.
#[derive(Debug)]
pub struct TableChange {
    pub table: TableIdent,
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

impl TableChange {
    /// Whether the change creates its table (a staged create's commit carries `assert-create`).
    pub fn creates(&self) -> bool {
        self.requirements
            .iter()
            .any(|r| matches!(r, TableRequirement::NotExist))
    }

    /// The locations its updates move the table to.
    pub fn new_locations(&self) -> impl Iterator<Item = &str> {
        self.updates.iter().filter_map(|update| match update {
            TableUpdate::SetLocation { location } => Some(location.as_str()),
            _ => None,
        })
    }
}

/// A table's new state after a commit.
#[derive(Debug)]
pub struct Committed {
    pub table: TableIdent,
    pub metadata_location: String,
    pub metadata: Box<TableMetadata>,
}

/// Why a commit was refused. Nothing changed: no pointer moved.
#[derive(Debug, PartialEq)]
pub enum CommitRefusal {
    NoSuchTable(TableIdent),
    /// A requirement failed, or another writer committed first.
    Conflict(String),
    /// The updates do not make valid metadata.
    Invalid(String),
}

#[derive(Debug, PartialEq)]
pub enum RenameRefusal {
    NoSuchTable,
    NoSuchNamespace,
    AlreadyExists,
}

#[derive(Debug, PartialEq)]
pub enum RegisterRefusal {
    AlreadyExists,
    /// The metadata file cannot be read as Iceberg table metadata.
    Unreadable(String),
}

#[derive(Debug, PartialEq)]
pub enum NamespaceDropRefusal {
    NoSuchNamespace,
    NotEmpty,
}

/// What a namespace property update did, in the REST protocol's terms.
#[derive(Debug, Default, PartialEq)]
pub struct PropertyChanges {
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    pub missing: Vec<String>,
}

/// A commit's next metadata: written to its file, not yet pointed to.
struct Prepared {
    table: TableIdent,
    /// The pointer it replaces; `None` creates the table.
    old: Option<String>,
    new: String,
    metadata: TableMetadata,
}

/// The table location a metadata file belongs to (`…/t/metadata/00001-….metadata.json` → `…/t`).
fn table_location_of(metadata_location: &str) -> &str {
    metadata_location
        .rsplit_once("/metadata/")
        .map_or(metadata_location, |(table, _)| table)
}

/// What dropping a table did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    NoSuchTable,
    /// The name is gone (and, when purging was asked, its files).
    Dropped,
    /// The name is gone, but a purge left the files under `location`: another table still uses them.
    FilesKept {
        location: String,
    },
}

/// Whether one location is the other or lies inside it.
fn overlaps(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// The first update that describes a new table's shape: the metadata a staged create's commit starts from.
/// Its ids are assigned afresh, as for any new table; the updates then apply on top and reuse them.
fn creation_base(
    updates: &[TableUpdate],
    default_location: String,
) -> iceberg::Result<TableMetadata> {
    let schema = updates
        .iter()
        .find_map(|update| match update {
            TableUpdate::AddSchema { schema } => Some(schema.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                "creating a table needs an add-schema update",
            )
        })?;
    let spec = updates
        .iter()
        .find_map(|update| match update {
            TableUpdate::AddSpec { spec } => Some(spec.clone()),
            _ => None,
        })
        .unwrap_or_else(|| UnboundPartitionSpec::builder().build());
    let sort_order = updates
        .iter()
        .find_map(|update| match update {
            TableUpdate::AddSortOrder { sort_order } => Some(sort_order.clone()),
            _ => None,
        })
        .unwrap_or_else(SortOrder::unsorted_order);
    let location = updates
        .iter()
        .find_map(|update| match update {
            TableUpdate::SetLocation { location } => Some(location.clone()),
            _ => None,
        })
        .unwrap_or(default_location);
    let format_version = updates
        .iter()
        .find_map(|update| match update {
            TableUpdate::UpgradeFormatVersion { format_version } => Some(*format_version),
            _ => None,
        })
        .unwrap_or(FormatVersion::V2);
    TableMetadataBuilder::new(
        schema,
        spec,
        sort_order,
        location,
        format_version,
        HashMap::new(),
    )
    .and_then(|builder| builder.build())
    .map(|built| built.metadata)
}

impl LakeCatalog {
    /// Where a new table goes when its creator names no location: `<warehouse>/<namespace>/<table>`.
    pub fn default_location(&self, table: &TableIdent) -> String {
        format!(
            "{}/{}/{}",
            self.warehouse,
            table.namespace().join("/"),
            table.name()
        )
    }

    /// Why another engine may not put `table`'s files at `location`, if it may not: the location must lie
    /// inside the warehouse, use no `.`/`..` segments, and share no folder with another table's files (lake's
    /// versions above all).
    pub async fn refuse_location(
        &self,
        table: &TableIdent,
        location: &str,
    ) -> Result<Option<String>> {
        let location = location.trim_end_matches('/');
        let Some(inside) = location.strip_prefix(&format!("{}/", self.warehouse)) else {
            return Ok(Some(format!(
                "location {location} is outside the warehouse {}",
                self.warehouse
            )));
        };
        let clean = inside.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && !segment.chars().any(|c| c.is_control() || c == '\\')
        });
        if !clean {
            return Ok(Some(format!(
                "location {location} must be a plain path inside the warehouse"
            )));
        }
        let namespace = table.namespace().join(".");
        for entry in self.tables_with_prefix("").await? {
            let same_table = entry.namespace == namespace && entry.name == table.name();
            if !same_table && overlaps(table_location_of(&entry.metadata_location), location) {
                return Ok(Some(format!(
                    "location {location} overlaps the files of {}.{}",
                    entry.namespace, entry.name
                )));
            }
        }
        Ok(None)
    }

    /// Applies commits to one or many tables, all or nothing. Each change's requirements are checked against
    /// its table's current metadata, its updates applied with the iceberg crate's metadata builder and the
    /// next metadata file written; then every pointer moves in one database transaction, by the same
    /// compare-and-swap lake's own writes use. A change whose requirements include `assert-create` creates
    /// its table (the commit of a staged create). If any requirement fails or another writer got there first,
    /// no pointer moves.
    pub async fn commit(
        &self,
        changes: Vec<TableChange>,
    ) -> Result<std::result::Result<Vec<Committed>, CommitRefusal>> {
        let mut seen = HashSet::new();
        for change in &changes {
            if !seen.insert(change.table.clone()) {
                return Ok(Err(CommitRefusal::Invalid(format!(
                    "{} appears twice in one commit",
                    change.table
                ))));
            }
        }
        let mut prepared = Vec::with_capacity(changes.len());
        for change in changes {
            match self.prepare(change).await? {
                Ok(ready) => prepared.push(ready),
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        let context = || format!("committing to the {}", self.describe);
        let mut tx = self.pool.begin().await.map_err(sqlx_err(context()))?;
        for ready in &prepared {
            let moved = match &ready.old {
                Some(old) => self.swap_in(&mut tx, &ready.table, old, &ready.new).await?,
                None => self.insert_in(&mut tx, &ready.table, &ready.new).await?,
            };
            if !moved {
                tx.rollback().await.map_err(sqlx_err(context()))?;
                return Ok(Err(CommitRefusal::Conflict(format!(
                    "another writer committed to {} first",
                    ready.table
                ))));
            }
        }
        tx.commit().await.map_err(sqlx_err(context()))?;
        Ok(Ok(prepared
            .into_iter()
            .map(|ready| Committed {
                table: ready.table,
                metadata_location: ready.new,
                metadata: Box::new(ready.metadata),
            })
            .collect()))
    }

    /// Checks one change and writes its next metadata file (unreferenced until the pointer moves).
    async fn prepare(
        &self,
        change: TableChange,
    ) -> Result<std::result::Result<Prepared, CommitRefusal>> {
        let current = self.load(&change.table).await?;
        if current.is_none() && !change.creates() {
            return Ok(Err(CommitRefusal::NoSuchTable(change.table)));
        }
        let current_metadata = current.as_ref().map(|table| table.metadata());
        for requirement in &change.requirements {
            if let Err(failed) = requirement.check(current_metadata) {
                return Ok(Err(CommitRefusal::Conflict(failed.message().to_string())));
            }
        }
        let (builder, old) = match &current {
            Some(table) => {
                let old = current_pointer(table)?;
                (
                    table.metadata().clone().into_builder(Some(old.clone())),
                    Some(old),
                )
            }
            None => match creation_base(&change.updates, self.default_location(&change.table)) {
                Ok(base) => (TableMetadataBuilder::new_from_metadata(base, None), None),
                Err(invalid) => {
                    return Ok(Err(CommitRefusal::Invalid(invalid.message().to_string())));
                }
            },
        };
        let mut builder = builder;
        for update in change.updates {
            builder = match update.apply(builder) {
                Ok(next) => next,
                Err(invalid) => {
                    return Ok(Err(CommitRefusal::Invalid(invalid.message().to_string())));
                }
            };
        }
        let metadata = match builder.build() {
            Ok(built) => built.metadata,
            Err(invalid) => return Ok(Err(CommitRefusal::Invalid(invalid.message().to_string()))),
        };
        let (location, file_io) = match (&old, &current) {
            (Some(old), Some(table)) => (
                MetadataLocation::from_str(old)
                    .map_err(iceberg_err(format!(
                        "reading the metadata location of {}",
                        change.table
                    )))?
                    .with_next_version()
                    .with_new_metadata(&metadata),
                table.file_io().clone(),
            ),
            _ => (
                MetadataLocation::new_with_metadata(metadata.location(), &metadata),
                self.file_io.clone(),
            ),
        };
        metadata
            .write_to(&file_io, &location)
            .await
            .map_err(iceberg_err(format!(
                "writing the metadata of {}",
                change.table
            )))?;
        Ok(Ok(Prepared {
            table: change.table,
            old,
            new: location.to_string(),
            metadata,
        }))
    }

    /// Adds the catalog row of a new table inside the caller's transaction; `false` when the name is taken.
    async fn insert_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        table: &TableIdent,
        metadata_location: &str,
    ) -> Result<bool> {
        let context = || format!("creating {table} in the {}", self.describe);
        let taken = sqlx::query(&self.sql(
            "SELECT 1 FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        ))
        .bind(&self.name)
        .bind(table.namespace().join("."))
        .bind(table.name())
        .fetch_optional(&mut **tx)
        .await
        .map_err(sqlx_err(context()))?
        .is_some();
        if taken {
            return Ok(false);
        }
        let inserted = sqlx::query(&self.sql(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, metadata_location, \
             previous_metadata_location, iceberg_type) VALUES (?, ?, ?, ?, NULL, 'TABLE')",
        ))
        .bind(&self.name)
        .bind(table.namespace().join("."))
        .bind(table.name())
        .bind(metadata_location)
        .execute(&mut **tx)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            // A concurrent create of the same name won between our check and our insert.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(sqlx_err(context())(e)),
        }
    }

    /// Metadata for a new table, to be created by a later commit (a staged create): nothing is written.
    pub fn stage(&self, creation: iceberg::TableCreation) -> iceberg::Result<TableMetadata> {
        TableMetadataBuilder::from_table_creation(creation)
            .and_then(|builder| builder.build())
            .map(|built| built.metadata)
    }

    /// Adds `table` to the catalog at an existing metadata file, or (`overwrite`) points it there.
    pub async fn register(
        &self,
        table: &TableIdent,
        metadata_location: &str,
        overwrite: bool,
    ) -> Result<std::result::Result<TableMetadata, RegisterRefusal>> {
        let metadata = match TableMetadata::read_from(&self.file_io, metadata_location).await {
            Ok(metadata) => metadata,
            Err(e) => return Ok(Err(RegisterRefusal::Unreadable(e.message().to_string()))),
        };
        let context = || format!("registering {table} in the {}", self.describe);
        let mut tx = self.pool.begin().await.map_err(sqlx_err(context()))?;
        if !self.insert_in(&mut tx, table, metadata_location).await? {
            if !overwrite {
                tx.rollback().await.map_err(sqlx_err(context()))?;
                return Ok(Err(RegisterRefusal::AlreadyExists));
            }
            sqlx::query(&self.sql(
                "UPDATE iceberg_tables SET previous_metadata_location = metadata_location, \
                 metadata_location = ? WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
            ))
            .bind(metadata_location)
            .bind(&self.name)
            .bind(table.namespace().join("."))
            .bind(table.name())
            .execute(&mut *tx)
            .await
            .map_err(sqlx_err(context()))?;
        }
        tx.commit().await.map_err(sqlx_err(context()))?;
        Ok(Ok(metadata))
    }

    /// Removes a table from the catalog. With `purge`, its metadata, manifests and (unless its `gc.enabled`
    /// property is false) data files are deleted too, but only when no other catalog row still points into
    /// its location.
    pub async fn drop_table(&self, table: &TableIdent, purge: bool) -> Result<Dropped> {
        let Some(found) = self.load(table).await? else {
            return Ok(Dropped::NoSuchTable);
        };
        self.drop(table).await?;
        if !purge {
            return Ok(Dropped::Dropped);
        }
        let location = found.metadata().location().to_string();
        let shared = self
            .tables_with_prefix("")
            .await?
            .iter()
            .any(|entry| overlaps(table_location_of(&entry.metadata_location), &location));
        if shared {
            return Ok(Dropped::FilesKept { location });
        }
        iceberg::drop_table_data(&found)
            .await
            .map_err(iceberg_err(format!("purging the files of {table}")))?;
        Ok(Dropped::Dropped)
    }

    /// Moves a table to another name, in an existing namespace.
    pub async fn rename(
        &self,
        source: &TableIdent,
        destination: &TableIdent,
    ) -> Result<std::result::Result<(), RenameRefusal>> {
        if !self
            .namespace_exists(&destination.namespace().join("."))
            .await?
        {
            return Ok(Err(RenameRefusal::NoSuchNamespace));
        }
        let context = || format!("renaming {source} in the {}", self.describe);
        let mut tx = self.pool.begin().await.map_err(sqlx_err(context()))?;
        let taken = sqlx::query(&self.sql(
            "SELECT 1 FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        ))
        .bind(&self.name)
        .bind(destination.namespace().join("."))
        .bind(destination.name())
        .fetch_optional(&mut *tx)
        .await
        .map_err(sqlx_err(context()))?
        .is_some();
        if taken && source != destination {
            tx.rollback().await.map_err(sqlx_err(context()))?;
            return Ok(Err(RenameRefusal::AlreadyExists));
        }
        let moved = sqlx::query(&self.sql(
            "UPDATE iceberg_tables SET table_namespace = ?, table_name = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
        ))
        .bind(destination.namespace().join("."))
        .bind(destination.name())
        .bind(&self.name)
        .bind(source.namespace().join("."))
        .bind(source.name())
        .execute(&mut *tx)
        .await;
        match moved {
            Ok(done) if done.rows_affected() == 1 => {
                tx.commit().await.map_err(sqlx_err(context()))?;
                Ok(Ok(()))
            }
            Ok(_) => {
                tx.rollback().await.map_err(sqlx_err(context()))?;
                Ok(Err(RenameRefusal::NoSuchTable))
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Ok(Err(RenameRefusal::AlreadyExists))
            }
            Err(e) => Err(sqlx_err(context())(e)),
        }
    }

    /// Drops a namespace that holds no table.
    pub async fn drop_namespace(
        &self,
        namespace: &str,
    ) -> Result<std::result::Result<(), NamespaceDropRefusal>> {
        if !self.namespace_exists(namespace).await? {
            return Ok(Err(NamespaceDropRefusal::NoSuchNamespace));
        }
        if !self.table_names(namespace, Some(1)).await?.is_empty() {
            return Ok(Err(NamespaceDropRefusal::NotEmpty));
        }
        sqlx::query(&self.sql(
            "DELETE FROM iceberg_namespace_properties WHERE catalog_name = ? AND namespace = ?",
        ))
        .bind(&self.name)
        .bind(namespace)
        .execute(&self.pool)
        .await
        .map_err(sqlx_err(format!("dropping namespace {namespace}")))?;
        Ok(Ok(()))
    }

    /// Removes and sets namespace properties in one transaction (the namespace exists; the caller checked).
    pub async fn update_namespace_properties(
        &self,
        namespace: &str,
        removals: &[String],
        updates: &HashMap<String, String>,
    ) -> Result<PropertyChanges> {
        let context = || format!("updating the properties of namespace {namespace}");
        let mut changes = PropertyChanges::default();
        let mut tx = self.pool.begin().await.map_err(sqlx_err(context()))?;
        let delete = self.sql(
            "DELETE FROM iceberg_namespace_properties \
             WHERE catalog_name = ? AND namespace = ? AND property_key = ?",
        );
        for key in removals {
            let removed = key != EXISTS_PROPERTY
                && sqlx::query(&delete)
                    .bind(&self.name)
                    .bind(namespace)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_err(context()))?
                    .rows_affected()
                    > 0;
            if removed {
                changes.removed.push(key.clone());
            } else {
                changes.missing.push(key.clone());
            }
        }
        let update = self.sql(
            "UPDATE iceberg_namespace_properties SET property_value = ? \
             WHERE catalog_name = ? AND namespace = ? AND property_key = ?",
        );
        let insert = self.sql(
            "INSERT INTO iceberg_namespace_properties (catalog_name, namespace, property_key, property_value) \
             VALUES (?, ?, ?, ?)",
        );
        let mut keys: Vec<&String> = updates.keys().collect();
        keys.sort();
        for key in keys {
            let value = &updates[key];
            let existed = sqlx::query(&update)
                .bind(value)
                .bind(&self.name)
                .bind(namespace)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(sqlx_err(context()))?
                .rows_affected()
                > 0;
            if !existed {
                sqlx::query(&insert)
                    .bind(&self.name)
                    .bind(namespace)
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await
                    .map_err(sqlx_err(context()))?;
            }
            changes.updated.push(key.clone());
        }
        // A namespace known only by its tables gets its marker row, so it outlives them as created ones do.
        let marked = sqlx::query(&self.sql(
            "SELECT 1 FROM iceberg_namespace_properties \
             WHERE catalog_name = ? AND namespace = ? AND property_key = ?",
        ))
        .bind(&self.name)
        .bind(namespace)
        .bind(EXISTS_PROPERTY)
        .fetch_optional(&mut *tx)
        .await
        .map_err(sqlx_err(context()))?
        .is_some();
        if !marked {
            sqlx::query(&insert)
                .bind(&self.name)
                .bind(namespace)
                .bind(EXISTS_PROPERTY)
                .bind("true")
                .execute(&mut *tx)
                .await
                .map_err(sqlx_err(context()))?;
        }
        tx.commit().await.map_err(sqlx_err(context()))?;
        Ok(changes)
    }
}

/// The metadata file a loaded table's pointer names.
fn current_pointer(table: &Table) -> Result<String> {
    table
        .metadata_location()
        .map(str::to_string)
        .ok_or_else(|| {
            LakeError::lakehouse(
                format!("committing {}", table.identifier()),
                LakehouseError::Table("the table has no metadata location".into()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metadata_file_belongs_to_the_folder_above_metadata() {
        assert_eq!(
            table_location_of("file:///w/ext/t/metadata/00001-a.metadata.json"),
            "file:///w/ext/t"
        );
    }

    #[test]
    fn locations_overlap_when_one_holds_the_other() {
        assert!(overlaps("s3://b/w/t", "s3://b/w/t/"));
        assert!(overlaps("s3://b/w/t/sub", "s3://b/w/t"));
        assert!(overlaps("s3://b/w/t", "s3://b/w/t/sub"));
        assert!(!overlaps("s3://b/w/t", "s3://b/w/t2"));
        assert!(!overlaps("s3://b/w/a", "s3://b/w/b"));
    }
}
