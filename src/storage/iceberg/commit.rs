//! Iceberg snapshots written with the public spec writers: append, overwrite and delete (iceberg-rust 0.10.1
//! only has fast-append). The caller swaps the catalog pointer; until then no reader sees the new snapshot.

use std::collections::{HashMap, HashSet};

use iceberg::MetadataLocation;
use std::sync::Arc;

use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestEntry, ManifestEntryRef, ManifestFile,
    ManifestListWriter, ManifestStatus, ManifestWriter, ManifestWriterBuilder, Operation, Snapshot,
    SnapshotReference, SnapshotRetention, Summary, TableMetadata, UNASSIGNED_SEQUENCE_NUMBER,
};
use sha2::{Digest, Sha256};

use super::iceberg_err;
use super::known::{Known, TableCache};
use crate::error::{LakeError, LakehouseError, Result};

/// Which of the table's live data files the new snapshot removes.
#[derive(Clone, Copy)]
pub enum Removal<'a> {
    Nothing,
    All,
    /// Files by their location (as the manifests record it).
    Files(&'a HashSet<String>),
}

impl Removal<'_> {
    pub fn removes(&self, location: &str) -> bool {
        match self {
            Removal::Nothing => false,
            Removal::All => true,
            Removal::Files(files) => files.contains(location),
        }
    }
}

/// Manifests carried over from earlier snapshots that make a commit merge the small ones into one: without
/// it every commit adds a manifest, and a table written in daily batches would list thousands.
const MANIFESTS_BEFORE_MERGE: usize = 32;
/// Manifests with at least this many files are full: they are carried as they are, never merged again.
const FULL_MANIFEST_FILES: u32 = 4096;
/// Snapshots a table keeps; each commit past it expires the oldest (never one a branch or tag names), so
/// the metadata file, read and written by every commit, stays the same size over a long history.
const SNAPSHOTS_KEPT: usize = 100;

/// Counts a snapshot summary reports.
#[derive(Default)]
struct Counts {
    added_files: u64,
    added_records: u64,
    deleted_files: u64,
    deleted_records: u64,
    total_files: u64,
    total_records: u64,
}

/// A snapshot written but not yet committed.
pub struct Written {
    /// The new metadata file, for the catalog's compare-and-swap.
    pub location: String,
    pub snapshot_id: i64,
    pub metadata: TableMetadata,
    /// The new snapshot's manifest list.
    pub manifests: Vec<ManifestFile>,
    /// The entries of the manifests this snapshot wrote, as a reader will find them (by manifest path).
    pub written_entries: EntriesByManifest,
    /// Files no metadata reaches once the swap is made (metadata files that left the metadata log, manifest
    /// lists of expired snapshots): deleted after it, best-effort.
    pub unreachable: Vec<String>,
}

/// Writes manifests, manifest list and the next metadata file for a snapshot of `known` that adds `added` and
/// removes what `removal` names; manifests already read come from `cache`. `None`: the snapshot would change
/// nothing.
pub async fn write_snapshot(
    known: &Known,
    cache: &TableCache,
    added: Vec<DataFile>,
    removal: Removal<'_>,
) -> Result<Option<Written>> {
    let snapshot = SnapshotWriter::new(known)?;
    let mut counts = Counts::default();
    let (mut written, carried) = snapshot
        .rewrite_removals(cache, removal, &mut counts)
        .await?;
    if !added.is_empty() {
        written.insert(0, snapshot.added_manifest(added, &mut counts).await?);
    }
    if counts.added_files == 0 && counts.deleted_files == 0 {
        return Ok(None);
    }
    let full = snapshot
        .merge_small_manifests(cache, carried, &mut written)
        .await?;
    let (listed, written_entries) = snapshot.list(written, full, &mut counts);
    let list_path = snapshot.write_manifest_list(&listed).await?;
    let (location, metadata, unreachable) = snapshot.write_metadata(list_path, &counts).await?;
    Ok(Some(Written {
        location,
        snapshot_id: snapshot.snapshot_id,
        metadata,
        manifests: listed,
        written_entries,
        unreachable,
    }))
}

/// A manifest written by this snapshot, with the entries a reader will find in it.
type WrittenManifest = (ManifestFile, Vec<ManifestEntryRef>);

/// The entries of the manifests a snapshot wrote, by manifest path.
type EntriesByManifest = Vec<(String, Arc<Vec<ManifestEntryRef>>)>;

/// One snapshot of a table being written: its id and sequence number, on the table's metadata and files.
struct SnapshotWriter<'a> {
    known: &'a Known,
    metadata: &'a TableMetadata,
    file_io: &'a iceberg::io::FileIO,
    old_location: String,
    parent: Option<&'a iceberg::spec::SnapshotRef>,
    snapshot_id: i64,
    sequence: i64,
    /// What errors say the write was doing.
    context: String,
}

impl<'a> SnapshotWriter<'a> {
    fn new(known: &'a Known) -> Result<SnapshotWriter<'a>> {
        let table = &known.table;
        let context = format!("committing {}", table.identifier());
        let metadata = table.metadata();
        if metadata.format_version() != FormatVersion::V2 {
            return Err(LakeError::lakehouse(
                context,
                LakehouseError::Table(format!(
                    "lake writes Iceberg format v2 tables; this one is {}",
                    metadata.format_version()
                )),
            ));
        }
        let old_location = table
            .metadata_location()
            .ok_or_else(|| {
                LakeError::lakehouse(
                    context.clone(),
                    LakehouseError::Table("the table has no metadata location".into()),
                )
            })?
            .to_string();
        Ok(SnapshotWriter {
            known,
            metadata,
            file_io: table.file_io(),
            parent: metadata.current_snapshot(),
            snapshot_id: new_snapshot_id(&old_location, metadata),
            sequence: metadata.next_sequence_number(),
            old_location,
            context,
        })
    }

    /// A new manifest file, numbered `n` among this snapshot's.
    fn manifest_writer(&self, n: usize) -> Result<ManifestOut> {
        let out = self
            .file_io
            .new_output(format!(
                "{}/metadata/{}-m{n}.avro",
                self.metadata.location(),
                self.snapshot_id
            ))
            .map_err(iceberg_err(&self.context))?;
        Ok(ManifestOut {
            writer: ManifestWriterBuilder::new(
                out,
                Some(self.snapshot_id),
                self.metadata.current_schema().clone(),
                self.metadata.default_partition_spec().as_ref().clone(),
            )
            .build_v2_data(),
            entries: Vec::new(),
            snapshot_id: self.snapshot_id,
            sequence: self.sequence,
        })
    }

    /// A file a rewritten or merged manifest keeps: an EXISTING entry with its sequence numbers, as the spec
    /// requires (removed files become DELETED entries; entries deleted by earlier snapshots are dropped).
    fn carry(&self, writer: &mut ManifestOut, entry: &ManifestEntryRef) -> Result<()> {
        let sequence_number = entry.sequence_number().unwrap_or(0);
        let file_sequence = entry.file_sequence_number.or(Some(sequence_number));
        writer
            .keep(
                entry.data_file().clone(),
                entry
                    .snapshot_id()
                    .or(self.parent.map(|p| p.snapshot_id()))
                    .unwrap_or(self.snapshot_id),
                sequence_number,
                file_sequence,
            )
            .map_err(iceberg_err(&self.context))
    }

    /// Every data manifest holding a file `removal` removes, rewritten with that file deleted; and the
    /// manifests carried as they are.
    async fn rewrite_removals(
        &self,
        cache: &TableCache,
        removal: Removal<'_>,
        counts: &mut Counts,
    ) -> Result<(Vec<WrittenManifest>, Vec<ManifestFile>)> {
        let mut written = Vec::new();
        let mut carried = Vec::new();
        for (n, manifest_file) in self.known.manifests.iter().enumerate() {
            if matches!(removal, Removal::Nothing)
                || manifest_file.content != ManifestContentType::Data
            {
                carried.push(manifest_file.clone());
                continue;
            }
            let entries = cache.manifest(manifest_file, self.file_io).await?;
            let live: Vec<_> = entries.iter().filter(|e| e.is_alive()).collect();
            if !live.iter().any(|e| removal.removes(e.file_path())) {
                carried.push(manifest_file.clone());
                continue;
            }
            let mut writer = self.manifest_writer(n + 2)?;
            for entry in live {
                if !removal.removes(entry.file_path()) {
                    self.carry(&mut writer, entry)?;
                    continue;
                }
                counts.deleted_files += 1;
                counts.deleted_records += entry.record_count();
                let sequence_number = entry.sequence_number().unwrap_or(0);
                let file_sequence = entry.file_sequence_number.or(Some(sequence_number));
                writer
                    .delete(entry.data_file().clone(), sequence_number, file_sequence)
                    .map_err(iceberg_err(&self.context))?;
            }
            written.push(writer.finish(&self.context).await?);
        }
        Ok((written, carried))
    }

    /// The manifest of the files this snapshot adds.
    async fn added_manifest(
        &self,
        added: Vec<DataFile>,
        counts: &mut Counts,
    ) -> Result<WrittenManifest> {
        let mut writer = self.manifest_writer(0)?;
        for file in added {
            counts.added_files += 1;
            counts.added_records += file.record_count();
            writer.add(file).map_err(iceberg_err(&self.context))?;
        }
        writer.finish(&self.context).await
    }

    /// The carried manifests that stay as they are; once enough small ones (of the current spec) pile up,
    /// they are merged into one written manifest instead. Older manifests with no live file left are not
    /// carried forward.
    async fn merge_small_manifests(
        &self,
        cache: &TableCache,
        mut carried: Vec<ManifestFile>,
        written: &mut Vec<WrittenManifest>,
    ) -> Result<Vec<ManifestFile>> {
        carried
            .retain(|m| m.added_files_count.unwrap_or(1) + m.existing_files_count.unwrap_or(1) > 0);
        let live_files = |m: &ManifestFile| {
            m.added_files_count.unwrap_or(FULL_MANIFEST_FILES)
                + m.existing_files_count.unwrap_or(FULL_MANIFEST_FILES)
        };
        let spec_id = self.metadata.default_partition_spec_id();
        let (small, mut full): (Vec<ManifestFile>, Vec<ManifestFile>) =
            carried.into_iter().partition(|m| {
                m.content == ManifestContentType::Data
                    && m.partition_spec_id == spec_id
                    && live_files(m) < FULL_MANIFEST_FILES
            });
        if small.len() < MANIFESTS_BEFORE_MERGE {
            full.extend(small);
            return Ok(full);
        }
        let mut writer = self.manifest_writer(1)?;
        for manifest_file in &small {
            let entries = cache.manifest(manifest_file, self.file_io).await?;
            for entry in entries.iter().filter(|e| e.is_alive()) {
                self.carry(&mut writer, entry)?;
            }
        }
        written.push(writer.finish(&self.context).await?);
        Ok(full)
    }

    /// The snapshot's manifest list: the manifests it wrote (even one that only records deletions: that is
    /// the history), then the full ones carried; with the written manifests' entries by path, and the
    /// table's totals counted.
    fn list(
        &self,
        written: Vec<WrittenManifest>,
        full: Vec<ManifestFile>,
        counts: &mut Counts,
    ) -> (Vec<ManifestFile>, EntriesByManifest) {
        let mut written_entries = Vec::with_capacity(written.len());
        let mut listed: Vec<ManifestFile> = Vec::with_capacity(written.len() + full.len());
        for (mut m, entries) in written {
            // The sequence number the list writer assigns, so the list kept in memory matches the file.
            if m.sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                m.sequence_number = self.sequence;
            }
            if m.min_sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
                m.min_sequence_number = self.sequence;
            }
            written_entries.push((m.manifest_path.clone(), Arc::new(entries)));
            listed.push(m);
        }
        listed.extend(full);
        for m in &listed {
            counts.total_files += u64::from(m.added_files_count.unwrap_or(0))
                + u64::from(m.existing_files_count.unwrap_or(0));
            counts.total_records +=
                m.added_rows_count.unwrap_or(0) + m.existing_rows_count.unwrap_or(0);
        }
        (listed, written_entries)
    }

    /// Writes the manifest list file; its path.
    async fn write_manifest_list(&self, listed: &[ManifestFile]) -> Result<String> {
        let context = &self.context;
        let list_path = format!(
            "{}/metadata/snap-{}-0.avro",
            self.metadata.location(),
            self.snapshot_id
        );
        let mut list_writer = ManifestListWriter::v2(
            self.file_io
                .new_output(list_path.clone())
                .map_err(iceberg_err(context))?
                .writer()
                .await
                .map_err(iceberg_err(context))?,
            self.snapshot_id,
            self.parent.map(|p| p.snapshot_id()),
            self.sequence,
        );
        list_writer
            .add_manifests(listed.iter().cloned())
            .map_err(iceberg_err(context))?;
        list_writer.close().await.map_err(iceberg_err(context))?;
        Ok(list_path)
    }

    /// The next metadata file, with the snapshot added as `main` and the oldest snapshots past
    /// `SNAPSHOTS_KEPT` expired: its location, its contents, and the files it no longer reaches.
    async fn write_metadata(
        &self,
        list_path: String,
        counts: &Counts,
    ) -> Result<(String, TableMetadata, Vec<String>)> {
        let context = &self.context;
        let metadata = self.metadata;
        let operation = match (counts.added_files > 0, counts.deleted_files > 0) {
            (_, false) => Operation::Append,
            (true, true) => Operation::Overwrite,
            (false, true) => Operation::Delete,
        };
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_path)
            .with_snapshot_id(self.snapshot_id)
            .with_parent_snapshot_id(self.parent.map(|p| p.snapshot_id()))
            .with_sequence_number(self.sequence)
            .with_summary(summary(operation, counts))
            .with_schema_id(metadata.current_schema_id())
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .build();
        let expired = snapshots_to_expire(metadata);
        let mut unreachable: Vec<String> = metadata
            .snapshots()
            .filter(|s| expired.contains(&s.snapshot_id()))
            .map(|s| s.manifest_list().to_string())
            .collect();
        let built = metadata
            .clone()
            // A pending table's first metadata file was never written, so the log does not name it.
            .into_builder((!self.known.pending).then(|| self.old_location.clone()))
            .add_snapshot(snapshot)
            .map_err(iceberg_err(context))?
            .set_ref(
                "main",
                SnapshotReference::new(
                    self.snapshot_id,
                    SnapshotRetention::branch(None, None, None),
                ),
            )
            .map_err(iceberg_err(context))?
            .remove_snapshots(&expired)
            .build()
            .map_err(iceberg_err(context))?;
        unreachable.extend(
            built
                .expired_metadata_logs
                .iter()
                .map(|log| log.metadata_file.clone()),
        );
        let next = self
            .old_location
            .parse::<MetadataLocation>()
            .map_err(iceberg_err(context))?
            .with_next_version();
        built
            .metadata
            .write_to(self.file_io, &next)
            .await
            .map_err(iceberg_err(context))?;
        Ok((next.to_string(), built.metadata, unreachable))
    }
}

/// A manifest being written, beside the entries a reader will find in it (inherited snapshot id and
/// sequence numbers filled in, as reading fills them), so the new snapshot is never read back from disk.
struct ManifestOut {
    writer: ManifestWriter,
    entries: Vec<ManifestEntryRef>,
    snapshot_id: i64,
    sequence: i64,
}

impl ManifestOut {
    fn add(&mut self, file: DataFile) -> iceberg::Result<()> {
        self.writer.add_file(file.clone(), self.sequence)?;
        self.remember(
            ManifestStatus::Added,
            file,
            self.snapshot_id,
            self.sequence,
            Some(self.sequence),
        );
        Ok(())
    }

    fn keep(
        &mut self,
        file: DataFile,
        snapshot_id: i64,
        sequence_number: i64,
        file_sequence_number: Option<i64>,
    ) -> iceberg::Result<()> {
        self.writer.add_existing_file(
            file.clone(),
            snapshot_id,
            sequence_number,
            file_sequence_number,
        )?;
        self.remember(
            ManifestStatus::Existing,
            file,
            snapshot_id,
            sequence_number,
            file_sequence_number,
        );
        Ok(())
    }

    fn delete(
        &mut self,
        file: DataFile,
        sequence_number: i64,
        file_sequence_number: Option<i64>,
    ) -> iceberg::Result<()> {
        self.writer
            .add_delete_file(file.clone(), sequence_number, file_sequence_number)?;
        let snapshot_id = self.snapshot_id;
        self.remember(
            ManifestStatus::Deleted,
            file,
            snapshot_id,
            sequence_number,
            file_sequence_number,
        );
        Ok(())
    }

    fn remember(
        &mut self,
        status: ManifestStatus,
        data_file: DataFile,
        snapshot_id: i64,
        sequence_number: i64,
        file_sequence_number: Option<i64>,
    ) {
        self.entries.push(Arc::new(
            ManifestEntry::builder()
                .status(status)
                .snapshot_id(snapshot_id)
                .sequence_number(sequence_number)
                .file_sequence_number_opt(file_sequence_number)
                .data_file(data_file)
                .build(),
        ));
    }

    async fn finish(self, context: &str) -> Result<(ManifestFile, Vec<ManifestEntryRef>)> {
        let file = self
            .writer
            .write_manifest_file()
            .await
            .map_err(iceberg_err(context))?;
        Ok((file, self.entries))
    }
}

/// The oldest snapshots beyond [`SNAPSHOTS_KEPT`] once one more is added, never the current one nor one a
/// branch or tag other than `main` (which moves to the new snapshot) names.
fn snapshots_to_expire(metadata: &TableMetadata) -> Vec<i64> {
    let excess = (metadata.snapshots().len() + 1).saturating_sub(SNAPSHOTS_KEPT);
    if excess == 0 {
        return Vec::new();
    }
    // `TableMetadata` keeps its refs to itself; its serialised form lists them.
    let named: HashSet<i64> = serde_json::to_value(metadata)
        .ok()
        .and_then(|v| v.get("refs").cloned())
        .and_then(|refs| refs.as_object().cloned())
        .map(|refs| {
            refs.iter()
                .filter(|(name, _)| name.as_str() != "main")
                .filter_map(|(_, r)| r.get("snapshot-id").and_then(|id| id.as_i64()))
                .collect()
        })
        .unwrap_or_default();
    let current = metadata.current_snapshot_id();
    let mut candidates: Vec<_> = metadata
        .snapshots()
        .filter(|s| Some(s.snapshot_id()) != current && !named.contains(&s.snapshot_id()))
        .collect();
    candidates.sort_by_key(|s| (s.sequence_number(), s.timestamp_ms()));
    candidates
        .into_iter()
        .take(excess)
        .map(|s| s.snapshot_id())
        .collect()
}

fn summary(operation: Operation, counts: &Counts) -> Summary {
    let mut properties = HashMap::from([
        ("total-data-files", counts.total_files),
        ("total-records", counts.total_records),
        ("total-delete-files", 0),
        ("total-position-deletes", 0),
        ("total-equality-deletes", 0),
        ("added-data-files", counts.added_files),
        ("added-records", counts.added_records),
    ]);
    if counts.deleted_files > 0 {
        properties.insert("deleted-data-files", counts.deleted_files);
        properties.insert("deleted-records", counts.deleted_records);
    }
    Summary {
        operation,
        additional_properties: properties
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A positive id unlikely to collide, and checked against the table's existing snapshots.
fn new_snapshot_id(seed: &str, metadata: &TableMetadata) -> i64 {
    let mut attempt = 0u64;
    loop {
        let text = format!(
            "{seed}/{}/{}/{attempt}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            std::process::id()
        );
        let digest = Sha256::digest(text.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        let id = (i64::from_le_bytes(bytes) & i64::MAX).max(1);
        if !metadata.snapshots().any(|s| s.snapshot_id() == id) {
            return id;
        }
        attempt += 1;
    }
}
