//! `lake state export|import`: the whole state as one JSON file.

use std::process::ExitCode;

use crate::cli::args::{Cli, StateCommand};
use crate::cli::printer::{Printer, plural};
use crate::error::{LakeError, Result};

pub(super) fn run(command: &StateCommand, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    match command {
        StateCommand::Export { output } => export(output.as_deref(), cli, printer),
        StateCommand::Import { input } => import(input, cli, printer),
    }
}

fn export(output: Option<&std::path::Path>, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let export = ctx.export_state()?;
    let Some(path) = output else {
        printer.json(&export)?;
        return Ok(ExitCode::SUCCESS);
    };
    let text =
        serde_json::to_string_pretty(&export).map_err(|e| LakeError::Output(e.to_string()))?;
    std::fs::write(path, format!("{text}\n")).map_err(|e| LakeError::io(path, e))?;
    printer.status(format_args!(
        "Exported {}, {} and {} from {} to {}",
        plural(export.environments.len(), "environment"),
        plural(export.snapshots.len(), "snapshot"),
        plural(export.intervals.len(), "interval"),
        ctx.describe_state(),
        path.display()
    ));
    Ok(ExitCode::SUCCESS)
}

fn import(input: &std::path::Path, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let (text, source) = if input.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| LakeError::io("standard input", e))?;
        (text, "standard input".to_string())
    } else {
        let text = std::fs::read_to_string(input).map_err(|e| LakeError::io(input, e))?;
        (text, input.display().to_string())
    };
    let export = crate::state::transfer::parse(&text, &source)?;
    let report = ctx.import_state(&export)?;
    printer.line(format_args!(
        "Imported {}, {} and {} into {}.",
        plural(report.environments, "environment"),
        plural(report.snapshots, "snapshot"),
        plural(report.intervals, "interval"),
        ctx.describe_state()
    ))?;
    Ok(ExitCode::SUCCESS)
}
