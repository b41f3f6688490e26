//! Applying plans: builds model versions in DAG order (independent ones concurrently), records them, promotes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};

use crate::cron::Schedule;
use crate::engine::{Engine, Session};
use crate::error::{LakeError, Result};
use crate::intervals::{self, IntervalUnit, Range};
use crate::macros::{self, MacroContext};
use crate::model::{Model, ModelKind, ModelName, quote_ident};
use crate::plan::{Backfill, BackfillAction, Plan};
use crate::project::{Project, RefTarget};
use crate::scd;
use crate::snapshot::{PhysicalTable, Snapshot, VirtualName};
use crate::sql;
use crate::state::{
    EnvSnapshot, Environment, Interval, PromoteOutcome, StateStore, StoredSnapshot,
};
use crate::storage::{Storage, VirtualChange, WriteStats};

/// Progress callbacks, called from worker threads.
pub trait Observer: Sync {
    fn backfill_started(&self, _total: usize) {}
    fn model_finished(
        &self,
        _backfill: &Backfill,
        _elapsed: Duration,
        _outcome: std::result::Result<WriteStats, &LakeError>,
    ) {
    }
    fn model_skipped(&self, _backfill: &Backfill, _failed_parent: &ModelName) {}
    /// A non-blocking audit found bad rows.
    fn audit_warning(&self, _backfill: &Backfill, _audit: &str, _rows: u64) {}
    fn virtual_layer_started(&self, _changes: usize) {}
    fn virtual_layer_finished(&self) {}
}

/// An observer that reports nothing.
pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub built: Vec<ModelName>,
    pub virtual_changes: usize,
}

/// Everything a build needs to read, shared by the worker threads.
pub struct BuildContext<'a> {
    pub project: &'a Project,
    pub snapshots: &'a [Snapshot],
    pub storage: &'a dyn Storage,
    pub execution_time: NaiveDateTime,
}

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
            let mut node = node_json(
                &ctx.project.models[i],
                ctx.project.analyses[i].normalized_query.as_deref(),
            );
            // A VIEW model is a DuckDB view in each machine's file: the query it is created with is kept,
            // so another machine can create it without these project files.
            if action_for(&ctx.project.models[i].meta.kind) == Some(BackfillAction::CreateView) {
                let s = &plan.snapshots[i];
                let table = PhysicalTable::for_version(&s.name, &s.version);
                let query = executable_query(ctx, i, &macro_context(ctx, i, &table, "evaluating"))?;
                node[VIEW_QUERY_KEY] = serde_json::Value::String(query);
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
    let backfills = with_missing_parents(ctx, backfills, &existing);
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
    crate::failpoint::hit("before-virtual-layer");

    // Journal the names about to move: if the process dies before promotion, the next plan of this
    // environment sees the journal and repoints every name to what state says, so names never stay ahead.
    let touched: Vec<VirtualName> = plan
        .virtual_changes
        .iter()
        .map(|c| match c {
            VirtualChange::Point { name, .. } | VirtualChange::Drop { name } => name.clone(),
        })
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
        name: plan.environment.clone(),
        snapshots: plan.snapshots.iter().map(EnvSnapshot::from).collect(),
        promoted: plan.promoted.clone(),
        plan_id: new_plan_id(&plan.environment),
        previous_plan_id: plan.expected_plan_id.clone(),
        created_ts: previous.map_or(now, |p| p.created_ts),
        updated_ts: now,
        expiration_ts: (plan.environment != crate::PROD)
            .then(|| now + ctx.project.config.environment_ttl.as_millis() as i64),
    };
    let state = state.into_inner().map_err(|_| poisoned())?;
    crate::failpoint::hit("before-promote");
    match state.promote(&env, plan.expected_plan_id.as_deref())? {
        PromoteOutcome::Promoted => Ok(report),
        PromoteOutcome::Conflict { .. } => Err(stale_plan(&plan.environment)),
    }
}

/// Runs the `ON_VIRTUAL_UPDATE` statements of the models whose names this plan moved, with `@this_model`
/// naming the environment's view. A failure stops the apply before promotion; the promotion journal then
/// repoints the names on the next plan, which runs the statements again.
fn run_on_virtual_update(ctx: &BuildContext<'_>, session: &Session, plan: &Plan) -> Result<()> {
    let moved: std::collections::HashSet<&VirtualName> = plan
        .virtual_changes
        .iter()
        .filter_map(|c| match c {
            VirtualChange::Point { name, .. } => Some(name),
            VirtualChange::Drop { .. } => None,
        })
        .collect();
    for &i in &ctx.project.order {
        let model = &ctx.project.models[i];
        let name = VirtualName::new(&model.meta.name, &plan.environment);
        if model.on_virtual_update.is_empty() || !moved.contains(&name) {
            continue;
        }
        let s = &ctx.snapshots[i];
        let table = PhysicalTable::for_version(&s.name, &s.version);
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

fn stale_plan(environment: &str) -> LakeError {
    LakeError::StateConflict {
        message: format!(
            "environment `{environment}` was changed by another plan after this one was computed"
        ),
        help: Some(format!(
            "run `lake plan {environment}` again to see the new differences"
        )),
    }
}

fn poisoned() -> LakeError {
    LakeError::StateConflict {
        message: "a worker thread panicked while holding the state".into(),
        help: Some("this is a bug in lake; please report it with the command you ran".into()),
    }
}

fn new_plan_id(environment: &str) -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{environment}/{}/{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        std::process::id()
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..8])
}

fn rebuild_for(ctx: &BuildContext<'_>, target: &PhysicalTable) -> Option<Backfill> {
    let i = ctx
        .snapshots
        .iter()
        .position(|s| PhysicalTable::for_version(&s.name, &s.version) == *target)?;
    let action = action_for(&ctx.project.models[i].meta.kind)?;
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
fn with_missing_parents(
    ctx: &BuildContext<'_>,
    mut backfills: Vec<Backfill>,
    existing: &HashSet<PhysicalTable>,
) -> Vec<Backfill> {
    let mut wanted: HashSet<usize> = backfills.iter().map(|b| b.model).collect();
    let mut queue: Vec<usize> = wanted.iter().copied().collect();
    while let Some(i) = queue.pop() {
        for p in ctx.project.dag.parents(i) {
            let s = &ctx.snapshots[p];
            let table = PhysicalTable::for_version(&s.name, &s.version);
            if !existing.contains(&table) && wanted.insert(p) {
                if let Some(b) = rebuild_for(ctx, &table) {
                    backfills.push(b);
                }
                queue.push(p);
            }
        }
    }
    let position: HashMap<usize, usize> = ctx
        .project
        .order
        .iter()
        .enumerate()
        .map(|(pos, &i)| (i, pos))
        .collect();
    backfills.sort_by_key(|b| position[&b.model]);
    backfills
}

pub fn action_for(kind: &ModelKind) -> Option<BackfillAction> {
    match kind {
        ModelKind::Full | ModelKind::View { materialized: true } => {
            Some(BackfillAction::FullRefresh)
        }
        ModelKind::View {
            materialized: false,
        } => Some(BackfillAction::CreateView),
        ModelKind::Seed { .. } => Some(BackfillAction::InsertSeed),
        ModelKind::IncrementalByTimeRange { .. }
        | ModelKind::IncrementalByUniqueKey { .. }
        | ModelKind::IncrementalByPartition { .. }
        | ModelKind::IncrementalUnmanaged { .. }
        | ModelKind::ScdType2ByTime { .. }
        | ModelKind::ScdType2ByColumn { .. } => Some(BackfillAction::Insert),
        _ => None,
    }
}

/// Limits on the intervals to build (`--start` / `--end`); `end` is exclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
}

/// The interval unit of a model: `interval_unit`, or what its cron implies.
pub fn interval_unit(model: &Model, around: NaiveDateTime) -> Result<IntervalUnit> {
    match &model.meta.interval_unit {
        Some(unit) => IntervalUnit::parse(unit),
        None => Ok(IntervalUnit::from_cron(
            &Schedule::parse(&model.meta.cron)?,
            around,
        )),
    }
}

/// The batches an incremental model still needs: its complete intervals from `start` up to `now` (and not
/// past `end`) that `done` does not cover, grouped by the kind's `batch_size`.
pub fn missing_batches(
    project: &Project,
    model: usize,
    done: &[Range],
    now: NaiveDateTime,
    window: Window,
) -> Result<Vec<Range>> {
    let m = &project.models[model];
    let unit = interval_unit(m, now)?;
    let date = |text: &Option<String>, what: &str| -> Result<Option<NaiveDateTime>> {
        match text.as_deref() {
            None => Ok(None),
            Some(t) => macros::parse_datetime(t)
                .map(Some)
                .ok_or_else(|| LakeError::Config {
                    message: format!("`{}` has an invalid {what} `{t}`", m.meta.name),
                    help: Some("write dates as YYYY-MM-DD or 'YYYY-MM-DD HH:MM:SS'".into()),
                }),
        }
    };
    // Without a start, SQLMesh builds only the latest complete interval.
    let start = match date(&m.meta.start, "start")? {
        Some(s) => s,
        None => {
            let current = unit.floor(now);
            let mut previous = current;
            let mut t = unit.floor(current - chrono::Duration::days(366));
            while t < current {
                previous = t;
                t = unit.next(t);
            }
            previous
        }
    };
    let end = date(&m.meta.end, "end")?;
    let start = window.start.map_or(start, |w| w.max(start));
    let end = match (end, window.end) {
        (Some(e), Some(w)) => Some(e.min(w)),
        (e, w) => e.or(w),
    };
    // Fast path for a first build (the common case in a big first plan): with nothing done and no batch
    // size, the missing intervals are one contiguous range; no need to enumerate every day.
    if done.is_empty()
        && m.meta.kind.batch_size().is_none()
        && end.is_none_or(|e| unit.floor(e) == e)
    {
        let first = unit.floor(start);
        let limit = end.map_or(unit.floor(now), |e| e.min(unit.floor(now)));
        return Ok(if first < limit {
            vec![(first, limit)]
        } else {
            Vec::new()
        });
    }
    let all = intervals::complete_intervals(unit, start, end, now);
    let gaps = intervals::missing(&all, done);
    if gaps.is_empty() {
        return Ok(Vec::new());
    }
    let gaps = intervals::with_lookback(&all, &gaps, m.meta.kind.lookback());
    Ok(intervals::batches(&gaps, m.meta.kind.batch_size()))
}

/// The model definition kept in state, so later plans can diff against it.
/// Where a VIEW model's snapshot keeps the query its DuckDB view is created with.
pub const VIEW_QUERY_KEY: &str = "view_query";

fn node_json(model: &Model, normalized_query: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "meta": model.meta,
        "path": model.file.display_path,
        "definition": &*model.file.text,
        "query": normalized_query,
    })
}

struct Queue {
    ready: VecDeque<usize>,
    waiting_on: Vec<usize>,
    finished: usize,
    failures: Vec<LakeError>,
    built: Vec<ModelName>,
    blocked: HashSet<usize>,
}

/// Builds `backfills` (in topological order) with up to `concurrent_tasks` at once. A failed model's
/// downstream is skipped; independent models still build. Each success is recorded in state at once.
pub fn build_all(
    ctx: &BuildContext<'_>,
    engine: &Engine,
    backfills: &[Backfill],
    state: &Mutex<&mut dyn StateStore>,
    observer: &dyn Observer,
) -> Result<Vec<ModelName>> {
    if backfills.is_empty() {
        return Ok(Vec::new());
    }
    let session = engine.session()?;
    let mut schemas: Vec<&str> = backfills.iter().map(|b| b.table.schema.as_str()).collect();
    schemas.sort_unstable();
    schemas.dedup();
    for schema in schemas {
        ctx.storage.ensure_schema(&session, schema)?;
    }
    observer.backfill_started(backfills.len());
    let slot: HashMap<usize, usize> = backfills
        .iter()
        .enumerate()
        .map(|(k, b)| (b.model, k))
        .collect();
    // A model waits for the parents being built in this run, also those it reads through EMBEDDED models
    // (inlined into its query, never built themselves).
    let parents_in_run: Vec<Vec<usize>> = backfills
        .iter()
        .map(|b| {
            let mut found = Vec::new();
            let mut seen = HashSet::new();
            let mut stack: Vec<usize> = ctx.project.dag.parents(b.model).collect();
            while let Some(p) = stack.pop() {
                if !seen.insert(p) {
                    continue;
                }
                if let Some(&k) = slot.get(&p) {
                    found.push(k);
                } else if matches!(ctx.project.models[p].meta.kind, ModelKind::Embedded) {
                    stack.extend(ctx.project.dag.parents(p));
                }
            }
            found
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); backfills.len()];
    for (k, parents) in parents_in_run.iter().enumerate() {
        for &p in parents {
            children[p].push(k);
        }
    }
    let waiting_on: Vec<usize> = parents_in_run.iter().map(Vec::len).collect();
    let queue = Mutex::new(Queue {
        ready: (0..backfills.len())
            .filter(|&k| waiting_on[k] == 0)
            .collect(),
        waiting_on,
        finished: 0,
        failures: Vec::new(),
        built: Vec::new(),
        blocked: HashSet::new(),
    });
    let wake = Condvar::new();
    // DuckDB connections are not shared between threads: each worker gets its own session.
    let workers = engine.concurrent_tasks.clamp(1, backfills.len());
    let sessions = (0..workers)
        .map(|_| engine.session())
        .collect::<Result<Vec<_>>>()?;
    std::thread::scope(|scope| {
        for session in sessions {
            let (children, queue, wake) = (&children, &queue, &wake);
            scope.spawn(move || {
                worker(
                    ctx, session, backfills, children, queue, wake, state, observer,
                )
            });
        }
    });
    let queue = queue.into_inner().map_err(|_| poisoned())?;
    if queue.failures.is_empty() {
        Ok(queue.built)
    } else {
        Err(LakeError::ApplyFailed {
            environment: String::new(),
            failed: queue.failures.len(),
            total: backfills.len(),
            errors: queue.failures,
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    ctx: &BuildContext<'_>,
    session: Session,
    backfills: &[Backfill],
    children: &[Vec<usize>],
    queue: &Mutex<Queue>,
    wake: &Condvar,
    state: &Mutex<&mut dyn StateStore>,
    observer: &dyn Observer,
) {
    loop {
        let next = {
            let Ok(mut q) = queue.lock() else { return };
            loop {
                if let Some(k) = q.ready.pop_front() {
                    break Some(k);
                }
                if q.finished == backfills.len() {
                    break None;
                }
                q = match wake.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        let Some(k) = next else {
            wake.notify_all();
            return;
        };
        let backfill = &backfills[k];
        let started = Instant::now();
        let record = |interval: Interval| -> Result<()> {
            crate::failpoint::hit("before-interval-recorded");
            let mut guard = state.lock().map_err(|_| poisoned())?;
            guard.add_interval(&interval)?;
            crate::failpoint::hit("after-interval-recorded");
            Ok(())
        };
        let outcome = build_one(ctx, &session, backfill, &record, observer);
        observer.model_finished(backfill, started.elapsed(), outcome.as_ref().copied());
        let Ok(mut q) = queue.lock() else { return };
        q.finished += 1;
        match outcome {
            Ok(_) => {
                q.built.push(backfill.name.clone());
                for &c in &children[k] {
                    q.waiting_on[c] -= 1;
                    if q.waiting_on[c] == 0 && !q.blocked.contains(&c) {
                        q.ready.push_back(c);
                    }
                }
            }
            Err(e) => {
                q.failures.push(match e {
                    // Already names the model, and has its own help.
                    LakeError::AuditFailed { .. } => e,
                    _ => LakeError::Execution {
                        model: backfill.name.to_string(),
                        message: crate::error::error_chain(&e),
                    },
                });
                // Everything downstream of a failure is skipped, and counted as finished.
                let mut stack = children[k].clone();
                while let Some(c) = stack.pop() {
                    if q.blocked.insert(c) {
                        q.finished += 1;
                        observer.model_skipped(&backfills[c], &backfill.name);
                        stack.extend(children[c].iter().copied());
                    }
                }
            }
        }
        drop(q);
        wake.notify_all();
    }
}

fn built_interval(
    ctx: &BuildContext<'_>,
    backfill: &Backfill,
    write_id: Option<String>,
) -> Interval {
    let model = &ctx.project.models[backfill.model];
    let start = model
        .meta
        .start
        .as_deref()
        .and_then(macros::parse_datetime)
        .map_or(0, |t| t.and_utc().timestamp_millis());
    let end = ctx.execution_time.and_utc().timestamp_millis();
    Interval {
        name: backfill.name.clone(),
        version: backfill.version.clone(),
        start_ts: start.min(end),
        end_ts: end,
        created_ts: Utc::now().timestamp_millis(),
        write_id,
    }
}

/// The macro context for building one model version.
pub fn macro_context(
    ctx: &BuildContext<'_>,
    model: usize,
    table: &PhysicalTable,
    stage: &'static str,
) -> MacroContext {
    let project = ctx.project;
    let mut m = MacroContext::for_loading(&project.config.gateway, &project.config.variables);
    if let Some(start) = project.models[model]
        .meta
        .start
        .as_deref()
        .and_then(macros::parse_datetime)
    {
        m.start = start;
    }
    m.end = ctx.execution_time;
    m.execution_time = ctx.execution_time;
    m.this_model = table.sql();
    m.catalog = project.default_catalog.clone();
    m.runtime_stage = stage;
    // The model's `@DEF`s; one that fails is reported, located, when the query is rendered.
    project.macro_scope(model, &m).unwrap_or(m)
}

/// The model's query with macros rendered and every model reference pointing at its physical table.
pub fn executable_query(
    ctx: &BuildContext<'_>,
    model: usize,
    macro_ctx: &MacroContext,
) -> Result<String> {
    let m = &ctx.project.models[model];
    if let ModelKind::Seed { .. } = m.meta.kind {
        return seed_query(m);
    }
    let Some(rendered) = ctx.project.render_query(model, macro_ctx)? else {
        return Err(LakeError::Execution {
            model: m.meta.name.to_string(),
            message: "the model has no query".into(),
        });
    };
    let edits = rendered
        .refs
        .iter()
        .filter_map(|(r, target)| match target {
            RefTarget::Model(p)
                if matches!(ctx.project.models[*p].meta.kind, ModelKind::Embedded) =>
            {
                // EMBEDDED models are inlined as a subquery, rendered in the same context.
                let inlined = match executable_query(ctx, *p, macro_ctx) {
                    Ok(sql) => sql,
                    Err(e) => return Some(Err(e)),
                };
                let text = if r.has_alias {
                    format!("({inlined})")
                } else {
                    let alias = r.parts.last().map(|p| p.value.as_str()).unwrap_or_default();
                    format!("({inlined}) AS {}", quote_ident(alias))
                };
                Some(Ok((r.offset, r.len, text)))
            }
            RefTarget::Model(p) => {
                let s = &ctx.snapshots[*p];
                let physical = PhysicalTable::for_version(&s.name, &s.version).sql();
                // Keep the reference's own name as alias so `orders.id` still resolves.
                let text = if r.has_alias {
                    physical
                } else {
                    let alias = r.parts.last().map(|p| p.value.as_str()).unwrap_or_default();
                    format!("{physical} AS {}", quote_ident(alias))
                };
                Some(Ok((r.offset, r.len, text)))
            }
            _ => None,
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(sql::replace_spans(&rendered.sql, edits))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// DuckDB's CSV reader over a SEED model's file, with the model's declared column types.
fn seed_query(model: &Model) -> Result<String> {
    let ModelKind::Seed { csv_settings, .. } = &model.meta.kind else {
        return Err(LakeError::Execution {
            model: model.meta.name.to_string(),
            message: "not a SEED model".into(),
        });
    };
    let path = model
        .seed_path
        .as_ref()
        .ok_or_else(|| LakeError::Execution {
            model: model.meta.name.to_string(),
            message: "the SEED model has no path".into(),
        })?;
    let mut options = vec!["header = true".to_string()];
    for (key, value) in csv_settings {
        let option = match key.as_str() {
            "delimiter" | "sep" => "delim",
            "quotechar" => "quote",
            "escapechar" => "escape",
            "header" => "header",
            "encoding" => "encoding",
            "na_values" | "nullstr" => "nullstr",
            "skip_rows" | "skiprows" => "skip",
            other => {
                return Err(LakeError::unsupported(
                    format!("csv_settings `{other}` of SEED model {}", model.meta.name),
                    "lake supports delimiter, quotechar, escapechar, header, encoding, na_values and skiprows",
                ));
            }
        };
        let rendered = if value.chars().all(|c| c.is_ascii_digit())
            || ["true", "false"].contains(&value.to_ascii_lowercase().as_str())
        {
            value.clone()
        } else {
            literal(value)
        };
        options.retain(|o| !o.starts_with(&format!("{option} =")));
        options.push(format!("{option} = {rendered}"));
    }
    let columns = &model.meta.columns;
    if columns.is_empty() {
        return Ok(format!(
            "SELECT * FROM read_csv({}, {})",
            literal(&path.to_string_lossy()),
            options.join(", ")
        ));
    }
    let types = columns
        .iter()
        .map(|c| format!("{}: {}", literal(&c.name), literal(&c.data_type)))
        .collect::<Vec<_>>()
        .join(", ");
    options.push(format!("types = {{{types}}}"));
    let select = columns
        .iter()
        .map(|c| {
            format!(
                "CAST({} AS {}) AS {}",
                quote_ident(&c.name),
                c.data_type,
                quote_ident(&c.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "SELECT {select} FROM read_csv({}, {})",
        literal(&path.to_string_lossy()),
        options.join(", ")
    ))
}

/// Builds one model version: pre-statements, the write, post-statements; for incremental kinds, once per
/// batch, each recorded in state by `record` as soon as it is written (a rerun resumes after the last one).
fn build_one(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    record: &dyn Fn(Interval) -> Result<()>,
    observer: &dyn Observer,
) -> Result<WriteStats> {
    let model = &ctx.project.models[backfill.model];
    if backfill.batches.is_empty() {
        let macro_ctx = macro_context(ctx, backfill.model, &backfill.table, "evaluating");
        run_statements(
            ctx.project,
            session,
            model,
            &model.pre_statements,
            &macro_ctx,
        )?;
        let query = executable_query(ctx, backfill.model, &macro_ctx)?;
        let stats = match backfill.action {
            BackfillAction::CreateView => {
                ctx.storage.create_view(session, &backfill.table, &query)?;
                WriteStats::default()
            }
            BackfillAction::FullRefresh | BackfillAction::InsertSeed | BackfillAction::Insert => {
                ctx.storage.replace_all(session, &backfill.table, &query)?
            }
        };
        run_statements(
            ctx.project,
            session,
            model,
            &model.post_statements,
            &macro_ctx,
        )?;
        let audited = audited_relation(model, &backfill.table, None);
        let audits_passed = run_audits(ctx, session, backfill, &macro_ctx, &audited, observer)?;
        record(built_interval(ctx, backfill, stats.write_id()))?;
        return Ok(WriteStats {
            audits_passed,
            ..stats
        });
    }
    let mut total = WriteStats {
        rows: Some(0),
        ..WriteStats::default()
    };
    for &(start, end) in &backfill.batches {
        let mut macro_ctx = macro_context(ctx, backfill.model, &backfill.table, "evaluating");
        macro_ctx.start = start;
        macro_ctx.end = end;
        run_statements(
            ctx.project,
            session,
            model,
            &model.pre_statements,
            &macro_ctx,
        )?;
        let query = executable_query(ctx, backfill.model, &macro_ctx)?;
        let appends = matches!(
            model.meta.kind,
            ModelKind::IncrementalUnmanaged {
                insert_overwrite: false,
                ..
            }
        );
        let audit_before_write = appends && !ctx.project.audits[backfill.model].is_empty();
        let stats = if audit_before_write {
            // An append cannot be taken back, and a rerun of a missing interval appends again: the rows
            // are staged and audited together with the table's before anything is appended.
            total.audits_passed +=
                stage_and_audit_append(ctx, session, backfill, &query, &macro_ctx, observer)?;
            let stats = write_batch(
                ctx,
                session,
                backfill,
                &format!("SELECT * FROM {PENDING_APPEND}"),
                (start, end),
            )?;
            session.execute(&format!("DROP TABLE {PENDING_APPEND}"), || {
                "dropping the staged rows".into()
            })?;
            stats
        } else {
            write_batch(ctx, session, backfill, &query, (start, end))?
        };
        run_statements(
            ctx.project,
            session,
            model,
            &model.post_statements,
            &macro_ctx,
        )?;
        if !audit_before_write {
            // Audits run before the interval is recorded: a blocking failure leaves it missing, so it is
            // rebuilt (and audited again) by the next plan or run.
            let audited = audited_relation(model, &backfill.table, Some((start, end)));
            total.audits_passed +=
                run_audits(ctx, session, backfill, &macro_ctx, &audited, observer)?;
        }
        total.rows = total.rows.zip(stats.rows).map(|(a, b)| a + b);
        total.snapshot_id = stats.snapshot_id.or(total.snapshot_id);
        record(Interval {
            name: backfill.name.clone(),
            version: backfill.version.clone(),
            start_ts: start.and_utc().timestamp_millis(),
            end_ts: end.and_utc().timestamp_millis(),
            created_ts: Utc::now().timestamp_millis(),
            write_id: stats.write_id(),
        })?;
    }
    Ok(total)
}

/// Model references in audits (`relationship(to := …)`) name the versions this build reads.
struct BuildResolver<'a, 'b>(&'a BuildContext<'b>);

impl crate::audit::ModelResolver for BuildResolver<'_, '_> {
    fn table_of(&self, model: &str) -> Option<String> {
        let name = ModelName::parse(model)?;
        let i = *self.0.project.index.get(&name)?;
        let s = &self.0.snapshots[i];
        Some(PhysicalTable::for_version(&s.name, &s.version).sql())
    }
}

/// Temporary table holding the rows of an append until its audits pass.
const PENDING_APPEND: &str = "_lake_pending_append";

/// Stages the rows an append would add in `PENDING_APPEND` and runs the model's audits on the table as it
/// would be after the append; returns how many passed.
fn stage_and_audit_append(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    macro_ctx: &MacroContext,
    observer: &dyn Observer,
) -> Result<usize> {
    session.execute(
        &format!("CREATE OR REPLACE TEMP TABLE {PENDING_APPEND} AS {query}"),
        || format!("staging the rows to append to {}", backfill.name),
    )?;
    // The first append creates the table.
    let exists = session.query_strings(
        &format!(
            "SELECT count(*)::VARCHAR FROM information_schema.tables WHERE table_schema = {} AND table_name = {}",
            crate::sql::quote_literal(&backfill.table.schema),
            crate::sql::quote_literal(&backfill.table.table)
        ),
        || format!("looking for {}", backfill.table),
    )? != ["0"];
    let pending = if exists {
        format!(
            "(SELECT * FROM {} UNION ALL BY NAME SELECT * FROM {PENDING_APPEND}) AS this_model",
            backfill.table.sql()
        )
    } else {
        format!("{PENDING_APPEND} AS this_model")
    };
    run_audits(ctx, session, backfill, macro_ctx, &pending, observer)
}

/// What a model's audits read after a write: the table, or for a time-range batch that batch's rows.
fn audited_relation(model: &Model, table: &PhysicalTable, batch: Option<Range>) -> String {
    match (&model.meta.kind, batch) {
        (ModelKind::IncrementalByTimeRange { time_column, .. }, Some((start, end))) => format!(
            "(SELECT * FROM {} WHERE {}) AS this_model",
            table.sql(),
            time_range_predicate(time_column, start, end)
        ),
        _ => table.sql(),
    }
}

/// Runs the model's audits on `this_model` (see `audited_relation`). A blocking audit that finds bad rows
/// fails the model; a non-blocking one is reported. Returns how many passed.
fn run_audits(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    macro_ctx: &MacroContext,
    this_model: &str,
    observer: &dyn Observer,
) -> Result<usize> {
    let audits = &ctx.project.audits[backfill.model];
    if audits.is_empty() {
        return Ok(0);
    }
    let model = &ctx.project.models[backfill.model];
    let mut passed = 0;
    for audit in audits {
        let (query, rows) =
            audit_rows(ctx, session, audit, this_model, macro_ctx, &model.meta.name)?;
        if rows == 0 {
            passed += 1;
        } else if audit.blocking {
            return Err(LakeError::AuditFailed {
                model: model.meta.name.to_string(),
                audit: audit.name.clone(),
                rows,
                query,
            });
        } else {
            observer.audit_warning(backfill, &audit.name, rows);
        }
    }
    Ok(passed)
}

/// An audit's query and how many bad rows it finds.
pub fn audit_rows(
    ctx: &BuildContext<'_>,
    session: &Session,
    audit: &crate::audit::ModelAudit,
    this_model: &str,
    macro_ctx: &MacroContext,
    model: &ModelName,
) -> Result<(String, u64)> {
    let query = crate::audit::render(audit, this_model, macro_ctx, &BuildResolver(ctx)).map_err(
        |message| LakeError::Execution {
            model: model.to_string(),
            message: format!("audit `{}`: {message}", audit.name),
        },
    )?;
    let count = session.query_strings(
        &format!("SELECT count(*)::VARCHAR FROM ({query}) AS audit_rows"),
        || format!("running audit `{}` of {model}", audit.name),
    )?;
    let rows = count.first().and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((query, rows))
}

/// One batch of an incremental model, written the way its kind says.
fn write_batch(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    (start, end): Range,
) -> Result<WriteStats> {
    let model = &ctx.project.models[backfill.model];
    let table = &backfill.table;
    match &model.meta.kind {
        ModelKind::IncrementalByTimeRange { time_column, .. } => {
            let in_range = time_range_predicate(time_column, start, end);
            // As SQLMesh does: rows the query returns outside the batch are not loaded.
            let filtered = format!("SELECT * FROM ({query}) AS lake_batch WHERE {in_range}");
            ctx.storage
                .replace_time_range(session, table, &filtered, &in_range)
        }
        ModelKind::IncrementalByUniqueKey {
            unique_key,
            when_matched,
            ..
        } => {
            if when_matched.is_some() {
                return Err(LakeError::unsupported(
                    format!("`when_matched` of {}", model.meta.name),
                    "lake merges by replacing the whole matched row; remove when_matched for now",
                ));
            }
            ctx.storage.merge_by_key(session, table, query, unique_key)
        }
        ModelKind::IncrementalByPartition { .. } => {
            if model.meta.partitioned_by.is_empty() {
                return Err(LakeError::Config {
                    message: format!(
                        "`{}` is INCREMENTAL_BY_PARTITION but has no partitioned_by",
                        model.meta.name
                    ),
                    help: Some("add `partitioned_by (column, ...)` to the MODEL block".into()),
                });
            }
            // Replacing the partitions present in the result is a merge keyed on the partition columns.
            ctx.storage
                .merge_by_key(session, table, query, &model.meta.partitioned_by)
        }
        ModelKind::IncrementalUnmanaged {
            insert_overwrite, ..
        } => {
            if *insert_overwrite {
                ctx.storage.replace_all(session, table, query)
            } else {
                ctx.storage.append(session, table, query)
            }
        }
        kind @ (ModelKind::ScdType2ByTime { .. } | ModelKind::ScdType2ByColumn { .. }) => {
            match scd::Scd2::for_kind(kind, ctx.execution_time) {
                Some(history) => write_history(ctx, session, backfill, query, &history),
                None => Err(LakeError::unsupported(
                    format!("building {} as history", kind.name()),
                    "only SCD_TYPE_2 kinds keep history",
                )),
            }
        }
        other => Err(LakeError::unsupported(
            format!("building {} models in batches", other.name()),
            "this kind is built in one piece",
        )),
    }
}

/// SCD type 2: the table becomes its new full history (one overwrite), computed from the current rows and
/// the existing history.
fn write_history(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    query: &str,
    scd: &scd::Scd2<'_>,
) -> Result<WriteStats> {
    let table = &backfill.table;
    let catalog = &ctx.project.default_catalog;
    let columns: Vec<String> = session
        .query_strings(
            &format!("SELECT column_name FROM (DESCRIBE SELECT * FROM ({query}) AS q)"),
            || format!("reading the columns of {}", backfill.name),
        )?
        .into_iter()
        .filter(|c| c != scd.valid_from && c != scd.valid_to)
        .collect();
    for key in scd.unique_key {
        if !columns.contains(key) {
            return Err(LakeError::Execution {
                model: backfill.name.to_string(),
                message: format!("the unique_key column `{key}` is not in the query's columns"),
            });
        }
    }
    if let scd::ChangeDetection::ByTime { updated_at, .. } = &scd.detection
        && !columns.iter().any(|c| c == updated_at)
    {
        return Err(LakeError::Execution {
            model: backfill.name.to_string(),
            message: format!(
                "the query has no `{updated_at}` column (set updated_at_name to the column that holds the change time)"
            ),
        });
    }
    let exists = !session
        .query_strings(
            &format!(
                "SELECT table_name FROM information_schema.tables \
                 WHERE table_catalog = {} AND table_schema = {} AND table_name = {}",
                literal(catalog),
                literal(&table.schema),
                literal(&table.table)
            ),
            || format!("looking up {table}"),
        )?
        .is_empty();
    let qualified = format!("{}.{}", quote_ident(catalog), table.sql());
    let sql = scd.history_sql(query, &columns, exists.then_some(qualified.as_str()));
    ctx.storage.replace_all(session, table, &sql)
}

/// `time_column` within `[start, end)`: compared as timestamps, or as formatted text when the model gives
/// the column's format (`time_column (ds, '%Y%m%d')`).
pub fn time_range_predicate(
    time_column: &crate::model::TimeColumn,
    start: NaiveDateTime,
    end: NaiveDateTime,
) -> String {
    let column = quote_ident(&time_column.column);
    match &time_column.format {
        Some(format) => {
            let last = end - chrono::Duration::microseconds(1);
            format!(
                "{column} BETWEEN {} AND {}",
                literal(&start.format(format).to_string()),
                literal(&last.format(format).to_string())
            )
        }
        None => format!(
            "{column} >= CAST({} AS TIMESTAMP) AND {column} < CAST({} AS TIMESTAMP)",
            literal(&start.format("%Y-%m-%d %H:%M:%S").to_string()),
            literal(&end.format("%Y-%m-%d %H:%M:%S").to_string())
        ),
    }
}

fn run_statements(
    project: &Project,
    session: &Session,
    model: &Model,
    statements: &[crate::model::Statement],
    ctx: &MacroContext,
) -> Result<()> {
    for statement in statements {
        let source = project.jinja(model, statement, ctx)?;
        let rendered = macros::render(&source, ctx).map_err(|e| {
            let at = if statement.jinja { 0 } else { e.offset };
            LakeError::from(
                model
                    .file
                    .error(statement.offset + at, e.len, e.message)
                    .with_optional_help(e.help),
            )
        })?;
        // A statement made only of macros (`@IF(cond, …)` that is false) may render to nothing.
        if rendered.sql.trim().is_empty() {
            continue;
        }
        session.execute(&rendered.sql, || {
            format!("running a statement of {}", model.meta.name)
        })?;
    }
    Ok(())
}
