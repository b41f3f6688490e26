//! `lake table-name`: the physical table behind a model in an environment.

use std::process::ExitCode;

use crate::cli::args::{Cli, TableNameArgs};
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(args: &TableNameArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    printer.line(ctx.table_name_for(&args.model, &args.environment, args.prod)?)?;
    Ok(ExitCode::SUCCESS)
}
