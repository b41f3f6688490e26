//! `lake create-test`: a unit test for a model, written from live data.

use std::process::ExitCode;

use crate::cli::args::{Cli, CreateTestArgs};
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &CreateTestArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let request = ops::NewTest {
        model: args.model.clone(),
        queries: pairs(&args.queries),
        name: args.name.clone(),
        file: args.file.clone(),
        overwrite: args.overwrite,
        vars: pairs(&args.vars),
        include_ctes: args.include_ctes,
    };
    let file = ctx.create_test(&request, ops::execution_time(None)?)?;
    printer.line(format_args!("Wrote {}", file.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Values clap took two at a time (`num_args = 2`) as pairs.
fn pairs(values: &[String]) -> Vec<(String, String)> {
    values
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
        .collect()
}
