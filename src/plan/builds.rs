//! A plan's last phase: what each version still needs built (a first build, a restatement, or an incremental
//! model's missing intervals) and on which engine.

use std::collections::{HashMap, HashSet};

use super::backfill::{self, BuiltIntervals, Window};
use super::{Backfill, BackfillAction, Fill, FillRequest, PlanOptions};
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::project::Project;
use crate::project::model::ModelKind;
use crate::project::{ModelId, PerModel};
use crate::snapshot::{Snapshot, is_in_place};
use crate::state::StateStore;

/// The backfills of a plan of `snapshots`, in topological order (parents first). `rebuilt_in_place` are prod's in-place
/// tables rebuilt whole (`true`: dropped first).
pub(super) fn backfills(
    project: &Project,
    state: &dyn StateStore,
    snapshots: &PerModel<Snapshot>,
    in_prod: bool,
    rebuilt_in_place: &HashMap<ModelId, bool>,
    options: &PlanOptions,
) -> Result<Vec<Backfill>> {
    let versions: Vec<_> = snapshots
        .iter()
        .map(|s| (s.name.clone(), s.version.clone()))
        .collect();
    let built = BuiltIntervals::load(state, &versions)?;
    if in_prod && options.window != Window::default() && options.restate.is_empty() {
        return Err(LakeError::Usage(
            "--start and --end limit dev plans only".into(),
            Some(
                "prod always holds every interval; to rebuild a range of prod, use --restate-model with --start/--end"
                    .into(),
            ),
        ));
    }
    let restated = restated_models(project, &options.restate)?;
    let mut backfills = Vec::new();
    let mut unsupported = Vec::new();
    for &i in &project.order {
        let s = &snapshots[i];
        if !in_prod && is_in_place(&s.version) {
            // Prod's in-place table is written by prod's plans and runs only, never from a dev environment.
            continue;
        }
        let kind = &project.model(i).meta.kind;
        let Some(action) = backfill::action_for(kind) else {
            if !matches!(kind, ModelKind::External | ModelKind::Embedded) {
                unsupported.push(format!("{} ({})", s.name, kind.name()));
            }
            continue;
        };
        let rebuilt = rebuilt_in_place.get(&i).copied();
        let restating = restated.contains(&i) || rebuilt.is_some();
        // A restated model is rebuilt as if nothing had been recorded.
        let recorded: &[Range] = if restating {
            &[]
        } else {
            built.of(&s.name, &s.version)
        };
        let window = if in_prod && !restating {
            Window::default()
        } else {
            at_least_intervals(project, i, options)
        };
        let batches = if action == BackfillAction::Insert {
            let batches =
                backfill::missing_batches(project, i, recorded, options.execution_time, window)?;
            if batches.is_empty() {
                continue;
            }
            batches
        } else if recorded.is_empty() {
            Vec::new()
        } else {
            continue;
        };
        let mut backfill = Backfill::new(i, s, action)
            .with_batches(batches)
            .restating(restating);
        backfill.recreate = rebuilt == Some(true);
        backfill.engine = project.spark_gateway(i).map(|c| c.gateway.clone());
        backfills.push(backfill);
    }
    if !unsupported.is_empty() {
        return Err(LakeError::unsupported(
            format!("building these model kinds: {}", unsupported.join(", ")),
            "lake builds VIEW, FULL, SEED, EMBEDDED, the INCREMENTAL_* kinds and SCD_TYPE_2_BY_TIME / BY_COLUMN today; MANAGED and CUSTOM need engine or Python support lake does not have",
        ));
    }
    Ok(backfills)
}

/// The models `--restate-model` names and everything downstream of them that allows restatement; a named
/// model that disables restatement is an error.
fn restated_models(project: &Project, names: &[String]) -> Result<HashSet<ModelId>> {
    let mut restated = HashSet::new();
    for name in names {
        let i = project.find_model(name)?;
        let model = &project.model(i).meta;
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
                .filter(|&d| !project.model(d).meta.kind.restatement_disabled()),
        );
    }
    Ok(restated)
}

/// Marks the builds that write no rows, as `request` asks. A view holds no data, so it is always created.
pub(super) fn choose_fill(
    project: &Project,
    in_prod: bool,
    request: &FillRequest,
    backfills: &mut [Backfill],
) -> Result<()> {
    let with_rows: Option<HashSet<ModelId>> = match request {
        FillRequest::All => return Ok(()),
        FillRequest::Skip | FillRequest::Empty => None,
        FillRequest::Only(_) if in_prod => {
            return Err(LakeError::Usage(
                "--backfill-model limits dev plans only".into(),
                Some(
                    "prod holds every model's data; plan a dev environment to backfill some models"
                        .into(),
                ),
            ));
        }
        FillRequest::Only(selectors) => {
            let selected = project.select(selectors)?;
            let mut with_upstream: HashSet<ModelId> = selected.iter().copied().collect();
            for &id in &selected {
                with_upstream.extend(project.dag.upstream(id));
            }
            Some(with_upstream)
        }
    };
    let record_intervals = *request == FillRequest::Empty;
    for backfill in backfills {
        let keeps_rows = backfill.action == BackfillAction::CreateView
            || with_rows
                .as_ref()
                .is_some_and(|m| m.contains(&backfill.model));
        if !keeps_rows {
            backfill.fill = Fill::Empty { record_intervals };
        }
    }
    Ok(())
}

/// The plan's window for model `i`, its start moved back as far as `--min-intervals` of the model's
/// intervals need (the plan's `--start` may leave a weekly model none).
fn at_least_intervals(project: &Project, i: ModelId, options: &PlanOptions) -> Window {
    let mut window = options.window;
    if let (Some(start), true) = (window.start, options.min_intervals > 0) {
        let unit = backfill::interval_unit(project.model(i), options.execution_time);
        let end = window
            .end
            .unwrap_or(options.execution_time)
            .min(options.execution_time);
        window.start = Some(start.min(unit.back(end, options.min_intervals)));
    }
    window
}

/// `--no-gaps`: every interval the replaced version of a model has, its new version has too once the plan
/// is applied (what it already holds and what the plan builds); otherwise the plan is refused, naming them.
pub(super) fn refuse_gaps(
    state: &dyn StateStore,
    backfills: &[Backfill],
    replaced: &HashMap<&crate::sql::ModelName, &crate::state::EnvSnapshot>,
) -> Result<()> {
    let pairs: Vec<_> = backfills
        .iter()
        .filter(|b| b.action == BackfillAction::Insert)
        .filter_map(|b| replaced.get(&b.name).map(|old| (b, *old)))
        .filter(|(b, old)| old.version != b.version)
        .collect();
    let versions: Vec<_> = pairs
        .iter()
        .flat_map(|(b, old)| {
            [
                (b.name.clone(), b.version.clone()),
                (old.name.clone(), old.version.clone()),
            ]
        })
        .collect();
    let built = BuiltIntervals::load(state, &versions)?;
    for (backfill, old) in pairs {
        let mut covered: Vec<Range> = built.of(&backfill.name, &backfill.version).to_vec();
        covered.extend(backfill.batches.iter().copied());
        let gaps = crate::intervals::missing(built.of(&old.name, &old.version), &merged(covered));
        if let Some(&first) = gaps.first() {
            return Err(LakeError::Usage(
                format!(
                    "--no-gaps: the new version of {} would lack {} the version it replaces has, from {}",
                    backfill.name,
                    if gaps.len() == 1 { "a range" } else { "ranges" },
                    crate::intervals::describe(first)
                ),
                Some(
                    "widen --start/--end (or leave them out) so the new version covers them".into(),
                ),
            ));
        }
    }
    Ok(())
}

/// Ranges with the touching and overlapping ones joined, in order.
fn merged(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort();
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}
