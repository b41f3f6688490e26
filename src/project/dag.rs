//! The model dependency graph (petgraph): topological order, cycles, upstream and downstream sets.

use petgraph::Direction;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

use super::models::ModelId;

/// Models as nodes (a `ModelId`'s index is its node's), edges from parent to child.
#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<(), ()>,
}

impl Dag {
    pub fn new(node_count: usize, edges: impl IntoIterator<Item = (ModelId, ModelId)>) -> Self {
        let mut graph = DiGraph::with_capacity(node_count, node_count * 2);
        for _ in 0..node_count {
            graph.add_node(());
        }
        for (parent, child) in edges {
            graph.update_edge(node(parent), node(child), ());
        }
        Dag { graph }
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Parents before children; `Err` holds one cycle as a closed path (first node repeated at the end).
    pub fn topological_order(&self) -> Result<Vec<ModelId>, Vec<ModelId>> {
        match toposort(&self.graph, None) {
            Ok(order) => Ok(order.into_iter().map(id).collect()),
            Err(cycle) => Err(self.cycle_through(cycle.node_id())),
        }
    }

    /// A concrete cycle inside the strongly connected component of `start`.
    fn cycle_through(&self, start: NodeIndex) -> Vec<ModelId> {
        let component = tarjan_scc(&self.graph)
            .into_iter()
            .find(|c| c.contains(&start))
            .unwrap_or_else(|| vec![start]);
        // Walk inside the component until a node repeats; every node of an SCC has a successor in it.
        let mut path = vec![start];
        let mut current = start;
        loop {
            let next = self
                .graph
                .neighbors_directed(current, Direction::Outgoing)
                .filter(|n| component.contains(n))
                .min_by_key(|n| n.index());
            let Some(next) = next else { break };
            if let Some(pos) = path.iter().position(|&p| p == next) {
                let mut cycle: Vec<ModelId> = path[pos..].iter().copied().map(id).collect();
                cycle.push(id(next));
                return cycle;
            }
            path.push(next);
            current = next;
        }
        vec![id(start), id(start)]
    }

    pub fn parents(&self, model: ModelId) -> impl Iterator<Item = ModelId> + '_ {
        self.graph
            .neighbors_directed(node(model), Direction::Incoming)
            .map(id)
    }

    pub fn children(&self, model: ModelId) -> impl Iterator<Item = ModelId> + '_ {
        self.graph
            .neighbors_directed(node(model), Direction::Outgoing)
            .map(id)
    }

    /// Every model reachable from `model` following edges downstream, excluding `model` itself.
    pub fn downstream(&self, model: ModelId) -> Vec<ModelId> {
        let mut dfs = Dfs::new(&self.graph, node(model));
        let mut out = Vec::new();
        while let Some(n) = dfs.next(&self.graph) {
            if n != node(model) {
                out.push(id(n));
            }
        }
        out
    }

    /// Every model `model` depends on, directly or not, excluding itself.
    pub fn upstream(&self, model: ModelId) -> Vec<ModelId> {
        let reversed = Reversed(&self.graph);
        let mut dfs = Dfs::new(reversed, node(model));
        let mut out = Vec::new();
        while let Some(n) = dfs.next(reversed) {
            if n != node(model) {
                out.push(id(n));
            }
        }
        out
    }
}

fn node(model: ModelId) -> NodeIndex {
    NodeIndex::new(model.index())
}

fn id(node: NodeIndex) -> ModelId {
    ModelId::from_index(node.index())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(indexes: &[usize]) -> Vec<ModelId> {
        indexes.iter().map(|&i| ModelId::from_index(i)).collect()
    }

    fn edges(pairs: &[(usize, usize)]) -> Vec<(ModelId, ModelId)> {
        pairs
            .iter()
            .map(|&(p, c)| (ModelId::from_index(p), ModelId::from_index(c)))
            .collect()
    }

    #[test]
    fn orders_parents_first() {
        let dag = Dag::new(4, edges(&[(0, 1), (1, 2), (0, 2), (3, 2)]));
        let order = dag.topological_order().unwrap();
        let pos = |n| {
            order
                .iter()
                .position(|&x| x == ModelId::from_index(n))
                .unwrap()
        };
        assert!(pos(0) < pos(1) && pos(1) < pos(2) && pos(3) < pos(2));
        let mut down = dag.downstream(ModelId::from_index(0));
        down.sort();
        assert_eq!(down, ids(&[1, 2]));
        let mut up = dag.upstream(ModelId::from_index(2));
        up.sort();
        assert_eq!(up, ids(&[0, 1, 3]));
        assert_eq!(dag.parents(ModelId::from_index(2)).count(), 3);
    }

    #[test]
    fn reports_a_closed_cycle() {
        let dag = Dag::new(4, edges(&[(0, 1), (1, 2), (2, 3), (3, 1)]));
        let cycle = dag.topological_order().unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        let mut members = cycle[..3].to_vec();
        members.sort();
        assert_eq!(members, ids(&[1, 2, 3]));
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let dag = Dag::new(1, edges(&[(0, 0)]));
        assert_eq!(dag.topological_order().unwrap_err(), ids(&[0, 0]));
    }
}
