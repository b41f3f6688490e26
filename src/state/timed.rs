//! A state store whose every call is timed for `--profile` (reads and writes apart), around either backend.

use std::collections::HashMap;

use super::{Environment, Interval, PromoteOutcome, StateStore, StoredSnapshot, StoredVersion};
use crate::error::Result;
use crate::profile::{Phase, timed};
use crate::snapshot::VirtualName;
use crate::sql::ModelName;

/// Delegates to the store it wraps, timing reads as [`Phase::StateRead`] and writes as [`Phase::StateWrite`].
pub struct Timed(pub Box<dyn StateStore>);

impl StateStore for Timed {
    fn environment(&self, name: &str) -> Result<Option<Environment>> {
        timed(Phase::StateRead, || self.0.environment(name))
    }
    fn environments(&self) -> Result<Vec<Environment>> {
        timed(Phase::StateRead, || self.0.environments())
    }
    fn environment_stamps(&self) -> Result<Vec<super::EnvironmentStamp>> {
        timed(Phase::StateRead, || self.0.environment_stamps())
    }
    fn stored_versions(&self, ids: &[&str]) -> Result<HashMap<String, StoredVersion>> {
        timed(Phase::StateRead, || self.0.stored_versions(ids))
    }
    fn snapshots(&self, ids: &[&str]) -> Result<Vec<StoredSnapshot>> {
        timed(Phase::StateRead, || self.0.snapshots(ids))
    }
    fn push_snapshots(&mut self, snapshots: &[StoredSnapshot]) -> Result<()> {
        timed(Phase::StateWrite, || self.0.push_snapshots(snapshots))
    }
    fn intervals(&self, versions: &[(ModelName, String)]) -> Result<Vec<Interval>> {
        timed(Phase::StateRead, || self.0.intervals(versions))
    }
    fn add_interval(&mut self, interval: &Interval) -> Result<()> {
        timed(Phase::StateWrite, || self.0.add_interval(interval))
    }
    fn set_expiration(&mut self, name: &str, expiration_ts: i64) -> Result<bool> {
        timed(Phase::StateWrite, || {
            self.0.set_expiration(name, expiration_ts)
        })
    }
    fn remove_environment(&mut self, name: &str, expected_plan_id: &str) -> Result<bool> {
        timed(Phase::StateWrite, || {
            self.0.remove_environment(name, expected_plan_id)
        })
    }
    fn physical_schemas(&self) -> Result<Vec<String>> {
        timed(Phase::StateRead, || self.0.physical_schemas())
    }
    fn snapshot_ids(&self) -> Result<Vec<String>> {
        timed(Phase::StateRead, || self.0.snapshot_ids())
    }
    fn in_place_models(&self) -> Result<Vec<ModelName>> {
        timed(Phase::StateRead, || self.0.in_place_models())
    }
    fn versions_with_expiry(&self) -> Result<Vec<(ModelName, StoredVersion, i64)>> {
        timed(Phase::StateRead, || self.0.versions_with_expiry())
    }
    fn remove_intervals(
        &mut self,
        name: &ModelName,
        version: &str,
        start_ts: i64,
        end_ts: i64,
    ) -> Result<()> {
        timed(Phase::StateWrite, || {
            self.0.remove_intervals(name, version, start_ts, end_ts)
        })
    }
    fn remove_versions(&mut self, versions: &[(ModelName, String)]) -> Result<()> {
        timed(Phase::StateWrite, || self.0.remove_versions(versions))
    }
    fn begin_promotion(&mut self, environment: &str, names: &[VirtualName]) -> Result<()> {
        timed(Phase::StateWrite, || {
            self.0.begin_promotion(environment, names)
        })
    }
    fn write_pending_promotion(&mut self, environment: &str, names: &[VirtualName]) -> Result<()> {
        timed(Phase::StateWrite, || {
            self.0.write_pending_promotion(environment, names)
        })
    }
    fn pending_promotion(&self, environment: &str) -> Result<Vec<VirtualName>> {
        timed(Phase::StateRead, || self.0.pending_promotion(environment))
    }
    fn promote(
        &mut self,
        env: &Environment,
        expected_plan_id: Option<&str>,
    ) -> Result<PromoteOutcome> {
        timed(Phase::StateWrite, || self.0.promote(env, expected_plan_id))
    }
}
