//! Concurrent batches of one time-range model (`batch_concurrency`): evaluated on several sessions at once,
//! each written as files no reader sees, then committed one after another in time order.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Condvar, Mutex};

use super::finish::{batch_macro_context, finish_batch, rows_in_range, run_statements, time_range};
use super::render::{executable_query, time_range_predicate};
use super::schema_change::Fit;
use super::{BuildContext, Observer, poisoned};
use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::intervals::Range;
use crate::plan::Backfill;
use crate::project::model::{Model, ModelKind, TimeColumn};
use crate::state::Interval;
use crate::storage::StagedRows;
use crate::storage::{StagedWrites, WriteStats};

/// How many of a time-range model's `remaining` batches to evaluate at once: its `batch_concurrency`
/// (`model_defaults` fills it in), else the connection's `concurrent_tasks`, never more than
/// `concurrent_tasks`. One for a model that reads its own table: each batch must see the ones before
/// (SQLMesh builds such a model one batch at a time too).
pub(super) fn lanes(
    ctx: &BuildContext<'_>,
    model: &Model,
    reads_itself: bool,
    remaining: usize,
) -> usize {
    if reads_itself || !matches!(model.meta.kind, ModelKind::IncrementalByTimeRange { .. }) {
        return 1;
    }
    let limit = model
        .meta
        .kind
        .batch_concurrency()
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    limit.min(ctx.concurrent_tasks).min(remaining).max(1)
}

/// What the concurrent batches share.
pub(super) struct Lanes<'a> {
    /// How many batches are evaluated at once.
    pub count: usize,
    pub stager: &'a dyn StagedWrites,
    /// How every batch's query fits the table (decided by the first batch, which ran alone).
    pub fit: &'a Fit,
}

/// Where the evaluators are: the next batch to take, how many are committed, and whether to stop.
#[derive(Default)]
struct Progress {
    next: usize,
    committed: usize,
    stopped: bool,
}

/// Writes `batches` (the ones after the first) with `lanes.count` evaluators, committing them in order on
/// `session`. As when they run one at a time, a failure stops the build with the batches before it committed
/// and recorded; the rows evaluated for later batches are discarded.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_concurrently(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    batches: &[Range],
    lanes: &Lanes<'_>,
    total: &mut WriteStats,
    record: &dyn Fn(Interval) -> Result<()>,
    observer: &dyn Observer,
) -> Result<()> {
    let model = ctx.project.model(backfill.model);
    let ModelKind::IncrementalByTimeRange { time_column, .. } = &model.meta.kind else {
        return Err(LakeError::Bug(format!(
            "{} is not a time-range model but its batches were to run concurrently",
            model.meta.name
        )));
    };
    // DuckDB connections are not shared between threads: each evaluator gets its own.
    let sessions = (0..lanes.count)
        .map(|_| session.try_clone())
        .collect::<Result<Vec<_>>>()?;
    // Evaluation runs at most this far ahead of the commits, so a failing batch wastes little work.
    let ahead = 2 * lanes.count;
    let progress = Mutex::new(Progress::default());
    let moved = Condvar::new();
    let (sender, staged) = mpsc::channel::<(usize, Result<StagedRows>)>();
    std::thread::scope(|scope| {
        for lane_session in sessions {
            let sender = sender.clone();
            let (progress, moved) = (&progress, &moved);
            scope.spawn(move || {
                let _stop_others_on_panic = StopOnPanic(progress, moved);
                while let Some(index) = take_next(progress, moved, batches.len(), ahead) {
                    let rows = stage_batch(
                        ctx,
                        &lane_session,
                        backfill,
                        time_column,
                        lanes,
                        batches[index],
                    );
                    if sender.send((index, rows)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut pending = BTreeMap::new();
        let committed = (0..batches.len()).try_for_each(|index| {
            let rows = next_in_order(index, &staged, &mut pending)?;
            let (start, end) = batches[index];
            let in_range = time_range_predicate(time_column, start, end);
            let range = time_range(time_column, &in_range, batches[index]);
            let stats = lanes
                .stager
                .commit_time_range(session, &backfill.table, rows, range)?;
            finish_batch(
                ctx,
                session,
                backfill,
                batches[index],
                &batch_macro_context(ctx, backfill, batches[index]),
                stats,
                true,
                total,
                record,
                observer,
            )?;
            let mut at = progress.lock().map_err(|_| poisoned())?;
            at.committed = index + 1;
            moved.notify_all();
            Ok(())
        });
        stop(&progress, &moved);
        // Waits for the evaluators still running; what they staged is never committed.
        for rows in pending
            .into_values()
            .chain(staged.iter().map(|(_, rows)| rows))
            .flatten()
        {
            lanes.stager.discard(rows);
        }
        committed
    })
}

/// One batch's pre-statements and query on an evaluator's session, its rows written as staged files.
fn stage_batch(
    ctx: &BuildContext<'_>,
    session: &Session,
    backfill: &Backfill,
    time_column: &TimeColumn,
    lanes: &Lanes<'_>,
    range: Range,
) -> Result<StagedRows> {
    let model = ctx.project.model(backfill.model);
    let macro_ctx = batch_macro_context(ctx, backfill, range);
    run_statements(
        ctx.project,
        session,
        model,
        &model.pre_statements,
        &macro_ctx,
    )?;
    let query = executable_query(ctx, backfill.model, &macro_ctx)?;
    if query.contains(backfill.table.table.as_str()) {
        return Err(LakeError::Execution {
            model: model.meta.name.to_string(),
            message: format!(
                "the batch {} reads the model's own table, which its first batch did not, so its batches \
                 cannot be built at once; add `batch_concurrency 1` to its kind",
                crate::intervals::describe(range)
            ),
        });
    }
    let (rows, _) = rows_in_range(time_column, &lanes.fit.apply(query), range);
    lanes.stager.stage_rows(session, &backfill.table, &rows)
}

/// The staged rows of batch `index`, waiting for them when an evaluator has not sent them yet.
fn next_in_order(
    index: usize,
    staged: &Receiver<(usize, Result<StagedRows>)>,
    pending: &mut BTreeMap<usize, Result<StagedRows>>,
) -> Result<StagedRows> {
    loop {
        if let Some(rows) = pending.remove(&index) {
            return rows;
        }
        match staged.recv() {
            Ok((at, rows)) => {
                pending.insert(at, rows);
            }
            Err(_) => {
                return Err(LakeError::Bug(
                    "every batch evaluator stopped before its batches were written".into(),
                ));
            }
        }
    }
}

/// The next batch for an evaluator, once it is within `ahead` of the commits; `None` when there is none
/// left or the build stopped.
fn take_next(
    progress: &Mutex<Progress>,
    moved: &Condvar,
    count: usize,
    ahead: usize,
) -> Option<usize> {
    let mut at = progress.lock().ok()?;
    loop {
        if at.stopped || at.next >= count {
            return None;
        }
        if at.next < at.committed + ahead {
            at.next += 1;
            return Some(at.next - 1);
        }
        at = moved.wait(at).ok()?;
    }
}

fn stop(progress: &Mutex<Progress>, moved: &Condvar) {
    if let Ok(mut at) = progress.lock() {
        at.stopped = true;
    }
    moved.notify_all();
}

/// Stops the other evaluators when one panics, so none waits for commits that will never come.
struct StopOnPanic<'a>(&'a Mutex<Progress>, &'a Condvar);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            stop(self.0, self.1);
        }
    }
}
