//! Environment lifecycle: invalidation and the janitor that removes expired environments and unused tables.

use std::collections::HashSet;

use serde::Serialize;

use crate::PROD;
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::snapshot::{PhysicalTable, VirtualName};
use crate::sql::ModelName;
use crate::state::StateStore;
use crate::storage::{Storage, VirtualChange};

/// What a janitor pass did. Failures are collected, not fatal: one stuck table does not stop the rest.
#[derive(Debug, Default, Serialize)]
pub struct JanitorReport {
    pub environments_removed: Vec<String>,
    pub tables_dropped: Vec<String>,
    pub failures: Vec<String>,
}

/// Marks `environment` expired now, so the next janitor pass removes it. Prod cannot be invalidated.
pub fn invalidate(state: &mut dyn StateStore, environment: &str, now_ms: i64) -> Result<()> {
    if environment == PROD {
        return Err(LakeError::Usage(
            "prod cannot be invalidated".into(),
            Some("invalidate a development environment, e.g. `lake invalidate dev`".into()),
        ));
    }
    if state.set_expiration(environment, now_ms)? {
        Ok(())
    } else {
        Err(LakeError::Usage(
            format!("environment `{environment}` does not exist"),
            Some("`lake environments` lists them".into()),
        ))
    }
}

pub struct JanitorOptions<'a> {
    pub now_ms: i64,
    /// Drop unused tables even if their snapshots' TTL has not passed.
    pub ignore_ttl: bool,
    /// Only this environment (removed if expired) and the tables only it used.
    pub environment: Option<&'a str>,
    /// Environments kept even once expired (`pinned_environments`).
    pub pinned: &'a [String],
}

/// Removes expired environments (their virtual names, then their state) and drops the physical tables of
/// versions no remaining environment uses once their TTL has passed (then forgets those versions).
pub fn janitor(
    state: &mut dyn StateStore,
    storage: &dyn Storage,
    session: &Session,
    options: &JanitorOptions<'_>,
) -> Result<JanitorReport> {
    let mut report = JanitorReport::default();
    let environments = state.environments()?;
    let in_scope = |name: &str| options.environment.is_none_or(|only| only == name);
    let mut scoped_versions: HashSet<(ModelName, String)> = HashSet::new();
    for env in &environments {
        if !in_scope(&env.name) {
            continue;
        }
        scoped_versions.extend(
            env.snapshots
                .iter()
                .map(|s| (s.name.clone(), s.version.clone())),
        );
        let expired = env.expiration_ts.is_some_and(|t| t <= options.now_ms);
        if env.name == PROD || !expired || options.pinned.contains(&env.name) {
            continue;
        }
        let names: Vec<VirtualChange> = env
            .promoted
            .iter()
            .map(|model| VirtualChange::Drop {
                name: VirtualName::new(model, &env.name, env.suffix_target),
            })
            .collect();
        let removed = storage
            .update_virtual_layer(session, &names)
            .and_then(|()| state.remove_environment(&env.name, &env.plan_id));
        match removed {
            Ok(true) => report.environments_removed.push(env.name.clone()),
            Ok(false) => report.failures.push(format!(
                "environment `{}` changed while the janitor ran; it was kept",
                env.name
            )),
            Err(e) => report
                .failures
                .push(format!("environment `{}`: {e}", env.name)),
        }
    }

    let referenced: HashSet<(ModelName, String)> = state
        .environments()?
        .into_iter()
        .flat_map(|env| {
            env.snapshots
                .into_iter()
                .map(|s| (s.name, s.version))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut dropped = Vec::new();
    for (name, stored, expiry) in state.versions_with_expiry()? {
        if crate::snapshot::is_in_place(&stored.version) {
            // Prod's in-place table is its model's name: prod's plans drop it when the model leaves prod,
            // never a TTL (the name may show a versioned table again by then).
            continue;
        }
        let key = (name, stored.version);
        let unused = !referenced.contains(&key);
        let due = options.ignore_ttl || expiry <= options.now_ms;
        let scoped = options.environment.is_none() || scoped_versions.contains(&key);
        if !(unused && due && scoped) {
            continue;
        }
        let table = PhysicalTable::for_version(&key.0, &key.1, stored.physical_schema.as_deref());
        match storage.drop_physical(session, &table) {
            Ok(()) => {
                report.tables_dropped.push(table.to_string());
                dropped.push(key);
            }
            Err(e) => report.failures.push(format!("table {table}: {e}")),
        }
    }
    state.remove_versions(&dropped)?;
    report.tables_dropped.sort();
    Ok(report)
}
