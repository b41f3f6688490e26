//! DuckDB's computed intervals (`INTERVAL (expr) DAY`) and integer series table functions (`range`,
//! `generate_series`) in Spark SQL, which spells the first as a constructor call and names the series' column
//! `id`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, DataType, DateTimeField, ExactNumberInfo, Expr, FunctionArg, FunctionArgExpr,
    Interval, Query, SetExpr, Spanned, Statement, TableAlias, TableFactor, UnaryOperator, Value,
};
use sqlparser::dialect::DuckDbDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Span;

use super::{Untranslatable, call, cast, ident, name_parts, number, untranslatable};

/// Spark's interval constructors, which `computed_interval` writes.
const INTERVAL_CONSTRUCTORS: &[&str] = &["make_dt_interval", "make_ym_interval"];

/// Whether `expr` is an interval: a literal, or a computed one already translated.
pub(super) fn is_interval(expr: &Expr) -> bool {
    match expr {
        Expr::Interval(_) => true,
        Expr::Function(f) => {
            let name = name_parts(&f.name).join(".").to_lowercase();
            INTERVAL_CONSTRUCTORS.contains(&name.as_str())
        }
        _ => false,
    }
}

/// `INTERVAL (expr) DAY`, whose amount is computed per row, as `make_dt_interval(expr, 0, 0, 0)` (or
/// `make_ym_interval` for years and months); `None` for a literal interval, which Spark reads as written.
pub(super) fn computed_interval(interval: &Interval) -> Option<Result<Expr, Untranslatable>> {
    let literal = match interval.value.as_ref() {
        Expr::Value(_) => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => matches!(expr.as_ref(), Expr::Value(_)),
        _ => false,
    };
    if literal {
        return None;
    }
    let amount = |data_type: DataType| cast((*interval.value).clone(), data_type);
    let whole = || amount(DataType::Int(None));
    let zero = || number(0);
    let made = match &interval.leading_field {
        Some(DateTimeField::Year | DateTimeField::Years) => {
            call("make_ym_interval", vec![whole(), zero()])
        }
        Some(DateTimeField::Month | DateTimeField::Months) => {
            call("make_ym_interval", vec![zero(), whole()])
        }
        Some(DateTimeField::Week(_) | DateTimeField::Weeks) => {
            let days = Expr::BinaryOp {
                left: Box::new(whole()),
                op: BinaryOperator::Multiply,
                right: Box::new(number(7)),
            };
            call("make_dt_interval", vec![days, zero(), zero(), zero()])
        }
        Some(DateTimeField::Day | DateTimeField::Days) => {
            call("make_dt_interval", vec![whole(), zero(), zero(), zero()])
        }
        Some(DateTimeField::Hour | DateTimeField::Hours) => {
            call("make_dt_interval", vec![zero(), whole(), zero(), zero()])
        }
        Some(DateTimeField::Minute | DateTimeField::Minutes) => {
            call("make_dt_interval", vec![zero(), zero(), whole(), zero()])
        }
        Some(DateTimeField::Second | DateTimeField::Seconds) => {
            let seconds = amount(DataType::Decimal(ExactNumberInfo::PrecisionAndScale(18, 6)));
            call("make_dt_interval", vec![zero(), zero(), zero(), seconds])
        }
        _ => {
            return Some(Err(untranslatable(
                format!(
                    "INTERVAL ({}) without a day-to-second or year-month unit",
                    interval.value
                ),
                Span::empty(),
                "write the unit: INTERVAL (expr) DAY, HOUR, MINUTE, SECOND, WEEK, MONTH or YEAR",
            )));
        }
    };
    Some(Ok(made))
}

/// DuckDB's integer `range(…)` and `generate_series(…)` in FROM as Spark's `range`, whose one column is
/// named `id` where DuckDB names it after the function: `(SELECT id AS range FROM range(…)) AS range`,
/// keeping the alias and column name the query gives. `generate_series` includes its stop, so the stop
/// moves one step on. A series of timestamps (an interval step) is untranslatable.
pub(super) fn series_table(factor: &mut TableFactor) -> ControlFlow<Untranslatable> {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        ..
    } = factor
    else {
        return ControlFlow::Continue(());
    };
    let function = name_parts(name).join(".").to_lowercase();
    let inclusive = match function.as_str() {
        "range" => false,
        "generate_series" => true,
        _ => return ControlFlow::Continue(()),
    };
    let span = name.0.first().map_or(Span::empty(), |p| p.span());
    let values: Option<Vec<Expr>> = args
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let not_integers = || {
        untranslatable(
            format!("{function}(…) over timestamps or with named arguments"),
            span,
            "Spark's range counts integers: write the series with sequence() and explode() in a `dialect spark` model",
        )
    };
    let Some(mut values) = values.filter(|v| (1..=3).contains(&v.len())) else {
        return ControlFlow::Break(not_integers());
    };
    if values
        .iter()
        .any(|v| is_interval(v) || matches!(v, Expr::TypedString(_)))
    {
        return ControlFlow::Break(not_integers());
    }
    if values.len() == 1 {
        values.insert(0, number(0));
    }
    if inclusive {
        let step = match values.get(2) {
            None => 1,
            Some(Expr::Value(v)) if matches!(&v.value, Value::Number(n, _) if !n.starts_with('-')) => {
                1
            }
            Some(Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            }) if matches!(expr.as_ref(), Expr::Value(_)) => -1,
            Some(_) => {
                return ControlFlow::Break(untranslatable(
                    "generate_series(…) with a computed step",
                    span,
                    "write the step as a number, or use range(start, stop + step, step)",
                ));
            }
        };
        let stop = values[1].clone();
        values[1] = Expr::Nested(Box::new(Expr::BinaryOp {
            left: Box::new(stop),
            op: if step > 0 {
                BinaryOperator::Plus
            } else {
                BinaryOperator::Minus
            },
            right: Box::new(number(1)),
        }));
    }
    let column = alias
        .as_ref()
        .and_then(|a| a.columns.first())
        .map_or_else(|| ident(&function), |c| c.name.clone());
    let table = alias
        .as_ref()
        .map_or_else(|| ident(&function), |a| a.name.clone());
    let Some(subquery) = spark_range(values, column) else {
        return ControlFlow::Continue(());
    };
    *factor = TableFactor::Derived {
        lateral: false,
        subquery: Box::new(subquery),
        alias: Some(TableAlias {
            explicit: true,
            name: table,
            columns: Vec::new(),
            at: None,
        }),
        sample: None,
    };
    ControlFlow::Continue(())
}

/// `SELECT id AS column FROM range(values)`, built from a parsed template so only the parts it changes are
/// written here.
fn spark_range(values: Vec<Expr>, column: sqlparser::ast::Ident) -> Option<Query> {
    let Statement::Query(mut query) =
        Parser::parse_sql(&DuckDbDialect {}, "SELECT id AS c FROM range(0)")
            .ok()?
            .pop()?
    else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    if let Some(sqlparser::ast::SelectItem::ExprWithAlias { alias, .. }) =
        select.projection.first_mut()
    {
        *alias = column;
    }
    if let Some(TableFactor::Table {
        args: Some(args), ..
    }) = select.from.first_mut().map(|t| &mut t.relation)
    {
        args.args = values
            .into_iter()
            .map(|v| FunctionArg::Unnamed(FunctionArgExpr::Expr(v)))
            .collect();
    }
    Some(*query)
}
