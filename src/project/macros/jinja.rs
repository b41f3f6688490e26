//! Jinja blocks (`JINJA_QUERY_BEGIN; … JINJA_END;`) rendered with minijinja, with SQLMesh's variables.

use chrono::{Duration, NaiveDateTime};
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use super::MacroContext;

/// A Jinja error and the line of the template it is on (1-based, when known).
#[derive(Debug)]
pub struct JinjaError {
    pub line: Option<usize>,
    pub message: String,
}

/// Renders `template` with the time variables (`start_ds`, `end_date`, `execution_ts`, …, as plain values:
/// write `'{{ start_ds }}'` for a SQL string), `this_model`, `gateway`, `runtime_stage`, `var()`,
/// `env_var()`, and the `{% macro %}`s of `macros/*.sql`.
pub fn render(template: &str, ctx: &MacroContext, macros: &str) -> Result<String, JinjaError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let variables = ctx.variables.clone();
    env.add_function(
        "var",
        move |name: String, default: Option<Value>| -> Value {
            variables
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&name))
                .map(|(_, v)| from_json(v))
                .or(default)
                .unwrap_or(Value::from(()))
        },
    );
    env.add_function("env_var", |name: String, default: Option<String>| {
        std::env::var(&name).ok().or(default).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable {name} is not set"),
            )
        })
    });
    let mut values = std::collections::BTreeMap::new();
    let last_instant = ctx.end - Duration::microseconds(1);
    for (prefix, instant) in [
        ("start", ctx.start),
        ("end", last_instant),
        ("execution", ctx.execution_time),
    ] {
        for (suffix, value) in forms(instant) {
            values.insert(format!("{prefix}_{suffix}"), value);
        }
    }
    values.insert("this_model".into(), Value::from(ctx.this_model.clone()));
    values.insert("gateway".into(), Value::from(ctx.gateway.clone()));
    values.insert("runtime_stage".into(), Value::from(ctx.runtime_stage));
    // The macros come first so the template can call them; its own lines are counted after theirs.
    let prefix = format!("{macros}\n");
    let offset_lines = prefix.matches('\n').count();
    let source = format!("{prefix}{template}");
    env.render_str(&source, Value::from(values))
        .map(|sql| sql.trim().to_string())
        .map_err(|e| JinjaError {
            line: e.line().map(|l| l.saturating_sub(offset_lines).max(1)),
            message: e.to_string(),
        })
}

/// A config variable as a Jinja value.
fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.clone()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(from_json).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => Value::from(
            map.iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

fn forms(t: NaiveDateTime) -> Vec<(&'static str, Value)> {
    vec![
        ("ds", Value::from(t.format("%Y-%m-%d").to_string())),
        ("date", Value::from(t.format("%Y-%m-%d").to_string())),
        (
            "ts",
            Value::from(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        ),
        (
            "dt",
            Value::from(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        ),
        ("epoch", Value::from(t.and_utc().timestamp())),
        ("millis", Value::from(t.and_utc().timestamp_millis())),
        (
            "hour",
            Value::from(t.format("%H").to_string().parse::<i64>().unwrap_or(0)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn renders_variables_loops_conditions_and_project_macros() {
        let mut ctx = MacroContext::for_loading(
            "local",
            &BTreeMap::from([("n".to_string(), serde_json::json!(3))]),
        );
        ctx.start = crate::intervals::parse_datetime("2024-01-01").unwrap();
        ctx.end = crate::intervals::parse_datetime("2024-01-02").unwrap();
        let macros = "{% macro cents(c) %}CAST({{ c }} * 100 AS BIGINT){% endmacro %}";
        let sql = render(
            "SELECT {% for k in ['a', 'b'] %}{{ k }}_total,{% endfor %} {{ cents('x') }}, {{ var('n') }}, {{ var('m', 7) }}\nFROM t WHERE d BETWEEN '{{ start_ds }}' AND '{{ end_ds }}'{% if runtime_stage == 'loading' %} AND TRUE{% endif %}",
            &ctx,
            macros,
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT a_total,b_total, CAST(x * 100 AS BIGINT), 3, 7\nFROM t WHERE d BETWEEN '2024-01-01' AND '2024-01-01' AND TRUE"
        );
        let err = render("SELECT 1\nFROM {{ nope }}", &ctx, macros).unwrap_err();
        assert_eq!(err.line, Some(2));
    }
}
