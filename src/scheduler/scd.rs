//! Slowly changing dimensions, type 2: the SQL that turns a model's current rows and the existing history into
//! the new history, with SQLMesh's rules for `valid_from` / `valid_to`.

use chrono::NaiveDateTime;

use crate::error::{LakeError, Result};
use crate::project::model::ModelKind;
use crate::sql::quote_ident;

/// How changes are detected.
pub enum ChangeDetection<'a> {
    /// A row changed when its `updated_at` column moved forward (SCD_TYPE_2_BY_TIME).
    ByTime {
        updated_at: &'a str,
        updated_at_as_valid_from: bool,
    },
    /// A row changed when any of these columns differs (SCD_TYPE_2_BY_COLUMN; `None` = every column).
    ByColumn {
        columns: Option<&'a [String]>,
        execution_time_as_valid_from: bool,
    },
}

pub struct Scd2<'a> {
    pub unique_key: &'a [String],
    pub valid_from: &'a str,
    pub valid_to: &'a str,
    pub invalidate_hard_deletes: bool,
    pub detection: ChangeDetection<'a>,
    pub execution_time: NaiveDateTime,
}

fn ts(t: NaiveDateTime) -> String {
    format!("CAST('{}' AS TIMESTAMP)", t.format("%Y-%m-%d %H:%M:%S%.6f"))
}

const EPOCH: &str = "CAST('1970-01-01 00:00:00' AS TIMESTAMP)";

impl<'a> Scd2<'a> {
    /// The settings of an SCD_TYPE_2 kind (`None` for any other kind).
    pub fn for_kind(kind: &'a ModelKind, execution_time: NaiveDateTime) -> Option<Scd2<'a>> {
        let (unique_key, valid_from, valid_to, invalidate_hard_deletes, detection) = match kind {
            ModelKind::ScdType2ByTime {
                unique_key,
                updated_at_name,
                updated_at_as_valid_from,
                valid_from_name,
                valid_to_name,
                invalidate_hard_deletes,
                ..
            } => (
                unique_key,
                valid_from_name,
                valid_to_name,
                invalidate_hard_deletes,
                ChangeDetection::ByTime {
                    updated_at: updated_at_name,
                    updated_at_as_valid_from: *updated_at_as_valid_from,
                },
            ),
            ModelKind::ScdType2ByColumn {
                unique_key,
                columns,
                execution_time_as_valid_from,
                valid_from_name,
                valid_to_name,
                invalidate_hard_deletes,
                ..
            } => (
                unique_key,
                valid_from_name,
                valid_to_name,
                invalidate_hard_deletes,
                ChangeDetection::ByColumn {
                    columns: columns.as_deref(),
                    execution_time_as_valid_from: *execution_time_as_valid_from,
                },
            ),
            _ => return None,
        };
        Some(Scd2 {
            unique_key,
            valid_from,
            valid_to,
            invalidate_hard_deletes: *invalidate_hard_deletes,
            detection,
            execution_time,
        })
    }

    /// The query's columns a history is computed from (all but `valid_from` and `valid_to`), checked to hold
    /// the unique key and, for SCD_TYPE_2_BY_TIME, the `updated_at` column.
    pub fn history_columns(&self, query_columns: Vec<String>, model: &str) -> Result<Vec<String>> {
        let columns: Vec<String> = query_columns
            .into_iter()
            .filter(|c| c != self.valid_from && c != self.valid_to)
            .collect();
        let failed = |message: String| LakeError::Execution {
            model: model.to_string(),
            message,
        };
        if let Some(key) = self.unique_key.iter().find(|key| !columns.contains(key)) {
            return Err(failed(format!(
                "the unique_key column `{key}` is not in the query's columns"
            )));
        }
        if let ChangeDetection::ByTime { updated_at, .. } = &self.detection
            && !columns.iter().any(|c| c == updated_at)
        {
            return Err(failed(format!(
                "the query has no `{updated_at}` column (set updated_at_name to the column that holds the change time)"
            )));
        }
        Ok(columns)
    }

    /// The new full history. `query` gives the current rows (its `columns`); `existing` is the table as it is
    /// (`None` on the first load).
    pub fn history_sql(&self, query: &str, columns: &[String], existing: Option<&str>) -> String {
        let q = quote_ident;
        let (vf, vt) = (q(self.valid_from), q(self.valid_to));
        let first_load = existing.is_none();
        let keys: Vec<String> = self.unique_key.iter().map(|k| q(k)).collect();
        let key_list = keys.join(", ");
        let on = |a: &str, b: &str| {
            keys.iter()
                .map(|k| format!("{a}.{k} = {b}.{k}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let prefixed = |c: &str| q(&format!("t_{c}"));
        let source_cols: Vec<String> = columns
            .iter()
            .map(|c| match &self.detection {
                ChangeDetection::ByTime { updated_at, .. } if c == updated_at => {
                    format!("CAST({} AS TIMESTAMP) AS {}", q(c), q(c))
                }
                _ => q(c),
            })
            .collect();
        let target_cols: Vec<String> = columns
            .iter()
            .map(|c| q(c))
            .chain([vf.clone(), vt.clone()])
            .collect();
        let existing_rows = match existing {
            Some(table) => format!(
                "SELECT {}, TRUE AS _exists FROM {table}",
                target_cols.join(", ")
            ),
            None => format!(
                "SELECT {}, CAST(NULL AS TIMESTAMP) AS {vf}, CAST(NULL AS TIMESTAMP) AS {vt}, TRUE AS _exists \
                 FROM ({query}) AS lake_shape WHERE FALSE",
                columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ")
            ),
        };
        let joined_latest: Vec<String> = columns
            .iter()
            .map(String::as_str)
            .chain([self.valid_from, self.valid_to])
            .map(|c| format!("latest.{} AS {}", q(c), prefixed(c)))
            .collect();
        let joined_source: Vec<String> = columns
            .iter()
            .map(|c| format!("source.{} AS {}", q(c), q(c)))
            .collect();
        let coalesced: Vec<String> = columns
            .iter()
            .map(|c| {
                format!(
                    "COALESCE(joined.{}, joined.{}) AS {}",
                    prefixed(c),
                    q(c),
                    q(c)
                )
            })
            .collect();
        let hard_delete = if self.invalidate_hard_deletes {
            "joined._exists IS NULL".to_string()
        } else {
            "FALSE".to_string()
        };
        let rules = self.change_rules(columns, first_load, &hard_delete);
        let ChangeRules {
            updated,
            valid_from: valid_from_case,
            valid_to: valid_to_case,
            inserted_from,
        } = rules;
        let deleted_keys: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} AS {}", q(&format!("_key{i}"))))
            .collect();
        let latest_deleted_on = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("joined.{k} = latest_deleted.{}", q(&format!("_key{i}"))))
            .collect::<Vec<_>>()
            .join(" AND ");
        let plain_cols = columns.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
        let all_cols = target_cols.join(", ");
        format!(
            "WITH source AS (\n  SELECT DISTINCT ON ({key_list}) TRUE AS _exists, {source_cols}\n  FROM ({query}) AS raw_source\n),\n\
             existing AS ({existing_rows}),\n\
             static AS (SELECT * FROM existing WHERE {vt} IS NOT NULL),\n\
             latest AS (SELECT * FROM existing WHERE {vt} IS NULL),\n\
             deleted AS (\n  SELECT static.* FROM static LEFT JOIN latest ON {static_latest}\n  WHERE latest._exists IS NULL\n),\n\
             latest_deleted AS (\n  SELECT {deleted_keys}, max({vt}) AS {vt} FROM deleted GROUP BY {key_list}\n),\n\
             joined AS (\n  SELECT source._exists AS _exists, {joined_latest}, {joined_source}\n  FROM latest FULL OUTER JOIN source ON {latest_source}\n),\n\
             updated_rows AS (\n  SELECT {coalesced}, {valid_from_case} AS {vf}, {valid_to_case} AS {vt}\n  \
             FROM joined LEFT JOIN latest_deleted ON {latest_deleted_on}\n),\n\
             inserted_rows AS (\n  SELECT {plain_cols}, {inserted_from} AS {vf}, CAST(NULL AS TIMESTAMP) AS {vt}\n  FROM joined WHERE {updated}\n)\n\
             SELECT {all_cols} FROM static\nUNION ALL\nSELECT {all_cols} FROM updated_rows\nUNION ALL\nSELECT {all_cols} FROM inserted_rows",
            source_cols = source_cols.join(", "),
            static_latest = on("static", "latest"),
            deleted_keys = deleted_keys.join(", "),
            joined_latest = joined_latest.join(", "),
            joined_source = joined_source.join(", "),
            latest_source = on("latest", "source"),
            coalesced = coalesced.join(", "),
        )
    }

    /// How the change detection marks a key's row as changed, and the validity a changed row gets.
    fn change_rules(&self, columns: &[String], first_load: bool, hard_delete: &str) -> ChangeRules {
        match &self.detection {
            ChangeDetection::ByTime {
                updated_at,
                updated_at_as_valid_from,
            } => self.by_time_rules(updated_at, *updated_at_as_valid_from, hard_delete),
            ChangeDetection::ByColumn {
                columns: checked,
                execution_time_as_valid_from,
            } => {
                let checked: Vec<&String> = match checked {
                    Some(list) => list.iter().collect(),
                    None => columns.iter().collect(),
                };
                let start_now = *execution_time_as_valid_from || !first_load;
                self.by_column_rules(&checked, start_now, hard_delete)
            }
        }
    }

    /// SCD_TYPE_2_BY_TIME: a row changed when its `updated_at` moved forward; it is valid from then.
    fn by_time_rules(
        &self,
        updated_at: &str,
        updated_at_as_valid_from: bool,
        hard_delete: &str,
    ) -> ChangeRules {
        let q = quote_ident;
        let prefixed = |c: &str| q(&format!("t_{c}"));
        let exec = ts(self.execution_time);
        let vt = q(self.valid_to);
        let u = q(updated_at);
        let t_u = prefixed(updated_at);
        let start = if updated_at_as_valid_from {
            format!("joined.{u}")
        } else {
            EPOCH.to_string()
        };
        let deleted_key = format!("latest_deleted.{}", q("_key0"));
        ChangeRules {
            updated: format!("joined.{u} > joined.{t_u}"),
            valid_from: format!(
                "CASE WHEN joined.{t_vf} IS NULL AND {deleted_key} IS NOT NULL THEN \
                   CASE WHEN latest_deleted.{vt} > joined.{u} THEN latest_deleted.{vt} ELSE joined.{u} END \
                 WHEN joined.{t_vf} IS NULL THEN {start} ELSE joined.{t_vf} END",
                t_vf = prefixed(self.valid_from)
            ),
            valid_to: format!(
                "CASE WHEN joined.{u} > joined.{t_u} THEN joined.{u} WHEN {hard_delete} THEN {exec} \
                 ELSE joined.{t_vt} END",
                t_vt = prefixed(self.valid_to)
            ),
            inserted_from: format!("joined.{u}"),
        }
    }

    /// SCD_TYPE_2_BY_COLUMN: a row changed when any `checked` column differs; it is valid from the execution
    /// time (from the epoch on a first load, unless `execution_time_as_valid_from`).
    fn by_column_rules(
        &self,
        checked: &[&String],
        start_now: bool,
        hard_delete: &str,
    ) -> ChangeRules {
        let q = quote_ident;
        let prefixed = |c: &str| q(&format!("t_{c}"));
        let exec = ts(self.execution_time);
        let both_keys = self
            .unique_key
            .iter()
            .map(|k| {
                format!(
                    "joined.{} IS NOT NULL AND joined.{} IS NOT NULL",
                    prefixed(k),
                    q(k)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let differs = checked
            .iter()
            .map(|c| format!("joined.{} IS DISTINCT FROM joined.{}", q(c), prefixed(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let updated = format!("({both_keys}) AND ({differs})");
        let start = if start_now {
            exec.clone()
        } else {
            EPOCH.to_string()
        };
        ChangeRules {
            valid_from: format!("COALESCE(joined.{}, {start})", prefixed(self.valid_from)),
            valid_to: format!(
                "CASE WHEN {hard_delete} OR ({updated}) THEN {exec} ELSE joined.{} END",
                prefixed(self.valid_to)
            ),
            updated,
            inserted_from: exec,
        }
    }
}

/// The SQL expressions (over the `joined` rows) by which SCD type 2 tells a changed row and dates it.
struct ChangeRules {
    /// True for a key whose current row changed.
    updated: String,
    /// The validity start of a row carried forward or closed.
    valid_from: String,
    /// The validity end of a row carried forward or closed.
    valid_to: String,
    /// The validity start of a changed row's new version.
    inserted_from: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, Session};
    use crate::intervals::parse_datetime;

    fn in_memory() -> (Engine, Session) {
        let engine = Engine::in_memory().expect("in-memory DuckDB");
        let session = engine.session().expect("session");
        (engine, session)
    }

    fn rows(s: &Session, sql: &str) -> Vec<String> {
        s.query_strings(sql, || "test".into()).unwrap()
    }

    #[test]
    fn history_columns_leave_out_the_validity_columns_and_need_the_key_and_updated_at() {
        let keys = ["id".to_string()];
        let by_time = Scd2 {
            unique_key: &keys,
            valid_from: "valid_from",
            valid_to: "valid_to",
            invalidate_hard_deletes: false,
            detection: ChangeDetection::ByTime {
                updated_at: "updated_at",
                updated_at_as_valid_from: false,
            },
            execution_time: parse_datetime("2024-06-01").unwrap(),
        };
        let columns = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(
            by_time
                .history_columns(
                    columns(&["id", "updated_at", "valid_from", "valid_to"]),
                    "m"
                )
                .unwrap(),
            columns(&["id", "updated_at"])
        );
        let no_key = by_time.history_columns(columns(&["name", "updated_at"]), "m");
        assert!(
            matches!(&no_key, Err(LakeError::Execution { model, message })
                if model == "m" && message.contains("unique_key column `id`")),
            "{no_key:?}"
        );
        let no_time = by_time.history_columns(columns(&["id", "name"]), "m");
        assert!(
            matches!(&no_time, Err(LakeError::Execution { message, .. })
                if message.contains("no `updated_at` column")),
            "{no_time:?}"
        );
    }

    /// Loads `source` into history table `h` as SCD2 at `now`, the way a build would.
    fn load(s: &Session, scd: &Scd2<'_>, source: &str) {
        let exists = !rows(
            s,
            "SELECT table_name FROM information_schema.tables WHERE table_name = 'h'",
        )
        .is_empty();
        let columns: Vec<String> = rows(
            s,
            &format!("SELECT column_name FROM (DESCRIBE SELECT * FROM ({source}) q)"),
        );
        let sql = scd.history_sql(source, &columns, exists.then_some("h"));
        s.execute(&format!("CREATE OR REPLACE TABLE h AS {sql}"), || {
            "scd".into()
        })
        .unwrap();
    }

    fn history(s: &Session) -> Vec<String> {
        rows(
            s,
            "SELECT id || ':' || name || ':' || strftime(valid_from, '%Y-%m-%d') || ':' || \
             coalesce(strftime(valid_to, '%Y-%m-%d'), '-') FROM h ORDER BY id, valid_from",
        )
    }

    #[test]
    fn by_time_keeps_history_and_closes_hard_deletes() {
        let (_engine, s) = in_memory();
        let keys = ["id".to_string()];
        let at = |t: &str| Scd2 {
            unique_key: &keys,
            valid_from: "valid_from",
            valid_to: "valid_to",
            invalidate_hard_deletes: true,
            detection: ChangeDetection::ByTime {
                updated_at: "updated_at",
                updated_at_as_valid_from: false,
            },
            execution_time: parse_datetime(t).unwrap(),
        };
        load(
            &s,
            &at("2024-01-01"),
            "SELECT * FROM (VALUES (1, 'a', TIMESTAMP '2024-01-01'), (2, 'b', TIMESTAMP '2024-01-01')) v(id, name, updated_at)",
        );
        assert_eq!(history(&s), ["1:a:1970-01-01:-", "2:b:1970-01-01:-"]);
        // id 1 is renamed on 01-03; id 2 disappears; id 3 appears.
        load(
            &s,
            &at("2024-01-04"),
            "SELECT * FROM (VALUES (1, 'A', TIMESTAMP '2024-01-03'), (3, 'c', TIMESTAMP '2024-01-03')) v(id, name, updated_at)",
        );
        assert_eq!(
            history(&s),
            [
                "1:a:1970-01-01:2024-01-03",
                "1:A:2024-01-03:-",
                "2:b:1970-01-01:2024-01-04",
                "3:c:1970-01-01:-"
            ]
        );
        // An unchanged reload changes nothing.
        load(
            &s,
            &at("2024-01-05"),
            "SELECT * FROM (VALUES (1, 'A', TIMESTAMP '2024-01-03'), (3, 'c', TIMESTAMP '2024-01-03')) v(id, name, updated_at)",
        );
        assert_eq!(history(&s).len(), 4);
    }

    #[test]
    fn by_column_stamps_changes_with_the_execution_time() {
        let (_engine, s) = in_memory();
        let keys = ["id".to_string()];
        let checked = ["name".to_string()];
        let at = |t: &str| Scd2 {
            unique_key: &keys,
            valid_from: "valid_from",
            valid_to: "valid_to",
            invalidate_hard_deletes: false,
            detection: ChangeDetection::ByColumn {
                columns: Some(&checked),
                execution_time_as_valid_from: false,
            },
            execution_time: parse_datetime(t).unwrap(),
        };
        load(
            &s,
            &at("2024-01-01"),
            "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(id, name)",
        );
        load(
            &s,
            &at("2024-01-02"),
            "SELECT * FROM (VALUES (1, 'a2'), (3, 'c')) v(id, name)",
        );
        assert_eq!(
            history(&s),
            [
                "1:a:1970-01-01:2024-01-02",
                "1:a2:2024-01-02:-",
                "2:b:1970-01-01:-",
                "3:c:2024-01-02:-"
            ],
            "without invalidate_hard_deletes, a vanished row stays current"
        );
    }
}
