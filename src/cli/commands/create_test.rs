//! `lake create-test`: a unit test for a model, written from live data.

use std::process::ExitCode;

use crate::cli::args::{Cli, CreateTestArgs};
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &CreateTestArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    // clap takes the values two at a time (`num_args = 2`), so every chunk is an upstream and its SQL.
    let pairs: Vec<(String, String)> = args
        .queries
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
        .collect();
    let file = ctx.create_test(
        &args.model,
        &pairs,
        args.file.as_deref(),
        args.overwrite,
        ops::execution_time(None)?,
    )?;
    printer.line(format_args!("Wrote {}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}
