//! `lake table-diff`: the same model in two environments compared by schema, row counts and per-column
//! match rates over rows joined on the grain.

use serde::Serialize;

use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::sql::quote_ident;

#[derive(Debug, Serialize, PartialEq)]
pub struct ColumnDiff {
    pub name: String,
    /// `None`: the column is missing on that side.
    pub source_type: Option<String>,
    pub target_type: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ColumnMatch {
    pub name: String,
    /// Share of joined rows where the two values are equal (NULLs equal NULLs), 0–100.
    pub match_pct: f64,
}

/// Some rows of a table diff, as text: a header and up to the sample size of rows.
#[derive(Debug, Serialize, PartialEq, Default)]
pub struct Sample {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// `--show-sample`: rows only one side has, and joined rows whose values differ (each compared column as
/// `source.column`, `target.column`).
#[derive(Debug, Serialize, PartialEq, Default)]
pub struct Samples {
    pub source_only: Sample,
    pub target_only: Sample,
    pub differing: Sample,
}

/// How to compare: the join keys, the columns left out, and how many sample rows to keep (0: none).
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub keys: Vec<String>,
    pub skip_columns: Vec<String>,
    pub sample_rows: usize,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct TableDiff {
    pub source_rows: u64,
    pub target_rows: u64,
    pub columns: Vec<ColumnDiff>,
    pub keys: Vec<String>,
    pub joined_rows: Option<u64>,
    pub source_only_rows: Option<u64>,
    pub target_only_rows: Option<u64>,
    pub matches: Vec<ColumnMatch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Samples>,
}

impl TableDiff {
    /// Whether the two sides hold the same columns and, joined on the keys, the same rows and values.
    pub fn is_identical(&self) -> bool {
        self.columns.iter().all(|c| c.source_type == c.target_type)
            && self.source_rows == self.target_rows
            && self.source_only_rows.unwrap_or(0) == 0
            && self.target_only_rows.unwrap_or(0) == 0
            && self.matches.iter().all(|m| m.match_pct >= 100.0)
    }
}

fn columns(session: &Session, table: &str) -> Result<Vec<(String, String)>> {
    let rows = session.query_rows(
        &format!("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {table})"),
        || format!("reading the columns of {table}"),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.as_slice() {
            [Some(name), Some(kind)] => Some((name.clone(), kind.clone())),
            _ => None,
        })
        .collect())
}

/// A sum over the joined rows: NULL when no rows joined, which is 0.
fn number(value: Option<&Option<String>>) -> u64 {
    value
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Each column of either side with its type on each, source columns first, `skip` left out.
fn column_diffs(
    source: Vec<(String, String)>,
    target: Vec<(String, String)>,
    skip: &[String],
) -> Vec<ColumnDiff> {
    let kept = |(name, _): &(String, String)| !skip.iter().any(|c| c.eq_ignore_ascii_case(name));
    let source: Vec<_> = source.into_iter().filter(kept).collect();
    let target: Vec<_> = target.into_iter().filter(kept).collect();
    let type_in = |side: &[(String, String)], name: &str| {
        side.iter().find(|(n, _)| n == name).map(|(_, k)| k.clone())
    };
    let mut diffs: Vec<ColumnDiff> = source
        .iter()
        .map(|(name, kind)| ColumnDiff {
            name: name.clone(),
            source_type: Some(kind.clone()),
            target_type: type_in(&target, name),
        })
        .collect();
    diffs.extend(
        target
            .iter()
            .filter(|(name, _)| type_in(&source, name).is_none())
            .map(|(name, kind)| ColumnDiff {
                name: name.clone(),
                source_type: None,
                target_type: Some(kind.clone()),
            }),
    );
    diffs
}

/// Compares two tables (SQL names DuckDB resolves, or parenthesised queries), joining on the keys when
/// there are any.
pub fn compare(
    session: &Session,
    source: &str,
    target: &str,
    options: &DiffOptions,
) -> Result<TableDiff> {
    let keys = options.keys.as_slice();
    let diffs = column_diffs(
        columns(session, source)?,
        columns(session, target)?,
        &options.skip_columns,
    );
    let count = |table: &str| {
        session.query_count(&format!("SELECT count(*) FROM {table}"), || {
            format!("counting the rows of {table}")
        })
    };
    let mut diff = TableDiff {
        source_rows: count(source)?,
        target_rows: count(target)?,
        columns: diffs,
        keys: keys.to_vec(),
        joined_rows: None,
        source_only_rows: None,
        target_only_rows: None,
        matches: Vec::new(),
        samples: None,
    };
    if keys.is_empty() {
        return Ok(diff);
    }
    for key in keys {
        let on_both = diff
            .columns
            .iter()
            .any(|c| &c.name == key && c.source_type.is_some() && c.target_type.is_some());
        if !on_both {
            return Err(LakeError::Usage(
                format!("the join column `{key}` is not in both tables"),
                Some(
                    "pass the columns that identify a row with --on, or set the model's grain"
                        .into(),
                ),
            ));
        }
    }
    let compared: Vec<&ColumnDiff> = diff
        .columns
        .iter()
        .filter(|c| c.source_type.is_some() && c.target_type.is_some() && !keys.contains(&c.name))
        .collect();
    let join = keys
        .iter()
        .map(|k| format!("s.{k} = t.{k}", k = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut metrics = vec![
        "count(*) FILTER (WHERE s.__lake_in AND t.__lake_in)".to_string(),
        "count(*) FILTER (WHERE s.__lake_in AND t.__lake_in IS NULL)".to_string(),
        "count(*) FILTER (WHERE s.__lake_in IS NULL AND t.__lake_in)".to_string(),
    ];
    for column in &compared {
        let c = quote_ident(&column.name);
        metrics.push(format!(
            "100.0 * avg(CASE WHEN s.{c} IS NOT DISTINCT FROM t.{c} THEN 1 ELSE 0 END) FILTER (WHERE s.__lake_in AND t.__lake_in)"
        ));
    }
    let rows = session.query_rows(
        &format!(
            "SELECT {} FROM (SELECT *, true AS __lake_in FROM {source}) AS s \
             FULL OUTER JOIN (SELECT *, true AS __lake_in FROM {target}) AS t ON {join}",
            metrics.join(", ")
        ),
        || "joining the two tables on their keys".into(),
    )?;
    let row = rows.first().cloned().unwrap_or_default();
    diff.joined_rows = Some(number(row.first()));
    diff.source_only_rows = Some(number(row.get(1)));
    diff.target_only_rows = Some(number(row.get(2)));
    diff.matches = compared
        .iter()
        .enumerate()
        .map(|(n, column)| ColumnMatch {
            name: column.name.clone(),
            match_pct: row
                .get(3 + n)
                .and_then(|v| v.as_deref())
                .and_then(|v| v.parse().ok())
                // No joined rows: nothing to compare, nothing differs.
                .unwrap_or(100.0),
        })
        .collect();
    if options.sample_rows > 0 {
        let names: Vec<&str> = compared.iter().map(|c| c.name.as_str()).collect();
        diff.samples = Some(samples(
            session,
            (source, target),
            keys,
            &names,
            options.sample_rows,
        )?);
    }
    Ok(diff)
}

/// Up to `limit` rows only in the source, only in the target, and joined with differing values, in key
/// order.
fn samples(
    session: &Session,
    (source, target): (&str, &str),
    keys: &[String],
    compared: &[&str],
    limit: usize,
) -> Result<Samples> {
    let join = keys
        .iter()
        .map(|k| format!("s.{k} = t.{k}", k = quote_ident(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let order = keys
        .iter()
        .map(|k| quote_ident(k))
        .collect::<Vec<_>>()
        .join(", ");
    let all: Vec<String> = keys
        .iter()
        .map(String::as_str)
        .chain(compared.iter().copied())
        .map(String::from)
        .collect();
    let listed = all
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let one_side = |from: &str, other: &str| -> Result<Sample> {
        let rows = session.query_rows(
            &format!(
                "SELECT {listed} FROM {from} AS s WHERE NOT EXISTS \
                 (SELECT 1 FROM {other} AS t WHERE {join}) ORDER BY {order} LIMIT {limit}"
            ),
            || "sampling the rows only one side has".into(),
        )?;
        Ok(Sample {
            columns: all.clone(),
            rows,
        })
    };
    let mut columns: Vec<String> = keys.to_vec();
    let mut selected: Vec<String> = keys
        .iter()
        .map(|k| format!("s.{}", quote_ident(k)))
        .collect();
    for c in compared {
        columns.push(format!("source.{c}"));
        columns.push(format!("target.{c}"));
        selected.push(format!("s.{q}, t.{q}", q = quote_ident(c)));
    }
    let differs = compared
        .iter()
        .map(|c| format!("s.{q} IS DISTINCT FROM t.{q}", q = quote_ident(c)))
        .collect::<Vec<_>>();
    let differing = if differs.is_empty() {
        Vec::new()
    } else {
        session.query_rows(
            &format!(
                "SELECT {} FROM {source} AS s JOIN {target} AS t ON {join} WHERE {} ORDER BY {} \
                 LIMIT {limit}",
                selected.join(", "),
                differs.join(" OR "),
                keys.iter()
                    .map(|k| format!("s.{}", quote_ident(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            || "sampling the rows whose values differ".into(),
        )?
    };
    Ok(Samples {
        source_only: one_side(source, target)?,
        target_only: one_side(target, source)?,
        differing: Sample {
            columns,
            rows: differing,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    #[test]
    fn compares_schema_counts_and_values_on_the_keys() {
        let engine = Engine::in_memory().unwrap();
        let s = engine.session().unwrap();
        s.execute(
            "CREATE TABLE a AS SELECT * FROM (VALUES (1, 'x', 10), (2, 'y', 20), (3, 'z', 30)) v(id, name, n);
             CREATE TABLE b AS SELECT * FROM (VALUES (1, 'x', 1.5), (2, 'Y', 2.5), (4, 'w', 4.5)) v(id, name, m);",
            || "setup".into(),
        )
        .unwrap();
        let diff = compare(&s, "a", "b", &on(&["id"])).unwrap();
        assert_eq!((diff.source_rows, diff.target_rows), (3, 3));
        assert_eq!(
            (
                diff.joined_rows,
                diff.source_only_rows,
                diff.target_only_rows
            ),
            (Some(2), Some(1), Some(1))
        );
        assert_eq!(
            diff.matches,
            vec![ColumnMatch {
                name: "name".into(),
                match_pct: 50.0
            }]
        );
        let missing: Vec<_> = diff
            .columns
            .iter()
            .filter(|c| c.source_type.is_none() || c.target_type.is_none())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(missing, ["n", "m"]);
        assert!(!diff.is_identical());
        assert!(compare(&s, "a", "a", &on(&["id"])).unwrap().is_identical());
        assert!(compare(&s, "a", "b", &on(&["nope"])).is_err());

        // Skipped columns are left out of the schema and the values; samples show what differs.
        let options = DiffOptions {
            skip_columns: vec!["N".into(), "m".into()],
            sample_rows: 5,
            ..on(&["id"])
        };
        let diff = compare(&s, "a", "b", &options).unwrap();
        assert_eq!(diff.columns.len(), 2);
        let samples = diff.samples.expect("samples");
        assert_eq!(
            samples.source_only.rows,
            [[Some("3".into()), Some("z".into())]]
        );
        assert_eq!(
            samples.target_only.rows,
            [[Some("4".into()), Some("w".into())]]
        );
        assert_eq!(
            samples.differing.columns,
            ["id", "source.name", "target.name"]
        );
        assert_eq!(
            samples.differing.rows,
            [[Some("2".into()), Some("y".into()), Some("Y".into())]]
        );
    }

    fn on(keys: &[&str]) -> DiffOptions {
        DiffOptions {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            ..DiffOptions::default()
        }
    }
}
