//! SQLMesh's built-in macro functions (`@EACH`, `@IF`, `@STAR`, …) and calls of user macros (`@DEF`).

use super::{MacroContext, MacroError, render_text, split_args};
use crate::sql::{lex, quote_ident, quote_ident_always, quote_literal};

/// The built-in macro functions lake evaluates.
pub const BUILTIN_FUNCTIONS: &[&str] = &[
    "var",
    "def",
    "each",
    "reduce",
    "filter",
    "if",
    "eval",
    "sql",
    "star",
    "generate_surrogate_key",
    "safe_add",
    "safe_sub",
    "safe_div",
    "union",
    "and",
    "or",
    "deduplicate",
    "date_spine",
    "pivot",
    "haversine_distance",
    "resolve_template",
    "blueprint_var",
];

/// Why a macro call cannot be rendered; `render` places it at the call, with a hint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("@{macro_name} needs {what}")]
    MissingArgument { macro_name: String, what: String },
    #[error("argument `{argument}` of @{macro_name} is not a SQL expression: {reason}")]
    NotAnExpression {
        macro_name: String,
        argument: String,
        reason: String,
    },
    #[error("item `{item}` of @{macro_name}'s list is not a SQL expression: {reason}")]
    NotAListItem {
        macro_name: String,
        item: String,
        reason: String,
    },
    #[error("expected a lambda `x -> expression`, got `{0}`")]
    NotALambda(String),
    #[error("@{name} takes {expected} argument(s), got {got}")]
    WrongArity {
        name: String,
        expected: usize,
        got: usize,
    },
    #[error("cannot evaluate `{expression}` while rendering: {reason}")]
    Evaluation { expression: String, reason: String },
    #[error(
        "@{macro_name} needs the columns of `{relation}`, and lake could not infer them from its query: \
         declare `columns (...)` in its MODEL block, or list it in external_models.yaml"
    )]
    UnknownColumns {
        macro_name: String,
        relation: String,
    },
    #[error("@{name} is a Python macro ({file}); lake cannot run Python macros")]
    PythonMacro { name: String, file: String },
    #[error("unknown macro function @{0}")]
    Unknown(String),
    /// An argument outside what the macro accepts: a unit, a mode, a date part, a statement-only macro.
    #[error("{0}")]
    InvalidArgument(String),
    /// A macro call inside an argument or a body failed.
    #[error("{}", .0.message)]
    Nested(Box<MacroError>),
}

/// `@NAME needs WHAT`.
fn missing(macro_name: &str, what: &str) -> CallError {
    CallError::MissingArgument {
        macro_name: macro_name.to_uppercase(),
        what: what.to_string(),
    }
}

/// One macro call: its name and arguments (positional, and keyword ones such as `exclude := [a]`), with
/// what rendering them needs.
struct Call<'a> {
    name: &'a str,
    positional: Vec<&'a str>,
    named: Vec<(String, &'a str)>,
    ctx: &'a MacroContext,
}

impl<'a> Call<'a> {
    fn new(name: &'a str, args: &'a str, ctx: &'a MacroContext) -> Call<'a> {
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for arg in split_args(args).into_iter().map(str::trim) {
            if arg.is_empty() {
                continue;
            }
            match keyword_arg(arg) {
                Some((key, value)) => named.push((key, value)),
                None => positional.push(arg),
            }
        }
        Call {
            name,
            positional,
            named,
            ctx,
        }
    }

    /// The macro's name as SQLMesh writes it in messages: `@EACH`.
    fn upper(&self) -> String {
        self.name.to_uppercase()
    }

    fn kw(&self, key: &str) -> Option<&'a str> {
        self.named.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn rendered(&self, text: &str) -> Result<String, CallError> {
        render_text(text, self.ctx)
    }

    /// A keyword argument's text, unquoted, or `default`.
    fn text_kw(&self, key: &str, default: &str) -> Result<String, CallError> {
        self.kw(key).map_or(Ok(default.to_string()), |v| {
            self.rendered(v).map(|v| unquote(&v))
        })
    }

    /// An argument that must be one SQL expression is parsed as one, so a stray comma or keyword is reported
    /// at the macro call rather than as a syntax error somewhere in the rendered query.
    fn expression(&self, text: &str) -> Result<String, CallError> {
        let sql = self.rendered(text)?;
        if let Some(reason) = expression_problem(&sql) {
            return Err(CallError::NotAnExpression {
                macro_name: self.upper(),
                argument: text.trim().to_string(),
                reason,
            });
        }
        Ok(sql)
    }

    /// Every positional argument as an expression.
    fn expressions(&self) -> Result<Vec<String>, CallError> {
        self.positional.iter().map(|a| self.expression(a)).collect()
    }

    /// Positional argument `i`, described as `what` when it is missing.
    fn nth(&self, i: usize, what: &str) -> Result<&'a str, CallError> {
        self.positional
            .get(i)
            .copied()
            .ok_or_else(|| missing(self.name, what))
    }

    /// Argument `i` rendered as a list of SQL expressions.
    fn list_arg(&self, i: usize, what: &str) -> Result<Vec<String>, CallError> {
        sql_list(&self.rendered(self.nth(i, what)?)?, self.name)
    }

    /// A lambda's body with `values` in place of its parameters, rendered.
    fn apply(&self, params: &[String], body: &str, values: &[String]) -> Result<String, CallError> {
        render_text(&substitute(body, params, values), self.ctx)
    }
}

/// A built-in macro: its rendered SQL, or why the call cannot render.
type Builtin = fn(&Call<'_>) -> Result<String, CallError>;

/// The built-in macros `call` evaluates, by lower-case name (`@VAR` and `@DEF` are handled where they occur).
const BUILTINS: &[(&str, Builtin)] = &[
    ("each", each),
    ("reduce", reduce),
    ("filter", filter),
    ("if", if_),
    ("eval", eval),
    ("sql", sql),
    ("and", and_or),
    ("or", and_or),
    ("safe_add", safe_add_sub),
    ("safe_sub", safe_add_sub),
    ("safe_div", safe_div),
    ("generate_surrogate_key", generate_surrogate_key),
    ("deduplicate", deduplicate),
    ("date_spine", date_spine),
    ("star", star),
    ("union", union),
    ("haversine_distance", haversine_distance),
    ("pivot", pivot),
    ("resolve_template", resolve_template),
    ("blueprint_var", blueprint_var),
    ("def", def),
];

/// Calls `@name(args)`: a built-in, a user macro from `@DEF`, or an error naming what cannot run.
pub fn call(name: &str, args: &str, ctx: &MacroContext) -> Result<String, CallError> {
    let lower = name.to_ascii_lowercase();
    let call = Call::new(name, args, ctx);
    if let Some((_, builtin)) = BUILTINS.iter().find(|(n, _)| *n == lower) {
        return builtin(&call);
    }
    if let Some(user) = ctx.functions.get(&lower) {
        if call.positional.len() != user.params.len() {
            return Err(CallError::WrongArity {
                name: name.to_string(),
                expected: user.params.len(),
                got: call.positional.len(),
            });
        }
        let values = call.expressions()?;
        return call.apply(&user.params, &user.body, &values);
    }
    if let Some(file) = ctx.python_macros.get(&lower) {
        return Err(CallError::PythonMacro {
            name: name.to_string(),
            file: file.clone(),
        });
    }
    Err(CallError::Unknown(name.to_string()))
}

/// `@EACH(list, x -> body)`: the body for every item, comma-separated.
fn each(call: &Call<'_>) -> Result<String, CallError> {
    let items = call.list_arg(0, "a list")?;
    let (params, body) = lambda(call.nth(1, "a lambda `x -> …`")?)?;
    let out: Vec<String> = items
        .iter()
        .map(|item| call.apply(&params, body, std::slice::from_ref(item)))
        .collect::<Result<_, _>>()?;
    Ok(out.join(", "))
}

/// `@REDUCE(list, (l, r) -> body)`: the items folded from the left.
fn reduce(call: &Call<'_>) -> Result<String, CallError> {
    let items = call.list_arg(0, "a list")?;
    let (params, body) = lambda(call.nth(1, "a lambda `(l, r) -> …`")?)?;
    let mut items = items.into_iter();
    let Some(mut acc) = items.next() else {
        return Ok(String::new());
    };
    for item in items {
        acc = call.apply(&params, body, &[acc, item])?;
    }
    Ok(acc)
}

/// `@FILTER(list, x -> condition)`: the items whose condition holds, as a list.
fn filter(call: &Call<'_>) -> Result<String, CallError> {
    let items = call.list_arg(0, "a list")?;
    let (params, body) = lambda(call.nth(1, "a lambda `x -> condition`")?)?;
    let mut kept = Vec::new();
    for item in items {
        let condition = call.apply(&params, body, std::slice::from_ref(&item))?;
        if truthy(&condition)? {
            kept.push(item);
        }
    }
    Ok(format!("[{}]", kept.join(", ")))
}

/// `@IF(condition, then[, else])`, decided at render time.
fn if_(call: &Call<'_>) -> Result<String, CallError> {
    let condition = call.expression(call.nth(0, "a condition")?)?;
    if truthy(&condition)? {
        call.rendered(call.nth(1, "a value for true")?)
    } else {
        call.positional
            .get(2)
            .map_or(Ok(String::new()), |e| call.rendered(e))
    }
}

/// `@EVAL(expression)`: its value as a literal.
fn eval(call: &Call<'_>) -> Result<String, CallError> {
    constant(&call.expression(call.nth(0, "an expression")?)?)
}

/// `@SQL('text')`: the string's contents as SQL.
fn sql(call: &Call<'_>) -> Result<String, CallError> {
    let text = call.rendered(call.nth(0, "a string")?)?;
    render_text(&unquote(&text), call.ctx)
}

/// `@AND(…)` / `@OR(…)`: the conditions joined, NULL ones left out.
fn and_or(call: &Call<'_>) -> Result<String, CallError> {
    let and = call.name.eq_ignore_ascii_case("and");
    let parts: Vec<String> = call
        .expressions()?
        .into_iter()
        .filter(|p| !p.eq_ignore_ascii_case("NULL"))
        .map(|p| format!("({p})"))
        .collect();
    Ok(match (parts.is_empty(), and) {
        (true, true) => "TRUE".to_string(),
        (true, false) => "FALSE".to_string(),
        (false, true) => parts.join(" AND "),
        (false, false) => parts.join(" OR "),
    })
}

/// `@SAFE_ADD(…)` / `@SAFE_SUB(…)`: NULL only when every value is.
fn safe_add_sub(call: &Call<'_>) -> Result<String, CallError> {
    let operator = if call.name.eq_ignore_ascii_case("safe_add") {
        " + "
    } else {
        " - "
    };
    let parts = call.expressions()?;
    if parts.is_empty() {
        return Err(missing(call.name, "values"));
    }
    let all_null: Vec<String> = parts.iter().map(|p| format!("{p} IS NULL")).collect();
    let sum: Vec<String> = parts.iter().map(|p| format!("COALESCE({p}, 0)")).collect();
    Ok(format!(
        "CASE WHEN {} THEN NULL ELSE {} END",
        all_null.join(" AND "),
        sum.join(operator)
    ))
}

/// `@SAFE_DIV(a, b)`: NULL instead of a division by zero.
fn safe_div(call: &Call<'_>) -> Result<String, CallError> {
    Ok(format!(
        "{} / NULLIF({}, 0)",
        call.expression(call.nth(0, "a numerator")?)?,
        call.expression(call.nth(1, "a denominator")?)?
    ))
}

/// `@GENERATE_SURROGATE_KEY(a, b[, hash_function := 'SHA256'])`, as SQLMesh writes it.
fn generate_surrogate_key(call: &Call<'_>) -> Result<String, CallError> {
    let hash = call.text_kw("hash_function", "MD5")?;
    let parts: Vec<String> = call
        .expressions()?
        .into_iter()
        .map(|p| format!("COALESCE(CAST({p} AS TEXT), '_sqlmesh_surrogate_key_null_')"))
        .collect();
    Ok(format!("{hash}(CONCAT({}))", parts.join(", '|', ")))
}

/// `@DEDUPLICATE(relation, partition_by := [...], order_by := [...])`: the first row of each partition.
fn deduplicate(call: &Call<'_>) -> Result<String, CallError> {
    let relation = call.rendered(call.nth(0, "a relation")?)?;
    let partition = call
        .kw("partition_by")
        .ok_or_else(|| missing("deduplicate", "`partition_by := [columns]`"))?;
    let order = call
        .kw("order_by")
        .ok_or_else(|| missing("deduplicate", "`order_by := ['column desc']`"))?;
    let partition: Vec<String> = sql_list(&call.rendered(partition)?, call.name)?;
    let order: Vec<String> = list(&call.rendered(order)?)
        .iter()
        .map(|o| unquote(o))
        .collect();
    Ok(format!(
        "SELECT * FROM {relation} QUALIFY ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {}) = 1",
        partition.join(", "),
        order.join(", ")
    ))
}

/// `@DATE_SPINE('day', start, end)`: one row per date part between the two dates.
fn date_spine(call: &Call<'_>) -> Result<String, CallError> {
    let part =
        unquote(&call.rendered(call.nth(0, "a date part ('day', 'week', …)")?)?).to_lowercase();
    if !["day", "week", "month", "quarter", "year"].contains(&part.as_str()) {
        return Err(CallError::InvalidArgument(format!(
            "@DATE_SPINE's date part is day, week, month, quarter or year, not `{part}`"
        )));
    }
    let start = call.rendered(call.nth(1, "a start date")?)?;
    let end = call.rendered(call.nth(2, "an end date")?)?;
    Ok(format!(
        "SELECT CAST(d AS DATE) AS date_{part} FROM UNNEST(generate_series(CAST({start} AS DATE), CAST({end} AS DATE), INTERVAL 1 {part})) AS spine(d)"
    ))
}

/// `@STAR(relation[, alias, exclude, prefix, suffix])`: the relation's columns, each cast to its type.
fn star(call: &Call<'_>) -> Result<String, CallError> {
    let relation = call.rendered(call.nth(0, "a relation")?)?;
    let columns = known_columns(call.ctx, &relation, "STAR")?;
    let alias = match call.kw("alias") {
        Some(a) => unquote(&call.rendered(a)?),
        None => relation.rsplit('.').next().unwrap_or(&relation).to_string(),
    };
    // `except` is SQLMesh's older name for `exclude`.
    let exclude: Vec<String> = match call.kw("exclude").or(call.kw("except")) {
        Some(e) => list(&call.rendered(e)?)
            .iter()
            .map(|c| unquote(c).to_lowercase())
            .collect(),
        None => Vec::new(),
    };
    let prefix = call.text_kw("prefix", "")?;
    let suffix = call.text_kw("suffix", "")?;
    let items: Vec<String> = columns
        .iter()
        .filter(|(c, _)| !exclude.contains(&c.to_lowercase()))
        .map(|(c, t)| {
            format!(
                "CAST({}.{} AS {t}) AS {}",
                quote_ident(&alias),
                quote_ident(c),
                quote_ident(&format!("{prefix}{c}{suffix}"))
            )
        })
        .collect();
    Ok(items.join(", "))
}

/// `@UNION(['all' | 'distinct',] t1, t2, …)`: the tables' common columns, unioned.
fn union(call: &Call<'_>) -> Result<String, CallError> {
    let mut tables: Vec<String> = call
        .positional
        .iter()
        .map(|a| call.rendered(a))
        .collect::<Result<_, _>>()?;
    let kind = match tables.first().map(|t| unquote(t).to_lowercase()) {
        Some(k) if k == "all" || k == "distinct" => {
            tables.remove(0);
            k.to_uppercase()
        }
        _ => "ALL".to_string(),
    };
    if tables.len() < 2 {
        return Err(missing("union", "at least two tables"));
    }
    // The columns every table has, in the first table's order.
    let column_sets: Vec<&Vec<(String, String)>> = tables
        .iter()
        .map(|t| known_columns(call.ctx, t, "UNION"))
        .collect::<Result<_, _>>()?;
    let common: Vec<&(String, String)> = column_sets[0]
        .iter()
        .filter(|(c, _)| {
            column_sets[1..]
                .iter()
                .all(|set| set.iter().any(|(o, _)| o.eq_ignore_ascii_case(c)))
        })
        .collect();
    let cols: Vec<String> = common
        .iter()
        .map(|(c, ty)| format!("CAST({q} AS {ty}) AS {q}", q = quote_ident(c)))
        .collect();
    Ok(tables
        .iter()
        .map(|t| format!("SELECT {} FROM {t}", cols.join(", ")))
        .collect::<Vec<_>>()
        .join(&format!(" UNION {kind} ")))
}

/// `@HAVERSINE_DISTANCE(lat1, lon1, lat2, lon2[, unit])`, with SQLMesh's formula and Earth radius (3961
/// miles), so distances match it to the digit.
fn haversine_distance(call: &Call<'_>) -> Result<String, CallError> {
    // Every coordinate must be there before any is parsed, so a short call is reported as such.
    let texts = [
        call.nth(0, "lat1")?,
        call.nth(1, "lon1")?,
        call.nth(2, "lat2")?,
        call.nth(3, "lon2")?,
    ];
    let [lat1, lon1, lat2, lon2] = texts.map(|a| call.expression(a).map(|e| format!("({e})")));
    let (lat1, lon1, lat2, lon2) = (lat1?, lon1?, lat2?, lon2?);
    let unit = match call.kw("unit").or(call.positional.get(4).copied()) {
        Some(u) => unquote(&call.rendered(u)?),
        None => "mi".into(),
    };
    let rate = match unit.as_str() {
        "mi" => "1.0",
        "km" => "1.60934",
        other => {
            return Err(CallError::InvalidArgument(format!(
                "@HAVERSINE_DISTANCE's unit is 'mi' or 'km', not '{other}'"
            )));
        }
    };
    Ok(format!(
        "2 * 3961 * ASIN(SQRT(POWER(SIN(RADIANS(({lat2} - {lat1}) / 2)), 2) + COS(RADIANS({lat1})) * \
         COS(RADIANS({lat2})) * POWER(SIN(RADIANS(({lon2} - {lon1}) / 2)), 2))) * {rate}"
    ))
}

/// `@PIVOT(column, [values], …)`: one aggregate column per value.
fn pivot(call: &Call<'_>) -> Result<String, CallError> {
    let column = call.expression(call.nth(0, "a column")?)?;
    let values = call.list_arg(1, "a list of values")?;
    let flag = |key: &str, default: bool| -> Result<bool, CallError> {
        call.kw(key)
            .map_or(Ok(default), |v| truthy(&call.rendered(v)?))
    };
    let (agg, cmp) = (call.text_kw("agg", "SUM")?, call.text_kw("cmp", "=")?);
    let (prefix, suffix) = (call.text_kw("prefix", "")?, call.text_kw("suffix", "")?);
    let value_kw = |key: &str, default: &str| {
        call.kw(key)
            .map_or(Ok(default.to_string()), |v| call.rendered(v))
    };
    let then_value = value_kw("then_value", "1")?;
    let else_value = value_kw("else_value", "0")?;
    let distinct = if flag("distinct", false)? {
        "DISTINCT "
    } else {
        ""
    };
    let (alias, quote) = (flag("alias", true)?, flag("quote", true)?);
    let columns: Vec<String> = values
        .iter()
        .map(|value| {
            let aggregate = format!(
                "{agg}({distinct}CASE WHEN {column} {cmp} {value} THEN {then_value} ELSE {else_value} END)"
            );
            // SQLMesh names the column after the value as written, quotes included: 'a' -> "'a'".
            let name = format!("{prefix}{value}{suffix}");
            match (alias, quote) {
                (false, _) => aggregate,
                (true, true) => format!("{aggregate} AS {}", quote_ident_always(&name)),
                (true, false) => format!("{aggregate} AS {name}"),
            }
        })
        .collect();
    Ok(columns.join(", "))
}

/// `@RESOLVE_TEMPLATE('@{catalog_name}.@{schema_name}.@{table_name}_x'[, mode])`: the model's own table's
/// name parts put in.
fn resolve_template(call: &Call<'_>) -> Result<String, CallError> {
    let ctx = call.ctx;
    let template = call.rendered(call.nth(0, "a template string")?)?;
    // While loading there is no table yet: SQLMesh leaves the template as it is.
    if ctx.this_model.is_empty() || ctx.runtime_stage == "loading" {
        return Ok(template);
    }
    let parts: Vec<String> = ctx
        .this_model
        .split('.')
        .map(|p| p.trim_matches('"').replace("\"\"", "\""))
        .collect();
    let (schema, table) = match parts.as_slice() {
        [.., schema, table] => (schema.clone(), table.clone()),
        _ => (String::new(), ctx.this_model.clone()),
    };
    let catalog = match parts.as_slice() {
        [catalog, _, _] => catalog.clone(),
        _ => ctx.catalog.clone(),
    };
    let resolved = unquote(&template)
        .replace("@{catalog_name}", &catalog)
        .replace("@{schema_name}", &schema)
        .replace("@{table_name}", &table);
    let mode = match call.kw("mode").or(call.positional.get(1).copied()) {
        Some(m) => unquote(&call.rendered(m)?).to_lowercase(),
        None => "literal".into(),
    };
    match mode.as_str() {
        "literal" => Ok(quote_literal(&resolved)),
        "table" => Ok(resolved),
        other => Err(CallError::InvalidArgument(format!(
            "@RESOLVE_TEMPLATE's mode is 'literal' or 'table', not '{other}'"
        ))),
    }
}

/// `@BLUEPRINT_VAR('name'[, default])`: the variable of the model's blueprint (`blueprints` property), else
/// the default, else NULL.
fn blueprint_var(call: &Call<'_>) -> Result<String, CallError> {
    let name_arg = call.rendered(call.nth(0, "a variable name string")?)?;
    if !name_arg.trim().starts_with('\'') {
        return Err(CallError::InvalidArgument(format!(
            "@BLUEPRINT_VAR's variable name is a string literal, not `{}`",
            name_arg.trim()
        )));
    }
    let wanted = unquote(&name_arg).to_lowercase();
    if let Some((_, value)) = call.ctx.blueprint_vars.iter().find(|(k, _)| *k == wanted) {
        return Ok(value.clone());
    }
    call.positional
        .get(1)
        .map_or(Ok("NULL".to_string()), |d| call.rendered(d))
}

/// `@DEF` inside an expression: it is a statement of its own.
fn def(_: &Call<'_>) -> Result<String, CallError> {
    Err(CallError::InvalidArgument(
        "@DEF defines a macro as a statement of its own: `@DEF(name, value);`".into(),
    ))
}

/// The columns of `relation` for `@STAR`/`@UNION`; a miss is recorded so that loading can infer them.
fn known_columns<'c>(
    ctx: &'c MacroContext,
    relation: &str,
    macro_name: &str,
) -> Result<&'c Vec<(String, String)>, CallError> {
    let key = relation.to_lowercase();
    ctx.columns_consulted
        .store(true, std::sync::atomic::Ordering::Relaxed);
    ctx.known_columns.get(&key).ok_or_else(|| {
        if let Ok(mut requests) = ctx.column_requests.lock() {
            requests.insert(key);
        }
        CallError::UnknownColumns {
            macro_name: macro_name.to_string(),
            relation: relation.to_string(),
        }
    })
}

/// The items of a list argument, each checked to be one SQL expression (optionally aliased, as in
/// `@EACH` output); macro syntax inside an item is allowed.
fn sql_list(text: &str, macro_name: &str) -> Result<Vec<String>, CallError> {
    let items = list(text);
    for item in &items {
        let (hidden, _) = lex::hide_macros(item);
        let parsed = sqlparser::parser::Parser::new(&sqlparser::dialect::DuckDbDialect {})
            .try_with_sql(&hidden)
            .and_then(|mut parser| {
                let parsed = parser.parse_select_item()?;
                parser.expect_token(&sqlparser::tokenizer::Token::EOF)?;
                Ok(parsed)
            })
            .map_err(|e| e.to_string())
            .and_then(|parsed| match parsed {
                // `b c` would be `b` aliased `c`: in a list that is a missing comma, not an alias.
                sqlparser::ast::SelectItem::ExprWithAlias { .. }
                    if !hidden.to_ascii_uppercase().contains(" AS ") =>
                {
                    Err("two expressions without a comma between them".to_string())
                }
                _ => Ok(()),
            });
        if let Err(reason) = parsed {
            return Err(CallError::NotAListItem {
                macro_name: macro_name.to_uppercase(),
                item: item.clone(),
                reason,
            });
        }
    }
    Ok(items)
}

/// Why `sql` is not exactly one expression (DuckDB's dialect), or `None` when it is.
fn expression_problem(sql: &str) -> Option<String> {
    use sqlparser::tokenizer::Token;
    let mut parser = match sqlparser::parser::Parser::new(&sqlparser::dialect::DuckDbDialect {})
        .try_with_sql(sql)
    {
        Ok(parser) => parser,
        Err(e) => return Some(e.to_string()),
    };
    if let Err(e) = parser.parse_expr() {
        return Some(e.to_string());
    }
    match parser.peek_token().token {
        Token::EOF => None,
        other => Some(format!("unexpected `{other}` after the expression")),
    }
}

/// `key := value` (or `key = value` where `key` is a plain word).
fn keyword_arg(arg: &str) -> Option<(String, &str)> {
    let (key, value) = arg.split_once(":=")?;
    let key = key.trim();
    key.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| (key.to_ascii_lowercase(), value.trim()))
}

/// `[a, b]`, `(a, b)` or `ARRAY[a, b]` as its items; anything else is one item.
pub fn list(text: &str) -> Vec<String> {
    let t = text.trim();
    let t = t.strip_prefix("ARRAY").map(str::trim_start).unwrap_or(t);
    let inner = if (t.starts_with('[') && t.ends_with(']'))
        || (t.starts_with('(') && lex::matching_paren(t, 0) == Some(t.len()))
    {
        &t[1..t.len() - 1]
    } else if t.is_empty() {
        return Vec::new();
    } else {
        // What @EACH returns: items separated by top-level commas.
        t
    };
    split_args(inner)
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `x -> body` or `(a, b) -> body`: the parameters and the body text.
fn lambda(text: &str) -> Result<(Vec<String>, &str), CallError> {
    super::split_lambda(text).ok_or_else(|| CallError::NotALambda(text.trim().to_string()))
}

/// Puts `values` in place of `params` in a lambda or macro body: `@p` and bare `p` as SQL, `@{p}` (and `@p`
/// glued to an identifier, as in `rank_@p`) as an identifier.
fn substitute(body: &str, params: &[String], values: &[String]) -> String {
    let value_of = |word: &str| {
        params
            .iter()
            .position(|p| p.eq_ignore_ascii_case(word))
            .and_then(|i| values.get(i))
    };
    let bytes = body.as_bytes();
    let mut out = String::with_capacity(body.len());
    let mut i = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        if let Some(n) = lex::skip_lexeme(bytes, i) {
            out.push_str(&body[i..i + n]);
            i += n;
            continue;
        }
        let b = bytes[i];
        if b == b'@' {
            let braced = bytes.get(i + 1) == Some(&b'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut end = start;
            while end < bytes.len() && is_ident(bytes[end]) {
                end += 1;
            }
            let glued = out.as_bytes().last().is_some_and(|&c| is_ident(c));
            if let Some(value) = value_of(&body[start..end]) {
                let closes = !braced || bytes.get(end) == Some(&b'}');
                if closes {
                    if braced || glued {
                        out.push_str(&identifier(value));
                    } else {
                        out.push_str(value);
                    }
                    i = if braced { end + 1 } else { end };
                    continue;
                }
            }
            out.push('@');
            i += 1;
            continue;
        }
        if is_ident(b)
            && !out
                .as_bytes()
                .last()
                .is_some_and(|&c| is_ident(c) || c == b'.')
        {
            let mut end = i;
            while end < bytes.len() && is_ident(bytes[end]) {
                end += 1;
            }
            let word = &body[i..end];
            let called = bytes.get(end) == Some(&b'(');
            match value_of(word) {
                Some(value) if !called => {
                    // A compound value keeps its meaning inside a larger expression.
                    if value.contains(char::is_whitespace) && !is_parenthesised(value) {
                        out.push_str(&format!("({value})"));
                    } else {
                        out.push_str(value);
                    }
                }
                _ => out.push_str(word),
            }
            i = end;
            continue;
        }
        out.push(b as char);
        i += 1;
    }
    out
}

fn is_parenthesised(text: &str) -> bool {
    text.starts_with('(') && lex::matching_paren(text, 0) == Some(text.len())
}

/// A value used as (part of) an identifier: `'revenue'` → `revenue`, `"x"` → `x`.
fn identifier(value: &str) -> String {
    let v = value.trim();
    if (v.starts_with('\'') && v.ends_with('\'') || v.starts_with('"') && v.ends_with('"'))
        && v.len() >= 2
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

fn unquote(text: &str) -> String {
    let t = text.trim();
    if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        t[1..t.len() - 1].replace("''", "'")
    } else {
        t.to_string()
    }
}

/// Evaluates a condition at render time, with DuckDB's semantics.
fn truthy(condition: &str) -> Result<bool, CallError> {
    let (value, _) = crate::engine::evaluate_constant(&format!("CAST(({condition}) AS BOOLEAN)"))
        .map_err(|e| CallError::Evaluation {
        expression: condition.to_string(),
        reason: e.to_string(),
    })?;
    Ok(value.as_deref() == Some("true"))
}

/// Evaluates an expression at render time and writes its value back as a SQL literal.
fn constant(expr: &str) -> Result<String, CallError> {
    let (value, data_type) =
        crate::engine::evaluate_constant(expr).map_err(|e| CallError::Evaluation {
            expression: expr.to_string(),
            reason: e.to_string(),
        })?;
    let Some(value) = value else {
        return Ok("NULL".into());
    };
    let numeric = [
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "FLOAT",
        "DOUBLE",
    ];
    Ok(
        if numeric.contains(&data_type.as_str()) || data_type.starts_with("DECIMAL") {
            value
        } else if data_type == "BOOLEAN" {
            value.to_uppercase()
        } else if data_type == "VARCHAR" {
            quote_literal(&value)
        } else {
            format!("CAST({} AS {data_type})", quote_literal(&value))
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::super::{MacroContext, define, render_text};
    use super::sql_list;

    fn ctx() -> MacroContext {
        let mut c = MacroContext::for_loading("local", &BTreeMap::new());
        c.known_columns = Arc::new(BTreeMap::from([
            (
                "s.a".to_string(),
                vec![
                    ("id".to_string(), "INT".to_string()),
                    ("x".to_string(), "TEXT".to_string()),
                ],
            ),
            (
                "s.b".to_string(),
                vec![("id".to_string(), "BIGINT".to_string())],
            ),
        ]));
        c.python_macros = Arc::new(BTreeMap::from([(
            "py".to_string(),
            "macros/py.py".to_string(),
        )]));
        c
    }

    fn r(text: &str) -> String {
        render_text(text, &ctx()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn each_builtin_renders_like_sqlmesh() {
        let cases = [
            ("@EACH([a, b], c -> c IS NULL)", "a IS NULL, b IS NULL"),
            (
                "@EACH(['x', 'y'], s -> sum(v) AS total_@{s})",
                "sum(v) AS total_x, sum(v) AS total_y",
            ),
            ("@EACH([1, 2], n -> rank_@n)", "rank_1, rank_2"),
            ("@REDUCE([a, b, c], (l, r) -> l OR r)", "(a OR b) OR c"),
            (
                "@REDUCE(@EACH([a, b], c -> c IS NULL), (l, r) -> l OR r)",
                "(a IS NULL) OR (b IS NULL)",
            ),
            (
                "@EACH(@FILTER([1, 2, 3], n -> n > 1), n -> n * 10)",
                "2 * 10, 3 * 10",
            ),
            ("@IF(1 > 2, 'yes', 'no')", "'no'"),
            ("@IF(@runtime_stage = 'loading', a)", "a"),
            ("x @IF(FALSE, a)", "x "),
            ("@EVAL(2 * 21)", "42"),
            ("@EVAL('a' || 'b')", "'ab'"),
            ("@EVAL(DATE '2024-01-01' + 1)", "CAST('2024-01-02' AS DATE)"),
            ("@SQL('@start_ds')", "'1970-01-01'"),
            ("@AND(a > 1, NULL, b)", "(a > 1) AND (b)"),
            ("@OR(a, b)", "(a) OR (b)"),
            (
                "@SAFE_ADD(a, b)",
                "CASE WHEN a IS NULL AND b IS NULL THEN NULL ELSE COALESCE(a, 0) + COALESCE(b, 0) END",
            ),
            (
                "@SAFE_SUB(a, b)",
                "CASE WHEN a IS NULL AND b IS NULL THEN NULL ELSE COALESCE(a, 0) - COALESCE(b, 0) END",
            ),
            ("@SAFE_DIV(a, b)", "a / NULLIF(b, 0)"),
            (
                "@GENERATE_SURROGATE_KEY(a, b, hash_function := 'SHA256')",
                "SHA256(CONCAT(COALESCE(CAST(a AS TEXT), '_sqlmesh_surrogate_key_null_'), '|', COALESCE(CAST(b AS TEXT), '_sqlmesh_surrogate_key_null_')))",
            ),
            (
                "@DEDUPLICATE(t, partition_by := [id], order_by := ['ts DESC'])",
                "SELECT * FROM t QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY ts DESC) = 1",
            ),
            (
                "@DATE_SPINE('day', '2024-01-01', '2024-01-03')",
                "SELECT CAST(d AS DATE) AS date_day FROM UNNEST(generate_series(CAST('2024-01-01' AS DATE), CAST('2024-01-03' AS DATE), INTERVAL 1 day)) AS spine(d)",
            ),
            ("@STAR(s.a, exclude := [x])", "CAST(a.id AS INT) AS id"),
            ("@STAR(s.a, except := [x])", "CAST(a.id AS INT) AS id"),
            (
                "@STAR(s.a, alias := 't', prefix := 'p_')",
                "CAST(t.id AS INT) AS p_id, CAST(t.x AS TEXT) AS p_x",
            ),
            (
                "@UNION('distinct', s.a, s.b)",
                "SELECT CAST(id AS INT) AS id FROM s.a UNION DISTINCT SELECT CAST(id AS INT) AS id FROM s.b",
            ),
            (
                "@PIVOT(status, ['cancelled', 'completed'])",
                "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) AS \"'cancelled'\", \
                 SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS \"'completed'\"",
            ),
            (
                "@PIVOT(n, [1, 2], agg := 'MAX', cmp := '>=', prefix := 'ge_', then_value := v, else_value := NULL, quote := FALSE, distinct := TRUE)",
                "MAX(DISTINCT CASE WHEN n >= 1 THEN v ELSE NULL END) AS ge_1, MAX(DISTINCT CASE WHEN n >= 2 THEN v ELSE NULL END) AS ge_2",
            ),
            (
                "@HAVERSINE_DISTANCE(a_lat, a_lon, b_lat, b_lon, 'km')",
                "2 * 3961 * ASIN(SQRT(POWER(SIN(RADIANS(((b_lat) - (a_lat)) / 2)), 2) + COS(RADIANS((a_lat))) * \
                 COS(RADIANS((b_lat))) * POWER(SIN(RADIANS(((b_lon) - (a_lon)) / 2)), 2))) * 1.60934",
            ),
            (
                "@RESOLVE_TEMPLATE('s3://b/@{schema_name}/@{table_name}')",
                "'s3://b/@{schema_name}/@{table_name}'",
            ),
            ("@BLUEPRINT_VAR('region', 'eu')", "'eu'"),
            ("@BLUEPRINT_VAR('region')", "NULL"),
        ];
        for (text, expected) in cases {
            assert_eq!(r(text), expected, "{text}");
        }
    }

    #[test]
    fn def_binds_values_and_user_macros() {
        let mut c = ctx();
        define("@DEF(cols, [a, b]);", &mut c).unwrap();
        define("@DEF(double, x -> x * 2)", &mut c).unwrap();
        define(
            "@DEF(pick, (a, b) -> CASE WHEN a > b THEN a ELSE b END)",
            &mut c,
        )
        .unwrap();
        assert_eq!(
            render_text("@EACH(@cols, c -> @double(c))", &c).unwrap(),
            "a * 2, b * 2"
        );
        assert_eq!(
            render_text("@pick(x + 1, y)", &c).unwrap(),
            "CASE WHEN (x + 1) > y THEN (x + 1) ELSE y END"
        );
        assert!(
            render_text("@pick(x)", &c)
                .unwrap_err()
                .to_string()
                .contains("takes 2 argument(s), got 1")
        );
    }

    #[test]
    fn resolve_template_names_the_physical_table() {
        let mut c = ctx();
        c.this_model = "lake__demo.\"demo__m__12\"".into();
        c.catalog = "db".into();
        c.runtime_stage = "creating";
        assert_eq!(
            render_text(
                "@RESOLVE_TEMPLATE('s3://b/@{catalog_name}/@{schema_name}/@{table_name}')",
                &c
            )
            .unwrap(),
            "'s3://b/db/lake__demo/demo__m__12'"
        );
        assert_eq!(
            render_text(
                "@RESOLVE_TEMPLATE('@{schema_name}.@{table_name}_log', mode := 'table')",
                &c
            )
            .unwrap(),
            "lake__demo.demo__m__12_log"
        );
        assert!(
            render_text("@HAVERSINE_DISTANCE(a, b, c, d, 'ly')", &c)
                .unwrap_err()
                .to_string()
                .contains("'mi' or 'km'")
        );
        assert!(
            render_text("@BLUEPRINT_VAR(region)", &c)
                .unwrap_err()
                .to_string()
                .contains("string literal")
        );
    }

    #[test]
    fn list_items_are_sql_expressions() {
        let c = ctx();
        let e = render_text("@EACH([a, b c], x -> x)", &c)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("item `b c` of @EACH's list is not a SQL expression"),
            "{e}"
        );
        assert!(render_text("@PIVOT(s, ['x', 'y' 'z'])", &c).is_err());
        // Aliased items (what @EACH can return) are fine; compound items keep their meaning.
        assert_eq!(sql_list("[a AS x, b]", "each").unwrap(), ["a AS x", "b"]);
        assert_eq!(
            render_text("@EACH([a + 1, b], v -> v * 2)", &c).unwrap(),
            "(a + 1) * 2, b * 2"
        );
    }

    #[test]
    fn what_cannot_run_says_why() {
        let c = ctx();
        assert!(
            render_text("@py(1)", &c)
                .unwrap_err()
                .to_string()
                .contains("@py is a Python macro (macros/py.py)")
        );
        assert!(
            render_text("@nope(1)", &c)
                .unwrap_err()
                .to_string()
                .contains("unknown macro function @nope")
        );
        assert!(
            render_text("@STAR(s.c)", &c)
                .unwrap_err()
                .to_string()
                .contains("@STAR needs the columns of `s.c`")
        );
        assert!(
            render_text("@IF(no_such_column, 1)", &c)
                .unwrap_err()
                .to_string()
                .contains("cannot evaluate")
        );
    }
}

#[cfg(test)]
mod table_tests {
    use super::{BUILTIN_FUNCTIONS, BUILTINS};

    #[test]
    fn every_builtin_in_the_table_is_listed_as_built_in() {
        for (name, _) in BUILTINS {
            assert!(BUILTIN_FUNCTIONS.contains(name), "{name}");
        }
        // `@VAR` is rendered where it occurs; every other listed name has its function.
        for name in BUILTIN_FUNCTIONS.iter().filter(|n| **n != "var") {
            assert!(BUILTINS.iter().any(|(n, _)| n == name), "{name}");
        }
    }
}
