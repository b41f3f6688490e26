//! What lake holds in memory of its Iceberg tables between commits: each table's metadata, manifest list and
//! live data files, and the parsed manifests (immutable files) they came from, so a batch re-reads none of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use iceberg::TableIdent;
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, ManifestContentType, ManifestEntryRef, ManifestFile, ManifestList,
};
use iceberg::table::Table;

use super::iceberg_err;
use crate::error::Result;

/// A table as of one metadata file: its current snapshot's manifests and the data files alive in it.
#[derive(Debug, Clone)]
pub struct Known {
    pub table: Table,
    pub manifests: Arc<Vec<ManifestFile>>,
    pub live: Arc<Vec<ManifestEntryRef>>,
    /// A table not in the catalog yet: its metadata is only in memory (its location names a file never
    /// written) and its first commit creates it, so creating a table and its first snapshot is one write.
    pub pending: bool,
}

impl Known {
    pub fn location(&self) -> &str {
        self.table.metadata_location().unwrap_or_default()
    }
}

/// Parsed manifests kept at most; past it the cache starts again (a long history's early manifests are
/// merged away and no longer read).
const MANIFESTS_CACHED: usize = 4096;

/// Tables and manifests already read. A table is trusted only while the catalog still names the metadata file
/// it was read from, so another writer's commit is always seen.
#[derive(Default)]
pub struct TableCache {
    tables: Mutex<HashMap<TableIdent, Known>>,
    manifests: Mutex<HashMap<String, Arc<Vec<ManifestEntryRef>>>>,
}

/// A poisoned lock only means another thread panicked mid-update of a cache; the maps stay valid (every
/// update is one insert or remove), so the value is used as it is.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TableCache {
    /// The table as cached, if it was read from `location`.
    pub fn get(&self, ident: &TableIdent, location: &str) -> Option<Known> {
        lock(&self.tables)
            .get(ident)
            .filter(|known| known.location() == location)
            .cloned()
    }

    pub fn put(&self, known: Known) {
        lock(&self.tables).insert(known.table.identifier().clone(), known);
    }

    pub fn forget(&self, ident: &TableIdent) {
        lock(&self.tables).remove(ident);
    }

    /// The entries of one manifest, read once.
    pub async fn manifest(
        &self,
        manifest: &ManifestFile,
        file_io: &FileIO,
    ) -> Result<Arc<Vec<ManifestEntryRef>>> {
        if let Some(entries) = lock(&self.manifests).get(&manifest.manifest_path) {
            return Ok(entries.clone());
        }
        let loaded = manifest
            .load_manifest(file_io)
            .await
            .map_err(iceberg_err(format!(
                "reading the manifest {}",
                manifest.manifest_path
            )))?;
        let entries = Arc::new(loaded.entries().to_vec());
        self.remember_manifest(manifest.manifest_path.clone(), entries.clone());
        Ok(entries)
    }

    /// Entries of a manifest this process wrote, so it is not read back.
    pub fn remember_manifest(&self, path: String, entries: Arc<Vec<ManifestEntryRef>>) {
        let mut cached = lock(&self.manifests);
        if cached.len() >= MANIFESTS_CACHED {
            cached.clear();
        }
        cached.insert(path, entries);
    }

    #[cfg(test)]
    pub fn cached_manifest(&self, path: &str) -> Option<Arc<Vec<ManifestEntryRef>>> {
        lock(&self.manifests).get(path).cloned()
    }

    /// Reads a table's current manifest list and the data files alive in it (manifests from the cache).
    pub async fn read(&self, table: Table) -> Result<Known> {
        let context = || format!("reading the snapshot of {}", table.identifier());
        let manifests = match table.metadata().current_snapshot() {
            None => Vec::new(),
            Some(snapshot) => {
                let bytes = table
                    .file_io()
                    .new_input(snapshot.manifest_list())
                    .map_err(iceberg_err(context()))?
                    .read()
                    .await
                    .map_err(iceberg_err(context()))?;
                ManifestList::parse_with_version(&bytes, table.metadata().format_version())
                    .map_err(iceberg_err(context()))?
                    .consume_entries()
                    .into_iter()
                    .collect()
            }
        };
        self.with_manifests(table, manifests).await
    }

    /// The table with this manifest list, its live data files gathered from the manifests.
    pub async fn with_manifests(
        &self,
        table: Table,
        manifests: Vec<ManifestFile>,
    ) -> Result<Known> {
        let mut live = Vec::new();
        for manifest in &manifests {
            if manifest.content != ManifestContentType::Data {
                continue;
            }
            let entries = self.manifest(manifest, table.file_io()).await?;
            live.extend(
                entries
                    .iter()
                    .filter(|e| e.is_alive() && e.content_type() == DataContentType::Data)
                    .cloned(),
            );
        }
        Ok(Known {
            table,
            manifests: Arc::new(manifests),
            live: Arc::new(live),
            pending: false,
        })
    }
}
