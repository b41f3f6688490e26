//! `lake evaluate`: a model's rows, computed and printed, nothing written.

use std::process::ExitCode;

use crate::cli::args::{Cli, EvaluateArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;

pub(super) fn run(args: &EvaluateArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let request = super::render::request(&args.model, &args.interval, None)?;
    let result = ctx.evaluate(&request, args.limit)?;
    output::write_rows(printer.out(), &result, args.format)?;
    Ok(ExitCode::SUCCESS)
}
