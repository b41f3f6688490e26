//! The model dependency graph (petgraph): topological order, cycles, upstream and downstream sets.

use petgraph::Direction;
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

/// Models as nodes `0..n`, edges from parent to child.
#[derive(Debug, Clone)]
pub struct Dag {
    graph: DiGraph<(), ()>,
}

impl Dag {
    pub fn new(node_count: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut graph = DiGraph::with_capacity(node_count, node_count * 2);
        for _ in 0..node_count {
            graph.add_node(());
        }
        for (parent, child) in edges {
            graph.update_edge(NodeIndex::new(parent), NodeIndex::new(child), ());
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
    pub fn topological_order(&self) -> Result<Vec<usize>, Vec<usize>> {
        match toposort(&self.graph, None) {
            Ok(order) => Ok(order.into_iter().map(|n| n.index()).collect()),
            Err(cycle) => Err(self.cycle_through(cycle.node_id())),
        }
    }

    /// A concrete cycle inside the strongly connected component of `start`.
    fn cycle_through(&self, start: NodeIndex) -> Vec<usize> {
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
                let mut cycle: Vec<usize> = path[pos..].iter().map(|n| n.index()).collect();
                cycle.push(next.index());
                return cycle;
            }
            path.push(next);
            current = next;
        }
        vec![start.index(), start.index()]
    }

    pub fn parents(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(node), Direction::Incoming)
            .map(|n| n.index())
    }

    pub fn children(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        self.graph
            .neighbors_directed(NodeIndex::new(node), Direction::Outgoing)
            .map(|n| n.index())
    }

    /// Every node reachable from `node` following edges downstream, excluding `node` itself.
    pub fn downstream(&self, node: usize) -> Vec<usize> {
        let mut dfs = Dfs::new(&self.graph, NodeIndex::new(node));
        let mut out = Vec::new();
        while let Some(n) = dfs.next(&self.graph) {
            if n.index() != node {
                out.push(n.index());
            }
        }
        out
    }

    /// Every node `node` depends on, directly or not, excluding itself.
    pub fn upstream(&self, node: usize) -> Vec<usize> {
        let reversed = Reversed(&self.graph);
        let mut dfs = Dfs::new(reversed, NodeIndex::new(node));
        let mut out = Vec::new();
        while let Some(n) = dfs.next(reversed) {
            if n.index() != node {
                out.push(n.index());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parents_first() {
        let dag = Dag::new(4, [(0, 1), (1, 2), (0, 2), (3, 2)]);
        let order = dag.topological_order().unwrap();
        let pos = |n| order.iter().position(|&x| x == n).unwrap();
        assert!(pos(0) < pos(1) && pos(1) < pos(2) && pos(3) < pos(2));
        let mut down = dag.downstream(0);
        down.sort();
        assert_eq!(down, [1, 2]);
        let mut up = dag.upstream(2);
        up.sort();
        assert_eq!(up, [0, 1, 3]);
        assert_eq!(dag.parents(2).count(), 3);
    }

    #[test]
    fn reports_a_closed_cycle() {
        let dag = Dag::new(4, [(0, 1), (1, 2), (2, 3), (3, 1)]);
        let cycle = dag.topological_order().unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert_eq!(cycle.len(), 4);
        let mut members = cycle[..3].to_vec();
        members.sort();
        assert_eq!(members, [1, 2, 3]);
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let dag = Dag::new(1, [(0, 0)]);
        assert_eq!(dag.topological_order().unwrap_err(), [0, 0]);
    }
}
