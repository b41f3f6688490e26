//! Names and literals in SQL: quoting of identifiers and strings (the one place each is written), dotted
//! identifier parts, and the qualified table names models have.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One part of a possibly dotted identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentPart {
    pub value: String,
    pub quoted: bool,
}

/// A model's fully qualified name, normalised the way DuckDB resolves it (unquoted parts lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModelName {
    pub catalog: Option<String>,
    pub schema: String,
    pub name: String,
}

impl ModelName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        ModelName {
            catalog: None,
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// From identifier parts: `schema.name` or `catalog.schema.name`.
    pub fn from_parts(parts: &[IdentPart]) -> Option<Self> {
        let norm = |p: &IdentPart| {
            if p.quoted {
                p.value.clone()
            } else {
                p.value.to_lowercase()
            }
        };
        match parts {
            [schema, name] => Some(ModelName::new(norm(schema), norm(name))),
            [catalog, schema, name] => Some(ModelName {
                catalog: Some(norm(catalog)),
                schema: norm(schema),
                name: norm(name),
            }),
            _ => None,
        }
    }

    /// Quoted `schema.name` for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Parses `schema.name` as written on the command line (unquoted, case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Vec<IdentPart> = text
            .split('.')
            .map(|p| IdentPart {
                value: p.trim().trim_matches('"').to_string(),
                quoted: false,
            })
            .collect();
        if parts.iter().any(|p| p.value.is_empty()) {
            return None;
        }
        Self::from_parts(&parts)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.catalog {
            write!(f, "{c}.")?;
        }
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Quotes an identifier for DuckDB when it needs it.
pub fn quote_ident(ident: &str) -> String {
    let plain = ident
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_lowercase() || c == '_' || (i > 0 && c.is_ascii_digit()));
    if plain && !ident.is_empty() {
        ident.to_string()
    } else {
        quote_ident_always(ident)
    }
}

/// Quotes an identifier whether or not it needs it (a name that must keep its exact spelling).
pub fn quote_ident_always(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A SQL string literal holding `text`.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
