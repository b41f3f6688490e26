//! Column inference: the columns of each model's query as DuckDB's binder sees it, on an in-memory DuckDB
//! where every upstream model is an empty table with its own inferred columns. Nothing is ever run.

use std::collections::{HashMap, HashSet};

use crate::engine::{Engine, Session};
use crate::error::{LakeError, Result};
use crate::project::ModelId;
use crate::project::macros::MacroContext;
use crate::project::model::ModelKind;
use crate::project::{Project, RefTarget};
use crate::sql::{ModelName, quote_ident};

/// What the in-memory DuckDB knows of a relation's columns.
enum Columns {
    Known,
    /// Unknown, and why (named in an `invalidselectstarexpansion` message).
    Unknown(String),
}

/// What binding one model's query found.
pub enum Bound {
    Ok,
    /// The columns of something it reads are unknown, so neither can its own be.
    Unknown(String),
    /// DuckDB's binder rejected a column: where (in the model's file) and why.
    Failed {
        offset: usize,
        message: String,
    },
}

/// An in-memory DuckDB holding an empty table per model (and declared external), with its columns.
pub struct Binder<'p> {
    project: &'p Project,
    /// Kept open for the session's database.
    _engine: Engine,
    session: Session,
    columns: HashMap<String, Columns>,
    /// Schemas (and attached catalogs) already created.
    schemas: HashSet<String>,
}

impl<'p> Binder<'p> {
    pub fn new(project: &'p Project) -> Result<Self> {
        let engine = Engine::in_memory()?;
        let session = engine.session()?;
        let mut binder = Binder {
            project,
            _engine: engine,
            session,
            columns: HashMap::new(),
            schemas: HashSet::new(),
        };
        for (name, external) in &project.externals {
            if external.columns.is_empty() {
                binder.columns.insert(
                    binder.relation(name),
                    Columns::Unknown(format!(
                        "external model `{name}` declares no columns in external_models.yaml"
                    )),
                );
                continue;
            }
            let columns: Vec<(String, String)> = external
                .columns
                .iter()
                .map(|(c, t)| (c.clone(), t.clone()))
                .collect();
            binder.create(name, &columns)?;
        }
        Ok(binder)
    }

    /// The relation's name in the lint database.
    fn relation(&self, name: &ModelName) -> String {
        match &name.catalog {
            Some(c) => format!("{}.{}", quote_ident(c), name.sql()),
            None => name.sql(),
        }
    }

    /// Creates the schema (and catalog) `name` lives in, once.
    fn ensure_schema(&mut self, name: &ModelName) -> Result<()> {
        let schema = match &name.catalog {
            Some(c) => format!("{}.{}", quote_ident(c), quote_ident(&name.schema)),
            None => quote_ident(&name.schema),
        };
        if self.schemas.contains(&schema) {
            return Ok(());
        }
        let mut setup = String::new();
        if let Some(catalog) = &name.catalog {
            setup.push_str(&format!(
                "ATTACH IF NOT EXISTS ':memory:' AS {};",
                quote_ident(catalog)
            ));
        }
        setup.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {schema};"));
        self.session.execute(&setup, || {
            format!("creating schema {schema} for column inference")
        })?;
        self.schemas.insert(schema);
        Ok(())
    }

    /// An empty table for `name` with declared columns.
    fn create(&mut self, name: &ModelName, columns: &[(String, String)]) -> Result<()> {
        self.ensure_schema(name)?;
        let list: Vec<String> = columns
            .iter()
            .map(|(c, t)| format!("{} {t}", quote_ident(c)))
            .collect();
        let relation = self.relation(name);
        let created = self.session.execute(
            &format!("CREATE OR REPLACE TABLE {relation} ({})", list.join(", ")),
            || format!("declaring `{name}` for column inference"),
        );
        let known = match created {
            Ok(()) => Columns::Known,
            // A declared type DuckDB does not know: the columns stay unknown rather than failing.
            Err(_) => Columns::Unknown(format!(
                "the declared column types of `{name}` are not DuckDB types"
            )),
        };
        self.columns.insert(relation, known);
        Ok(())
    }

    /// Describes model `i`'s query against its parents' tables and creates its own empty table.
    pub fn bind(&mut self, i: ModelId) -> Result<Bound> {
        let project = self.project;
        let model = project.model(i);
        let name = model.meta.name.clone();
        let unknown = |why: String| -> Result<Bound> { Ok(Bound::Unknown(why)) };
        let bound = match &model.meta.kind {
            ModelKind::Seed { .. } => {
                let columns = if model.meta.columns.is_empty() {
                    let Some(path) = &model.seed_path else {
                        return unknown(format!("seed `{name}` has no CSV file"));
                    };
                    let sql = format!(
                        "DESCRIBE SELECT * FROM read_csv({})",
                        crate::sql::quote_literal(&path.to_string_lossy())
                    );
                    match self.describe(&sql) {
                        Ok(columns) => columns,
                        Err(_) => {
                            return self.mark_unknown(
                                &name,
                                format!("the columns of seed `{name}` could not be read"),
                            );
                        }
                    }
                } else {
                    model
                        .meta
                        .columns
                        .iter()
                        .map(|c| (c.name.clone(), c.data_type.clone()))
                        .collect()
                };
                self.create(&name, &columns)?;
                Bound::Ok
            }
            ModelKind::External => return Ok(Bound::Ok),
            _ => {
                let ctx =
                    MacroContext::for_loading(&project.config.gateway, &project.config.variables);
                let Some(rendered) = project.render_query(i, &ctx)? else {
                    return Ok(Bound::Ok);
                };
                let mut edits = Vec::new();
                for (r, target) in &rendered.refs {
                    let target_name = match target {
                        RefTarget::Model(p) => project.model(*p).meta.name.clone(),
                        RefTarget::External => match ModelName::from_parts(&r.parts) {
                            Some(mut n) => {
                                if n.catalog.as_deref() == Some(project.default_catalog.as_str()) {
                                    n.catalog = None;
                                }
                                n
                            }
                            None => continue,
                        },
                        _ => continue,
                    };
                    let relation = self.relation(&target_name);
                    if let Some(Columns::Unknown(why)) = self.columns.get(&relation) {
                        let why = why.clone();
                        return self.mark_unknown(&name, why);
                    }
                    edits.push((r.offset, r.len, relation));
                }
                let sql = crate::sql::replace_spans(&rendered.sql, edits);
                self.ensure_schema(&name)?;
                let relation = self.relation(&name);
                // One statement binds the query and keeps its columns as an empty table; LIMIT 0 reads
                // nothing.
                let created = self.session.execute(
                    &format!(
                        "CREATE OR REPLACE TABLE {relation} AS SELECT * FROM ({sql}) AS q LIMIT 0"
                    ),
                    || format!("binding the query of `{name}`"),
                );
                match created.map_err(|e| match e {
                    LakeError::Engine { cause, .. } => crate::error::engine_message(&cause),
                    other => other.to_string(),
                }) {
                    Ok(()) => {
                        self.columns.insert(relation, Columns::Known);
                        Bound::Ok
                    }
                    Err(message) => {
                        let why = format!("the query of `{name}` does not bind");
                        self.columns
                            .insert(self.relation(&name), Columns::Unknown(why));
                        match column_error(&message) {
                            Some((column, message)) => {
                                let query = model.query.as_ref().map_or(0, |q| q.offset);
                                let at = find_word(&rendered.sql, &column).map_or(query, |o| {
                                    query + rendered.rendered.original_offset(o)
                                });
                                Bound::Failed {
                                    offset: at,
                                    message,
                                }
                            }
                            None => Bound::Unknown(format!(
                                "the query of `{name}` does not bind in DuckDB: {message}"
                            )),
                        }
                    }
                }
            }
        };
        Ok(bound)
    }

    /// The inferred columns (name, DuckDB type) of a model or declared external, once bound.
    pub fn columns_of(&self, name: &ModelName) -> Option<Vec<(String, String)>> {
        let relation = self.relation(name);
        if !matches!(self.columns.get(&relation), Some(Columns::Known)) {
            return None;
        }
        self.describe(&format!("DESCRIBE {relation}")).ok()
    }

    fn mark_unknown(&mut self, name: &ModelName, why: String) -> Result<Bound> {
        self.columns
            .insert(self.relation(name), Columns::Unknown(why.clone()));
        Ok(Bound::Unknown(why))
    }

    /// Column names and types of a `DESCRIBE …` statement.
    fn describe(&self, sql: &str) -> Result<Vec<(String, String)>> {
        let rows = self
            .session
            .query_rows(sql, || "describing a query for the linter".into())?;
        Ok(rows
            .into_iter()
            .filter_map(|row| Some((row.first()?.clone()?, row.get(1)?.clone()?)))
            .collect())
    }
}

/// For a binder error about a column (missing or ambiguous): the column's name and the message to show.
pub(crate) fn column_error(message: &str) -> Option<(String, String)> {
    let first = message.split("\nLINE ").next().unwrap_or(message).trim();
    let is_column = [
        "Referenced column",
        "Ambiguous reference to column",
        "does not have a column named",
        "Referenced table",
    ]
    .iter()
    .any(|k| first.contains(k));
    if !is_column {
        return None;
    }
    let quoted: Vec<&str> = first.split('"').skip(1).step_by(2).collect();
    let column = if first.contains("does not have a column named") {
        quoted.get(1).or(quoted.first())?
    } else {
        quoted.first()?
    };
    let text = first
        .trim_start_matches("Binder Error: ")
        .replace('\n', "; ");
    Some((column.to_string(), text))
}

/// Offset of the first occurrence of `word` as a whole identifier outside strings and comments.
pub(crate) fn find_word(sql: &str, word: &str) -> Option<usize> {
    let bytes = sql.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if let Some(n) = crate::sql::lex::skip_lexeme(bytes, i) {
            if bytes[i] == b'"' && sql[i + 1..i + n - 1].eq_ignore_ascii_case(word) {
                return Some(i);
            }
            i += n;
            continue;
        }
        if sql[i..].len() >= word.len()
            && sql.is_char_boundary(i + word.len())
            && sql[i..i + word.len()].eq_ignore_ascii_case(word)
            && (i == 0 || !is_ident(bytes[i - 1]))
            && bytes.get(i + word.len()).is_none_or(|&b| !is_ident(b))
        {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binder_messages_name_the_column() {
        let (column, text) = column_error(
            "Binder Error: Referenced column \"amont\" not found in FROM clause!\nCandidate bindings: \"amount\"\n\nLINE 1: select amont",
        )
        .unwrap();
        assert_eq!(column, "amont");
        assert_eq!(
            text,
            "Referenced column \"amont\" not found in FROM clause!; Candidate bindings: \"amount\""
        );
        assert_eq!(
            column_error("Catalog Error: Scalar Function with name foo does not exist!"),
            None
        );
        assert_eq!(find_word("select 'id', x.id from t", "id"), Some(15));
    }
}
