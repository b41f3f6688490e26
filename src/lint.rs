//! `lake lint`: SQLMesh's linter rules over the project's models, the `linter:` configuration that picks
//! them, and where in its file each violation is.
//!
//! Column rules are checked by DuckDB's own binder (`schema::Binder`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlparser::ast::{Expr, SelectItem, SetExpr, Spanned, Statement};

use crate::error::{LakeError, Result, SourceFile, did_you_mean};
use crate::macros::MacroContext;
use crate::model::{ModelKind, ModelName};
use crate::project::Project;
use crate::schema::{Binder, Bound};

/// A built-in rule: its name (as in config.yaml) and what it asks for.
pub struct Rule {
    pub name: &'static str,
    pub summary: &'static str,
}

pub const RULES: &[Rule] = &[
    Rule {
        name: "ambiguousorinvalidcolumn",
        summary: "every column the query reads exists, in exactly one of the relations it reads",
    },
    Rule {
        name: "invalidselectstarexpansion",
        summary: "a top-level SELECT * can be expanded: the columns of what it reads are known",
    },
    Rule {
        name: "noselectstar",
        summary: "the query's top-level projection lists its columns instead of SELECT *",
    },
    Rule {
        name: "noambiguousprojections",
        summary: "every top-level projection that is not a plain column has an alias",
    },
    Rule {
        name: "nomissingaudits",
        summary: "the model has `audits` to test its data",
    },
    Rule {
        name: "nomissingowner",
        summary: "the model has an `owner`",
    },
    Rule {
        name: "nomissingunittest",
        summary: "the model has a unit test in tests/*.yaml",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// The `linter:` section of config.yaml, resolved: which rules run and how loudly.
#[derive(Debug, Clone, Default)]
pub struct LinterConfig {
    pub enabled: bool,
    severities: BTreeMap<&'static str, Severity>,
}

impl LinterConfig {
    /// Rules that run, with their severity.
    pub fn rules(&self) -> impl Iterator<Item = (&'static str, Severity)> + '_ {
        self.severities.iter().map(|(k, v)| (*k, *v))
    }

    /// Reads `linter: {enabled, rules, warn_rules, ignored_rules}`; each list is rule names or `ALL`.
    pub fn from_config(raw: Option<&serde_norway::Value>) -> Result<LinterConfig> {
        let Some(raw) = raw else {
            return Ok(LinterConfig::default());
        };
        let map = raw.as_mapping().ok_or_else(|| {
            LakeError::config("`linter` is a mapping: `linter: {enabled: true, rules: ALL}`")
        })?;
        let mut enabled = false;
        let mut lists: BTreeMap<&str, RuleList> = BTreeMap::new();
        for (key, value) in map {
            let key = key.as_str().unwrap_or_default();
            match key {
                "enabled" => {
                    enabled = value
                        .as_bool()
                        .ok_or_else(|| LakeError::config("`linter.enabled` is true or false"))?
                }
                "rules" | "warn_rules" | "ignored_rules" => {
                    let key: &'static str = match key {
                        "rules" => "rules",
                        "warn_rules" => "warn_rules",
                        _ => "ignored_rules",
                    };
                    lists.insert(key, RuleList::parse(key, value)?);
                }
                // SQLMesh's index of project files; lake lints from memory and needs none.
                "use_project_index" => {}
                other => {
                    return Err(LakeError::config(format!(
                        "unknown key `linter.{other}`; expected enabled, rules, warn_rules or ignored_rules"
                    )));
                }
            }
        }
        let get = |k: &str| lists.get(k).cloned().unwrap_or(RuleList::Some(Vec::new()));
        let (errors, warnings, ignored) = (get("rules"), get("warn_rules"), get("ignored_rules"));
        if let (RuleList::Some(a), RuleList::Some(b), RuleList::Some(c)) =
            (&errors, &warnings, &ignored)
        {
            for rule in a.iter().chain(b).chain(c) {
                let count = [a, b, c].iter().filter(|l| l.contains(rule)).count();
                if count > 1 {
                    return Err(LakeError::config(format!(
                        "rule `{rule}` is in more than one of linter.rules, warn_rules and ignored_rules; each rule belongs to one"
                    )));
                }
            }
        }
        let mut severities = BTreeMap::new();
        for rule in RULES {
            // An explicit mention wins over `ALL` in another list.
            let severity = if ignored.names(rule.name) {
                None
            } else if warnings.names(rule.name) {
                Some(Severity::Warning)
            } else if errors.names(rule.name) {
                Some(Severity::Error)
            } else if ignored == RuleList::All {
                None
            } else if warnings == RuleList::All {
                Some(Severity::Warning)
            } else if errors == RuleList::All {
                Some(Severity::Error)
            } else {
                None
            };
            if let Some(severity) = severity {
                severities.insert(rule.name, severity);
            }
        }
        Ok(LinterConfig {
            enabled,
            severities,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum RuleList {
    All,
    Some(Vec<String>),
}

impl RuleList {
    fn parse(key: &str, value: &serde_norway::Value) -> Result<RuleList> {
        let names: Vec<String> = match value {
            serde_norway::Value::String(s) if s.eq_ignore_ascii_case("all") => {
                return Ok(RuleList::All);
            }
            serde_norway::Value::String(s) => vec![s.clone()],
            serde_norway::Value::Sequence(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_lowercase))
                .collect::<Option<_>>()
                .ok_or_else(|| LakeError::config(format!("`linter.{key}` lists rule names")))?,
            serde_norway::Value::Null => Vec::new(),
            _ => {
                return Err(LakeError::config(format!(
                    "`linter.{key}` is `ALL` or a list of rule names"
                )));
            }
        };
        let names: Vec<String> = names.into_iter().map(|n| n.to_lowercase()).collect();
        if names.iter().any(|n| n == "all") {
            return Ok(RuleList::All);
        }
        for name in &names {
            check_rule_name(name).map_err(|hint| {
                LakeError::config(format!(
                    "unknown linter rule `{name}` in `linter.{key}`{hint}"
                ))
            })?;
        }
        Ok(RuleList::Some(names))
    }

    fn names(&self, rule: &str) -> bool {
        matches!(self, RuleList::Some(names) if names.iter().any(|n| n == rule))
    }
}

/// `Err(hint)` for a name that is no built-in rule.
fn check_rule_name(name: &str) -> std::result::Result<(), String> {
    if RULES.iter().any(|r| r.name == name) {
        return Ok(());
    }
    let known = RULES.iter().map(|r| r.name);
    Err(match did_you_mean(name, known) {
        Some(hint) => format!("; {hint}"),
        None => format!(
            "; the rules are {} (rules written in Python, under linter/, cannot run in lake)",
            RULES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// One rule broken by one model.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub rule: &'static str,
    pub severity: Severity,
    pub model: String,
    /// The model's file, relative to the project.
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Lints `models` (indices; all when empty) with the rules `config` turns on, in project order.
pub fn lint(project: &Project, config: &LinterConfig, models: &[usize]) -> Result<Vec<Violation>> {
    let on = |rule: &str| config.severities.get(rule).copied();
    let selected: BTreeSet<usize> = if models.is_empty() {
        (0..project.models.len()).collect()
    } else {
        models.iter().copied().collect()
    };
    let tested: BTreeSet<String> = if on("nomissingunittest").is_some() {
        crate::unit_test::load(&project.root)?
            .into_iter()
            .filter_map(|t| ModelName::parse(&t.model).map(|m| m.to_string()))
            .collect()
    } else {
        BTreeSet::new()
    };
    let needs_binder =
        on("ambiguousorinvalidcolumn").is_some() || on("invalidselectstarexpansion").is_some();
    let mut binder = if needs_binder {
        Some(Binder::new(project)?)
    } else {
        None
    };
    let mut out = Vec::new();
    for &i in &project.order {
        let model = &project.models[i];
        let bound = match binder.as_mut() {
            Some(b) => Some(b.bind(i)?),
            None => None,
        };
        if !selected.contains(&i) {
            continue;
        }
        let ignored = &model.meta.ignored_rules;
        let ignores = |rule: &str| {
            ignored
                .iter()
                .any(|r| r.eq_ignore_ascii_case(rule) || r.eq_ignore_ascii_case("all"))
        };
        let mut push = |rule: &'static str, offset: usize, message: String| {
            if let Some(severity) = on(rule).filter(|_| !ignores(rule)) {
                let (line, column) = model.file.line_col(offset);
                out.push(Violation {
                    rule,
                    severity,
                    model: model.meta.name.to_string(),
                    path: model.file.display_path.clone(),
                    line,
                    column,
                    message,
                });
            }
        };
        let name_at = model.name_span.0;
        let symbolic = matches!(model.meta.kind, ModelKind::Embedded | ModelKind::External);
        if model.meta.audits.is_empty() && !symbolic {
            push(
                "nomissingaudits",
                name_at,
                "the model has no audits: add `audits (not_null(columns := [...]), ...)` to test its data".into(),
            );
        }
        if model.meta.owner.is_none() {
            push(
                "nomissingowner",
                name_at,
                "the model has no owner: add `owner team_name`".into(),
            );
        }
        if !tested.contains(&model.meta.name.to_string()) && model.meta.kind.has_query() {
            push(
                "nomissingunittest",
                name_at,
                format!(
                    "no unit test in tests/*.yaml covers `{}` (`lake create-test` writes one from data)",
                    model.meta.name
                ),
            );
        }
        if let Some(Bound::Failed { offset, message }) = &bound {
            push("ambiguousorinvalidcolumn", *offset, message.clone());
        }
        let Some(query) = &model.query else { continue };
        let ctx = MacroContext::for_loading(&project.config.gateway, &project.config.variables);
        let Some(rendered) = project.render_query(i, &ctx)? else {
            continue;
        };
        let statements =
            crate::sql::parse(&rendered.sql).map_err(|e| LakeError::config(e.message))?;
        let index = SourceFile::new("", rendered.sql.as_str());
        let to_file = |span: sqlparser::tokenizer::Span| {
            let at = index.offset_of(span.start.line as usize, span.start.column as usize);
            if query.jinja {
                query.offset
            } else {
                query.offset + rendered.rendered.original_offset(at)
            }
        };
        for item in top_level_projection(&statements) {
            match item {
                SelectItem::Wildcard(options) | SelectItem::QualifiedWildcard(_, options) => {
                    let at = to_file(options.wildcard_token.0.span);
                    push(
                        "noselectstar",
                        at,
                        "the query selects `*`: list its columns so a change upstream cannot change this model's schema unnoticed".into(),
                    );
                    if let Some(Bound::Unknown(why)) = &bound {
                        push(
                            "invalidselectstarexpansion",
                            at,
                            format!("`*` cannot be expanded into columns: {why}"),
                        );
                    }
                }
                SelectItem::UnnamedExpr(expr)
                    if !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) =>
                {
                    push(
                        "noambiguousprojections",
                        to_file(expr.span()),
                        format!("`{expr}` has no alias: name it with `AS`"),
                    );
                }
                _ => {}
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.path, a.line, a.column, a.rule).cmp(&(&b.path, b.line, b.column, b.rule))
    });
    Ok(out)
}

/// The select items of the outermost SELECT(s) of a query; both sides of a top-level UNION.
fn top_level_projection(statements: &[Statement]) -> Vec<&SelectItem> {
    fn walk<'a>(body: &'a SetExpr, out: &mut Vec<&'a SelectItem>) {
        match body {
            SetExpr::Select(select) => out.extend(select.projection.iter()),
            SetExpr::Query(query) => walk(&query.body, out),
            SetExpr::SetOperation { left, right, .. } => {
                walk(left, out);
                walk(right, out);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Some(Statement::Query(query)) = statements.first() {
        walk(&query.body, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Result<LinterConfig> {
        let value: serde_norway::Value = serde_norway::from_str(yaml).unwrap();
        LinterConfig::from_config(Some(&value))
    }

    #[test]
    fn rule_lists_pick_severities() {
        let c = config("{enabled: true, rules: ALL, warn_rules: [noselectstar], ignored_rules: [nomissingowner]}").unwrap();
        let rules: BTreeMap<_, _> = c.rules().collect();
        assert_eq!(rules["noselectstar"], Severity::Warning);
        assert_eq!(rules["ambiguousorinvalidcolumn"], Severity::Error);
        assert!(!rules.contains_key("nomissingowner"));
        assert!(config("{enabled: true}").unwrap().rules().next().is_none());
    }

    #[test]
    fn bad_rule_lists_are_refused() {
        let e = config("{rules: [noselectstr]}").unwrap_err().to_string();
        assert!(e.contains("did you mean `noselectstar`"), "{e}");
        let e = config("{rules: [noselectstar], warn_rules: [noselectstar]}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than one"), "{e}");
        assert!(config("{rules: 3}").is_err());
    }
}
