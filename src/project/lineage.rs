//! Column lineage across a set of models: each model's rendered query traced, upstream models first, so a
//! `*` over a model expands to the columns lineage found for it. The set is the project's, or an
//! environment's as state recorded it.

use std::collections::{BTreeMap, HashMap};

use super::model::ModelKind;
use super::{PerModel, Project};
use crate::sql::ModelName;
use crate::sql::lineage::{QueryLineage, UpstreamColumns, query_lineage};

/// The lineage of every model of the project: `None` for a model without a query lake can read (a seed's
/// columns are its own, a Python model's are unknown).
#[derive(Debug, Clone)]
pub struct ProjectLineage {
    pub models: PerModel<Option<QueryLineage>>,
}

/// What tracing one model needs.
#[derive(Debug, Clone)]
pub struct LineageInput {
    pub name: ModelName,
    pub seed: bool,
    /// The rendered query; `None` for a seed, a Python model or a query that did not render.
    pub query: Option<String>,
    /// Declared `columns`, which win over what the query shows.
    pub declared: Vec<String>,
    /// A seed's CSV header.
    pub header: Option<Vec<String>>,
}

/// One traced model.
#[derive(Debug, Clone)]
pub struct LineageModel {
    pub name: ModelName,
    pub seed: bool,
    pub lineage: Option<QueryLineage>,
    /// Its output columns: declared, a seed's header, or traced; `None` when unknown.
    pub columns: Option<Vec<String>>,
}

/// Traced models in order, parents before children, found by the names queries use.
#[derive(Debug, Clone)]
pub struct LineageGraph {
    pub models: Vec<LineageModel>,
    by_name: HashMap<ModelName, usize>,
    default_catalog: String,
    externals: std::sync::Arc<BTreeMap<String, Vec<(String, String)>>>,
}

impl LineageGraph {
    /// Traces `inputs`, which come parents first; external tables' columns (for `*`) from `externals`.
    pub fn trace(
        inputs: Vec<LineageInput>,
        default_catalog: &str,
        externals: std::sync::Arc<BTreeMap<String, Vec<(String, String)>>>,
    ) -> LineageGraph {
        let mut graph = LineageGraph {
            models: Vec::with_capacity(inputs.len()),
            by_name: HashMap::with_capacity(inputs.len()),
            default_catalog: default_catalog.to_string(),
            externals,
        };
        for input in inputs {
            let lineage = input
                .query
                .as_deref()
                .filter(|_| !input.seed)
                .and_then(|q| graph.trace_query(q));
            let columns = if !input.declared.is_empty() {
                Some(input.declared)
            } else if input.seed {
                input.header
            } else {
                lineage
                    .as_ref()
                    .filter(|l| !l.columns_opaque)
                    .map(|l| l.columns.iter().map(|c| c.name.clone()).collect())
            };
            graph.by_name.insert(input.name.clone(), graph.models.len());
            graph.models.push(LineageModel {
                name: input.name,
                seed: input.seed,
                lineage,
                columns,
            });
        }
        graph
    }

    fn trace_query(&self, query: &str) -> Option<QueryLineage> {
        let statements = crate::sql::parse(query).ok()?;
        let sqlparser::ast::Statement::Query(query) = statements.first()? else {
            return None;
        };
        Some(query_lineage(query, self))
    }

    /// The model a query's table reference names (the default catalog may be written or not).
    pub fn find(&self, table: &str) -> Option<usize> {
        let mut name = ModelName::parse(table)?;
        if name.catalog.as_deref() == Some(self.default_catalog.as_str()) {
            name.catalog = None;
        }
        self.by_name.get(&name).copied()
    }
}

impl UpstreamColumns for LineageGraph {
    fn columns_of(&self, table: &str) -> Option<Vec<String>> {
        if let Some(i) = self.find(table) {
            return self.models[i].columns.clone();
        }
        self.externals
            .get(table)
            .map(|cs| cs.iter().map(|(c, _)| c.clone()).collect())
    }
}

impl Project {
    /// Every model's column lineage, from its rendered query.
    pub fn lineage(&self) -> ProjectLineage {
        let graph = self.lineage_graph();
        let mut traced: Vec<Option<QueryLineage>> =
            graph.models.into_iter().map(|m| m.lineage).collect();
        let mut models: PerModel<Option<QueryLineage>> = self.models.ids().map(|_| None).collect();
        for (n, &id) in self.order.iter().enumerate() {
            models[id] = traced[n].take();
        }
        ProjectLineage { models }
    }

    /// The project's models traced, in the project's order.
    pub fn lineage_graph(&self) -> LineageGraph {
        let inputs = self
            .order
            .iter()
            .map(|&id| {
                let model = self.model(id);
                let seed = matches!(model.meta.kind, ModelKind::Seed { .. });
                LineageInput {
                    name: model.meta.name.clone(),
                    seed,
                    query: self.analysis(id).normalized_query.clone(),
                    declared: model.meta.columns.iter().map(|c| c.name.clone()).collect(),
                    header: model.seed_path.as_deref().and_then(csv_header),
                }
            })
            .collect();
        LineageGraph::trace(inputs, &self.default_catalog, self.known_columns.clone())
    }
}

/// A CSV file's column names, from its first line.
fn csv_header(path: &std::path::Path) -> Option<Vec<String>> {
    use std::io::BufRead;
    let mut header = String::new();
    std::io::BufReader::new(std::fs::File::open(path).ok()?)
        .read_line(&mut header)
        .ok()?;
    let header = header.trim_end_matches(['\r', '\n']);
    Some(
        header
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .collect(),
    )
}
