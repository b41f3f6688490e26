//! The `linter:` section of config.yaml: the built-in rules by name and the severity each is given.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{LakeError, Result, did_you_mean};

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
    pub(crate) severities: BTreeMap<&'static str, Severity>,
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
            if let Some(hint) = unknown_rule_hint(name) {
                return Err(LakeError::config(format!(
                    "unknown linter rule `{name}` in `linter.{key}`{hint}"
                )));
            }
        }
        Ok(RuleList::Some(names))
    }

    fn names(&self, rule: &str) -> bool {
        matches!(self, RuleList::Some(names) if names.iter().any(|n| n == rule))
    }
}

/// The hint for a name that is no built-in rule; `None` for a rule lake has.
fn unknown_rule_hint(name: &str) -> Option<String> {
    if RULES.iter().any(|r| r.name == name) {
        return None;
    }
    let known = RULES.iter().map(|r| r.name);
    Some(match did_you_mean(name, known) {
        Some(hint) => format!("; {hint}"),
        None => format!(
            "; the rules are {} (rules written in Python, under linter/, cannot run in lake)",
            RULES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ),
    })
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
