//! Time intervals of incremental models: the unit a cron implies, the complete intervals up to "now", which
//! are missing from state, and how missing ones group into batches.

pub mod bound;
pub mod cron;

use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, Timelike};

use crate::error::{LakeError, Result};
use crate::intervals::cron::Schedule;

/// The granularity of a model's intervals (SQLMesh's `interval_unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalUnit {
    Year,
    Month,
    Day,
    Hour,
    HalfHour,
    QuarterHour,
    FiveMinute,
}

impl IntervalUnit {
    /// The name SQLMesh writes (`day`, `half_hour`), which is also how it is stored.
    pub fn name(self) -> &'static str {
        match self {
            IntervalUnit::Year => "year",
            IntervalUnit::Month => "month",
            IntervalUnit::Day => "day",
            IntervalUnit::Hour => "hour",
            IntervalUnit::HalfHour => "half_hour",
            IntervalUnit::QuarterHour => "quarter_hour",
            IntervalUnit::FiveMinute => "five_minute",
        }
    }

    pub fn parse(text: &str) -> Result<IntervalUnit> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "year" => IntervalUnit::Year,
            "month" => IntervalUnit::Month,
            "day" => IntervalUnit::Day,
            "hour" => IntervalUnit::Hour,
            "half_hour" => IntervalUnit::HalfHour,
            "quarter_hour" => IntervalUnit::QuarterHour,
            "five_minute" => IntervalUnit::FiveMinute,
            other => {
                return Err(LakeError::Config {
                    message: format!("unknown interval_unit `{other}`"),
                    help: Some(
                        "use year, month, day, hour, half_hour, quarter_hour or five_minute".into(),
                    ),
                });
            }
        })
    }

    /// The unit a cron implies: the gap between two consecutive ticks, rounded down to a known unit.
    pub fn from_cron(schedule: &Schedule, around: NaiveDateTime) -> IntervalUnit {
        let first = schedule.next_after(around);
        let second = first.and_then(|t| schedule.next_after(t));
        let gap = match (first, second) {
            (Some(a), Some(b)) => b - a,
            _ => Duration::days(1),
        };
        if gap >= Duration::days(365) {
            IntervalUnit::Year
        } else if gap >= Duration::days(28) {
            IntervalUnit::Month
        } else if gap >= Duration::days(1) {
            IntervalUnit::Day
        } else if gap >= Duration::hours(1) {
            IntervalUnit::Hour
        } else if gap >= Duration::minutes(30) {
            IntervalUnit::HalfHour
        } else if gap >= Duration::minutes(15) {
            IntervalUnit::QuarterHour
        } else {
            IntervalUnit::FiveMinute
        }
    }

    /// The start of the interval containing `t`.
    pub fn floor(self, t: NaiveDateTime) -> NaiveDateTime {
        let day = t.date();
        let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or(t);
        let minutes = |step: u32| {
            let m = t.minute() - t.minute() % step;
            day.and_hms_opt(t.hour(), m, 0).unwrap_or(t)
        };
        match self {
            IntervalUnit::Year => NaiveDate::from_ymd_opt(day.year(), 1, 1).map_or(t, midnight),
            IntervalUnit::Month => {
                NaiveDate::from_ymd_opt(day.year(), day.month(), 1).map_or(t, midnight)
            }
            IntervalUnit::Day => midnight(day),
            IntervalUnit::Hour => minutes(60),
            IntervalUnit::HalfHour => minutes(30),
            IntervalUnit::QuarterHour => minutes(15),
            IntervalUnit::FiveMinute => minutes(5),
        }
    }

    /// The start of the interval `n` intervals before the one containing `t`: from there up to `t`'s
    /// interval lie `n` complete intervals.
    pub fn back(self, t: NaiveDateTime, n: u32) -> NaiveDateTime {
        let t = self.floor(t);
        let minutes = |step: i64| t - Duration::minutes(step * i64::from(n));
        match self {
            IntervalUnit::Year => t.checked_sub_months(Months::new(12 * n)).unwrap_or(t),
            IntervalUnit::Month => t.checked_sub_months(Months::new(n)).unwrap_or(t),
            IntervalUnit::Day => t - Duration::days(i64::from(n)),
            IntervalUnit::Hour => minutes(60),
            IntervalUnit::HalfHour => minutes(30),
            IntervalUnit::QuarterHour => minutes(15),
            IntervalUnit::FiveMinute => minutes(5),
        }
    }

    /// The start of the next interval after the one starting at `t`.
    pub fn next(self, t: NaiveDateTime) -> NaiveDateTime {
        match self {
            IntervalUnit::Year => t.with_year(t.year() + 1).unwrap_or(t + Duration::days(365)),
            IntervalUnit::Month => {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .unwrap_or(t + Duration::days(31))
            }
            IntervalUnit::Day => t + Duration::days(1),
            IntervalUnit::Hour => t + Duration::hours(1),
            IntervalUnit::HalfHour => t + Duration::minutes(30),
            IntervalUnit::QuarterHour => t + Duration::minutes(15),
            IntervalUnit::FiveMinute => t + Duration::minutes(5),
        }
    }
}

impl serde::Serialize for IntervalUnit {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for IntervalUnit {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        IntervalUnit::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A half-open time range `[start, end)`.
pub type Range = (NaiveDateTime, NaiveDateTime);

/// Complete intervals from `start` up to the last one that ended by `now` (and not past `end`).
pub fn complete_intervals(
    unit: IntervalUnit,
    start: NaiveDateTime,
    end: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> Vec<Range> {
    let limit = match end {
        Some(e) => unit.floor(now).min(e),
        None => unit.floor(now),
    };
    let mut out = Vec::new();
    let mut t = unit.floor(start);
    while t < limit {
        let next = unit.next(t);
        if next > limit {
            break;
        }
        out.push((t, next));
        t = next;
    }
    out
}

/// Whether every complete interval `complete_intervals(unit, start, end, now)` lists lies inside one of the
/// `done` ranges (sorted by start): answered from the ranges alone, without listing a long history day by day.
/// Ranges that meet or overlap at an interval boundary count as one, since no interval crosses a boundary.
pub fn all_done(
    unit: IntervalUnit,
    start: NaiveDateTime,
    end: Option<NaiveDateTime>,
    now: NaiveDateTime,
    done: &[Range],
) -> bool {
    let limit = match end {
        Some(e) => unit.floor(now).min(e),
        None => unit.floor(now),
    };
    let first = unit.floor(start);
    let last = unit.floor(limit);
    if first >= last {
        return true;
    }
    let mut covered: Option<Range> = None;
    for &(from, to) in done {
        covered = match covered {
            Some((s, e)) if from <= e && unit.floor(e) == e => Some((s, e.max(to))),
            _ => Some((from, to)),
        };
        if let Some((s, e)) = covered
            && s <= first
            && last <= e
        {
            return true;
        }
    }
    false
}

/// The intervals not covered by any of the `done` ranges.
pub fn missing(intervals: &[Range], done: &[Range]) -> Vec<Range> {
    intervals
        .iter()
        .filter(|(s, e)| !done.iter().any(|(ds, de)| ds <= s && e <= de))
        .copied()
        .collect()
}

/// The missing intervals plus, before each run of them, up to `lookback` earlier intervals of `all` (late data
/// for recent days is picked up again).
pub fn with_lookback(all: &[Range], missing: &[Range], lookback: u64) -> Vec<Range> {
    if lookback == 0 {
        return missing.to_vec();
    }
    let mut wanted: Vec<bool> = all.iter().map(|r| missing.contains(r)).collect();
    let starts: Vec<usize> = (0..all.len())
        .filter(|&i| wanted[i] && (i == 0 || !wanted[i - 1]))
        .collect();
    for start in starts {
        for back in 1..=lookback as usize {
            if let Some(i) = start.checked_sub(back) {
                wanted[i] = true;
            }
        }
    }
    all.iter()
        .zip(wanted)
        .filter(|(_, w)| *w)
        .map(|(r, _)| *r)
        .collect()
}

/// Consecutive intervals merged into batches of at most `batch_size` intervals (all of a run when `None`).
pub fn batches(intervals: &[Range], batch_size: Option<u64>) -> Vec<Range> {
    let limit = batch_size
        .filter(|n| *n > 0)
        .map_or(usize::MAX, |n| n as usize);
    let mut out: Vec<(Range, usize)> = Vec::new();
    for &(s, e) in intervals {
        match out.last_mut() {
            Some(((_, last_end), count)) if *last_end == s && *count < limit => {
                *last_end = e;
                *count += 1;
            }
            _ => out.push(((s, e), 1)),
        }
    }
    out.into_iter().map(|(range, _)| range).collect()
}

/// Whether chrono can format times with `format` (strftime codes); an unknown or dangling `%` code cannot.
pub fn is_time_format(format: &str) -> bool {
    !chrono::format::StrftimeItems::new(format)
        .any(|item| matches!(item, chrono::format::Item::Error))
}

/// A range as people read it: `2024-01-01 - 2024-01-31` (inclusive last day) for whole days, else times.
pub fn describe((start, end): Range) -> String {
    let midnight = chrono::NaiveTime::MIN;
    if start.time() == midnight && end.time() == midnight {
        let last = end - Duration::microseconds(1);
        format!("{} - {}", start.format("%Y-%m-%d"), last.format("%Y-%m-%d"))
    } else {
        format!(
            "{} - {}",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%Y-%m-%d %H:%M")
        )
    }
}

/// Parses the date forms accepted for `start`/`end`/`--execution-time`: `2024-01-01`, `2024-01-01 12:00:00`.
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim();
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(t, format).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_done_agrees_with_listing_every_interval() {
        let at = |d: u32, h: u32| {
            chrono::NaiveDate::from_ymd_opt(2024, 1, d)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap()
        };
        let now = at(20, 5);
        let unit = IntervalUnit::Day;
        let cases: Vec<(Option<NaiveDateTime>, Vec<Range>)> = vec![
            (None, vec![]),
            (None, vec![(at(1, 0), at(20, 0))]),
            (None, vec![(at(1, 0), at(19, 0))]),
            (None, vec![(at(1, 0), at(10, 0)), (at(10, 0), at(20, 0))]),
            (None, vec![(at(1, 0), at(10, 0)), (at(11, 0), at(20, 0))]),
            (None, vec![(at(1, 0), at(12, 0)), (at(5, 0), at(20, 0))]),
            // Meeting inside a day: that day lies in neither range.
            (None, vec![(at(1, 0), at(10, 6)), (at(10, 6), at(20, 0))]),
            (None, vec![(at(2, 0), at(20, 0))]),
            (Some(at(15, 12)), vec![(at(1, 0), at(15, 0))]),
            (Some(at(1, 0)), vec![]),
        ];
        for (end, done) in cases {
            let listed = missing(&complete_intervals(unit, at(1, 3), end, now), &done).is_empty();
            assert_eq!(
                all_done(unit, at(1, 3), end, now, &done),
                listed,
                "end {end:?}, done {done:?}"
            );
        }
    }
    use crate::intervals::parse_datetime;

    fn t(text: &str) -> NaiveDateTime {
        parse_datetime(text).unwrap()
    }

    #[test]
    fn cron_implies_the_unit() {
        let now = t("2024-01-01");
        let unit = |cron: &str| IntervalUnit::from_cron(&Schedule::parse(cron).unwrap(), now);
        assert_eq!(unit("@daily"), IntervalUnit::Day);
        assert_eq!(unit("@hourly"), IntervalUnit::Hour);
        assert_eq!(unit("@monthly"), IntervalUnit::Month);
        assert_eq!(unit("*/5 * * * *"), IntervalUnit::FiveMinute);
        assert_eq!(unit("30 6 * * *"), IntervalUnit::Day);
    }

    #[test]
    fn only_complete_intervals_up_to_now() {
        let days = complete_intervals(
            IntervalUnit::Day,
            t("2024-01-01"),
            None,
            t("2024-01-04 12:00:00"),
        );
        assert_eq!(
            days,
            [
                (t("2024-01-01"), t("2024-01-02")),
                (t("2024-01-02"), t("2024-01-03")),
                (t("2024-01-03"), t("2024-01-04"))
            ]
        );
        let months = complete_intervals(
            IntervalUnit::Month,
            t("2023-11-15"),
            Some(t("2024-01-01")),
            t("2024-06-01"),
        );
        assert_eq!(
            months,
            [
                (t("2023-11-01"), t("2023-12-01")),
                (t("2023-12-01"), t("2024-01-01"))
            ]
        );
    }

    #[test]
    fn missing_intervals_become_batches() {
        let days = complete_intervals(IntervalUnit::Day, t("2024-01-01"), None, t("2024-01-06"));
        let done = [(t("2024-01-02"), t("2024-01-04"))];
        let gaps = missing(&days, &done);
        assert_eq!(
            batches(&gaps, None),
            [
                (t("2024-01-01"), t("2024-01-02")),
                (t("2024-01-04"), t("2024-01-06"))
            ]
        );
        assert_eq!(batches(&days, Some(2)).len(), 3);
        let recent = [(t("2024-01-05"), t("2024-01-06"))];
        assert_eq!(
            batches(&with_lookback(&days, &recent, 2), None),
            [(t("2024-01-03"), t("2024-01-06"))]
        );
    }
}
