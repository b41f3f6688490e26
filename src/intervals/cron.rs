//! Cron schedules (`@daily`, `@hourly`, 5-field expressions) and when a model is next due.

use std::cell::RefCell;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{NaiveDateTime, Utc};
use croner::Cron;

use crate::error::{LakeError, Result};

/// A parsed `cron` model property. It keeps the expression as written: that text is what fingerprints and
/// stored model definitions hold, so it (de)serialises as the text.
#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    cron: Arc<Cron>,
}

impl Schedule {
    /// The expression as written (`@daily`, `0 6 * * *`).
    pub fn expression(&self) -> &str {
        &self.expression
    }
}

impl Default for Schedule {
    /// SQLMesh's default cron.
    fn default() -> Self {
        // "@daily" is a valid expression, so parsing it cannot fail.
        Schedule::parse("@daily").expect("@daily parses")
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl PartialEq<&str> for Schedule {
    fn eq(&self, other: &&str) -> bool {
        self.expression == *other
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expression)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

thread_local! {
    /// Expressions this thread has parsed: a project repeats a handful of crons over thousands of
    /// models, and croner's parse was the largest single cost of loading a 10,000-model project.
    static PARSED: RefCell<HashMap<String, Arc<Cron>>> = RefCell::new(HashMap::new());
}

impl Schedule {
    pub fn parse(expression: &str) -> Result<Schedule> {
        if let Some(cron) = PARSED.with(|parsed| parsed.borrow().get(expression).cloned()) {
            return Ok(Schedule {
                expression: expression.to_string(),
                cron,
            });
        }
        let pattern = match expression.trim().to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
            "@monthly" => "0 0 1 * *".to_string(),
            "@weekly" => "0 0 * * 0".to_string(),
            "@daily" | "@midnight" => "0 0 * * *".to_string(),
            "@hourly" => "0 * * * *".to_string(),
            _ => expression.trim().to_string(),
        };
        let cron = Cron::from_str(&pattern).map_err(|e| LakeError::Config {
            message: format!("invalid cron expression `{expression}`: {e}"),
            help: Some("use @hourly, @daily, @weekly, @monthly or a 5-field cron expression such as `0 6 * * *`".into()),
        })?;
        let cron = Arc::new(cron);
        PARSED.with(|parsed| {
            parsed
                .borrow_mut()
                .insert(expression.to_string(), Arc::clone(&cron))
        });
        Ok(Schedule {
            expression: expression.to_string(),
            cron,
        })
    }

    /// The first tick strictly after `after`, in UTC.
    pub fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        self.cron
            .find_next_occurrence(&after.and_utc(), false)
            .ok()
            .map(|t| t.with_timezone(&Utc).naive_utc())
    }

    /// Whether a tick happened in `(last_run, now]`: the model is due again.
    pub fn is_due(&self, last_run: NaiveDateTime, now: NaiveDateTime) -> bool {
        self.next_after(last_run).is_some_and(|tick| tick <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervals::parse_datetime;

    #[test]
    fn daily_is_due_after_midnight() {
        let s = Schedule::parse("@daily").unwrap();
        let built = parse_datetime("2024-01-01 10:00:00").unwrap();
        assert!(!s.is_due(built, parse_datetime("2024-01-01 23:00:00").unwrap()));
        assert!(s.is_due(built, parse_datetime("2024-01-02 00:00:00").unwrap()));
        let hourly = Schedule::parse("@hourly").unwrap();
        assert!(hourly.is_due(built, parse_datetime("2024-01-01 11:00:00").unwrap()));
        let custom = Schedule::parse("30 6 * * *").unwrap();
        assert_eq!(
            custom.next_after(built),
            parse_datetime("2024-01-02 06:30:00")
        );
        assert!(Schedule::parse("every day").is_err());
    }
}
