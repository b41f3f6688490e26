//! Plans: the diff between the local project and an environment, change categories and what to build.

pub mod backfill;
pub mod categorize;
pub mod fingerprint;

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::PROD;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::project::Project;
use crate::project::model::ModelKind;
use crate::snapshot::{
    EnvironmentName, IN_PLACE, PhysicalTable, Snapshot, SuffixTarget, VirtualName, is_in_place,
};
use crate::sql::ModelName;
use crate::state::{Environment, StateStore};
use crate::storage::VirtualChange;
use backfill::Window;
use categorize::Verdict;

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub environment: String,
    /// Give a dev environment virtual names for every model, not only the changed ones.
    pub include_unmodified: bool,
    pub execution_time: NaiveDateTime,
    /// Every directly modified model keeps its physical table; the change applies to data built from now on.
    pub forward_only: bool,
    /// Categories chosen by the user for directly modified models, replacing the automatic ones.
    pub overrides: HashMap<ModelName, Category>,
    /// Limits the intervals a dev plan builds (`--start` / `--end`, end exclusive).
    pub window: Window,
    /// Models to rebuild (their intervals in the window, and everything downstream), changed or not.
    pub restate: Vec<String>,
    /// Plan without running the linter first (`--skip-linter`); `ops::Context::plan` runs it otherwise.
    pub skip_linter: bool,
    /// Plan without running the unit tests first (`--skip-tests`).
    pub skip_tests: bool,
    /// Models whose destructive column changes this plan applies whatever `on_destructive_change` says
    /// (`--allow-destructive-model`).
    pub allow_destructive: Vec<String>,
    /// Models whose additive column changes this plan applies whatever `on_additive_change` says.
    pub allow_additive: Vec<String>,
    /// The environment a new dev environment starts from (`--create-from`; prod when unset): its versions
    /// are the base the project is compared with.
    pub create_from: Option<String>,
}

/// Models whose column changes a plan applies whatever their policy says (SQLMesh's
/// `--allow-destructive-model` / `--allow-additive-model`), for this plan only.
#[derive(Debug, Clone, Default)]
pub struct AllowedSchemaChanges {
    pub destructive: HashSet<ModelName>,
    pub additive: HashSet<ModelName>,
}

impl PlanOptions {
    pub fn new(environment: impl Into<String>, execution_time: NaiveDateTime) -> Self {
        PlanOptions {
            environment: environment.into(),
            include_unmodified: false,
            execution_time,
            forward_only: false,
            overrides: HashMap::new(),
            window: Window::default(),
            restate: Vec::new(),
            skip_linter: false,
            skip_tests: false,
            allow_destructive: Vec::new(),
            allow_additive: Vec::new(),
            create_from: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    DirectlyModified,
    IndirectlyModified,
}

/// How a change affects data, and so whether models get new physical tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The model and its children get new tables and are rebuilt.
    Breaking,
    /// Only the model gets a new table; its children keep theirs (existing columns are unchanged).
    NonBreaking,
    /// A child of a breaking change: new table, rebuilt.
    IndirectBreaking,
    /// A child of non-breaking or forward-only changes only: keeps its table.
    IndirectNonBreaking,
    /// The model keeps its table; the new logic applies to data built from now on.
    ForwardOnly,
    /// Only metadata (owner, description, cron, …) changed: the existing table is reused.
    Metadata,
}

impl Category {
    pub fn label(self) -> &'static str {
        match self {
            Category::Breaking => "Breaking",
            Category::NonBreaking => "Non-breaking",
            Category::IndirectBreaking => "Indirect Breaking",
            Category::IndirectNonBreaking => "Indirect Non-breaking",
            Category::ForwardOnly => "Forward-only",
            Category::Metadata => "Metadata",
        }
    }

    /// Whether children of a model in this category must be rebuilt.
    fn breaks_children(self) -> bool {
        matches!(self, Category::Breaking | Category::IndirectBreaking)
    }

    /// Whether the model gets a new physical table (otherwise it keeps the previous version's).
    fn gets_new_table(self) -> bool {
        matches!(
            self,
            Category::Breaking | Category::NonBreaking | Category::IndirectBreaking
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelChange {
    pub name: ModelName,
    pub kind: ChangeKind,
    pub category: Option<Category>,
    /// Why the category was chosen, e.g. "added column `max_id`" or "changed the WHERE clause".
    pub reason: Option<String>,
    /// Unified diff of the model file against the version in the environment.
    pub diff: Option<String>,
    /// For indirect changes: the directly modified models upstream.
    pub because_of: Vec<ModelName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillAction {
    FullRefresh,
    InsertSeed,
    CreateView,
    /// Incremental kinds: write each missing interval batch.
    Insert,
}

impl BackfillAction {
    pub fn label(self) -> &'static str {
        match self {
            BackfillAction::FullRefresh => "full refresh",
            BackfillAction::InsertSeed => "insert seed file",
            BackfillAction::CreateView => "create view",
            BackfillAction::Insert => "insert",
        }
    }
}

/// One model version to build.
#[derive(Debug, Clone, Serialize)]
pub struct Backfill {
    #[serde(skip)]
    pub model: usize,
    pub name: ModelName,
    pub version: String,
    pub table: PhysicalTable,
    pub action: BackfillAction,
    /// For incremental kinds: the time ranges to build, one write each, oldest first.
    #[serde(skip)]
    pub batches: Vec<Range>,
    /// Rebuilding data that was already built (`--restate-model`): its records are cleared first.
    pub restatement: bool,
    /// The Spark gateway whose engine builds it (`None`: lake's DuckDB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Prod's in-place table is dropped before it is built anew (its kind or mode changed, or the model
    /// is new to prod): what was there does not fit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub recreate: bool,
}

impl Backfill {
    pub fn new(model: usize, snapshot: &Snapshot, action: BackfillAction) -> Self {
        Backfill {
            model,
            name: snapshot.name.clone(),
            version: snapshot.version.clone(),
            table: PhysicalTable::of(snapshot),
            action,
            batches: Vec::new(),
            restatement: false,
            engine: None,
            recreate: false,
        }
    }

    pub fn restating(mut self, restatement: bool) -> Self {
        self.restatement = restatement;
        self
    }

    pub fn with_batches(mut self, batches: Vec<Range>) -> Self {
        self.batches = batches;
        self
    }

    /// `[full refresh]`, `[create view]`, or the covered dates of an incremental build.
    pub fn label(&self) -> String {
        let what = match (self.batches.first(), self.batches.last()) {
            (Some((start, _)), Some((_, end))) => crate::intervals::describe((*start, *end)),
            _ => self.action.label().to_string(),
        };
        match &self.engine {
            Some(gateway) => format!("{what} on {gateway} (spark)"),
            None => what,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub environment: EnvironmentName,
    /// The target environment's plan id when the plan was computed (`None`: it did not exist).
    pub expected_plan_id: Option<String>,
    /// The environment compared against when the target does not exist yet.
    pub created_from: Option<String>,
    pub is_new_environment: bool,
    /// Local snapshots, indexed like `project.models`.
    pub snapshots: Vec<Snapshot>,
    /// Models whose snapshot is not in state yet.
    pub new_snapshots: Vec<usize>,
    pub changes: Vec<ModelChange>,
    /// In topological order.
    pub backfills: Vec<Backfill>,
    pub virtual_changes: Vec<VirtualChange>,
    pub promoted: Vec<ModelName>,
    pub execution_time: NaiveDateTime,
    pub previous_environment: Option<Environment>,
    pub allowed_schema_changes: AllowedSchemaChanges,
    /// Where the environment's names put its suffix from this plan on (`environment_suffix_target`).
    pub suffix_target: SuffixTarget,
    /// Prod names that in-place tables take the place of (`virtual_environment_mode` became dev_only):
    /// removed before the tables are built there.
    pub names_taken_over: Vec<VirtualName>,
    /// Prod's in-place tables that go (their model left prod, or is versioned again): dropped once
    /// everything is built, before names move.
    pub in_place_dropped: Vec<(ModelName, PhysicalTable)>,
}

impl Plan {
    /// Whether applying would change anything at all.
    pub fn has_work(&self) -> bool {
        self.is_new_environment
            || !self.changes.is_empty()
            || !self.backfills.is_empty()
            || !self.virtual_changes.is_empty()
            || !self.in_place_dropped.is_empty()
    }
}

/// Computes what applying the project to `options.environment` would do.
pub fn build(project: &Project, state: &dyn StateStore, options: &PlanOptions) -> Result<Plan> {
    let env_name = EnvironmentName::parse(&options.environment)?;
    let snapshots = fingerprint::compute(project)?;
    let target = state.environment(&env_name)?;
    let prod = if env_name == PROD {
        None
    } else {
        state.environment(PROD)?
    };
    let origin = match options.create_from.as_deref() {
        Some(_) if env_name == PROD => {
            return Err(LakeError::Usage(
                "--create-from starts a new dev environment; prod is never created from another"
                    .into(),
                Some("plan prod without --create-from".into()),
            ));
        }
        Some(from) if target.is_none() => {
            let from = EnvironmentName::parse(from)?;
            let env = state.environment(&from)?.ok_or_else(|| {
                LakeError::Usage(
                    format!("environment `{from}` to create `{env_name}` from does not exist"),
                    Some("`lake environments` lists them".into()),
                )
            })?;
            Some((from.to_string(), env))
        }
        // An environment that exists already is compared with itself.
        _ => prod.clone().map(|p| (PROD.to_string(), p)),
    };
    let (base, created_from) = match (&target, origin) {
        (Some(t), _) => (Some(t.clone()), None),
        (None, Some((from, env))) => (Some(env), Some(from)),
        (None, None) => (None, None),
    };
    let base_by_name: HashMap<&ModelName, &crate::state::EnvSnapshot> = base
        .as_ref()
        .map(|b| b.snapshots.iter().map(|s| (&s.name, s)).collect())
        .unwrap_or_default();

    // Stored fingerprints of the versions being replaced, to tell direct from indirect changes.
    let replaced_ids: Vec<&str> = snapshots
        .iter()
        .filter_map(|s| {
            base_by_name
                .get(&s.name)
                .filter(|p| p.id != s.id)
                .map(|p| p.id.as_str())
        })
        .collect();
    let replaced: HashMap<String, crate::state::StoredSnapshot> = state
        .snapshots(&replaced_ids)?
        .into_iter()
        .map(|s| (s.snapshot.id.clone(), s))
        .collect();

    let all_ids: Vec<&str> = snapshots.iter().map(|s| s.id.as_str()).collect();
    let mut stored_versions = state.stored_versions(&all_ids)?;
    if env_name == PROD {
        // A dev preview holds data prod must not take: prod builds or keeps its own tables instead.
        stored_versions.retain(|_, stored| !crate::snapshot::is_dev_preview(&stored.version));
    }
    // The versions computed from content: a dev plan tells the tables it builds by them.
    let content_versions: Vec<String> = snapshots.iter().map(|s| s.version.clone()).collect();
    // Models whose dev table previews a change prod would apply to its kept table.
    let mut previewed: HashSet<usize> = HashSet::new();
    let mut snapshots = snapshots;
    let mut changes = Vec::new();
    let mut direct: HashSet<ModelName> = HashSet::new();
    let mut categories: HashMap<usize, Category> = HashMap::new();
    // Prod's in-place tables (dev_only models) this plan rebuilds whole; `true`: dropped first.
    let mut rebuilt_in_place: HashMap<usize, bool> = HashMap::new();
    for &i in &project.order {
        let s = &snapshots[i];
        let Some(previous) = base_by_name.get(&s.name) else {
            changes.push(ModelChange {
                name: s.name.clone(),
                kind: ChangeKind::Added,
                category: Some(Category::Breaking),
                reason: None,
                diff: None,
                because_of: Vec::new(),
            });
            direct.insert(s.name.clone());
            categories.insert(i, Category::Breaking);
            if env_name == PROD && project.dev_only(i) {
                // Whatever a table left under the name holds, this version starts it anew.
                snapshots[i].version = IN_PLACE.to_string();
                snapshots[i].physical_schema = None;
                rebuilt_in_place.insert(i, true);
            } else if let Some(stored) = stored_versions.get(&s.id) {
                snapshots[i].version = stored.version.clone();
                snapshots[i].physical_schema = stored.physical_schema.clone();
            }
            continue;
        };
        if previous.id == s.id {
            snapshots[i].version = previous.version.clone();
            snapshots[i].physical_schema = previous.physical_schema.clone();
            continue;
        }
        let stored = replaced.get(&previous.id);
        let fingerprint = |p: &crate::state::StoredSnapshot| p.snapshot.fingerprint.clone();
        let data_change =
            stored.is_none_or(|p| fingerprint(p).data_hash != s.fingerprint.data_hash);
        let metadata_change =
            stored.is_none_or(|p| fingerprint(p).metadata_hash != s.fingerprint.metadata_hash);
        let upstream_change = stored
            .is_none_or(|p| fingerprint(p).parent_data_hash != s.fingerprint.parent_data_hash);
        // Children inherit breakage from parents changed in this plan.
        let breaking_parent = project
            .dag
            .parents(i)
            .any(|p| categories.get(&p).is_some_and(|c| c.breaks_children()));
        // In prod, a forward-only kind keeps its table whatever changed (SQLMesh's `forward_only true`); a
        // dev environment builds the change in a table of its own, so prod's is never written from dev.
        // A change of kind is never forward-only: the old table does not fit the new kind.
        let kind_keeps_table =
            project.models[i].meta.kind.forward_only() && previous.kind_name == s.kind_name;
        let kind_forward_only = env_name == PROD && kind_keeps_table;
        // Prod's table of a dev_only model is the model's name itself: every version writes it.
        let in_place = env_name == PROD && project.dev_only(i);
        let indirect = if kind_forward_only {
            Category::ForwardOnly
        } else if breaking_parent && !in_place {
            Category::IndirectBreaking
        } else {
            Category::IndirectNonBreaking
        };
        let (kind, category, reason) = if data_change && in_place {
            let (category, reason) = in_place_category(
                project,
                i,
                s,
                previous,
                stored,
                options,
                &mut rebuilt_in_place,
            );
            (ChangeKind::DirectlyModified, category, Some(reason))
        } else if data_change {
            let (category, reason) = if let Some(chosen) = options.overrides.get(&s.name) {
                (*chosen, "chosen by you".to_string())
            } else if options.forward_only {
                (
                    Category::ForwardOnly,
                    "the plan is forward-only (--forward-only or plan.forward_only)".to_string(),
                )
            } else if kind_forward_only {
                (
                    Category::ForwardOnly,
                    "its kind is forward-only".to_string(),
                )
            } else if env_name == PROD && is_in_place(&previous.version) {
                (
                    Category::Breaking,
                    "virtual_environment_mode is `full` again: prod gets a versioned table behind its name"
                        .to_string(),
                )
            } else {
                match stored {
                    None => (
                        Category::Breaking,
                        "the previous version is not in state to compare with".to_string(),
                    ),
                    Some(p) => match categorize_direct(project, i, s, p) {
                        Verdict::Breaking(r) => (Category::Breaking, r),
                        Verdict::NonBreaking(r) => (Category::NonBreaking, r),
                    },
                }
            };
            (ChangeKind::DirectlyModified, category, Some(reason))
        } else if metadata_change {
            let category = if upstream_change {
                indirect
            } else {
                Category::Metadata
            };
            (ChangeKind::DirectlyModified, category, None)
        } else if upstream_change {
            (ChangeKind::IndirectlyModified, indirect, None)
        } else {
            (ChangeKind::IndirectlyModified, Category::Metadata, None)
        };
        // A view keeps no data of its own but names its parents' tables: when they change, it is recreated
        // (a new version costs nothing) rather than left reading a parent version that may be dropped.
        let parents_repointed = project.dag.parents(i).any(|p| {
            base_by_name
                .get(&snapshots[p].name)
                .is_none_or(|before| before.version != snapshots[p].version)
        });
        let view_reads_new_parents = parents_repointed
            && matches!(
                project.models[i].meta.kind,
                ModelKind::View {
                    materialized: false
                }
            );
        // A forward-only change in a dev environment is previewed in a table of its own: prod's table is only
        // ever written by prod, which keeps it when the change is deployed forward-only.
        let dev_preview = category == Category::ForwardOnly && env_name != PROD;
        if env_name != PROD && (dev_preview || kind_keeps_table) {
            previewed.insert(i);
        }
        // The physical schema goes with the version: a kept table stays where it is.
        let (version, physical_schema) = match stored_versions.get(&s.id) {
            _ if in_place => (IN_PLACE.to_string(), None),
            // A version a dev plan built for this snapshot holds dev's data; prod's table carries on.
            Some(_) if category == Category::ForwardOnly && !dev_preview => {
                (previous.version.clone(), previous.physical_schema.clone())
            }
            Some(stored) => (stored.version.clone(), stored.physical_schema.clone()),
            None if category.gets_new_table() || view_reads_new_parents || dev_preview => {
                (s.version.clone(), s.physical_schema.clone())
            }
            None => (previous.version.clone(), previous.physical_schema.clone()),
        };
        let diff = if kind == ChangeKind::DirectlyModified {
            // A model whose file is unchanged (an audit or macro it uses changed) has no diff to show.
            stored
                .and_then(|p| p.node.definition.as_deref())
                .filter(|old| *old != &*project.models[i].file.text)
                .map(|old| {
                    unified_diff(
                        old,
                        &project.models[i].file.text,
                        &project.models[i].file.display_path,
                    )
                })
        } else {
            None
        };
        let because_of = if kind == ChangeKind::IndirectlyModified {
            project
                .dag
                .upstream(i)
                .into_iter()
                .map(|p| &snapshots[p].name)
                .filter(|n| direct.contains(*n))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if kind == ChangeKind::DirectlyModified {
            direct.insert(s.name.clone());
        }
        changes.push(ModelChange {
            name: s.name.clone(),
            kind,
            category: Some(category),
            reason,
            diff,
            because_of,
        });
        categories.insert(i, category);
        snapshots[i].version = version;
        snapshots[i].physical_schema = physical_schema;
    }
    if env_name != PROD {
        // A table this dev plan builds for a previewed change, or from a preview's rows, holds data prod would
        // not have: its version is marked so that prod never takes it (and any plan can tell it apart).
        for &i in &project.order {
            let built_here = snapshots[i].version == content_versions[i]
                && base_by_name
                    .get(&snapshots[i].name)
                    .is_none_or(|b| b.version != snapshots[i].version);
            let from_preview = project
                .dag
                .parents(i)
                .any(|p| crate::snapshot::is_dev_preview(&snapshots[p].version));
            // A dev_only model's dev tables are all previews: prod never takes dev's data (SQLMesh's
            // `virtual_environment_mode: dev_only`).
            if built_here && (previewed.contains(&i) || from_preview || project.dev_only(i)) {
                snapshots[i].version = crate::snapshot::dev_preview_version(&content_versions[i]);
            }
        }
    }
    let local_names: HashSet<&ModelName> = snapshots.iter().map(|s| &s.name).collect();
    if let Some(b) = &base {
        for s in &b.snapshots {
            if !local_names.contains(&s.name) {
                changes.push(ModelChange {
                    name: s.name.clone(),
                    kind: ChangeKind::Removed,
                    category: None,
                    reason: None,
                    diff: None,
                    because_of: Vec::new(),
                });
            }
        }
    }

    // Which models get names in this environment's virtual layer.
    let prod_ids: HashMap<&ModelName, &str> = match (env_name == PROD, &prod) {
        (false, Some(p)) => p
            .snapshots
            .iter()
            .map(|s| (&s.name, s.id.as_str()))
            .collect(),
        _ => HashMap::new(),
    };
    let promoted: Vec<ModelName> = snapshots
        .iter()
        .filter(|s| {
            env_name == PROD
                || options.include_unmodified
                || prod_ids.get(&s.name).is_none_or(|id| *id != s.id)
        })
        .filter(|s| {
            !matches!(
                project.model(&s.name).map(|m| &m.meta.kind),
                Some(ModelKind::Embedded | ModelKind::External)
            )
        })
        .map(|s| s.name.clone())
        .collect();
    let target_versions: HashMap<&ModelName, &str> = target
        .as_ref()
        .map(|t| {
            let promoted: HashSet<&ModelName> = t.promoted.iter().collect();
            t.snapshots
                .iter()
                .filter(|s| promoted.contains(&s.name))
                .map(|s| (&s.name, s.version.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let by_name: HashMap<&ModelName, &Snapshot> = snapshots.iter().map(|s| (&s.name, s)).collect();
    let suffix = project.config.suffix_target;
    // The names the environment has now, under the setting it was last planned with.
    let old_suffix = target.as_ref().map_or(suffix, |t| t.suffix_target);
    let mut virtual_changes = Vec::new();
    let mut names_taken_over = Vec::new();
    let mut in_place_dropped = Vec::new();
    for name in &promoted {
        let s = by_name[name];
        let previous = target_versions.get(name).copied();
        let virtual_name = VirtualName::new(name, &env_name, suffix);
        let target = PhysicalTable::of(s);
        if virtual_name.is(&target) {
            // An in-place table is its own name; a name that showed a versioned table makes room for it.
            if previous.is_some_and(|v| !is_in_place(v)) {
                names_taken_over.push(virtual_name);
            }
            continue;
        }
        if let Some(old) = previous.filter(|v| is_in_place(v) && env_name == PROD) {
            in_place_dropped.push((name.clone(), PhysicalTable::for_version(name, old, None)));
        }
        if previous != Some(s.version.as_str()) {
            virtual_changes.push(VirtualChange::Point {
                name: virtual_name,
                target,
            });
        }
    }
    let promoted_set: HashSet<&ModelName> = promoted.iter().collect();
    for (name, version) in &target_versions {
        if promoted_set.contains(name) {
            continue;
        }
        if env_name == PROD && is_in_place(version) {
            // A model gone from prod takes its in-place table with it: the table is the name.
            in_place_dropped.push((
                (*name).clone(),
                PhysicalTable::for_version(name, version, None),
            ));
        } else {
            virtual_changes.push(VirtualChange::Drop {
                name: VirtualName::new(name, &env_name, old_suffix),
            });
        }
    }
    // An earlier apply of this environment stopped between moving names and promoting: the names may be
    // ahead of state. Or `environment_suffix_target` changed since it was planned: every name moves. Either
    // way, repoint every name this plan keeps and drop the others it has or may have created.
    let interrupted = state.pending_promotion(&env_name)?;
    if !interrupted.is_empty() || (old_suffix != suffix && env_name != PROD) {
        let mut pointed: HashSet<VirtualName> = HashSet::new();
        virtual_changes = promoted
            .iter()
            .filter_map(|name| {
                let s = by_name[name];
                let virtual_name = VirtualName::new(name, &env_name, suffix);
                let target = PhysicalTable::of(s);
                pointed.insert(virtual_name.clone());
                // An in-place table is its own name: nothing to point, and never a name to drop.
                (!virtual_name.is(&target)).then_some(VirtualChange::Point {
                    name: virtual_name,
                    target,
                })
            })
            .collect();
        let mut dropped: Vec<VirtualName> = target_versions
            .iter()
            .filter(|(_, version)| !(env_name == PROD && is_in_place(version)))
            .map(|(name, _)| VirtualName::new(name, &env_name, old_suffix))
            .chain(interrupted)
            .filter(|name| !pointed.contains(name))
            .collect();
        dropped.sort_by_key(|n| n.to_string());
        dropped.dedup();
        virtual_changes.extend(dropped.into_iter().map(|name| VirtualChange::Drop { name }));
    }

    // What each version still needs: a first build, or (incremental kinds) its missing intervals.
    let versions: Vec<(ModelName, String)> = snapshots
        .iter()
        .map(|s| (s.name.clone(), s.version.clone()))
        .collect();
    let built = backfill::BuiltIntervals::load(state, &versions)?;
    if env_name == PROD && options.window != Window::default() && options.restate.is_empty() {
        return Err(LakeError::Usage(
            "--start and --end limit dev plans only".into(),
            Some(
                "prod always holds every interval; to rebuild a range of prod, use --restate-model with --start/--end"
                    .into(),
            ),
        ));
    }
    let mut restated: HashSet<usize> = HashSet::new();
    for name in &options.restate {
        let i = project.find_model(name)?;
        let model = &project.models[i].meta;
        if model.kind.restatement_disabled() {
            return Err(LakeError::Usage(
                format!("`{}` has restatement disabled", model.name),
                Some(format!(
                    "{} keeps data that a rebuild would lose (e.g. history); set disable_restatement false to allow it",
                    model.kind.name()
                )),
            ));
        }
        restated.insert(i);
        // Downstream models that forbid restatement keep their data.
        restated.extend(
            project
                .dag
                .downstream(i)
                .into_iter()
                .filter(|&d| !project.models[d].meta.kind.restatement_disabled()),
        );
    }
    let mut backfills = Vec::new();
    let mut unsupported = Vec::new();
    for &i in &project.order {
        let s = &snapshots[i];
        if env_name != PROD && is_in_place(&s.version) {
            // Prod's in-place table is written by prod's plans and runs only, never from a dev environment.
            continue;
        }
        let kind = &project.models[i].meta.kind;
        let rebuilt = rebuilt_in_place.get(&i).copied();
        let restating = restated.contains(&i) || rebuilt.is_some();
        let Some(action) = backfill::action_for(kind) else {
            if !matches!(kind, ModelKind::External | ModelKind::Embedded) {
                unsupported.push(format!("{} ({})", s.name, kind.name()));
            }
            continue;
        };
        // A restated model is rebuilt as if nothing had been recorded.
        let recorded: &[Range] = if restating {
            &[]
        } else {
            built.of(&s.name, &s.version)
        };
        let window = if env_name == PROD && !restating {
            Window::default()
        } else {
            options.window
        };
        if action == BackfillAction::Insert {
            let batches =
                backfill::missing_batches(project, i, recorded, options.execution_time, window)?;
            if !batches.is_empty() {
                let mut backfill = Backfill::new(i, s, action)
                    .with_batches(batches)
                    .restating(restating);
                backfill.recreate = rebuilt == Some(true);
                backfills.push(backfill);
            }
        } else if recorded.is_empty() {
            let mut backfill = Backfill::new(i, s, action).restating(restating);
            backfill.recreate = rebuilt == Some(true);
            backfills.push(backfill);
        }
    }
    if !unsupported.is_empty() {
        return Err(LakeError::unsupported(
            format!("building these model kinds: {}", unsupported.join(", ")),
            "lake builds VIEW, FULL, SEED, EMBEDDED, the INCREMENTAL_* kinds and SCD_TYPE_2_BY_TIME / BY_COLUMN today; MANAGED and CUSTOM need engine or Python support lake does not have",
        ));
    }
    for b in &mut backfills {
        b.engine = project.spark_gateway(b.model).map(|c| c.gateway.clone());
    }
    let new_snapshots = (0..snapshots.len())
        .filter(|&i| !stored_versions.contains_key(&snapshots[i].id))
        .collect();
    Ok(Plan {
        environment: env_name,
        expected_plan_id: target.as_ref().map(|t| t.plan_id.clone()),
        created_from,
        is_new_environment: target.is_none(),
        snapshots,
        new_snapshots,
        changes,
        backfills,
        virtual_changes,
        promoted,
        execution_time: options.execution_time,
        previous_environment: target,
        allowed_schema_changes: allowed_schema_changes(project, options)?,
        suffix_target: suffix,
        names_taken_over,
        in_place_dropped,
    })
}

/// The category of a change to a dev_only model in prod, whose table lives in place under its name. As in
/// SQLMesh, changes apply forward-only: the table keeps its rows and history, and its columns follow the
/// query when the plan is applied. A change the table cannot carry (a new kind, the switch from versioned
/// tables, a seed's new contents) rebuilds it in place; so does a view, which holds no data, and a category
/// chosen by the user other than forward-only. Rebuilt models are added to `rebuilt` (`true`: dropped first).
fn in_place_category(
    project: &Project,
    i: usize,
    new: &Snapshot,
    previous: &crate::state::EnvSnapshot,
    stored: Option<&crate::state::StoredSnapshot>,
    options: &PlanOptions,
    rebuilt: &mut HashMap<usize, bool>,
) -> (Category, String) {
    if !is_in_place(&previous.version) {
        rebuilt.insert(i, true);
        return (
            Category::Breaking,
            "virtual_environment_mode became `dev_only`: prod's table is built in place under the model's name"
                .into(),
        );
    }
    if previous.kind_name != new.kind_name {
        rebuilt.insert(i, true);
        return (
            Category::Breaking,
            "changed the model kind: prod's table is rebuilt in place".into(),
        );
    }
    if let Some(chosen) = options.overrides.get(&new.name) {
        if *chosen != Category::ForwardOnly {
            rebuilt.insert(i, true);
        }
        return (*chosen, "chosen by you".into());
    }
    let kind = &project.models[i].meta.kind;
    let rebuilt_whole = matches!(kind, ModelKind::Seed { .. } | ModelKind::View { .. });
    if rebuilt_whole {
        rebuilt.insert(i, false);
        let verdict = match stored {
            Some(p) => categorize_direct(project, i, new, p),
            None => {
                Verdict::Breaking("the previous version is not in state to compare with".into())
            }
        };
        return match verdict {
            Verdict::Breaking(reason) => (Category::Breaking, reason),
            Verdict::NonBreaking(reason) => (Category::NonBreaking, reason),
        };
    }
    (
        Category::ForwardOnly,
        "virtual_environment_mode is `dev_only`: prod's table keeps its rows and the change applies going forward"
            .into(),
    )
}

/// The models `--allow-destructive-model` / `--allow-additive-model` name, each one that exists.
fn allowed_schema_changes(
    project: &Project,
    options: &PlanOptions,
) -> Result<AllowedSchemaChanges> {
    let models = |names: &[String]| -> Result<HashSet<ModelName>> {
        names
            .iter()
            .map(|name| Ok(project.models[project.find_model(name)?].meta.name.clone()))
            .collect()
    };
    Ok(AllowedSchemaChanges {
        destructive: models(&options.allow_destructive)?,
        additive: models(&options.allow_additive)?,
    })
}

/// The category of a model whose own data-affecting definition changed, from what changed.
fn categorize_direct(
    project: &Project,
    i: usize,
    new: &Snapshot,
    previous: &crate::state::StoredSnapshot,
) -> Verdict {
    let old_parts = &previous.snapshot.fingerprint.data_parts;
    let new_parts = &new.fingerprint.data_parts;
    if old_parts.is_empty() {
        return Verdict::Breaking(
            "the previous version was recorded without the detail needed to compare".into(),
        );
    }
    // A part only some versions have (`virtual_environment_mode`) changed when it appears or disappears.
    let mut changed: Vec<&str> = new_parts
        .iter()
        .filter(|(part, hash)| old_parts.get(*part) != Some(*hash))
        .map(|(part, _)| part.as_str())
        .chain(
            old_parts
                .keys()
                .filter(|part| !new_parts.contains_key(*part))
                .map(String::as_str),
        )
        .collect();
    changed.sort_unstable();
    if let Some(part) = changed.iter().find(|p| **p != "query") {
        let what = match *part {
            "kind" => "the model kind",
            "columns" => "the declared columns",
            "statements" => "the pre/post statements",
            "seed" => "the seed data",
            "physical" => "the physical properties",
            "dialect" => "the dialect",
            "stamp" => "the stamp",
            other => other,
        };
        return Verdict::Breaking(format!("changed {what}"));
    }
    let old_query = previous.node.query.as_deref().unwrap_or_default();
    let new_query = project.analyses[i]
        .normalized_query
        .as_deref()
        .unwrap_or_default();
    let verdict = categorize::compare_queries(old_query, new_query);
    if let Verdict::NonBreaking(_) = &verdict {
        for child in project.dag.children(i) {
            let child_query = project.analyses[child]
                .normalized_query
                .as_deref()
                .unwrap_or_default();
            if categorize::selects_star(child_query) {
                return Verdict::Breaking(format!(
                    "added a column that `{}` reads through `*`",
                    project.models[child].meta.name
                ));
            }
        }
    }
    verdict
}

fn unified_diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}
