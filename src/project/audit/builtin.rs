//! SQLMesh's built-in audits as lake writes them: one function per audit, each making the query for the bad
//! rows of the audited table from the call's arguments.

use sqlparser::ast::{Expr, Value as SqlValue};

use super::{AuditSource, ModelAudit};

/// Why a built-in audit's arguments cannot make its query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditArgError {
    #[error("needs the argument `{0} := …`")]
    Missing(String),
    #[error("needs the argument `{0} := [...]`")]
    MissingList(String),
    #[error("`{0}` lists nothing")]
    EmptyList(String),
    #[error("`{0}` is true or false")]
    NotAFlag(String),
    #[error("needs `min_v := …`, `max_v := …` or both")]
    NoBounds,
    #[error("not a built-in audit")]
    NotBuiltin,
    #[error("the built-in audit `{0}` has no implementation")]
    NotImplemented(String),
}

/// One call of a built-in audit being rendered.
struct Builtin<'a> {
    name: &'static str,
    args: Args<'a>,
    /// The audited table (or a parenthesised, aliased subquery).
    table: &'a str,
    /// Another model's table at the version this build uses, for the cross-model audits.
    table_of: &'a dyn Fn(&str) -> Option<String>,
}

impl Builtin<'_> {
    /// The audited table's rows for which any of `conditions` holds.
    fn where_any(&self, conditions: Vec<String>) -> String {
        format!("SELECT * FROM {} WHERE {}", self.table, any_of(conditions))
    }
}

/// How a built-in audit makes its query.
type AuditSql = fn(&Builtin<'_>) -> Result<String, AuditArgError>;

/// The built-in audits by name (`BUILTINS` lists the same names, for lookups that need no implementation).
const IMPLEMENTATIONS: &[(&str, AuditSql)] = &[
    ("not_null", not_null),
    ("unique_values", unique_values),
    (
        "unique_combination_of_columns",
        unique_combination_of_columns,
    ),
    ("accepted_values", accepted_values),
    ("not_accepted_values", not_accepted_values),
    ("number_of_rows", number_of_rows),
    ("forall", forall),
    ("accepted_range", accepted_range),
    ("at_least_one", at_least_one),
    ("not_constant", not_constant),
    ("not_empty_string", not_empty_string),
    ("not_null_proportion", not_null_proportion),
    ("sequential_values", sequential_values),
    ("mutually_exclusive_ranges", mutually_exclusive_ranges),
    ("valid_uuid", valid_uuid),
    ("valid_url", valid_url),
    ("valid_email", valid_email),
    ("valid_http_method", valid_http_method),
    ("match_regex_pattern_list", match_regex_pattern_list),
    ("not_match_regex_pattern_list", match_regex_pattern_list),
    ("match_like_pattern_list", match_like_pattern_list),
    ("not_match_like_pattern_list", match_like_pattern_list),
    ("string_length_between", string_length_between),
    ("string_length_equal", string_length_equal),
    ("z_score", z_score),
    ("stddev_in_range", stddev_in_range),
    ("mean_in_range", stddev_in_range),
    ("kl_divergence", kl_divergence),
    ("chi_square", chi_square),
    ("relationship", relationship),
    ("cardinality_equality", cardinality_equality),
    ("equality", equality),
    ("equal_row_count", equal_row_count),
    ("fewer_rows_than", equal_row_count),
];

/// The query for the bad rows of `table` by built-in `audit`; `table_of` finds other models' tables.
pub(super) fn render_builtin(
    audit: &ModelAudit,
    table: &str,
    table_of: &dyn Fn(&str) -> Option<String>,
) -> Result<String, AuditArgError> {
    let AuditSource::Builtin(name) = audit.source else {
        return Err(AuditArgError::NotBuiltin);
    };
    let Some((_, sql)) = IMPLEMENTATIONS.iter().find(|(n, _)| *n == name) else {
        return Err(AuditArgError::NotImplemented(name.to_string()));
    };
    sql(&Builtin {
        name,
        args: Args(audit),
        table,
        table_of,
    })
}

/// Arguments of one audit call, read as what each built-in expects.
struct Args<'a>(&'a ModelAudit);

impl Args<'_> {
    fn expr(&self, key: &str) -> Result<String, AuditArgError> {
        self.0
            .args
            .get(key)
            .map(|e| e.to_string())
            .ok_or_else(|| AuditArgError::Missing(key.to_string()))
    }

    /// An argument that may be absent or NULL.
    fn optional(&self, key: &str) -> Option<String> {
        self.0
            .args
            .get(key)
            .filter(|e| !matches!(e, Expr::Value(v) if v.value == SqlValue::Null))
            .map(|e| e.to_string())
    }

    /// `[a, b]`, `(a, b)` or a single expression, as its items.
    fn list(&self, key: &str) -> Result<Vec<String>, AuditArgError> {
        let expr = self
            .0
            .args
            .get(key)
            .ok_or_else(|| AuditArgError::MissingList(key.to_string()))?;
        let items: Vec<String> = match expr {
            Expr::Array(array) => array.elem.iter().map(|e| e.to_string()).collect(),
            Expr::Tuple(items) => items.iter().map(|e| e.to_string()).collect(),
            Expr::Nested(inner) => vec![inner.to_string()],
            single => vec![single.to_string()],
        };
        if items.is_empty() {
            return Err(AuditArgError::EmptyList(key.to_string()));
        }
        Ok(items)
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, AuditArgError> {
        match self.0.args.get(key) {
            None => Ok(default),
            Some(Expr::Value(v)) => match &v.value {
                SqlValue::Boolean(b) => Ok(*b),
                _ => Err(AuditArgError::NotAFlag(key.to_string())),
            },
            Some(_) => Err(AuditArgError::NotAFlag(key.to_string())),
        }
    }
}

fn any_of(conditions: impl IntoIterator<Item = String>) -> String {
    let parts: Vec<String> = conditions.into_iter().collect();
    if parts.is_empty() {
        "FALSE".into()
    } else {
        parts.join(" OR ")
    }
}

/// `value` outside [`min_v`, `max_v`] (bounds optional; exclusive when `inclusive := false`).
fn out_of_range(args: &Args<'_>, value: &str) -> Result<String, AuditArgError> {
    let inclusive = args.flag("inclusive", true)?;
    let (below, above) = if inclusive { ("<", ">") } else { ("<=", ">=") };
    let mut conditions = Vec::new();
    if let Some(min) = args.optional("min_v") {
        conditions.push(format!("{value} {below} {min}"));
    }
    if let Some(max) = args.optional("max_v") {
        conditions.push(format!("{value} {above} {max}"));
    }
    if conditions.is_empty() {
        return Err(AuditArgError::NoBounds);
    }
    Ok(any_of(conditions))
}

const UUID_PATTERN: &str =
    "^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$";
const URL_PATTERN: &str = r"^(https?|ftp)://[^\s/$.?#].[^\s]*$";
const EMAIL_PATTERN: &str = r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$";

fn not_null(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    Ok(b.where_any(
        a.list("columns")?
            .iter()
            .map(|c| format!("{c} IS NULL"))
            .collect(),
    ))
}

fn unique_values(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let columns = a.list("columns")?;
    let ranks: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!("row_number() OVER (PARTITION BY {c} ORDER BY {c}) AS _lake_rank_{i}")
        })
        .collect();
    let duplicated: Vec<String> = (0..columns.len())
        .map(|i| format!("_lake_rank_{i} > 1"))
        .collect();
    Ok(format!(
        "SELECT * FROM (SELECT {} FROM {t}) AS ranked WHERE {}",
        ranks.join(", "),
        any_of(duplicated)
    ))
}

fn unique_combination_of_columns(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let columns = a.list("columns")?.join(", ");
    Ok(format!(
        "SELECT {columns} FROM {t} GROUP BY {columns} HAVING COUNT(*) > 1"
    ))
}

fn accepted_values(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE {} NOT IN ({})",
        a.expr("column")?,
        a.list("is_in")?.join(", ")
    ))
}

fn not_accepted_values(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE {} IN ({})",
        a.expr("column")?,
        a.list("is_in")?.join(", ")
    ))
}

fn number_of_rows(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let threshold = a.expr("threshold")?;
    Ok(format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM {t} LIMIT {threshold} + 1) AS limited HAVING COUNT(*) <= {threshold}"
    ))
}

fn forall(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    Ok(b.where_any(
        a.list("criteria")?
            .iter()
            .map(|c| format!("NOT ({c})"))
            .collect(),
    ))
}

fn accepted_range(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE {}",
        out_of_range(a, &a.expr("column")?)?
    ))
}

fn at_least_one(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT 1 FROM {t} GROUP BY 1 HAVING COUNT({}) = 0",
        a.expr("column")?
    ))
}

fn not_constant(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT 1 FROM (SELECT COUNT(DISTINCT {}) AS t_cardinality FROM {t}) AS r WHERE r.t_cardinality <= 1",
        a.expr("column")?
    ))
}

fn not_empty_string(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE {} = ''",
        a.expr("column")?
    ))
}

fn not_null_proportion(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let column = a.expr("column")?;
    Ok(format!(
        "SELECT * FROM (SELECT count(*) AS cnt_tot, count({column}) AS cnt_not_null FROM {t}) AS s \
         WHERE s.cnt_not_null <= s.cnt_tot * {}",
        a.expr("threshold")?
    ))
}

fn sequential_values(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let column = a.expr("column")?;
    let interval = a.optional("interval").unwrap_or_else(|| "1".into());
    Ok(format!(
        "SELECT * FROM (SELECT {column} AS value, LAG({column}) OVER (ORDER BY {column}) AS prv FROM {t}) AS windowed \
         WHERE NOT (value = prv + {interval})"
    ))
}

fn mutually_exclusive_ranges(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let lower = a.expr("lower_bound_column")?;
    let upper = a.expr("upper_bound_column")?;
    let partition = match a.0.args.get("partition_by") {
        Some(_) => format!("PARTITION BY {} ", a.list("partition_by")?.join(", ")),
        None => String::new(),
    };
    Ok(format!(
        "WITH window_functions AS (\
         SELECT {lower} AS lower_bound, {upper} AS upper_bound, \
         LEAD({lower}) OVER ({partition}ORDER BY {lower}, {upper}) AS next_lower_bound, \
         row_number() OVER ({partition}ORDER BY {lower} DESC, {upper} DESC) = 1 AS is_last_record \
         FROM {t}), calc AS (\
         SELECT *, COALESCE(lower_bound <= upper_bound, FALSE) AS lower_bound_lte_upper_bound, \
         COALESCE(upper_bound <= next_lower_bound, is_last_record, FALSE) AS upper_bound_lte_next_lower_bound \
         FROM window_functions) \
         SELECT * FROM calc WHERE NOT (lower_bound_lte_upper_bound AND upper_bound_lte_next_lower_bound)"
    ))
}

fn valid_uuid(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE NOT regexp_matches(lower({}), '{UUID_PATTERN}')",
        a.expr("column")?
    ))
}

fn valid_url(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE NOT regexp_matches({}, '{URL_PATTERN}')",
        a.expr("column")?
    ))
}

fn valid_email(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE NOT regexp_matches({}, '{EMAIL_PATTERN}')",
        a.expr("column")?
    ))
}

fn valid_http_method(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE NOT {} IN ('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT')",
        a.expr("column")?
    ))
}

fn match_regex_pattern_list(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let name = b.name;
    let column = a.expr("column")?;
    let negate = if name.starts_with("not_") { "" } else { "NOT " };
    Ok(b.where_any(
        a.list("patterns")?
            .iter()
            .map(|p| format!("{negate}regexp_matches({column}, {p})"))
            .collect(),
    ))
}

fn match_like_pattern_list(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let name = b.name;
    let column = a.expr("column")?;
    let negate = if name.starts_with("not_") { "" } else { "NOT " };
    Ok(b.where_any(
        a.list("patterns")?
            .iter()
            .map(|p| format!("{negate}{column} LIKE {p}"))
            .collect(),
    ))
}

fn string_length_between(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE {}",
        out_of_range(a, &format!("length({})", a.expr("column")?))?
    ))
}

fn string_length_equal(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    Ok(format!(
        "SELECT * FROM {t} WHERE length({}) != {}",
        a.expr("column")?,
        a.expr("v")?
    ))
}

fn z_score(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let column = a.expr("column")?;
    Ok(format!(
        "WITH stats AS (SELECT avg({column}) AS mean_value, stddev({column}) AS stddev_value FROM {t}) \
         SELECT {column}, ({column} - mean_value) / NULLIF(stddev_value, 0) AS z_score FROM {t}, stats \
         WHERE abs(({column} - mean_value) / NULLIF(stddev_value, 0)) > {}",
        a.expr("threshold")?
    ))
}

fn stddev_in_range(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let name = b.name;
    let function = if name == "stddev_in_range" {
        "stddev"
    } else {
        "avg"
    };
    Ok(format!(
        "SELECT * FROM (SELECT {function}({}) AS value FROM {t}) AS s WHERE {}",
        a.expr("column")?,
        out_of_range(a, "value")?
    ))
}

/// Symmetric Kullback-Leibler divergence (natural log) between the value distributions of two
/// columns; values absent from one side contribute nothing, as in SQLMesh.
fn kl_divergence(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let (source, target) = (a.expr("source_column")?, a.expr("target_column")?);
    Ok(format!(
        "WITH source_counts AS (SELECT {source} AS v, count(*) AS n FROM {t} GROUP BY 1), \
         target_counts AS (SELECT {target} AS v, count(*) AS n FROM {t} GROUP BY 1), \
         source_p AS (SELECT v, n / sum(n) OVER () AS p FROM source_counts), \
         target_q AS (SELECT v, n / sum(n) OVER () AS q FROM target_counts), \
         joined AS (SELECT coalesce(source_p.p, 0) AS p, coalesce(target_q.q, 0) AS q \
         FROM source_p FULL OUTER JOIN target_q ON source_p.v = target_q.v) \
         SELECT coalesce(sum(p * ln(p / NULLIF(q, 0))), 0) + coalesce(sum(q * ln(q / NULLIF(p, 0))), 0) \
         AS kl_divergence FROM joined HAVING kl_divergence > {}",
        a.expr("threshold")?
    ))
}

/// Pearson's chi-square test of independence over every cell of the contingency table (empty cells
/// included, which SQLMesh's version skips). With `dependent` (the default) the columns are expected
/// to be dependent: the audit fails when the statistic does not exceed `critical_value`.
fn chi_square(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let (a_col, b_col) = (a.expr("column_a")?, a.expr("column_b")?);
    let critical = a.expr("critical_value")?;
    let condition = a.optional("condition").unwrap_or_else(|| "TRUE".into());
    let failing = if a.flag("dependent", true)? {
        format!("NOT (chi_square > {critical})")
    } else {
        format!("NOT (chi_square <= {critical})")
    };
    Ok(format!(
        "WITH samples AS (SELECT {a_col} AS x_a, {b_col} AS x_b FROM {t} \
         WHERE {a_col} IS NOT NULL AND {b_col} IS NOT NULL AND ({condition})), \
         totals_a AS (SELECT x_a, count(*) AS tot_a FROM samples GROUP BY x_a), \
         totals_b AS (SELECT x_b, count(*) AS tot_b FROM samples GROUP BY x_b), \
         observed AS (SELECT x_a, x_b, count(*) AS n FROM samples GROUP BY x_a, x_b), \
         cells AS (SELECT totals_a.tot_a * totals_b.tot_b / (SELECT count(*) FROM samples) AS expected, \
         coalesce(observed.n, 0) AS observed FROM totals_a CROSS JOIN totals_b \
         LEFT JOIN observed ON observed.x_a = totals_a.x_a AND observed.x_b = totals_b.x_b) \
         SELECT ((SELECT count(*) FROM totals_a) - 1) * ((SELECT count(*) FROM totals_b) - 1) \
         AS degrees_of_freedom, sum((observed - expected) * (observed - expected) / expected) AS chi_square \
         FROM cells HAVING {failing}"
    ))
}

fn relationship(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let table_of = b.table_of;
    let to = a.expr("to")?;
    let source = a.expr("source_column")?;
    let target = a
        .optional("target_column")
        .unwrap_or_else(|| source.clone());
    let from_condition = a
        .optional("from_condition")
        .unwrap_or_else(|| "TRUE".into());
    let to_condition = a.optional("to_condition").unwrap_or_else(|| "TRUE".into());
    let parent = table_of(&to).unwrap_or(to);
    Ok(format!(
        "SELECT child.source_column FROM (SELECT {source} AS source_column FROM {t} \
         WHERE {source} IS NOT NULL AND {from_condition}) AS child \
         LEFT JOIN (SELECT {target} AS target_column FROM {parent} WHERE {to_condition}) AS parent \
         ON child.source_column = parent.target_column WHERE parent.target_column IS NULL"
    ))
}

/// Cross-model comparisons (`to` is another model, read at the version this build uses).
fn cardinality_equality(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let table_of = b.table_of;
    let to = a.expr("to")?;
    let other = table_of(&to).unwrap_or(to);
    let (source, target) = (a.expr("source_column")?, a.expr("target_column")?);
    Ok(format!(
        "WITH table_a AS (SELECT {source} AS value, count(*) AS num_rows FROM {t} GROUP BY 1), \
         table_b AS (SELECT {target} AS value, count(*) AS num_rows FROM {other} GROUP BY 1) \
         (SELECT * FROM table_a EXCEPT SELECT * FROM table_b) \
         UNION ALL (SELECT * FROM table_b EXCEPT SELECT * FROM table_a)"
    ))
}

/// As SQLMesh defines it: rows of this model (on `columns`) that the other model lacks.
fn equality(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let table_of = b.table_of;
    let to = a.expr("to")?;
    let other = table_of(&to).unwrap_or(to);
    let columns = a.list("columns")?.join(", ");
    Ok(format!(
        "SELECT {columns} FROM {t} EXCEPT SELECT {columns} FROM {other}"
    ))
}

fn equal_row_count(b: &Builtin<'_>) -> Result<String, AuditArgError> {
    let a = &b.args;
    let t = b.table;
    let name = b.name;
    let table_of = b.table_of;
    let to = a.expr("to")?;
    let other = table_of(&to).unwrap_or(to);
    let fails = if name == "equal_row_count" {
        "!="
    } else {
        ">="
    };
    Ok(format!(
        "SELECT src.cnt AS row_count, tgt.cnt AS other_row_count FROM (SELECT count(*) AS cnt FROM {t}) AS src \
         JOIN (SELECT count(*) AS cnt FROM {other}) AS tgt ON src.cnt {fails} tgt.cnt"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::BUILTINS;
    use super::IMPLEMENTATIONS;

    #[test]
    fn every_listed_builtin_has_its_implementation() {
        let implemented: Vec<&str> = IMPLEMENTATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(implemented, BUILTINS);
    }
}
