//! `lake rollback`: the last `lake migrate` undone, the state back at the schema the older lake wrote.

use std::process::ExitCode;

use crate::cli::args::Cli;
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let version = ctx.rollback()?;
    printer.line(format_args!(
        "State is back at schema version {version}, as the last `lake migrate` found it."
    ))?;
    Ok(ExitCode::SUCCESS)
}
