//! A plan's names: which models get names in the environment's virtual layer, and how those names move
//! (pointed at new versions, dropped, or made room for prod's in-place tables).

use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::project::model::ModelKind;
use crate::project::{PerModel, Project};
use crate::snapshot::{
    EnvironmentName, PhysicalTable, Snapshot, SuffixTarget, VirtualName, is_in_place,
};
use crate::sql::ModelName;
use crate::state::{Environment, StateStore};
use crate::storage::VirtualChange;

/// The models with names in the environment: all of prod's, and in a dev environment the ones that differ
/// from prod (every one with `include_unmodified`). Embedded and external models never have names.
pub(super) fn promoted(
    project: &Project,
    snapshots: &PerModel<Snapshot>,
    environment: &EnvironmentName,
    prod: Option<&Environment>,
    include_unmodified: bool,
) -> Vec<ModelName> {
    let in_prod = *environment == crate::PROD;
    let prod_ids: HashMap<&ModelName, &str> = match (in_prod, prod) {
        (false, Some(p)) => p
            .snapshots
            .iter()
            .map(|s| (&s.name, s.id.as_str()))
            .collect(),
        _ => HashMap::new(),
    };
    snapshots
        .iter()
        .filter(|s| {
            in_prod || include_unmodified || prod_ids.get(&s.name).is_none_or(|id| *id != s.id)
        })
        .filter(|s| {
            !matches!(
                project.model_named(&s.name).map(|m| &m.meta.kind),
                Some(ModelKind::Embedded | ModelKind::External)
            )
        })
        .map(|s| s.name.clone())
        .collect()
}

/// How the environment's names change.
#[derive(Default)]
pub(super) struct NameChanges {
    pub virtual_changes: Vec<VirtualChange>,
    /// Prod names that in-place tables take the place of.
    pub names_taken_over: Vec<VirtualName>,
    /// Prod's in-place tables that go, dropped once everything is built.
    pub in_place_dropped: Vec<(ModelName, PhysicalTable)>,
}

/// What the names of `environment` need to show the `promoted` models at their new versions.
pub(super) struct Names<'a> {
    pub environment: &'a EnvironmentName,
    /// The environment as it is now.
    pub target: Option<&'a Environment>,
    pub promoted: &'a [ModelName],
    pub snapshots: &'a PerModel<Snapshot>,
    /// Where the names put the suffix from this plan on.
    pub suffix: SuffixTarget,
}

impl Names<'_> {
    /// The name changes, repointing every name when an earlier apply stopped midway or the suffix setting
    /// changed.
    pub fn changes(&self, state: &dyn StateStore) -> Result<NameChanges> {
        let mut changes = self.moved_names();
        // An earlier apply of this environment stopped between moving names and promoting: the names may be
        // ahead of state. Or `environment_suffix_target` changed since it was planned: every name moves.
        // Either way, repoint every name this plan keeps and drop the others it has or may have created.
        let interrupted = state.pending_promotion(self.environment)?;
        if !interrupted.is_empty() || (self.old_suffix() != self.suffix && !self.in_prod()) {
            changes.virtual_changes = self.every_name(interrupted);
        }
        Ok(changes)
    }

    fn in_prod(&self) -> bool {
        *self.environment == crate::PROD
    }

    /// The names the environment has now are under the setting it was last planned with.
    fn old_suffix(&self) -> SuffixTarget {
        self.target.map_or(self.suffix, |t| t.suffix_target)
    }

    /// The promoted models' versions the environment shows now.
    fn shown_versions(&self) -> HashMap<&ModelName, &str> {
        self.target
            .map(|t| {
                let promoted: HashSet<&ModelName> = t.promoted.iter().collect();
                t.snapshots
                    .iter()
                    .filter(|s| promoted.contains(&s.name))
                    .map(|s| (&s.name, s.version.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn by_name(&self) -> HashMap<&ModelName, &Snapshot> {
        self.snapshots.iter().map(|s| (&s.name, s)).collect()
    }

    /// The names whose version changes, the names that go, and prod's in-place tables that come or go.
    fn moved_names(&self) -> NameChanges {
        let shown = self.shown_versions();
        let by_name = self.by_name();
        let mut changes = NameChanges::default();
        for name in self.promoted {
            let s = by_name[name];
            let previous = shown.get(name).copied();
            let virtual_name = VirtualName::new(name, self.environment, self.suffix);
            let target = PhysicalTable::of(s);
            if virtual_name.is(&target) {
                // An in-place table is its own name; a name that showed a versioned table makes room for it.
                if previous.is_some_and(|v| !is_in_place(v)) {
                    changes.names_taken_over.push(virtual_name);
                }
                continue;
            }
            if let Some(old) = previous.filter(|v| is_in_place(v) && self.in_prod()) {
                changes
                    .in_place_dropped
                    .push((name.clone(), PhysicalTable::for_version(name, old, None)));
            }
            if previous != Some(s.version.as_str()) {
                changes.virtual_changes.push(VirtualChange::Point {
                    name: virtual_name,
                    target,
                });
            }
        }
        let promoted: HashSet<&ModelName> = self.promoted.iter().collect();
        for (name, version) in &shown {
            if promoted.contains(name) {
                continue;
            }
            if self.in_prod() && is_in_place(version) {
                // A model gone from prod takes its in-place table with it: the table is the name.
                changes.in_place_dropped.push((
                    (*name).clone(),
                    PhysicalTable::for_version(name, version, None),
                ));
            } else {
                changes.virtual_changes.push(VirtualChange::Drop {
                    name: VirtualName::new(name, self.environment, self.old_suffix()),
                });
            }
        }
        changes
    }

    /// Every promoted model's name pointed at its version, and every other name the environment has or may
    /// have (`interrupted`) dropped.
    fn every_name(&self, interrupted: Vec<VirtualName>) -> Vec<VirtualChange> {
        let by_name = self.by_name();
        let mut pointed: HashSet<VirtualName> = HashSet::new();
        let mut changes: Vec<VirtualChange> = self
            .promoted
            .iter()
            .filter_map(|name| {
                let s = by_name.get(name)?;
                let virtual_name = VirtualName::new(name, self.environment, self.suffix);
                let target = PhysicalTable::of(s);
                pointed.insert(virtual_name.clone());
                // An in-place table is its own name: nothing to point, and never a name to drop.
                (!virtual_name.is(&target)).then_some(VirtualChange::Point {
                    name: virtual_name,
                    target,
                })
            })
            .collect();
        let mut dropped: Vec<VirtualName> = self
            .shown_versions()
            .iter()
            .filter(|(_, version)| !(self.in_prod() && is_in_place(version)))
            .map(|(name, _)| VirtualName::new(name, self.environment, self.old_suffix()))
            .chain(interrupted)
            .filter(|name| !pointed.contains(name))
            .collect();
        dropped.sort_by_key(|n| n.to_string());
        dropped.dedup();
        changes.extend(dropped.into_iter().map(|name| VirtualChange::Drop { name }));
        changes
    }
}
