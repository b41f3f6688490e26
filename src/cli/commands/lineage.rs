//! `lake lineage`: a model's column lineage as a tree, or as JSON.

use std::process::ExitCode;

use crate::cli::args::{Cli, LineageArgs, LineageFormat};
use crate::cli::printer::Printer;
use crate::error::{LakeError, Result};
use crate::ops::{LineageNode, LineageRequest, Use};

pub(super) fn run(args: &LineageArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let roots = ctx.lineage(&LineageRequest {
        target: args.target.clone(),
        downstream: args.downstream,
        depth: args.depth,
        environment: args.environment.clone(),
    })?;
    match args.format {
        LineageFormat::Json => {
            let doc = serde_json::to_value(&roots).map_err(|e| LakeError::Output(e.to_string()))?;
            printer.json(&doc)?;
        }
        LineageFormat::Dot | LineageFormat::Mermaid => {
            let mut edges = Vec::new();
            for root in &roots {
                collect_edges(root, &mut edges);
            }
            edges.dedup();
            printer.print(graph(&edges, args.format))?;
        }
        LineageFormat::Text => {
            let mut out = String::new();
            for root in &roots {
                out.push_str(&format!("{}\n", label(root)));
                tree(&root.children, "", &mut out);
            }
            printer.print(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `table.column (how)`, with what is not a model and what could not be traced said.
fn label(node: &LineageNode) -> String {
    let mut text = if node.column.is_empty() {
        node.table.clone()
    } else {
        format!("{}.{}", node.table, node.column)
    };
    match node.used {
        Some(Use::Value(how)) => {
            text.push_str(&format!(" ({})", format!("{how:?}").to_lowercase()))
        }
        Some(Use::Rows) if node.column.is_empty() => {
            text.push_str(" (its rows: filtered, joined or grouped by it)")
        }
        Some(Use::Rows) => text.push_str(" (selects rows)"),
        None => {}
    }
    if node.kind != "model" {
        text.push_str(&format!(" [{}]", node.kind));
    }
    if node.opaque {
        text.push_str(" [partly opaque: lake could not trace all of it]");
    }
    text
}

/// `(from, to, label)`: each column points at the column (or model) it flows into.
fn collect_edges(node: &LineageNode, edges: &mut Vec<(String, String, String)>) {
    for child in &node.children {
        let how = match child.used {
            Some(Use::Value(how)) => format!("{how:?}").to_lowercase(),
            Some(Use::Rows) => "selects rows".into(),
            None => String::new(),
        };
        edges.push((name(child), name(node), how));
        collect_edges(child, edges);
    }
}

fn name(node: &LineageNode) -> String {
    if node.column.is_empty() {
        node.table.clone()
    } else {
        format!("{}.{}", node.table, node.column)
    }
}

/// The edges as a Graphviz digraph or a Mermaid flowchart, upstream on the left.
fn graph(edges: &[(String, String, String)], format: LineageFormat) -> String {
    let mut out = String::new();
    if format == LineageFormat::Dot {
        out.push_str("digraph lineage {\n  rankdir=LR;\n");
        for (from, to, how) in edges {
            out.push_str(&format!("  \"{from}\" -> \"{to}\" [label=\"{how}\"];\n"));
        }
        out.push_str("}\n");
        return out;
    }
    out.push_str("flowchart LR\n");
    // Mermaid ids cannot hold dots: each name gets an id, and shows as its label.
    let mut ids: Vec<String> = Vec::new();
    let mut id = |name: &str| {
        let n = ids.iter().position(|x| x == name).unwrap_or_else(|| {
            ids.push(name.to_string());
            ids.len() - 1
        });
        format!("c{n}[\"{name}\"]")
    };
    for (from, to, how) in edges {
        let (from, to) = (id(from), id(to));
        out.push_str(&format!("  {from} -->|{how}| {to}\n"));
    }
    out
}

fn tree(children: &[LineageNode], indent: &str, out: &mut String) {
    for (n, child) in children.iter().enumerate() {
        let last = n + 1 == children.len();
        let (branch, deeper) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        out.push_str(&format!("{indent}{branch}{}\n", label(child)));
        tree(&child.children, &format!("{indent}{deeper}"), out);
    }
}
