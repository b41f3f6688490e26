//! A plan's first phase: every model compared with the base environment's version, its change categorised
//! (`categorize`), and the version, and so the physical table, it will use chosen.

use std::collections::{HashMap, HashSet};

use super::categorize::ChangedModel;
use super::columns::{ColumnImpact, ColumnReach, Reach};
use super::{Category, ChangeKind, ModelChange, PlanOptions};
use crate::error::Result;
use crate::project::model::ModelKind;
use crate::project::{ModelId, PerModel, Project};
use crate::snapshot::{IN_PLACE, Snapshot};
use crate::sql::ModelName;
use crate::state::{EnvSnapshot, Environment, StateStore, StoredSnapshot, StoredVersion};

/// The project's versions as the plan will use them, and what changed.
pub(super) struct Changes {
    /// Indexed like `project.models`, each with the version (table) it will use.
    pub snapshots: PerModel<Snapshot>,
    pub changes: Vec<ModelChange>,
    /// Versions already in state, by snapshot id.
    pub stored_versions: HashMap<String, StoredVersion>,
    /// Prod's in-place tables (dev_only models) this plan rebuilds whole; `true`: dropped first.
    pub rebuilt_in_place: HashMap<ModelId, bool>,
}

/// Compares `snapshots` (fresh from the project) with `compared`, the base environment's versions.
pub(super) fn categorise(
    project: &Project,
    state: &dyn StateStore,
    in_prod: bool,
    compared: &HashMap<&ModelName, &EnvSnapshot>,
    snapshots: PerModel<Snapshot>,
    options: &PlanOptions,
) -> Result<Changes> {
    let replaced = replaced_snapshots(state, &snapshots, compared)?;
    let all_ids: Vec<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
    let mut stored_versions = state.stored_versions(&all_ids)?;
    if in_prod {
        // A dev preview holds data prod must not take: prod builds or keeps its own tables instead.
        stored_versions.retain(|_, stored| !crate::snapshot::is_dev_preview(&stored.version));
    }
    let mut run = Categoriser {
        project,
        options,
        in_prod,
        compared,
        replaced: &replaced,
        stored_versions: &stored_versions,
        content_versions: snapshots.map(|_, s| s.version.clone()),
        snapshots,
        changes: Vec::new(),
        direct: HashSet::new(),
        rebuilt_in_place: HashMap::new(),
        previewed: HashSet::new(),
        columns: ColumnReach::new(project, options.column_aware),
    };
    for &i in &project.order {
        match compared.get(&run.snapshots[i].name) {
            None => run.added(i),
            Some(previous) if previous.id == run.snapshots[i].id => run.unchanged(i, previous),
            Some(previous) => run.changed(i, previous),
        }
    }
    if !in_prod {
        run.mark_dev_previews();
    }
    let Categoriser {
        snapshots,
        changes,
        rebuilt_in_place,
        ..
    } = run;
    Ok(Changes {
        snapshots,
        changes,
        stored_versions,
        rebuilt_in_place,
    })
}

/// The stored records of the versions being replaced, by id: their fingerprints tell direct from indirect
/// changes, and their definitions give the diff.
fn replaced_snapshots(
    state: &dyn StateStore,
    snapshots: &PerModel<Snapshot>,
    compared: &HashMap<&ModelName, &EnvSnapshot>,
) -> Result<HashMap<String, StoredSnapshot>> {
    let replaced_ids: Vec<&str> = snapshots
        .iter()
        .filter_map(|s| {
            compared
                .get(&s.name)
                .filter(|p| p.id != s.id)
                .map(|p| p.id.as_str())
        })
        .collect();
    Ok(state
        .snapshots(&replaced_ids)?
        .into_iter()
        .map(|s| (s.snapshot.id.clone(), s))
        .collect())
}

/// The changes found so far, model by model in topological order (parents are decided before children).
struct Categoriser<'a> {
    project: &'a Project,
    options: &'a PlanOptions,
    in_prod: bool,
    compared: &'a HashMap<&'a ModelName, &'a EnvSnapshot>,
    replaced: &'a HashMap<String, StoredSnapshot>,
    stored_versions: &'a HashMap<String, StoredVersion>,
    /// The versions computed from content: a dev plan tells the tables it builds by them.
    content_versions: PerModel<String>,
    snapshots: PerModel<Snapshot>,
    changes: Vec<ModelChange>,
    /// Models directly modified so far, which their children's changes are "because of".
    direct: HashSet<ModelName>,
    rebuilt_in_place: HashMap<ModelId, bool>,
    /// Models whose dev table previews a change prod would apply to its kept table.
    previewed: HashSet<ModelId>,
    /// Which columns of the models decided so far differ, for their children.
    columns: ColumnReach<'a>,
}

impl Categoriser<'_> {
    /// A model the base environment does not have: breaking, built anew (or from a version already stored).
    fn added(&mut self, i: ModelId) {
        let name = self.snapshots[i].name.clone();
        self.changes.push(ModelChange {
            name: name.clone(),
            kind: ChangeKind::Added,
            category: Some(Category::Breaking),
            reason: None,
            diff: None,
            because_of: Vec::new(),
            columns: None,
        });
        self.direct.insert(name);
        self.columns.record_all(i);
        if self.in_prod && self.project.dev_only(i) {
            // Whatever a table left under the name holds, this version starts it anew.
            self.snapshots[i].version = IN_PLACE.to_string();
            self.snapshots[i].physical_schema = None;
            self.rebuilt_in_place.insert(i, true);
        } else if let Some(stored) = self.stored_versions.get(&self.snapshots[i].id) {
            self.snapshots[i].version = stored.version.clone();
            self.snapshots[i].physical_schema = stored.physical_schema.clone();
        }
    }

    /// The same version as the base environment's: it keeps its table.
    fn unchanged(&mut self, i: ModelId, previous: &EnvSnapshot) {
        self.snapshots[i].version = previous.version.clone();
        self.snapshots[i].physical_schema = previous.physical_schema.clone();
    }

    fn changed(&mut self, i: ModelId, previous: &EnvSnapshot) {
        let s = &self.snapshots[i];
        let inherited = self.columns.inherited(i);
        let model = ChangedModel {
            project: self.project,
            model: i,
            new: s,
            previous,
            stored: self.replaced.get(&previous.id),
            in_prod: self.in_prod,
            // Children inherit breakage from parents changed in this plan, where it reaches them.
            breaking_parent: inherited.reach != Reach::Unchanged,
        };
        let decision = model.decide(self.options);
        if let Some(dropped_first) = decision.rebuild_in_place {
            self.rebuilt_in_place.insert(i, dropped_first);
        }
        let category = decision.category;
        // A forward-only change in a dev environment is previewed in a table of its own: prod's table is only
        // ever written by prod, which keeps it when the change is deployed forward-only.
        // Without preview (`plan.enable_preview: false`), dev shows prod's table as it is.
        let dev_preview =
            category == Category::ForwardOnly && !self.in_prod && self.options.enable_preview;
        let no_preview = category == Category::ForwardOnly && !self.options.enable_preview;
        if !self.in_prod && !no_preview && (dev_preview || model.kind_keeps_table()) {
            self.previewed.insert(i);
        }
        let (version, physical_schema) = self.version_of(&model, category, dev_preview);
        let indirect = matches!(
            category,
            Category::IndirectBreaking | Category::IndirectNonBreaking
        );
        let reason = decision
            .reason
            .clone()
            .or_else(|| inherited.reason.clone().filter(|_| indirect));
        let impact = ColumnImpact {
            own: decision.columns.clone().unwrap_or_default(),
            reads_changed: if category.gets_new_table() {
                inherited.reads_changed.clone()
            } else {
                Vec::new()
            },
        };
        let change = ModelChange {
            name: s.name.clone(),
            kind: decision.kind,
            category: Some(category),
            reason,
            diff: self.diff_of(&model, decision.kind),
            because_of: self.because_of(i, decision.kind),
            columns: (!impact.is_empty()).then_some(impact),
        };
        self.columns
            .record(i, category, decision.columns.as_ref(), inherited.reach);
        if decision.kind == ChangeKind::DirectlyModified {
            self.direct.insert(s.name.clone());
        }
        self.changes.push(change);
        self.snapshots[i].version = version;
        self.snapshots[i].physical_schema = physical_schema;
    }

    /// The version (and physical schema, which goes with it: a kept table stays where it is) a changed model
    /// uses: prod's name itself in place, a version already stored, a new table, or the previous one kept.
    fn version_of(
        &self,
        model: &ChangedModel<'_>,
        category: Category,
        dev_preview: bool,
    ) -> (String, Option<String>) {
        let (s, previous) = (model.new, model.previous);
        let kept = || (previous.version.clone(), previous.physical_schema.clone());
        match self.stored_versions.get(&s.id) {
            _ if model.in_place() => (IN_PLACE.to_string(), None),
            // A version a dev plan built for this snapshot holds dev's data; prod's table carries on.
            Some(_) if category == Category::ForwardOnly && !dev_preview => kept(),
            // A plan without preview stored this snapshot on prod's table; a preview needs its own.
            Some(stored) if dev_preview && stored.version == previous.version => {
                (s.version.clone(), s.physical_schema.clone())
            }
            Some(stored) => (stored.version.clone(), stored.physical_schema.clone()),
            None if category.gets_new_table()
                || self.view_reads_new_parents(model.model)
                || dev_preview =>
            {
                (s.version.clone(), s.physical_schema.clone())
            }
            None => kept(),
        }
    }

    /// A view keeps no data of its own but names its parents' tables: when they change, it is recreated (a new
    /// version costs nothing) rather than left reading a parent version that may be dropped.
    fn view_reads_new_parents(&self, i: ModelId) -> bool {
        let is_view = matches!(
            self.project.model(i).meta.kind,
            ModelKind::View {
                materialized: false
            }
        );
        is_view
            && self.project.dag.parents(i).any(|p| {
                self.compared
                    .get(&self.snapshots[p].name)
                    .is_none_or(|before| before.version != self.snapshots[p].version)
            })
    }

    /// The unified diff of a directly modified model's file; none when the file is unchanged (an audit or a
    /// macro it uses changed).
    fn diff_of(&self, model: &ChangedModel<'_>, kind: ChangeKind) -> Option<String> {
        if kind != ChangeKind::DirectlyModified {
            return None;
        }
        let file = &self.project.model(model.model).file;
        if self.options.diff_rendered {
            let new = self
                .project
                .analysis(model.model)
                .normalized_query
                .as_deref()?;
            let old = model.stored.and_then(|p| p.node.query.as_deref())?;
            let (old, new) = (laid_out(old), laid_out(new));
            let path = format!("{} (rendered)", file.display_path);
            return (old != new).then(|| unified_diff(&old, &new, &path));
        }
        model
            .stored
            .and_then(|p| p.node.definition.as_deref())
            .filter(|old| *old != &*file.text)
            .map(|old| unified_diff(old, &file.text, &file.display_path))
    }

    /// For an indirect change: the directly modified models upstream.
    fn because_of(&self, i: ModelId, kind: ChangeKind) -> Vec<ModelName> {
        if kind != ChangeKind::IndirectlyModified {
            return Vec::new();
        }
        self.project
            .dag
            .upstream(i)
            .into_iter()
            .map(|p| &self.snapshots[p].name)
            .filter(|n| self.direct.contains(*n))
            .cloned()
            .collect()
    }

    /// A table this dev plan builds for a previewed change, or from a preview's rows, holds data prod would
    /// not have: its version is marked so that prod never takes it (and any plan can tell it apart).
    fn mark_dev_previews(&mut self) {
        for &i in &self.project.order {
            let version = &self.snapshots[i].version;
            let built_here = *version == self.content_versions[i]
                && self
                    .compared
                    .get(&self.snapshots[i].name)
                    .is_none_or(|b| b.version != *version);
            let from_preview = self
                .project
                .dag
                .parents(i)
                .any(|p| crate::snapshot::is_dev_preview(&self.snapshots[p].version));
            // A dev_only model's dev tables are all previews: prod never takes dev's data (SQLMesh's
            // `virtual_environment_mode: dev_only`).
            if built_here
                && (self.previewed.contains(&i) || from_preview || self.project.dev_only(i))
            {
                self.snapshots[i].version =
                    crate::snapshot::dev_preview_version(&self.content_versions[i]);
            }
        }
    }
}

/// Models of the base environment the project no longer has.
pub(super) fn removed(
    compared: Option<&Environment>,
    snapshots: &PerModel<Snapshot>,
) -> Vec<ModelChange> {
    let local_names: HashSet<&ModelName> = snapshots.iter().map(|s| &s.name).collect();
    compared
        .into_iter()
        .flat_map(|b| &b.snapshots)
        .filter(|s| !local_names.contains(&s.name))
        .map(|s| ModelChange {
            name: s.name.clone(),
            kind: ChangeKind::Removed,
            category: None,
            reason: None,
            diff: None,
            because_of: Vec::new(),
            columns: None,
        })
        .collect()
}

/// A rendered query one clause per line (sqlparser's layout), so its diff shows what changed where; SQL that
/// does not parse is shown as it is.
fn laid_out(query: &str) -> String {
    let (hidden, macros) = crate::sql::lex::hide_macros(query);
    match crate::sql::parse(&hidden) {
        Ok(statements) => {
            let text: Vec<String> = statements.iter().map(|s| format!("{s:#}")).collect();
            crate::sql::lex::show_macros(&format!("{}\n", text.join(";\n")), &macros)
        }
        Err(_) => format!("{query}\n"),
    }
}

fn unified_diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}
