//! A model's `start` and `end` as SQLMesh accepts them: a date or timestamp, epoch milliseconds, or a time
//! relative to when a plan runs (`1 year ago`, `yesterday`), parsed once at load.

use chrono::{Duration, Months, NaiveDateTime};

use crate::error::{LakeError, Result};

/// A parsed `start`/`end`. It keeps the text as written, which fingerprints and stored model definitions
/// hold, so it (de)serialises as that text.
#[derive(Debug, Clone)]
pub struct TimeBound {
    text: String,
    when: When,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    At(NaiveDateTime),
    /// Midnight of the plan's day, moved by this many days (`today` 0, `yesterday` -1, `tomorrow` 1).
    Day(i64),
    Now,
    Ago(u32, RelativeUnit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RelativeUnit {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

const HELP: &str = "write a date (2024-01-01), a timestamp ('2024-01-01 12:00:00'), epoch milliseconds, or a \
relative time such as '1 year ago', '3 days ago', 'yesterday' or 'today'";

impl TimeBound {
    pub fn parse(text: &str) -> Result<TimeBound> {
        let when = parse_when(text.trim()).ok_or_else(|| LakeError::Config {
            message: format!("invalid date or time `{text}`"),
            help: Some(HELP.into()),
        })?;
        Ok(TimeBound {
            text: text.to_string(),
            when,
        })
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The moment this bound names for a plan or run at `now`.
    /// Whether it names a whole day (a date as `2024-01-31`, or `today`/`yesterday`/`tomorrow`): as an
    /// end, it then includes that day.
    pub fn is_whole_day(&self) -> bool {
        match self.when {
            When::Day(_) => true,
            When::At(_) => self.text.trim().len() <= 10,
            _ => false,
        }
    }

    pub fn resolve(&self, now: NaiveDateTime) -> NaiveDateTime {
        let midnight = now.date().and_hms_opt(0, 0, 0).unwrap_or(now);
        match self.when {
            When::At(at) => at,
            When::Now => now,
            When::Day(offset) => midnight + Duration::days(offset),
            When::Ago(n, unit) => {
                let n64 = i64::from(n);
                match unit {
                    RelativeUnit::Second => now - Duration::seconds(n64),
                    RelativeUnit::Minute => now - Duration::minutes(n64),
                    RelativeUnit::Hour => now - Duration::hours(n64),
                    RelativeUnit::Day => now - Duration::days(n64),
                    RelativeUnit::Week => now - Duration::weeks(n64),
                    // Calendar months and years; out of chrono's range only for absurd counts.
                    RelativeUnit::Month => now.checked_sub_months(Months::new(n)).unwrap_or(now),
                    RelativeUnit::Year => now
                        .checked_sub_months(Months::new(n.saturating_mul(12)))
                        .unwrap_or(now),
                }
            }
        }
    }
}

fn parse_when(text: &str) -> Option<When> {
    if let Some(at) = super::parse_datetime(text) {
        return Some(When::At(at));
    }
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        let millis: i64 = text.parse().ok()?;
        return chrono::DateTime::from_timestamp_millis(millis).map(|t| When::At(t.naive_utc()));
    }
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "now" => return Some(When::Now),
        "today" => return Some(When::Day(0)),
        "yesterday" => return Some(When::Day(-1)),
        "tomorrow" => return Some(When::Day(1)),
        _ => {}
    }
    let words: Vec<&str> = lower.split_whitespace().collect();
    let [count, unit, "ago"] = words.as_slice() else {
        return None;
    };
    let count: u32 = match *count {
        "a" | "an" | "one" => 1,
        number => number.parse().ok()?,
    };
    let unit = match unit.trim_end_matches('s') {
        "second" | "sec" => RelativeUnit::Second,
        "minute" | "min" => RelativeUnit::Minute,
        "hour" => RelativeUnit::Hour,
        "day" => RelativeUnit::Day,
        "week" => RelativeUnit::Week,
        "month" => RelativeUnit::Month,
        "year" => RelativeUnit::Year,
        _ => return None,
    };
    Some(When::Ago(count, unit))
}

impl PartialEq for TimeBound {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl serde::Serialize for TimeBound {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for TimeBound {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TimeBound::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        super::super::parse_datetime(text).unwrap()
    }

    #[test]
    fn absolute_epoch_and_relative_forms() {
        let now = at("2024-06-15 13:45:00");
        let resolve = |text: &str| TimeBound::parse(text).unwrap().resolve(now);
        assert_eq!(resolve("2024-01-01"), at("2024-01-01"));
        assert_eq!(resolve("2024-01-01 06:30:00"), at("2024-01-01 06:30:00"));
        assert_eq!(resolve("1704067200000"), at("2024-01-01"));
        assert_eq!(resolve("1 year ago"), at("2023-06-15 13:45:00"));
        assert_eq!(resolve("2 months ago"), at("2024-04-15 13:45:00"));
        assert_eq!(resolve("3 Days Ago"), at("2024-06-12 13:45:00"));
        assert_eq!(resolve("a week ago"), at("2024-06-08 13:45:00"));
        assert_eq!(resolve("yesterday"), at("2024-06-14"));
        assert_eq!(resolve("today"), at("2024-06-15"));
        assert_eq!(resolve("now"), now);
    }

    #[test]
    fn other_text_is_refused_with_the_forms_that_work() {
        for text in [
            "",
            "soon",
            "1 fortnight ago",
            "ago",
            "2024-13-01",
            "-5 days ago",
        ] {
            let error = TimeBound::parse(text).unwrap_err();
            assert!(
                format!("{error:?}").contains("relative time"),
                "{text}: {error:?}"
            );
        }
    }

    #[test]
    fn keeps_the_text_as_written() {
        let bound = TimeBound::parse("1 Year Ago").unwrap();
        assert_eq!(serde_json::to_string(&bound).unwrap(), "\"1 Year Ago\"");
        let back: TimeBound = serde_json::from_str("\"2024-01-01\"").unwrap();
        assert_eq!(back.text(), "2024-01-01");
    }
}
