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
    })?;
    match args.format {
        LineageFormat::Json => {
            let doc = serde_json::to_value(&roots).map_err(|e| LakeError::Output(e.to_string()))?;
            printer.json(&doc)?;
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
