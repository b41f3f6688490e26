//! SQLMesh macros: variables (`@start_ds`, `@this_model`, …), `@VAR`, `@DEF`, and macro functions.

pub mod functions;
pub mod jinja;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDateTime, Timelike, Utc};

use crate::sql::{lex, quote_literal};

/// The values macro variables render to for one evaluation of a model.
#[derive(Debug, Clone)]
pub struct MacroContext {
    /// Inclusive start of the interval being built.
    pub start: NaiveDateTime,
    /// Exclusive end of the interval being built.
    pub end: NaiveDateTime,
    pub execution_time: NaiveDateTime,
    /// Name of the table being written (physical), for `@this_model`.
    pub this_model: String,
    /// The engine catalog the physical tables live in, for `@RESOLVE_TEMPLATE`'s `@{catalog_name}`.
    pub catalog: String,
    pub runtime_stage: &'static str,
    pub gateway: String,
    pub variables: BTreeMap<String, serde_json::Value>,
    /// Names bound for this rendering only (`@DEF` values, an audit's arguments), lower-cased, as SQL text;
    /// they win over the rest.
    pub locals: BTreeMap<String, String>,
    /// User macros from `@DEF(name, (a, b) -> body)`, lower-cased.
    pub functions: BTreeMap<String, UserMacro>,
    /// Python macros found in `macros/*.py` (name → file): calling one is a clear error.
    pub python_macros: Arc<BTreeMap<String, String>>,
    /// Known columns and types of models and external tables (`schema.name` lower-cased), for `@STAR`
    /// and `@UNION`.
    pub known_columns: Arc<BTreeMap<String, Vec<(String, String)>>>,
    /// Relations `@STAR`/`@UNION` needed the columns of and did not find in `known_columns`: loading infers
    /// them from the relation's query and renders again.
    pub column_requests: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Set when a macro looked a relation up in `known_columns` (found or not): such a rendering depends on
    /// other models' columns, so loading never caches it.
    pub columns_consulted: Arc<std::sync::atomic::AtomicBool>,
    /// The kind of the model being rendered (`FULL`, `INCREMENTAL_BY_TIME_RANGE`, …), for `@model_kind_name`.
    pub model_kind: String,
    /// The variables of the blueprint the model was made from (`blueprints` property), for
    /// `@BLUEPRINT_VAR`.
    pub blueprint_vars: Vec<(String, String)>,
    /// The model whose `@DEF`s are already applied, so they are applied once.
    pub scoped_for: Option<crate::project::ModelId>,
}

/// A macro defined in SQL: `@DEF(name, (a, b) -> body)`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMacro {
    pub params: Vec<String>,
    pub body: String,
}

impl MacroContext {
    /// The context SQLMesh uses when nothing is being built: the interval starting 1970-01-01.
    pub fn for_loading(gateway: &str, variables: &BTreeMap<String, serde_json::Value>) -> Self {
        let epoch = DateTime::<Utc>::UNIX_EPOCH.naive_utc();
        MacroContext {
            start: epoch,
            end: epoch + Duration::days(1),
            execution_time: epoch + Duration::days(1),
            this_model: String::new(),
            catalog: String::new(),
            runtime_stage: "loading",
            gateway: gateway.to_string(),
            variables: variables.clone(),
            locals: BTreeMap::new(),
            functions: BTreeMap::new(),
            python_macros: Arc::new(BTreeMap::new()),
            known_columns: Arc::new(BTreeMap::new()),
            column_requests: Arc::default(),
            columns_consulted: Arc::default(),
            blueprint_vars: Vec::new(),
            model_kind: String::new(),
            scoped_for: None,
        }
    }
}

/// A macro that could not be rendered, located by byte offset in the input text.
#[derive(Debug, Clone, PartialEq)]
pub struct MacroError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub help: Option<String>,
}

/// Rendered SQL and how to map its offsets back to the text it came from.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub sql: String,
    /// (offset in `sql`, offset in the original) at the start of each unchanged stretch.
    segments: Vec<(usize, usize)>,
}

impl Rendered {
    pub fn original_offset(&self, rendered: usize) -> usize {
        let i = self.segments.partition_point(|&(r, _)| r <= rendered);
        match i.checked_sub(1).map(|i| self.segments[i]) {
            Some((r, o)) => o + (rendered - r),
            None => rendered,
        }
    }
}

fn last_instant(end: NaiveDateTime) -> NaiveDateTime {
    end - Duration::microseconds(1)
}

fn variable(name: &str, ctx: &MacroContext) -> Option<String> {
    if let Some(local) = ctx.locals.get(name) {
        return Some(local.clone());
    }
    let ds = |t: NaiveDateTime| quote_literal(&t.format("%Y-%m-%d").to_string());
    let date = |t: NaiveDateTime| format!("CAST({} AS DATE)", ds(t));
    let ts = |t: NaiveDateTime| quote_literal(&t.format("%Y-%m-%d %H:%M:%S%.6f").to_string());
    let dt = |t: NaiveDateTime| format!("CAST({} AS TIMESTAMP)", ts(t));
    let tstz = |t: NaiveDateTime| {
        format!(
            "CAST({} AS TIMESTAMPTZ)",
            quote_literal(&t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string())
        )
    };
    let epoch = |t: NaiveDateTime| t.and_utc().timestamp().to_string();
    let millis = |t: NaiveDateTime| t.and_utc().timestamp_millis().to_string();
    let hour = |t: NaiveDateTime| t.hour().to_string();
    let (prefix, suffix) = name.split_once('_')?;
    let instant = match prefix {
        "start" => ctx.start,
        "end" => last_instant(ctx.end),
        "execution" => ctx.execution_time,
        _ => {
            return match name {
                "this_model" => Some(ctx.this_model.clone()),
                "runtime_stage" => Some(quote_literal(ctx.runtime_stage)),
                "gateway" => Some(quote_literal(&ctx.gateway)),
                "model_kind_name" if !ctx.model_kind.is_empty() => {
                    Some(quote_literal(&ctx.model_kind))
                }
                _ => None,
            };
        }
    };
    Some(match suffix {
        "ds" => ds(instant),
        "date" => date(instant),
        "ts" => ts(instant),
        "dt" => dt(instant),
        "tstz" => tstz(instant),
        "epoch" => epoch(instant),
        "millis" => millis(instant),
        "hour" => hour(instant),
        _ => return None,
    })
}

/// Renders `text` to plain SQL, as `render` does, for the macro functions' nested evaluation.
pub fn render_text(text: &str, ctx: &MacroContext) -> Result<String, functions::CallError> {
    render(text, ctx)
        .map(|r| r.sql)
        .map_err(|e| functions::CallError::Nested(Box::new(e)))
}

/// Applies a `@DEF(name, value)` statement to `ctx`: a value (rendered now) or, for a lambda, a user macro.
pub fn define(statement: &str, ctx: &mut MacroContext) -> Result<(), MacroError> {
    let at = |message: String| MacroError {
        offset: 0,
        len: statement.len().min(4),
        message,
        help: Some("write `@DEF(name, value);` or `@DEF(name, (a, b) -> expression);`".into()),
    };
    let text = statement.trim().trim_end_matches(';').trim_end();
    let open = text
        .find('(')
        .ok_or_else(|| at("@DEF needs `(name, value)`".into()))?;
    let close =
        lex::matching_paren(text, open).ok_or_else(|| at("@DEF( is never closed".into()))?;
    let args = split_args(&text[open + 1..close - 1]);
    let [name, value] = args.as_slice() else {
        return Err(at(format!(
            "@DEF takes a name and a value, got {} argument(s)",
            args.len()
        )));
    };
    let name = name.trim().to_ascii_lowercase();
    let value = value.trim();
    if let Some((params, body)) = split_lambda(value) {
        ctx.functions.insert(
            name,
            UserMacro {
                params,
                body: body.to_string(),
            },
        );
    } else {
        let rendered = render_text(value, ctx).map_err(|e| at(e.to_string()))?;
        ctx.locals.insert(name, rendered);
    }
    Ok(())
}

/// `x -> body` or `(a, b) -> body` at the top level of `text`.
pub(crate) fn split_lambda(text: &str) -> Option<(Vec<String>, &str)> {
    let bytes = text.as_bytes();
    let (mut i, mut depth) = (0, 0);
    while i + 1 < bytes.len() {
        if let Some(n) = lex::skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        match bytes[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b'-' if depth == 0 && bytes[i + 1] == b'>' => {
                let head = text[..i].trim();
                let params = head.trim_start_matches('(').trim_end_matches(')');
                let plain = params.split(',').all(|p| {
                    p.trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                return plain.then(|| {
                    (
                        params
                            .split(',')
                            .map(|p| p.trim().to_string())
                            .filter(|p| !p.is_empty())
                            .collect(),
                        text[i + 2..].trim(),
                    )
                });
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// How deeply macro calls may nest (each level renders its arguments or body with `render`). Past it, a
/// macro that calls itself without end, or generated SQL nesting thousands of calls, is an error instead
/// of a stack overflow; SQLMesh stops at Python's recursion limit, about as deep.
const MAX_NESTING: usize = 200;

thread_local! {
    static NESTING: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of `render` on this thread, released when dropped.
struct NestingLevel;

impl NestingLevel {
    fn enter() -> Option<NestingLevel> {
        NESTING.with(|depth| {
            (depth.get() < MAX_NESTING).then(|| {
                depth.set(depth.get() + 1);
                NestingLevel
            })
        })
    }
}

impl Drop for NestingLevel {
    fn drop(&mut self) {
        NESTING.with(|depth| depth.set(depth.get() - 1));
    }
}

/// Renders the macros in `text`: variables, `@VAR`, `@DEF` values, built-in and user macro functions.
pub fn render(text: &str, ctx: &MacroContext) -> Result<Rendered, MacroError> {
    let bytes = text.as_bytes();
    if !text.contains('@') {
        return Ok(Rendered {
            sql: text.to_string(),
            segments: Vec::new(),
        });
    }
    let Some(_level) = NestingLevel::enter() else {
        return Err(MacroError {
            offset: 0,
            len: text.find('(').map_or(text.len(), |open| open + 1).min(text.len()),
            message: format!("macro calls nested more than {MAX_NESTING} deep"),
            help: Some(
                "a macro that calls itself never ends; flatten generated calls (one @EACH over a list instead of nested calls)"
                    .into(),
            ),
        });
    };
    let mut out = String::with_capacity(text.len());
    let mut segments = vec![(0, 0)];
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(n) = lex::skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        if bytes[i] != b'@' {
            i += 1;
            continue;
        }
        let braced = bytes.get(i + 1) == Some(&b'{');
        let name_start = if braced { i + 2 } else { i + 1 };
        let name_end = name_start
            + text[name_start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(text.len() - name_start);
        if name_end == name_start {
            i += 1;
            continue;
        }
        let name = &text[name_start..name_end];
        if braced && bytes.get(name_end) != Some(&b'}') {
            return Err(MacroError {
                offset: i,
                len: name_end - i,
                message: format!("`@{{{name}` is never closed"),
                help: Some(format!(
                    "write `@{{{name}}}` to interpolate the variable into an identifier"
                )),
            });
        }
        let mut end = if braced { name_end + 1 } else { name_end };
        let lower = name.to_ascii_lowercase();
        let replacement = if !braced && bytes.get(name_end) == Some(&b'(') {
            let close = lex::matching_paren(text, name_end).ok_or_else(|| MacroError {
                offset: i,
                len: name_end - i,
                message: format!("macro call @{name}( is never closed"),
                help: None,
            })?;
            end = close;
            let args = &text[name_end + 1..close - 1];
            if lower == "var" {
                render_var(args, ctx).map_err(|e| MacroError {
                    offset: i,
                    len: close - i,
                    message: e.to_string(),
                    help: Some("@VAR('name', default) reads `variables:` from config.yaml".into()),
                })?
            } else {
                functions::call(name, args, ctx).map_err(|e| {
                    let help = if ctx.python_macros.contains_key(&lower) {
                        "rewrite it as a SQL macro: `@DEF(name, (a, b) -> expression);` in macros/*.sql"
                    } else {
                        "built-ins: @EACH, @IF, @EVAL, @REDUCE, @FILTER, @SQL, @STAR, @GENERATE_SURROGATE_KEY, @SAFE_ADD/SUB/DIV, @UNION, @AND, @OR, @DEDUPLICATE, @DATE_SPINE; your own with @DEF"
                    };
                    MacroError {
                        offset: i,
                        len: close - i,
                        message: e.to_string(),
                        help: Some(help.into()),
                    }
                })?
            }
        } else if braced {
            // `@{name}` interpolates a value as (part of) an identifier.
            let value = variable(&lower, ctx).ok_or_else(|| MacroError {
                offset: i,
                len: end - i,
                message: format!("unknown macro variable @{{{name}}}"),
                help: None,
            })?;
            value.trim_matches(|c| c == '\'' || c == '"').to_string()
        } else {
            variable(&lower, ctx).ok_or_else(|| MacroError {
                offset: i,
                len: end - i,
                message: format!("unknown macro variable @{name}"),
                help: Some("known variables: @start_ds, @end_ds, @start_date, @end_ts, @execution_ds, @this_model, @gateway, …".into()),
            })?
        };
        out.push_str(&text[copied..i]);
        out.push_str(&replacement);
        copied = end;
        segments.push((out.len(), end));
        i = end;
    }
    out.push_str(&text[copied..]);
    Ok(Rendered { sql: out, segments })
}

fn render_var(args: &str, ctx: &MacroContext) -> Result<String, functions::CallError> {
    let pieces: Vec<&str> = split_args(args);
    let name = pieces
        .first()
        .map(|p| p.trim().trim_matches('\'').to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| functions::CallError::MissingArgument {
            macro_name: "VAR".into(),
            what: "a variable name: @VAR('name')".into(),
        })?;
    match ctx
        .variables
        .iter()
        .find(|(k, _)| k.to_ascii_lowercase() == name)
    {
        Some((_, value)) => Ok(json_to_sql(value)),
        None => match pieces.get(1) {
            Some(default) => Ok(default.trim().to_string()),
            None => Ok("NULL".into()),
        },
    }
}

/// Splits macro arguments on top-level commas.
pub(crate) fn split_args(args: &str) -> Vec<&str> {
    let bytes = args.as_bytes();
    let mut out = Vec::new();
    let (mut depth, mut start, mut i) = (0, 0, 0);
    while i < bytes.len() {
        if let Some(n) = lex::skip_lexeme(bytes, i) {
            i += n;
            continue;
        }
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push(&args[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&args[start..]);
    out
}

fn json_to_sql(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::Bool(b) => b.to_string().to_uppercase(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => quote_literal(s),
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(json_to_sql).collect::<Vec<_>>().join(", ")
        ),
        serde_json::Value::Object(_) => quote_literal(&value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervals::parse_datetime;

    fn ctx() -> MacroContext {
        let mut vars = BTreeMap::new();
        vars.insert("min_amount".to_string(), serde_json::json!(5));
        let mut c = MacroContext::for_loading("local", &vars);
        c.start = parse_datetime("2024-01-01").unwrap();
        c.end = parse_datetime("2024-01-03").unwrap();
        c.this_model = "lake__demo.demo__m__1".into();
        c
    }

    #[test]
    fn an_unclosed_braced_variable_is_an_error_not_a_panic() {
        // Found by tests/it/fuzz.rs: the byte after the name was taken for the closing brace.
        let e = render("SELECT @{end_date\u{fffd}, 1", &ctx()).unwrap_err();
        assert_eq!((e.offset, e.len), (7, 10));
        assert!(
            e.message.contains("`@{end_date` is never closed"),
            "{}",
            e.message
        );
        let e = render("SELECT @{end_date", &ctx()).unwrap_err();
        assert_eq!(e.offset, 7);
    }

    #[test]
    fn endless_or_very_deep_macro_calls_are_an_error_not_a_stack_overflow() {
        let mut c = ctx();
        define("@DEF(forever, x -> @forever(x))", &mut c).unwrap();
        let e = render("SELECT @forever(1)", &c).unwrap_err();
        assert!(
            e.message.contains("nested more than 200 deep"),
            "{}",
            e.message
        );
        assert_eq!(e.offset, 7);
        let deep = format!("SELECT {}1{}", "@IF(TRUE, ".repeat(6000), ")".repeat(6000));
        let e = render(&deep, &c).unwrap_err();
        assert!(
            e.message.contains("nested more than 200 deep"),
            "{}",
            e.message
        );
        // Nesting as deep as real projects go still renders.
        let fine = format!("SELECT {}1{}", "@IF(TRUE, ".repeat(150), ")".repeat(150));
        assert_eq!(render(&fine, &c).unwrap().sql, "SELECT 1");
    }

    #[test]
    fn renders_time_variables_like_sqlmesh() {
        let r = render("SELECT * FROM t WHERE d BETWEEN @start_ds AND @end_ds AND ts <= @end_ts AND x = '@start_ds'", &ctx()).unwrap();
        assert_eq!(
            r.sql,
            "SELECT * FROM t WHERE d BETWEEN '2024-01-01' AND '2024-01-02' AND ts <= '2024-01-02 23:59:59.999999' AND x = '@start_ds'"
        );
        let r = render(
            "@start_date, @{end_date}, @start_epoch, @this_model",
            &ctx(),
        )
        .unwrap();
        assert_eq!(
            r.sql,
            "CAST('2024-01-01' AS DATE), CAST('2024-01-02' AS DATE), 1704067200, lake__demo.demo__m__1"
        );
    }

    #[test]
    fn var_reads_config_variables_with_default() {
        let r = render(
            "SELECT @VAR('min_amount'), @var('missing', 7), @VAR('nothing')",
            &ctx(),
        )
        .unwrap();
        assert_eq!(r.sql, "SELECT 5, 7, NULL");
    }

    #[test]
    fn maps_offsets_back_and_reports_unknown_macros() {
        let text = "SELECT @start_ds AS d FROM bad.ref";
        let r = render(text, &ctx()).unwrap();
        let at = r.sql.find("bad.ref").unwrap();
        assert_eq!(r.original_offset(at), text.find("bad.ref").unwrap());
        let err = render("SELECT 1, @EACH([1], x -> @nope(x))", &ctx()).unwrap_err();
        assert_eq!(err.offset, 10, "located at the outermost call");
        assert!(err.message.contains("@nope"), "{}", err.message);
        assert!(render("SELECT @nope", &ctx()).is_err());
    }
}
