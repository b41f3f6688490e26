//! `lake create-external-models`: declares the tables models read but lake does not build, with the columns
//! DuckDB sees, in `external_models.yaml`.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_norway::{Mapping, Value};

use crate::engine::Session;
use crate::error::{LakeError, Result};
use crate::project::Project;
use crate::sql::{ModelName, quote_ident};

/// What was declared, and what DuckDB could not find.
#[derive(Debug, Default, Serialize)]
pub struct ExternalsReport {
    pub declared: Vec<String>,
    /// Tables no engine object answers for; an existing declaration of them is kept as it was.
    pub not_found: Vec<String>,
}

fn sql_name(name: &ModelName) -> String {
    let mut parts = Vec::new();
    if let Some(catalog) = &name.catalog {
        parts.push(quote_ident(catalog));
    }
    parts.push(quote_ident(&name.schema));
    parts.push(quote_ident(&name.name));
    parts.join(".")
}

/// Rewrites `external_models.yaml` in the project from every external table the models read.
pub fn write(project: &Project, session: &Session) -> Result<ExternalsReport> {
    let wanted: BTreeSet<ModelName> = project
        .models()
        .iter()
        .map(|m| &m.analysis)
        .flat_map(|a| a.externals.iter().chain(&a.undeclared).cloned())
        .collect();
    let mut report = ExternalsReport::default();
    let mut entries = Vec::new();
    for name in wanted {
        let described = session.query_rows(
            &format!(
                "SELECT column_name, column_type FROM (DESCRIBE {})",
                sql_name(&name)
            ),
            || format!("describing {name}"),
        );
        let existing = project.externals.get(&name);
        let mut entry = Mapping::new();
        entry.insert("name".into(), Value::String(name.to_string()));
        if let Some(description) = existing.and_then(|e| e.description.clone()) {
            entry.insert("description".into(), Value::String(description));
        }
        let mut columns = Mapping::new();
        match described {
            Ok(rows) => {
                for row in rows {
                    if let [Some(column), Some(kind)] = row.as_slice() {
                        columns.insert(Value::String(column.clone()), Value::String(kind.clone()));
                    }
                }
                report.declared.push(name.to_string());
            }
            Err(_) => {
                report.not_found.push(name.to_string());
                let Some(existing) = existing else { continue };
                for (column, kind) in &existing.columns {
                    columns.insert(Value::String(column.clone()), Value::String(kind.clone()));
                }
            }
        }
        entry.insert("columns".into(), Value::Mapping(columns));
        entries.push(Value::Mapping(entry));
    }
    let text = serde_norway::to_string(&Value::Sequence(entries))
        .map_err(|e| LakeError::Output(format!("cannot write external_models.yaml: {e}")))?;
    let path = project.root.join("external_models.yaml");
    let header = "# Tables models read that lake does not build, with their columns (written by `lake create-external-models`).\n";
    std::fs::write(&path, format!("{header}{text}")).map_err(|e| LakeError::io(&path, e))?;
    Ok(report)
}
