//! Removing what lake made: its caches (`clean`), or every table, view and state record of the project
//! (`destroy`).

use std::path::PathBuf;

use serde::Serialize;

use super::Context;
use crate::PROD;
use crate::error::{LakeError, Result};
use crate::snapshot::{PhysicalTable, VirtualName};
use crate::storage::VirtualChange;

/// What `destroy` removed.
#[derive(Debug, Default, Serialize)]
pub struct DestroyReport {
    pub environments_removed: Vec<String>,
    pub tables_dropped: Vec<String>,
    pub caches_removed: Vec<PathBuf>,
}

impl Context {
    /// Deletes the caches (`cache_dir`, the fixtures `lake test --preserve-fixtures` kept): files lake
    /// rebuilds on demand. The state, the database and the warehouse are not touched.
    pub fn clean(&self) -> Result<Vec<PathBuf>> {
        let root = &self.project.root;
        let mut removed = Vec::new();
        for dir in [self.project.config.cache_dir.clone(), self.fixtures_dir()] {
            // A `cache_dir` set to the project (or above it) would take the models with it.
            if root.starts_with(&dir) {
                return Err(LakeError::config(format!(
                    "cache_dir `{}` holds the project itself; lake will not delete it",
                    dir.display()
                )));
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| LakeError::io(&dir, e))?;
                removed.push(dir);
            }
        }
        Ok(removed)
    }

    /// Removes everything the project made: every environment's names, every version's table (prod's
    /// in-place ones too), the state's records of them, and the caches. Each environment leaves the state
    /// once its names are gone and the versions once their tables are, so a rerun after a failure goes on
    /// where this one stopped.
    pub fn destroy(&self) -> Result<DestroyReport> {
        let _lock = self.lock("_janitor", || {})?;
        let mut state = self.open_state()?;
        let engine = self.open_engine()?;
        let session = engine.session()?;
        let storage = self.storage()?;
        let mut report = DestroyReport::default();
        let mut schemas = std::collections::BTreeSet::new();
        for env in state.environments()? {
            let in_place = |model: &&crate::sql::ModelName| {
                env.name == PROD
                    && env
                        .snapshots
                        .iter()
                        .any(|s| &&s.name == model && crate::snapshot::is_in_place(&s.version))
            };
            let names: Vec<VirtualChange> = env
                .promoted
                .iter()
                // Prod's in-place table is the name itself: it goes with the tables below.
                .filter(|model| !in_place(model))
                .map(|model| VirtualChange::Drop {
                    name: VirtualName::new(model, &env.name, env.suffix_target),
                })
                .collect();
            schemas.extend(names.iter().filter_map(|change| match change {
                VirtualChange::Drop { name } => Some(name.schema.clone()),
                VirtualChange::Point { .. } => None,
            }));
            storage.update_virtual_layer(&session, &names)?;
            state.remove_environment(&env.name, &env.plan_id)?;
            report.environments_removed.push(env.name.clone());
        }
        let mut dropped = Vec::new();
        for (name, stored, _) in state.versions_with_expiry()? {
            let table = PhysicalTable::for_version(
                &name,
                &stored.version,
                stored.physical_schema.as_deref(),
            );
            storage.drop_physical(&session, &table)?;
            schemas.insert(table.schema.clone());
            report.tables_dropped.push(table.to_string());
            dropped.push((name, stored.version));
        }
        state.remove_versions(&dropped)?;
        for schema in schemas {
            // Without CASCADE: a schema that still holds something lake did not make stays, with it.
            let _ = session.execute(
                &format!("DROP SCHEMA IF EXISTS {}", crate::sql::quote_ident(&schema)),
                || format!("dropping the schema {schema}"),
            );
        }
        report.tables_dropped.sort();
        report.caches_removed = self.clean()?;
        Ok(report)
    }
}
