//! `lake invalidate`: expire an environment now (and with --sync, clean it up at once).

use std::process::ExitCode;

use crate::cli::args::{Cli, InvalidateArgs};
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &InvalidateArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let environment = &args.environment;
    let report = ctx.invalidate(environment, args.sync, ops::execution_time(None)?)?;
    printer.done(format_args!("environment `{environment}` is invalidated"));
    match report {
        Some(report) => super::janitor::print_report(printer, &report, false),
        None => Ok(ExitCode::SUCCESS),
    }
}
