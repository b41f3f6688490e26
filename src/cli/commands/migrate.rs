//! `lake migrate`: state written by an older lake, upgraded to this one's schema.

use std::process::ExitCode;

use crate::cli::args::Cli;
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let version = ctx.migrate()?;
    printer.line(format_args!("State is at schema version {version}."))?;
    Ok(ExitCode::SUCCESS)
}
