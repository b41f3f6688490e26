//! Plans: the diff between the local project and an environment, change categories and what to build.

pub mod backfill;
mod base;
mod builds;
pub mod categorize;
mod changes;
pub mod columns;
pub mod fingerprint;
mod selected;
mod virtual_layer;

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::PROD;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::project::Project;
use crate::project::{ModelId, PerModel};
use crate::snapshot::{EnvironmentName, PhysicalTable, Snapshot, SuffixTarget, VirtualName};
use crate::sql::ModelName;
use crate::state::{Environment, StateStore};
use crate::storage::VirtualChange;
use backfill::Window;
use base::Base;

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
    /// Leave out the text differences of changed models (`--no-diff`, `plan.no_diff`).
    pub no_diff: bool,
    /// Which builds write rows (`--skip-backfill`, `--empty-backfill`, `--backfill-model`).
    pub fill: FillRequest,
    /// Diffs show the rendered queries rather than the files (`--diff-rendered`).
    pub diff_rendered: bool,
    /// `--min-intervals`: a dev plan limited by `--start` still covers at least this many of each
    /// incremental model's intervals.
    pub min_intervals: u32,
    /// `--no-gaps`: refuse a plan whose new versions would lack intervals the versions they replace have.
    pub no_gaps: bool,
    /// `--effective-from`: prod's forward-only changes are applied to the data from this time on (those
    /// intervals are rebuilt with the new logic), not only to data built from now on.
    pub effective_from: Option<NaiveDateTime>,
    /// A dev plan previews forward-only changes in tables of its own (SQLMesh's `enable_preview`, on by
    /// default); without, dev shows prod's tables of those models as they are.
    pub enable_preview: bool,
    /// A child reading none of the columns a change touches keeps its table (`plan.column_aware`, on by
    /// default); off, every child of a breaking change is rebuilt.
    pub column_aware: bool,
    /// `--select-model`: only the changes of the models these select are planned; the others keep the
    /// compared environment's versions.
    pub select: Vec<String>,
}

/// What a plan's builds write, as the user asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FillRequest {
    /// Every build writes its rows.
    #[default]
    All,
    /// `--skip-backfill` / `--dry-run`: tables are created empty and no interval is recorded, so the next
    /// `lake run` (or plan) builds them.
    Skip,
    /// `--empty-backfill`: tables are created empty and their intervals recorded as built.
    Empty,
    /// `--backfill-model` (dev only): only these selections and their upstream models write rows; the
    /// others are created empty, their intervals left missing.
    Only(Vec<String>),
}

/// Whether a build writes its query's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    Rows,
    /// The table is created with the query's columns and no rows; with `record_intervals`, its intervals
    /// count as built.
    Empty {
        record_intervals: bool,
    },
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
            no_diff: false,
            fill: FillRequest::All,
            diff_rendered: false,
            min_intervals: 0,
            no_gaps: false,
            effective_from: None,
            enable_preview: true,
            column_aware: true,
            select: Vec::new(),
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
    /// The columns it adds, removes, retypes or computes anew, and those of it that read columns changed
    /// upstream (`None`: none that column lineage can name).
    pub columns: Option<columns::ColumnImpact>,
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
    pub model: ModelId,
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
    pub fill: Fill,
}

impl Backfill {
    pub fn new(model: ModelId, snapshot: &Snapshot, action: BackfillAction) -> Self {
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
            fill: Fill::Rows,
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
        let what = match self.fill {
            Fill::Rows => what,
            Fill::Empty {
                record_intervals: false,
            } => format!("{what}, no rows: missing until run"),
            Fill::Empty {
                record_intervals: true,
            } => format!("{what}, no rows: recorded as built"),
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
    pub snapshots: PerModel<Snapshot>,
    /// Models whose snapshot is not in state yet.
    pub new_snapshots: Vec<ModelId>,
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

    /// `--no-diff`: the plan says what changed, without the text of the changes.
    pub fn drop_diffs(&mut self) {
        for change in &mut self.changes {
            change.diff = None;
        }
    }
}

/// Computes what applying the project to `options.environment` would do, in phases: the base it is compared
/// with, each model's change and category (and so its version), the environment's names, and the builds.
pub fn build(project: &Project, state: &dyn StateStore, options: &PlanOptions) -> Result<Plan> {
    let environment = EnvironmentName::parse(&options.environment)?;
    let in_prod = environment == PROD;
    let base = Base::resolve(state, &environment, options)?;
    let compared = base.by_name();
    let snapshots = if options.select.is_empty() {
        fingerprint::compute(project)?
    } else {
        let kept = selected::kept_snapshots(project, state, &compared, &options.select)?;
        fingerprint::compute_keeping(project, &kept)?
    };
    let changes::Changes {
        snapshots,
        mut changes,
        stored_versions,
        rebuilt_in_place,
    } = changes::categorise(project, state, in_prod, &compared, snapshots, options)?;
    let removed = changes::removed(base.compared.as_ref(), &snapshots);
    if let (Some(gone), false) = (removed.first(), options.select.is_empty()) {
        // SQLMesh keeps a left-out model the project no longer has; lake has no definition to keep it by.
        return Err(LakeError::Usage(
            format!(
                "--select-model cannot keep `{}`, which the project no longer has",
                gone.name
            ),
            Some("plan without --select-model to remove it from the environment".into()),
        ));
    }
    changes.extend(removed);
    let effective = effective_from(in_prod, &changes, options)?;
    let options = effective.as_ref().unwrap_or(options);
    let promoted = virtual_layer::promoted(
        project,
        &snapshots,
        &environment,
        base.prod.as_ref(),
        options.include_unmodified,
    );
    let suffix = project.config.suffix_target;
    let names = virtual_layer::Names {
        environment: &environment,
        target: base.target.as_ref(),
        promoted: &promoted,
        snapshots: &snapshots,
        suffix,
    }
    .changes(state)?;
    let mut backfills = builds::backfills(
        project,
        state,
        &snapshots,
        in_prod,
        &rebuilt_in_place,
        options,
    )?;
    builds::choose_fill(project, in_prod, &options.fill, &mut backfills)?;
    if options.no_gaps {
        builds::refuse_gaps(state, &backfills, &compared)?;
    }
    let new_snapshots = snapshots
        .entries()
        .filter(|(_, s)| !stored_versions.contains_key(&s.id))
        .map(|(i, _)| i)
        .collect();
    Ok(Plan {
        environment,
        expected_plan_id: base.target.as_ref().map(|t| t.plan_id.clone()),
        created_from: base.created_from,
        is_new_environment: base.target.is_none(),
        snapshots,
        new_snapshots,
        changes,
        backfills,
        virtual_changes: names.virtual_changes,
        promoted,
        execution_time: options.execution_time,
        previous_environment: base.target,
        allowed_schema_changes: allowed_schema_changes(project, options)?,
        suffix_target: suffix,
        names_taken_over: names.names_taken_over,
        in_place_dropped: names.in_place_dropped,
    })
}

/// With `--effective-from`, the options that rebuild prod's forward-only changes (and what reads them) from
/// that time on, as a restatement of their kept tables; `None` without it.
fn effective_from(
    in_prod: bool,
    changes: &[ModelChange],
    options: &PlanOptions,
) -> Result<Option<PlanOptions>> {
    let Some(from) = options.effective_from else {
        return Ok(None);
    };
    if !in_prod {
        return Err(LakeError::Usage(
            "--effective-from applies forward-only changes to prod".into(),
            Some("a dev environment previews forward-only changes in tables of its own; plan prod with it".into()),
        ));
    }
    let forward: Vec<String> = changes
        .iter()
        .filter(|c| c.category == Some(Category::ForwardOnly))
        .map(|c| c.name.to_string())
        .collect();
    // As in SQLMesh, a forward-only plan that changes nothing has nothing to apply from then: no error.
    if forward.is_empty() && options.forward_only && changes.is_empty() {
        return Ok(None);
    }
    if forward.is_empty() {
        return Err(LakeError::Usage(
            "--effective-from: this plan has no forward-only change to apply from then".into(),
            Some(
                "pass --forward-only (or set `plan.forward_only`) for changes to keep their tables"
                    .into(),
            ),
        ));
    }
    let mut effective = options.clone();
    effective.restate.extend(forward);
    effective.window.start = Some(from);
    Ok(Some(effective))
}

/// The models `--allow-destructive-model` / `--allow-additive-model` name, each one that exists.
fn allowed_schema_changes(
    project: &Project,
    options: &PlanOptions,
) -> Result<AllowedSchemaChanges> {
    let models = |names: &[String]| -> Result<HashSet<ModelName>> {
        names
            .iter()
            .map(|name| Ok(project.model(project.find_model(name)?).meta.name.clone()))
            .collect()
    };
    Ok(AllowedSchemaChanges {
        destructive: models(&options.allow_destructive)?,
        additive: models(&options.allow_additive)?,
    })
}
