//! SQL analysis with sqlparser (DuckDB dialect): table references, CTE names, normal form, reference rewriting.

pub mod ident;
pub mod lex;
pub mod lineage;
pub mod spark;

pub use ident::{IdentPart, ModelName, quote_ident, quote_ident_always, quote_literal};

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Query, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::SourceFile;

/// A table referenced in a query, located in the text that was parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRef {
    pub parts: Vec<IdentPart>,
    pub offset: usize,
    pub len: usize,
    /// Whether the query gives the table an alias (`FROM demo.orders AS o`).
    pub has_alias: bool,
}

impl TableRef {
    pub fn display(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.value.as_str())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// A parse failure located by byte offset in the parsed text.
#[derive(Debug, Clone)]
pub struct SqlError {
    pub offset: usize,
    pub message: String,
}

/// Parses SQL text (one or more statements) in DuckDB's dialect.
pub fn parse(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let parsed = Tokenizer::new(&DuckDbDialect {}, sql)
        .tokenize_with_location()
        .map_err(ParserError::from)
        .and_then(|tokens| {
            if let Some(error) = too_long_expression(&tokens) {
                return Err(error);
            }
            Parser::new(&DuckDbDialect {})
                .with_tokens_with_locations(tokens)
                .parse_statements()
        });
    parsed.map_err(|e| {
        let message = match e {
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
            ParserError::RecursionLimitExceeded => "query nested too deeply".into(),
        };
        // sqlparser appends " at Line: L, Column: C"; turn it into an offset.
        let index = SourceFile::new("", sql);
        let (text, offset) = match message.rsplit_once(" at Line: ") {
            Some((head, tail)) => {
                let mut nums = tail
                    .split(", Column: ")
                    .map(|n| n.trim().parse::<usize>().unwrap_or(1));
                let line = nums.next().unwrap_or(1);
                let col = nums.next().unwrap_or(1);
                (head.to_string(), index.offset_of(line, col))
            }
            // Errors at the end of the text carry no location: point at the last character.
            None if message.ends_with("EOF") => (message, sql.trim_end().len().saturating_sub(1)),
            None => (message, 0),
        };
        SqlError {
            offset,
            message: text,
        }
    })
}

/// Operators one expression may chain (`a + b + …`, `x OR y OR …`). sqlparser parses such a chain in a loop
/// but builds it as a tree as deep as the chain, which every later walk (and drop) recurses through, so a
/// long enough chain would overflow the stack. DuckDB refuses expressions deeper than 1,000 by default
/// (`max_expression_depth`), so this bound only stops what could never run.
const MAX_CHAINED_OPERATORS: usize = 10_000;

/// A located error for the first expression chaining more than [`MAX_CHAINED_OPERATORS`] operators, counted
/// per parenthesis level (plus the levels around it) and restarted at every comma and clause keyword.
fn too_long_expression(tokens: &[TokenWithSpan]) -> Option<ParserError> {
    let mut chains: Vec<usize> = vec![0];
    for token in tokens {
        let restarts = match &token.token {
            Token::LParen | Token::LBracket => {
                chains.push(0);
                continue;
            }
            Token::RParen | Token::RBracket => {
                if chains.len() > 1 {
                    chains.pop();
                }
                continue;
            }
            Token::Comma | Token::SemiColon => true,
            Token::Word(word) => !matches!(
                word.keyword,
                Keyword::NoKeyword
                    | Keyword::AND
                    | Keyword::OR
                    | Keyword::NOT
                    | Keyword::IS
                    | Keyword::NULL
                    | Keyword::TRUE
                    | Keyword::FALSE
                    | Keyword::LIKE
                    | Keyword::ILIKE
                    | Keyword::IN
                    | Keyword::BETWEEN
            ),
            _ => false,
        };
        let current = chains
            .last_mut()
            .expect("the outermost level is never popped");
        if restarts {
            *current = 0;
            continue;
        }
        let chains_an_operator = match &token.token {
            Token::Word(word) => matches!(word.keyword, Keyword::AND | Keyword::OR),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::DoubleColon
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret => true,
            _ => false,
        };
        if chains_an_operator {
            *current += 1;
            if *current + chains.len() > MAX_CHAINED_OPERATORS {
                let at = token.span.start;
                return Some(ParserError::ParserError(format!(
                    "expression too long: more than {MAX_CHAINED_OPERATORS} operators chained in one expression \
                     (DuckDB refuses expressions deeper than 1000); build it from shorter parts, such as \
                     CTE columns or list functions at Line: {}, Column: {}",
                    at.line, at.column
                )));
            }
        }
    }
    None
}

/// DuckDB's and Spark's aggregate functions (lower case): for telling `GROUP BY ALL`'s keys from its
/// aggregates, and an aggregated column from a copied one in lineage.
pub(crate) const AGGREGATE_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "mean",
    "min",
    "max",
    "any_value",
    "first",
    "last",
    "arbitrary",
    "string_agg",
    "listagg",
    "group_concat",
    "list",
    "array_agg",
    "collect_list",
    "collect_set",
    "median",
    "mode",
    "quantile",
    "quantile_cont",
    "quantile_disc",
    "percentile_cont",
    "percentile_disc",
    "approx_count_distinct",
    "approx_quantile",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bool_and",
    "bool_or",
    "every",
    "count_if",
    "countif",
    "arg_max",
    "arg_min",
    "max_by",
    "min_by",
    "product",
    "bit_and",
    "bit_or",
    "bit_xor",
    "corr",
    "covar_pop",
    "covar_samp",
    "sumkahan",
    "fsum",
    "entropy",
    "kurtosis",
    "skewness",
    "histogram",
    "regr_slope",
    "regr_intercept",
];

/// Canonical text of parsed statements: whitespace, comments and keyword case no longer matter.
pub fn normalized(statements: &[Statement]) -> String {
    statements
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(";\n")
}

/// The output columns of a query whose every projection is cast (`x::INT AS a`, `CAST(y AS DATE) AS b`,
/// `z::TEXT`), with the types as written; `None` when one is not, so its type is not known before running.
pub fn cast_projection(statements: &[Statement]) -> Option<Vec<(String, String)>> {
    use sqlparser::ast::{Expr, SelectItem, SetExpr};
    fn first_select(body: &SetExpr) -> Option<&sqlparser::ast::Select> {
        match body {
            SetExpr::Select(select) => Some(select),
            SetExpr::Query(query) => first_select(&query.body),
            SetExpr::SetOperation { left, .. } => first_select(left),
            _ => None,
        }
    }
    let [Statement::Query(query)] = statements else {
        return None;
    };
    first_select(&query.body)?
        .projection
        .iter()
        .map(|item| {
            let (name, expr) = match item {
                SelectItem::ExprWithAlias { expr, alias } => (alias.value.clone(), expr),
                SelectItem::UnnamedExpr(expr @ Expr::Cast { expr: inner, .. }) => {
                    match inner.as_ref() {
                        Expr::Identifier(ident) => (ident.value.clone(), expr),
                        Expr::CompoundIdentifier(parts) => (parts.last()?.value.clone(), expr),
                        _ => return None,
                    }
                }
                _ => return None,
            };
            match expr {
                Expr::Cast { data_type, .. } => Some((name, data_type.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// `text` without one pair of parentheses around all of it (`(a AND b)` → `a AND b`; `(a) AND (b)` stays).
pub fn without_outer_parens(text: &str) -> &str {
    let trimmed = text.trim();
    if trimmed.starts_with('(') && lex::matching_paren(trimmed, 0) == Some(trimmed.len()) {
        trimmed[1..trimmed.len() - 1].trim()
    } else {
        trimmed
    }
}

/// SQLMesh's `when_matched` (one or more `WHEN MATCHED [AND …] THEN UPDATE SET target.col = … | DELETE`
/// clauses, in parentheses or not) as DuckDB's MERGE takes them: assigned columns lose their `target.`
/// qualifier, which DuckDB refuses. The error is the parser's, with an offset into `written`.
pub fn merge_clauses(written: &str) -> Result<String, SqlError> {
    use sqlparser::ast::{AssignmentTarget, MergeAction, MergeClauseKind, MergeUpdateKind};
    const PREFIX: &str = "MERGE INTO lake_target AS target USING lake_source AS source ON TRUE ";
    let inner = without_outer_parens(written);
    let inner_at = written.find(inner).unwrap_or(0);
    let relocate = |e: SqlError| SqlError {
        offset: (e.offset + inner_at).saturating_sub(PREFIX.len()),
        message: e.message,
    };
    let mut statements = parse(&format!("{PREFIX}{inner}")).map_err(relocate)?;
    let not_clauses = || SqlError {
        offset: inner_at,
        message:
            "expected `WHEN MATCHED [AND condition] THEN UPDATE SET column = expression` clauses"
                .into(),
    };
    let [Statement::Merge(merge)] = statements.as_mut_slice() else {
        return Err(not_clauses());
    };
    if merge.clauses.is_empty() {
        return Err(not_clauses());
    }
    for clause in &mut merge.clauses {
        if clause.clause_kind != MergeClauseKind::Matched {
            return Err(SqlError {
                offset: inner_at,
                message: format!(
                    "`{clause}` is not a WHEN MATCHED clause; lake inserts rows that match nothing itself"
                ),
            });
        }
        if let MergeAction::Update(update) = &mut clause.action
            && let MergeUpdateKind::Set(assignments) = &mut update.kind
        {
            for assignment in assignments {
                if let AssignmentTarget::ColumnName(name) = &mut assignment.target
                    && let Some(column) = name.0.pop()
                {
                    name.0 = vec![column];
                }
            }
        }
    }
    Ok(merge
        .clauses
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" "))
}

/// Text of SQL that may hold macros (`@name`), the same however the SQL is laid out: keyword case,
/// whitespace and comments do not change it. SQL that does not parse gives its text as written.
pub fn layout_free_text(sql: &str) -> String {
    let (hidden, macros) = crate::sql::lex::hide_macros(sql);
    match parse(&hidden) {
        Ok(statements) => crate::sql::lex::show_macros(&normalized(&statements), &macros),
        Err(_) => sql.to_string(),
    }
}

/// Relations read by the statements (table functions and CTE names excluded), in source order.
pub fn table_refs(sql: &str, statements: &[Statement]) -> Vec<TableRef> {
    let index = SourceFile::new("", sql);
    let mut collector = RefCollector {
        ctes: HashSet::new(),
        refs: Vec::new(),
        index: &index,
    };
    for statement in statements {
        let _ = statement.visit(&mut collector);
    }
    let ctes = collector.ctes;
    let mut refs: Vec<TableRef> = collector
        .refs
        .into_iter()
        .filter(|r| !(r.parts.len() == 1 && ctes.contains(&r.parts[0].value.to_lowercase())))
        .collect();
    refs.sort_by_key(|r| r.offset);
    refs
}

struct RefCollector<'a> {
    ctes: HashSet<String>,
    refs: Vec<TableRef>,
    index: &'a SourceFile,
}

impl Visitor for RefCollector<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: None,
            alias,
            ..
        } = factor
        {
            let idents: Vec<_> = name.0.iter().filter_map(|p| p.as_ident()).collect();
            if idents.len() != name.0.len() || idents.is_empty() {
                return ControlFlow::Continue(());
            }
            let first = idents[0].span.start;
            let last = idents[idents.len() - 1].span.end;
            if first.line == 0 {
                return ControlFlow::Continue(());
            }
            let offset = self
                .index
                .offset_of(first.line as usize, first.column as usize);
            let end = self
                .index
                .offset_of(last.line as usize, last.column as usize);
            self.refs.push(TableRef {
                parts: idents
                    .iter()
                    .map(|i| IdentPart {
                        value: i.value.clone(),
                        quoted: i.quote_style.is_some(),
                    })
                    .collect(),
                offset,
                len: end.saturating_sub(offset),
                has_alias: alias.is_some(),
            });
        }
        ControlFlow::Continue(())
    }
}

/// Qualifies with `qualifier` each two-part reference `first.table` of `sql` whose first part is `first`
/// (case-insensitive) and that `keep` accepts (given the lower-cased first part): when a DuckDB catalog and a
/// schema share a name (`bench.db` holding schema `bench`), `bench.orders` is ambiguous to DuckDB, and
/// `qualifier.bench.orders` is not. SQL that does not parse is returned as it is.
pub fn qualify_catalog_named_schema(
    sql: &str,
    first: &str,
    qualifier: &str,
    keep: impl Fn(&str) -> bool,
) -> String {
    let qualified = |r: &TableRef| {
        r.parts.len() == 2
            && r.parts[0].value.eq_ignore_ascii_case(first)
            && keep(&r.parts[0].value.to_lowercase())
    };
    let prefix = format!("{}.", quote_ident(qualifier));
    if let Some(described) = described_table(sql) {
        return match described {
            Described::Table(r) if qualified(&r) => replace_spans(sql, vec![(r.offset, 0, prefix)]),
            Described::Table(_) => sql.to_string(),
            Described::Query(at) => format!(
                "{}{}",
                &sql[..at],
                qualify_catalog_named_schema(&sql[at..], first, qualifier, keep)
            ),
        };
    }
    let Ok(statements) = parse(sql) else {
        return sql.to_string();
    };
    let edits = table_refs(sql, &statements)
        .into_iter()
        .filter(qualified)
        .map(|r| (r.offset, 0, prefix.clone()))
        .collect();
    replace_spans(sql, edits)
}

/// What DuckDB's `DESCRIBE`, `SUMMARIZE` or `SHOW` statement looks at.
enum Described {
    /// A table or view by name (`DESCRIBE bench.orders`).
    Table(TableRef),
    /// A query starting at this offset (`SUMMARIZE SELECT …`).
    Query(usize),
}

/// The relation of a `DESCRIBE`/`DESC`/`SUMMARIZE`/`SHOW` statement, which DuckDB resolves like a query's
/// tables but sqlparser does not read as one; `None` for any other statement.
fn described_table(sql: &str) -> Option<Described> {
    let start = lex::skip_blank(sql, 0);
    let keyword = lex::leading_keyword(&sql[start..]);
    if !["DESCRIBE", "DESC", "SUMMARIZE", "SHOW"].contains(&keyword.as_str()) {
        return None;
    }
    let at = lex::skip_blank(sql, start + keyword.len());
    let rest = &sql[at..];
    if ["SELECT", "WITH", "FROM", "("].contains(&lex::leading_keyword(rest).as_str()) {
        return Some(Described::Query(at));
    }
    let name = rest
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or_default();
    let parts: Vec<IdentPart> = name
        .split('.')
        .map(|p| IdentPart {
            value: p.trim_matches('"').to_string(),
            quoted: p.starts_with('"'),
        })
        .collect();
    if parts.iter().any(|p| p.value.is_empty()) {
        return None;
    }
    Some(Described::Table(TableRef {
        parts,
        offset: at,
        len: name.len(),
        has_alias: false,
    }))
}

/// Replaces located spans of `sql` (non-overlapping) with new text.
pub fn replace_spans(sql: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(sql.len() + edits.len() * 32);
    let mut copied = 0;
    for (offset, len, text) in edits {
        if offset < copied {
            continue;
        }
        out.push_str(&sql[copied..offset]);
        out.push_str(&text);
        copied = offset + len;
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench.orders` means the schema `bench` of catalog `bench` in DESCRIBE, SUMMARIZE and SHOW as in queries.
    #[test]
    fn describe_summarize_and_show_name_the_schema_not_the_catalog() {
        let q = |sql: &str| qualify_catalog_named_schema(sql, "bench", "bench", |_| true);
        assert_eq!(q("describe bench.m_01"), "describe bench.bench.m_01");
        assert_eq!(q("SUMMARIZE bench.m_01;"), "SUMMARIZE bench.bench.m_01;");
        assert_eq!(q("show bench.m_01"), "show bench.bench.m_01");
        assert_eq!(
            q("summarize select * from bench.m_01"),
            "summarize select * from bench.bench.m_01"
        );
        assert_eq!(q("describe other.m_01"), "describe other.m_01");
        assert_eq!(q("show tables"), "show tables");
        assert_eq!(
            q("select * from bench.m_01"),
            "select * from bench.bench.m_01"
        );
    }

    /// A chain far past what the stack can walk is a located error, not a crash; wide lists, long CASEs
    /// and chains within the bound parse.
    #[test]
    fn long_operator_chains_are_a_located_error() {
        let chain = |n: usize, op: &str| vec!["1"; n].join(op);
        let err = parse(&format!("SELECT 1 AS a,\n  {} AS x", chain(300_000, " + "))).unwrap_err();
        assert!(
            err.message.contains("expression too long"),
            "{}",
            err.message
        );
        // The error points at the operator that crossed the bound, on the second line.
        assert_eq!(err.offset, "SELECT 1 AS a,\n  ".len() + 10_000 * 4 - 2);
        let err = parse(&format!(
            "SELECT * FROM t WHERE {}",
            chain(200_000, " OR x = ")
        ))
        .unwrap_err();
        assert!(
            err.message.contains("expression too long"),
            "{}",
            err.message
        );
        assert!(parse(&format!("SELECT {} AS x", chain(5_000, "+"))).is_ok());
        let wide = (0..20_000)
            .map(|i| format!("{i} + 1 AS c{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(parse(&format!("SELECT {wide}")).is_ok());
        let case = (0..20_000)
            .map(|i| format!("WHEN x = {i} THEN {i} * 2"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(parse(&format!("SELECT CASE {case} END FROM t")).is_ok());
    }

    fn refs(sql: &str) -> Vec<String> {
        let statements = parse(sql).unwrap();
        table_refs(sql, &statements)
            .into_iter()
            .map(|r| {
                assert_eq!(
                    sql[r.offset..r.offset + r.len].replace('"', ""),
                    r.display(),
                    "span of {r:?}"
                );
                r.display()
            })
            .collect()
    }

    #[test]
    fn finds_references_but_not_ctes_or_functions() {
        let sql = "WITH x AS (SELECT * FROM demo.a)\nSELECT * FROM x JOIN db.demo.b ON true\n  LEFT JOIN (SELECT id FROM \"Demo\".\"C\") c USING (id)\nWHERE id IN (SELECT id FROM demo.d) AND EXISTS (SELECT 1 FROM range(3))";
        assert_eq!(refs(sql), ["demo.a", "db.demo.b", "Demo.C", "demo.d"]);
        let statements = parse(sql).unwrap();
        let r = &table_refs(sql, &statements)[2];
        assert!(r.parts.iter().all(|p| p.quoted));
    }

    #[test]
    fn normal_form_ignores_layout_and_comments() {
        let a = normalized(&parse("select  a ,b -- c\nfrom t").unwrap());
        let b = normalized(&parse("SELECT a, b FROM t").unwrap());
        assert_eq!(a, b);
        let c = normalized(&parse("SELECT a, b, 1 AS c FROM t").unwrap());
        assert_ne!(a, c);
    }

    #[test]
    fn rewrites_spans() {
        let sql = "SELECT * FROM demo.a JOIN demo.b";
        let out = replace_spans(sql, vec![(26, 6, "p.b_1".into()), (14, 6, "p.a_1".into())]);
        assert_eq!(out, "SELECT * FROM p.a_1 JOIN p.b_1");
    }

    #[test]
    fn parse_errors_are_located() {
        let sql = "SELECT a\nFROM t WHERE";
        let err = parse(sql).unwrap_err();
        assert_eq!(err.offset, sql.len() - 1, "{err:?}");
        let sql = "SELECT a,, b\nFROM t";
        let err = parse(sql).unwrap_err();
        assert_eq!(err.offset, 9, "{err:?}");
    }

    #[test]
    fn when_matched_clauses_become_duckdb_merge_clauses() {
        assert_eq!(
            merge_clauses("(WHEN MATCHED THEN UPDATE SET target.salary = COALESCE(source.salary, target.salary))")
                .unwrap(),
            "WHEN MATCHED THEN UPDATE SET salary = COALESCE(source.salary, target.salary)"
        );
        assert_eq!(
            merge_clauses("WHEN MATCHED AND source.deleted THEN DELETE WHEN MATCHED THEN UPDATE SET a = source.a, target.b = 1")
                .unwrap(),
            "WHEN MATCHED AND source.deleted THEN DELETE WHEN MATCHED THEN UPDATE SET a = source.a, b = 1"
        );
        let e = merge_clauses("(WHEN NOT MATCHED THEN INSERT VALUES (1))").unwrap_err();
        assert!(
            e.message.contains("is not a WHEN MATCHED clause"),
            "{}",
            e.message
        );
        let e = merge_clauses("(WHEN MATCHED THEN UPDATE SET a =)").unwrap_err();
        assert!(e.offset >= 1 && e.offset <= 34, "{}", e.offset);
        assert_eq!(without_outer_parens("(a) AND (b)"), "(a) AND (b)");
        assert_eq!(without_outer_parens(" (a AND (b)) "), "a AND (b)");
    }
}
