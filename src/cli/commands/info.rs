//! `lake info`: the project's size, environments, and whether its engine and storage answer.

use std::process::ExitCode;

use crate::cli::args::{Cli, InfoArgs};
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(args: &InfoArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let info = ctx.info()?;
    if args.json {
        printer.json(&info)?;
        return Ok(ExitCode::SUCCESS);
    }
    let environments = if info.environments.is_empty() {
        "(none)".to_string()
    } else {
        info.environments.join(", ")
    };
    let engine = if info.engine_ok {
        "succeeded"
    } else {
        "failed"
    };
    let storage = if info.storage_ok {
        "reachable"
    } else {
        "cannot be opened"
    };
    printer.line(format_args!("Project: {}", info.project.display()))?;
    printer.line(format_args!("Models: {}", info.models))?;
    printer.line(format_args!("Macros: {}", info.macros))?;
    printer.line(format_args!("External models: {}", info.external_models))?;
    printer.line(format_args!("Environments: {environments}"))?;
    printer.line(format_args!("Gateway: {} — {}", info.gateway, info.engine))?;
    printer.line(format_args!("Data warehouse connection {engine}"))?;
    printer.line(format_args!("Storage: {} — {storage}", info.storage))?;
    printer.line(format_args!("State: {}", info.state))?;
    Ok(if info.engine_ok && info.storage_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
