//! Applying plans: builds model versions in DAG order (independent ones concurrently), records them, promotes.

mod apply;
mod audits;
mod batches;
mod build;
mod render;
mod runner;
pub mod scd;
mod schema_change;
pub mod spark;

pub use apply::apply;
pub use audits::audit_rows;
pub use render::{executable_query, macro_context, time_range_predicate};
pub use runner::build_all;

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::error::LakeError;
use crate::plan::Backfill;
use crate::project::Project;
use crate::snapshot::Snapshot;
use crate::sql::ModelName;
use crate::storage::{Storage, WriteStats};

/// Progress callbacks, called from worker threads.
pub trait Observer: Sync {
    fn backfill_started(&self, _total: usize) {}
    fn model_finished(
        &self,
        _backfill: &Backfill,
        _elapsed: Duration,
        _outcome: std::result::Result<WriteStats, &LakeError>,
    ) {
    }
    fn model_skipped(&self, _backfill: &Backfill, _failed_parent: &ModelName) {}
    /// A non-blocking audit found bad rows.
    fn audit_warning(&self, _backfill: &Backfill, _audit: &str, _rows: u64) {}
    /// A column change that `on_destructive_change` / `on_additive_change warn` applied to a kept table.
    fn schema_change_warning(&self, _backfill: &Backfill, _change: &str) {}
    fn virtual_layer_started(&self, _changes: usize) {}
    fn virtual_layer_finished(&self) {}
}

/// An observer that reports nothing.
pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub built: Vec<ModelName>,
    pub virtual_changes: usize,
}

/// Everything a build needs to read, shared by the worker threads.
pub struct BuildContext<'a> {
    pub project: &'a Project,
    pub snapshots: &'a [Snapshot],
    pub storage: &'a dyn Storage,
    pub execution_time: NaiveDateTime,
    /// The `--end` of a run: a full refresh then covers its model's intervals up to it (else up to
    /// `execution_time`), so a later run with a later end sees the intervals it still misses.
    pub intervals_end: Option<NaiveDateTime>,
    /// The engines of Spark gateways, for models that run there.
    pub spark: &'a crate::engine::spark::SparkEngines,
    /// Column changes the plan being applied allows whatever the models' policies say.
    pub allowed_schema_changes: crate::plan::AllowedSchemaChanges,
    /// The connection's `concurrent_tasks`: also the most batches of one model evaluated at once.
    pub concurrent_tasks: usize,
}

fn poisoned() -> LakeError {
    LakeError::Bug("a worker thread panicked while holding the build state".into())
}
