//! DuckDB SQL to Spark SQL on the sqlparser AST: quoting, casts and type names, functions DuckDB and Spark
//! name or behave differently, `GROUP BY ALL`/`ORDER BY ALL`, `QUALIFY`, `EXCLUDE`, null ordering, and the
//! catalog prefix of lake's tables. What has no Spark equivalent is an `Untranslatable` with its place.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    ArrayElemTypeDef, BinaryOperator, CastKind, DataType, DateTimeField, Distinct, ExactNumberInfo,
    ExcludeSelectItem, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, ObjectName, ObjectNamePart,
    OrderByExpr, OrderByKind, Query, SelectItem, SetExpr, Statement, TableFactor, TimezoneInfo,
    Value, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut, WindowSpec, WindowType,
};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

mod series;

/// A construct of a DuckDB query that Spark SQL cannot express (or that lake does not translate yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{construct} has no Spark SQL translation{}", place(*.line, *.column))]
pub struct Untranslatable {
    /// The construct as written (`strftime`, `SELECT * EXCLUDE`, …), to find it in the model's file.
    pub construct: String,
    /// 1-based line and column in the SQL given to `transpile` (0 when unknown).
    pub line: u64,
    pub column: u64,
    pub help: String,
}

fn place(line: u64, column: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" (line {line}, column {column} of the rendered query)")
    }
}

/// What the translation needs to know beyond the SQL.
pub struct Target<'a> {
    /// The Spark catalog that holds lake's tables: `schema.table` becomes `catalog.schema.table`.
    pub catalog: &'a str,
    /// The columns of a table the query reads (by its name as written), for expanding `* EXCLUDE`.
    pub columns_of: &'a dyn Fn(&[String]) -> Option<Vec<String>>,
}

/// Translates one DuckDB statement (a query or DML) to Spark SQL.
pub fn transpile(duckdb_sql: &str, target: &Target<'_>) -> Result<String, Untranslatable> {
    let mut statements =
        Parser::parse_sql(&DuckDbDialect {}, duckdb_sql).map_err(|e| Untranslatable {
            construct: "the query".into(),
            line: 0,
            column: 0,
            help: format!("it does not parse as DuckDB SQL: {e}"),
        })?;
    let mut out = Vec::with_capacity(statements.len());
    for statement in &mut statements {
        out.push(transpile_statement(statement, target)?);
    }
    Ok(out.join(";\n"))
}

/// Translates one DuckDB expression (a predicate lake writes) to Spark SQL.
pub fn transpile_expr(duckdb_sql: &str) -> Result<String, Untranslatable> {
    let mut expr = Parser::new(&DuckDbDialect {})
        .try_with_sql(duckdb_sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Untranslatable {
            construct: "an expression".into(),
            line: 0,
            column: 0,
            help: format!("it does not parse as DuckDB SQL: {e}"),
        })?;
    let target = Target {
        catalog: "",
        columns_of: &|_| None,
    };
    if let ControlFlow::Break(e) = VisitMut::visit(&mut expr, &mut Rewriter { target: &target }) {
        return Err(e);
    }
    let _ = VisitMut::visit(&mut expr, &mut Backticks);
    Ok(expr.to_string())
}

fn transpile_statement(
    statement: &mut Statement,
    target: &Target<'_>,
) -> Result<String, Untranslatable> {
    let mut rewriter = Rewriter { target };
    if let ControlFlow::Break(e) = statement.visit(&mut rewriter) {
        return Err(e);
    }
    // Quoting last: rewrites above build identifiers of their own.
    let _ = statement.visit(&mut Backticks);
    Ok(statement.to_string())
}

/// Spark reads `"x"` as a string: every quoted identifier is quoted with backticks instead.
struct Backticks;

impl VisitorMut for Backticks {
    type Break = ();
    fn post_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<()> {
        if ident.quote_style.is_some() {
            ident.quote_style = Some('`');
        }
        ControlFlow::Continue(())
    }
    fn post_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        for part in &mut relation.0 {
            if let ObjectNamePart::Identifier(ident) = part {
                let _ = self.post_visit_ident(ident);
            }
        }
        ControlFlow::Continue(())
    }
}

struct Rewriter<'a> {
    target: &'a Target<'a>,
}

fn untranslatable(
    construct: impl Into<String>,
    span: Span,
    help: impl Into<String>,
) -> Untranslatable {
    Untranslatable {
        construct: construct.into(),
        line: span.start.line,
        column: span.start.column,
        help: help.into(),
    }
}

fn ident(name: &str) -> Ident {
    Ident::new(name)
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![ident(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

fn string(text: &str) -> Expr {
    Expr::Value(ValueWithSpan {
        value: Value::SingleQuotedString(text.to_string()),
        span: Span::empty(),
    })
}

fn cast(expr: Expr, data_type: DataType) -> Expr {
    Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(expr),
        data_type,
        format: None,
    }
}

fn named_type(name: &str) -> DataType {
    DataType::Custom(ObjectName::from(vec![ident(name)]), Vec::new())
}

fn function_name(f: &Function) -> String {
    match f.name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.value.to_lowercase(),
        _ => String::new(),
    }
}

fn function_span(f: &Function) -> Span {
    match f.name.0.last() {
        Some(ObjectNamePart::Identifier(i)) => i.span,
        _ => Span::empty(),
    }
}

/// The plain positional arguments of a call, or `None` when it has named arguments or clauses.
fn plain_args(f: &Function) -> Option<Vec<Expr>> {
    let FunctionArguments::List(list) = &f.args else {
        return Some(Vec::new());
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn string_value(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

/// DuckDB's `strftime` codes as Spark's datetime pattern (text in between is quoted).
fn spark_datetime_pattern(format: &str, span: Span) -> Result<String, Untranslatable> {
    let mut out = String::new();
    let mut literal = String::new();
    let flush = |out: &mut String, literal: &mut String| {
        if !literal.is_empty() {
            if literal.chars().all(|c| " -/:.,_T".contains(c)) && !literal.contains('T') {
                out.push_str(literal);
            } else {
                out.push('\'');
                out.push_str(&literal.replace('\'', "''"));
                out.push('\'');
            }
            literal.clear();
        }
    };
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        let code = chars.next().unwrap_or('%');
        let pattern = match code {
            'Y' => "yyyy",
            'y' => "yy",
            'm' => "MM",
            'd' => "dd",
            'e' => "d",
            'H' => "HH",
            'I' => "hh",
            'M' => "mm",
            'S' => "ss",
            'f' => "SSSSSS",
            'p' => "a",
            'j' => "DDD",
            'b' | 'h' => "MMM",
            'B' => "MMMM",
            'a' => "EEE",
            'A' => "EEEE",
            'z' => "Z",
            'Z' => "z",
            '%' => {
                literal.push('%');
                continue;
            }
            other => {
                return Err(untranslatable(
                    format!("the strftime code %{other}"),
                    span,
                    "use one of %Y %y %m %d %e %H %I %M %S %f %p %j %b %B %a %A %z %Z, or `dialect spark`",
                ));
            }
        };
        flush(&mut out, &mut literal);
        out.push_str(pattern);
    }
    flush(&mut out, &mut literal);
    Ok(out)
}

/// The Spark datetime pattern of a strftime/strptime format, which must be a literal.
fn literal_pattern(
    function: &str,
    format: &Expr,
    span: Span,
) -> ControlFlow<Untranslatable, String> {
    match string_value(format) {
        Some(format) => flow(spark_datetime_pattern(format, span)),
        None => ControlFlow::Break(untranslatable(
            format!("{function} with a computed format"),
            span,
            format!("give {function} a literal format"),
        )),
    }
}

/// DuckDB's type as Spark's.
fn spark_type(data_type: &DataType, span: Span) -> Result<DataType, Untranslatable> {
    let t = match data_type {
        DataType::Varchar(_)
        | DataType::Text
        | DataType::String(_)
        | DataType::Char(_)
        | DataType::Character(_)
        | DataType::CharacterVarying(_)
        | DataType::CharVarying(_)
        | DataType::Nvarchar(_)
        | DataType::Uuid
        | DataType::JSON => named_type("STRING"),
        DataType::Integer(_) | DataType::Int(_) | DataType::Int4(_) | DataType::Int32 => {
            named_type("INT")
        }
        DataType::BigInt(_) | DataType::Int8(_) | DataType::Int64 => named_type("BIGINT"),
        DataType::SmallInt(_) | DataType::Int2(_) | DataType::Int16 => named_type("SMALLINT"),
        DataType::TinyInt(_) => named_type("TINYINT"),
        DataType::UTinyInt => named_type("SMALLINT"),
        DataType::USmallInt => named_type("INT"),
        DataType::UInt32 | DataType::IntUnsigned(_) | DataType::IntegerUnsigned(_) => {
            named_type("BIGINT")
        }
        DataType::UBigInt | DataType::UInt64 => {
            DataType::Decimal(ExactNumberInfo::PrecisionAndScale(20, 0))
        }
        DataType::HugeInt | DataType::Int128 => {
            DataType::Decimal(ExactNumberInfo::PrecisionAndScale(38, 0))
        }
        DataType::Double(_) | DataType::DoublePrecision | DataType::Float8 | DataType::Float64 => {
            named_type("DOUBLE")
        }
        DataType::Real | DataType::Float4 | DataType::Float32 => named_type("FLOAT"),
        // DuckDB's FLOAT is 4 bytes, and so is Spark's.
        DataType::Float(ExactNumberInfo::None) => named_type("FLOAT"),
        DataType::Decimal(info) | DataType::Numeric(info) | DataType::Dec(info) => match info {
            // DuckDB's default precision; Spark's would be DECIMAL(10,0).
            ExactNumberInfo::None => DataType::Decimal(ExactNumberInfo::PrecisionAndScale(18, 3)),
            ExactNumberInfo::Precision(p) => {
                DataType::Decimal(ExactNumberInfo::PrecisionAndScale(*p, 0))
            }
            other => DataType::Decimal(*other),
        },
        DataType::Boolean | DataType::Bool => named_type("BOOLEAN"),
        DataType::Date => DataType::Date,
        DataType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone)
        | DataType::Datetime(_) => named_type("TIMESTAMP_NTZ"),
        DataType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => {
            named_type("TIMESTAMP")
        }
        DataType::Blob(_) | DataType::Bytea | DataType::Varbinary(_) | DataType::Binary(_) => {
            named_type("BINARY")
        }
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::Parenthesis(inner),
        ) => DataType::Array(ArrayElemTypeDef::AngleBracket(Box::new(spark_type(
            inner, span,
        )?))),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            match name.to_string().to_lowercase().as_str() {
                "timestamptz" => named_type("TIMESTAMP"),
                "timestamp_ntz" => named_type("TIMESTAMP_NTZ"),
                "long" => named_type("BIGINT"),
                "short" => named_type("SMALLINT"),
                _ => {
                    return Err(untranslatable(
                        format!("the type {data_type}"),
                        span,
                        "Spark has no such type: cast to a standard type, or write the model in `dialect spark`",
                    ));
                }
            }
        }
        other => {
            return Err(untranslatable(
                format!("the type {other}"),
                span,
                "Spark has no such type (TIME, INTERVAL, STRUCT, MAP and unsigned 128-bit have no translation yet): cast to a standard type, or write the model in `dialect spark`",
            ));
        }
    };
    Ok(t)
}

fn is_integer_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Integer(_)
            | DataType::Int(_)
            | DataType::Int4(_)
            | DataType::BigInt(_)
            | DataType::Int8(_)
            | DataType::SmallInt(_)
            | DataType::TinyInt(_)
            | DataType::HugeInt
            | DataType::UBigInt
            | DataType::UTinyInt
            | DataType::USmallInt
    )
}

/// Whether an expression is certainly an integer or a boolean, so a cast to an integer needs no rounding.
fn exact_for_integer_cast(expr: &Expr) -> bool {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::Number(n, _),
            ..
        }) => !n.contains(['.', 'e', 'E']),
        Expr::Value(ValueWithSpan {
            value: Value::Boolean(_),
            ..
        }) => true,
        Expr::Cast { data_type, .. } => {
            is_integer_type(data_type) || matches!(data_type, DataType::Boolean | DataType::Bool)
        }
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::In { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::Exists { .. } => true,
        Expr::UnaryOp { op, .. } => matches!(op, sqlparser::ast::UnaryOperator::Not),
        Expr::BinaryOp { op, .. } => matches!(
            op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::And
                | BinaryOperator::Or
        ),
        Expr::Nested(inner) => exact_for_integer_cast(inner),
        _ => false,
    }
}

/// Functions DuckDB has and Spark does not, with what to do instead.
const DUCKDB_ONLY: &[(&str, &str)] = &[
    ("epoch", "use unix_timestamp(ts) in a `dialect spark` model"),
    ("epoch_ms", "use unix_millis(ts) in a `dialect spark` model"),
    ("list_value", "write the list as [a, b]"),
    (
        "struct_pack",
        "write a `dialect spark` model with named_struct",
    ),
    (
        "list_transform",
        "write a `dialect spark` model with transform",
    ),
    ("list_filter", "write a `dialect spark` model with filter"),
    ("columns", "name the columns"),
    ("read_csv", "load the file as a SEED model"),
    (
        "read_parquet",
        "register the files as an external table in the shared catalog",
    ),
    ("read_json", "load the file as a SEED model"),
    ("range", "use sequence() in a `dialect spark` model"),
    (
        "generate_series",
        "use sequence() in a `dialect spark` model",
    ),
];

fn contains_aggregate(expr: &Expr) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr
                && f.over.is_none()
                && super::AGGREGATE_FUNCTIONS.contains(&function_name(f).as_str())
            {
                self.0 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut finder = Finder(false);
    let _ = expr.visit(&mut finder);
    finder.0
}

/// `x` rounded the way DuckDB's cast to an integer rounds it, for `x` of any numeric type.
fn rounded(x: &Expr) -> Expr {
    let floating = Expr::In {
        expr: Box::new(call("typeof", vec![x.clone()])),
        target: sqlparser::ast::InTarget::List(vec![string("double"), string("float")]),
        negated: false,
        global: false,
    };
    Expr::Case {
        case_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        end_token: sqlparser::ast::helpers::attached_token::AttachedToken::empty(),
        operand: None,
        conditions: vec![sqlparser::ast::CaseWhen {
            condition: floating,
            result: call("bround", vec![x.clone()]),
        }],
        else_result: Some(Box::new(call("round", vec![x.clone()]))),
    }
}

fn number(n: usize) -> Expr {
    Expr::Value(ValueWithSpan {
        value: Value::Number(n.to_string(), false),
        span: Span::empty(),
    })
}

/// The name a select item's column has in the select's output.
fn output_name(item: &SelectItem) -> Option<Ident> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.clone()),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.clone()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => parts.last().cloned(),
        _ => None,
    }
}

/// DuckDB's `date_diff('unit', start, end)` in Spark: day, month and year differences, counted as DuckDB
/// counts them (crossed boundaries).
fn date_diff(name: &str, args: &[Expr], span: Span) -> ControlFlow<Untranslatable, Expr> {
    let Some(unit) = string_value(&args[0]).map(str::to_lowercase) else {
        return ControlFlow::Break(untranslatable(
            format!("{name} with a computed unit"),
            span,
            "give the unit as a literal ('day', 'month', 'year')",
        ));
    };
    let (start, end) = (args[1].clone(), args[2].clone());
    let part = |part: &str, e: &Expr| call(part, vec![e.clone()]);
    let diff = |a: Expr, b: Expr| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::Minus,
        right: Box::new(b),
    };
    // sqlparser prints operators without parentheses: nesting keeps the precedence.
    let months = |e: &Expr| {
        Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(Expr::BinaryOp {
                left: Box::new(part("year", e)),
                op: BinaryOperator::Multiply,
                right: Box::new(number(12)),
            }),
            op: BinaryOperator::Plus,
            right: Box::new(part("month", e)),
        }))
    };
    let expr = match unit.trim_end_matches('s') {
        "day" => call(
            "datediff",
            vec![cast(end, DataType::Date), cast(start, DataType::Date)],
        ),
        "month" => Expr::Nested(Box::new(diff(months(&end), months(&start)))),
        "year" => Expr::Nested(Box::new(diff(part("year", &end), part("year", &start)))),
        other => {
            return ControlFlow::Break(untranslatable(
                format!("{name} in {other}s"),
                span,
                "lake translates day, month and year differences",
            ));
        }
    };
    ControlFlow::Continue(expr)
}

/// DuckDB's `string_agg(x[, separator])` in Spark: `concat_ws` over `collect_list`, which has no order.
fn string_agg(
    f: &Function,
    name: &str,
    args: Vec<Expr>,
    span: Span,
) -> ControlFlow<Untranslatable, Expr> {
    if has_order_by_clause(f) {
        return ControlFlow::Break(untranslatable(
            format!("{name} with ORDER BY"),
            span,
            "Spark's collect_list has no order: drop the ORDER BY or write a `dialect spark` model",
        ));
    }
    let separator = args.get(1).cloned().unwrap_or_else(|| string(","));
    let mut list = call("collect_list", vec![args[0].clone()]);
    if let (Expr::Function(list), FunctionArguments::List(original)) = (&mut list, &f.args)
        && let FunctionArguments::List(l) = &mut list.args
    {
        l.duplicate_treatment = original.duplicate_treatment;
    }
    ControlFlow::Continue(call("concat_ws", vec![separator, list]))
}

impl Rewriter<'_> {
    fn rewrite_function(&self, f: &mut Function) -> ControlFlow<Untranslatable, Option<Expr>> {
        let name = function_name(f);
        let span = function_span(f);
        if let Some((_, help)) = DUCKDB_ONLY.iter().find(|(n, _)| *n == name) {
            return ControlFlow::Break(untranslatable(name, span, *help));
        }
        if let Some(spec) = &mut f.over
            && let WindowType::WindowSpec(spec) = spec
        {
            for o in &mut spec.order_by {
                nulls_last_by_default(o);
            }
        }
        let args = plain_args(f);
        let renamed = |f: &mut Function, to: &str| {
            f.name = ObjectName::from(vec![ident(to)]);
        };
        match (name.as_str(), args) {
            ("strftime", Some(args)) if args.len() == 2 => {
                let pattern = literal_pattern(&name, &args[1], span)?;
                ControlFlow::Continue(Some(call(
                    "date_format",
                    vec![args[0].clone(), string(&pattern)],
                )))
            }
            ("strptime", Some(args)) if args.len() == 2 => {
                let pattern = literal_pattern(&name, &args[1], span)?;
                ControlFlow::Continue(Some(cast(
                    call("to_timestamp", vec![args[0].clone(), string(&pattern)]),
                    named_type("TIMESTAMP_NTZ"),
                )))
            }
            ("regexp_matches", Some(args)) if args.len() == 2 => {
                ControlFlow::Continue(Some(call("rlike", args)))
            }
            // DuckDB returns the whole match by default, Spark the first group.
            ("regexp_extract", Some(mut args)) if args.len() == 2 => {
                args.push(number(0));
                ControlFlow::Continue(Some(call("regexp_extract", args)))
            }
            ("string_agg" | "group_concat" | "listagg", Some(args))
                if (1..=2).contains(&args.len()) =>
            {
                ControlFlow::Continue(Some(string_agg(f, &name, args, span)?))
            }
            ("list" | "array_agg", Some(_)) => {
                if has_order_by_clause(f) {
                    return ControlFlow::Break(untranslatable(
                        format!("{name} with ORDER BY"),
                        span,
                        "Spark's collect_list has no order: drop the ORDER BY or write a `dialect spark` model",
                    ));
                }
                renamed(f, "collect_list");
                ControlFlow::Continue(None)
            }
            // DuckDB's concat skips NULLs; Spark's is NULL when any argument is.
            ("concat", Some(mut args)) => {
                args.insert(0, string(""));
                ControlFlow::Continue(Some(call("concat_ws", args)))
            }
            ("arg_max", Some(_)) => {
                renamed(f, "max_by");
                ControlFlow::Continue(None)
            }
            ("arg_min", Some(_)) => {
                renamed(f, "min_by");
                ControlFlow::Continue(None)
            }
            ("unnest", Some(args)) if args.len() == 1 => {
                ControlFlow::Continue(Some(call("explode", args)))
            }
            ("ifnull", _) => {
                renamed(f, "coalesce");
                ControlFlow::Continue(None)
            }
            ("len" | "length" | "strlen", Some(args)) if args.len() == 1 => {
                ControlFlow::Continue(Some(call("length", args)))
            }
            // Spark's date_trunc answers a TIMESTAMP (with time zone); DuckDB's a TIMESTAMP without.
            ("date_trunc", Some(args)) if args.len() == 2 => {
                let unit = match string_value(&args[0]) {
                    Some(u) => string(&u.to_uppercase()),
                    None => args[0].clone(),
                };
                ControlFlow::Continue(Some(cast(
                    call("date_trunc", vec![unit, args[1].clone()]),
                    named_type("TIMESTAMP_NTZ"),
                )))
            }
            ("date_diff" | "datediff", Some(args)) if args.len() == 3 => {
                ControlFlow::Continue(Some(date_diff(&name, &args, span)?))
            }
            _ => ControlFlow::Continue(None),
        }
    }

    fn expand_group_and_order_by_all(&self, query: &mut Query) -> ControlFlow<Untranslatable> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let has_wildcard = select.projection.iter().any(|i| {
            matches!(
                i,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        if let GroupByExpr::All(modifiers) = &select.group_by {
            if has_wildcard {
                return ControlFlow::Break(untranslatable(
                    "GROUP BY ALL with *",
                    select.select_token.0.span,
                    "name the grouped columns",
                ));
            }
            let keys = select
                .projection
                .iter()
                .enumerate()
                .filter(|(_, item)| match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        !contains_aggregate(e)
                    }
                    _ => false,
                })
                .map(|(k, _)| number(k + 1))
                .collect();
            select.group_by = GroupByExpr::Expressions(keys, modifiers.clone());
        }
        if let Some(order_by) = &mut query.order_by
            && let OrderByKind::All(options) = &order_by.kind
        {
            if has_wildcard {
                return ControlFlow::Break(untranslatable(
                    "ORDER BY ALL with *",
                    select.select_token.0.span,
                    "name the ordering columns",
                ));
            }
            let options = options.clone();
            order_by.kind = OrderByKind::Expressions(
                (1..=select.projection.len())
                    .map(|k| {
                        let mut o = OrderByExpr {
                            expr: number(k),
                            options: options.clone(),
                            with_fill: None,
                        };
                        nulls_last_by_default(&mut o);
                        o
                    })
                    .collect(),
            );
        }
        ControlFlow::Continue(())
    }

    /// `* EXCLUDE (c)` becomes the table's other columns.
    fn expand_exclude(&self, query: &mut Query) -> ControlFlow<Untranslatable> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let mut expanded = Vec::with_capacity(select.projection.len());
        for item in std::mem::take(&mut select.projection) {
            let options = match &item {
                SelectItem::Wildcard(o) | SelectItem::QualifiedWildcard(_, o) => o,
                _ => {
                    expanded.push(item);
                    continue;
                }
            };
            let span = options.wildcard_token.0.span;
            if options.opt_replace.is_some()
                || options.opt_rename.is_some()
                || options.opt_ilike.is_some()
            {
                return ControlFlow::Break(untranslatable(
                    "SELECT * REPLACE/RENAME/ILIKE",
                    span,
                    "list the columns",
                ));
            }
            let excluded: Vec<String> = match (&options.opt_exclude, &options.opt_except) {
                (Some(ExcludeSelectItem::Single(c)), _) => vec![c.to_string()],
                (Some(ExcludeSelectItem::Multiple(cs)), _) => {
                    cs.iter().map(|c| c.to_string()).collect()
                }
                (None, Some(except)) => std::iter::once(&except.first_element)
                    .chain(&except.additional_elements)
                    .map(|c| c.value.clone())
                    .collect(),
                (None, None) => {
                    expanded.push(item);
                    continue;
                }
            };
            let excluded: HashSet<String> = excluded
                .iter()
                .map(|c| c.trim_matches('"').to_lowercase())
                .collect();
            let (table, qualifier) = match (&item, select.from.as_slice()) {
                (SelectItem::QualifiedWildcard(kind, _), _) => {
                    let name = kind.to_string().trim_end_matches(".*").to_string();
                    (self.table_named(select, &name), Some(name))
                }
                (_, [only]) if only.joins.is_empty() => (table_of(&only.relation), None),
                _ => (None, None),
            };
            let Some(columns) = table.and_then(|t| (self.target.columns_of)(&t)) else {
                return ControlFlow::Break(untranslatable(
                    "SELECT * EXCLUDE",
                    span,
                    "lake expands EXCLUDE over one table whose columns it knows (a model): name the columns instead",
                ));
            };
            for column in columns {
                if excluded.contains(&column.to_lowercase()) {
                    continue;
                }
                let mut name = ident(&column);
                name.quote_style = Some('"');
                let expr = match &qualifier {
                    Some(q) => {
                        let mut qualifier = ident(q.trim_matches('"'));
                        qualifier.quote_style = Some('"');
                        Expr::CompoundIdentifier(vec![qualifier, name])
                    }
                    None => Expr::Identifier(name),
                };
                expanded.push(SelectItem::UnnamedExpr(expr));
            }
        }
        select.projection = expanded;
        ControlFlow::Continue(())
    }

    /// The table (by its name parts) that `alias` names in the select's FROM.
    fn table_named(&self, select: &sqlparser::ast::Select, alias: &str) -> Option<Vec<String>> {
        let alias = alias.trim_matches('"').to_lowercase();
        select
            .from
            .iter()
            .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
            .find_map(|relation| match relation {
                TableFactor::Table { name, alias: a, .. } => {
                    let parts = name_parts(name);
                    let matches = match a {
                        Some(a) => a.name.value.to_lowercase() == alias,
                        None => parts.last().map(|p| p.to_lowercase()) == Some(alias.clone()),
                    };
                    matches.then_some(parts)
                }
                _ => None,
            })
    }

    /// `SELECT DISTINCT ON (keys) …` keeps the first row per key in the query's order: the same as
    /// `QUALIFY row_number() OVER (PARTITION BY keys ORDER BY …) = 1`, which `rewrite_qualify` then translates.
    fn distinct_on_as_qualify(&self, query: &mut Query) -> ControlFlow<Untranslatable> {
        let order_by = match &query.order_by {
            Some(o) => match &o.kind {
                OrderByKind::Expressions(exprs) => exprs.clone(),
                OrderByKind::All(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let Some(Distinct::On(keys)) = &select.distinct else {
            return ControlFlow::Continue(());
        };
        if select.qualify.is_some() {
            return ControlFlow::Break(untranslatable(
                "DISTINCT ON with QUALIFY",
                select.select_token.0.span,
                "keep one of the two",
            ));
        }
        let mut first = call("row_number", Vec::new());
        if let Expr::Function(f) = &mut first {
            f.over = Some(WindowType::WindowSpec(WindowSpec {
                window_name: None,
                partition_by: keys.clone(),
                order_by,
                window_frame: None,
            }));
        }
        select.qualify = Some(Expr::BinaryOp {
            left: Box::new(first),
            op: BinaryOperator::Eq,
            right: Box::new(number(1)),
        });
        select.distinct = None;
        ControlFlow::Continue(())
    }

    /// `… QUALIFY cond` becomes a filter over a subquery that computes `cond` next to the columns; the
    /// query's ORDER BY and LIMIT stay outside, so the order is kept.
    fn rewrite_qualify(&self, query: &mut Query) -> ControlFlow<Untranslatable> {
        let SetExpr::Select(select) = query.body.as_mut() else {
            return ControlFlow::Continue(());
        };
        let Some(mut condition) = select.qualify.take() else {
            return ControlFlow::Continue(());
        };
        let span = select.select_token.0.span;
        let mut names = Vec::with_capacity(select.projection.len());
        for item in &select.projection {
            match output_name(item) {
                Some(n) => names.push(n),
                None => {
                    return ControlFlow::Break(untranslatable(
                        "QUALIFY over * or an unnamed expression",
                        span,
                        "name every selected column (with an alias) in a query that has QUALIFY",
                    ));
                }
            }
        }
        // The outer ORDER BY sees only the subquery's columns: an ordering that is not one of the named
        // columns (or an ordinal) is computed inside as a hidden column.
        if let Some(order_by) = &mut query.order_by
            && let OrderByKind::Expressions(exprs) = &mut order_by.kind
        {
            let lowered: Vec<String> = names.iter().map(|n| n.value.to_lowercase()).collect();
            for (k, o) in exprs.iter_mut().enumerate() {
                let named = match &o.expr {
                    Expr::Identifier(i) => Some(i.clone()),
                    Expr::CompoundIdentifier(parts) => parts.last().cloned(),
                    _ => None,
                };
                match named {
                    Some(n) if lowered.contains(&n.value.to_lowercase()) => {
                        o.expr = Expr::Identifier(n);
                    }
                    _ if matches!(o.expr, Expr::Value(_)) => {}
                    _ => {
                        let hidden = ident(&format!("__lake_order_{k}"));
                        select.projection.push(SelectItem::ExprWithAlias {
                            expr: o.expr.clone(),
                            alias: hidden.clone(),
                        });
                        o.expr = Expr::Identifier(hidden);
                    }
                }
            }
        }
        // The condition may use the select's aliases: they are replaced by what they name.
        let aliases: Vec<(String, Expr)> = select
            .projection
            .iter()
            .filter_map(|i| match i {
                SelectItem::ExprWithAlias { expr, alias } => {
                    Some((alias.value.to_lowercase(), expr.clone()))
                }
                _ => None,
            })
            .collect();
        let _ = sqlparser::ast::visit_expressions_mut(&mut condition, |e| {
            if let Expr::Identifier(i) = e
                && let Some((_, expr)) = aliases.iter().find(|(a, _)| *a == i.value.to_lowercase())
            {
                *e = Expr::Nested(Box::new(expr.clone()));
            }
            ControlFlow::<()>::Continue(())
        });
        select.projection.push(SelectItem::ExprWithAlias {
            expr: Expr::Nested(Box::new(condition)),
            alias: ident("__lake_qualify"),
        });
        let inner_select = std::mem::replace(
            select,
            Box::new(match template_select() {
                Some(t) => t,
                None => return ControlFlow::Continue(()),
            }),
        );
        let inner = Query {
            with: None,
            body: Box::new(SetExpr::Select(inner_select)),
            order_by: None,
            limit_clause: None,
            fetch: None,
            locks: Vec::new(),
            for_clause: None,
            settings: None,
            format_clause: None,
            pipe_operators: Vec::new(),
        };
        select.projection = names
            .into_iter()
            .map(|n| SelectItem::UnnamedExpr(Expr::Identifier(n)))
            .collect();
        if let Some(TableFactor::Derived { subquery, .. }) =
            select.from.first_mut().map(|t| &mut t.relation)
        {
            **subquery = inner;
        }
        ControlFlow::Continue(())
    }
}

/// `SELECT … FROM (…) AS __lake_qualified WHERE __lake_qualify`, whose parts `rewrite_qualify` replaces.
fn template_select() -> Option<sqlparser::ast::Select> {
    let statement = Parser::parse_sql(
        &DuckDbDialect {},
        "SELECT 1 FROM (SELECT 1) AS __lake_qualified WHERE __lake_qualify",
    )
    .ok()?
    .pop()?;
    match statement {
        Statement::Query(q) => match *q.body {
            SetExpr::Select(s) => Some(*s),
            _ => None,
        },
        _ => None,
    }
}

fn has_order_by_clause(f: &Function) -> bool {
    matches!(&f.args, FunctionArguments::List(l) if l.clauses.iter().any(|c| matches!(c, FunctionArgumentClause::OrderBy(_))))
}

fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.clone()),
            _ => None,
        })
        .collect()
}

fn table_of(relation: &TableFactor) -> Option<Vec<String>> {
    match relation {
        TableFactor::Table { name, .. } => Some(name_parts(name)),
        _ => None,
    }
}

/// DuckDB sorts NULLs last in both directions; Spark sorts them first when ascending.
fn nulls_last_by_default(o: &mut OrderByExpr) {
    if o.options.nulls_first.is_none() {
        o.options.nulls_first = Some(false);
    }
}

/// `INTERVAL '7 days'` (one string with its unit) as `INTERVAL '7' DAY`.
fn interval_with_unit(interval: &mut sqlparser::ast::Interval) {
    if interval.leading_field.is_some() {
        return;
    }
    let Some(text) = string_value(&interval.value).map(str::to_string) else {
        return;
    };
    let mut words = text.split_whitespace();
    let (Some(amount), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return;
    };
    let field = match unit.to_lowercase().trim_end_matches('s') {
        "year" => DateTimeField::Year,
        "month" => DateTimeField::Month,
        "week" => DateTimeField::Week(None),
        "day" => DateTimeField::Day,
        "hour" => DateTimeField::Hour,
        "minute" => DateTimeField::Minute,
        "second" => DateTimeField::Second,
        _ => return,
    };
    *interval.value = string(amount);
    interval.leading_field = Some(field);
}

impl VisitorMut for Rewriter<'_> {
    type Break = Untranslatable;

    fn post_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<Untranslatable> {
        in_catalog(relation, self.target.catalog);
        ControlFlow::Continue(())
    }

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Untranslatable> {
        series::series_table(factor)
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<Untranslatable> {
        self.expand_exclude(query)?;
        self.expand_group_and_order_by_all(query)?;
        if let Some(order_by) = &mut query.order_by
            && let OrderByKind::Expressions(exprs) = &mut order_by.kind
        {
            for o in exprs {
                nulls_last_by_default(o);
            }
        }
        self.distinct_on_as_qualify(query)?;
        self.rewrite_qualify(query)
    }

    fn post_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<Untranslatable> {
        // Spark reads backslashes in strings as escapes and `''` as two adjacent literals: both are spelled
        // as escapes, which survive printing unchanged.
        if let Value::SingleQuotedString(s) = &mut value.value
            && (s.contains('\\') || s.contains('\''))
        {
            *s = s.replace('\\', "\\\\").replace('\'', "\\u0027");
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Untranslatable> {
        let replacement = match expr {
            Expr::Cast {
                kind,
                expr: inner,
                data_type,
                format,
            } => {
                if format.is_some() {
                    return ControlFlow::Break(untranslatable(
                        "CAST … FORMAT",
                        Span::empty(),
                        "format the value with date_format",
                    ));
                }
                if matches!(kind, CastKind::DoubleColon) {
                    *kind = CastKind::Cast;
                }
                // DuckDB rounds a fraction cast to an integer (half to even from floating point, half away
                // from zero from decimals); Spark truncates it.
                if is_integer_type(data_type) && !exact_for_integer_cast(inner) {
                    **inner = rounded(inner);
                }
                *data_type = flow(spark_type(data_type, Span::empty()))?;
                None
            }
            Expr::Function(f) => self.rewrite_function(f)?,
            Expr::Array(array) => Some(call("array", std::mem::take(&mut array.elem))),
            Expr::BinaryOp { op, left, right } => {
                if matches!(op, BinaryOperator::DuckIntegerDivide) {
                    *op = BinaryOperator::MyIntegerDivide;
                }
                // DATE ± INTERVAL is a TIMESTAMP in DuckDB, a DATE in Spark.
                if matches!(op, BinaryOperator::Plus | BinaryOperator::Minus)
                    && series::is_interval(right)
                    && !series::is_interval(left)
                {
                    **left = cast((**left).clone(), named_type("TIMESTAMP_NTZ"));
                }
                None
            }
            Expr::Interval(interval) => match series::computed_interval(interval) {
                Some(made) => Some(flow(made)?),
                None => {
                    interval_with_unit(interval);
                    None
                }
            },
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
            Expr::TypedString(typed) => {
                let span = Span::empty();
                typed.data_type = flow(spark_type(&typed.data_type, span))?;
                None
            }
            _ => None,
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
        }
        ControlFlow::Continue(())
    }
}

/// `schema.table` as `catalog.schema.table`; DuckDB's catalog (the project's database) in a three-part name
/// becomes the engine's name for lake's catalog.
fn in_catalog(relation: &mut ObjectName, catalog: &str) {
    let parts = &mut relation.0;
    match parts.len() {
        1 => {}
        2 => parts.insert(0, ObjectNamePart::Identifier(quoted(catalog))),
        _ => parts[0] = ObjectNamePart::Identifier(quoted(catalog)),
    }
}

/// Names only, for a model written in Spark SQL (`dialect spark`): its table references (which lake
/// resolved to physical tables) are put in `catalog` and quoted with backticks; nothing else changes.
pub fn qualify_names(sql: &str, catalog: &str) -> Result<String, Untranslatable> {
    struct Names<'a>(&'a str);
    impl VisitorMut for Names<'_> {
        type Break = ();
        fn post_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
            in_catalog(relation, self.0);
            ControlFlow::Continue(())
        }
    }
    let mut statements = Parser::parse_sql(&DuckDbDialect {}, sql).map_err(|e| Untranslatable {
        construct: "the query".into(),
        line: 0,
        column: 0,
        help: format!("it does not parse: {e}"),
    })?;
    let mut out = Vec::with_capacity(statements.len());
    for statement in &mut statements {
        let _ = statement.visit(&mut Names(catalog));
        let _ = statement.visit(&mut Backticks);
        out.push(statement.to_string());
    }
    Ok(out.join(";\n"))
}

fn flow<T>(result: Result<T, Untranslatable>) -> ControlFlow<Untranslatable, T> {
    match result {
        Ok(t) => ControlFlow::Continue(t),
        Err(e) => ControlFlow::Break(e),
    }
}

fn quoted(name: &str) -> Ident {
    let mut i = ident(name);
    i.quote_style = Some('"');
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spark(sql: &str) -> String {
        let columns = |table: &[String]| -> Option<Vec<String>> {
            (table.last().map(String::as_str) == Some("orders")).then(|| {
                ["id", "customer", "amount", "secret"]
                    .map(String::from)
                    .to_vec()
            })
        };
        let target = Target {
            catalog: "lake",
            columns_of: &columns,
        };
        match transpile(sql, &target) {
            Ok(s) => s,
            Err(e) => format!("ERROR {e}: {}", e.help),
        }
    }

    /// Every rewrite the Spark gateway relies on, DuckDB SQL in, Spark SQL out.
    #[test]
    fn duckdb_sql_becomes_spark_sql() {
        let cases = [
            (
                r#"SELECT "kind", o."id" FROM "lake__demo"."orders" AS o"#,
                "SELECT `kind`, o.`id` FROM `lake`.`lake__demo`.`orders` AS o",
            ),
            (
                r#"SELECT id FROM "db"."lake__demo"."orders""#,
                "SELECT id FROM `lake`.`lake__demo`.`orders`",
            ),
            (
                "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
                "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
            ),
            (
                "SELECT amount::INTEGER, x::VARCHAR, y::HUGEINT, z::TIMESTAMP, w::DECIMAL, CAST(1 AS BIGINT)",
                "SELECT CAST(CASE WHEN typeof(amount) IN ('double', 'float') THEN bround(amount) ELSE round(amount) END AS INT), CAST(x AS STRING), CAST(CASE WHEN typeof(y) IN ('double', 'float') THEN bround(y) ELSE round(y) END AS DECIMAL(38,0)), CAST(z AS TIMESTAMP_NTZ), CAST(w AS DECIMAL(18,3)), CAST(1 AS BIGINT)",
            ),
            (
                "SELECT CAST(a > 1 AS INT), TRY_CAST(s AS DOUBLE), CAST(t AS TIMESTAMPTZ)",
                "SELECT CAST(a > 1 AS INT), TRY_CAST(s AS DOUBLE), CAST(t AS TIMESTAMP)",
            ),
            (
                "SELECT customer, count(*) AS n, sum(amount) FROM orders GROUP BY ALL ORDER BY ALL",
                "SELECT customer, count(*) AS n, sum(amount) FROM orders GROUP BY 1 ORDER BY 1 NULLS LAST, 2 NULLS LAST, 3 NULLS LAST",
            ),
            (
                "SELECT id, row_number() OVER (PARTITION BY customer ORDER BY amount DESC) AS rn FROM orders QUALIFY rn = 1 ORDER BY id LIMIT 5",
                "SELECT id, rn FROM (SELECT id, row_number() OVER (PARTITION BY customer ORDER BY amount DESC NULLS LAST) AS rn, ((row_number() OVER (PARTITION BY customer ORDER BY amount DESC NULLS LAST)) = 1) AS __lake_qualify FROM orders) AS __lake_qualified WHERE __lake_qualify ORDER BY id NULLS LAST LIMIT 5",
            ),
            (
                "SELECT * EXCLUDE (secret) FROM lake__demo.orders",
                "SELECT `id`, `customer`, `amount` FROM `lake`.lake__demo.orders",
            ),
            (
                "SELECT o.* EXCLUDE secret FROM lake__demo.orders AS o JOIN lake__demo.c ON true",
                "SELECT `o`.`id`, `o`.`customer`, `o`.`amount` FROM `lake`.lake__demo.orders AS o JOIN `lake`.lake__demo.c ON true",
            ),
            (
                "SELECT strftime(ts, '%Y-%m-%d %H:%M'), strptime(s, '%d/%m/%Y'), regexp_matches(s, 'a+'), regexp_extract(s, '[0-9]+')",
                "SELECT date_format(ts, 'yyyy-MM-dd HH:mm'), CAST(to_timestamp(s, 'dd/MM/yyyy') AS TIMESTAMP_NTZ), rlike(s, 'a+'), regexp_extract(s, '[0-9]+', 0)",
            ),
            (
                "SELECT string_agg(name, ', '), string_agg(DISTINCT name), list(x), arg_max(a, b), concat(a, b)",
                "SELECT concat_ws(', ', collect_list(name)), concat_ws(',', collect_list(DISTINCT name)), collect_list(x), max_by(a, b), concat_ws('', a, b)",
            ),
            (
                "SELECT [1, 2, 3], 7 // 2, unnest(xs), x::INT[]",
                "SELECT array(1, 2, 3), 7 DIV 2, explode(xs), CAST(x AS ARRAY<INT>)",
            ),
            (
                "SELECT d + INTERVAL 7 DAY, d - INTERVAL '3 days', date_trunc('month', d)",
                "SELECT CAST(d AS TIMESTAMP_NTZ) + INTERVAL 7 DAY, CAST(d AS TIMESTAMP_NTZ) - INTERVAL '3' DAY, CAST(date_trunc('MONTH', d) AS TIMESTAMP_NTZ)",
            ),
            (
                "SELECT date_diff('day', a, b), date_diff('month', a, b), datediff('year', a, b)",
                "SELECT datediff(CAST(b AS DATE), CAST(a AS DATE)), ((year(b) * 12 + month(b)) - (year(a) * 12 + month(a))), (year(b) - year(a))",
            ),
            (
                r"SELECT 'it''s', 'C:\path', TIMESTAMP '2024-01-01 00:00:00'",
                r"SELECT 'it\u0027s', 'C:\\path', TIMESTAMP_NTZ '2024-01-01 00:00:00'",
            ),
            (
                "SELECT DISTINCT ON (customer) customer, amount AS a FROM orders ORDER BY customer, amount DESC",
                "SELECT customer, a FROM (SELECT customer, amount AS a, amount AS __lake_order_1, (row_number() OVER (PARTITION BY customer ORDER BY customer NULLS LAST, amount DESC NULLS LAST) = 1) AS __lake_qualify FROM orders) AS __lake_qualified WHERE __lake_qualify ORDER BY customer NULLS LAST, __lake_order_1 DESC NULLS LAST",
            ),
            (
                "SELECT id FROM orders ORDER BY amount DESC NULLS FIRST, id",
                "SELECT id FROM orders ORDER BY amount DESC NULLS FIRST, id NULLS LAST",
            ),
            (
                "SELECT DATE '2024-01-01' + INTERVAL (range % 365) DAY AS d, range FROM range(30000000)",
                "SELECT CAST(DATE '2024-01-01' AS TIMESTAMP_NTZ) + make_dt_interval(CAST((range % 365) AS INT), 0, 0, 0) AS d, range FROM (SELECT id AS range FROM range(0, 30000000)) AS range",
            ),
            (
                "SELECT ts - INTERVAL (n) MONTH, ts + INTERVAL (s * 1.5) SECOND, ts + INTERVAL (w) WEEK FROM t",
                "SELECT CAST(ts AS TIMESTAMP_NTZ) - make_ym_interval(0, CAST((n) AS INT)), CAST(ts AS TIMESTAMP_NTZ) + make_dt_interval(0, 0, 0, CAST((s * 1.5) AS DECIMAL(18,6))), CAST(ts AS TIMESTAMP_NTZ) + make_dt_interval(CAST((w) AS INT) * 7, 0, 0, 0) FROM t",
            ),
            (
                "SELECT s.x FROM range(2, 10, 3) AS s(x) JOIN generate_series(1, 5) AS g ON s.x = g.generate_series",
                "SELECT s.x FROM (SELECT id AS x FROM range(2, 10, 3)) AS s JOIN (SELECT id AS generate_series FROM range(1, (5 + 1))) AS g ON s.x = g.generate_series",
            ),
        ];
        let mut failures = Vec::new();
        for (duckdb, expected) in cases {
            let got = spark(duckdb);
            if got != expected {
                failures.push(format!("{duckdb}\n  expected {expected}\n  got      {got}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn spark_sql_models_only_get_their_names_qualified() {
        assert_eq!(
            qualify_names(
                r#"SELECT date_format(d, 'yyyy') AS y, size(collect_list(x)) FROM "lake__s"."t" AS t GROUP BY 1"#,
                "lake"
            )
            .unwrap(),
            "SELECT date_format(d, 'yyyy') AS y, size(collect_list(x)) FROM `lake`.`lake__s`.`t` AS t GROUP BY 1"
        );
    }

    #[test]
    fn what_spark_cannot_express_is_named_and_located() {
        let cases = [
            ("SELECT epoch_ms(ts) FROM t", "epoch_ms", 1, 8),
            (
                "SELECT\n  * EXCLUDE (a) FROM t1 JOIN t2 ON true",
                "SELECT * EXCLUDE",
                2,
                3,
            ),
            (
                "SELECT strftime(ts, '%U') FROM t",
                "the strftime code %U",
                1,
                8,
            ),
            ("SELECT date_diff('hour', a, b)", "date_diff in hours", 1, 8),
            (
                "SELECT string_agg(x, ',' ORDER BY x)",
                "string_agg with ORDER BY",
                1,
                8,
            ),
            (
                "SELECT *, 1 AS x FROM t QUALIFY x = 1",
                "QUALIFY over * or an unnamed expression",
                1,
                1,
            ),
            ("SELECT x::TIME", "the type TIME", 0, 0),
            (
                "SELECT * FROM\n  range(TIMESTAMP '2024-01-01', TIMESTAMP '2024-02-01', INTERVAL 1 DAY)",
                "range(…) over timestamps or with named arguments",
                2,
                3,
            ),
        ];
        let target = Target {
            catalog: "lake",
            columns_of: &|_| None,
        };
        for (sql, construct, line, column) in cases {
            let e = transpile(sql, &target).expect_err(sql);
            assert_eq!(e.construct, construct, "{sql}");
            assert_eq!((e.line, e.column), (line, column), "{sql}");
            assert!(!e.help.is_empty());
        }
    }
}
