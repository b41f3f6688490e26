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
    pub written_entries: Vec<(String, Arc<Vec<ManifestEntryRef>>)>,
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
    let file_io = table.file_io();
    let old_location = table
        .metadata_location()
        .ok_or_else(|| {
            LakeError::lakehouse(
                context.clone(),
                LakehouseError::Table("the table has no metadata location".into()),
            )
        })?
        .to_string();
    let parent = metadata.current_snapshot();
    let snapshot_id = new_snapshot_id(&old_location, metadata);
    let sequence = metadata.next_sequence_number();
    let manifest_writer = |n: usize| -> Result<ManifestOut> {
        let out = file_io
            .new_output(format!(
                "{}/metadata/{snapshot_id}-m{n}.avro",
                metadata.location()
            ))
            .map_err(iceberg_err(&context))?;
        Ok(ManifestOut {
            writer: ManifestWriterBuilder::new(
                out,
                Some(snapshot_id),
                metadata.current_schema().clone(),
                metadata.default_partition_spec().as_ref().clone(),
            )
            .build_v2_data(),
            entries: Vec::new(),
            snapshot_id,
            sequence,
        })
    };
    // A file a rewritten or merged manifest keeps: an EXISTING entry with its sequence numbers, as the spec
    // requires (removed files become DELETED entries; entries deleted by earlier snapshots are dropped).
    let carry = |writer: &mut ManifestOut, entry: &ManifestEntryRef| {
        let sequence_number = entry.sequence_number().unwrap_or(0);
        let file_sequence = entry.file_sequence_number.or(Some(sequence_number));
        writer.keep(
            entry.data_file().clone(),
            entry
                .snapshot_id()
                .or(parent.map(|p| p.snapshot_id()))
                .unwrap_or(snapshot_id),
            sequence_number,
            file_sequence,
        )
    };

    let mut counts = Counts::default();
    let mut written: Vec<(ManifestFile, Vec<ManifestEntryRef>)> = Vec::new();
    let mut carried: Vec<ManifestFile> = Vec::new();
    for (n, manifest_file) in known.manifests.iter().enumerate() {
        if matches!(removal, Removal::Nothing) || manifest_file.content != ManifestContentType::Data
        {
            carried.push(manifest_file.clone());
            continue;
        }
        let entries = cache.manifest(manifest_file, file_io).await?;
        let live: Vec<_> = entries.iter().filter(|e| e.is_alive()).collect();
        if !live.iter().any(|e| removal.removes(e.file_path())) {
            carried.push(manifest_file.clone());
            continue;
        }
        let mut writer = manifest_writer(n + 2)?;
        for entry in live {
            if removal.removes(entry.file_path()) {
                counts.deleted_files += 1;
                counts.deleted_records += entry.record_count();
                let sequence_number = entry.sequence_number().unwrap_or(0);
                let file_sequence = entry.file_sequence_number.or(Some(sequence_number));
                writer
                    .delete(entry.data_file().clone(), sequence_number, file_sequence)
                    .map_err(iceberg_err(&context))?;
            } else {
                carry(&mut writer, entry).map_err(iceberg_err(&context))?;
            }
        }
        written.push(writer.finish(&context).await?);
    }
    if !added.is_empty() {
        let mut writer = manifest_writer(0)?;
        for file in added {
            counts.added_files += 1;
            counts.added_records += file.record_count();
            writer.add(file).map_err(iceberg_err(&context))?;
        }
        written.insert(0, writer.finish(&context).await?);
    }
    if counts.added_files == 0 && counts.deleted_files == 0 {
        return Ok(None);
    }
    // Older manifests with no live file left are not carried forward.
    carried.retain(|m| m.added_files_count.unwrap_or(1) + m.existing_files_count.unwrap_or(1) > 0);
    let live_files = |m: &ManifestFile| {
        m.added_files_count.unwrap_or(FULL_MANIFEST_FILES)
            + m.existing_files_count.unwrap_or(FULL_MANIFEST_FILES)
    };
    let spec_id = metadata.default_partition_spec_id();
    let (small, mut full): (Vec<ManifestFile>, Vec<ManifestFile>) =
        carried.into_iter().partition(|m| {
            m.content == ManifestContentType::Data
                && m.partition_spec_id == spec_id
                && live_files(m) < FULL_MANIFEST_FILES
        });
    if small.len() >= MANIFESTS_BEFORE_MERGE {
        let mut writer = manifest_writer(1)?;
        for manifest_file in &small {
            let entries = cache.manifest(manifest_file, file_io).await?;
            for entry in entries.iter().filter(|e| e.is_alive()) {
                carry(&mut writer, entry).map_err(iceberg_err(&context))?;
            }
        }
        written.push(writer.finish(&context).await?);
    } else {
        full.extend(small);
    }
    // The sequence number of the manifests written here, as the list writer would assign it, so the list
    // kept in memory matches the one on disk.
    for (m, _) in &mut written {
        if m.sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
            m.sequence_number = sequence;
        }
        if m.min_sequence_number == UNASSIGNED_SEQUENCE_NUMBER {
            m.min_sequence_number = sequence;
        }
    }
    // A manifest this snapshot wrote is listed even if it only records deletions: that is the history.
    let mut written_entries = Vec::with_capacity(written.len());
    let mut listed: Vec<ManifestFile> = Vec::with_capacity(written.len() + full.len());
    for (m, entries) in written {
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

    let list_path = format!("{}/metadata/snap-{snapshot_id}-0.avro", metadata.location());
    let mut list_writer = ManifestListWriter::v2(
        file_io
            .new_output(list_path.clone())
            .map_err(iceberg_err(&context))?
            .writer()
            .await
            .map_err(iceberg_err(&context))?,
        snapshot_id,
        parent.map(|p| p.snapshot_id()),
        sequence,
    );
    list_writer
        .add_manifests(listed.iter().cloned())
        .map_err(iceberg_err(&context))?;
    list_writer.close().await.map_err(iceberg_err(&context))?;

    let operation = match (counts.added_files > 0, counts.deleted_files > 0) {
        (_, false) => Operation::Append,
        (true, true) => Operation::Overwrite,
        (false, true) => Operation::Delete,
    };
    let snapshot = Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.map(|p| p.snapshot_id()))
        .with_sequence_number(sequence)
        .with_summary(summary(operation, &counts))
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
        .into_builder((!known.pending).then(|| old_location.clone()))
        .add_snapshot(snapshot)
        .map_err(iceberg_err(&context))?
        .set_ref(
            "main",
            SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
        )
        .map_err(iceberg_err(&context))?
        .remove_snapshots(&expired)
        .build()
        .map_err(iceberg_err(&context))?;
    unreachable.extend(
        built
            .expired_metadata_logs
            .iter()
            .map(|log| log.metadata_file.clone()),
    );
    let next = old_location
        .parse::<MetadataLocation>()
        .map_err(iceberg_err(&context))?
        .with_next_version();
    built
        .metadata
        .write_to(file_io, &next)
        .await
        .map_err(iceberg_err(&context))?;
    Ok(Some(Written {
        location: next.to_string(),
        snapshot_id,
        metadata: built.metadata,
        manifests: listed,
        written_entries,
        unreachable,
    }))
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
