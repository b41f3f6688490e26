//! Applying a plan: storing its snapshots, building what is missing, moving the environment's views and
//! promoting, all or nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use chrono::Utc;

use super::finish::run_statements;
use super::render::{executable_query, macro_context};
use super::runner::build_all;
use super::schema_change;
use super::{ApplyReport, BuildContext, Observer, poisoned};
use crate::engine::{Engine, Session};
use crate::error::{LakeError, Result};
use crate::plan::backfill::{Window, action_for, missing_batches};
use crate::plan::{Backfill, BackfillAction, Category, Plan};
use crate::project::ModelId;
use crate::project::model::Model;
use crate::snapshot::{PhysicalTable, VirtualName};
use crate::sql::ModelName;
use crate::state::{
    EnvSnapshot, Environment, PromoteOutcome, SnapshotNode, StateStore, StoredSnapshot,
};
use crate::storage::VirtualChange;

/// Applies `plan`: stores its snapshots, builds what is missing, then points the environment at the new versions.
/// Fails without touching the environment if any build fails; a rerun reuses what was built.
pub fn apply(
    ctx: &BuildContext<'_>,
    engine: &Engine,
    plan: &Plan,
    state: &mut dyn StateStore,
    observer: &dyn Observer,
) -> Result<ApplyReport> {
    let current = state.environment(&plan.environment)?.map(|e| e.plan_id);
    if current != plan.expected_plan_id {
        return Err(stale_plan(&plan.environment));
    }
    let now = Utc::now().timestamp_millis();
    let ttl_ms = ctx.project.config.snapshot_ttl.as_millis() as i64;
    let stored: Vec<StoredSnapshot> = plan
        .new_snapshots
        .iter()
        .map(|&i| {
            let mut node = snapshot_node(
                ctx.project.model(i),
                ctx.project.analysis(i).normalized_query.as_deref(),
            );
            // A VIEW model is a DuckDB view in each machine's file: the query it is created with is kept,
            // so another machine can create it without these project files.
            if action_for(&ctx.project.model(i).meta.kind) == Some(BackfillAction::CreateView) {
                let s = &plan.snapshots[i];
                let table = PhysicalTable::of(s);
                let query = executable_query(ctx, i, &macro_context(ctx, i, &table, "evaluating"))?;
                node.view_query = Some(query);
            }
            Ok(StoredSnapshot {
                snapshot: plan.snapshots[i].clone(),
                node,
                created_ts: now,
                ttl_ms,
            })
        })
        .collect::<Result<_>>()?;
    state.push_snapshots(&stored)?;
    crate::failpoint::hit("after-snapshots-stored");

    let session = engine.session()?;
    let mut report = ApplyReport::default();
    // Tables that vanished from the engine (e.g. a deleted database file) are rebuilt: both the targets
    // this plan points names at and the parents that the models being built read.
    let existing: HashSet<PhysicalTable> =
        ctx.storage.physical_tables(&session)?.into_iter().collect();
    let scheduled: HashSet<&PhysicalTable> = plan.backfills.iter().map(|b| &b.table).collect();
    let mut backfills = plan.backfills.clone();
    backfills.extend(
        plan.virtual_changes
            .iter()
            .filter_map(|c| match c {
                VirtualChange::Point { target, .. }
                    if !existing.contains(target) && !scheduled.contains(target) =>
                {
                    Some(target)
                }
                _ => None,
            })
            .filter_map(|target| rebuild_for(ctx, target)),
    );
    let mut backfills = with_missing_parents(ctx, backfills, &existing);
    if plan.environment != crate::PROD {
        // A dev environment shows prod's in-place tables but never writes them, even when one is missing.
        backfills.retain(|b| !crate::snapshot::is_in_place(&b.version));
    }
    take_over_names(ctx, &session, plan, state, &existing)?;
    // Restated data is forgotten before it is rebuilt: if the rebuild stops halfway, a rerun redoes it.
    for b in backfills.iter().filter(|b| b.restatement) {
        let ranges = if b.batches.is_empty() {
            vec![(i64::MIN, i64::MAX)]
        } else {
            b.batches
                .iter()
                .map(|(s, e)| {
                    (
                        s.and_utc().timestamp_millis(),
                        e.and_utc().timestamp_millis(),
                    )
                })
                .collect()
        };
        for (start, end) in ranges {
            state.remove_intervals(&b.name, &b.version, start, end)?;
        }
    }
    let state = Mutex::new(state);
    report.built = build_all(ctx, engine, &backfills, &state, observer)?;
    migrate_forward_only_tables(ctx, &session, plan, &backfills, observer)?;
    drop_in_place_tables(ctx, &session, plan, &state, &existing)?;
    repoint_rebuilt_in_place(ctx, &session, plan, &backfills, &state)?;
    crate::failpoint::hit("before-virtual-layer");

    // Journal the names about to move: if the process dies before promotion, the next plan of this
    // environment sees the journal and repoints every name to what state says, so names never stay ahead.
    let touched: Vec<VirtualName> = plan
        .virtual_changes
        .iter()
        .map(|c| match c {
            VirtualChange::Point { name, .. } | VirtualChange::Drop { name } => name.clone(),
        })
        .chain(plan.names_taken_over.iter().cloned())
        .collect();
    state
        .lock()
        .map_err(|_| poisoned())?
        .begin_promotion(&plan.environment, &touched)?;
    observer.virtual_layer_started(plan.virtual_changes.len());
    // The virtual layer creates its schemas itself, in the same transaction as the views.
    ctx.storage
        .update_virtual_layer(&session, &plan.virtual_changes)?;
    run_on_virtual_update(ctx, &session, plan)?;
    observer.virtual_layer_finished();
    report.virtual_changes = plan.virtual_changes.len();

    let previous = plan.previous_environment.as_ref();
    let env = Environment {
        name: plan.environment.to_string(),
        snapshots: plan.snapshots.iter().map(EnvSnapshot::from).collect(),
        promoted: plan.promoted.clone(),
        plan_id: new_plan_id(&plan.environment),
        previous_plan_id: plan.expected_plan_id.clone(),
        created_ts: previous.map_or(now, |p| p.created_ts),
        updated_ts: now,
        expiration_ts: (plan.environment != crate::PROD)
            .then(|| now + ctx.project.config.environment_ttl.as_millis() as i64),
        suffix_target: plan.suffix_target,
    };
    let state = state.into_inner().map_err(|_| poisoned())?;
    crate::failpoint::hit("before-promote");
    match state.promote(&env, plan.expected_plan_id.as_deref())? {
        PromoteOutcome::Promoted => Ok(report),
        PromoteOutcome::Conflict { .. } => Err(stale_plan(&plan.environment)),
    }
}

/// Prod names that in-place tables are about to replace (`virtual_environment_mode` became dev_only) are
/// removed before anything is built there. They are journaled first: if the apply stops before promotion, the
/// next plan of prod repoints what state still says. A spot that already holds its in-place table (an earlier
/// apply stopped after building it) has no name left to remove.
fn take_over_names(
    ctx: &BuildContext<'_>,
    session: &Session,
    plan: &Plan,
    state: &mut dyn StateStore,
    existing: &HashSet<PhysicalTable>,
) -> Result<()> {
    let drops: Vec<VirtualChange> = plan
        .names_taken_over
        .iter()
        .filter(|name| {
            !existing.contains(&PhysicalTable {
                schema: name.schema.clone(),
                table: name.name.clone(),
            })
        })
        .map(|name| VirtualChange::Drop { name: name.clone() })
        .collect();
    if drops.is_empty() {
        return Ok(());
    }
    state.begin_promotion(&plan.environment, &plan.names_taken_over)?;
    ctx.storage.update_virtual_layer(session, &drops)
}

/// Drops prod's in-place tables whose model left prod or went back to versioned tables, once everything
/// else is built, and forgets their intervals so a later in-place table starts afresh. Only tables the storage
/// lists as in place are dropped: after an apply that stopped before promotion, the spot may already hold the
/// name that replaced the table.
fn drop_in_place_tables(
    ctx: &BuildContext<'_>,
    session: &Session,
    plan: &Plan,
    state: &Mutex<&mut dyn StateStore>,
    existing: &HashSet<PhysicalTable>,
) -> Result<()> {
    for (model, table) in &plan.in_place_dropped {
        if existing.contains(table) {
            ctx.storage.drop_physical(session, table)?;
        }
        state
            .lock()
            .map_err(|_| poisoned())?
            .remove_versions(&[(model.clone(), crate::snapshot::IN_PLACE.to_string())])?;
    }
    Ok(())
}

/// Other environments that show a prod in-place table this apply rebuilt from nothing (dropping it first took
/// their names with it) show the new table.
fn repoint_rebuilt_in_place(
    ctx: &BuildContext<'_>,
    session: &Session,
    plan: &Plan,
    built: &[Backfill],
    state: &Mutex<&mut dyn StateStore>,
) -> Result<()> {
    let rebuilt: HashSet<&PhysicalTable> = built
        .iter()
        .filter(|b| b.recreate)
        .map(|b| &b.table)
        .collect();
    if rebuilt.is_empty() {
        return Ok(());
    }
    let environments = state.lock().map_err(|_| poisoned())?.environments()?;
    let mut changes = Vec::new();
    for env in environments.iter().filter(|e| e.name != *plan.environment) {
        let promoted: HashSet<&ModelName> = env.promoted.iter().collect();
        for s in env.snapshots.iter().filter(|s| promoted.contains(&s.name)) {
            let target = s.table();
            let name = VirtualName::new(&s.name, &env.name, env.suffix_target);
            if rebuilt.contains(&target) && !name.is(&target) {
                changes.push(VirtualChange::Point { name, target });
            }
        }
    }
    ctx.storage.update_virtual_layer(session, &changes)
}

/// Forward-only changes keep their tables: their columns change when the plan is applied, as SQLMesh
/// migrates schemas, so a change the model's policies refuse stops the plan before promotion rather than the
/// next run. Versions this apply wrote were reconciled by their writes; views and SCD type 2 histories are
/// rebuilt whole.
fn migrate_forward_only_tables(
    ctx: &BuildContext<'_>,
    session: &Session,
    plan: &Plan,
    built: &[Backfill],
    observer: &dyn Observer,
) -> Result<()> {
    let forward_only: HashSet<&ModelName> = plan
        .changes
        .iter()
        .filter(|c| c.category == Some(Category::ForwardOnly))
        .map(|c| &c.name)
        .collect();
    if forward_only.is_empty() {
        return Ok(());
    }
    let built: HashSet<ModelId> = built.iter().map(|b| b.model).collect();
    for (i, snapshot) in plan.snapshots.entries() {
        let model = ctx.project.model(i);
        if !forward_only.contains(&snapshot.name)
            || built.contains(&i)
            || ctx.project.spark_gateway(i).is_some()
        {
            continue;
        }
        let Some(action) = action_for(&model.meta.kind) else {
            continue;
        };
        if action == BackfillAction::CreateView || schema_change::keeps_history(&model.meta.kind) {
            continue;
        }
        let backfill = Backfill::new(i, snapshot, action);
        let query = executable_query(
            ctx,
            i,
            &macro_context(ctx, i, &backfill.table, "evaluating"),
        )?;
        schema_change::reconcile(ctx, session, &backfill, &query, observer)?;
    }
    Ok(())
}

/// Runs the `ON_VIRTUAL_UPDATE` statements of the models whose names this plan moved, with `@this_model`
/// naming the environment's view. A failure stops the apply before promotion; the promotion journal then
/// repoints the names on the next plan, which runs the statements again.
pub(super) fn run_on_virtual_update(
    ctx: &BuildContext<'_>,
    session: &Session,
    plan: &Plan,
) -> Result<()> {
    let moved: std::collections::HashSet<&VirtualName> = plan
        .virtual_changes
        .iter()
        .filter_map(|c| match c {
            VirtualChange::Point { name, .. } => Some(name),
            VirtualChange::Drop { .. } => None,
        })
        .collect();
    for &i in &ctx.project.order {
        let model = ctx.project.model(i);
        let name = VirtualName::new(&model.meta.name, &plan.environment, plan.suffix_target);
        if model.on_virtual_update.is_empty() || !moved.contains(&name) {
            continue;
        }
        let s = &ctx.snapshots[i];
        let table = PhysicalTable::of(s);
        let mut macro_ctx = macro_context(ctx, i, &table, "promoting");
        macro_ctx.this_model = name.sql();
        run_statements(
            ctx.project,
            session,
            model,
            &model.on_virtual_update,
            &macro_ctx,
        )?;
    }
    Ok(())
}

pub(super) fn stale_plan(environment: &str) -> LakeError {
    LakeError::StateConflict {
        message: format!(
            "environment `{environment}` was changed by another plan after this one was computed"
        ),
        help: Some(format!(
            "run `lake plan {environment}` again to see the new differences"
        )),
    }
}

pub(super) fn new_plan_id(environment: &str) -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{environment}/{}/{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        std::process::id()
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..8])
}

pub(super) fn rebuild_for(ctx: &BuildContext<'_>, target: &PhysicalTable) -> Option<Backfill> {
    let (i, _) = ctx
        .snapshots
        .entries()
        .find(|(_, s)| PhysicalTable::of(s) == *target)?;
    let action = action_for(&ctx.project.model(i).meta.kind)?;
    let backfill = Backfill::new(i, &ctx.snapshots[i], action);
    if action != BackfillAction::Insert {
        return Some(backfill);
    }
    // The table is gone, so every interval is rebuilt, whatever state recorded.
    let batches =
        missing_batches(ctx.project, i, &[], ctx.execution_time, Window::default()).ok()?;
    Some(backfill.with_batches(batches))
}

/// Adds the missing upstream tables of the models to rebuild, so they read real data.
pub(super) fn with_missing_parents(
    ctx: &BuildContext<'_>,
    mut backfills: Vec<Backfill>,
    existing: &HashSet<PhysicalTable>,
) -> Vec<Backfill> {
    let mut wanted: HashSet<ModelId> = backfills.iter().map(|b| b.model).collect();
    let mut queue: Vec<ModelId> = wanted.iter().copied().collect();
    while let Some(i) = queue.pop() {
        for p in ctx.project.dag.parents(i) {
            let s = &ctx.snapshots[p];
            let table = PhysicalTable::of(s);
            if !existing.contains(&table) && wanted.insert(p) {
                if let Some(b) = rebuild_for(ctx, &table) {
                    backfills.push(b);
                }
                queue.push(p);
            }
        }
    }
    let position: HashMap<ModelId, usize> = ctx
        .project
        .order
        .iter()
        .enumerate()
        .map(|(pos, &i)| (i, pos))
        .collect();
    backfills.sort_by_key(|b| position[&b.model]);
    backfills
}

/// The model definition kept in state, so later plans can diff against it.
pub(super) fn snapshot_node(model: &Model, normalized_query: Option<&str>) -> SnapshotNode {
    SnapshotNode {
        // Serialising a plain data struct cannot fail.
        meta: serde_json::to_value(&model.meta).unwrap_or_default(),
        path: model.file.display_path.clone(),
        definition: Some(model.file.text.to_string()),
        query: normalized_query.map(String::from),
        view_query: None,
    }
}
