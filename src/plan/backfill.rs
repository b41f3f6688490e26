//! Backfill windows: what each model kind does when built, and which intervals an incremental model still
//! needs between its start, its end, `--start`/`--end` and now, in batches.

use chrono::NaiveDateTime;

use super::BackfillAction;
use crate::error::{LakeError, Result};
use crate::intervals::cron::Schedule;
use crate::intervals::{self, IntervalUnit, Range};
use crate::project::Project;
use crate::project::model::{Model, ModelKind};

/// What building a model of `kind` does; `None` for kinds that are never built (EXTERNAL, EMBEDDED).
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
            Some(t) => crate::intervals::parse_datetime(t)
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
