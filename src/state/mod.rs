//! Persistent state: snapshots, environments, built intervals and the schema version, behind `StateStore`.

pub mod backend;
pub mod postgres;
pub mod schema;
pub mod sqlite;
pub mod timed;
pub mod transfer;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{LakeError, Result};
use crate::snapshot::Snapshot;

use crate::sql::ModelName;
pub use backend::{Backend, Guard};

/// Version of the state schema this build of `lake` reads and writes.
pub const SCHEMA_VERSION: u32 = 5;

/// A model version as recorded in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSnapshot {
    pub name: ModelName,
    pub id: String,
    pub version: String,
    pub kind_name: String,
    /// See [`Snapshot::physical_schema`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical_schema: Option<String>,
}

impl EnvSnapshot {
    /// The physical table of this version.
    pub fn table(&self) -> crate::snapshot::PhysicalTable {
        crate::snapshot::PhysicalTable::for_version(
            &self.name,
            &self.version,
            self.physical_schema.as_deref(),
        )
    }
}

impl From<&Snapshot> for EnvSnapshot {
    fn from(s: &Snapshot) -> Self {
        EnvSnapshot {
            name: s.name.clone(),
            id: s.id.clone(),
            version: s.version.clone(),
            kind_name: s.kind_name.clone(),
            physical_schema: s.physical_schema.clone(),
        }
    }
}

/// A stored snapshot's version and where its table lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredVersion {
    pub version: String,
    /// See [`Snapshot::physical_schema`] (schema 5; NULL before, and for the default schema).
    pub physical_schema: Option<String>,
}

/// A named set of model versions, and the models that have names in its virtual layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
    pub snapshots: Vec<EnvSnapshot>,
    /// Models exposed under the environment's virtual names (all of them in prod; the changed ones in dev).
    pub promoted: Vec<ModelName>,
    pub plan_id: String,
    pub previous_plan_id: Option<String>,
    pub created_ts: i64,
    pub updated_ts: i64,
    /// `None` for prod, which never expires.
    pub expiration_ts: Option<i64>,
    /// Where its names put the environment's suffix: the setting it was last planned with (schema 4).
    #[serde(default)]
    pub suffix_target: crate::snapshot::SuffixTarget,
}

/// An environment's name with the fields every change to it moves (a plan, a promotion, an expiry).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EnvironmentStamp {
    pub name: String,
    pub plan_id: String,
    pub updated_ts: i64,
    pub expiration_ts: Option<i64>,
}

/// The model definition a snapshot keeps: later plans diff and categorise against it, and other machines
/// recreate VIEW models from it without the project files. Every field is optional in stored JSON, so state
/// written before a field existed still reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotNode {
    /// The MODEL block's typed properties, for display (their types live in `project`, above this layer).
    #[serde(default)]
    pub meta: serde_json::Value,
    /// The model file, relative to the project.
    #[serde(default)]
    pub path: String,
    /// The model file's text, for the diff `lake plan` shows.
    #[serde(default)]
    pub definition: Option<String>,
    /// The normalised query, to tell breaking from non-breaking changes.
    #[serde(default)]
    pub query: Option<String>,
    /// A VIEW model's query with physical table names: the DuckDB view each machine creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_query: Option<String>,
}

/// A snapshot as stored, with the model definition needed to diff and render it later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub snapshot: Snapshot,
    /// The model definition this version was planned from.
    pub node: SnapshotNode,
    pub created_ts: i64,
    pub ttl_ms: i64,
}

/// State written by a newer lake (schema `version`, by lake `written_by`): this lake must not touch it.
pub(crate) fn newer_schema_error(state: &str, version: u32, written_by: &str) -> LakeError {
    LakeError::StateConflict {
        message: format!(
            "{state} has schema version {version}, newer than this lake ({}) understands ({SCHEMA_VERSION})",
            env!("CARGO_PKG_VERSION")
        ),
        help: Some(format!(
            "it was written by lake {written_by}: use lake {written_by} or later"
        )),
    }
}

/// An environment's stored `suffix_target` (NULL before schema 4, which knew only `schema`).
pub(crate) fn suffix_target_from_state(
    stored: Option<&str>,
) -> Result<crate::snapshot::SuffixTarget> {
    match stored {
        None => Ok(crate::snapshot::SuffixTarget::Schema),
        Some(text) => {
            crate::snapshot::SuffixTarget::parse(text).ok_or_else(|| LakeError::StateConflict {
                message: format!("an environment in state has suffix target `{text}`, which this lake does not know"),
                help: Some("it was written by another lake: use the lake that wrote it".into()),
            })
        }
    }
}

/// State written by an older lake: `lake migrate` upgrades it.
pub(crate) fn older_schema_error(state: &str, version: u32) -> LakeError {
    LakeError::StateConflict {
        message: format!(
            "{state} has schema version {version}, older than this lake's ({SCHEMA_VERSION})"
        ),
        help: Some(
            "run `lake migrate` to upgrade it (one transaction: it completes or changes nothing)"
                .into(),
        ),
    }
}

/// A time range whose data is present in a version's physical table. `end_ts` is exclusive (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub name: ModelName,
    pub version: String,
    pub start_ts: i64,
    pub end_ts: i64,
    pub created_ts: i64,
    /// What wrote it, e.g. `iceberg:<snapshot id>` (none for DuckDB-file storage).
    #[serde(default)]
    pub write_id: Option<String>,
}

impl Interval {
    /// What a write covering `range` of `name`'s version `version` records, stamped now.
    pub fn written(
        name: ModelName,
        version: String,
        (start, end): crate::intervals::Range,
        write_id: Option<String>,
    ) -> Interval {
        Interval {
            name,
            version,
            start_ts: start.and_utc().timestamp_millis(),
            end_ts: end.and_utc().timestamp_millis(),
            created_ts: chrono::Utc::now().timestamp_millis(),
            write_id,
        }
    }

    /// The interval as a half-open range of UTC times.
    pub fn range(&self) -> crate::intervals::Range {
        let at = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .naive_utc()
        };
        (at(self.start_ts), at(self.end_ts))
    }
}

/// The parts of a recorded interval `[start, end)` that lie outside `[cut_start, cut_end)`: what a restatement
/// of that range keeps recorded.
pub fn outside_of(start: i64, end: i64, cut_start: i64, cut_end: i64) -> Vec<(i64, i64)> {
    [(start, cut_start.min(end)), (cut_end.max(start), end)]
        .into_iter()
        .filter(|(s, e)| s < e)
        .collect()
}

/// What happened to an environment update that was conditional on the state the plan was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteOutcome {
    Promoted,
    /// Someone else changed the environment first; nothing was written.
    Conflict {
        current_plan_id: Option<String>,
    },
}

/// Storage of `lake`'s state. Every method is atomic: it writes all it is asked to or nothing.
pub trait StateStore: Send {
    fn environment(&self, name: &str) -> Result<Option<Environment>>;
    fn environments(&self) -> Result<Vec<Environment>>;
    /// What tells one state of the environments from another (each one's name, plan, update time and
    /// expiry), without reading their versions: a server checks it before every query.
    fn environment_stamps(&self) -> Result<Vec<EnvironmentStamp>> {
        Ok(self
            .environments()?
            .into_iter()
            .map(|env| EnvironmentStamp {
                name: env.name,
                plan_id: env.plan_id,
                updated_ts: env.updated_ts,
                expiration_ts: env.expiration_ts,
            })
            .collect())
    }
    /// The versions of those of `ids` that are already stored.
    fn stored_versions(&self, ids: &[&str]) -> Result<HashMap<String, StoredVersion>>;
    fn snapshots(&self, ids: &[&str]) -> Result<Vec<StoredSnapshot>>;
    /// Stores snapshots; ones already present are left as they are.
    fn push_snapshots(&mut self, snapshots: &[StoredSnapshot]) -> Result<()>;
    /// Intervals recorded for the given (model, version) pairs.
    fn intervals(&self, versions: &[(ModelName, String)]) -> Result<Vec<Interval>>;
    /// Records that an interval was built; re-recording the same range replaces the row.
    fn add_interval(&mut self, interval: &Interval) -> Result<()>;
    /// Sets when an environment expires (the janitor then removes it). `false` if it does not exist.
    fn set_expiration(&mut self, name: &str, expiration_ts: i64) -> Result<bool>;
    /// Removes an environment if it is still at `expected_plan_id`; `false` if it changed meanwhile.
    fn remove_environment(&mut self, name: &str, expected_plan_id: &str) -> Result<bool>;
    /// Every stored (model, version), with the latest time any of its snapshots expires (created + TTL).
    fn versions_with_expiry(&self) -> Result<Vec<(ModelName, StoredVersion, i64)>>;
    /// The schemas other than `lake__*` that stored versions' tables live in (`physical_schema_mapping`,
    /// also as it was when they were planned).
    fn physical_schemas(&self) -> Result<Vec<String>>;
    /// Models whose in-place prod table (`virtual_environment_mode: dev_only`) holds data or is planned.
    fn in_place_models(&self) -> Result<Vec<ModelName>>;
    /// The id of every stored snapshot, in order.
    fn snapshot_ids(&self) -> Result<Vec<String>>;
    /// Forgets the intervals of a version that overlap `[start_ts, end_ts)` (before a restatement rebuilds them).
    fn remove_intervals(
        &mut self,
        name: &ModelName,
        version: &str,
        start_ts: i64,
        end_ts: i64,
    ) -> Result<()>;
    /// Forgets versions whose tables were dropped: their snapshots and intervals.
    fn remove_versions(&mut self, versions: &[(ModelName, String)]) -> Result<()>;
    /// Journals, before an apply repoints them, the environment names it touches; `promote` clears the
    /// journal in the same transaction. A journal left behind means names may be ahead of the state.
    fn begin_promotion(
        &mut self,
        environment: &str,
        names: &[crate::snapshot::VirtualName],
    ) -> Result<()> {
        // An earlier interrupted apply's names stay journaled too, until a promotion clears them.
        let mut all = self.pending_promotion(environment)?;
        for name in names {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        self.write_pending_promotion(environment, &all)
    }
    /// Replaces the journal of `environment` with `names`.
    fn write_pending_promotion(
        &mut self,
        environment: &str,
        names: &[crate::snapshot::VirtualName],
    ) -> Result<()>;
    /// Names journaled by an apply of `environment` that never promoted (empty when none).
    fn pending_promotion(&self, environment: &str) -> Result<Vec<crate::snapshot::VirtualName>>;
    /// Writes `env` if the stored environment is still at `expected_plan_id` (`None`: must not exist).
    fn promote(
        &mut self,
        env: &Environment,
        expected_plan_id: Option<&str>,
    ) -> Result<PromoteOutcome>;
}

/// A model name read back from state, which only ever stores valid ones.
pub(crate) fn stored_model_name(name: &str) -> Result<ModelName> {
    ModelName::parse(name)
        .ok_or_else(|| LakeError::config(format!("the state holds an invalid model name `{name}`")))
}

#[cfg(test)]
mod tests {
    use super::SnapshotNode;

    #[test]
    fn nodes_written_by_earlier_lakes_still_read() {
        // A VIEW model's node as lake wrote it before nodes were typed, and one from before `view_query`.
        let view: SnapshotNode = serde_json::from_str(
            r#"{"meta": {"name": {"schema": "a", "name": "b"}}, "path": "models/b.sql",
                "definition": "MODEL (name a.b); SELECT 1", "query": "SELECT 1",
                "view_query": "SELECT 1 FROM lake__a.t"}"#,
        )
        .unwrap();
        assert_eq!(view.view_query.as_deref(), Some("SELECT 1 FROM lake__a.t"));
        assert_eq!(
            view.definition.as_deref(),
            Some("MODEL (name a.b); SELECT 1")
        );
        let older: SnapshotNode = serde_json::from_str(r#"{"query": null}"#).unwrap();
        assert_eq!(older, SnapshotNode::default());
        // And what is written now reads back the same way, without keys for what a model lacks.
        let text = serde_json::to_string(&SnapshotNode::default()).unwrap();
        assert!(!text.contains("view_query"), "{text}");
    }

    #[test]
    fn a_restated_range_keeps_what_lies_outside_it() {
        assert_eq!(super::outside_of(0, 100, 40, 60), [(0, 40), (60, 100)]);
        assert_eq!(super::outside_of(0, 100, 0, 100), []);
        assert_eq!(super::outside_of(50, 100, 0, 60), [(60, 100)]);
    }
}
