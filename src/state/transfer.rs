//! `lake state export` / `import`: the whole state as one JSON document, to back it up or to move it
//! between backends (the embedded SQLite file to PostgreSQL, one PostgreSQL schema to another).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Environment, Interval, PromoteOutcome, SCHEMA_VERSION, StateStore, StoredSnapshot};
use crate::error::{LakeError, Result};
use crate::sql::ModelName;

/// What every export says it is, so a stray JSON file is refused rather than half imported.
const FORMAT: &str = "lake-state";

/// The state, as `lake state export` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateExport {
    pub format: String,
    /// The state schema the rows follow; an import needs the same one.
    pub schema_version: u32,
    /// The lake that exported it, for people reading the file.
    pub lake_version: String,
    pub environments: Vec<Environment>,
    pub snapshots: Vec<StoredSnapshot>,
    pub intervals: Vec<Interval>,
}

/// How much an import wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub environments: usize,
    pub snapshots: usize,
    pub intervals: usize,
}

/// Reads every environment, snapshot and recorded interval.
pub fn export(state: &dyn StateStore) -> Result<StateExport> {
    let environments = state.environments()?;
    let ids = state.snapshot_ids()?;
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut snapshots = state.snapshots(&id_refs)?;
    snapshots.sort_by(|a, b| a.snapshot.id.cmp(&b.snapshot.id));
    // Intervals belong to versions: those of stored snapshots, those environments use (prod's own table of
    // a snapshot a dev plan stored first) and prod's in-place tables.
    let mut versions: BTreeSet<(ModelName, String)> = state
        .versions_with_expiry()?
        .into_iter()
        .map(|(name, stored, _)| (name, stored.version))
        .collect();
    versions.extend(
        environments
            .iter()
            .flat_map(|env| env.snapshots.iter())
            .map(|s| (s.name.clone(), s.version.clone())),
    );
    versions.extend(
        state
            .in_place_models()?
            .into_iter()
            .map(|name| (name, crate::snapshot::IN_PLACE.to_string())),
    );
    let versions: Vec<(ModelName, String)> = versions.into_iter().collect();
    let mut intervals = state.intervals(&versions)?;
    intervals.sort_by(|a, b| {
        (a.name.to_string(), &a.version, a.start_ts).cmp(&(
            b.name.to_string(),
            &b.version,
            b.start_ts,
        ))
    });
    Ok(StateExport {
        format: FORMAT.to_string(),
        schema_version: SCHEMA_VERSION,
        lake_version: env!("CARGO_PKG_VERSION").to_string(),
        environments,
        snapshots,
        intervals,
    })
}

/// Parses an export, refusing anything that is not one this lake can import.
pub fn parse(text: &str, source: &str) -> Result<StateExport> {
    let export: StateExport = serde_json::from_str(text).map_err(|e| {
        LakeError::Usage(
            format!("{source} is not a lake state export: {e}"),
            Some("`lake state export -o FILE` writes one".into()),
        )
    })?;
    if export.format != FORMAT {
        return Err(LakeError::Usage(
            format!(
                "{source} is not a lake state export (format `{}`)",
                export.format
            ),
            Some("`lake state export -o FILE` writes one".into()),
        ));
    }
    if export.schema_version != SCHEMA_VERSION {
        return Err(LakeError::Usage(
            format!(
                "{source} holds state schema {}, this lake imports schema {SCHEMA_VERSION}",
                export.schema_version
            ),
            Some(format!(
                "export it with lake {} into a state it upgrades with `lake migrate`, or import it with that lake",
                export.lake_version
            )),
        ));
    }
    Ok(export)
}

/// Writes an export into a state that has no environments yet. Snapshots and intervals go first and
/// environments last, each environment in one transaction, so an import that stops halfway leaves no
/// environment pointing at anything missing, and running it again finishes it.
pub fn import(state: &mut dyn StateStore, export: &StateExport) -> Result<ImportReport> {
    let existing = state.environments()?;
    if !existing.is_empty() {
        let names: Vec<&str> = existing.iter().map(|e| e.name.as_str()).collect();
        return Err(LakeError::Usage(
            format!(
                "this state already has environments ({}); an import only fills an empty state",
                names.join(", ")
            ),
            Some(
                "point config.yaml at a new state (another PostgreSQL schema, or a project without .lake/state.db) and import there"
                    .into(),
            ),
        ));
    }
    for chunk in export.snapshots.chunks(1000) {
        state.push_snapshots(chunk)?;
    }
    for interval in &export.intervals {
        state.add_interval(interval)?;
    }
    for env in &export.environments {
        match state.promote(env, None)? {
            PromoteOutcome::Promoted => {}
            PromoteOutcome::Conflict { .. } => {
                return Err(LakeError::StateConflict {
                    message: format!(
                        "environment `{}` was created by another command during the import",
                        env.name
                    ),
                    help: Some("import into a state nothing else is using".into()),
                });
            }
        }
    }
    Ok(ImportReport {
        environments: export.environments.len(),
        snapshots: export.snapshots.len(),
        intervals: export.intervals.len(),
    })
}
