//! `lake check-intervals`: each incremental model's complete and missing intervals.

use std::process::ExitCode;

use crate::cli::args::{CheckIntervalsArgs, Cli};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &CheckIntervalsArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let now = ops::execution_time(args.execution_time.as_deref())?;
    let report = ctx.check_intervals(&args.environment, now)?;
    printer.print(output::render_intervals(&report))?;
    Ok(ExitCode::SUCCESS)
}
