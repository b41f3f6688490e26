//! Iceberg snapshots written with the public spec writers: append, overwrite and delete (iceberg-rust 0.10.1
//! only has fast-append). The caller swaps the catalog pointer; until then no reader sees the new snapshot.

use std::collections::{HashMap, HashSet};

use iceberg::MetadataLocation;
use iceberg::spec::{
    DataFile, FormatVersion, ManifestFile, ManifestList, ManifestListWriter, ManifestWriter,
    ManifestWriterBuilder, Operation, Snapshot, SnapshotReference, SnapshotRetention, Summary,
    TableMetadata,
};
use iceberg::table::Table;
use sha2::{Digest, Sha256};

use super::iceberg_err;
use crate::error::{LakeError, LakehouseError, Result};

/// Which of the table's live data files the new snapshot removes.
pub enum Removal<'a> {
    Nothing,
    All,
    /// Files by their location (as the manifests record it).
    Files(&'a HashSet<String>),
}

impl Removal<'_> {
    fn removes(&self, location: &str) -> bool {
        match self {
            Removal::Nothing => false,
            Removal::All => true,
            Removal::Files(files) => files.contains(location),
        }
    }
}

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

/// Writes manifests, manifest list and the next metadata file for a snapshot that adds `added` and removes
/// what `removal` names. Returns the new metadata location and snapshot id, or `None` when the snapshot would
/// change nothing.
pub async fn write_snapshot(
    table: &Table,
    added: Vec<DataFile>,
    removal: Removal<'_>,
) -> Result<Option<(String, i64)>> {
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
    let manifest_writer = |n: usize| -> Result<ManifestWriter> {
        let out = file_io
            .new_output(format!(
                "{}/metadata/{snapshot_id}-m{n}.avro",
                metadata.location()
            ))
            .map_err(iceberg_err(&context))?;
        Ok(ManifestWriterBuilder::new(
            out,
            Some(snapshot_id),
            metadata.current_schema().clone(),
            metadata.default_partition_spec().as_ref().clone(),
        )
        .build_v2_data())
    };

    let mut counts = Counts::default();
    let mut manifests: Vec<ManifestFile> = Vec::new();
    if let Some(parent) = parent {
        let list_bytes = file_io
            .new_input(parent.manifest_list())
            .map_err(iceberg_err(&context))?
            .read()
            .await
            .map_err(iceberg_err(&context))?;
        let list = ManifestList::parse_with_version(&list_bytes, metadata.format_version())
            .map_err(iceberg_err(&context))?;
        for (n, manifest_file) in list.entries().iter().enumerate() {
            if matches!(removal, Removal::Nothing) {
                manifests.push(manifest_file.clone());
                continue;
            }
            let manifest = manifest_file
                .load_manifest(file_io)
                .await
                .map_err(iceberg_err(&context))?;
            let live: Vec<_> = manifest.entries().iter().filter(|e| e.is_alive()).collect();
            if !live.iter().any(|e| removal.removes(e.file_path())) {
                manifests.push(manifest_file.clone());
                continue;
            }
            // Rewrite the manifest: kept files as EXISTING, removed ones as DELETED (both keep their sequence
            // numbers, as the spec requires); entries deleted by earlier snapshots are dropped.
            let mut writer = manifest_writer(n + 1)?;
            for entry in live {
                let sequence_number = entry.sequence_number().unwrap_or(0);
                let file_sequence = entry.file_sequence_number.or(Some(sequence_number));
                if removal.removes(entry.file_path()) {
                    counts.deleted_files += 1;
                    counts.deleted_records += entry.record_count();
                    writer
                        .add_delete_file(entry.data_file().clone(), sequence_number, file_sequence)
                        .map_err(iceberg_err(&context))?;
                } else {
                    writer
                        .add_existing_file(
                            entry.data_file().clone(),
                            entry.snapshot_id().unwrap_or(parent.snapshot_id()),
                            sequence_number,
                            file_sequence,
                        )
                        .map_err(iceberg_err(&context))?;
                }
            }
            let rewritten = writer
                .write_manifest_file()
                .await
                .map_err(iceberg_err(&context))?;
            manifests.push(rewritten);
        }
    }
    if !added.is_empty() {
        let mut writer = manifest_writer(0)?;
        for file in added {
            counts.added_files += 1;
            counts.added_records += file.record_count();
            writer
                .add_file(file, sequence)
                .map_err(iceberg_err(&context))?;
        }
        manifests.insert(
            0,
            writer
                .write_manifest_file()
                .await
                .map_err(iceberg_err(&context))?,
        );
    }
    if counts.added_files == 0 && counts.deleted_files == 0 {
        return Ok(None);
    }
    for m in &manifests {
        counts.total_files += u64::from(m.added_files_count.unwrap_or(0))
            + u64::from(m.existing_files_count.unwrap_or(0));
        counts.total_records +=
            m.added_rows_count.unwrap_or(0) + m.existing_rows_count.unwrap_or(0);
    }
    // A manifest this snapshot wrote is listed even if it only records deletions (that is the history); older
    // manifests with no live file left are not carried forward.
    let listed: Vec<ManifestFile> = manifests
        .into_iter()
        .filter(|m| {
            m.added_snapshot_id == snapshot_id
                || m.added_files_count.unwrap_or(1) + m.existing_files_count.unwrap_or(1) > 0
        })
        .collect();

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
        .add_manifests(listed.into_iter())
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
    let new_metadata = metadata
        .clone()
        .into_builder(Some(old_location.clone()))
        .add_snapshot(snapshot)
        .map_err(iceberg_err(&context))?
        .set_ref(
            "main",
            SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
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
    Ok(Some((next.to_string(), snapshot_id)))
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
