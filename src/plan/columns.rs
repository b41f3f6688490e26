//! Which columns of each model a plan changes: a direct change's added, removed, retyped and recomputed
//! columns, and, through column lineage, the columns of its children that read them. A child that reads none
//! keeps its table (`plan.column_aware`); any doubt about what a child reads rebuilds it.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Category;
use crate::project::lineage::ProjectLineage;
use crate::project::model::ModelKind;
use crate::project::{ModelId, PerModel, Project};
use crate::sql::lineage::QueryLineage;

/// What a direct change does to the model's columns, from comparing its two queries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ColumnDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Cast to another type, the cast expression otherwise the same.
    pub retyped: Vec<String>,
    /// Computed by another expression.
    pub changed: Vec<String>,
}

impl ColumnDiff {
    /// The columns that were there before and now hold other values, or are gone.
    fn existing_changed(&self) -> impl Iterator<Item = &String> {
        self.removed
            .iter()
            .chain(&self.retyped)
            .chain(&self.changed)
    }
}

/// A column of a model whose values come from changed upstream columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadsChanged {
    pub column: String,
    /// The changed upstream columns it reads, as `schema.model.column`.
    pub upstream: Vec<String>,
}

/// How a plan's changes reach one model's columns, as the plan shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ColumnImpact {
    /// Its own change (directly modified models only).
    #[serde(flatten)]
    pub own: ColumnDiff,
    /// Its columns that read columns changed upstream (models rebuilt only).
    pub reads_changed: Vec<ReadsChanged>,
}

impl ColumnImpact {
    pub fn is_empty(&self) -> bool {
        self.own == ColumnDiff::default() && self.reads_changed.is_empty()
    }
}

/// Which of a model's columns hold other values once the plan is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reach {
    /// None: its children keep their tables.
    Unchanged,
    /// These existing columns (lower-cased; possibly none, when only the set or order of columns changed):
    /// its rows are the same.
    Columns(BTreeSet<String>),
    /// Any column, and its rows.
    All,
}

/// What reaches a model from its parents changed in this plan.
#[derive(Debug, Clone)]
pub(super) struct Inherited {
    pub reach: Reach,
    pub reads_changed: Vec<ReadsChanged>,
    /// Why every column may differ, or why none does, when column lineage decided it.
    pub reason: Option<String>,
}

/// The reach of every model decided so far, in topological order, and the lineage it is traced with
/// (computed once, on the first child that needs it).
pub(super) struct ColumnReach<'a> {
    project: &'a Project,
    enabled: bool,
    lineage: OnceCell<ProjectLineage>,
    reaches: BTreeMap<ModelId, Reach>,
}

impl<'a> ColumnReach<'a> {
    pub fn new(project: &'a Project, enabled: bool) -> Self {
        ColumnReach {
            project,
            enabled,
            lineage: OnceCell::new(),
            reaches: BTreeMap::new(),
        }
    }

    /// What model `i`'s parents changed in this plan pass on to it.
    pub fn inherited(&self, i: ModelId) -> Inherited {
        let mut inherited = Inherited {
            reach: Reach::Unchanged,
            reads_changed: Vec::new(),
            reason: None,
        };
        let mut columns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for parent in self.project.dag.parents(i) {
            match self.reaches.get(&parent).unwrap_or(&Reach::Unchanged) {
                Reach::Unchanged => {}
                Reach::All => return all_of(None),
                Reach::Columns(_) if !self.enabled => return all_of(None),
                Reach::Columns(changed) => match self.reads(i, parent, changed) {
                    Err(why) => return all_of(Some(why)),
                    Ok(reads) => {
                        for (column, upstream) in reads {
                            columns.entry(column).or_default().insert(upstream);
                        }
                        inherited.reach = Reach::Columns(BTreeSet::new());
                    }
                },
            }
        }
        if inherited.reach == Reach::Unchanged {
            return inherited;
        }
        if columns.is_empty() {
            inherited.reach = Reach::Unchanged;
            inherited.reason = Some("reads none of the changed columns".into());
            return inherited;
        }
        inherited.reach = Reach::Columns(columns.keys().map(|c| c.to_lowercase()).collect());
        inherited.reads_changed = columns
            .into_iter()
            .map(|(column, upstream)| ReadsChanged {
                column,
                upstream: upstream.into_iter().collect(),
            })
            .collect();
        inherited
    }

    /// Records model `i`'s reach once its category is decided: a model that keeps its table changes nothing
    /// below it; one rebuilt carries its own change and what it inherited.
    pub fn record(
        &mut self,
        i: ModelId,
        category: Category,
        own: Option<&ColumnDiff>,
        inherited: Reach,
    ) {
        let own = match category {
            Category::Breaking => match own {
                Some(diff) if self.enabled && self.column_level_kind(i) => {
                    Reach::Columns(diff.existing_changed().map(|c| c.to_lowercase()).collect())
                }
                _ => Reach::All,
            },
            Category::IndirectBreaking | Category::NonBreaking => Reach::Unchanged,
            _ => {
                self.reaches.insert(i, Reach::Unchanged);
                return;
            }
        };
        self.reaches.insert(i, union(own, inherited));
    }

    /// A model added or replaced whole by this plan: anything below it may differ.
    pub fn record_all(&mut self, i: ModelId) {
        self.reaches.insert(i, Reach::All);
    }

    /// Whether a change to model `i`'s columns reaches its children column by column: not for kinds whose
    /// rows depend on the values of every column (SCD type 2 versions rows by them) or that are inlined
    /// into their children (embedded).
    fn column_level_kind(&self, i: ModelId) -> bool {
        !matches!(
            self.project.model(i).meta.kind,
            ModelKind::ScdType2ByTime { .. }
                | ModelKind::ScdType2ByColumn { .. }
                | ModelKind::Embedded
        )
    }

    fn lineage(&self) -> &PerModel<Option<QueryLineage>> {
        &self.lineage.get_or_init(|| self.project.lineage()).models
    }

    /// The columns of `child` that read the `changed` columns of `parent`, each with the upstream column
    /// (`schema.model.column`); `Err(why)` when every column may differ.
    fn reads(
        &self,
        child: ModelId,
        parent: ModelId,
        changed: &BTreeSet<String>,
    ) -> Result<Vec<(String, String)>, String> {
        let project = self.project;
        let parent_name = project.model(parent).meta.name.to_string();
        if !self.column_level_kind(child) {
            return Err("its kind versions rows by their values".into());
        }
        let model = project.model(child);
        if !model.pre_statements.is_empty() || !model.post_statements.is_empty() {
            return Err("its pre/post statements may read any column".into());
        }
        let untraceable = || format!("lake cannot trace which columns of `{parent_name}` it reads");
        let Some(lineage) = self.lineage()[child].as_ref() else {
            return Err(untraceable());
        };
        if lineage.rows_opaque || lineage.columns_opaque || lineage.columns.iter().any(|c| c.opaque)
        {
            return Err(untraceable());
        }
        if lineage.reads_star {
            return Err(format!("reads `*`, whose columns follow `{parent_name}`'s"));
        }
        let is_parent = |table: &str| project.model_id_named(table) == Some(parent);
        let mut mentioned = false;
        for source in &lineage.row_sources {
            if is_parent(&source.table) {
                mentioned = true;
                if changed.contains(&source.column.to_lowercase()) {
                    return Err(format!(
                        "selects its rows by `{parent_name}.{}`, which changed",
                        source.column
                    ));
                }
            }
        }
        let mut reads = Vec::new();
        for column in &lineage.columns {
            for (source, _) in &column.sources {
                if !is_parent(&source.table) {
                    continue;
                }
                mentioned = true;
                if changed.contains(&source.column.to_lowercase()) {
                    reads.push((
                        column.name.clone(),
                        format!("{parent_name}.{}", source.column),
                    ));
                }
            }
        }
        // The DAG says it reads the parent but its query shows no column of it (`depends_on`, a count of
        // rows): what it reads cannot be told.
        if !mentioned {
            return Err(untraceable());
        }
        Ok(reads)
    }
}

fn all_of(reason: Option<String>) -> Inherited {
    Inherited {
        reach: Reach::All,
        reads_changed: Vec::new(),
        reason,
    }
}

fn union(a: Reach, b: Reach) -> Reach {
    match (a, b) {
        (Reach::All, _) | (_, Reach::All) => Reach::All,
        (Reach::Unchanged, other) | (other, Reach::Unchanged) => other,
        (Reach::Columns(mut a), Reach::Columns(b)) => {
            a.extend(b);
            Reach::Columns(a)
        }
    }
}
