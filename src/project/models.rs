//! Model identity: `ModelId`, the loaded models it names (each model with its analysis and audits), and
//! `PerModel`, the tables keyed by it.

use std::ops::{Index, IndexMut};

use super::Analysis;
use super::audit::ModelAudit;
use super::model::Model;

/// A model of the loaded project: its position among the project's models, the key of every per-model table
/// (`PerModel`). Only meaningful with the project (and the plan) it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId(u32);

impl ModelId {
    /// The id of the `index`th model. Projects hold far fewer than 2³² models; `PerModel` checks on insert.
    pub(super) fn from_index(index: usize) -> ModelId {
        ModelId(index as u32)
    }

    /// The `index`th model's id, for tests that make plans by hand.
    #[cfg(test)]
    pub fn nth(index: usize) -> ModelId {
        ModelId::from_index(index)
    }

    /// The position in a `PerModel` (a `Vec` index, as petgraph's nodes are).
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One model as the project loaded it: its definition, what its query reads, and its audits.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    /// Filled once every model is loaded (a query's references are resolved against all of them).
    pub analysis: Analysis,
    /// Its audits, resolved against `audits/` and with parsed arguments.
    pub audits: Vec<ModelAudit>,
    /// Whether prod writes its table in place (see [`super::Project::dev_only`]).
    pub dev_only: bool,
}

/// A value for each model of a project, by `ModelId`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerModel<T>(Vec<T>);

impl<T> PerModel<T> {
    /// Every model's id, in load order.
    pub fn ids(&self) -> impl DoubleEndedIterator<Item = ModelId> + ExactSizeIterator + use<T> {
        (0..self.0.len()).map(ModelId::from_index)
    }

    /// Each model's id with its value.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = (ModelId, &T)> + ExactSizeIterator {
        self.0
            .iter()
            .enumerate()
            .map(|(i, value)| (ModelId::from_index(i), value))
    }

    pub fn entries_mut(&mut self) -> impl Iterator<Item = (ModelId, &mut T)> {
        self.0
            .iter_mut()
            .enumerate()
            .map(|(i, value)| (ModelId::from_index(i), value))
    }

    /// The values, in id order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.0.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Another table with the same keys.
    pub fn map<U>(&self, mut f: impl FnMut(ModelId, &T) -> U) -> PerModel<U> {
        PerModel(self.entries().map(|(id, value)| f(id, value)).collect())
    }

    /// Another table with the same keys, its values computed on every core.
    pub fn par_map<U: Send>(&self, f: impl Fn(ModelId, &T) -> U + Sync) -> PerModel<U>
    where
        T: Sync,
    {
        use rayon::prelude::*;
        PerModel(
            self.0
                .par_iter()
                .enumerate()
                .map(|(i, value)| f(ModelId::from_index(i), value))
                .collect(),
        )
    }

    /// The values, in id order.
    pub fn into_values(self) -> Vec<T> {
        self.0
    }
}

impl<T> FromIterator<T> for PerModel<T> {
    /// The first value is model 0's, and so on.
    fn from_iter<I: IntoIterator<Item = T>>(values: I) -> Self {
        let values: Vec<T> = values.into_iter().collect();
        assert!(
            u32::try_from(values.len()).is_ok(),
            "more models than a ModelId can name"
        );
        PerModel(values)
    }
}

impl<T> From<Vec<T>> for PerModel<T> {
    fn from(values: Vec<T>) -> Self {
        values.into_iter().collect()
    }
}

impl<T> Index<ModelId> for PerModel<T> {
    type Output = T;

    fn index(&self, id: ModelId) -> &T {
        &self.0[id.index()]
    }
}

impl<T> IndexMut<ModelId> for PerModel<T> {
    fn index_mut(&mut self, id: ModelId) -> &mut T {
        &mut self.0[id.index()]
    }
}

impl<'a, T> IntoIterator for &'a mut PerModel<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter_mut()
    }
}

impl<'a, T> IntoIterator for &'a PerModel<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_values_and_map_keeps_them() {
        let names: PerModel<&str> = vec!["a", "b", "c"].into();
        let ids: Vec<ModelId> = names.ids().collect();
        assert_eq!(
            ids.iter().map(|id| id.index()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(names[ids[1]], "b");
        let lengths = names.map(|_, name| name.len() + 1);
        assert_eq!(lengths[ids[2]], 2);
        assert_eq!(names.len(), 3);
    }
}
