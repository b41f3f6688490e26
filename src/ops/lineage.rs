//! `lake lineage`: where a model's columns come from (upstream), or what reads them (downstream).

use serde::Serialize;

use super::Context;
use crate::error::{LakeError, Result, did_you_mean};
use crate::project::{ModelId, PerModel};
use crate::sql::lineage::{How, QueryLineage, Source};

/// What `lake lineage` asks: `MODEL` or `MODEL.COLUMN`, in which direction, how deep.
#[derive(Debug, Clone)]
pub struct LineageRequest {
    pub target: String,
    pub downstream: bool,
    /// Levels to follow; `None`: all.
    pub depth: Option<usize>,
}

/// How a column is used by the node above it in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "use", content = "how")]
pub enum Use {
    /// The column's value goes into the other column, so.
    Value(How),
    /// The column only selects rows (a filter, a join key, a grouping).
    Rows,
}

/// One column in a lineage tree.
#[derive(Debug, Clone, Serialize)]
pub struct LineageNode {
    /// The model or table, as `schema.name`.
    pub table: String,
    /// Empty for a model whose rows (not one column) the column above selects.
    pub column: String,
    /// `model`, `external` (a declared external table or another table lake does not build), `seed`.
    pub kind: &'static str,
    /// How this column relates to its parent in the tree; `None` at the root.
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub used: Option<Use>,
    /// Part of it could not be traced (an unexpandable `*`, a construct lake cannot read).
    pub opaque: bool,
    pub children: Vec<LineageNode>,
}

impl Context {
    /// The lineage tree of the requested model or column: one root per column.
    pub fn lineage(&self, request: &LineageRequest) -> Result<Vec<LineageNode>> {
        let traced = self.project.lineage().models;
        let (model, column) = self.lineage_target(&request.target, &traced)?;
        let columns = match column {
            Some(column) => vec![column],
            None => self
                .project
                .output_columns(model, &traced)
                .unwrap_or_default(),
        };
        let walk = Walk {
            ctx: self,
            traced: &traced,
            downstream: request.downstream,
        };
        Ok(columns
            .iter()
            .map(|c| walk.node(model, c, None, request.depth.unwrap_or(usize::MAX)))
            .collect())
    }

    /// The model and (when written) column `target` names; an unknown one is a usage error with the
    /// nearest names.
    fn lineage_target(
        &self,
        target: &str,
        traced: &PerModel<Option<QueryLineage>>,
    ) -> Result<(ModelId, Option<String>)> {
        if let Some(id) = self.project.model_id_named(target) {
            return Ok((id, None));
        }
        let Some((model, column)) = target.rsplit_once('.') else {
            return Err(self
                .project
                .find_model(target)
                .err()
                .unwrap_or_else(|| LakeError::Usage(format!("`{target}` is not a model"), None)));
        };
        let id = self.project.find_model(model).map_err(|e| match e {
            LakeError::UnknownModel(name, help) => {
                LakeError::Usage(format!("model `{name}` not found in the project"), help)
            }
            other => other,
        })?;
        let columns = self.project.output_columns(id, traced).unwrap_or_default();
        match columns.iter().find(|c| c.eq_ignore_ascii_case(column)) {
            Some(found) => Ok((id, Some(found.clone()))),
            None => Err(LakeError::Usage(
                format!("`{model}` has no column `{column}`"),
                Some(
                    did_you_mean(column, columns.iter().map(String::as_str))
                        .unwrap_or_else(|| format!("its columns: {}", columns.join(", "))),
                ),
            )),
        }
    }
}

struct Walk<'a> {
    ctx: &'a Context,
    traced: &'a PerModel<Option<QueryLineage>>,
    downstream: bool,
}

impl Walk<'_> {
    fn node(&self, model: ModelId, column: &str, used: Option<Use>, depth: usize) -> LineageNode {
        let project = &self.ctx.project;
        let traced = self.traced[model].as_ref();
        let mut node = LineageNode {
            table: project.model(model).meta.name.to_string(),
            column: column.to_string(),
            kind: if project.model(model).seed_path.is_some() {
                "seed"
            } else {
                "model"
            },
            used,
            opaque: false,
            children: Vec::new(),
        };
        if depth == 0 {
            return node;
        }
        if self.downstream {
            node.children = self.readers(model, column, depth - 1);
            return node;
        }
        let Some(lineage) = traced else {
            return node;
        };
        let Some(own) = lineage
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(column))
        else {
            node.opaque = lineage.columns_opaque;
            return node;
        };
        node.opaque = own.opaque;
        node.children = own
            .sources
            .iter()
            .map(|(source, how)| self.source_node(source, Use::Value(*how), depth - 1))
            .collect();
        // At the root: the columns that select the model's rows, which every column depends on.
        if used.is_none() {
            node.children.extend(
                lineage
                    .row_sources
                    .iter()
                    .map(|source| self.source_node(source, Use::Rows, 0)),
            );
        }
        node
    }

    fn source_node(&self, source: &Source, used: Use, depth: usize) -> LineageNode {
        match self.ctx.project.model_id_named(&source.table) {
            Some(id) => self.node(id, &source.column, Some(used), depth),
            None => LineageNode {
                table: source.table.clone(),
                column: source.column.clone(),
                kind: "external",
                used: Some(used),
                opaque: false,
                children: Vec::new(),
            },
        }
    }

    /// The columns of other models that read `column` of `model`, and those whose rows it selects.
    fn readers(&self, model: ModelId, column: &str, depth: usize) -> Vec<LineageNode> {
        let project = &self.ctx.project;
        let is_it = |s: &Source| {
            s.column.eq_ignore_ascii_case(column) && project.model_id_named(&s.table) == Some(model)
        };
        let mut readers = Vec::new();
        for &child in &project.order {
            let Some(lineage) = self.traced[child].as_ref() else {
                continue;
            };
            for c in &lineage.columns {
                if let Some((_, how)) = c.sources.iter().find(|(s, _)| is_it(s)) {
                    readers.push(self.node(child, &c.name, Some(Use::Value(*how)), depth));
                }
            }
            if lineage.row_sources.iter().any(is_it) {
                readers.push(LineageNode {
                    table: project.model(child).meta.name.to_string(),
                    // No column: the model's rows as a whole.
                    column: String::new(),
                    kind: "model",
                    used: Some(Use::Rows),
                    opaque: false,
                    children: Vec::new(),
                });
            }
        }
        readers
    }
}
