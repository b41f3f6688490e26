//! `lake test`: the unit tests; exit 1 when one fails.

use std::process::ExitCode;

use crate::cli::args::{Cli, TestArgs};
use crate::cli::output;
use crate::cli::printer::Printer;
use crate::error::Result;
use crate::ops;

pub(super) fn run(args: &TestArgs, cli: &Cli, printer: &mut Printer) -> Result<ExitCode> {
    let ctx = super::load(cli, printer)?;
    let request = ops::TestRequest {
        selection: args.tests.clone(),
        pattern: args.pattern.clone(),
        preserve_fixtures: args.preserve_fixtures,
    };
    let results = ctx.run_tests(&request, ops::execution_time(None)?)?;
    output::write_test_results(printer.out(), &results, false)?;
    if args.preserve_fixtures && !results.is_empty() {
        printer.status(format_args!(
            "Fixtures kept in {}: one DuckDB file per test",
            ctx.fixtures_dir().display()
        ));
    }
    Ok(if results.iter().all(|r| r.passed()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
