//! Audits: SQLMesh's built-in checks and a project's own (`audits/*.sql`), rendered to queries for bad rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sqlparser::ast::Expr;
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;

use crate::error::{LakeError, Result, SourceError, SourceFile};
use crate::project::block::{ValueKind, parse_block};
use crate::project::macros::{self, MacroContext};
use crate::sql::lex;
pub use builtin::AuditArgError;
use builtin::render_builtin;

mod builtin;

/// The suffix that turns any audit into a warning-only one.
const NON_BLOCKING: &str = "_non_blocking";

/// SQLMesh's built-in audits that lake implements.
pub const BUILTINS: &[&str] = &[
    "not_null",
    "unique_values",
    "unique_combination_of_columns",
    "accepted_values",
    "not_accepted_values",
    "number_of_rows",
    "forall",
    "accepted_range",
    "at_least_one",
    "not_constant",
    "not_empty_string",
    "not_null_proportion",
    "sequential_values",
    "mutually_exclusive_ranges",
    "valid_uuid",
    "valid_url",
    "valid_email",
    "valid_http_method",
    "match_regex_pattern_list",
    "not_match_regex_pattern_list",
    "match_like_pattern_list",
    "not_match_like_pattern_list",
    "string_length_between",
    "string_length_equal",
    "z_score",
    "stddev_in_range",
    "mean_in_range",
    "kl_divergence",
    "chi_square",
    "relationship",
    "cardinality_equality",
    "equality",
    "equal_row_count",
    "fewer_rows_than",
];

/// An audit written in the project: `AUDIT (name x, blocking false); SELECT … FROM @this_model WHERE …`.
#[derive(Debug, Clone)]
pub struct ProjectAudit {
    pub name: String,
    pub blocking: bool,
    /// The query template (macro variables and the audit's arguments as `@name`).
    pub query: String,
    /// `defaults (x = 1, …)`: argument values used when a model does not pass them.
    pub defaults: Vec<(String, String)>,
    pub file: SourceFile,
}

/// What an audit call resolves to.
#[derive(Debug, Clone)]
pub enum AuditSource {
    Builtin(&'static str),
    Project(Arc<ProjectAudit>),
}

/// One audit attached to a model, with its arguments parsed as SQL expressions.
#[derive(Debug, Clone)]
pub struct ModelAudit {
    /// As the model calls it (`not_null_non_blocking`).
    pub name: String,
    pub source: AuditSource,
    pub blocking: bool,
    pub args: BTreeMap<String, Expr>,
}

/// How an audit's query refers to other models (`relationship(to := other.model)`).
pub trait ModelResolver {
    /// The SQL naming `model`'s table for this evaluation, or `None` when it is not a model.
    fn table_of(&self, model: &str) -> Option<String>;
}

/// Reads every `audits/*.sql` file of the project.
pub fn load_project_audits(root: &Path) -> Result<BTreeMap<String, Arc<ProjectAudit>>> {
    let mut audits = BTreeMap::new();
    let mut errors: Vec<LakeError> = Vec::new();
    for file in crate::project::read_files(root, "audits", &["sql"])? {
        match parse_audit_file(&file) {
            Ok(parsed) => {
                for audit in parsed {
                    if let Some(first) = audits.get(&audit.name) {
                        let first: &Arc<ProjectAudit> = first;
                        errors.push(
                            audit
                                .file
                                .error(0, 1, format!("audit `{}` is defined twice", audit.name))
                                .with_help(format!(
                                    "the first definition is in {}",
                                    first.file.display_path
                                ))
                                .into(),
                        );
                    } else {
                        audits.insert(audit.name.clone(), Arc::new(audit));
                    }
                }
            }
            Err(e) => errors.push(e.into()),
        }
    }
    match errors.len() {
        0 => Ok(audits),
        _ => Err(crate::error::collect(errors)),
    }
}

/// The `AUDIT (…)` blocks of one file, each with the query that follows it.
pub fn parse_audit_file(file: &SourceFile) -> std::result::Result<Vec<ProjectAudit>, SourceError> {
    let mut from = 0;
    let mut audits = Vec::new();
    while lex::skip_blank(&file.text, from) < file.text.len() {
        let (audit, end) = parse_audit_block(file, from)?;
        audits.push(audit);
        from = end;
    }
    Ok(audits)
}

/// The `AUDIT (…)` block at `from` (in an audit file, or among a model's statements) and the query that
/// follows it, with the offset just past that query's `;`.
pub fn parse_audit_block(
    file: &SourceFile,
    from: usize,
) -> std::result::Result<(ProjectAudit, usize), SourceError> {
    let text: &str = &file.text;
    let block = parse_block(file, "AUDIT", from)?;
    let mut name = None;
    let mut blocking = true;
    let mut defaults = Vec::new();
    for prop in &block.properties {
        match prop.key.as_str() {
            "name" => name = prop.value.as_text().map(|n| n.to_lowercase()),
            "blocking" => match prop.value.kind {
                ValueKind::Bool(b) => blocking = b,
                _ => {
                    return Err(file
                        .error(
                            prop.value.offset,
                            prop.value.len,
                            "`blocking` is true or false",
                        )
                        .with_label("expected true or false"));
                }
            },
            "defaults" => {
                for item in prop.value.items() {
                    if let ValueKind::Assign { key, value } = &item.kind {
                        defaults.push((key.to_lowercase(), value.raw.clone()));
                    }
                }
            }
            // The query is DuckDB SQL like the models'; other properties describe the audit only.
            _ => {}
        }
    }
    let Some(name) = name else {
        return Err(file
            .error(block.keyword_offset, 5, "the AUDIT block has no `name`")
            .with_label("this audit")
            .with_help("write `AUDIT (name my_audit);` before its query"));
    };
    // The query runs to the next top-level `;` (or the end of the file).
    let rest = &text[block.body_offset..];
    let pieces = lex::split_statements(rest, block.body_offset);
    let Some(query) = pieces.first() else {
        return Err(file
            .error(
                block.keyword_offset,
                5,
                format!("audit `{name}` has no query"),
            )
            .with_label("this audit")
            .with_help("follow the AUDIT block with a query that selects the bad rows"));
    };
    check_query_parses(file, &name, query.text, query.offset, &defaults)?;
    let audit = ProjectAudit {
        name,
        blocking,
        query: query.text.to_string(),
        defaults,
        file: file.clone(),
    };
    // Past the query and its `;`.
    let end = query.offset + query.text.len();
    let next = text[end..].find(';').map_or(text.len(), |i| end + i + 1);
    Ok((audit, next))
}

/// An audit query that does not parse is an error where it is written, when the project loads (as SQLMesh
/// reports it), not a plan that applies and an audit that fails later. A query whose macros need the
/// arguments of a call (`@column`) cannot be rendered alone: it is checked when it runs.
fn check_query_parses(
    file: &SourceFile,
    name: &str,
    query: &str,
    offset: usize,
    defaults: &[(String, String)],
) -> std::result::Result<(), SourceError> {
    let mut ctx = MacroContext::for_loading("", &BTreeMap::new());
    ctx.this_model = "lake_audited".into();
    ctx.locals.extend(defaults.iter().cloned());
    let Ok(rendered) = macros::render(query, &ctx) else {
        return Ok(());
    };
    match crate::sql::parse(&rendered.sql) {
        Ok(_) => Ok(()),
        Err(e) => Err(file
            .error(
                offset + rendered.original_offset(e.offset).min(query.len()),
                1,
                format!("the query of audit `{name}` does not parse: {}", e.message),
            )
            .with_label("here")
            .with_help("an audit's query selects the bad rows: `SELECT * FROM @this_model WHERE amount < 0`")),
    }
}

/// An audit reference: `not_null(columns := [a, b])`, arguments kept as written.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditCall {
    pub name: String,
    pub args: Vec<(String, String)>,
}

/// A model's audit calls, where they are written, and the audits its own file defines.
pub struct AuditSite<'a> {
    pub file: &'a SourceFile,
    pub calls: &'a [AuditCall],
    /// The AUDIT blocks after the model's query.
    pub inline: &'a [Arc<ProjectAudit>],
    /// Where an error points when a call cannot be found in the file (the model's name).
    pub fallback_offset: usize,
}

/// Resolves a model's `audits (…)` against the built-ins and the project's audits, parsing every argument.
pub fn resolve(
    model: &AuditSite<'_>,
    project_audits: &BTreeMap<String, Arc<ProjectAudit>>,
) -> std::result::Result<Vec<ModelAudit>, SourceError> {
    model
        .calls
        .iter()
        .map(|call| resolve_one(model, call, project_audits))
        .collect()
}

fn resolve_one(
    model: &AuditSite<'_>,
    call: &AuditCall,
    project_audits: &BTreeMap<String, Arc<ProjectAudit>>,
) -> std::result::Result<ModelAudit, SourceError> {
    // Errors point at the call in the MODEL block.
    let at = model
        .file
        .text
        .to_lowercase()
        .find(&call.name)
        .unwrap_or(model.fallback_offset);
    let located = |message: String, help: String| {
        model
            .file
            .error(at, call.name.len().max(1), message)
            .with_label("this audit")
            .with_help(help)
    };
    let (base, non_blocking) = match call.name.strip_suffix(NON_BLOCKING) {
        Some(base) => (base, true),
        None => (call.name.as_str(), false),
    };
    // An audit written in the model's own file comes before a project audit of the same name.
    let own = model.inline.iter().find(|a| a.name == base);
    let (source, blocking, defaults) = if let Some(audit) = own.or_else(|| project_audits.get(base))
    {
        (
            AuditSource::Project(audit.clone()),
            audit.blocking && !non_blocking,
            audit.defaults.clone(),
        )
    } else if let Some(builtin) = BUILTINS.iter().find(|b| **b == base) {
        (AuditSource::Builtin(builtin), !non_blocking, Vec::new())
    } else {
        let known: Vec<&str> = BUILTINS
            .iter()
            .copied()
            .chain(project_audits.keys().map(String::as_str))
            .chain(model.inline.iter().map(|a| a.name.as_str()))
            .collect();
        // `did_you_mean` already says the whole hint.
        let hint = crate::error::did_you_mean(base, known.iter().copied()).unwrap_or_else(|| {
            "define it in audits/*.sql or after the model's query with `AUDIT (name …);`, or use a built-in such as not_null or unique_values".into()
        });
        return Err(located(format!("unknown audit `{}`", call.name), hint));
    };
    let mut args = BTreeMap::new();
    for (key, raw) in defaults.iter().chain(call.args.iter()) {
        let expr = parse_expr(raw).map_err(|message| {
            located(
                format!("argument `{key}` of audit `{}` is not a SQL expression: {message}", call.name),
                "write arguments as SQL: `columns := [a, b]`, `threshold := 10`, `is_in := ('x', 'y')`".into(),
            )
        })?;
        args.insert(key.to_lowercase(), expr);
    }
    let audit = ModelAudit {
        name: call.name.clone(),
        source,
        blocking,
        args,
    };
    // A built-in missing a required argument is reported at load, not when it first runs.
    if let AuditSource::Builtin(_) = audit.source {
        render_builtin(&audit, "t", &|_: &str| None).map_err(|message| {
            located(
                format!("audit `{}`: {message}", call.name),
                "see the built-in audits in docs/models.md".into(),
            )
        })?;
    }
    Ok(audit)
}

fn parse_expr(text: &str) -> std::result::Result<Expr, sqlparser::parser::ParserError> {
    Parser::new(&DuckDbDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
}

/// Why an audit's query cannot be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Arguments(#[from] AuditArgError),
    /// A project audit's macros failed in its file.
    #[error("{message} (in {file})")]
    Macro { message: String, file: String },
}

/// The audit's query for bad rows against `this_model` (a table name or a parenthesised, aliased subquery).
pub fn render(
    audit: &ModelAudit,
    this_model: &str,
    ctx: &MacroContext,
    resolver: &dyn ModelResolver,
) -> std::result::Result<String, RenderError> {
    match &audit.source {
        AuditSource::Builtin(_) => Ok(render_builtin(audit, this_model, &|name: &str| {
            resolver.table_of(name)
        })?),
        AuditSource::Project(project) => {
            let mut ctx = ctx.clone();
            ctx.this_model = this_model.to_string();
            for (key, value) in &audit.args {
                ctx.locals.insert(key.clone(), value.to_string());
            }
            macros::render(&project.query, &ctx)
                .map(|r| with_model_tables(&r.sql, resolver))
                .map_err(|e| RenderError::Macro {
                    message: e.message,
                    file: project.file.display_path.clone(),
                })
        }
    }
}

/// The audit's query with each table that names a model (`main.customers`, or with the default catalog
/// `"shop"."main"."customers"`) reading that model's version for this evaluation, as SQLMesh resolves them.
/// A query that does not parse is left to the engine, which reports it.
fn with_model_tables(sql: &str, resolver: &dyn ModelResolver) -> String {
    let Ok(statements) = crate::sql::parse(sql) else {
        return sql.to_string();
    };
    let edits = crate::sql::table_refs(sql, &statements)
        .into_iter()
        .filter_map(|r| {
            let table = resolver.table_of(&r.display())?;
            let text = match (r.has_alias, r.parts.last()) {
                (false, Some(name)) => {
                    format!("{table} AS {}", crate::sql::quote_ident(&name.value))
                }
                _ => table,
            };
            Some((r.offset, r.len, text))
        })
        .collect();
    crate::sql::replace_spans(sql, edits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelDefaults;
    use crate::engine::Engine;
    use crate::project::model::{Model, parse_model};

    fn model_with(audits: &str) -> Model {
        parse_model(
            SourceFile::new(
                "models/t.sql",
                format!("MODEL (name s.t, kind FULL, audits ({audits}));\nSELECT 1"),
            ),
            Path::new("/p/models/t.sql"),
            &ModelDefaults::default(),
        )
        .expect("model")
    }

    fn call(text: &str) -> ModelAudit {
        let project = BTreeMap::from([(
            "no_negative_ids".to_string(),
            Arc::new(
                parse_audit_file(&SourceFile::new(
                    "audits/a.sql",
                    "AUDIT (name no_negative_ids, blocking false, defaults (limit_v = 0));\nSELECT * FROM @this_model WHERE @column < @limit_v;",
                ))
                .expect("audit")
                .remove(0),
            ),
        )]);
        resolve(&model_with(text).audit_site(), &project)
            .expect("resolves")
            .remove(0)
    }

    struct Tables;
    impl ModelResolver for Tables {
        fn table_of(&self, model: &str) -> Option<String> {
            (model == "s.parent").then(|| "parent".to_string())
        }
    }

    fn sql(text: &str) -> String {
        let ctx = MacroContext::for_loading("local", &BTreeMap::new());
        render(&call(text), "t", &ctx, &Tables).expect("renders")
    }

    #[test]
    fn builtins_render_to_queries_for_bad_rows() {
        let cases = [
            (
                "not_null(columns := [a, b])",
                "SELECT * FROM t WHERE a IS NULL OR b IS NULL",
            ),
            (
                "unique_values(columns := (id))",
                "SELECT * FROM (SELECT row_number() OVER (PARTITION BY id ORDER BY id) AS _lake_rank_0 FROM t) AS ranked WHERE _lake_rank_0 > 1",
            ),
            (
                "unique_combination_of_columns(columns := (a, b))",
                "SELECT a, b FROM t GROUP BY a, b HAVING COUNT(*) > 1",
            ),
            (
                "accepted_values(column := a, is_in := ('x', 'y'))",
                "SELECT * FROM t WHERE a NOT IN ('x', 'y')",
            ),
            (
                "not_accepted_values(column := a, is_in := [1])",
                "SELECT * FROM t WHERE a IN (1)",
            ),
            (
                "number_of_rows(threshold := 10)",
                "SELECT COUNT(*) FROM (SELECT 1 FROM t LIMIT 10 + 1) AS limited HAVING COUNT(*) <= 10",
            ),
            (
                "forall(criteria := [a > 0, b IS NOT NULL])",
                "SELECT * FROM t WHERE NOT (a > 0) OR NOT (b IS NOT NULL)",
            ),
            (
                "accepted_range(column := a, min_v := 0, max_v := 9)",
                "SELECT * FROM t WHERE a < 0 OR a > 9",
            ),
            (
                "accepted_range(column := a, max_v := 9, inclusive := false)",
                "SELECT * FROM t WHERE a >= 9",
            ),
            (
                "at_least_one(column := a)",
                "SELECT 1 FROM t GROUP BY 1 HAVING COUNT(a) = 0",
            ),
            (
                "not_empty_string(column := a)",
                "SELECT * FROM t WHERE a = ''",
            ),
            (
                "string_length_equal(column := a, v := 3)",
                "SELECT * FROM t WHERE length(a) != 3",
            ),
            (
                "match_like_pattern_list(column := a, patterns := ('x%', '%y'))",
                "SELECT * FROM t WHERE NOT a LIKE 'x%' OR NOT a LIKE '%y'",
            ),
            (
                "not_match_regex_pattern_list(column := a, patterns := ['^x'])",
                "SELECT * FROM t WHERE regexp_matches(a, '^x')",
            ),
            (
                "not_constant(column := a)",
                "SELECT 1 FROM (SELECT COUNT(DISTINCT a) AS t_cardinality FROM t) AS r WHERE r.t_cardinality <= 1",
            ),
            (
                "not_null_proportion(column := a, threshold := 0.9)",
                "SELECT * FROM (SELECT count(*) AS cnt_tot, count(a) AS cnt_not_null FROM t) AS s WHERE s.cnt_not_null <= s.cnt_tot * 0.9",
            ),
            (
                "sequential_values(column := a)",
                "SELECT * FROM (SELECT a AS value, LAG(a) OVER (ORDER BY a) AS prv FROM t) AS windowed WHERE NOT (value = prv + 1)",
            ),
            (
                "mutually_exclusive_ranges(lower_bound_column := lo, upper_bound_column := hi)",
                "WITH window_functions AS (SELECT lo AS lower_bound, hi AS upper_bound, LEAD(lo) OVER (ORDER BY lo, hi) AS next_lower_bound, row_number() OVER (ORDER BY lo DESC, hi DESC) = 1 AS is_last_record FROM t), calc AS (SELECT *, COALESCE(lower_bound <= upper_bound, FALSE) AS lower_bound_lte_upper_bound, COALESCE(upper_bound <= next_lower_bound, is_last_record, FALSE) AS upper_bound_lte_next_lower_bound FROM window_functions) SELECT * FROM calc WHERE NOT (lower_bound_lte_upper_bound AND upper_bound_lte_next_lower_bound)",
            ),
            (
                "valid_uuid(column := a)",
                "SELECT * FROM t WHERE NOT regexp_matches(lower(a), '^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')",
            ),
            (
                "valid_url(column := a)",
                "SELECT * FROM t WHERE NOT regexp_matches(a, '^(https?|ftp)://[^\\s/$.?#].[^\\s]*$')",
            ),
            (
                "valid_email(column := a)",
                "SELECT * FROM t WHERE NOT regexp_matches(a, '^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\\.[a-zA-Z0-9-.]+$')",
            ),
            (
                "valid_http_method(column := a)",
                "SELECT * FROM t WHERE NOT a IN ('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT')",
            ),
            (
                "match_regex_pattern_list(column := a, patterns := ['^x', 'y$'])",
                "SELECT * FROM t WHERE NOT regexp_matches(a, '^x') OR NOT regexp_matches(a, 'y$')",
            ),
            (
                "not_match_like_pattern_list(column := a, patterns := ['x%'])",
                "SELECT * FROM t WHERE a LIKE 'x%'",
            ),
            (
                "string_length_between(column := a, min_v := 1, max_v := 5)",
                "SELECT * FROM t WHERE length(a) < 1 OR length(a) > 5",
            ),
            (
                "z_score(column := a, threshold := 3)",
                "WITH stats AS (SELECT avg(a) AS mean_value, stddev(a) AS stddev_value FROM t) SELECT a, (a - mean_value) / NULLIF(stddev_value, 0) AS z_score FROM t, stats WHERE abs((a - mean_value) / NULLIF(stddev_value, 0)) > 3",
            ),
            (
                "stddev_in_range(column := a, min_v := 1, max_v := 2)",
                "SELECT * FROM (SELECT stddev(a) AS value FROM t) AS s WHERE value < 1 OR value > 2",
            ),
            (
                "mean_in_range(column := a, max_v := 2, inclusive := false)",
                "SELECT * FROM (SELECT avg(a) AS value FROM t) AS s WHERE value >= 2",
            ),
            (
                "kl_divergence(source_column := a, target_column := b, threshold := 0.1)",
                "WITH source_counts AS (SELECT a AS v, count(*) AS n FROM t GROUP BY 1), target_counts AS (SELECT b AS v, count(*) AS n FROM t GROUP BY 1), source_p AS (SELECT v, n / sum(n) OVER () AS p FROM source_counts), target_q AS (SELECT v, n / sum(n) OVER () AS q FROM target_counts), joined AS (SELECT coalesce(source_p.p, 0) AS p, coalesce(target_q.q, 0) AS q FROM source_p FULL OUTER JOIN target_q ON source_p.v = target_q.v) SELECT coalesce(sum(p * ln(p / NULLIF(q, 0))), 0) + coalesce(sum(q * ln(q / NULLIF(p, 0))), 0) AS kl_divergence FROM joined HAVING kl_divergence > 0.1",
            ),
            (
                "chi_square(column_a := a, column_b := b, critical_value := 9.48773)",
                "WITH samples AS (SELECT a AS x_a, b AS x_b FROM t WHERE a IS NOT NULL AND b IS NOT NULL AND (TRUE)), totals_a AS (SELECT x_a, count(*) AS tot_a FROM samples GROUP BY x_a), totals_b AS (SELECT x_b, count(*) AS tot_b FROM samples GROUP BY x_b), observed AS (SELECT x_a, x_b, count(*) AS n FROM samples GROUP BY x_a, x_b), cells AS (SELECT totals_a.tot_a * totals_b.tot_b / (SELECT count(*) FROM samples) AS expected, coalesce(observed.n, 0) AS observed FROM totals_a CROSS JOIN totals_b LEFT JOIN observed ON observed.x_a = totals_a.x_a AND observed.x_b = totals_b.x_b) SELECT ((SELECT count(*) FROM totals_a) - 1) * ((SELECT count(*) FROM totals_b) - 1) AS degrees_of_freedom, sum((observed - expected) * (observed - expected) / expected) AS chi_square FROM cells HAVING NOT (chi_square > 9.48773)",
            ),
            (
                "cardinality_equality(source_column := a, target_column := b, to := s.parent)",
                "WITH table_a AS (SELECT a AS value, count(*) AS num_rows FROM t GROUP BY 1), table_b AS (SELECT b AS value, count(*) AS num_rows FROM parent GROUP BY 1) (SELECT * FROM table_a EXCEPT SELECT * FROM table_b) UNION ALL (SELECT * FROM table_b EXCEPT SELECT * FROM table_a)",
            ),
            (
                "equality(columns := [a, b], to := s.parent)",
                "SELECT a, b FROM t EXCEPT SELECT a, b FROM parent",
            ),
            (
                "equal_row_count(to := s.parent)",
                "SELECT src.cnt AS row_count, tgt.cnt AS other_row_count FROM (SELECT count(*) AS cnt FROM t) AS src JOIN (SELECT count(*) AS cnt FROM parent) AS tgt ON src.cnt != tgt.cnt",
            ),
            (
                "fewer_rows_than(to := s.parent)",
                "SELECT src.cnt AS row_count, tgt.cnt AS other_row_count FROM (SELECT count(*) AS cnt FROM t) AS src JOIN (SELECT count(*) AS cnt FROM parent) AS tgt ON src.cnt >= tgt.cnt",
            ),
            // A project audit: its own arguments and defaults, through the macro renderer.
            (
                "no_negative_ids(column := id)",
                "SELECT * FROM t WHERE id < 0",
            ),
            (
                "no_negative_ids(column := id, limit_v := 5)",
                "SELECT * FROM t WHERE id < 5",
            ),
        ];
        for (call, expected) in cases {
            assert_eq!(sql(call), expected, "{call}");
        }
        let rendered: std::collections::HashSet<&str> = cases
            .iter()
            .map(|(call, _)| call.split('(').next().unwrap_or_default())
            .chain(["relationship"])
            .collect();
        for builtin in BUILTINS {
            assert!(
                rendered.contains(builtin),
                "{builtin} has no rendered-SQL test"
            );
        }
        assert!(
            sql("relationship(to := s.parent, source_column := pid, target_column := id)")
                .contains(
                    "LEFT JOIN (SELECT id AS target_column FROM parent WHERE TRUE) AS parent"
                )
        );
    }

    #[test]
    fn blocking_follows_the_suffix_and_the_audit_block() {
        assert!(call("not_null(columns := [a])").blocking);
        assert!(!call("not_null_non_blocking(columns := [a])").blocking);
        assert!(
            !call("no_negative_ids(column := a)").blocking,
            "blocking false in its AUDIT block"
        );
    }

    #[test]
    fn bad_calls_are_located_errors() {
        let project = BTreeMap::new();
        let unknown = resolve(
            &model_with("not_nul(columns := [a])").audit_site(),
            &project,
        )
        .unwrap_err();
        assert!(
            unknown.to_string().contains("unknown audit `not_nul`"),
            "{unknown}"
        );
        let debug = format!("{unknown:?}");
        assert!(debug.contains("did you mean `not_null`?"), "{debug}");
        assert!(
            !debug.contains("did you mean `did you mean"),
            "the hint said once: {debug}"
        );
        let missing = resolve(
            &model_with("accepted_values(column := a)").audit_site(),
            &project,
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("needs the argument `is_in"),
            "{missing}"
        );
        let python = parse_audit_file(&SourceFile::new(
            "audits/x.sql",
            "AUDIT (blocking false); SELECT 1",
        ));
        assert!(python.unwrap_err().to_string().contains("has no `name`"));
    }

    /// Every built-in on a small table where the expected bad rows are known.
    #[test]
    fn builtins_find_exactly_the_bad_rows() {
        let engine = Engine::in_memory().expect("DuckDB");
        let session = engine.session().expect("session");
        session
            .execute(
                "CREATE TABLE t AS SELECT * FROM (VALUES \
                 (1, 'a', 'x@y.io', 'https://a.io', 'GET', '123e4567-e89b-12d3-a456-426614174000', 1, 3, 10), \
                 (2, 'b', 'bad', 'ftp://b.io/x', 'FETCH', 'nope', 2, 5, 10), \
                 (2, '', NULL, 'no url', 'POST', NULL, 4, 6, 10), \
                 (4, NULL, 'z@w.org', NULL, 'PUT', NULL, 5, 9, 10)) \
                 AS v(id, name, email, url, method, uuid, lo, hi, k); \
                 CREATE TABLE parent AS SELECT 1 AS id UNION ALL SELECT 2",
                || "fixture".into(),
            )
            .unwrap();
        let cases = [
            ("not_null(columns := [name, email])", 2),
            ("unique_values(columns := [id])", 1),
            ("unique_combination_of_columns(columns := [id, k])", 1),
            (
                "accepted_values(column := method, is_in := ('GET', 'POST'))",
                2,
            ),
            (
                "not_accepted_values(column := method, is_in := ('FETCH'))",
                1,
            ),
            // More rows than the threshold are required.
            ("number_of_rows(threshold := 3)", 0),
            ("number_of_rows(threshold := 4)", 1),
            ("forall(criteria := [id > 1, lo < hi])", 1),
            ("accepted_range(column := id, min_v := 1, max_v := 3)", 1),
            (
                "accepted_range(column := id, min_v := 1, inclusive := false)",
                1,
            ),
            ("at_least_one(column := url)", 0),
            ("not_constant(column := k)", 1),
            ("not_empty_string(column := name)", 1),
            ("not_null_proportion(column := email, threshold := 0.8)", 1),
            ("sequential_values(column := lo)", 1),
            (
                "mutually_exclusive_ranges(lower_bound_column := lo, upper_bound_column := hi)",
                3,
            ),
            ("valid_uuid(column := uuid)", 1),
            ("valid_url(column := url)", 1),
            ("valid_email(column := email)", 1),
            ("valid_http_method(column := method)", 1),
            (
                "match_regex_pattern_list(column := email, patterns := ['@', '\\.'])",
                1,
            ),
            (
                "not_match_regex_pattern_list(column := email, patterns := ['\\.org$'])",
                1,
            ),
            (
                "match_like_pattern_list(column := url, patterns := ['%://%'])",
                1,
            ),
            (
                "not_match_like_pattern_list(column := url, patterns := ['ftp%'])",
                1,
            ),
            (
                "string_length_between(column := name, min_v := 1, max_v := 1)",
                1,
            ),
            ("string_length_equal(column := method, v := 3)", 2),
            ("z_score(column := lo, threshold := 1.0)", 2),
            ("stddev_in_range(column := k, max_v := 1)", 0),
            ("mean_in_range(column := lo, min_v := 4)", 1),
            ("relationship(to := s.parent, source_column := id)", 1),
            // t has ids 1, 2, 2, 4; parent has 1, 2.
            (
                "cardinality_equality(source_column := id, target_column := id, to := s.parent)",
                3,
            ),
            ("equality(columns := [id], to := s.parent)", 1),
            ("equal_row_count(to := s.parent)", 1),
            ("fewer_rows_than(to := s.parent)", 1),
        ];
        let mismatches: Vec<String> = cases
            .iter()
            .filter_map(|(text, expected)| {
                let query = sql(text);
                let count = session
                    .query_strings(
                        &format!("SELECT count(*)::VARCHAR FROM ({query}) AS q"),
                        || query.clone(),
                    )
                    .unwrap();
                (count != [expected.to_string()])
                    .then(|| format!("{text}: {count:?} bad rows, expected {expected}\n  {query}"))
            })
            .collect();
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
        let covered: std::collections::HashSet<&str> = cases
            .iter()
            .chain(STATISTICAL_CASES)
            .map(|(text, _)| text.split('(').next().unwrap_or_default())
            .collect();
        for builtin in BUILTINS {
            assert!(covered.contains(builtin), "{builtin} has no test on data");
        }
    }

    /// On `t(a, b, x_a, x_b)`: a = [1, 1, 2, 2] and b = [1, 1, 1, 2] have a symmetric KL divergence of
    /// 0.2747; x_a and x_b are fully dependent (20 rows, two diagonal cells of 10), Pearson's chi-square 20.
    const STATISTICAL_CASES: &[(&str, usize)] = &[
        (
            "kl_divergence(source_column := a, target_column := b, threshold := 0.27)",
            1,
        ),
        (
            "kl_divergence(source_column := a, target_column := b, threshold := 0.28)",
            0,
        ),
        (
            "kl_divergence(source_column := a, target_column := a, threshold := 0)",
            0,
        ),
        (
            "chi_square(column_a := x_a, column_b := x_b, critical_value := 3.841)",
            0,
        ),
        (
            "chi_square(column_a := x_a, column_b := x_b, critical_value := 20.5)",
            1,
        ),
        (
            "chi_square(column_a := x_a, column_b := x_b, critical_value := 3.841, dependent := false)",
            1,
        ),
    ];

    #[test]
    fn statistical_audits_compute_the_textbook_values() {
        let engine = Engine::in_memory().expect("DuckDB");
        let session = engine.session().expect("session");
        session
            .execute(
                "CREATE TABLE t AS SELECT \
                 CASE WHEN i % 4 < 2 THEN 1 ELSE 2 END AS a, CASE WHEN i % 4 < 3 THEN 1 ELSE 2 END AS b, \
                 CASE WHEN i < 10 THEN 'A' ELSE 'B' END AS x_a, CASE WHEN i < 10 THEN 'X' ELSE 'Y' END AS x_b \
                 FROM range(20) AS r(i)",
                || "fixture".into(),
            )
            .unwrap();
        let values = |sql: &str| session.query_strings(sql, || sql.to_string()).unwrap();
        let kl = values(&format!(
            "SELECT round(kl_divergence, 4)::VARCHAR FROM ({})",
            sql("kl_divergence(source_column := a, target_column := b, threshold := 0)")
        ));
        assert_eq!(kl, ["0.2747"]);
        let chi = values(&format!(
            "SELECT chi_square::VARCHAR || ' ' || degrees_of_freedom::VARCHAR FROM ({})",
            sql("chi_square(column_a := x_a, column_b := x_b, critical_value := 1000)")
        ));
        assert_eq!(chi, ["20.0 1"]);
        for (text, expected) in STATISTICAL_CASES {
            let query = sql(text);
            let count = values(&format!("SELECT count(*)::VARCHAR FROM ({query}) AS q"));
            assert_eq!(count, [expected.to_string()], "{text}\n  {query}");
        }
    }
}
