//! `lake lineage`: where a model's columns come from (upstream), or what reads them (downstream).

use serde::Serialize;

use std::collections::HashMap;

use super::Context;
use crate::error::{LakeError, Result, did_you_mean};
use crate::project::lineage::{LineageGraph, LineageInput};
use crate::project::model::ModelMeta;
use crate::sql::ModelName;
use crate::sql::lineage::{How, Source};
use crate::state::StoredSnapshot;

/// What `lake lineage` asks: `MODEL` or `MODEL.COLUMN`, in which direction, how deep.
#[derive(Debug, Clone)]
pub struct LineageRequest {
    pub target: String,
    pub downstream: bool,
    /// Levels to follow; `None`: all.
    pub depth: Option<usize>,
    /// Trace the models as this environment has them (state's record of each version); `None`: the project
    /// files.
    pub environment: Option<String>,
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
        let graph = match &request.environment {
            Some(env) => self.environment_lineage(env)?,
            None => self.project.lineage_graph(),
        };
        let (model, column) =
            lineage_target(&graph, &request.target, request.environment.as_deref())?;
        let columns = match column {
            Some(column) => vec![column],
            None => graph.models[model].columns.clone().unwrap_or_default(),
        };
        let walk = Walk {
            graph: &graph,
            downstream: request.downstream,
        };
        Ok(columns
            .iter()
            .map(|c| walk.node(model, c, None, request.depth.unwrap_or(usize::MAX)))
            .collect())
    }

    /// Environment `env`'s models as state recorded them when they were planned, traced.
    fn environment_lineage(&self, env: &str) -> Result<LineageGraph> {
        let state = self.open_state()?;
        let environment = super::existing_environment(state.as_ref(), env)?;
        let ids: Vec<&str> = environment
            .snapshots
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        let stored = parents_first(state.snapshots(&ids)?);
        let inputs = stored
            .into_iter()
            .map(|s| {
                let declared = serde_json::from_value::<ModelMeta>(s.node.meta)
                    .map(|meta| meta.columns.into_iter().map(|c| c.name).collect())
                    .unwrap_or_default();
                LineageInput {
                    seed: s.snapshot.kind_name.eq_ignore_ascii_case("SEED"),
                    name: s.snapshot.name,
                    query: s.node.query,
                    declared,
                    // The CSV it was built from may differ from the file now: a `*` over it stays opaque
                    // unless its columns were declared.
                    header: None,
                }
            })
            .collect();
        Ok(LineageGraph::trace(
            inputs,
            &self.project.default_catalog,
            self.project.known_columns.clone(),
        ))
    }
}

/// Stored versions ordered parents first (each after the parents it has in the same set).
fn parents_first(stored: Vec<StoredSnapshot>) -> Vec<StoredSnapshot> {
    let index: HashMap<ModelName, usize> = stored
        .iter()
        .enumerate()
        .map(|(i, s)| (s.snapshot.name.clone(), i))
        .collect();
    let mut graph = petgraph::graph::DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..stored.len()).map(|i| graph.add_node(i)).collect();
    for (i, s) in stored.iter().enumerate() {
        for parent in s.snapshot.parents.iter().filter_map(|p| index.get(p)) {
            graph.add_edge(nodes[*parent], nodes[i], ());
        }
    }
    // A cycle cannot be planned, so state holds none; were it there, the stored order is kept.
    let order: Vec<usize> = petgraph::algo::toposort(&graph, None)
        .map(|sorted| sorted.into_iter().map(|n| graph[n]).collect())
        .unwrap_or_else(|_| (0..stored.len()).collect());
    let mut slots: Vec<Option<StoredSnapshot>> = stored.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// The model and (when written) column `target` names; an unknown one is a usage error with the nearest
/// names.
fn lineage_target(
    graph: &LineageGraph,
    target: &str,
    environment: Option<&str>,
) -> Result<(usize, Option<String>)> {
    if let Some(i) = graph.find(target) {
        return Ok((i, None));
    }
    // `schema.model.column`: the model is all but the last part; `schema.model` names a model or nothing.
    let (model, column) = match target.rsplit_once('.') {
        Some((model, column)) if model.contains('.') => (model, column),
        _ => (target, ""),
    };
    let Some(i) = graph.find(model).filter(|_| !column.is_empty()) else {
        let names: Vec<String> = graph.models.iter().map(|m| m.name.to_string()).collect();
        let place = environment.map_or("the project".to_string(), |e| format!("environment `{e}`"));
        // `full_model` typed without its schema: the models of that name.
        let same_name = names
            .iter()
            .find(|n| n.rsplit('.').next() == Some(model))
            .map(|n| format!("did you mean `{n}`?"));
        return Err(LakeError::Usage(
            format!("model `{model}` not found in {place}"),
            same_name.or_else(|| did_you_mean(model, names.iter().map(String::as_str))),
        ));
    };
    let columns = graph.models[i].columns.clone().unwrap_or_default();
    match columns.iter().find(|c| c.eq_ignore_ascii_case(column)) {
        Some(found) => Ok((i, Some(found.clone()))),
        None => Err(LakeError::Usage(
            format!("`{model}` has no column `{column}`"),
            Some(
                did_you_mean(column, columns.iter().map(String::as_str))
                    .unwrap_or_else(|| format!("its columns: {}", columns.join(", "))),
            ),
        )),
    }
}

struct Walk<'a> {
    graph: &'a LineageGraph,
    downstream: bool,
}

impl Walk<'_> {
    fn node(&self, model: usize, column: &str, used: Option<Use>, depth: usize) -> LineageNode {
        let traced = &self.graph.models[model];
        let mut node = LineageNode {
            table: traced.name.to_string(),
            column: column.to_string(),
            kind: if traced.seed { "seed" } else { "model" },
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
        let Some(lineage) = traced.lineage.as_ref() else {
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
        match self.graph.find(&source.table) {
            Some(i) => self.node(i, &source.column, Some(used), depth),
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
    fn readers(&self, model: usize, column: &str, depth: usize) -> Vec<LineageNode> {
        let is_it = |s: &Source| {
            s.column.eq_ignore_ascii_case(column) && self.graph.find(&s.table) == Some(model)
        };
        let mut readers = Vec::new();
        for (child, traced) in self.graph.models.iter().enumerate() {
            let Some(lineage) = traced.lineage.as_ref() else {
                continue;
            };
            for c in &lineage.columns {
                if let Some((_, how)) = c.sources.iter().find(|(s, _)| is_it(s)) {
                    readers.push(self.node(child, &c.name, Some(Use::Value(*how)), depth));
                }
            }
            if lineage.row_sources.iter().any(is_it) {
                readers.push(LineageNode {
                    table: traced.name.to_string(),
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
