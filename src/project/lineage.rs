//! Column lineage across the project: each model's rendered query traced, upstream models first, so a `*`
//! over a model expands to the columns lineage found for it.

use super::model::ModelKind;
use super::{ModelId, PerModel, Project};
use crate::sql::lineage::{QueryLineage, UpstreamColumns, query_lineage};

/// The lineage of every model: `None` for a model without a query lake can read (a seed's columns are its
/// own, a Python model's are unknown).
#[derive(Debug, Clone)]
pub struct ProjectLineage {
    pub models: PerModel<Option<QueryLineage>>,
}

impl Project {
    /// Every model's column lineage, from its rendered query.
    pub fn lineage(&self) -> ProjectLineage {
        let mut models: PerModel<Option<QueryLineage>> = self.models.ids().map(|_| None).collect();
        for &id in &self.order {
            let traced = self.model_lineage(id, &models);
            models[id] = traced;
        }
        ProjectLineage { models }
    }

    fn model_lineage(
        &self,
        id: ModelId,
        traced: &PerModel<Option<QueryLineage>>,
    ) -> Option<QueryLineage> {
        if matches!(self.model(id).meta.kind, ModelKind::Seed { .. }) {
            return None;
        }
        let query = self.analysis(id).normalized_query.as_ref()?;
        let statements = crate::sql::parse(query).ok()?;
        let sqlparser::ast::Statement::Query(query) = statements.first()? else {
            return None;
        };
        Some(query_lineage(
            query,
            &Known {
                project: self,
                traced,
            },
        ))
    }

    /// The output columns of model `id` as lineage and declarations know them: declared `columns` first,
    /// else what its query's lineage found (a seed: its declared columns or its CSV header).
    pub fn output_columns(
        &self,
        id: ModelId,
        lineage: &PerModel<Option<QueryLineage>>,
    ) -> Option<Vec<String>> {
        let model = self.model(id);
        if !model.meta.columns.is_empty() {
            return Some(model.meta.columns.iter().map(|c| c.name.clone()).collect());
        }
        if let Some(path) = &model.seed_path {
            let text = std::fs::read_to_string(path).ok()?;
            let header = text.lines().next()?;
            return Some(
                header
                    .split(',')
                    .map(|c| c.trim().trim_matches('"').to_string())
                    .collect(),
            );
        }
        let traced = lineage[id].as_ref()?;
        (!traced.columns_opaque).then(|| traced.columns.iter().map(|c| c.name.clone()).collect())
    }
}

/// Upstream columns for `*`: a model's (declared or traced), else an external model's or a declared table's.
struct Known<'a> {
    project: &'a Project,
    traced: &'a PerModel<Option<QueryLineage>>,
}

impl UpstreamColumns for Known<'_> {
    fn columns_of(&self, table: &str) -> Option<Vec<String>> {
        if let Some(id) = self.project.model_id_named(table) {
            return self.project.output_columns(id, self.traced);
        }
        self.project
            .known_columns
            .get(table)
            .map(|cs| cs.iter().map(|(c, _)| c.clone()).collect())
    }
}
