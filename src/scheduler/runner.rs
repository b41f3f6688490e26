//! The parallel DAG runner: worker threads take models whose parents are built, in dependency order,
//! and skip the descendants of a failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::build::build_one;
use super::{BuildContext, Observer, poisoned};
use crate::engine::{Engine, Session};
use crate::error::{LakeError, Result};
use crate::plan::Backfill;
use crate::project::ModelId;
use crate::project::model::ModelKind;
use crate::sql::ModelName;
use crate::state::{Interval, StateStore};

pub(super) struct Queue {
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
    let slot: HashMap<ModelId, usize> = backfills
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
            let mut stack: Vec<ModelId> = ctx.project.dag.parents(b.model).collect();
            while let Some(p) = stack.pop() {
                if !seen.insert(p) {
                    continue;
                }
                if let Some(&k) = slot.get(&p) {
                    found.push(k);
                } else if matches!(ctx.project.model(p).meta.kind, ModelKind::Embedded) {
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
    let _waiting = crate::profile::time(crate::profile::Phase::WaitingForWorkers);
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
pub(super) fn worker(
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
        let outcome = crate::profile::timed(crate::profile::Phase::Build, || {
            // Waits while batches of other models hold the free slots.
            let _slot = ctx.slots.acquire();
            build_one(ctx, &session, backfill, &record, observer)
        });
        observer.model_finished(backfill, started.elapsed(), outcome.as_ref().cloned());
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
                    // DuckDB's complaint about the model's query, pointed at in the model's file.
                    _ => match ctx.project.model(backfill.model).locate_engine_error(&e) {
                        Some(located) => LakeError::from(located),
                        None => LakeError::Execution {
                            model: backfill.name.to_string(),
                            message: crate::error::error_chain(&e),
                        },
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
