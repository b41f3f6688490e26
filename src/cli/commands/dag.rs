//! `lake dag`: the model dependency graph as text, Graphviz or Mermaid.

use std::process::ExitCode;

use crate::cli::args::{Cli, DagArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::{LakeError, Result};

pub(super) fn run(args: &DagArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let text = output::render_dag(&ctx.project, args.format);
    match &args.output {
        Some(path) => std::fs::write(path, text).map_err(|e| LakeError::io(path, e))?,
        None => printer.print(text)?,
    }
    Ok(ExitCode::SUCCESS)
}
