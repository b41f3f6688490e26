//! `lake dag`: the model dependency graph as text, Graphviz, Mermaid, or an HTML page (`lake dag FILE`).

use std::process::ExitCode;

use crate::cli::args::{Cli, DagArgs, DagFormat};
use crate::cli::printer::Printer;
use crate::cli::{dag_page, output};
use crate::error::{LakeError, Result};

pub(super) fn run(args: &DagArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let path = args.file.as_ref().or(args.output.as_ref());
    let format = args.format.unwrap_or(if args.file.is_some() {
        DagFormat::Html
    } else {
        DagFormat::Text
    });
    let selected = if args.select_model.is_empty() {
        None
    } else {
        Some(ctx.project.select(&args.select_model)?)
    };
    let text = match format {
        DagFormat::Html => dag_page::render(&ctx.project, selected.as_ref()),
        other => output::render_dag(&ctx.project, other, selected.as_ref()),
    };
    match path {
        Some(path) => {
            std::fs::write(path, text).map_err(|e| LakeError::io(path, e))?;
            printer.done(format_args!("wrote {}", path.display()));
        }
        None => printer.print(text)?,
    }
    Ok(ExitCode::SUCCESS)
}
