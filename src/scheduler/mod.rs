//! Applying plans: builds model versions in DAG order (independent ones concurrently), records them, promotes.

mod apply;
mod audits;
mod batches;
mod build;
mod finish;
pub mod render;
mod runner;
pub mod scd;
mod schema_change;
pub mod spark;
mod write;

pub use apply::apply;
pub use audits::audit_rows;
pub use render::{executable_query, macro_context, time_range_predicate};
pub use runner::build_all;

use std::time::Duration;

use chrono::NaiveDateTime;

use crate::error::LakeError;
use crate::plan::Backfill;
use crate::project::{PerModel, Project};
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
    pub snapshots: &'a PerModel<Snapshot>,
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
    /// The build's `concurrent_tasks` evaluation slots, shared by models and their batches.
    pub slots: Slots,
}

/// Evaluation slots: each model being built holds one, and a model evaluating its batches at once borrows
/// the free ones, so no more than `concurrent_tasks` models and batches are evaluated at once.
pub struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    pub fn new(count: usize) -> Slots {
        Slots {
            free: std::sync::Mutex::new(count.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// One slot, waiting until one is free.
    fn acquire(&self) -> Held<'_> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        Held {
            slots: self,
            count: 1,
        }
    }

    /// Up to `wanted` slots, as many as are free now (possibly none).
    fn borrow(&self, wanted: usize) -> Held<'_> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = wanted.min(*free);
        *free -= count;
        Held { slots: self, count }
    }
}

/// Slots taken from [`Slots`], given back when dropped.
struct Held<'a> {
    slots: &'a Slots,
    count: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut free = self
            .slots
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *free += self.count;
        self.slots.freed.notify_all();
    }
}

fn poisoned() -> LakeError {
    LakeError::Bug("a worker thread panicked while holding the build state".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_and_borrowed_batch_slots_never_exceed_the_limit() {
        let slots = Slots::new(3);
        let model = slots.acquire();
        let lanes = slots.borrow(5);
        assert_eq!(lanes.count, 2, "only the free slots are borrowed");
        assert_eq!(slots.borrow(1).count, 0);
        std::thread::scope(|scope| {
            // A model waiting for a slot gets one once the batches give theirs back.
            let waiting = scope.spawn(|| slots.acquire().count);
            std::thread::sleep(Duration::from_millis(20));
            drop(lanes);
            assert_eq!(waiting.join().ok(), Some(1));
        });
        drop(model);
        assert_eq!(*slots.free.lock().unwrap(), 3, "every slot is back");
    }
}
