//! `lake dag FILE`: the model graph as one self-contained HTML page (no script or font from elsewhere), laid
//! out left to right by depth; clicking a model shows its details and lights up its lineage.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::project::{ModelId, Project};

const NODE_WIDTH: u32 = 196;
const NODE_HEIGHT: u32 = 46;
const COLUMN_GAP: u32 = 44;
const ROW_GAP: u32 = 22;
const MARGIN: u32 = 16;

#[derive(Serialize)]
struct Node {
    name: String,
    kind: String,
    path: String,
    description: Option<String>,
    owner: Option<String>,
    tags: Vec<String>,
    columns: Vec<(String, String)>,
    parents: Vec<usize>,
    children: Vec<usize>,
    x: u32,
    y: u32,
}

#[derive(Serialize)]
struct Graph {
    nodes: Vec<Node>,
    width: u32,
    height: u32,
    node_width: u32,
    node_height: u32,
}

/// The page for the models `selected` keeps (all of them when `None`).
pub fn render(project: &Project, selected: Option<&BTreeSet<ModelId>>) -> String {
    let graph = layout(project, selected);
    // `</` would end the script element the data sits in.
    let data = serde_json::to_string(&graph)
        .unwrap_or_else(|_| "{}".into())
        .replace("</", "<\\/");
    let title = format!("lake DAG: {} models", graph.nodes.len());
    PAGE.replace("{{TITLE}}", &html_escape(&title))
        .replace("{{DATA}}", &data)
}

/// Depth (longest path from a root) picks the column; within a column, models sit near their parents
/// (ordered by the mean row of their parents, then by name) so edges cross less.
fn layout(project: &Project, selected: Option<&BTreeSet<ModelId>>) -> Graph {
    let kept: Vec<ModelId> = project
        .order
        .iter()
        .copied()
        .filter(|id| selected.is_none_or(|s| s.contains(id)))
        .collect();
    let index: HashMap<ModelId, usize> = kept.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let parents_of = |id: ModelId| -> Vec<usize> {
        let mut parents: Vec<usize> = project
            .dag
            .parents(id)
            .filter_map(|p| index.get(&p).copied())
            .collect();
        parents.sort_unstable();
        parents
    };
    let mut depth = vec![0usize; kept.len()];
    for (i, &id) in kept.iter().enumerate() {
        // `project.order` is topological: parents already have their depth.
        depth[i] = parents_of(id)
            .iter()
            .map(|&p| depth[p] + 1)
            .max()
            .unwrap_or(0);
    }
    let columns = depth.iter().max().map_or(0, |d| d + 1);
    let mut row = vec![0usize; kept.len()];
    let mut tallest = 0;
    for column in 0..columns {
        let mut members: Vec<usize> = (0..kept.len()).filter(|&i| depth[i] == column).collect();
        let weight = |i: usize| {
            let parents = parents_of(kept[i]);
            if parents.is_empty() {
                0.0
            } else {
                parents.iter().map(|&p| row[p] as f64).sum::<f64>() / parents.len() as f64
            }
        };
        let name = |i: usize| project.model(kept[i]).meta.name.to_string();
        members.sort_by(|&a, &b| {
            weight(a)
                .total_cmp(&weight(b))
                .then_with(|| name(a).cmp(&name(b)))
        });
        for (r, &i) in members.iter().enumerate() {
            row[i] = r;
        }
        tallest = tallest.max(members.len() as u32);
    }
    let mut nodes: Vec<Node> = kept
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let model = project.model(id);
            let meta = &model.meta;
            Node {
                name: meta.name.to_string(),
                kind: meta.kind.name().to_string(),
                path: model.file.display_path.clone(),
                description: meta.description.clone(),
                owner: meta.owner.clone(),
                tags: meta.tags.clone(),
                columns: meta
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.data_type.clone()))
                    .collect(),
                parents: parents_of(id),
                children: Vec::new(),
                x: MARGIN + depth[i] as u32 * (NODE_WIDTH + COLUMN_GAP),
                y: MARGIN + row[i] as u32 * (NODE_HEIGHT + ROW_GAP),
            }
        })
        .collect();
    for i in 0..nodes.len() {
        for p in nodes[i].parents.clone() {
            nodes[p].children.push(i);
        }
    }
    Graph {
        nodes,
        width: 2 * MARGIN + (columns as u32 * (NODE_WIDTH + COLUMN_GAP)).saturating_sub(COLUMN_GAP),
        height: 2 * MARGIN + (tallest * (NODE_HEIGHT + ROW_GAP)).saturating_sub(ROW_GAP),
        node_width: NODE_WIDTH,
        node_height: NODE_HEIGHT,
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PAGE: &str = include_str!("dag_page.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_its_data_without_closing_its_script() {
        assert_eq!(html_escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
        assert!(PAGE.contains("{{DATA}}") && PAGE.contains("{{TITLE}}"));
        assert!(
            !PAGE.contains("http://") && !PAGE.contains("https://"),
            "nothing loads from elsewhere"
        );
    }
}
