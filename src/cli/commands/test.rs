//! `lake test`: the unit tests; exit 1 when one fails.

use std::process::ExitCode;

use crate::cli::args::{Cli, TestArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &TestArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let results = ctx.test(&args.tests, ops::execution_time(None)?)?;
    output::write_test_results(printer.out(), &results, false)?;
    Ok(if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
